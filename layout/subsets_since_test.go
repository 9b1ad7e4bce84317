package layout

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"
)

// memberWorld is a pool of content for membership tests: layers shared between images,
// single-arch images (their architecture from the config, or none), and indexes of them
// whose platforms name amd64, arm64, s390x, "unknown" or nothing.
type memberWorld struct {
	manifests map[Digest]*Manifest
	refs      map[Digest][]Digest // manifest → the manifests and blobs it references
	sizes     map[Digest]int64
	archs     map[Digest]string // config → architecture
	images    []Digest          // single-arch images
	indexes   []Digest
}

// emptyMemberWorld is a memberWorld holding nothing yet.
func emptyMemberWorld() *memberWorld {
	return &memberWorld{manifests: map[Digest]*Manifest{}, refs: map[Digest][]Digest{}, sizes: map[Digest]int64{}, archs: map[Digest]string{}}
}

// manifest adds an image manifest of body referring to refs, and returns its digest.
func (w *memberWorld) manifest(body string, refs []Digest) Digest {
	d := DigestOf("sha256", []byte(body))
	w.manifests[d] = &Manifest{MediaType: "application/vnd.oci.image.manifest.v1+json", Data: []byte(body)}
	w.sizes[d] = int64(len(body))
	w.refs[d] = refs
	return d
}

func newMemberWorld() *memberWorld {
	w := emptyMemberWorld()
	rng := rand.New(rand.NewPCG(1, 2))
	var layers []Digest
	for i := range 10 {
		d := fakeDigest(fmt.Sprintf("layer-%d", i))
		w.sizes[d] = int64(1000 + i)
		layers = append(layers, d)
	}
	for i := range 16 {
		cfg := fakeDigest(fmt.Sprintf("config-%d", i))
		w.sizes[cfg] = int64(100 + i)
		w.archs[cfg] = []string{"amd64", "arm64", "s390x", ""}[i%4]
		refs := []Digest{cfg}
		ls := []string{}
		for _, j := range rng.Perm(len(layers))[:1+i%3] {
			refs = append(refs, layers[j])
			ls = append(ls, fmt.Sprintf(`{"digest":%q}`, layers[j]))
		}
		w.images = append(w.images, w.manifest(fmt.Sprintf(`{"schemaVersion":2,"config":{"digest":%q},"layers":[%s]}`, cfg, strings.Join(ls, ",")), refs))
	}
	for i := range 10 {
		var refs []Digest
		var children []string
		for k, j := range rng.Perm(len(w.images))[:1+i%3] {
			refs = append(refs, w.images[j])
			platform := ""
			if arch := []string{"amd64", "arm64", "s390x", "unknown", ""}[(i+k)%5]; arch != "" {
				platform = fmt.Sprintf(`,"platform":{"architecture":%q,"os":"linux"}`, arch)
			}
			children = append(children, fmt.Sprintf(`{"digest":%q%s}`, w.images[j], platform))
		}
		w.indexes = append(w.indexes, w.manifest(fmt.Sprintf(`{"schemaVersion":2,"manifests":[%s]}`, strings.Join(children, ",")), refs))
	}
	return w
}

// root is a tag's content in a memberState.
type root struct {
	d        Digest
	archived bool
}

// memberState is what a generation's tags name: repository → tag → root.
type memberState map[string]map[string]root

func (s memberState) clone() memberState {
	out := memberState{}
	for name, tags := range s {
		out[name] = map[string]root{}
		for tag, r := range tags {
			out[name][tag] = r
		}
	}
	return out
}

