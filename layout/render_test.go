package layout

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// renderCases are metadata the whole-tree files' renderers meet rarely: names that sort
// apart from their repositories, manifests spelling artifactType every way encoding/json
// reads it, strings it escapes, digests of several algorithms or that make no plain path.
func renderCases() map[string]*Meta {
	cases := map[string]*Meta{}
	empty := NewMeta(1)
	cases["empty"] = empty

	manifests := NewMeta(2)
	r := &Repository{Tags: map[string]Digest{}}
	manifests.Repositories["fedora"] = r
	for i, data := range []string{
		`{"schemaVersion":2}`,
		`{"artifactType":"application/vnd.example+type"}`,
		`{"ArtifactType":"upper"}`,
		`{"ARTIFACTTYPE":"shout"}`,
		`{"\u0061rtifactType":"escaped name"}`,
		`{"artifactType":"first","artifactType":"last"}`,
		`{"artifactType":"a string","artifactType":3}`,
		`{"artifactType":3}`,
		`{"artifactType":null}`,
		`{"config":{"artifactType":"nested"}}`,
		`{"artifactType":"invalid json"`,
		`{"artifactType":"<html> & \u2028 é"}`,
		`{"annotations":{"x":"é"},"artifactType":"after non-ASCII"}`,
		`{"artifactTypo":"near miss"}`,
		"{\"artifactType\":\"bad utf-8 \xff\"}",
		`not json at all`,
		``,
	} {
		d := DigestOf("sha256", []byte(data))
		manifests.Manifests[d] = &Manifest{MediaType: MediaTypeOCIManifest, Data: []byte(data)}
		r.Tags[fmt.Sprintf("t%02d", i)] = d
	}
	for i, mt := range []string{"<script>&amp;", "tab\there", "quote\"back\\slash", "bad \xfe utf-8", "line\u2028sep", ""} {
		d := DigestOf("sha256", []byte(mt))
		manifests.Manifests[d] = &Manifest{MediaType: mt, Data: []byte(`{}`)}
		r.Tags[fmt.Sprintf("media%d", i)] = d
	}
	r.Tags["missing"] = DigestOf("sha256", []byte("no such manifest"))
	// "a:x" sorts after "a/b:y" and "a-b:z": the order is the annotation's, not the name's.
	for _, name := range []string{"a", "a/b", "a-b", "a.b", "a_b", "<&>"} {
		d := DigestOf("sha256", []byte(name))
		manifests.Manifests[d] = &Manifest{MediaType: MediaTypeOCIManifest, Data: []byte(`{}`)}
		manifests.Repositories[name] = &Repository{Tags: map[string]Digest{"x": d, "y": d, "X": d}}
	}
	cases["manifests and names"] = manifests

	blob := func(m *Meta, d Digest, since, subsets, former uint64) {
		m.Blobs[d] = &Blob{Size: 1, Since: since, Subsets: subsets, Former: former}
	}
	noMembership := NewMeta(3)
	for i := range 20 {
		blob(noMembership, DigestOf("sha256", fmt.Append(nil, i)), uint64(i%3), 0, 0)
	}
	cases["no membership"] = noMembership

	members := NewMeta(4)
	members.Subsets = []string{"amd64", "arm64", AnyArchitecture, ArchiveSubset}
	members.Orphans = map[Digest]*Orphan{}
	for i := range 40 {
		d := DigestOf("sha256", fmt.Append(nil, "m", i))
		if i%5 == 0 {
			members.Orphans[d] = &Orphan{Size: 1, Since: uint64(i % 4), Subsets: uint64(i % 16)}
			continue
		}
		blob(members, d, uint64(i%4), uint64(i%16), uint64(i%3))
	}
	cases["members, former members, orphans"] = members

	algos := NewMeta(5)
	algos.Subsets = []string{"amd64", AnyArchitecture}
	for i := range 10 {
		blob(algos, DigestOf("sha256", fmt.Append(nil, i)), 1, 1, 0)
		blob(algos, DigestOf("sha512", fmt.Append(nil, i)), 1, 2, 0)
	}
	cases["two algorithms"] = algos

	// Digests no parser makes (the renderers must not care): short, empty parts, no colon,
	// an algorithm sorting before its prefix's path.
	odd := NewMeta(6)
	odd.Subsets = []string{AnyArchitecture}
	for _, s := range []string{"sha256:ab", "sha256:abc", "sha256:ab\x00", "sha256:", "sha256", ":", "sha+x:ab", "sha:ab", "sha256:a/b", "sha256:..", "sha256:ab:cd"} {
		blob(odd, Digest{s}, 1, 1, 0)
	}
	cases["odd digests"] = odd

	short := NewMeta(7)
	for _, s := range []string{"sha256:ab", "sha256:abc", "sha256:ab\x00", "sha256:abcdefgh1", "sha256:abcdefgh0", "sha256:abcdefgh"} {
		blob(short, Digest{s}, 1, 0, 0)
	}
	cases["keys shorter and longer than a prefix"] = short
	return cases
}

