package layout

import (
	"bytes"
	"fmt"
	"maps"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// diffReference is contentState.diff as it was before it skipped the walk of the old maps
// when nothing was removed: every map walked both ways.
func diffReference(s *contentState, m *Meta) *touched {
	t := newTouched()
	for d, v := range m.Manifests {
		if o, ok := s.manifests[d]; !ok || o.MediaType != v.MediaType || !bytes.Equal(o.Data, v.Data) {
			t.manifests[d] = true
		}
	}
	for d := range s.manifests {
		if m.Manifests[d] == nil {
			t.manifests[d] = true
		}
	}
	for d, v := range m.Blobs {
		if o, ok := s.blobs[d]; !ok || !blobEqual(*o, *v) {
			t.blobs[d] = true
		}
	}
	for d := range s.blobs {
		if m.Blobs[d] == nil {
			t.blobs[d] = true
		}
	}
	for d, v := range m.Orphans {
		if o, ok := s.orphans[d]; !ok || o.Size != v.Size || o.Since != v.Since || o.Subsets != v.Subsets || !o.Unreferenced.Equal(v.Unreferenced) {
			t.orphans[d] = true
		}
	}
	for d := range s.orphans {
		if m.Orphans[d] == nil {
			t.orphans[d] = true
		}
	}
	for n, r := range m.Repositories {
		o := s.repos[n]
		if o == nil {
			t.repos[n] = true
			continue
		}
		diffRepo(o, r, func() *repoTouched { return t.part(n) })
	}
	for n := range s.repos {
		if m.Repositories[n] == nil {
			t.repos[n] = true
		}
	}
	return t
}

// TestContentDiffDifferential: over random chains of generations, the writer's diff of the
// new content against the loaded one touches exactly the keys the reference (both ways over
// every map) does, whether the new Meta was changed in place from a copy (snapshot) or built
// anew sharing the unchanged records (shared, as generate does), and with keys only
// removed, only added, or neither.
func TestContentDiffDifferential(t *testing.T) {
	for seed := range uint64(40) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			g := &metaGen{rng: rand.New(rand.NewPCG(seed, 7)), now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
			m := g.meta()
			for range 12 {
				s := snapshot("root", m)
				switch g.rng.IntN(4) {
				case 0: // nothing changes
				case 1: // keys removed only: a repository, and the orphans
					if len(m.Repositories) > 3 {
						for n := range m.Repositories {
							delete(m.Repositories, n)
							break
						}
					}
					clear(m.Orphans)
				default:
					g.promote(m)
				}
				sameTouched(t, "snapshot", diffReference(s, m), s.diff(m))
				// Shared records: a successor built anew, one record replaced.
				sh := shared("root", m)
				next := *m
				next.Manifests, next.Blobs = maps.Clone(m.Manifests), maps.Clone(m.Blobs)
				next.Orphans, next.Repositories = maps.Clone(m.Orphans), maps.Clone(m.Repositories)
				for d, mf := range next.Manifests {
					c := *mf
					c.Data = append(append([]byte(nil), mf.Data...), ' ')
					next.Manifests[d] = &c
					break
				}
				sameTouched(t, "shared", diffReference(sh, &next), sh.diff(&next))
				// Blobs started from a copy of the loaded ones (StartBlobs), as generate
				// starts them, then changed every way: compared record by record where the
				// copy applies.
				for _, c := range copiedCases(g, sh.blobs) {
					next := *m
					next.Manifests = maps.Clone(m.Manifests)
					c.change(&next)
					sameTouched(t, "copied: "+c.name, diffReference(sh, &next), sh.diff(&next))
				}
			}
		})
	}
}

// copiedCase is a successor's blobs started from a copy (StartBlobs) and changed.
type copiedCase struct {
	name   string
	change func(next *Meta)
}

// copiedCases are the ways a successor's blobs copied from live (the loaded generation's)
// can change, each of which the diff must see.
func copiedCases(g *metaGen, live map[Digest]*Blob) []copiedCase {
	some := func(m map[Digest]*Blob, n int) []Digest {
		var ds []Digest
		for d := range m {
			if len(ds) == n {
				break
			}
			ds = append(ds, d)
		}
		slices.SortFunc(ds, func(a, b Digest) int { return strings.Compare(a.String(), b.String()) })
		return ds
	}
	return []copiedCase{
		{"unchanged", func(next *Meta) { next.StartBlobs(CopyBlobs(live)) }},
		{"changed in place", func(next *Meta) {
			next.StartBlobs(CopyBlobs(live))
			for i, d := range some(next.Blobs, 3) {
				b := next.Blobs[d]
				switch i {
				case 0:
					b.Size++
				case 1:
					b.Retired = g.time()
				default:
					b.Subsets ^= 2
				}
			}
		}},
		{"removed and added", func(next *Meta) {
			next.StartBlobs(CopyBlobs(live))
			for _, d := range some(next.Blobs, 2) {
				delete(next.Blobs, d)
			}
			next.Blobs[g.digest()] = &Blob{Size: 1, Since: next.Generation}
		}},
		{"records swapped between digests", func(next *Meta) {
			next.StartBlobs(CopyBlobs(live))
			if ds := some(next.Blobs, 2); len(ds) == 2 {
				next.Blobs[ds[0]], next.Blobs[ds[1]] = next.Blobs[ds[1]], next.Blobs[ds[0]]
			}
		}},
		{"a record replaced by another", func(next *Meta) {
			next.StartBlobs(CopyBlobs(live))
			for _, d := range some(next.Blobs, 1) {
				b := *next.Blobs[d]
				b.Since++
				next.Blobs[d] = &b
			}
		}},
		{"copied from another map", func(next *Meta) {
			// A copy of other content: its records are not what the diff compares with.
			other := maps.Clone(live)
			for _, d := range some(other, 1) {
				b := *other[d]
				b.Size += 7
				other[d] = &b
			}
			next.StartBlobs(CopyBlobs(other))
		}},
		{"the copy's map copied again", func(next *Meta) {
			c := CopyBlobs(live)
			next.StartBlobs(c)
			next.Blobs = maps.Clone(c.Blobs)
			for _, d := range some(next.Blobs, 1) {
				next.Blobs[d].Size++
			}
		}},
	}
}