// meta builds generation gen of state as generate would: each repository listing its tags'
// manifests and blobs, and retiring what it listed or retired in prev and no longer lists.
func (w *memberWorld) meta(state memberState, prev *Meta, gen uint64) *Meta {
	m := NewMeta(gen)
	since := func(d Digest) uint64 {
		if prev != nil && prev.Blobs[d] != nil {
			return prev.Blobs[d].Since
		}
		return gen
	}
	for name, tags := range state {
		r := &Repository{Tags: map[string]Digest{}}
		manifests, blobs := map[Digest]bool{}, map[Digest]bool{}
		var add func(d Digest)
		add = func(d Digest) {
			if mf := w.manifests[d]; mf != nil {
				manifests[d] = true
				m.Manifests[d] = mf
			} else {
				blobs[d] = true
			}
			m.Blobs[d] = &Blob{Size: w.sizes[d], Since: since(d)}
			for _, c := range w.refs[d] {
				add(c)
			}
		}
		for tag, rt := range tags {
			r.Tags[tag] = rt.d
			if rt.archived {
				r.Archived = append(r.Archived, tag)
			}
			add(rt.d)
		}
		sort.Strings(r.Archived)
		r.Manifests, r.Blobs = sortedSet(manifests), sortedSet(blobs)
		m.Repositories[name] = r
	}
	if prev == nil {
		return m
	}
	// What a repository listed or retired and lists no more it retires (forever, here), with
	// Retired set, whether or not another repository lists it.
	for name, pr := range prev.Repositories {
		r := m.Repositories[name]
		if r == nil {
			r = &Repository{Tags: map[string]Digest{}}
			m.Repositories[name] = r
		}
		listed := map[Digest]bool{}
		for _, d := range append(slices.Clone(r.Manifests), r.Blobs...) {
			listed[d] = true
		}
		manifests, blobs := map[Digest]bool{}, map[Digest]bool{}
		for _, l := range [][]Digest{pr.Manifests, pr.Blobs, pr.Retiring, pr.RetiringBlobs} {
			for _, d := range l {
				if listed[d] {
					continue
				}
				pb := prev.Blobs[d]
				b := m.Blobs[d]
				if b == nil {
					b = &Blob{Size: pb.Size, Since: pb.Since}
					m.Blobs[d] = b
				}
				b.Retired = time.Unix(int64(gen), 0)
				if mf := prev.Manifests[d]; mf != nil {
					m.Manifests[d] = mf
					manifests[d] = true
				} else {
					blobs[d] = true
				}
			}
		}
		r.Retiring, r.RetiringBlobs = sortedSet(manifests), sortedSet(blobs)
	}
	return m
}

func sortedSet(set map[Digest]bool) []Digest {
	out := make([]Digest, 0, len(set))
	for d := range set {
		out = append(out, d)
	}
	slices.SortFunc(out, func(a, b Digest) int { return strings.Compare(a.String(), b.String()) })
	return out
}

// recordMembership records in m the membership compute gives it, after prev.
func recordMembership(t *testing.T, m, prev *Meta, now time.Time, compute func() ([]string, map[Digest]uint64, error)) {
	t.Helper()
	table, masks, err := compute()
	if err != nil {
		t.Fatal(err)
	}
	if err := m.SetMembership(table, masks, prev, now, 2*time.Hour); err != nil {
		t.Fatal(err)
	}
}

// carryRecords makes m's records of the blobs prev records CarriedBlob's (keeping their size
// and Retired), but for about one in fresh of them (none when fresh is 0).
func carryRecords(m, prev *Meta, rng *rand.Rand, fresh int) {
	if prev == nil {
		return
	}
	for _, d := range slices.SortedFunc(maps.Keys(m.Blobs), compareDigests) { // rng's picks, repeatably
		b, pb := m.Blobs[d], prev.Blobs[d]
		if pb == nil || fresh > 0 && rng.IntN(fresh) == 0 {
			continue
		}
		c := CarriedBlob(pb)
		c.Size, c.Retired = b.Size, b.Retired
		*b = c
	}
}

// sameMembership reports how what SetMembership recorded in a differs from b's; "" if not.
func sameMembership(a, b *Meta) string {
	if !slices.Equal(a.Subsets, b.Subsets) {
		return fmt.Sprintf("subsets: got %q, want %q", a.Subsets, b.Subsets)
	}
	for d, want := range b.Blobs {
		got := a.Blobs[d]
		if got.Subsets != want.Subsets || got.Former != want.Former || !got.Left.Equal(want.Left) || got.Since != want.Since {
			return fmt.Sprintf("blob %s: got subsets %q former %q left %v since %d, want %q %q %v %d", d.String()[7:19],
				subsetsOfBlob(a, got.Subsets), subsetsOfBlob(a, got.Former), got.Left, got.Since,
				subsetsOfBlob(b, want.Subsets), subsetsOfBlob(b, want.Former), want.Left, want.Since)
		}
	}
	return ""
}

