package mirrors

import "github.com/regmirror/regmirror/layout"

// Renderer renders regional variants one at a time from the metadata alone (canonical
// manifests, the regions' tiers, the mirrors' URLs and generations, the blobs' Since and the
// origin), byte for byte as Precompute stores them in meta.VariantSets. A reader of the
// metadata can use it to hold variants lazily instead of all of them: with 10,000 manifests and
// 37 variant sets the stored variants weigh about 850 MiB.
//
// A Renderer is safe for concurrent use. It reads meta, which must not change meanwhile.
type Renderer struct {
	meta  *layout.Meta
	tmpls map[layout.Digest]*tmpl
	prefs [][]*layout.Mirror // by variant set index
}

// NewRenderer parses meta's manifests once. The variant sets are those that meta.Regions
// name, with each set's preference order taken from the tiers of the regions naming it.
func NewRenderer(meta *layout.Meta) *Renderer {
	r := &Renderer{meta: meta}
	r.tmpls, _ = parseManifests(meta.Manifests)
	byName := make(map[string]*layout.Mirror, len(meta.Mirrors))
	for _, m := range meta.Mirrors {
		if m.Usable() {
			byName[m.Name] = m
		}
	}
	for _, reg := range meta.Regions {
		if reg == nil || reg.VariantSet < 0 {
			continue
		}
		for len(r.prefs) <= reg.VariantSet {
			r.prefs = append(r.prefs, nil)
		}
		if r.prefs[reg.VariantSet] != nil {
			continue
		}
		pref := []*layout.Mirror{}
		for _, tier := range reg.Tiers {
			for _, n := range tier {
				if m := byName[n]; m != nil {
					pref = append(pref, m)
				}
			}
		}
		r.prefs[reg.VariantSet] = pref
	}
	return r
}

// Sets is the number of variant sets.
func (r *Renderer) Sets() int { return len(r.prefs) }

// Variant renders the variant of canonical manifest d in variant set set; nil when it has
// none (see the package documentation) or set is out of range.
func (r *Renderer) Variant(set int, d layout.Digest) *layout.Variant {
	if set < 0 || set >= len(r.prefs) || r.prefs[set] == nil {
		return nil
	}
	b := &setBuilder{
		meta:  r.meta,
		tmpls: r.tmpls,
		pref:  r.prefs[set],
		done:  map[layout.Digest]bool{},
		set:   &layout.VariantSet{Variants: map[layout.Digest]*layout.Variant{}},
	}
	return b.variant(d, 0)
}
