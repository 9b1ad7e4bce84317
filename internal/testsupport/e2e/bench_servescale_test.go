package e2e

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/regmirror/regmirror/generator"
	"github.com/regmirror/regmirror/internal/mirrors"
	"github.com/regmirror/regmirror/layout"
)

// BenchmarkServeScale is issue 10's serve figures at scale, in minutes rather than hours: it
// writes the tree's metadata directly (scaleMeta: what `regmirror generate` writes from the
// scale benchmark's source, checked by TestScaleMetaIsGenerates) instead of generating it
// through a registry as BenchmarkScale does, so that the 1M-manifest point is within reach.
// Every tag is a two-arch index (3 manifests a tag, their configs and layers as blob
// records), with 50 mirrors in 30 countries (wrkBenchMirrors), all healthy at the
// generation, regions computed by mirrors.Precompute, published with layout's publish
// sequence. No blob is written: the metadata names an origin, as on a redirector host.
//
// Sizes: REGMIRROR_SCALE_MANIFESTS (default 90000) and, with REGMIRROR_SCALE_1M=1, also
// 1,000,000. For each, a fresh `regmirror serve` (GOMAXPROCS=2 at most, access log off):
//   - ready: from its start until a tag answers its digest (scaleServe);
//   - VmRSS after 2 s idle (steady) and VmHWM (peak at load);
//   - the switch: a promotion of 10 tags (scaleSource.Promote, as BenchmarkScale's: 8 moved
//     to a new index and new child manifests, 2 added) published through the same sequence
//     as a delta pack, as generate would (layout.Tree.LoadForSuccessor, then Publish); timed
//     from the publish's rename of regmirror/live until a moved tag answers its new digest,
//     polled every 2 ms (scaleSwitch), with VmHWM reset before it (/proc/<pid>/clear_refs) so
//     that its peak is the switch's, and that peak over the steady RSS; then a second
//     promotion, whose delta compaction merges with the first's (the chain then shares only
//     its base with the one serve holds), measured the same way. The slower switch and the
//     higher peak are the figures.
//
// The figures are printed side by side with issue 10's targets (scaleServeTargets) and
// reported as metrics; nothing is asserted on them.
func BenchmarkServeScale(b *testing.B) {
	needPeers(b)
	scaleSizes(b, "issue 10: serve at scale (metadata written directly: two-arch indexes, 50 healthy mirrors in 30 countries)",
		[]int{scaleManifests(b, 90000)}, serveScaleRun, scaleServeTargets, func(r *scaleResult) string { return r.serveDetail })
}

