package generator

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/regmirror/regmirror/layout"
)

// TestRetireDifferential: over random pairs of generations (repositories kept with the same
// lists, moved, emptied, dropped, with retiring entries of every age), retire gives what it
// gave when it walked every previous list of every repository (retireReference): the same
// retiring lists, records and figures.
func TestRetireDifferential(t *testing.T) {
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	for seed := range uint64(200) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 3))
			prev, m := randomRetirePair(rng, now)
			prev2, m2 := randomRetirePair(rand.New(rand.NewPCG(seed, 3)), now)
			o := Options{GCGrace: time.Duration(rng.IntN(3)) * time.Hour, Now: func() time.Time { return now }}
			got := (&run{o: o, prev: prev}).retire(m)
			want := retireReference(&run{o: o, prev: prev2}, m2)
			slices.Sort(got.fresh)
			slices.Sort(want.fresh)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("figures: got %+v, want %+v", got, want)
			}
			if !reflect.DeepEqual(m.Repositories, m2.Repositories) {
				t.Errorf("repositories: got %v, want %v", m.Repositories, m2.Repositories)
			}
			if !reflect.DeepEqual(m.Manifests, m2.Manifests) || !reflect.DeepEqual(m.Blobs, m2.Blobs) {
				t.Errorf("records: got %v, want %v", m.Blobs, m2.Blobs)
			}
		})
	}
}

// randomRetirePair is a previous generation and the next one's content before retire.
func randomRetirePair(rng *rand.Rand, now time.Time) (prev, m *layout.Meta) {
	n := 0
	digest := func() layout.Digest { n++; return layout.DigestOf("sha256", fmt.Appendf(nil, "%d", n)) }
	sorted := func(l []layout.Digest) []layout.Digest {
		slices.SortFunc(l, func(a, b layout.Digest) int { return strings.Compare(a.String(), b.String()) })
		return slices.Compact(l)
	}
	prev, m = layout.NewMeta(1), layout.NewMeta(2)
	for i := range 6 {
		name := fmt.Sprintf("r%d", i)
		pr := &layout.Repository{Tags: map[string]layout.Digest{}}
		for j := range 1 + rng.IntN(4) {
			d := digest()
			prev.Manifests[d] = &layout.Manifest{MediaType: layout.MediaTypeOCIManifest, Data: []byte("{}")}
			prev.Blobs[d] = &layout.Blob{Size: 2, Since: 1}
			pr.Tags[fmt.Sprint("t", j)] = d
			pr.Manifests = append(pr.Manifests, d)
			b := digest()
			prev.Blobs[b] = &layout.Blob{Size: int64(rng.IntN(100)), Since: 1}
			pr.Blobs = append(pr.Blobs, b)
		}
		for range rng.IntN(3) {
			d := digest()
			retired := now.Add(-time.Duration(rng.IntN(4)) * time.Hour)
			prev.Blobs[d] = &layout.Blob{Size: 5, Since: 1, Retired: retired}
			if rng.IntN(2) == 0 {
				prev.Manifests[d] = &layout.Manifest{MediaType: layout.MediaTypeOCIManifest, Data: []byte("{ }")}
				pr.Retiring = append(pr.Retiring, d)
			} else {
				pr.RetiringBlobs = append(pr.RetiringBlobs, d)
			}
		}
		pr.Manifests, pr.Blobs = sorted(pr.Manifests), sorted(pr.Blobs)
		pr.Retiring, pr.RetiringBlobs = sorted(pr.Retiring), sorted(pr.RetiringBlobs)
		prev.Repositories[name] = pr
		var r *layout.Repository
		switch rng.IntN(4) {
		case 0: // dropped
			continue
		case 1: // a tag moved
			r = &layout.Repository{Tags: map[string]layout.Digest{}, Manifests: slices.Clone(pr.Manifests), Blobs: slices.Clone(pr.Blobs)}
			for tag, d := range pr.Tags {
				r.Tags[tag] = d
			}
			nd := digest()
			r.Tags["t0"] = nd
			r.Manifests = sorted(append(slices.DeleteFunc(r.Manifests, func(d layout.Digest) bool { return d == pr.Tags["t0"] }), nd))
			if rng.IntN(2) == 0 && len(r.Blobs) > 0 {
				r.Blobs = r.Blobs[1:]
			}
		default: // the same lists (taken whole)
			r = &layout.Repository{Tags: pr.Tags, Manifests: slices.Clone(pr.Manifests), Blobs: slices.Clone(pr.Blobs)}
		}
		m.Repositories[name] = r
		for _, d := range r.Manifests {
			m.Manifests[d] = &layout.Manifest{MediaType: layout.MediaTypeOCIManifest, Data: []byte("{}")}
			m.Blobs[d] = &layout.Blob{Size: 2, Since: 1}
		}
		for _, d := range r.Blobs {
			m.Blobs[d] = &layout.Blob{Size: 1, Since: 1}
		}
	}
	return prev, m
}

