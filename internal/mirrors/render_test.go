package mirrors

import (
	"bytes"
	"errors"
	"testing"

	"github.com/regmirror/regmirror/layout"
)

// TestVariantsRender checks that, once Precompute has written the variant sets, every variant
// renders from the metadata alone the same whether it is rendered alone or with every other
// manifest of the set, that every manifest of the benchmark's tree has one in every set, and
// that an unknown set has none.
func TestVariantsRender(t *testing.T) {
	f := newFixture(t)
	f.meta.Mirrors = network()
	f.meta.Origin = "https://origin.example/tree/"
	for _, tc := range []struct {
		name    string
		meta    *layout.Meta
		perSet  int // variants in every set
		minSets int
	}{
		{"fixture", f.meta, 5, 5},
		{"bench", benchMeta(300, 50, 30), 300, 30},
	} {
		m := tc.meta
		st, err := Precompute(m)
		if err != nil {
			t.Fatal(err)
		}
		if st.VariantSets != len(m.VariantSets) || st.VariantSets < tc.minSets {
			t.Errorf("%s: %d variant sets, stats say %d, want at least %d", tc.name, len(m.VariantSets), st.VariantSets, tc.minSets)
		}
		var all []layout.Digest
		for d := range m.Manifests {
			all = append(all, d)
		}
		r := layout.NewRenderer(m)
		for i := range m.VariantSets {
			n := 0
			r.Render(i, all, func(d layout.Digest, v *layout.Variant) {
				n++
				alone, err := layout.NewRenderer(m).Variant(i, d)
				if err != nil || alone.Digest != v.Digest || !bytes.Equal(alone.Data, v.Data) || digestOf(v.Data) != v.Digest {
					t.Errorf("%s set %d %s: rendered with all %s, alone %v (%v)", tc.name, i, d, v.Digest, alone, err)
				}
			})
			if n != tc.perSet {
				t.Errorf("%s set %d: %d variants, want %d", tc.name, i, n, tc.perSet)
			}
		}
		for _, set := range []int{-1, len(m.VariantSets)} {
			if _, err := r.Variant(set, f.m1); !errors.Is(err, layout.ErrNoVariant) {
				t.Errorf("%s: variant in unknown set %d: got %v, want ErrNoVariant", tc.name, set, err)
			}
		}
	}
}
