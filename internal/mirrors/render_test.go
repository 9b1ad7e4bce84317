package mirrors

import (
	"bytes"
	"testing"

	"github.com/regmirror/regmirror/layout"
)

func TestRendererMatchesPrecompute(t *testing.T) {
	f := newFixture(t)
	f.meta.Mirrors = network()
	f.meta.Origin = "https://origin.example/tree/"
	for _, tc := range []struct {
		name string
		meta *layout.Meta
	}{
		{"fixture", f.meta},
		{"bench", benchMeta(300, 50, 30)},
	} {
		m := tc.meta
		if _, err := Precompute(m); err != nil {
			t.Fatal(err)
		}
		r := NewRenderer(m)
		if r.Sets() != len(m.VariantSets) {
			t.Fatalf("%s: %d sets, want %d", tc.name, r.Sets(), len(m.VariantSets))
		}
		for i, vs := range m.VariantSets {
			for d := range m.Manifests {
				got, want := r.Variant(i, d), vs.Variants[d]
				if (got == nil) != (want == nil) {
					t.Fatalf("%s set %d %s: rendered %v, stored %v", tc.name, i, d, got != nil, want != nil)
				}
				if got != nil && (got.Digest != want.Digest || got.MediaType != want.MediaType || !bytes.Equal(got.Data, want.Data)) {
					t.Fatalf("%s set %d %s: rendered variant differs", tc.name, i, d)
				}
			}
		}
		if r.Variant(-1, f.m1) != nil || r.Variant(len(m.VariantSets), f.m1) != nil {
			t.Errorf("%s: variant of an unknown set", tc.name)
		}
	}
}