// randomRenderMeta is random metadata after a few random promotions, with random membership:
// what a tree's generations give the renderers.
func randomRenderMeta(rng *rand.Rand) *Meta {
	g := &metaGen{rng: rng, now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	m := g.meta()
	for range rng.IntN(8) {
		g.promote(m)
	}
	m.Subsets = slices.Clone([]string{"amd64", "arm64", "s390x", AnyArchitecture, ArchiveSubset}[:rng.IntN(6)])
	for _, b := range m.Blobs {
		b.Subsets, b.Former = rng.Uint64N(32), rng.Uint64N(4)
		b.Since = rng.Uint64N(m.Generation + 1)
	}
	for _, name := range slices.Sorted(maps.Keys(m.Repositories)) {
		if rng.IntN(4) != 0 {
			continue
		}
		for _, tag := range slices.Sorted(maps.Keys(m.Repositories[name].Tags)) { // artifacts
			if mf := m.Manifests[m.Repositories[name].Tags[tag]]; mf != nil {
				mf.Data = fmt.Appendf(nil, `{"artifactType":"application/x.%s"}`, name)
			}
		}
	}
	return m
}

// TestIndexJSONMatchesReference: IndexJSON gives, byte for byte, what encoding/json gave
// (refIndexJSON), for the rare cases and random metadata.
func TestIndexJSONMatchesReference(t *testing.T) {
	check := func(t *testing.T, m *Meta) {
		t.Helper()
		got, err := IndexJSON(m)
		if err != nil {
			t.Fatal(err)
		}
		want, err := refIndexJSON(m)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("got  %.3000q\nwant %.3000q", got, want)
		}
	}
	forRenderMetas(t, 10, check)
}

// TestSubsetFiltersMatchReference: SubsetFilters gives, byte for byte, the files the line
// slice sorted by path gave (refSubsetFilters), for the rare cases and random metadata.
func TestSubsetFiltersMatchReference(t *testing.T) {
	check := func(t *testing.T, m *Meta) {
		t.Helper()
		got, want := m.SubsetFilters(), refSubsetFilters(m)
		for _, p := range slices.Sorted(maps.Keys(want)) {
			if !bytes.Equal(got[p], want[p]) {
				t.Errorf("%s: got\n%.2000q\nwant\n%.2000q", p, got[p], want[p])
			}
		}
		if len(got) != len(want) {
			t.Errorf("got %d files, want %d", len(got), len(want))
		}
	}
	forRenderMetas(t, 11, check)
}

// forRenderMetas runs check on each of renderCases and on 200 random metadata of seed.
func forRenderMetas(t *testing.T, seed uint64, check func(t *testing.T, m *Meta)) {
	for name, m := range renderCases() {
		t.Run(name, func(t *testing.T) { check(t, m) })
	}
	rng := rand.New(rand.NewPCG(seed, seed))
	for i := range 200 {
		t.Run(fmt.Sprint("random ", i), func(t *testing.T) { check(t, randomRenderMeta(rng)) })
	}
}

// FuzzManifestArtifactType: whatever a manifest's bytes, manifestArtifactType reads the
// artifactType encoding/json reads.
func FuzzManifestArtifactType(f *testing.F) {
	for _, s := range []string{`{"artifactType":"x"}`, `{"ArtifactTYPE":"x"}`, `{"\u0061rtifactType":"x"}`, `{"artifactType":1}`, `{"a":"é"}`, `{"artifactType":"x","artifactType":"y"}`, `{}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var at struct {
			ArtifactType string `json:"artifactType"`
		}
		_ = json.Unmarshal(data, &at)
		if got, want := manifestArtifactType(data), at.ArtifactType; got != want {
			t.Errorf("manifestArtifactType(%q) = %q, want %q", data, got, want)
		}
	})
}

// FuzzAppendJSONString: appendJSONString renders any string as encoding/json does.
func FuzzAppendJSONString(f *testing.F) {
	for _, s := range []string{"", "fedora:42", "<&>", "\x00\x1f", "é\u2028\u2029", "\xff", `"\`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		if got := appendJSONString([]byte("x"), s); !bytes.Equal(got[1:], want) || got[0] != 'x' {
			t.Errorf("appendJSONString(%q) = %q, want x%q", s, got, want)
		}
	})
}
