package redirector

import (
	"net/netip"
	"sort"
	"strconv"

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
	return g.global
}

// chooseMirror picks the mirror for one blob download, or nil when no mirror can serve it.
//
// The tiers, most preferred first (MirrorManager's order):
//
//  1. netblock: candidate mirrors with a netblock containing the client's address, the most
//     specific match first (a /24 before a /16);
//  2. ASN: candidate mirrors listing the client's autonomous system (asn, from --asn-db;
//     0 when unknown);
//  3. the region's tiers in order (the country's mirrors, the rest of the continent, the rest
//     of the world), then the global region's if the client's region is another.
//
// Private mirrors are only ever in tiers 1 and 2 (the precompute lists them in no region),
// and a mirror restricted to some client countries is only in those countries' regions. The
// blob goes to the first tier that has a mirror holding it; within a tier the choice is
// random, weighted by bandwidth. A mirror is a candidate for a blob only if the last crawl
// found it healthy and enabled (the generation holds no others) and holding a generation at
// least as new as the blob (Generation >= since), and carrying one of the subsets the blob
// belongs to (its content; w.has). The regional candidate list's minimum
// (layout.Meta.MinMirrors) does not enter here: widening a list to more tiers never changes
// which tier is the first to hold the blob. rnd returns uniform random numbers.
func (g *generation) chooseMirror(addr netip.Addr, asn uint32, region *regionEntry, w want, rnd func() uint64) *mirrorEntry {
	var chosen *mirrorEntry
	g.walkTiers(addr, asn, region, func(t tierVisit) bool {
		switch t.kind {
		case tierNetblock:
			chosen = pickNetblock(t.mirrors, addr, w, rnd)
		case tierASN:
			chosen = pickWeighted(t.mirrors, w.has, rnd)
		default:
			chosen = t.tier.pick(w, rnd)
		}
		return chosen != nil
	})
	return chosen
}

// tierKind is what puts mirrors in a tier.
type tierKind uint8

const (
	tierNetblock tierKind = iota // a netblock containing the client's address
	tierASN                      // the client's autonomous system
	tierRegion                   // a tier of the client's region, or of the global region
)

// tierVisit is one tier of a client's walk (walkTiers).
type tierVisit struct {
	kind    tierKind
	asn     uint32         // tierASN
	region  string         // tierRegion: the region's key
	index   int            // tierRegion: the tier's place in the region, from 0
	mirrors []*mirrorEntry // tierNetblock: every mirror with a netblock (containing the address or not)
	tier    *tierEntry     // tierRegion
}

// name is how /route names the tier.
func (t tierVisit) name() string {
	switch t.kind {
	case tierNetblock:
		return "netblock"
	case tierASN:
		return "AS" + strconv.FormatUint(uint64(t.asn), 10)
	default:
		return t.region + " tier " + strconv.Itoa(t.index+1)
	}
}

// walkTiers visits the tiers of a client (addr, asn and region as chooseMirror takes them) in
// chooseMirror's order, until visit returns true: the one walk both the handler's choice and
// /route's explanation follow.
func (g *generation) walkTiers(addr netip.Addr, asn uint32, region *regionEntry, visit func(tierVisit) bool) {
	if len(g.netblockMirrors) > 0 && addr.IsValid() {
		if visit(tierVisit{kind: tierNetblock, mirrors: g.netblockMirrors}) {
			return
		}
	}
	if ms := g.asnMirrors[asn]; len(ms) > 0 && asn != 0 {
		if visit(tierVisit{kind: tierASN, asn: asn, mirrors: ms}) {
			return
		}
	}
	if region == nil {
		return
	}
	regions := [2]*regionEntry{region}
	if region.key != "global" {
		regions[1] = g.global
	}
	for _, reg := range regions {
		if reg == nil {
			continue
		}
		for i := range reg.tiers {
			if visit(tierVisit{kind: tierRegion, region: reg.key, index: i, mirrors: reg.tiers[i].mirrors, tier: &reg.tiers[i]}) {
				return
			}
		}
	}
}

// want is what a mirror must have to take a blob: the generation the blob first appeared in,
// and the subsets it belongs to (a mask over the generation's subset table; 0: every mirror
// carries it).
type want struct{ since, subsets uint64 }

// wantOf is what b asks of a mirror.
func wantOf(b *blobEntry) want { return want{since: b.since, subsets: b.subsets} }

// has reports whether m holds the blob w describes: a generation at least as new, and a
// content including one of its subsets.
func (w want) has(m *mirrorEntry) bool {
	return layout.HeldAt(m.generation, w.since) && (w.subsets == 0 || m.content&w.subsets != 0)
}

// pick chooses within a tier. When every mirror of the tier is new enough and carries every
// subset (the common case) it is one random number and a binary search over precomputed
// cumulative weights.
func (t *tierEntry) pick(w want, rnd func() uint64) *mirrorEntry {
	if t.total == 0 {
		return nil
	}
	if layout.HeldAt(t.minGen, w.since) && (w.subsets == 0 || t.allContent&w.subsets == w.subsets) { // every mirror of the tier holds the blob
		x := rnd() % t.total
		i := sort.Search(len(t.cum), func(i int) bool { return t.cum[i] > x })
		return t.mirrors[i]
	}
	var total uint64
	for _, m := range t.mirrors {
		if w.has(m) {
			total += m.weight
		}
	}
	if total == 0 {
		return nil
	}
	x := rnd() % total
	for _, m := range t.mirrors {
		if w.has(m) {
			if x < m.weight {
				return m
			}
			x -= m.weight
		}
	}
	return nil
}

// pickNetblock chooses among the mirrors whose most specific netblock containing addr is the
// longest such match of any mirror holding the blob.
func pickNetblock(ms []*mirrorEntry, addr netip.Addr, w want, rnd func() uint64) *mirrorEntry {
	addr = addr.Unmap()
	bits := func(m *mirrorEntry) int {
		b := -1
		for _, p := range m.netblocks {
			if p.Bits() > b && p.Contains(addr) {
				b = p.Bits()
			}
		}
		return b
	}
	best := -1
	for _, m := range ms {
		if w.has(m) {
			best = max(best, bits(m))
		}
	}
	if best < 0 {
		return nil
	}
	return pickWeighted(ms, func(m *mirrorEntry) bool { return w.has(m) && bits(m) == best }, rnd)
}

// pickWeighted chooses among the mirrors of ms that match, weighted by bandwidth.
func pickWeighted(ms []*mirrorEntry, match func(*mirrorEntry) bool, rnd func() uint64) *mirrorEntry {
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