// serveScaleRun measures one size.
func serveScaleRun(b *testing.B, manifests int) *scaleResult {
	repos, perRepo := scaleShape(manifests)
	res := &scaleResult{tags: repos * perRepo, repos: repos, manifests: 3 * repos * perRepo}
	progress := func(format string, args ...any) { scaleProgress(res.manifests, format, args...) }
	src := newScaleContent(repos, perRepo)
	tree := layout.NewTree(b.TempDir())
	release, err := tree.Lock(time.Minute)
	if err != nil {
		b.Fatal(err)
	}
	defer release()

	start := time.Now()
	meta, err := scaleMeta(src, nil, nil, start.UTC())
	if err != nil {
		b.Fatal(err)
	}
	meta.Mirrors = wrkBenchMirrors(50, 30, func(int) uint64 { return meta.Generation })
	meta.Origin = "https://origin.example.org/containers/"
	built := time.Since(start)
	st, err := mirrors.Precompute(meta)
	if err != nil {
		b.Fatal(err)
	}
	start = time.Now()
	if _, err := tree.Publish(meta); err != nil {
		b.Fatal(err)
	}
	published := time.Since(start)
	metaBytes := serveScaleMetaBytes(b, tree)
	progress("%d repositories × %d tags: metadata built in %v, published in %v (%s in regmirror/meta), %d regions, %d variant sets",
		repos, perRepo, built.Round(time.Millisecond), published.Round(time.Millisecond), scaleBytes(metaBytes), st.Regions, st.VariantSets)
	meta = nil
	runtime.GC() // this process is idle while serve loads

	srv := scaleServe(b, tree.Dir(), scaleRepoName(0), scaleTagName(0), src.TagDigest(0, 0))
	res.ready = srv.ready
	readyCPU := wrkBenchGroupCPU(b, srv.pid) // its own process group (peers.Start)
	time.Sleep(2 * time.Second)
	res.rss, res.peak = wrkBenchProcStatus(b, srv.pid)
	progress("serve ready in %v (CPU %v), VmRSS %s, VmHWM %s", res.ready.Round(time.Millisecond), readyCPU, scaleBytes(res.rss), scaleBytes(res.peak))

	// Two promotions, as generate publishes them: the first appends a delta to the chain, the
	// second a delta of about the same size, which compaction merges with the first (the
	// chain then shares only its base with the one serve holds). The slower switch is the
	// figure.
	var switches []string
	var switchCPU time.Duration
	for i, shape := range []string{"appended", "merged"} {
		took, polls, peak, cpu, packs, grew := serveScaleSwitch(b, tree, src, srv)
		progress("switch %d (a delta pack %s: %d packs, regmirror/meta %s more): %v (%d polls; serve's CPU meanwhile %v), VmHWM %s",
			i+1, shape, packs, scaleBytes(grew), took.Round(time.Millisecond), polls, cpu, scaleBytes(peak))
		switches = append(switches, fmt.Sprintf("%s %v (CPU %v, %d polls)", shape, took.Round(time.Millisecond), cpu, polls))
		if took > res.switchTime {
			res.switchTime, res.switchPolls, switchCPU = took, polls, cpu
		}
		res.switchPeak = max(res.switchPeak, peak)
		if packs != 2 {
			b.Errorf("promotion %d's publish left %d content packs, want 2 (the base and one delta, %s, as generate)", i+1, packs, shape)
		}
	}
	b.ReportMetric(readyCPU.Seconds(), "serve-CPU-until-ready-s")
	b.ReportMetric(switchCPU.Seconds(), "serve-CPU-in-the-switch-s")
	res.serveDetail = fmt.Sprintf("%d manifests (%d repositories × %d tags): metadata %s (built %v, published %v), %d regions, %d variant sets\n"+
		"  serve's CPU (user+system, less disturbed by other load than wall time): %v until ready, %v from the publish to the slower switch seen; switches: %s",
		res.manifests, repos, perRepo, scaleBytes(metaBytes), built.Round(time.Millisecond), published.Round(time.Millisecond), st.Regions, st.VariantSets,
		readyCPU, switchCPU, strings.Join(switches, ", "))
	return res
}

// serveScaleSwitch publishes the next generation of tree with 10 tags of src promoted, as
// generate builds it (the live one loaded for a successor, a new Meta from it with the
// promotion, published as a delta pack), while srv serves tree, and returns the switch time
// and polls and serve's VmHWM in the switch (scaleSwitch), serve's CPU from the publish to the
// switch seen and the moved tags checked, the content packs of the new generation and how
// much regmirror/meta grew.
func serveScaleSwitch(b *testing.B, tree *layout.Tree, src *scaleSource, srv *scaleServer) (took time.Duration, polls int, peak int64, cpu time.Duration, packs int, grew int64) {
	b.Helper()
	prev, _, err := tree.LoadForSuccessor()
	if err != nil {
		b.Fatal(err)
	}
	moved := src.Promote(10)
	next, err := scaleMeta(src, prev, moved, time.Now().UTC())
	if err != nil {
		b.Fatal(err)
	}
	next.Mirrors, next.Origin = prev.Mirrors, prev.Origin // as the last crawl left them: holding the previous generation
	if _, err := mirrors.Precompute(next); err != nil {
		b.Fatal(err)
	}
	prev = nil
	runtime.GC()

	before := serveScaleMetaBytes(b, tree)
	cpu0 := wrkBenchGroupCPU(b, srv.pid)
	var stamp layout.Stamp
	took, polls, peak = scaleSwitch(b, srv, tree.Dir(), moved, func() (err error) {
		stamp, err = tree.Publish(next)
		return err
	})
	cpu = wrkBenchGroupCPU(b, srv.pid) - cpu0 // the reload, the polls' answers and the check of the moved tags
	// The stamp's other metadata files: the network file, then the content packs.
	packs = len(strings.Fields(stamp.MetaFiles)) - 1
	return took, polls, peak, cpu, packs, serveScaleMetaBytes(b, tree) - before
}

