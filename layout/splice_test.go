package layout

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// spliceGen changes a tree's metadata as generations and crawls do, membership included:
// metaGen's promotions, blobs joining and leaving subsets, new blobs of the generation,
// orphans.
type spliceGen struct{ *metaGen }

func newSpliceGen(seed uint64) spliceGen {
	return spliceGen{&metaGen{rng: rand.New(rand.NewPCG(seed, 7)), now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}}
}

// meta is metaGen's metadata with a subset table of architectures, any and the archive.
func (g spliceGen) meta() *Meta {
	m := g.metaGen.meta()
	m.Subsets = []string{"amd64", "arm64", AnyArchitecture, ArchiveSubset}
	for _, b := range m.Blobs {
		b.Subsets = g.rng.Uint64N(16)
	}
	return m
}

// step changes m as one run would and says what it did.
func (g spliceGen) step(m *Meta) string { return g.stepAs(m, g.rng.IntN(8)) }

// stepAs is step's change k (of 8).
func (g spliceGen) stepAs(m *Meta, k int) string {
	switch k % 8 {
	case 0:
		g.crawl(m)
		return "crawl"
	case 1:
		m.Generation++
		return "no change"
	case 2: // membership and Since of a few blobs, an orphan
		m.Generation++
		for _, d := range slices.SortedFunc(maps.Keys(m.Blobs), compareDigests)[:min(3, len(m.Blobs))] {
			b := m.Blobs[d]
			b.Subsets, b.Former = g.rng.Uint64N(16), g.rng.Uint64N(2)
			if g.rng.IntN(2) == 0 {
				b.Since = m.Generation
			}
		}
		setKey(&m.Orphans, g.digest(), &Orphan{Size: 1, Since: g.rng.Uint64N(m.Generation + 1), Subsets: g.rng.Uint64N(16)})
		return "membership"
	case 3: // the subset table changes: every mask means something else
		m.Generation++
		if len(m.Subsets) == 4 {
			m.Subsets = []string{"amd64", "arm64", "s390x", AnyArchitecture, ArchiveSubset}
		} else {
			m.Subsets = []string{"amd64", "arm64", AnyArchitecture, ArchiveSubset}
		}
		return "subset table"
	default:
		g.promote(m)
		for _, b := range m.Blobs { // the generation's new blobs: in their subsets
			if b.Since == m.Generation {
				b.Subsets = g.rng.Uint64N(16)
			}
		}
		return "promotion"
	}
}

