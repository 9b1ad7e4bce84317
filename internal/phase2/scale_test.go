package phase2

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"path"
	"slices"
	"sort"
	"syscall"
	"testing"
	"time"

	"github.com/regmirror/regmirror/layout"
)

// synthMeta is a synthetic generation like the scale benchmark's source
// (internal/testsupport/e2e BenchmarkScale): repos repositories of tags tags each, every tag
// its own two-architecture OCI index, every manifest a blob of generation 1.
func synthMeta(repos, tags int) *layout.Meta {
	m := layout.NewMeta(1)
	for r := range repos {
		name := fmt.Sprintf("repo%04d", r)
		if r%10 == 1 {
			name = fmt.Sprintf("repo%04d/sub", r-1) // nested below another repository
		}
		repo := &layout.Repository{Tags: map[string]layout.Digest{}}
		for t := range tags {
			tag := fmt.Sprintf("%d.%d", t/10, t%10)
			repo.Tags[tag] = synthIndex(m, name+":"+tag, 1, &repo.Manifests)
		}
		slices.SortFunc(repo.Manifests, compareDigests)
		m.Repositories[name] = repo
	}
	return m
}

func compareDigests(a, b layout.Digest) int {
	switch {
	case a.String() < b.String():
		return -1
	case a.String() > b.String():
		return 1
	}
	return 0
}

// synthIndex adds to m a two-architecture index named by seed, of generation gen, appends its
// manifests to l and returns its digest.
func synthIndex(m *layout.Meta, seed string, gen uint64, l *[]layout.Digest) layout.Digest {
	idx := digestOf("index " + seed)
	for _, arch := range []string{"amd64", "arm64"} {
		d := digestOf(arch + " " + seed)
		m.Manifests[d] = &layout.Manifest{MediaType: layout.MediaTypeOCIManifest}
		m.Blobs[d] = &layout.Blob{Since: gen}
		*l = append(*l, d)
	}
	m.Manifests[idx] = &layout.Manifest{MediaType: layout.MediaTypeOCIIndex}
	m.Blobs[idx] = &layout.Blob{Since: gen}
	*l = append(*l, idx)
	return idx
}

// promote is the generation after prev in which n random tags (rnd) moved to new indexes;
// the manifests they referenced are retiring. prev is not modified.
func promote(prev *layout.Meta, n int, rnd *rand.Rand) *layout.Meta {
	m := *prev
	m.Generation = prev.Generation + 1
	m.Repositories = maps.Clone(prev.Repositories)
	m.Manifests = maps.Clone(prev.Manifests)
	m.Blobs = maps.Clone(prev.Blobs)
	names := sortedNames(prev)
	for i := range n {
		name := names[rnd.IntN(len(names))]
		old := m.Repositories[name]
		if !old.Published() {
			continue
		}
		repo := *old
		if old == prev.Repositories[name] { // not yet copied
			repo.Tags = maps.Clone(old.Tags)
			repo.Manifests = slices.Clone(old.Manifests)
			repo.Retiring = slices.Clone(old.Retiring)
		}
		tags := slices.Sorted(maps.Keys(repo.Tags))
		tag := tags[rnd.IntN(len(tags))]
		gone := repo.Tags[tag]
		repo.Tags[tag] = synthIndex(&m, fmt.Sprintf("%s:%s@%d.%d", name, tag, m.Generation, i), m.Generation, &repo.Manifests)
		// The index and its children leave the repository's manifests for its retiring ones.
		children := map[layout.Digest]bool{gone: true}
		for _, arch := range []string{"amd64", "arm64"} {
			children[digestOf(arch+" "+gone.String())] = true
		}
		repo.Manifests = slices.DeleteFunc(repo.Manifests, func(d layout.Digest) bool {
			if children[d] || d == gone {
				repo.Retiring = append(repo.Retiring, d)
				return true
			}
			return false
		})
		slices.SortFunc(repo.Manifests, compareDigests)
		slices.SortFunc(repo.Retiring, compareDigests)
		m.Repositories[name] = &repo
	}
	return &m
}