// serveScaleMetaBytes is the size of the files in tree's regmirror/meta/.
func serveScaleMetaBytes(b *testing.B, tree *layout.Tree) int64 {
	b.Helper()
	ents, err := os.ReadDir(tree.Path(layout.MetaFilesDir))
	if err != nil {
		b.Fatal(err)
	}
	var n int64
	for _, e := range ents {
		if fi, err := e.Info(); err == nil {
			n += fi.Size()
		}
	}
	return n
}

// scaleMeta is the content metadata `regmirror generate` (with no mirrors file) writes from
// src as it is now: with prev nil, the first generation, every tag; otherwise the generation
// after prev, where changed (from src.Promote) are the tags whose content changed. As
// generate: each index and its images are manifests (with blob records), configs and layers
// blob records, each new one since the new generation; a repository's lists are what its tags
// reach; the manifests and blobs a repository stopped reaching are retiring (Retired now);
// the subsets are recorded from the tags (layout.Membership, as generate --verify). prev's
// content is read, never changed (layout.Tree.LoadForSuccessor's contract).
func scaleMeta(src *scaleSource, prev *layout.Meta, changed []scaleMoved, now time.Time) (*layout.Meta, error) {
	m := layout.NewMeta(1)
	m.Created, m.Source = now, src.URL
	m.Orphans = map[layout.Digest]*layout.Orphan{}
	if prev != nil {
		m.Generation = prev.Generation + 1
		m.Manifests = maps.Clone(prev.Manifests)
		m.Repositories = maps.Clone(prev.Repositories)
		m.Blobs = make(map[layout.Digest]*layout.Blob, len(prev.Blobs))
		for d, b := range prev.Blobs {
			c := *b
			m.Blobs[d] = &c
		}
	}
	touched := map[string]*layout.Repository{}
	reached := map[layout.Digest]scaleReach{}
	addTag := func(r, t int, v uint32) error {
		c, _ := src.tagContent(uint32(r), uint32(t), v)
		for i, data := range [][]byte{c.index, c.images[0], c.images[1]} {
			d := layout.DigestOf("sha256", data)
			if _, ok := m.Manifests[d]; !ok {
				m.Manifests[d] = &layout.Manifest{MediaType: []string{scaleMediaIndex, scaleMediaImage, scaleMediaImage}[i], Data: data}
			}
		}
		root := layout.DigestOf("sha256", c.index)
		reach, err := scaleWalk(m, root)
		if err != nil {
			return err
		}
		for _, d := range append(slices.Clone(reach.manifests), reach.blobs...) {
			if _, ok := m.Blobs[d]; !ok {
				m.Blobs[d] = &layout.Blob{Size: reach.sizes[d], Since: m.Generation}
			}
		}
		reach.sizes = nil
		reached[root] = reach
		name := scaleRepoName(r)
		repo := touched[name]
		if repo == nil {
			repo = &layout.Repository{Tags: map[string]layout.Digest{}}
			if old := m.Repositories[name]; old != nil {
				repo.Tags = maps.Clone(old.Tags)
			}
			touched[name] = repo
			m.Repositories[name] = repo
		}
		repo.Tags[scaleTagName(t)] = root
		return nil
	}
	if prev == nil {
		for r := range src.repos {
			for t := range src.tagCount(r) {
				if err := addTag(r, t, 0); err != nil {
					return nil, err
				}
			}
		}
	}
	for _, c := range changed {
		r, ok := src.lookupRepo(c.Repo)
		t, v, found := src.lookupTag(r, c.Tag)
		if !ok || !found {
			return nil, fmt.Errorf("scale metadata: %s:%s is not a tag of the source", c.Repo, c.Tag)
		}
		if err := addTag(r, t, v); err != nil {
			return nil, err
		}
	}
	for name, repo := range touched {
		manifests, blobs := map[layout.Digest]bool{}, map[layout.Digest]bool{}
		for _, root := range repo.Tags {
			reach, ok := reached[root]
			if !ok {
				var err error
				if reach, err = scaleWalk(m, root); err != nil {
					return nil, err
				}
			}
			for _, d := range reach.manifests {
				manifests[d] = true
			}
			for _, d := range reach.blobs {
				blobs[d] = true
			}
		}
		repo.Manifests, repo.Blobs = scaleSorted(manifests), scaleSorted(blobs)
		if prev == nil || prev.Repositories[name] == nil {
			continue
		}
		old := prev.Repositories[name]
		retiring := func(current map[layout.Digest]bool, lists ...[]layout.Digest) []layout.Digest {
			out := map[layout.Digest]bool{}
			for _, l := range lists {
				for _, d := range l {
					if !current[d] {
						out[d] = true
						if b := m.Blobs[d]; b != nil && b.Retired.IsZero() {
							b.Retired = now
						}
					}
				}
			}
			return scaleSorted(out)
		}
		repo.Retiring = retiring(manifests, old.Manifests, old.Retiring)
		repo.RetiringBlobs = retiring(blobs, old.Blobs, old.RetiringBlobs)
	}
	table, masks, err := layout.Membership(m, nil)
	if err != nil {
		return nil, err
	}
	if err := m.SetMembership(table, masks, prev, now, generator.DefaultGCGrace); err != nil {
		return nil, err
	}
	return m, nil
}