// TestMembershipSince: on promotions of every kind, and on a long random sequence of them,
// the membership MembershipSince computes from the change records exactly what Membership's
// full computation does.
func TestMembershipSince(t *testing.T) {
	w := newMemberWorld()
	arch := func(d Digest) string { return w.archs[d] }
	img, idx := w.images, w.indexes
	base := memberState{
		"a": {"1": {idx[0], false}, "2": {idx[1], false}, "old": {img[0], true}},
		"b": {"1": {idx[2], false}, "x": {img[1], false}},
		"c": {"1": {img[2], false}, "2": {idx[3], false}},
	}
	t0 := time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC)
	// check computes generation gen of state after prev both ways, compares them and returns
	// the full one.
	check := func(t *testing.T, state memberState, prev *Meta, gen uint64) *Meta {
		t.Helper()
		now := t0.Add(time.Duration(gen) * time.Hour)
		full, inc := w.meta(state, prev, gen), w.meta(state, prev, gen)
		recordMembership(t, full, prev, now, func() ([]string, map[Digest]uint64, error) { return Membership(full, arch) })
		recordMembership(t, inc, prev, now, func() ([]string, map[Digest]uint64, error) { return MembershipSince(inc, prev, arch) })
		if diff := sameMembership(inc, full); diff != "" {
			t.Fatalf("generation %d: incremental against full: %s", gen, diff)
		}
		// SetMembershipSince, with every record of a blob prev records carried, and with
		// some made afresh (as a generation's closures and retired records are).
		for _, fresh := range []int{0, 3} {
			carried := w.meta(state, prev, gen)
			carryRecords(carried, prev, rand.New(rand.NewPCG(gen, uint64(fresh))), fresh)
			if err := carried.SetMembershipSince(prev, arch, now, 2*time.Hour); err != nil {
				t.Fatal(err)
			}
			if diff := sameMembership(carried, full); diff != "" {
				t.Fatalf("generation %d: SetMembershipSince (1 in %d records afresh) against full: %s", gen, fresh, diff)
			}
		}
		return full
	}
	first := func(t *testing.T) *Meta { return check(t, base, nil, 1) }
	tests := []struct {
		name   string
		change func(s memberState)
	}{
		{"no change", func(s memberState) {}},
		{"tag moved", func(s memberState) { s["a"]["1"] = root{idx[4], false} }},
		{"tag moved to a single-arch image", func(s memberState) { s["b"]["1"] = root{img[3], false} }},
		{"tag moved back to what it retired", func(s memberState) { s["a"]["1"] = root{idx[1], false} }},
		{"tag added", func(s memberState) { s["c"]["3"] = root{idx[5], false} }},
		{"tag added naming what another repository has", func(s memberState) { s["c"]["3"] = root{idx[2], false} }},
		{"tag deleted", func(s memberState) { delete(s["a"], "2") }},
		{"repository deleted", func(s memberState) { delete(s, "b") }},
		{"repository added", func(s memberState) { s["d"] = map[string]root{"1": {idx[0], false}, "2": {img[5], false}} }},
		{"tag archived", func(s memberState) { s["a"]["2"] = root{idx[1], true} }},
		{"tag unarchived", func(s memberState) { s["a"]["old"] = root{img[0], false} }},
		{"archived tag moved", func(s memberState) { s["a"]["old"] = root{img[6], true} }},
		{"architectures change", func(s memberState) {
			s["a"]["1"] = root{idx[9], false}
			s["c"]["2"] = root{img[7], false}
		}},
		{"shared blob left by the changed repository only", func(s memberState) {
			// b:1 and c:2 share content with a's tags through the layer pool; b moves everything.
			s["b"] = map[string]root{"1": {img[8], false}, "x": {img[9], false}}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			prev := first(t)
			s := base.clone()
			tc.change(s)
			next := check(t, s, prev, 2)
			// And back, within the grace and past it.
			back := check(t, base, next, 3)
			check(t, s, back, 6)
		})
	}
	t.Run("subset table changes", func(t *testing.T) {
		// An architecture sorted before AnyArchitecture comes and goes: the bits of the
		// records no changed root reaches move.
		before := memberState{"a": {"1": {img[0], false}}, "b": {"1": {img[1], false}}, "c": {"1": {img[3], false}}}
		after := before.clone()
		after["d"] = map[string]root{"1": {img[2], false}}
		prev := check(t, before, nil, 1)
		prev = check(t, after, prev, 2)
		prev = check(t, before, prev, 3)
		check(t, before, prev, 6)
	})
	t.Run("random promotions", func(t *testing.T) {
		rng := rand.New(rand.NewPCG(3, 4))
		roots := append(slices.Clone(img), idx...)
		s := base.clone()
		prev := first(t)
		for gen := uint64(2); gen < 200; gen++ {
			for range 1 + rng.IntN(3) {
				repo := string(rune('a' + rng.IntN(5)))
				if s[repo] == nil {
					s[repo] = map[string]root{}
				}
				tag := fmt.Sprint(rng.IntN(4))
				switch rng.IntN(6) {
				case 0:
					delete(s[repo], tag)
				case 1:
					if r, ok := s[repo][tag]; ok {
						s[repo][tag] = root{r.d, !r.archived}
					}
				default:
					s[repo][tag] = root{roots[rng.IntN(len(roots))], rng.IntN(5) == 0}
				}
			}
			prev = check(t, s, prev, gen)
		}
	})
}