// BenchmarkPromotion is the phase-2 part of a 10-tag promotion of a 90k-manifest tree (300
// repositories × 100 tags, each a two-architecture index) on a tree holding the previous
// publication: Diff against Diff as it was (diffBefore: every marker of both in a map), and
// WriteTags with Diff's change (the changed repositories rendered, refs.map spliced) against
// rendering everything (no change), interleaved; the medians of each and their ratios.
//
//	go test ./internal/phase2 -run '^$' -bench '^BenchmarkPromotion$' -benchtime 10x
func BenchmarkPromotion(b *testing.B) {
	prev := synthMeta(300, 100)
	tree := layout.NewTree(b.TempDir())
	publishBench(b, tree, prev)
	rnd := rand.New(rand.NewPCG(1, 2))
	// Each measure is of the process's CPU time (user and system: steady on a shared host)
	// and of the wall-clock time (with the waits for the disk).
	type measure struct{ cpu, wall []time.Duration }
	var diffAll, diff, full, change measure
	timed := func(m *measure, f func()) {
		cpu, wall := cpuTime(), time.Now()
		f()
		m.cpu = append(m.cpu, cpuTime()-cpu)
		m.wall = append(m.wall, time.Since(wall))
	}
	i := 0
	for b.Loop() {
		next := promote(prev, 10, rnd)
		timed(&diffAll, func() { diffBefore(prev, next) })
		var c Change
		timed(&diff, func() { c = Diff(prev, next) })
		for _, withChange := range []bool{i%2 == 0, i%2 != 0} {
			ch, m := (*Change)(nil), &full
			if withChange {
				ch, m = &c, &change
			}
			var root string
			var uses []string
			var err error
			timed(m, func() { root, uses, err = WriteTags(tree, next, ch) })
			if err != nil {
				b.Fatal(err)
			}
			removeNew(b, tree, prev, root, uses)
		}
		i++
	}
	ms := func(l []time.Duration) float64 { return median(l).Seconds() * 1000 }
	for _, r := range []struct {
		name string
		m    measure
	}{{"diff-before", diffAll}, {"diff", diff}, {"writetags-full", full}, {"writetags-change", change}} {
		b.ReportMetric(ms(r.m.cpu), r.name+"-cpu-ms")
		b.ReportMetric(ms(r.m.wall), r.name+"-wall-ms")
	}
	b.ReportMetric(ms(diff.cpu)/ms(diffAll.cpu), "diff-cpu-new/old")
	b.ReportMetric(ms(change.cpu)/ms(full.cpu), "writetags-cpu-new/old")
	b.ReportMetric(ms(change.wall)/ms(full.wall), "writetags-wall-new/old")
}

// cpuTime is the CPU time the process has used, user and system.
func cpuTime() time.Duration {
	var r syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &r); err != nil {
		return 0
	}
	return time.Duration(r.Utime.Nano() + r.Stime.Nano())
}

// publishBench publishes m in tree as publish does, but for the digest markers, which
// WriteTags does not read (90k of them take minutes to write and remove on a small host).
func publishBench(b *testing.B, tree *layout.Tree, m *layout.Meta) {
	b.Helper()
	v2, uses, err := WriteTags(tree, m, nil)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := tree.PublishWith(m, layout.Publication{Links: map[string]string{PubDir: v2}, Uses: uses}); err != nil {
		b.Fatal(err)
	}
}

// removeNew removes the shared entries a WriteTags of a promotion of prev wrote (root and the
// uses prev's own publication does not have), so that the next run writes its own again.
func removeNew(b *testing.B, tree *layout.Tree, prev *layout.Meta, root string, uses []string) {
	b.Helper()
	_, had, err := WriteTags(tree, prev, nil) // finds every entry: writes nothing
	if err != nil {
		b.Fatal(err)
	}
	old := map[string]bool{}
	for _, u := range had {
		old[u] = true
	}
	for _, u := range append(uses, root) {
		if !old[u] {
			if err := os.RemoveAll(tree.Path(u)); err != nil {
				b.Fatal(err)
			}
		}
	}
}

func median(l []time.Duration) time.Duration {
	if len(l) == 0 {
		return 0
	}
	s := slices.Clone(l)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

// markerKey, oldMarkers and diffBefore are Diff as it was before it compared
// repositories (every marker of both metadata in a map), BenchmarkPromotion's baseline.

// markerKey is one digest marker: a repository's manifest.
type markerKey struct {
	repo string
	d    layout.Digest
}

// oldMarkers are meta's digest markers, by repository and manifest: their names (HEX.EXT).
func oldMarkers(meta *layout.Meta) map[markerKey]string {
	n := 0
	for _, repo := range meta.Repositories {
		n += len(repo.Manifests) + len(repo.Retiring)
	}
	l := make(map[markerKey]string, n)
	for name, repo := range meta.Repositories {
		for _, d := range servedByDigest(repo) {
			if mk, ok := marker(meta, d); ok {
				l[markerKey{name, d}] = mk
			}
		}
	}
	return l
}

// diffBefore returns the change of the digest markers from prev's to meta's.
func diffBefore(prev, meta *layout.Meta) struct{ Add, Remove []string } {
	have, want := oldMarkers(prev), oldMarkers(meta)
	var c struct{ Add, Remove []string }
	for k, mk := range want {
		if have[k] != mk {
			c.Add = append(c.Add, path.Join(digestDir(k.repo, k.d), mk))
		}
	}
	for k, mk := range have {
		if want[k] != mk {
			c.Remove = append(c.Remove, path.Join(digestDir(k.repo, k.d), mk))
		}
	}
	sort.Strings(c.Add)
	sort.Strings(c.Remove)
	return c
}