// publishedFiles reads the live publication's index.json and filters.
func publishedFiles(t *testing.T, tree *Tree) ([]byte, map[string]Pieces) {
	t.Helper()
	read := func(rel string) []byte {
		b, err := os.ReadFile(tree.Path(path.Join(LiveLink, rel)))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	files := map[string]Pieces{}
	for _, s := range AllSubsets() {
		files[SubsetFilterPath(s)] = Pieces{read(SubsetFilterPath(s))}
	}
	return read(PubIndex), files
}

// sameFiles reports how files differ from want, "" if not at all.
func sameFiles(got map[string]Pieces, want map[string][]byte) string {
	for _, p := range slices.Sorted(maps.Keys(want)) {
		if g := got[p].Bytes(); !bytes.Equal(g, want[p]) {
			return fmt.Sprintf("%s:\ngot\n%.2000s\nwant\n%.2000s", p, g, want[p])
		}
	}
	if len(got) != len(want) {
		return fmt.Sprintf("got %d files, want %d", len(got), len(want))
	}
	return ""
}

// joined is a splice's Pieces joined.
func joined(p Pieces, ok bool) ([]byte, bool) { return p.Bytes(), ok }

// TestSplicedMatchesRendered publishes random generations (promotions, crawls, membership
// and subset table changes), each loaded as generate and crawl load it and changed in place:
// the splice of index.json and the filters from the live publication's, when it is made, is
// byte for byte the full render, and so is what each publish writes. Most changes splice.
func TestSplicedMatchesRendered(t *testing.T) {
	const steps = 30
	for seed := range uint64(3) {
		t.Run(fmt.Sprint("seed ", seed), func(t *testing.T) {
			g := newSpliceGen(seed)
			tree := NewTree(t.TempDir())
			m := g.meta()
			if _, err := tree.PublishWith(m, Publication{SubsetFilters: true}); err != nil {
				t.Fatal(err)
			}
			spliced := map[string]int{}
			for step := range steps {
				var err error
				if step%9 == 4 { // a reader of its own: the publish reads the live content
					tree = NewTree(tree.Dir())
					m, _, err = tree.Load()
				} else {
					m, _, err = tree.LoadForUpdate()
				}
				if err != nil {
					t.Fatal(err)
				}
				what := fmt.Sprintf("step %d (%s)", step, g.step(m))
				m.Format = FormatVersion
				change, wait := tree.startMeta(m)
				_, _, err = wait()
				if err != nil {
					t.Fatalf("%s: %v", what, err)
				}
				wantIdx, err := IndexJSON(m)
				if err != nil {
					t.Fatal(err)
				}
				wantFilters := m.SubsetFilters()
				live := tree.livePub(change)
				if live == nil {
					t.Fatalf("%s: no live publication to splice from", what)
				}
				if old, ok := live.file(PubIndex); !ok {
					t.Errorf("%s: the live index.json cannot be read", what)
				} else if got, ok := joined(spliceIndexJSON(old, live.change, m)); ok {
					spliced["index.json"]++
					if !bytes.Equal(got, wantIdx) {
						t.Fatalf("%s: spliced index.json:\ngot  %s\nwant %s", what, got, wantIdx)
					}
				}
				if got, ok := spliceSubsetFilters(live.file, live.change, m); ok {
					spliced["filters"]++
					if diff := sameFiles(got, wantFilters); diff != "" {
						t.Fatalf("%s: spliced filters: %s", what, diff)
					}
				}
				if _, err := tree.PublishWith(m, Publication{SubsetFilters: true}); err != nil {
					t.Fatalf("%s: %v", what, err)
				}
				gotIdx, gotFilters := publishedFiles(t, tree)
				if !bytes.Equal(gotIdx, wantIdx) {
					t.Fatalf("%s: published index.json:\ngot  %s\nwant %s", what, gotIdx, wantIdx)
				}
				if diff := sameFiles(gotFilters, wantFilters); diff != "" {
					t.Fatalf("%s: published filters: %s", what, diff)
				}
			}
			// Only a changed subset table, or an orphan that is a blob too (metaGen's
			// promotions make a few), keeps the filters from splicing.
			t.Logf("spliced %v of %d publishes", spliced, steps)
			if spliced["index.json"] < steps*3/4 || spliced["filters"] < steps/2 {
				t.Errorf("spliced %v of %d publishes, want most", spliced, steps)
			}
		})
	}
}

// TestSpliceRefusesDamagedFiles: a live file that does not hold what its name says, or that
// is missing, is not spliced from; the publish renders the files whole.
func TestSpliceRefusesDamagedFiles(t *testing.T) {
	for _, c := range []struct {
		name string
		rel  string
		bad  func(b []byte) []byte // nil: removed
	}{
		{"index.json, a byte changed", PubIndex, func(b []byte) []byte { b[len(b)/2]++; return b }},
		{"index.json, truncated", PubIndex, func(b []byte) []byte { return b[:len(b)-3] }},
		{"index.json, removed", PubIndex, nil},
		{"filter, a line swapped", SubsetFilterPath("amd64"), func(b []byte) []byte {
			w := bytes.IndexByte(b, '\n') + 1
			return slices.Concat(b[w:2*w], b[:w], b[2*w:])
		}},
		{"filter, removed", SubsetFilterPath("arm64"), nil},
	} {
		// vouched: the run before kept vouches (UseVouches) and this one takes them: a file
		// damaged since is refused all the same.
		for _, vouched := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/vouched=%v", c.name, vouched), func(t *testing.T) {
				g := newSpliceGen(3)
				tree, dir, cache, save := vouchingTree(t, vouched)
				m := g.meta()
				if _, err := tree.PublishWith(m, Publication{SubsetFilters: true}); err != nil {
					t.Fatal(err)
				}
				if vouched {
					tree = nextVouched(dir, cache, save, true)
				}
				m, _, err := tree.LoadForUpdate()
				if err != nil {
					t.Fatal(err)
				}
				g.promote(m)
				live, err := tree.LivePublication()
				if err != nil {
					t.Fatal(err)
				}
				link := tree.Path(path.Join(PubPath(live), c.rel))
				target, err := os.Readlink(link)
				if err != nil {
					t.Fatal(err)
				}
				p := path.Join(path.Dir(link), target)
				if vouched {
					rel, _ := filepath.Rel(dir, p)
					rel = filepath.ToSlash(rel)
					b, err := os.ReadFile(p)
					if err != nil {
						t.Fatal(err)
					}
					if _, hex, _ := strings.Cut(path.Base(rel), "-"); !tree.vouched(rel, b, hex) {
						t.Fatalf("%s is not vouched for before it is damaged", rel)
					}
				}
				if c.bad == nil {
					err = os.Remove(p)
				} else {
					var b []byte
					if b, err = os.ReadFile(p); err == nil {
						err = os.WriteFile(p, c.bad(b), 0o644)
					}
				}
				if err != nil {
					t.Fatal(err)
				}
				m.Format = FormatVersion
				change, wait := tree.startMeta(m)
				_, _, err = wait()
				if err != nil {
					t.Fatal(err)
				}
				if b, ok := tree.livePub(change).file(c.rel); ok {
					t.Errorf("the damaged %s was read: %.200q", c.rel, b)
				}
				if _, err := tree.PublishWith(m, Publication{SubsetFilters: true}); err != nil {
					t.Fatal(err)
				}
				wantIdx, err := IndexJSON(m)
				if err != nil {
					t.Fatal(err)
				}
				gotIdx, gotFilters := publishedFiles(t, tree)
				if !bytes.Equal(gotIdx, wantIdx) {
					t.Errorf("index.json:\ngot  %s\nwant %s", gotIdx, wantIdx)
				}
				if diff := sameFiles(gotFilters, m.SubsetFilters()); diff != "" {
					t.Errorf("filters: %s", diff)
				}
			})
		}
	}
}

