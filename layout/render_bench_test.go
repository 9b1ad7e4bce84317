package layout

import (
	"bytes"
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

// BenchmarkPromotionFiles renders index.json and the subsets' filters of a 10-tag promotion
// of metadata shaped like the scale benchmark's tree (REGMIRROR_SCALE_MANIFESTS, default
// 90000) in turns: with the reference renderers they replaced ("old"), whole ("full"), and
// spliced from the live publication's as the publish does (publicationFiles: the live files
// read and checked against their names included). It reports each one's median time and
// allocations, and the ratios of the medians:
//
//	go test ./layout -run '^$' -bench '^BenchmarkPromotionFiles$' -benchtime 10x
func BenchmarkPromotionFiles(b *testing.B) {
	g, n := scaleGen(90000)
	m, tag := g.scale(n)
	tree := NewTree(b.TempDir())
	if _, err := tree.PublishWith(m, Publication{SubsetFilters: true}); err != nil {
		b.Fatal(err)
	}
	m, _, err := tree.LoadForUpdate()
	if err != nil {
		b.Fatal(err)
	}
	g.promoteScale(m, n, tag)
	m.Format = FormatVersion
	change, wait := tree.startMeta(m)
	_, _, err = wait()
	if err != nil {
		b.Fatal(err)
	}
	wantIdx, err := IndexJSON(m)
	if err != nil {
		b.Fatal(err)
	}
	wantFilters := m.SubsetFilters()
	if idx, filters, release, err := tree.publicationFiles(m, change, true); err != nil || !bytes.Equal(idx.Bytes(), wantIdx) || sameFiles(filters, wantFilters) != "" {
		b.Fatalf("publicationFiles gives other files than the renderers (%v)", err)
	} else {
		release()
	}
	if live := tree.livePub(change); live == nil {
		b.Fatal("no live publication to splice from")
	} else if old, ok := live.file(PubIndex); !ok {
		b.Fatal("the live index.json cannot be read")
	} else if _, ok := spliceIndexJSON(old, change, m); !ok {
		b.Fatal("index.json is not spliced")
	} else if _, ok := spliceSubsetFilters(live.file, change, m); !ok {
		b.Fatal("the filters are not spliced")
	}
	var old, full, spliced sideBySide
	for b.Loop() {
		old.run(func() { _, _ = refIndexJSON(m); refSubsetFilters(m) })
		full.run(func() { _, _ = IndexJSON(m); m.SubsetFilters() })
		spliced.run(func() {
			if _, _, release, err := tree.publicationFiles(m, change, true); err == nil {
				release()
			}
		})
	}
	o, f, s := old.median(), full.median(), spliced.median()
	for _, r := range []struct {
		name string
		c    *sideBySide
		med  time.Duration
	}{{"old", &old, o}, {"full", &full, f}, {"spliced", &spliced, s}} {
		b.ReportMetric(float64(r.med.Nanoseconds()), r.name+"-ns/op")
		b.ReportMetric(r.c.allocs, r.name+"-allocs/op")
		b.ReportMetric(r.c.bytes/(1<<20), r.name+"-MiB/op")
	}
	b.ReportMetric(float64(o)/float64(s), "old/spliced")
	b.ReportMetric(float64(f)/float64(s), "full/spliced")
}