// scaleReach is what a tag's manifest reaches: manifests (itself first) and blobs (configs
// and layers), with the sizes their descriptors give (while scaleMeta records them).
type scaleReach struct {
	manifests, blobs []layout.Digest
	sizes            map[layout.Digest]int64
}

// scaleWalk is what root reaches through m's manifests.
func scaleWalk(m *layout.Meta, root layout.Digest) (scaleReach, error) {
	reach := scaleReach{sizes: map[layout.Digest]int64{}}
	type desc struct {
		Digest layout.Digest `json:"digest"`
		Size   int64         `json:"size"`
	}
	var walk func(d layout.Digest, depth int) error
	walk = func(d layout.Digest, depth int) error {
		mf := m.Manifests[d]
		if mf == nil || depth > 2 {
			return fmt.Errorf("scale metadata: manifest %s not recorded", d)
		}
		reach.manifests = append(reach.manifests, d)
		reach.sizes[d] = int64(len(mf.Data))
		var p struct {
			Manifests []desc `json:"manifests"`
			Config    *desc  `json:"config"`
			Layers    []desc `json:"layers"`
		}
		if err := json.Unmarshal(mf.Data, &p); err != nil {
			return fmt.Errorf("scale metadata: manifest %s: %w", d, err)
		}
		for _, c := range p.Manifests {
			if err := walk(c.Digest, depth+1); err != nil {
				return err
			}
		}
		if p.Config != nil {
			p.Layers = append([]desc{*p.Config}, p.Layers...)
		}
		for _, l := range p.Layers {
			reach.blobs = append(reach.blobs, l.Digest)
			reach.sizes[l.Digest] = l.Size
		}
		return nil
	}
	return reach, walk(root, 0)
}

func scaleSorted(set map[layout.Digest]bool) []layout.Digest {
	if len(set) == 0 {
		return nil
	}
	return slices.SortedFunc(maps.Keys(set), func(a, b layout.Digest) int { return cmp.Compare(a.String(), b.String()) })
}