// spliceBoth splices m's index.json and filters from prev's, rendered whole, with the change
// between them as writeMeta finds it; when a splice is made, it must be the full render.
func spliceBoth(t *testing.T, prev, m *Meta) (index, filters bool) {
	t.Helper()
	c := &contentChange{prev: snapshot("", prev)}
	c.touched = c.prev.diff(m)
	old, err := IndexJSON(prev)
	if err != nil {
		t.Fatal(err)
	}
	want, err := IndexJSON(m)
	if err != nil {
		t.Fatal(err)
	}
	got, index := joined(spliceIndexJSON(old, c, m))
	if index && !bytes.Equal(got, want) {
		t.Errorf("spliced index.json:\ngot  %s\nwant %s", got, want)
	}
	oldFilters := prev.SubsetFilters()
	gotFilters, filters := spliceSubsetFilters(func(rel string) ([]byte, bool) { b, ok := oldFilters[rel]; return b, ok }, c, m)
	if diff := sameFiles(gotFilters, m.SubsetFilters()); filters && diff != "" {
		t.Errorf("spliced filters: %s", diff)
	}
	return index, filters
}

// TestSpliceCases: changes random generations rarely make. Each splice made is the full
// render; some must not be made (the live files cannot vouch for what changed), others must.
func TestSpliceCases(t *testing.T) {
	digest := func(s string) Digest { return DigestOf("sha256", []byte(s)) }
	manifest := func(m *Meta, name, mediaType string) Digest {
		d := digest(name)
		m.Manifests[d] = &Manifest{MediaType: mediaType, Data: []byte(`{"n":"` + name + `"}`)}
		m.Blobs[d] = &Blob{Size: 9, Since: 1, Subsets: 1}
		return d
	}
	base := func() *Meta {
		m := NewMeta(2)
		m.Subsets = []string{"amd64", "arm64", AnyArchitecture, ArchiveSubset}
		for _, repo := range []string{"a", "a/b", "c"} {
			r := &Repository{Tags: map[string]Digest{}}
			for _, tag := range []string{"1", "2", "latest"} {
				r.Tags[tag] = manifest(m, repo+tag, MediaTypeOCIManifest)
			}
			m.Repositories[repo] = r
		}
		for i := range 20 {
			m.Blobs[digest(fmt.Sprint("layer", i))] = &Blob{Size: 1, Since: uint64(i % 3), Subsets: uint64(i % 9)}
		}
		m.Orphans = map[Digest]*Orphan{digest("orphan"): {Size: 1, Since: 1, Subsets: 2}}
		return m
	}
	const refuse, splice, either = 1, 2, 3
	for _, c := range []struct {
		name           string
		prev           func(m *Meta)
		next           func(m *Meta)
		index, filters int
	}{
		{"a tag moved, a layer added", nil, func(m *Meta) {
			m.Repositories["a"].Tags["latest"] = manifest(m, "new", MediaTypeOCIIndex)
			m.Blobs[digest("new layer")] = &Blob{Size: 1, Since: 3, Subsets: 3}
		}, splice, splice},
		{"a tag's manifest was missing, now there", func(m *Meta) {
			delete(m.Manifests, m.Repositories["c"].Tags["2"])
		}, func(m *Meta) {
			manifest(m, "c2", MediaTypeOCIManifest)
		}, refuse, splice},
		{"a tag's manifest changed in place", nil, func(m *Meta) {
			m.Manifests[m.Repositories["a/b"].Tags["1"]] = &Manifest{MediaType: "application/x.other", Data: []byte(`{"artifactType":"x"}`)}
		}, refuse, splice},
		{"a tag's manifest dropped", nil, func(m *Meta) {
			delete(m.Manifests, m.Repositories["a/b"].Tags["1"])
		}, refuse, splice},
		{"repositories dropped and added", nil, func(m *Meta) {
			delete(m.Repositories, "a/b")
			m.Repositories["b"] = &Repository{Tags: map[string]Digest{"x": manifest(m, "bx", MediaTypeOCIManifest)}}
		}, splice, splice},
		{"every tag dropped", nil, func(m *Meta) {
			m.Repositories = map[string]*Repository{}
		}, splice, splice},
		{"the first tags", func(m *Meta) {
			m.Repositories = map[string]*Repository{}
		}, func(m *Meta) {
			m.Repositories["z"] = &Repository{Tags: map[string]Digest{"1": digest("c1")}}
		}, splice, splice},
		{"lines move back and forth, join and leave files", nil, func(m *Meta) {
			for i := range 20 {
				b := m.Blobs[digest(fmt.Sprint("layer", i))]
				b.Since, b.Subsets, b.Former = uint64((i+1)%4), uint64((i*5)%16), uint64(i%2)
			}
		}, splice, splice},
		{"blobs become orphans and orphans blobs", nil, func(m *Meta) {
			d := digest("layer3")
			m.Orphans[d] = &Orphan{Size: 1, Since: m.Blobs[d].Since, Subsets: 4}
			delete(m.Blobs, d)
			m.Blobs[digest("orphan")] = &Blob{Size: 1, Since: 3, Subsets: 1}
			delete(m.Orphans, digest("orphan"))
		}, splice, splice},
		{"a blob that is an orphan too", nil, func(m *Meta) {
			m.Orphans[digest("layer4")] = &Orphan{Size: 1, Since: 1, Subsets: 1}
		}, splice, refuse},
		{"the subset table changed", nil, func(m *Meta) {
			m.Subsets = []string{"amd64", "s390x", AnyArchitecture, ArchiveSubset}
		}, splice, refuse},
		{"no membership", func(m *Meta) {
			m.Subsets = nil
			for _, b := range m.Blobs {
				b.Subsets = 0
			}
		}, func(m *Meta) {
			m.Blobs[digest("new layer")] = &Blob{Size: 1, Since: 0}
			delete(m.Blobs, digest("layer7"))
		}, splice, splice},
		{"a blob of another algorithm", nil, func(m *Meta) {
			m.Blobs[DigestOf("sha512", []byte("x"))] = &Blob{Size: 1, Since: 1, Subsets: 1}
		}, splice, refuse},
		{"into an empty filter", func(m *Meta) {
			for _, b := range m.Blobs {
				b.Subsets &^= 8
			}
			m.Orphans = map[Digest]*Orphan{}
		}, func(m *Meta) {
			m.Blobs[digest("archived")] = &Blob{Size: 1, Since: 3, Subsets: 8}
			m.Blobs[digest("archived too")] = &Blob{Size: 1, Since: 2, Subsets: 8}
		}, splice, splice},
	} {
		t.Run(c.name, func(t *testing.T) {
			prev := base()
			if c.prev != nil {
				c.prev(prev)
			}
			m := base()
			if c.prev != nil {
				c.prev(m)
			}
			m.Generation++
			c.next(m)
			index, filters := spliceBoth(t, prev, m)
			for _, r := range []struct {
				what string
				got  bool
				want int
			}{{"index.json", index, c.index}, {"filters", filters, c.filters}} {
				if r.want != either && r.got != (r.want == splice) {
					t.Errorf("%s spliced: %v, want %v", r.what, r.got, r.want == splice)
				}
			}
		})
	}
}

