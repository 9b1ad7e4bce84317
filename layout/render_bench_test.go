package layout

import (
	"runtime"
	"slices"
	"testing"
	"time"
)

// BenchmarkWholeTreeFiles renders the publication's whole-tree files (index.json, the
// subsets' filters) of metadata shaped like the scale benchmark's tree
// (REGMIRROR_SCALE_MANIFESTS, default 90000) with the current renderers and with the
// reference ones they replaced, in turns (the machine's noise falls on both), and reports
// each one's median time and allocations a render, and the ratio of the medians:
//
//	go test ./layout -run '^$' -bench '^BenchmarkWholeTreeFiles$' -benchtime 10x
func BenchmarkWholeTreeFiles(b *testing.B) {
	g, n := scaleGen(90000)
	m, _ := g.scale(n)
	for _, c := range []struct {
		name     string
		old, new func()
	}{
		{"IndexJSON", func() { _, _ = refIndexJSON(m) }, func() { _, _ = IndexJSON(m) }},
		{"SubsetFilters", func() { refSubsetFilters(m) }, func() { m.SubsetFilters() }},
	} {
		b.Run(c.name, func(b *testing.B) {
			var old, new sideBySide
			for b.Loop() {
				old.run(c.old)
				new.run(c.new)
			}
			oldMed, newMed := old.median(), new.median()
			b.ReportMetric(float64(oldMed.Nanoseconds()), "old-ns/op")
			b.ReportMetric(float64(newMed.Nanoseconds()), "new-ns/op")
			b.ReportMetric(float64(oldMed)/float64(newMed), "old/new")
			b.ReportMetric(old.allocs, "old-allocs/op")
			b.ReportMetric(new.allocs, "new-allocs/op")
			b.ReportMetric(old.bytes/(1<<20), "old-MiB/op")
			b.ReportMetric(new.bytes/(1<<20), "new-MiB/op")
		})
	}
}

// sideBySide is one contender's runs: times, and the allocations of the last run.
type sideBySide struct {
	times         []time.Duration
	allocs, bytes float64
}

func (s *sideBySide) run(f func()) {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	start := time.Now()
	f()
	s.times = append(s.times, time.Since(start))
	runtime.ReadMemStats(&after)
	s.allocs, s.bytes = float64(after.Mallocs-before.Mallocs), float64(after.TotalAlloc-before.TotalAlloc)
}

func (s *sideBySide) median() time.Duration {
	t := slices.Sorted(slices.Values(s.times))
	return t[len(t)/2]
}