func sameTouched(t *testing.T, what string, want, got *touched) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%s: diff touched %+v, want %+v", what, got, want)
	}
}

// BenchmarkContentDiff compares a 10-tag promotion of metadata shaped like the scale
// benchmark's tree (REGMIRROR_SCALE_MANIFESTS, default 90000) with the generation before it,
// built as generate builds a successor: the maps copied, each blob record copied, the
// manifests and the untouched repositories shared.
func BenchmarkContentDiff(b *testing.B) {
	g, n := scaleGen(90000)
	next, tag := g.scale(n)
	// The live generation's content, and its successor: what tag adds goes into next's maps.
	s := snapshot("root", next)
	next.StartBlobs(CopyBlobs(s.blobs))
	for name, r := range next.Repositories {
		next.Repositories[name] = &Repository{Tags: maps.Clone(r.Tags), Manifests: slices.Clone(r.Manifests), Blobs: slices.Clone(r.Blobs)}
	}
	g.promoteScale(next, n, tag)
	var got *touched
	for b.Loop() {
		got = s.diff(next)
	}
	if len(got.blobs) == 0 || len(got.repos)+len(got.repoParts) == 0 {
		b.Fatalf("the diff found no change: %d blobs, %d repositories", len(got.blobs), len(got.repos)+len(got.repoParts))
	}
	b.ReportMetric(float64(len(next.Blobs)), "blobs")
}

// TestStartDiff checks the content diff started ahead of a publish (StartDiff): the publish of
// that Meta takes it, and one of another Meta, or after the live generation changed, makes
// its own; what reads back is the Meta published either way.
func TestStartDiff(t *testing.T) {
	setup := func(t *testing.T) (*metaGen, *Tree, *Meta) {
		g := &metaGen{rng: rand.New(rand.NewPCG(5, 5)), now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
		tree := NewTree(t.TempDir())
		m := g.meta()
		if _, err := tree.Publish(m); err != nil {
			t.Fatal(err)
		}
		m, _, err := tree.LoadForUpdate()
		if err != nil {
			t.Fatal(err)
		}
		return g, tree, m
	}
	publishAndRead := func(t *testing.T, tree *Tree, m *Meta) *Meta {
		t.Helper()
		if _, err := tree.Publish(m); err != nil {
			t.Fatal(err)
		}
		if e := tree.early.Load(); e != nil {
			t.Errorf("a diff started ahead is left after the publish")
		}
		got, _, err := NewTree(tree.Dir()).Load()
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	t.Run("taken", func(t *testing.T) {
		g, tree, m := setup(t)
		g.promote(m)
		tree.StartDiff(m)
		sameMeta(t, "published", publishAndRead(t, tree, m), m)
	})
	t.Run("taken, so a change after it is not seen", func(t *testing.T) {
		// What StartDiff's contract forbids, done here to show the publish used its diff.
		g, tree, m := setup(t)
		g.promote(m)
		tree.StartDiff(m)
		<-tree.early.Load().done
		for _, b := range m.Blobs {
			b.Size++
		}
		if got := publishAndRead(t, tree, m); reflect.DeepEqual(canonical(t, got), canonical(t, m)) {
			t.Errorf("the publish saw every blob changed after StartDiff: it did not take the diff")
		}
	})
	t.Run("another Meta", func(t *testing.T) {
		g, tree, m := setup(t)
		other, _, err := tree.LoadForUpdate()
		if err != nil {
			t.Fatal(err)
		}
		g.promote(other)
		tree.StartDiff(other)
		g.promote(m)
		sameMeta(t, "published", publishAndRead(t, tree, m), m)
	})
	t.Run("the live generation changed", func(t *testing.T) {
		g, tree, m := setup(t)
		g.promote(m)
		tree.StartDiff(m)
		<-tree.early.Load().done
		between, _, err := NewTree(tree.Dir()).LoadForUpdate()
		if err != nil {
			t.Fatal(err)
		}
		g.promote(between)
		if _, err := NewTree(tree.Dir()).Publish(between); err != nil {
			t.Fatal(err)
		}
		m.Generation = between.Generation + 1
		sameMeta(t, "published", publishAndRead(t, tree, m), m)
	})
}