func retireReference(r *run, m *layout.Meta) retiring {
	now := r.o.Now().UTC()
	var st retiring
	fresh := map[layout.Digest]bool{} // retired from some repository by this generation
	all := map[layout.Digest]bool{}
	for name, pr := range r.prev.Repositories {
		if pr == nil {
			continue
		}
		repo := m.Repositories[name]
		current := map[layout.Digest]bool{}
		if repo != nil {
			for _, d := range repo.Manifests {
				current[d] = true
			}
			for _, d := range repo.Blobs {
				current[d] = true
			}
			for _, d := range repo.Tags {
				current[d] = true
			}
		}
		manifests, blobs := map[layout.Digest]bool{}, map[layout.Digest]bool{}
		keep := func(d layout.Digest, manifest, already bool) {
			pb := r.prev.Blobs[d]
			if current[d] || pb == nil {
				return // still referenced here, or no file to serve (a foreign layer)
			}
			if manifest && r.prev.Manifests[d] == nil {
				return
			}
			if already && now.Sub(pb.Retired) > r.o.GCGrace {
				return // retired longer ago than the grace period
			}
			if !already {
				fresh[d] = true
				if manifest {
					st.fresh = append(st.fresh, fmt.Sprintf("retire %s@%s", name, d))
				}
			}
			if manifest {
				manifests[d] = true
			} else {
				blobs[d] = true
			}
		}
		for _, d := range pr.Manifests {
			keep(d, true, false)
		}
		for _, d := range pr.Blobs {
			keep(d, false, false)
		}
		for _, d := range pr.Retiring {
			keep(d, true, true)
		}
		for _, d := range pr.RetiringBlobs {
			keep(d, false, true)
		}
		if len(manifests) == 0 && len(blobs) == 0 {
			continue
		}
		if repo == nil {
			repo = &layout.Repository{Tags: map[string]layout.Digest{}}
			m.Repositories[name] = repo
		}
		repo.Retiring, repo.RetiringBlobs = sortedDigests(manifests), sortedDigests(blobs)
		for d := range manifests {
			if _, ok := m.Manifests[d]; !ok {
				m.Manifests[d] = r.prev.Manifests[d]
			}
			all[d] = true
		}
		for d := range blobs {
			all[d] = true
		}
	}
	for d := range all {
		pb := r.prev.Blobs[d]
		b := m.Blobs[d]
		if b == nil { // retiring everywhere: the previous record, kept
			b = &layout.Blob{Size: pb.Size, Since: pb.Since}
			m.Blobs[d] = b
		}
		b.Retired = pb.Retired
		if fresh[d] || b.Retired.IsZero() {
			b.Retired = now
		}
		if _, ok := m.Manifests[d]; ok {
			st.manifests++
		} else {
			st.blobs++
		}
		st.bytes += b.Size
	}
	return st
}

// TestPrevBlobsGoneDifferential: over the random pairs of generations of
// TestRetireDifferential, after retire, the previous generation's blobs the new one lacks are
// those a look-up of every one of them finds, whether the repositories with the same lists
// are said to be taken whole or not; and still when the previous generation records a blob
// no repository lists or retires, or the count of fresh records is off by one, where only
// the look-up of every blob finds them all.
func TestPrevBlobsGoneDifferential(t *testing.T) {
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name      string
		unlisted  bool
		freshMore int
		noWhole   bool
	}{
		{name: "lists"},
		{name: "nothing taken whole", noWhole: true},
		{name: "a blob no repository lists", unlisted: true},
		{name: "a fresh record counted twice", freshMore: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for seed := range uint64(100) {
				rng := rand.New(rand.NewPCG(seed, 3))
				prev, m := randomRetirePair(rng, now)
				if tc.unlisted { // unlisted in prev, and not in m
					prev.Blobs[layout.DigestOf("sha256", []byte("unlisted"))] = &layout.Blob{Size: 3, Since: 1}
				}
				r := &run{o: Options{GCGrace: time.Hour, Now: func() time.Time { return now }}, prev: prev}
				r.retire(m)
				whole, fresh := map[string]bool{}, tc.freshMore
				for name, pr := range prev.Repositories {
					if repo := m.Repositories[name]; !tc.noWhole && repo != nil && slices.Equal(repo.Manifests, pr.Manifests) && slices.Equal(repo.Blobs, pr.Blobs) {
						whole[name] = true
					}
				}
				var want []layout.Digest
				for d := range prev.Blobs {
					if m.Blobs[d] == nil {
						want = append(want, d)
					}
				}
				for d := range m.Blobs {
					if prev.Blobs[d] == nil {
						fresh++
					}
				}
				got := r.prevBlobsGone(m, whole, fresh)
				slices.SortFunc(got, func(a, b layout.Digest) int { return strings.Compare(a.String(), b.String()) })
				slices.SortFunc(want, func(a, b layout.Digest) int { return strings.Compare(a.String(), b.String()) })
				if !slices.Equal(got, want) {
					t.Errorf("seed %d: got %v, want %v", seed, got, want)
				}
			}
		})
	}
}
