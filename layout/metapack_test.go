package layout

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/klauspost/compress/zstd"
)

// canonical is m's JSON with every null, empty list and empty object left out: the content,
// whether a list is nil or empty.
func canonical(t *testing.T, m *Meta) any {
	t.Helper()
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	var prune func(v any) any
	prune = func(v any) any {
		switch x := v.(type) {
		case map[string]any:
			for k, e := range x {
				if e = prune(e); e == nil {
					delete(x, k)
				} else {
					x[k] = e
				}
			}
			if len(x) == 0 {
				return nil
			}
		case []any:
			for i, e := range x {
				x[i] = prune(e)
			}
			if len(x) == 0 {
				return nil
			}
		}
		return v
	}
	return prune(v)
}

// sameMeta fails the test unless got and want hold the same metadata.
func sameMeta(t *testing.T, what string, got, want *Meta) {
	t.Helper()
	g, w := canonical(t, got), canonical(t, want)
	if reflect.DeepEqual(g, w) {
		return
	}
	gm, wm := g.(map[string]any), w.(map[string]any)
	for k := range wm {
		if !reflect.DeepEqual(gm[k], wm[k]) {
			gb, _ := json.Marshal(gm[k])
			wb, _ := json.Marshal(wm[k])
			t.Fatalf("%s: %s differs:\ngot  %.2000s\nwant %.2000s", what, k, gb, wb)
		}
	}
	t.Fatalf("%s: got %v, want %v", what, g, w)
}

// metaGen makes random metadata and changes it as generations would.
type metaGen struct {
	rng *rand.Rand
	n   int
	now time.Time
}

func (g *metaGen) digest() Digest {
	g.n++
	return DigestOf("sha256", fmt.Appendf(nil, "%d-%d", g.n, g.rng.Uint64()))
}

func (g *metaGen) time() time.Time {
	g.now = g.now.Add(time.Duration(g.rng.IntN(3600)) * time.Second)
	return g.now
}

// image adds a manifest with a config and layers to m and r; it returns the manifest.
func (g *metaGen) image(m *Meta, r *Repository) Digest {
	d := g.digest()
	m.Manifests[d] = &Manifest{MediaType: MediaTypeOCIManifest, Data: fmt.Appendf(nil, `{"n":%d}`, g.n)}
	m.Blobs[d] = &Blob{Size: int64(g.rng.IntN(5000)), Since: m.Generation, Subsets: g.rng.Uint64N(4)}
	r.Manifests = append(r.Manifests, d)
	for range 1 + g.rng.IntN(3) {
		b := g.digest()
		m.Blobs[b] = &Blob{Size: int64(g.rng.IntN(1 << 30)), Since: m.Generation, Subsets: g.rng.Uint64N(4)}
		r.Blobs = append(r.Blobs, b)
	}
	return d
}

// publishTag publishes the next generation of m, with tag of repository repo pointing at a
// new image.
func (g *metaGen) publishTag(t *testing.T, tree *Tree, m *Meta, repo, tag string) {
	t.Helper()
	m.Generation++
	r := m.Repositories[repo]
	r.Tags[tag] = g.image(m, r)
	sortRepo(r)
	if _, err := tree.Publish(m); err != nil {
		t.Fatal(err)
	}
}

func (g *metaGen) repo(m *Meta) *Repository {
	r := &Repository{Tags: map[string]Digest{}, Manifests: []Digest{}, Blobs: []Digest{}}
	for i := range 1 + g.rng.IntN(5) {
		r.Tags[fmt.Sprintf("t%d", i)] = g.image(m, r)
	}
	sortRepo(r)
	return r
}

func sortRepo(r *Repository) {
	for _, l := range []*[]Digest{&r.Manifests, &r.Blobs, &r.Retiring, &r.RetiringBlobs} {
		slices.SortFunc(*l, compareDigests)
		*l = slices.Compact(*l)
	}
}

func (g *metaGen) meta() *Meta {
	m := NewMeta(1)
	m.Source = "https://source.example/"
	m.GCGrace = 168 * time.Hour
	m.Subsets = []string{"amd64", "arm64", AnyArchitecture}
	m.Orphans = map[Digest]*Orphan{}
	for i := range 6 {
		m.Repositories[fmt.Sprintf("repo/%d", i)] = g.repo(m)
	}
	m.Origin = "https://origin.example/"
	for i := range 3 {
		m.Mirrors = append(m.Mirrors, &Mirror{Name: fmt.Sprintf("m%d", i), URL: fmt.Sprintf("https://m%d.example/", i), Country: "DE", Enabled: true})
	}
	m.Regions = map[string]*Region{"DE": {Tiers: [][]string{{"m0", "m1"}, {"m2"}}, VariantSet: 0}, "global": {Tiers: [][]string{{"m2"}}, VariantSet: -1}}
	m.VariantSets = []*VariantSet{{Mirrors: []string{"m0", "m1"}}}
	return m
}

// crawl changes what a crawl changes: the mirrors' state, regions, variant sets.
func (g *metaGen) crawl(m *Meta) {
	for _, mi := range m.Mirrors {
		mi.Generation = m.Generation - uint64(g.rng.IntN(2))
		mi.Healthy = g.rng.IntN(4) != 0
		mi.Checked = g.time()
	}
	m.MinMirrors = g.rng.IntN(3)
	m.Regions["DE"].Tiers = [][]string{{m.Mirrors[g.rng.IntN(3)].Name}}
	m.VariantSets[0].Mirrors = []string{m.Mirrors[g.rng.IntN(3)].Name}
}

