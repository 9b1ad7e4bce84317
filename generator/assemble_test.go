package generator

import (
	"fmt"
	"github.com/regmirror/regmirror/internal/testsupport/metacmp"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/regmirror/regmirror/internal/phase2"
	"github.com/regmirror/regmirror/layout"
)

// assembleWorld is a source's content for assemble without a source: each tag a two-arch
// index of images whose configs are in the tree (for their architecture) and whose layers
// share a few base layers across repositories; some tags with a referrer. Every content
// is made from its name, so two worlds built alike hold equal (not shared) records.
type assembleWorld struct {
	dir   string // the tree
	tasks map[layout.Digest]*blobTask
	// repos: repository → tag → version; a version names the tag's content.
	repos map[string]map[string]int
	// referred: repository:tag with a referrer (repositories with referrers are never
	// taken whole).
	referred map[string]bool
	// configPerRepo: one config per repository and architecture, not per image (a
	// benchmark's world: fewer files to write).
	configPerRepo bool
}

func newAssembleWorld(dir string, repos, tags int) *assembleWorld {
	w := &assembleWorld{dir: dir, tasks: map[layout.Digest]*blobTask{}, repos: map[string]map[string]int{}, referred: map[string]bool{}}
	for i := range repos {
		name := fmt.Sprintf("r%03d", i)
		w.repos[name] = map[string]int{}
		for j := range tags {
			w.repos[name][fmt.Sprintf("t%d", j)] = 1
		}
	}
	return w
}

func (w *assembleWorld) clone() *assembleWorld {
	c := &assembleWorld{dir: w.dir, tasks: map[layout.Digest]*blobTask{}, repos: map[string]map[string]int{}, referred: maps.Clone(w.referred)}
	for name, tags := range w.repos {
		c.repos[name] = maps.Clone(tags)
	}
	return c
}

// blob is a config or layer of the world, in the tree when inTree (configs, for their
// architecture).
func (w *assembleWorld) blob(data []byte, inTree bool) (layout.Digest, *blobTask) {
	d := layout.DigestOf("sha256", data)
	t := w.tasks[d]
	if t == nil {
		t = &blobTask{done: make(chan struct{}), state: blobPresent, size: int64(len(data))}
		close(t.done)
		w.tasks[d] = t
		if inTree && w.dir != "" {
			p := filepath.Join(w.dir, layout.BlobPath(d))
			if _, err := os.Stat(p); err != nil {
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					panic(err)
				}
				if err := os.WriteFile(p, data, 0o644); err != nil {
					panic(err)
				}
			}
		}
	}
	return d, t
}

func manifestNode(mediaType string, data []byte) *node {
	return &node{digest: layout.DigestOf("sha256", data), mediaType: mediaType, data: data}
}

// image adds to cl an image of arch made from name: its manifest, config and layers (one of
// them a base layer shared across repositories); it returns the manifest.
func (w *assembleWorld) image(cl *closure, repo, name, arch string) *node {
	cfgName := name
	if w.configPerRepo {
		cfgName = repo
	}
	cfg := fmt.Appendf(nil, `{"architecture":%q,"os":"linux","name":%q}`, arch, cfgName)
	cd, ct := w.blob(cfg, true)
	cl.blobs[cd] = ct
	layers := ""
	for i, l := range []string{"base-" + arch + "-" + fmt.Sprint(len(name)%3), name + "-" + arch} {
		ld, lt := w.blob([]byte(l), false)
		cl.blobs[ld] = lt
		if i > 0 {
			layers += ","
		}
		layers += fmt.Sprintf(`{"mediaType":%q,"digest":%q,"size":%d}`, "application/vnd.oci.image.layer.v1.tar+gzip", ld, lt.size)
	}
	data := fmt.Appendf(nil, `{"schemaVersion":2,"mediaType":%q,"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":%q,"size":%d},"layers":[%s]}`,
		layout.MediaTypeOCIManifest, cd, ct.size, layers)
	n := manifestNode(layout.MediaTypeOCIManifest, data)
	cl.nodes[n.digest] = n
	return n
}

