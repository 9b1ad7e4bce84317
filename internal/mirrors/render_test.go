package mirrors

import (
	"errors"
	"testing"

	"github.com/regmirror/regmirror/layout"
)

// TestRecordedVariantsRender checks that every variant Precompute records renders, from the
// metadata alone, as the digest and size it recorded, and that a manifest without a record
// renders none.
func TestRecordedVariantsRender(t *testing.T) {
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
		st, err := Precompute(m)
		if err != nil {
			t.Fatal(err)
		}
		r := layout.NewRenderer(m)
		rendered := 0
		for i, vs := range m.VariantSets {
			for d := range m.Manifests {
				v, err := r.Variant(i, d)
				ref, recorded := vs.Variants[d]
				switch {
				case !recorded && !errors.Is(err, layout.ErrNoVariant):
					t.Errorf("%s set %d %s: no variant recorded, rendering gives %v", tc.name, i, d, err)
				case recorded && err != nil:
					t.Errorf("%s set %d %s: %v", tc.name, i, d, err)
				case recorded:
					rendered++
					if got, want := digestOf(v.Data), ref.Digest; got != want {
						t.Errorf("%s set %d %s: rendered %s, recorded %s", tc.name, i, d, got, want)
					}
				}
			}
		}
		if rendered != st.Variants || rendered == 0 {
			t.Errorf("%s: rendered %d variants, stats say %d", tc.name, rendered, st.Variants)
		}
		for _, set := range []int{-1, len(m.VariantSets)} {
			if _, err := r.Variant(set, f.m1); !errors.Is(err, layout.ErrNoVariant) {
				t.Errorf("%s: variant in unknown set %d: got %v, want ErrNoVariant", tc.name, set, err)
			}
		}
	}
}