// promote changes what a generation changes, at random: tags moved (the old manifest
// retiring), added and removed, records updated, orphans, referrers, archived tags,
// repositories added and dropped.
func (g *metaGen) promote(m *Meta) {
	m.Generation++
	m.Created = g.time()
	if m.Orphans == nil {
		m.Orphans = map[Digest]*Orphan{}
	}
	names := slices.Sorted(func(yield func(string) bool) {
		for n := range m.Repositories {
			if !yield(n) {
				return
			}
		}
	})
	for range 1 + g.rng.IntN(4) {
		r := m.Repositories[names[g.rng.IntN(len(names))]]
		switch g.rng.IntN(8) {
		case 0, 1, 2: // move a tag; the old manifest retires
			tags := slices.Sorted(func(yield func(string) bool) {
				for t := range r.Tags {
					if !yield(t) {
						return
					}
				}
			})
			if len(tags) == 0 {
				r.Tags["t0"] = g.image(m, r)
				break
			}
			tag := tags[g.rng.IntN(len(tags))]
			old := r.Tags[tag]
			r.Tags[tag] = g.image(m, r)
			r.Manifests = slices.DeleteFunc(r.Manifests, func(d Digest) bool { return d == old })
			r.Retiring = append(r.Retiring, old)
			m.Blobs[old].Retired = g.time()
		case 3: // untag
			for tag := range r.Tags {
				delete(r.Tags, tag)
				break
			}
		case 4: // referrers
			if len(r.Manifests) > 0 {
				s := r.Manifests[g.rng.IntN(len(r.Manifests))]
				if r.Referrers[s] != nil && g.rng.IntN(2) == 0 {
					delete(r.Referrers, s)
				} else {
					setKey(&r.Referrers, s, []Descriptor{{MediaType: MediaTypeOCIManifest, Size: 3, Digest: g.digest(), ArtifactType: "x", Annotations: map[string]string{"a": "b"}}})
				}
			}
		case 5: // archive a tag, or unarchive them all
			if len(r.Archived) > 0 && g.rng.IntN(2) == 0 {
				r.Archived, r.Removed = nil, nil
			} else {
				r.Archived = []string{"t0"}
				r.Removed = map[string]time.Time{"t0": g.time()}
			}
		case 6: // retiring content ends: files become orphans, orphans go
			for _, d := range r.Retiring {
				b := m.Blobs[d]
				delete(m.Blobs, d)
				delete(m.Manifests, d)
				m.Orphans[d] = &Orphan{Size: b.Size, Since: b.Since, Unreferenced: g.time(), Subsets: b.Subsets}
			}
			r.Retiring = nil
			for d := range m.Orphans {
				if g.rng.IntN(2) == 0 {
					delete(m.Orphans, d)
				}
			}
		case 7: // a record changes
			for _, d := range r.Blobs {
				if g.rng.IntN(3) == 0 {
					m.Blobs[d].Subsets = g.rng.Uint64N(8)
					m.Blobs[d].Former, m.Blobs[d].Left = 1, g.time()
				}
			}
		}
		sortRepo(r)
	}
	switch g.rng.IntN(6) {
	case 0:
		m.Repositories[fmt.Sprintf("repo/new%d", g.n)] = g.repo(m)
	case 1:
		if len(names) > 3 {
			delete(m.Repositories, names[g.rng.IntN(len(names))])
		}
	}
}