// closure is the closure of repo:tag at version v: a two-arch index, and a referrer when
// the world says so.
func (w *assembleWorld) closure(repo, tag string, v int) *closure {
	name := fmt.Sprintf("%s:%s@%d", repo, tag, v)
	children := ""
	cl := &closure{nodes: map[layout.Digest]*node{}, blobs: map[layout.Digest]*blobTask{}, referrers: map[layout.Digest][]layout.Descriptor{}}
	for i, arch := range []string{"amd64", "arm64"} {
		n := w.image(cl, repo, name, arch)
		if i > 0 {
			children += ","
		}
		children += fmt.Sprintf(`{"mediaType":%q,"digest":%q,"size":%d,"platform":{"architecture":%q,"os":"linux"}}`, n.mediaType, n.digest, len(n.data), arch)
	}
	idx := manifestNode(layout.MediaTypeOCIIndex, fmt.Appendf(nil, `{"schemaVersion":2,"mediaType":%q,"manifests":[%s]}`, layout.MediaTypeOCIIndex, children))
	cl.nodes[idx.digest] = idx
	cl.root = idx.digest
	if w.referred[repo+":"+tag] {
		sub := &closure{nodes: map[layout.Digest]*node{}, blobs: map[layout.Digest]*blobTask{}, referrers: map[layout.Digest][]layout.Descriptor{}}
		ed, et := w.blob([]byte("{}"), false)
		sd, st := w.blob([]byte("signature of "+name), false)
		sub.blobs[ed], sub.blobs[sd] = et, st
		data := fmt.Appendf(nil, `{"schemaVersion":2,"mediaType":%q,"artifactType":"application/example","config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":%q,"size":2},"layers":[{"mediaType":"application/example","digest":%q,"size":%d}],"subject":{"mediaType":%q,"digest":%q,"size":%d}}`,
			layout.MediaTypeOCIManifest, ed, sd, st.size, idx.mediaType, idx.digest, len(idx.data))
		ref := manifestNode(layout.MediaTypeOCIManifest, data)
		sub.root = ref.digest
		sub.nodes[ref.digest] = ref
		cl.referrers[idx.digest] = []layout.Descriptor{{MediaType: ref.mediaType, Digest: ref.digest, Size: int64(len(data)), ArtifactType: "application/example"}}
		cl.subs = []*closure{sub}
	}
	return cl
}

// mutate changes the world as a promotion or a cleanup would, in a few repositories.
func (w *assembleWorld) mutate(rng *rand.Rand) {
	for range 1 + rng.IntN(4) {
		names := slices.Sorted(maps.Keys(w.repos))
		if len(names) == 0 {
			w.repos["new"] = map[string]int{"latest": 1}
			continue
		}
		name := names[rng.IntN(len(names))]
		tags := w.repos[name]
		tagNames := slices.Sorted(maps.Keys(tags))
		switch rng.IntN(6) {
		case 0, 1: // a tag promoted
			if len(tagNames) > 0 {
				tags[tagNames[rng.IntN(len(tagNames))]]++
			}
		case 2: // a tag added
			tags[fmt.Sprintf("n%d", rng.IntN(100))] = 1
		case 3: // a tag deleted
			if len(tagNames) > 0 {
				delete(tags, tagNames[rng.IntN(len(tagNames))])
			}
		case 4: // a repository deleted or added
			if rng.IntN(2) == 0 {
				delete(w.repos, name)
			} else {
				w.repos[fmt.Sprintf("new%d", rng.IntN(100))] = map[string]int{"latest": 1}
			}
		case 5: // a referrer attached
			if len(tagNames) > 0 {
				w.referred[name+":"+tagNames[rng.IntN(len(tagNames))]] = true
			}
		}
	}
}

// outcomes are what discovery gives for the world against prev: a repository that prev
// records with the same tags and digests, no referrers and nothing removed, taken whole
// (as run.unchanged would); every other tag with its closure; with keepRemoved, the tags
// prev has that the world lost, kept from prev (removed).
func (w *assembleWorld) outcomes(prev *layout.Meta, keepRemoved bool, now time.Time) []outcome {
	var outs []outcome
	for name, tags := range w.repos {
		cls := map[string]*closure{}
		for tag, v := range tags {
			cls[tag] = w.closure(name, tag, v)
		}
		pr := prev.Repositories[name]
		if pr != nil && len(pr.Referrers) == 0 && len(pr.Removed) == 0 && len(pr.Tags) == len(tags) && len(pr.Manifests) > 0 {
			same := true
			for tag, cl := range cls {
				same = same && pr.Tags[tag] == cl.root && len(cl.subs) == 0
			}
			if same {
				for tag, cl := range cls {
					outs = append(outs, outcome{repo: name, tag: tag, digest: cl.root, reused: pr})
				}
				continue
			}
		}
		for tag, cl := range cls {
			outs = append(outs, outcome{repo: name, tag: tag, cl: cl})
		}
		if keepRemoved && pr != nil {
			for tag, d := range pr.Tags {
				if _, ok := tags[tag]; ok {
					continue
				}
				cl := newClosure(d)
				cl.nodes[d] = &node{digest: d, mediaType: prev.Manifests[d].MediaType, data: prev.Manifests[d].Data}
				at, ok := pr.Removed[tag]
				if !ok {
					at = now
				}
				outs = append(outs, outcome{repo: name, tag: tag, cl: cl, removed: true, removedAt: at})
			}
		}
	}
	// In an order of its own, as discovery's goroutines give them.
	rand.New(rand.NewPCG(uint64(len(outs)), 1)).Shuffle(len(outs), func(i, j int) { outs[i], outs[j] = outs[j], outs[i] })
	return outs
}

