package redirector

import (
	"net/netip"
	"sort"

	"github.com/regmirror/regmirror/layout"
)

// regionFor returns the region a client falls in: its country's, else its continent's, else
// "global"; nil when the generation has no regions (no mirrors).
func (g *generation) regionFor(country, continent string) *regionEntry {
	if country != "" {
		if r, ok := g.regions[country]; ok {
			return r
		}
	}
	if continent != "" {
		if r, ok := g.regions[continent]; ok {
			return r
		}
	}
	return g.regions["global"]
}

// chooseMirror picks the mirror for one blob download, or nil when no mirror can serve it.
//
// Tier 0 is every candidate mirror with a netblock that contains the client's address; then
// the region's tiers in order (the country's mirrors, the rest of the continent, the rest of
// the world), then the global region's if the client's region is another. Within a tier the
// choice is random, weighted by bandwidth. A mirror is a candidate for a blob only if the last
// crawl found it healthy and enabled (the generation holds no others) and holding a generation
// at least as new as the blob (Generation >= since). rnd returns uniform random numbers.
func (g *generation) chooseMirror(addr netip.Addr, region *regionEntry, since uint64, rnd func() uint64) *mirrorEntry {
	if len(g.netblockMirrors) > 0 && addr.IsValid() {
		if m := pickNetblock(g.netblockMirrors, addr, since, rnd); m != nil {
			return m
		}
	}
	if region != nil {
		for i := range region.tiers {
			if m := region.tiers[i].pick(since, rnd); m != nil {
				return m
			}
		}
		if region.key != "global" {
			if gl := g.regions["global"]; gl != nil {
				for i := range gl.tiers {
					if m := gl.tiers[i].pick(since, rnd); m != nil {
						return m
					}
				}
			}
		}
	}
	return nil
}

// pick chooses within a tier. When every mirror of the tier is new enough (the common case)
// it is one random number and a binary search over precomputed cumulative weights.
func (t *tierEntry) pick(since uint64, rnd func() uint64) *mirrorEntry {
	if t.total == 0 {
		return nil
	}
	if layout.HeldAt(t.minGen, since) { // every mirror of the tier holds the blob
		x := rnd() % t.total
		i := sort.Search(len(t.cum), func(i int) bool { return t.cum[i] > x })
		return t.mirrors[i]
	}
	var total uint64
	for _, m := range t.mirrors {
		if layout.HeldAt(m.generation, since) {
			total += m.weight
		}
	}
	if total == 0 {
		return nil
	}
	x := rnd() % total
	for _, m := range t.mirrors {
		if layout.HeldAt(m.generation, since) {
			if x < m.weight {
				return m
			}
			x -= m.weight
		}
	}
	return nil
}

func pickNetblock(ms []*mirrorEntry, addr netip.Addr, since uint64, rnd func() uint64) *mirrorEntry {
	addr = addr.Unmap()
	match := func(m *mirrorEntry) bool {
		if !layout.HeldAt(m.generation, since) {
			return false
		}
		for _, p := range m.netblocks {
			if p.Contains(addr) {
				return true
			}
		}
		return false
	}
	var total uint64
	for _, m := range ms {
		if match(m) {
			total += m.weight
		}
	}
	if total == 0 {
		return nil
	}
	x := rnd() % total
	for _, m := range ms {
		if match(m) {
			if x < m.weight {
				return m
			}
			x -= m.weight
		}
	}
	return nil
}