// TestMetaPacksRoundTrip publishes random metadata over many generations (promotions,
// crawls, no-op runs), each loaded as generate and crawl load it and changed in place, and
// checks that every generation reads back exactly, that deltas are merged and bases
// rewritten, and that the chain stays short.
func TestMetaPacksRoundTrip(t *testing.T) {
	for seed := range uint64(3) {
		t.Run(fmt.Sprint("seed ", seed), func(t *testing.T) {
			g := &metaGen{rng: rand.New(rand.NewPCG(seed, 1)), now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
			tree := NewTree(t.TempDir())
			m := g.meta()
			if _, err := tree.Publish(m); err != nil {
				t.Fatal(err)
			}
			var merges, rewrites, appends, reused int
			prev := readRootT(t, tree)
			// A Loader follows every generation, as serve does: each load must give the
			// generation, and leave the one it read before as it was (they share records).
			loader := NewTree(tree.Dir()).NewLoader()
			lastLoaded, _, _, err := loader.Load()
			if err != nil {
				t.Fatal(err)
			}
			lastWant := canonical(t, lastLoaded)
			var extended int
			for step := range 60 {
				what := fmt.Sprintf("step %d", step)
				var err error
				// Mostly as generate and crawl do (the Meta loaded, changed in place);
				// sometimes loaded without keeping a copy, so that the publish reads the
				// live generation itself.
				if step%7 == 3 {
					m, _, err = NewTree(tree.Dir()).Load()
					tree = NewTree(tree.Dir())
				} else {
					m, _, err = tree.LoadForUpdate()
				}
				if err != nil {
					t.Fatalf("%s: %v", what, err)
				}
				switch g.rng.IntN(4) {
				case 0:
					what += " (crawl)"
					g.crawl(m)
				case 1:
					what += " (no change)"
					m.Generation++
				default:
					what += " (generation)"
					g.promote(m)
				}
				want := canonical(t, m)
				// A file the new generation does not need is not written (the file list,
				// made before the switch, would name it, and pruning delete it): the
				// metadata write alone, without the publish's pruning.
				before := metaDirT(t, tree)
				written, wait := tree.startMeta(m)
				d, needs, err := wait()
				if err != nil {
					t.Fatalf("%s: %v", what, err)
				}
				// The change startMeta returned is the diff, whatever packs the writer
				// merged meanwhile: the publish reads it while the metadata is written.
				if written != nil {
					if got, want := written.touched, written.prev.diff(m); !reflect.DeepEqual(got, want) {
						t.Fatalf("%s: the change after the metadata's write: got %+v, want the diff %+v", what, got, want)
					}
				}
				before[d.Hex()+".json.zst"] = true
				for _, n := range needs {
					before[path.Base(n)] = true
				}
				for f := range metaDirT(t, tree) {
					if !before[f] {
						t.Fatalf("%s: metadata file %s written, but the generation does not need it", what, f)
					}
				}
				if _, err := tree.Publish(m); err != nil {
					t.Fatalf("%s: %v", what, err)
				}
				got, _, err := NewTree(tree.Dir()).Load()
				if err != nil {
					t.Fatalf("%s: loading: %v", what, err)
				}
				if g := canonical(t, got); !reflect.DeepEqual(g, want) {
					sameMeta(t, what, got, m)
					t.Fatalf("%s: the published Meta changed while publishing", what)
				}
				lastChain := chainName(loader.last.packs)
				shared := loader.last.shared(readRootT(t, tree)) > 0
				if shared {
					extended++
				}
				loaded, _, change, err := loader.Load()
				if err != nil {
					t.Fatalf("%s: Loader: %v", what, err)
				}
				if got, want := change.Chain, chainName(readRootT(t, tree).Packs); got != want {
					t.Fatalf("%s: Loader: change's Chain %q, want %q", what, got, want)
				}
				if shared {
					if change.Base != lastChain {
						t.Fatalf("%s: Loader: change's Base %q, want the last load's chain %q", what, change.Base, lastChain)
					}
					changeCovers(t, what, "manifest", change.Manifests, lastLoaded.Manifests, loaded.Manifests)
					changeCovers(t, what, "blob", change.Blobs, lastLoaded.Blobs, loaded.Blobs)
					changeCovers(t, what, "repository", change.Repositories, lastLoaded.Repositories, loaded.Repositories)
				} else if change.Base != "" || len(change.Manifests)+len(change.Blobs)+len(change.Repositories) > 0 {
					t.Fatalf("%s: Loader: read whole, but the change has Base %q and keys", what, change.Base)
				}
				if g := canonical(t, loaded); !reflect.DeepEqual(g, want) {
					sameMeta(t, what+": Loader", loaded, m)
				}
				if g := canonical(t, lastLoaded); !reflect.DeepEqual(g, lastWant) {
					t.Fatalf("%s: the Loader changed the generation it read before", what)
				}
				lastLoaded, lastWant = loaded, want
				root := readRootT(t, tree)
				st := readStampT(t, tree)
				files, err := tree.MetaFiles(st)
				if err != nil {
					t.Fatal(err)
				}
				needs = nil
				for _, f := range files[1:] {
					needs = append(needs, strings.TrimPrefix(f, MetaDir+"/"))
				}
				if got, want := st.MetaFiles, strings.Join(needs, " "); got != want {
					t.Fatalf("%s: stamp names metadata files %q, want %q", what, got, want)
				}
				switch {
				case slices.Equal(root.Packs, prev.Packs):
					reused++
				case len(root.Packs) == 1:
					rewrites++
				case len(root.Packs) == len(prev.Packs)+1 && slices.Equal(root.Packs[:len(prev.Packs)], prev.Packs):
					appends++
				default:
					merges++
				}
				if len(root.Packs) > maxPacks {
					t.Fatalf("%s: %d packs, want at most %d", what, len(root.Packs), maxPacks)
				}
				prev = root
			}
			t.Logf("packs reused %d, appended %d, merged %d, base rewritten %d; the Loader read %d generations from the one before", reused, appends, merges, rewrites, extended)
			if reused == 0 || appends == 0 || merges == 0 || rewrites == 0 {
				t.Errorf("packs reused %d, appended %d, merged %d, base rewritten %d times: want each at least once", reused, appends, merges, rewrites)
			}
			if extended < reused+appends+merges {
				t.Errorf("the Loader read %d generations from the one before, want at least %d (the chain reused, appended to or merged)", extended, reused+appends+merges)
			}
		})
	}
}

// changeCovers checks that keys (a ContentChange's) name every key whose record differs from
// before to after, and no key twice: any other has the very same record in both, or none.
func changeCovers[K comparable, V any](t *testing.T, what, kind string, keys []K, before, after map[K]*V) {
	t.Helper()
	in := map[K]bool{}
	for _, k := range keys {
		if in[k] {
			t.Fatalf("%s: Loader: the change names %s %v twice", what, kind, k)
		}
		in[k] = true
	}
	for _, m := range []map[K]*V{before, after} {
		for k := range m {
			b, hadB := before[k]
			a, hasA := after[k]
			if !in[k] && (hadB != hasA || a != b) {
				t.Fatalf("%s: Loader: %s %v changed (present %v -> %v), but the change does not name it", what, kind, k, hadB, hasA)
			}
		}
	}
}

func readRootT(t testing.TB, tree *Tree) *metaRoot {
	t.Helper()
	s, err := tree.ReadStamp()
	if err != nil {
		t.Fatal(err)
	}
	js, err := tree.readMetaFile(s.Meta, s.Generation)
	if err != nil {
		t.Fatal(err)
	}
	r, err := decodeRoot(js)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestMetaCrawlWritesNetworkOnly checks that a crawl's publish writes a network file and a
// root, and that a generation that changes a few tags writes one small pack.
func TestMetaCrawlWritesNetworkOnly(t *testing.T) {
	g := &metaGen{rng: rand.New(rand.NewPCG(7, 7)), now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	tree := NewTree(t.TempDir())
	m := g.meta()
	for i := range 200 {
		m.Repositories[fmt.Sprintf("big/%d", i)] = g.repo(m)
	}
	if _, err := tree.Publish(m); err != nil {
		t.Fatal(err)
	}
	before, root := metaDirT(t, tree), readRootT(t, tree)
	m, _, err := tree.LoadForUpdate()
	if err != nil {
		t.Fatal(err)
	}
	g.crawl(m)
	if _, err := tree.Publish(m); err != nil {
		t.Fatal(err)
	}
	after := readRootT(t, tree)
	var added []string
	for f := range metaDirT(t, tree) {
		if !before[f] {
			added = append(added, f)
		}
	}
	sort.Strings(added)
	wantAdded := []string{path.Base(after.Network.Ref), path.Base(readStampT(t, tree).Meta)}
	sort.Strings(wantAdded)
	if !slices.Equal(added, wantAdded) || !slices.Equal(after.Packs, root.Packs) {
		t.Errorf("crawl: added %v, packs %v; want the network file and root %v and the same packs %v", added, after.Packs, wantAdded, root.Packs)
	}

	m, _, err = tree.LoadForUpdate()
	if err != nil {
		t.Fatal(err)
	}
	g.publishTag(t, tree, m, "big/7", "t0")
	next := readRootT(t, tree)
	if len(next.Packs) != 2 || next.Packs[0] != root.Packs[0] {
		t.Fatalf("promotion: packs %v, want the base %v and one delta", next.Packs, root.Packs[0])
	}
	if d, b := next.Packs[1].Size, next.Packs[0].Size; d*50 > b {
		t.Errorf("promotion of one tag: delta %d bytes, base %d: want the delta under 2%% of the base", d, b)
	}
}

func metaDirT(t testing.TB, tree *Tree) map[string]bool {
	t.Helper()
	ents, err := os.ReadDir(tree.Path(MetaFilesDir))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, e := range ents {
		out[e.Name()] = true
	}
	return out
}

func readStampT(t *testing.T, tree *Tree) Stamp {
	t.Helper()
	s, err := tree.ReadStamp()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestMetaFilesMissingOrCorrupt checks that a generation whose network file or pack is
// missing or does not match its name is refused with an error naming the file.
func TestMetaFilesMissingOrCorrupt(t *testing.T) {
	for _, tc := range []struct {
		name   string
		file   func(r *metaRoot) string
		break_ func(p string) error
	}{
		{"network missing", func(r *metaRoot) string { return r.Network.Ref }, os.Remove},
		{"base missing", func(r *metaRoot) string { return r.Packs[0].Ref }, os.Remove},
		{"delta missing", func(r *metaRoot) string { return r.Packs[1].Ref }, os.Remove},
		{"base corrupt", func(r *metaRoot) string { return r.Packs[0].Ref }, flipByte},
		{"base re-encoded", func(r *metaRoot) string { return r.Packs[0].Ref }, reencode},
		{"delta corrupt", func(r *metaRoot) string { return r.Packs[1].Ref }, flipByte},
		{"network corrupt", func(r *metaRoot) string { return r.Network.Ref }, flipByte},
	} {
		// vouched: the runs before the break kept vouches (UseVouches), and the next one
		// takes them: a file broken since is refused all the same.
		for _, vouched := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/vouched=%v", tc.name, vouched), func(t *testing.T) {
				g := &metaGen{rng: rand.New(rand.NewPCG(1, 2)), now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
				tree, dir, cache, save := vouchingTree(t, vouched)
				m := g.meta()
				if _, err := tree.Publish(m); err != nil {
					t.Fatal(err)
				}
				g.publishTag(t, tree, m, "repo/1", "new")
				root := readRootT(t, tree)
				if len(root.Packs) != 2 {
					t.Fatalf("packs: got %d, want a base and a delta", len(root.Packs))
				}
				rel := path.Join(MetaDir, tc.file(root))
				if vouched {
					tree = nextVouched(dir, cache, save, true)
					b, err := os.ReadFile(tree.Path(rel))
					if err != nil {
						t.Fatal(err)
					}
					if d, _ := metaDigestFromRef(tc.file(root)); !tree.vouched(rel, b, d.Hex()) {
						t.Fatalf("%s is not vouched for before it is broken", rel)
					}
				}
				if err := tc.break_(tree.Path(rel)); err != nil {
					t.Fatal(err)
				}
				_, _, err := tree.Load()
				var mf *MetaFileError
				if !errors.As(err, &mf) || mf.Path != rel || !strings.Contains(err.Error(), rel) {
					t.Fatalf("Load: got %v, want a *MetaFileError naming %s", err, rel)
				}
				if mf.Generation != m.Generation || !strings.Contains(mf.Hint(), rel) {
					t.Errorf("error: generation %d, hint %q; want generation %d and a hint naming the file", mf.Generation, mf.Hint(), m.Generation)
				}
			})
		}
	}
}

// reencode compresses the metadata file at p again, at another level: the same content in
// other bytes, which only the check against its name tells from the file it was.
func reencode(p string) error {
	raw, err := os.ReadFile(p)
	if err != nil {
		return err
	}
	js, err := decompressMeta(raw)
	if err != nil {
		return err
	}
	zw, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest))
	if err != nil {
		return err
	}
	again := zw.EncodeAll(js, nil)
	zw.Close()
	if bytes.Equal(again, raw) {
		return errors.New("re-encoded to the same bytes")
	}
	return os.WriteFile(p, again, 0o644)
}