// FuzzSplicedMatchesRendered: whatever the change (a run of steps the input picks) the
// splices made are the full render; and whatever the live files hold, a splice made from them
// is well formed: index.json canonical JSON (encoding/json's MarshalIndent of what it reads)
// with its annotations in order, a filter of lines of one shape, the live file itself when
// nothing changed. An exec takes a millisecond or two: minimizing each new input for the
// default minute leaves little time to fuzz,
//
//	go test ./layout -run '^$' -fuzz FuzzSplicedMatchesRendered -fuzztime 2m -fuzzminimizetime 2s
func FuzzSplicedMatchesRendered(f *testing.F) {
	g := newSpliceGen(0)
	seedMeta := g.meta()
	idx, err := IndexJSON(seedMeta)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(uint64(1), []byte{7, 2, 7}, idx)
	f.Add(uint64(2), []byte{0, 3}, seedMeta.SubsetFilters()[SubsetFilterPath("amd64")])
	f.Add(uint64(3), []byte{}, []byte(indexHead+indexEmptyTail))
	f.Fuzz(fuzzSplice)
}

func fuzzSplice(t *testing.T, seed uint64, steps, live []byte) {
	prev, g := newSpliceGen(seed).meta(), newSpliceGen(seed)
	m := g.meta() // prev's twin
	for _, k := range steps[:min(len(steps), 6)] {
		g.stepAs(m, int(k))
	}
	spliceBoth(t, prev, m)

	c := &contentChange{prev: snapshot("", prev)}
	c.touched = c.prev.diff(m)
	if got, ok := joined(spliceIndexJSON(live, c, m)); ok {
		var doc struct {
			SchemaVersion int               `json:"schemaVersion"`
			MediaType     string            `json:"mediaType"`
			Manifests     []indexDescriptor `json:"manifests"`
		}
		if err := json.Unmarshal(got, &doc); err != nil {
			t.Fatalf("spliced index.json is not JSON: %v\n%s", err, got)
		}
		if doc.Manifests == nil {
			doc.Manifests = []indexDescriptor{}
		}
		again, err := json.MarshalIndent(doc, "", " ")
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(append(again, '\n'), got) {
			t.Errorf("spliced index.json is not canonical:\ngot  %q\nwant %q", got, again)
		}
		for i := 1; i < len(doc.Manifests); i++ {
			if a, b := doc.Manifests[i-1].Annotations[annotationRefName], doc.Manifests[i].Annotations[annotationRefName]; a >= b {
				t.Errorf("spliced index.json has %q before %q", a, b)
			}
		}
	}
	for _, f := range subsetFiles(m) {
		got, ok := joined(spliceFilter(live, f, nil, c.prev))
		if ok && !bytes.Equal(got, live) {
			t.Errorf("nothing changed, yet the filter spliced from %q is %q", live, got)
		}
		fc := filterChange{d: g.digest(), is: &lineRecord{since: 1, mask: ^uint64(0)}}
		if got, ok = joined(spliceFilter(live, f, []filterChange{fc}, c.prev)); !ok {
			continue
		}
		w := bytes.IndexByte(got, '\n') + 1
		if w == 0 || len(got)%w != 0 || len(got) != len(live)+w {
			t.Errorf("a line put into %q gives %q", live, got)
		}
		for i := 0; i+w <= len(got); i += w {
			if !bytes.HasPrefix(got[i:], got[:bytes.LastIndexByte(got[:w], '/')+1]) || got[i+w-1] != '\n' {
				t.Errorf("a line put into %q gives %q", live, got)
				break
			}
		}
	}
}