// assembleRun is a run that assembles generation prev.Generation+1 of w's tree.
func assembleRun(w *assembleWorld, prev *layout.Meta, now time.Time, archive []string, oneByOne bool) *run {
	r := &run{
		oneByOne: oneByOne,
		o:        Options{Now: func() time.Time { return now }, GCGrace: 2 * time.Hour},
		c:        &client{base: &url.URL{Scheme: "http", Host: "source.example"}},
		prev:     prev,
		gen:      prev.Generation + 1,
		blobs:    w.tasks,
		strays:   &[]os.DirEntry{},
		prog:     &progress{w: io.Discard, log: slog.New(slog.DiscardHandler)},
	}
	if w.dir != "" {
		r.tree = layout.NewTree(w.dir)
		r.blobDir = r.tree.Path(layout.BlobDir("sha256"))
	}
	for _, a := range archive {
		g, err := CompileGlob(a)
		if err != nil {
			panic(err)
		}
		r.archive = append(r.archive, g)
	}
	return r
}

// TestAssembleStartWholeDifferential: over random chains of generations (tags promoted,
// added, deleted, kept removed, archived; repositories added and deleted; referrers; a
// previous generation recording a blob or manifest no repository lists),
// assemble starting from the previous generation's maps (startWhole) gives what taking the
// repositories whole one by one gives (takeWhole): the same repositories, manifests, blob
// records, orphans, subsets and figures; and phase2.DiffKept told the repositories kept
// gives Diff's change.
func TestAssembleStartWholeDifferential(t *testing.T) {
	runs := 30
	if testing.Short() {
		runs = 8
	}
	started, hinted := 0, 0
	for seed := range uint64(runs) {
		rng := rand.New(rand.NewPCG(seed, 7))
		dir := t.TempDir()
		w := newAssembleWorld(dir, 4+rng.IntN(6), 1+rng.IntN(4))
		now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
		prev := layout.NewMeta(0)
		for step := range 6 {
			name := fmt.Sprintf("seed %d step %d", seed, step)
			keepRemoved := rng.IntN(3) == 0
			var archive []string
			if rng.IntN(3) == 0 {
				archive = []string{fmt.Sprintf("r00%d:*", rng.IntN(4))}
			}
			if rng.IntN(5) == 0 { // a record no repository lists (not written by assemble)
				d := layout.DigestOf("sha256", fmt.Appendf(nil, "unlisted %d", step))
				prev.Blobs[d] = &layout.Blob{Size: 9, Since: prev.Generation}
				if rng.IntN(2) == 0 {
					prev.Manifests[d] = &layout.Manifest{MediaType: layout.MediaTypeOCIManifest, Data: []byte("{\"unlisted\":1}")}
				}
			}
			wa, wb := w.clone(), w.clone()
			a := assembleRun(wa, prev, now, archive, false)
			ma, sa := a.assemble(wa.outcomes(prev, keepRemoved, now))
			b := assembleRun(wb, prev, now, archive, true)
			mb, sb := b.assemble(wb.outcomes(prev, keepRemoved, now))
			if a.startWhole(layout.NewMeta(0), wholeOf(wa.outcomes(prev, keepRemoved, now))) != nil {
				started++
			}
			if sa.kept != nil {
				hinted++
			}
			if got, want := sortedDigests(setOf(a.manifestsToWrite(ma, sa.whole))), sortedDigests(setOf(a.manifestsToWrite(ma, nil))); !slices.Equal(got, want) {
				t.Fatalf("%s: manifests to write, those of the repositories taken whole not looked at: got %v, want %v", name, got, want)
			}
			fa, fb := *sa, *sb
			fa.kept, fb.kept = nil, nil // said only when started (startWhole)
			if d := metacmp.Diff(ma, mb); d != "" {
				t.Fatalf("%s: %s", name, d)
			}
			if !reflect.DeepEqual(fa, fb) {
				t.Fatalf("%s: figures:\ngot  %+v\nwant %+v", name, fa, fb)
			}
			if got, want := phase2.DiffKept(prev, ma, sa.kept), phase2.Diff(prev, ma); !reflect.DeepEqual(got, want) {
				t.Fatalf("%s: phase-2 change with the repositories kept %v:\ngot  %v\nwant %v", name, sa.kept, got.Repos, want.Repos)
			}
			for tag, r := range prev.Repositories {
				if r2 := ma.Repositories[tag]; r2 != nil && r2 == r {
					t.Fatalf("%s: repository %s shared with the previous generation", name, tag)
				}
			}
			prev = ma
			now = now.Add(time.Duration(rng.IntN(3)) * time.Hour)
			w.mutate(rng)
		}
	}
	if started == 0 {
		t.Fatal("assemble never started from the previous generation: the test compared nothing")
	}
	if hinted == 0 {
		t.Fatal("assemble never said which repositories it kept: the test compared nothing")
	}
	t.Logf("%d generations started from the previous one, %d said which repositories they kept", started, hinted)
}

