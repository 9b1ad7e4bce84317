package layout

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// scaleMemberWorld is a memberWorld of the scale benchmark's shape (internal/testsupport/e2e's
// scaleSource): repos repositories of tags tags, each tag a two-arch index (amd64, arm64) of
// two images with a config and three layers: one shared by every image of the architecture,
// one by the repository's images of it, one of the image's own; extra more tags' content
// besides, for promotions. It returns the world and the state naming the first tags.
func scaleMemberWorld(repos, tags, extra int) (*memberWorld, memberState, []Digest) {
	w := emptyMemberWorld()
	archs := []string{"amd64", "arm64"}
	tag := func(r, t int) Digest {
		var children []string
		var refs []Digest
		for _, a := range archs {
			layers := []Digest{fakeDigest("shared-" + a), fakeDigest(fmt.Sprintf("repo-%d-%s", r, a)), fakeDigest(fmt.Sprintf("own-%d-%d-%s", r, t, a))}
			cfg := fakeDigest(fmt.Sprintf("config-%d-%d-%s", r, t, a))
			w.archs[cfg] = a
			ls := make([]string, len(layers))
			for i, l := range layers {
				w.sizes[l] = 1 << 20
				ls[i] = fmt.Sprintf(`{"digest":%q}`, l)
			}
			w.sizes[cfg] = 1000
			img := w.manifest(fmt.Sprintf(`{"schemaVersion":2,"config":{"digest":%q},"layers":[%s]}`, cfg, strings.Join(ls, ",")), append([]Digest{cfg}, layers...))
			refs = append(refs, img)
			children = append(children, fmt.Sprintf(`{"digest":%q,"platform":{"architecture":%q,"os":"linux"}}`, img, a))
		}
		return w.manifest(fmt.Sprintf(`{"schemaVersion":2,"manifests":[%s]}`, strings.Join(children, ",")), refs)
	}
	state := memberState{}
	for r := range repos {
		name := fmt.Sprintf("r%05d", r)
		state[name] = map[string]root{}
		for t := range tags {
			state[name][fmt.Sprintf("t%06d", t)] = root{tag(r, t), false}
		}
	}
	var more []Digest
	for i := range extra {
		more = append(more, tag(i%repos, tags+i))
	}
	return w, state, more
}

// BenchmarkMembershipAfterPromotion is the membership of a 10-tag promotion (8 tags moved, 2
// added) at 90k manifests (30k tags of two-arch indexes, 210k blobs): from the change with
// MembershipSince and SetMembership, every record made afresh (what generate did before), and
// with SetMembershipSince on records carried from the previous generation (what it does now).
// Each iteration starts from fresh records, made outside the timer.
func BenchmarkMembershipAfterPromotion(b *testing.B) {
	w, state, more := scaleMemberWorld(300, 100, 10)
	arch := func(d Digest) string { return w.archs[d] }
	t0 := time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC)
	prev := w.meta(state, nil, 1)
	table, masks, err := Membership(prev, arch)
	if err != nil {
		b.Fatal(err)
	}
	if err := prev.SetMembership(table, masks, nil, t0, time.Hour); err != nil {
		b.Fatal(err)
	}
	next := state.clone()
	for i, d := range more {
		name := fmt.Sprintf("r%05d", (i*37)%300)
		tag := fmt.Sprintf("t%06d", i*7)
		if i >= 8 {
			tag = fmt.Sprintf("t%06d", 100+i)
		}
		next[name][tag] = root{d, false}
	}
	m := w.meta(next, prev, 2)
	made := make(map[Digest]Blob, len(m.Blobs))
	for d, rec := range m.Blobs {
		made[d] = *rec
	}
	now := t0.Add(time.Hour)
	reset := func(b *testing.B, carry bool) {
		b.StopTimer()
		for d, rec := range m.Blobs {
			*rec = made[d]
		}
		if carry {
			carryRecords(m, prev, nil, 0)
		}
		b.StartTimer()
	}
	b.Run("MembershipSince+SetMembership", func(b *testing.B) {
		for b.Loop() {
			reset(b, false)
			table, masks, err := MembershipSince(m, prev, arch)
			if err != nil {
				b.Fatal(err)
			}
			if err := m.SetMembership(table, masks, prev, now, time.Hour); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("SetMembershipSince", func(b *testing.B) {
		for b.Loop() {
			reset(b, true)
			if err := m.SetMembershipSince(prev, arch, now, time.Hour); err != nil {
				b.Fatal(err)
			}
		}
	})
}
