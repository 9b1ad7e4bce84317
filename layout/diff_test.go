package layout

import (
	"bytes"
	"fmt"
	"maps"
	"math/rand/v2"
	"reflect"
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
			}
		})
	}
}

func sameTouched(t *testing.T, what string, want, got *touched) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%s: diff touched %+v, want %+v", what, got, want)
	}
}