func wholeOf(outs []outcome) map[string]*layout.Repository {
	whole := map[string]*layout.Repository{}
	for _, o := range outs {
		if o.reused != nil {
			whole[o.repo] = o.reused
		}
	}
	return whole
}

// BenchmarkAssemblePromotion: assemble after a promotion of 10 tags in a tree of 300
// repositories of 100 tags (two-arch indexes, 90k manifests), starting from the previous
// generation's maps (startWhole) and taking the repositories whole one by one (takeWhole).
func BenchmarkAssemblePromotion(b *testing.B) {
	w := newAssembleWorld(b.TempDir(), 300, 100)
	w.configPerRepo = true
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	prev, _ := assembleRun(w, layout.NewMeta(0), now, nil, false).assemble(w.outcomes(layout.NewMeta(0), false, now))
	for i := range 10 {
		w.repos[fmt.Sprintf("r%03d", i*30)]["t0"]++
	}
	outs := w.outcomes(prev, false, now)
	for _, bc := range []struct {
		name     string
		oneByOne bool
	}{{"startWhole", false}, {"takeWhole", true}} {
		b.Run(bc.name, func(b *testing.B) {
			r := assembleRun(w, prev, now, nil, bc.oneByOne)
			for b.Loop() {
				m, st := r.assemble(outs)
				_ = phase2.DiffKept(prev, m, st.kept)
			}
		})
	}
}

func setOf(list []layout.Digest) map[layout.Digest]bool {
	set := map[layout.Digest]bool{}
	for _, d := range list {
		set[d] = true
	}
	return set
}

// TestCountListed: countListed's two halves together count each digest the repositories list
// once, those listed as manifests once, and those listed as blobs that no task concerns once
// (presentWhole's count), however many repositories list them and however (a manifest listed
// as a blob elsewhere; a digest missing from the records); and leave each record marked.
func TestCountListed(t *testing.T) {
	d := func(s string) layout.Digest { return layout.DigestOf("sha256", []byte(s)) }
	shared, own1, own2, fetched, index, missing := d("shared layer"), d("own 1"), d("own 2"), d("fetched"), d("index"), d("missing")
	whole := map[string]*layout.Repository{
		"a": {Manifests: []layout.Digest{index}, Blobs: []layout.Digest{shared, own1, fetched}},
		"b": {Manifests: []layout.Digest{index, missing}, Blobs: []layout.Digest{shared, own2, index, missing}},
		"c": {Blobs: []layout.Digest{shared, fetched}},
	}
	blobs := map[layout.Digest]*layout.Blob{}
	for _, x := range []layout.Digest{shared, own1, own2, fetched, index} {
		blobs[x] = &layout.Blob{Size: 1}
	}
	tasks := map[layout.Digest]*blobTask{fetched: {}}
	var got listedCount
	got.missing = map[layout.Digest]uint8{}
	for half := range byte(2) {
		c := countListed(whole, blobs, tasks, half)
		got.blobs += c.blobs
		got.manifests += c.manifests
		got.present += c.present
		maps.Copy(got.missing, c.missing)
	}
	want := listedCount{
		blobs:     6,                                                             // every digest listed
		manifests: 2,                                                             // index, missing
		present:   5,                                                             // shared, own1, own2, index, missing: not fetched
		missing:   map[layout.Digest]uint8{missing: listedBlob | listedManifest}, // no record
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
	for x, b := range blobs {
		how := uint8(listedBlob)
		if x == index {
			how |= listedManifest
		}
		if got := listedHow(b.Retired); got != how {
			t.Errorf("%s marked %d, want %d", x, got, how)
		}
	}
}