func flipByte(p string) error {
	b, err := os.ReadFile(p)
	if err != nil {
		return err
	}
	b[len(b)/2] ^= 1
	return os.WriteFile(p, b, 0o644)
}

// TestMetaFormat2TreeLoads reads a tree written by format 2 (one metadata file), and checks
// that the next publish writes format 3 holding the same content.
func TestMetaFormat2TreeLoads(t *testing.T) {
	g := &metaGen{rng: rand.New(rand.NewPCG(3, 4)), now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	tree := NewTree(t.TempDir())
	m := g.meta()
	if _, err := tree.Publish(m); err != nil {
		t.Fatal(err)
	}
	// Replace the live publication's stamp by a format 2 stamp naming a format 2 file.
	m.Format = 2
	raw, d, err := EncodeMeta(m)
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(tree.Path(MetaPath(d)), raw); err != nil {
		t.Fatal(err)
	}
	sb, _ := json.Marshal(Stamp{Format: 2, Generation: m.Generation, Meta: metaRef(d), Created: time.Now().UTC()})
	live, err := tree.LivePublication()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(tree.Path(path.Join(PubPath(live), PubStamp)), sb, 0o644); err != nil {
		t.Fatal(err)
	}
	got, _, err := tree.LoadForUpdate()
	if err != nil {
		t.Fatalf("loading format 2: %v", err)
	}
	m.Format = FormatVersion
	sameMeta(t, "format 2", got, m)
	got.Generation++
	if _, err := tree.Publish(got); err != nil {
		t.Fatal(err)
	}
	if r := readRootT(t, tree); len(r.Packs) != 1 {
		t.Errorf("after format 2: %d packs, want a base", len(r.Packs))
	}
	again, _, err := NewTree(tree.Dir()).Load()
	if err != nil {
		t.Fatal(err)
	}
	sameMeta(t, "format 3 after format 2", again, got)
}

// TestMetaFieldsStored guards against a Meta field the format 3 files would not store: every
// field of Meta is one this file knows where to put.
func TestMetaFieldsStored(t *testing.T) {
	stored := map[string]string{
		"Format": "root", "Generation": "root", "Created": "root", "Source": "root", "Subsets": "root", "GCGrace": "root",
		"Repositories": "pack", "Manifests": "pack", "Blobs": "pack", "Orphans": "pack",
		"Origin": "network", "Mirrors": "network", "MinMirrors": "network", "Regions": "network", "VariantSets": "network",
		"blobsCopy": "none: how Blobs was made (StartBlobs), not content",
	}
	for f := range reflect.TypeFor[Meta]().Fields() {
		if stored[f.Name] == "" {
			t.Errorf("Meta.%s: not stored by format 3 (metapack.go): add it to the root, the network file or the packs", f.Name)
		}
	}
	for f := range reflect.TypeFor[Repository]().Fields() {
		if _, ok := reflect.TypeFor[repoChange]().FieldByName(f.Name); !ok {
			t.Errorf("Repository.%s: repoChange cannot change it", f.Name)
		}
	}
}

// FuzzMetaDocs decodes untrusted format 3 documents (a root, a pack applied to some content):
// errors, never a panic.
func FuzzMetaDocs(f *testing.F) {
	d := DigestOf("sha256", []byte("x")).String()
	f.Add([]byte(`{"format":3,"kind":"root","generation":2,"network":{"ref":"meta/` + strings.Repeat("a", 64) + `.json.zst","size":3},"packs":[{"ref":"meta/../../x","size":1}]}`))
	f.Add([]byte(`{"format":3,"kind":"pack","manifests":{"` + d + `":{"mediaType":"a","data":"e30="}},"repositories":{"r":{"tags":{"t":"` + d + `"}}}}`))
	f.Add([]byte(`{"format":3,"kind":"pack","repositoryChanges":{"r":{"untag":["t"],"manifests":{"add":["` + d + `"]},"archived":[],"removed":{}}}}`))
	f.Add([]byte(`{"format":3,"kind":"pack","blobs":{"` + d + `":null}}`))
	for _, g := range []string{"168h0m0s", "-5s", "a week"} {
		f.Add([]byte(`{"format":3,"kind":"root","generation":2,"gcGrace":"` + g + `","network":{"ref":"meta/` + strings.Repeat("a", 64) + `.json.zst","size":3},"packs":[{"ref":"meta/` + strings.Repeat("b", 64) + `.json.zst","size":1}]}`))
	}
	f.Fuzz(func(t *testing.T, js []byte) {
		if r, err := decodeRoot(js); err == nil {
			if g, err := time.ParseDuration(r.GCGrace); r.GCGrace != "" && (err != nil || g < 0) {
				t.Fatalf("root accepted with gcGrace %q", r.GCGrace)
			}
			for _, p := range append([]metaFileRef{r.Network}, r.Packs...) {
				if _, err := metaDigestFromRef(p.Ref); err != nil {
					t.Fatalf("root accepted with a bad name %q", p.Ref)
				}
			}
		}
		var p metaPack
		if decodeMetaDoc(js, metaKindPack, &p) != nil {
			return
		}
		m := NewMeta(1)
		m.Orphans = map[Digest]*Orphan{}
		m.Repositories["r"] = &Repository{}
		if p.apply(m) == nil {
			_ = m.validateNames()
			newTouched().addPack(&p)
		}
	})
}

// scaleGen returns the scale benchmarks' generator and their size: REGMIRROR_SCALE_MANIFESTS,
// or def without it.
func scaleGen(def int) (*metaGen, int) {
	n := def
	if v := os.Getenv("REGMIRROR_SCALE_MANIFESTS"); v != "" {
		fmt.Sscan(v, &n)
	}
	return &metaGen{rng: rand.New(rand.NewPCG(1, 1)), now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}, n
}

// scale returns metadata shaped like the scale benchmark's tree, n manifests in repositories
// of 100 two-arch indexes (3 manifests and 4 blobs a tag), and the function adding a tag.
func (g *metaGen) scale(n int) (*Meta, func(r *Repository) Digest) {
	m := g.meta()
	m.Repositories = map[string]*Repository{}
	m.Manifests, m.Blobs = map[Digest]*Manifest{}, map[Digest]*Blob{}
	tag := func(r *Repository) Digest {
		var children []string
		for _, arch := range []string{"amd64", "arm64"} {
			cfg, layer := g.digest(), g.digest()
			data := fmt.Appendf(nil, `{"schemaVersion":2,"mediaType":"%s","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"%s","size":%d}]}`,
				MediaTypeOCIManifest, cfg, 600+g.rng.IntN(400), layer, g.rng.IntN(1<<28))
			d := DigestOf("sha256", data)
			m.Manifests[d] = &Manifest{MediaType: MediaTypeOCIManifest, Data: data}
			for _, x := range []Digest{d, cfg, layer} {
				m.Blobs[x] = &Blob{Size: int64(g.rng.IntN(1 << 28)), Since: m.Generation, Subsets: 1}
			}
			r.Manifests = append(r.Manifests, d)
			r.Blobs = append(r.Blobs, cfg, layer)
			children = append(children, fmt.Sprintf(`{"mediaType":"%s","digest":"%s","size":%d,"platform":{"architecture":"%s","os":"linux"}}`, MediaTypeOCIManifest, d, len(data), arch))
		}
		data := fmt.Appendf(nil, `{"schemaVersion":2,"mediaType":"%s","manifests":[%s]}`, MediaTypeOCIIndex, strings.Join(children, ","))
		d := DigestOf("sha256", data)
		m.Manifests[d] = &Manifest{MediaType: MediaTypeOCIIndex, Data: data}
		m.Blobs[d] = &Blob{Size: int64(len(data)), Since: m.Generation, Subsets: 4}
		r.Manifests = append(r.Manifests, d)
		return d
	}
	for i := range n / 300 {
		r := &Repository{Tags: map[string]Digest{}}
		for j := range 100 {
			r.Tags[fmt.Sprintf("t%d", j)] = tag(r)
		}
		sortRepo(r)
		m.Repositories[fmt.Sprintf("scale/r%d", i)] = r
	}
	return m, tag
}

// promoteScale makes the next generation of scale's metadata of n manifests (tag its
// function adding a tag): 10 tags moved to new images, the old ones retiring.
func (g *metaGen) promoteScale(m *Meta, n int, tag func(r *Repository) Digest) {
	m.Generation++
	for i := range 10 {
		r := m.Repositories[fmt.Sprintf("scale/r%d", i*7%(n/300))]
		old := r.Tags["t1"]
		r.Tags["t1"] = tag(r)
		r.Manifests = slices.DeleteFunc(r.Manifests, func(d Digest) bool { return d == old })
		r.Retiring = append(r.Retiring, old)
		m.Blobs[old].Retired = g.time()
		sortRepo(r)
	}
}

// BenchmarkMetaPromotion publishes a 10-tag promotion and then a crawl of metadata shaped like
// the scale benchmark's tree (REGMIRROR_SCALE_MANIFESTS, default 90000: 300 repositories of
// 100 two-arch indexes, 3 manifests and 4 blobs a tag) and reports what each writes into
// regmirror/meta/: what a copy of the tree transfers for the metadata.
func BenchmarkMetaPromotion(b *testing.B) {
	g, n := scaleGen(90000)
	m, tag := g.scale(n)
	tree := NewTree(b.TempDir())
	if _, err := tree.Publish(m); err != nil {
		b.Fatal(err)
	}
	base := float64(readRootT(b, tree).Packs[0].Size) / 1024
	written := func(step func(m *Meta)) (float64, time.Duration) {
		before := metaDirT(b, tree)
		start := time.Now()
		m, _, err := tree.LoadForUpdate()
		if err != nil {
			b.Fatal(err)
		}
		loaded := time.Since(start)
		step(m)
		if _, err := tree.Publish(m); err != nil {
			b.Fatal(err)
		}
		var size int64
		for f := range metaDirT(b, tree) {
			if !before[f] {
				fi, err := os.Stat(tree.Path(MetaFilesDir + "/" + f))
				if err != nil {
					b.Fatal(err)
				}
				size += fi.Size()
			}
		}
		return float64(size) / 1024, loaded
	}
	for b.Loop() {
		promo, loaded := written(func(m *Meta) { g.promoteScale(m, n, tag) })
		crawl, _ := written(func(m *Meta) {
			for _, mi := range m.Mirrors {
				mi.Checked = g.time()
			}
		})
		b.ReportMetric(promo, "promotion-KiB")
		b.ReportMetric(crawl, "crawl-KiB")
		b.ReportMetric(loaded.Seconds(), "load-s")
		b.ReportMetric(base, "base-KiB")
	}
}

// TestMetaLoadForSuccessor checks the publish of a successor built as a new Meta, as generate
// builds it, after LoadForSuccessor (which keeps the loaded content without a copy): the
// loaded Meta is left as it was, the new content reads back, and the publish wrote one delta.
func TestMetaLoadForSuccessor(t *testing.T) {
	g := &metaGen{rng: rand.New(rand.NewPCG(11, 11)), now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	tree := NewTree(t.TempDir())
	m := g.meta()
	for i := range 50 {
		m.Repositories[fmt.Sprintf("big/%d", i)] = g.repo(m)
	}
	if _, err := tree.Publish(m); err != nil {
		t.Fatal(err)
	}
	root := readRootT(t, tree)
	loaded, _, err := tree.LoadForSuccessor()
	if err != nil {
		t.Fatal(err)
	}
	before := canonical(t, loaded)
	// The successor: new maps, the unchanged records shared, one repository replaced.
	next := NewMeta(loaded.Generation + 1)
	next.Created, next.Source, next.Subsets = loaded.Created, loaded.Source, loaded.Subsets
	next.Origin, next.Mirrors, next.MinMirrors, next.Regions, next.VariantSets = loaded.Origin, loaded.Mirrors, loaded.MinMirrors, loaded.Regions, loaded.VariantSets
	next.Manifests, next.Blobs = maps.Clone(loaded.Manifests), maps.Clone(loaded.Blobs)
	next.Orphans, next.Repositories = maps.Clone(loaded.Orphans), maps.Clone(loaded.Repositories)
	old := next.Repositories["big/7"]
	r := &Repository{Tags: maps.Clone(old.Tags), Manifests: slices.Clone(old.Manifests), Blobs: slices.Clone(old.Blobs)}
	r.Tags["t0"] = g.image(next, r)
	sortRepo(r)
	next.Repositories["big/7"] = r
	if _, err := tree.Publish(next); err != nil {
		t.Fatal(err)
	}
	if got := canonical(t, loaded); !reflect.DeepEqual(got, before) {
		t.Errorf("the loaded Meta changed in the publish")
	}
	got, _, err := NewTree(tree.Dir()).Load()
	if err != nil {
		t.Fatal(err)
	}
	sameMeta(t, "successor", got, next)
	if after := readRootT(t, tree); len(after.Packs) != 2 || after.Packs[0] != root.Packs[0] {
		t.Errorf("packs %v, want the base %v and one delta", after.Packs, root.Packs[0])
	}
}

// TestEncodePack checks that a pack encoded a record at a time is what encoding/json gives
// for it, byte for byte: a base, deltas of random promotions, and an empty pack.
func TestEncodePack(t *testing.T) {
	g := &metaGen{rng: rand.New(rand.NewPCG(3, 3)), now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	m := g.meta()
	m.Repositories["<html&é>"] = g.repo(m) // keys json escapes
	packs := map[string]*metaPack{"base": all(m).buildPack(m), "empty": {Format: 3, Kind: metaKindPack}}
	for i := range 8 {
		before := snapshot("", m)
		g.promote(m)
		packs[fmt.Sprintf("delta %d", i)] = before.diff(m).buildPack(m)
	}
	for name, p := range packs {
		t.Run(name, func(t *testing.T) {
			var got, want bytes.Buffer
			if err := encodePack(&got, p); err != nil {
				t.Fatal(err)
			}
			if err := json.NewEncoder(&want).Encode(p); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got.Bytes(), want.Bytes()) {
				t.Errorf("got  %.3000s\nwant %.3000s", got.Bytes(), want.Bytes())
			}
		})
	}
}

// BenchmarkDecodePack decodes the base pack of the scale benchmark's tree
// (REGMIRROR_SCALE_MANIFESTS, default 9000) from its JSON.
func BenchmarkDecodePack(b *testing.B) { benchDecodePack(b, scaleBasePack(b)) }

// scaleBasePack is the JSON of the scale benchmark's base pack (REGMIRROR_SCALE_MANIFESTS,
// default 9000).
func scaleBasePack(b *testing.B) []byte {
	b.Helper()
	g, n := scaleGen(9000)
	m, _ := g.scale(n)
	var js bytes.Buffer
	if err := encodePack(&js, all(m).buildPack(m)); err != nil {
		b.Fatal(err)
	}
	return js.Bytes()
}

// benchDecodePack decodes the pack js from its JSON.
func benchDecodePack(b *testing.B, js []byte) {
	b.SetBytes(int64(len(js)))
	b.ReportAllocs()
	for b.Loop() {
		var p metaPack
		if err := decodePack(bytes.NewReader(js), &p); err != nil {
			b.Fatal(err)
		}
	}
}

// FuzzDecodePack checks that a pack decoded a record at a time (decodePack) is what
// decodeMetaDoc gives: the same pack when either accepts it.
func FuzzDecodePack(f *testing.F) {
	g := &metaGen{rng: rand.New(rand.NewPCG(5, 5)), now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	m := g.meta()
	var b bytes.Buffer
	if err := encodePack(&b, all(m).buildPack(m)); err != nil {
		f.Fatal(err)
	}
	f.Add(b.String())
	before := snapshot("", m)
	g.promote(m)
	b.Reset()
	if err := encodePack(&b, before.diff(m).buildPack(m)); err != nil {
		f.Fatal(err)
	}
	f.Add(b.String())
	for _, s := range []string{`{"format":3,"kind":"pack","manifests":null}`, `{"kind":"pack","format":3,"Blobs":{}}`,
		`{"format":3,"kind":"pack","x":[1]} {}`, `{"format":3}`, `{"format":3,"kind":"pack","blobs":{"sha256:00":{}}}`} {
		f.Add(s)
	}
	for _, c := range decodePackCases {
		f.Add(c.js)
	}
	f.Fuzz(func(t *testing.T, js string) {
		for _, r := range []io.Reader{strings.NewReader(js), iotest.OneByteReader(strings.NewReader(js))} {
			checkDecodePack(t, js, r)
		}
	})
}

// checkDecodePack checks that decodePack reading js from r gives what decodeMetaDoc gives:
// the same pack, or both an error.
func checkDecodePack(t *testing.T, js string, r io.Reader) {
	t.Helper()
	var want, got metaPack
	wantErr := decodeMetaDoc([]byte(js), metaKindPack, &want)
	gotErr := decodePack(r, &got)
	if (gotErr == nil) != (wantErr == nil) {
		t.Fatalf("decodePack error %v, decodeMetaDoc error %v", gotErr, wantErr)
	}
	if gotErr == nil && !reflect.DeepEqual(got, want) {
		t.Fatalf("decodePack gives %+v, decodeMetaDoc %+v", got, want)
	}
}

// TestLoaderUndoesDeltas checks that a Loader reads a chain sharing only a prefix with the last
// one it read from the last one, undoing the deltas that chain no longer has: a chain whose
// delta was replaced by another that leaves the first one's keys alone (not what compaction
// writes, whose merged delta names every key of the deltas it replaces, but what a chain may
// hold), and the base alone. Each read gives what reading the chain whole gives, and a change
// naming every key whose record differs.
func TestLoaderUndoesDeltas(t *testing.T) {
	for seed := range uint64(8) {
		t.Run(fmt.Sprint("seed ", seed), func(t *testing.T) {
			g := &metaGen{rng: rand.New(rand.NewPCG(seed, 2)), now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
			tree := NewTree(t.TempDir())
			if _, err := tree.Publish(g.meta()); err != nil {
				t.Fatal(err)
			}
			root := readRootT(t, tree)
			// A delta against the published generation, as the next generation's would be.
			delta := func() metaFileRef {
				m, _, err := NewTree(tree.Dir()).Load()
				if err != nil {
					t.Fatal(err)
				}
				before := snapshot("", m)
				g.promote(m)
				ref, err := tree.writeMetaDoc(before.diff(m).buildPack(m))
				if err != nil {
					t.Fatal(err)
				}
				return ref
			}
			chain := func(packs ...metaFileRef) *metaRoot {
				r := *root
				r.Packs = append(slices.Clip(root.Packs), packs...)
				return &r
			}
			a, b := chain(delta()), chain(delta())
			for _, tc := range []struct {
				name     string
				from, to *metaRoot
			}{
				{"delta replaced", a, b},
				{"delta dropped", a, root},
				{"delta added", root, b},
			} {
				before, from, _, err := tree.loadChain(tc.from, nil)
				if err != nil {
					t.Fatalf("%s: %v", tc.name, err)
				}
				got, _, change, err := tree.loadChain(tc.to, from)
				if err != nil {
					t.Fatalf("%s: %v", tc.name, err)
				}
				want, _, _, err := tree.loadChain(tc.to, nil)
				if err != nil {
					t.Fatalf("%s: %v", tc.name, err)
				}
				if !reflect.DeepEqual(canonical(t, got), canonical(t, want)) {
					sameMeta(t, tc.name, got, want)
					t.Fatalf("%s: read from the last chain, the content differs from the chain read whole", tc.name)
				}
				if got, want := change.Base, chainName(tc.from.Packs); got != want {
					t.Fatalf("%s: change's Base %q, want %q", tc.name, got, want)
				}
				changeCovers(t, tc.name, "manifest", change.Manifests, before.Manifests, got.Manifests)
				changeCovers(t, tc.name, "blob", change.Blobs, before.Blobs, got.Blobs)
				changeCovers(t, tc.name, "repository", change.Repositories, before.Repositories, got.Repositories)
			}
		})
	}
}

// TestWriteMetaDocStreamed: writeMetaDoc, which compresses into its file as it encodes,
// writes encodeMetaDoc's bytes under the name of their digest, leaves no temporary file, and
// keeps the file already there with that content (not written again).
func TestWriteMetaDocStreamed(t *testing.T) {
	g := &metaGen{rng: rand.New(rand.NewPCG(5, 6)), now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	m := g.meta()
	tree := NewTree(t.TempDir())
	want, d, err := encodeMetaDoc(all(m).buildPack(m))
	if err != nil {
		t.Fatal(err)
	}
	var first os.FileInfo
	for i := range 2 {
		ref, err := tree.writeMetaDoc(all(m).buildPack(m))
		if err != nil {
			t.Fatal(err)
		}
		if ref.Ref != metaRef(d) || ref.Size != int64(len(want)) {
			t.Errorf("write %d: got %+v, want %s of %d bytes", i, ref, metaRef(d), len(want))
		}
		got, err := os.ReadFile(tree.Path(MetaPath(d)))
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("write %d: the file differs from encodeMetaDoc's bytes (%v)", i, err)
		}
		fi, err := os.Stat(tree.Path(MetaPath(d)))
		if err != nil {
			t.Fatal(err)
		}
		if first == nil {
			first = fi
		} else if !os.SameFile(fi, first) {
			t.Errorf("write %d: the intact file was written again", i)
		}
		if names := metaDirT(t, tree); len(names) != 1 {
			t.Errorf("write %d: %s holds %v, want the one file", i, MetaFilesDir, names)
		}
	}
}

// TestCommitAs: a file is committed under a name given once written, in its directory only.
func TestCommitAs(t *testing.T) {
	dir := t.TempDir()
	f, err := CreateFile(filepath.Join(dir, "new"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := f.CommitAs(filepath.Join(dir, "named")); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "named")); err != nil || string(b) != "x" {
		t.Errorf("named: %q, %v", b, err)
	}
	f, err = CreateFile(filepath.Join(dir, "new"))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.CommitAs(filepath.Join(t.TempDir(), "elsewhere")); err == nil {
		t.Error("committed into another directory")
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("%s holds %d entries, want the one file named (no temporary left)", dir, len(ents))
	}
}