// TestMembershipSinceReadsTheChange: MembershipSince walks the roots that changed, not the
// tree: with a tag added to one repository, it asks for the architecture of that tag's
// image's config only.
func TestMembershipSinceReadsTheChange(t *testing.T) {
	w := newMemberWorld()
	state := memberState{}
	for i := range 8 {
		state[fmt.Sprint("r", i)] = map[string]root{"1": {w.images[2*i], false}}
	}
	asked := 0
	arch := func(d Digest) string { asked++; return w.archs[d] }
	prev := w.meta(state, nil, 1)
	recordMembership(t, prev, nil, time.Now(), func() ([]string, map[Digest]uint64, error) { return Membership(prev, arch) })
	state["r0"]["2"] = root{w.images[1], false}
	next := w.meta(state, prev, 2)
	asked = 0
	recordMembership(t, next, prev, time.Now(), func() ([]string, map[Digest]uint64, error) { return MembershipSince(next, prev, arch) })
	if got, want := asked, 1; got != want {
		t.Errorf("configs asked for: got %d, want %d (the new tag's)", got, want)
	}
}

// TestSetMembershipSinceFallbacks: where a carried record's membership is not what marks
// give (prev's table names a subset no walk marks, or twice; a mask mixing the archive with
// an architecture), SetMembershipSince records what SetMembership does from MembershipSince,
// which reads such records through their marks.
func TestSetMembershipSinceFallbacks(t *testing.T) {
	w := newMemberWorld()
	arch := func(d Digest) string { return w.archs[d] }
	img, idx := w.images, w.indexes
	state := memberState{"a": {"1": {idx[0], false}, "old": {img[0], true}}, "b": {"1": {img[1], false}}}
	next := state.clone()
	next["b"]["2"] = root{img[5], false}
	t0 := time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC)
	bit := func(prev *Meta, name string) uint64 { return 1 << slices.Index(prev.Subsets, name) }
	tests := []struct {
		name  string
		spoil func(prev *Meta, b *Blob) // b: the config of b:1 (arm64), which no changed root reaches
	}{
		{"a subset no walk marks", func(prev *Meta, b *Blob) {
			prev.Subsets = append(prev.Subsets, "mainframe")
			b.Subsets = bit(prev, "mainframe")
		}},
		{"a subset named twice", func(prev *Meta, b *Blob) {
			// Left it within the grace as its other bit: it left nothing.
			prev.Subsets = append(prev.Subsets, "arm64")
			b.Subsets, b.Former, b.Left = 1<<(len(prev.Subsets)-1), bit(prev, "arm64"), t0
		}},
		{"the archive with an architecture", func(prev *Meta, b *Blob) { b.Subsets |= bit(prev, ArchiveSubset) }},
		{"a bit past the table", func(prev *Meta, b *Blob) { b.Subsets |= 1 << 40 }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			prev := w.meta(state, nil, 1)
			recordMembership(t, prev, nil, t0, func() ([]string, map[Digest]uint64, error) { return Membership(prev, arch) })
			tc.spoil(prev, prev.Blobs[w.refs[img[1]][0]])
			now := t0.Add(time.Hour)
			want, got := w.meta(next, prev, 2), w.meta(next, prev, 2)
			recordMembership(t, want, prev, now, func() ([]string, map[Digest]uint64, error) { return MembershipSince(want, prev, arch) })
			carryRecords(got, prev, nil, 0)
			if err := got.SetMembershipSince(prev, arch, now, 2*time.Hour); err != nil {
				t.Fatal(err)
			}
			if diff := sameMembership(got, want); diff != "" {
				t.Errorf("%s", diff)
			}
		})
	}
}