// TestScaleMetaIsGenerates keeps BenchmarkServeScale honest: the metadata scaleMeta writes
// directly is the content `regmirror generate` records from the scale benchmark's source
// (every manifest, blob record, repository list, retiring entry and subset), for a first
// generation and for the one after a promotion of 10 tags.
func TestScaleMetaIsGenerates(t *testing.T) {
	src := newScaleSource(t, 4, 6)
	out := filepath.Join(t.TempDir(), "tree")
	now := time.Date(2026, 11, 30, 6, 0, 0, 0, time.UTC)
	var prev *layout.Meta
	for _, step := range []struct {
		name    string
		promote int
	}{
		{name: "first generation"},
		{name: "10 tags promoted", promote: 10},
	} {
		var moved []scaleMoved
		if step.promote > 0 {
			moved = src.Promote(step.promote)
		}
		now = now.Add(time.Hour)
		o := generator.Options{Source: src.URL, Out: out, Now: func() time.Time { return now }}
		if _, err := generator.Run(context.Background(), o); err != nil {
			t.Fatalf("%s: generate: %v", step.name, err)
		}
		want, _, err := layout.NewTree(out).Load()
		if err != nil {
			t.Fatal(err)
		}
		got, err := scaleMeta(src, prev, moved, now)
		if err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		for _, diff := range scaleMetaDiff(got, want) {
			t.Errorf("%s: %s", step.name, diff)
		}
		prev = got
	}
}

// scaleMetaDiff lists how got's content differs from want's (at most 10 differences).
func scaleMetaDiff(got, want *layout.Meta) []string {
	var diffs []string
	add := func(format string, args ...any) {
		if len(diffs) < 10 {
			diffs = append(diffs, fmt.Sprintf(format, args...))
		}
	}
	if got.Generation != want.Generation || !slices.Equal(got.Subsets, want.Subsets) || len(got.Orphans) != len(want.Orphans) {
		add("generation %d, subsets %q, %d orphans; want %d, %q, %d", got.Generation, got.Subsets, len(got.Orphans), want.Generation, want.Subsets, len(want.Orphans))
	}
	for _, d := range scaleKeys(got.Manifests, want.Manifests) {
		g, w := got.Manifests[d], want.Manifests[d]
		if g == nil || w == nil || g.MediaType != w.MediaType || string(g.Data) != string(w.Data) {
			add("manifest %s: got %v, want %v", d, g != nil, w != nil)
		}
	}
	for _, d := range scaleKeys(got.Blobs, want.Blobs) {
		g, w := got.Blobs[d], want.Blobs[d]
		if g == nil || w == nil || g.Size != w.Size || g.Since != w.Since || !g.Retired.Equal(w.Retired) || g.Subsets != w.Subsets ||
			g.Former != w.Former || !g.Left.Equal(w.Left) {
			add("blob %s: got %+v, want %+v", d, g, w)
		}
	}
	names := slices.Sorted(maps.Keys(want.Repositories))
	if g := slices.Sorted(maps.Keys(got.Repositories)); !slices.Equal(g, names) {
		add("repositories: got %q, want %q", g, names)
	}
	for _, name := range names {
		g, w := got.Repositories[name], want.Repositories[name]
		if g == nil {
			continue
		}
		if !maps.Equal(g.Tags, w.Tags) {
			add("%s: tags: got %v, want %v", name, g.Tags, w.Tags)
		}
		for i, l := range [][2][]layout.Digest{{g.Manifests, w.Manifests}, {g.Blobs, w.Blobs}, {g.Retiring, w.Retiring}, {g.RetiringBlobs, w.RetiringBlobs}} {
			if !slices.Equal(l[0], l[1]) {
				add("%s: %s: got %v, want %v", name, []string{"manifests", "blobs", "retiring", "retiring blobs"}[i], l[0], l[1])
			}
		}
		if len(g.Referrers)+len(w.Referrers)+len(g.Archived)+len(w.Archived)+len(g.Removed)+len(w.Removed) > 0 {
			add("%s: referrers, archived or removed tags: got %v %v %v, want %v %v %v", name, g.Referrers, g.Archived, g.Removed, w.Referrers, w.Archived, w.Removed)
		}
	}
	return diffs
}

// scaleKeys is the sorted union of a's and b's keys.
func scaleKeys[V any](a, b map[layout.Digest]V) []layout.Digest {
	set := map[layout.Digest]bool{}
	for d := range a {
		set[d] = true
	}
	for d := range b {
		set[d] = true
	}
	return scaleSorted(set)
}
