// Package mmselect is test support: MirrorManager's own choice of mirrors for a client
// (mirrorlist_server.py and the Rust mirrorlist-server), the oracle that tests compare
// regmirror's regions with. No product code imports it.
package mmselect

import (
	"net/netip"
	"slices"
	"sort"
	"strings"

	"github.com/regmirror/regmirror/internal/mirrormanager"
)

// Host is a MirrorManager host as mirrormanager.Load returns it.
type Host = mirrormanager.Host

// DefaultMinimum is MirrorManager's default minimum number of mirrors in a list
// (mirrorlist-server --minimum, mirrorlist_server.py's minimum).
const DefaultMinimum = 5

// Client is what the caller knows about a client: its address, and what its GeoIP and
// ASN databases say about it.
type Client struct {
	Addr netip.Addr
	// Country is the client's upper-case ISO code, "" when unknown. MirrorManager takes it
	// from NetblockCountryCache (Snapshot.ClientCountry) before GeoIP.
	Country string
	// Continent is the client's continent code; "" means Policy.Continent(Country).
	Continent string
	// ASN is the client's autonomous system number, 0 when unknown.
	ASN uint32
}

// Policy tunes Select.
type Policy struct {
	// Minimum is the number of distinct hosts below which the list is widened to the next
	// tier; values below 1 mean DefaultMinimum.
	Minimum int
	// Continent maps a country code to its continent code ("" when unknown). MirrorManager
	// uses its country_continent.csv overridden by CountryContinentRedirectCache
	// (Snapshot.ContinentRedirect). Without it there is no continent tier.
	Continent func(country string) string
	// AlwaysContinent adds the continent tier even when the list already holds Minimum
	// hosts, as the Rust mirrorlist-server does (the Python one, and the default here,
	// widen tier by tier).
	AlwaysContinent bool
}

// TierKind names how a tier's hosts match the client.
type TierKind string

// The tiers, in preference order.
const (
	TierNetblock  TierKind = "netblock"
	TierASN       TierKind = "asn"
	TierCountry   TierKind = "country"
	TierContinent TierKind = "continent"
	TierGlobal    TierKind = "global"
)

// Tier is a set of equally preferred hosts.
type Tier struct {
	Kind TierKind
	// Bits is, for a netblock tier, the length of the client's most specific netblock
	// match shared by its hosts; more specific netblock tiers come first.
	Bits int
	// Hosts, sorted by ID. MirrorManager shuffles netblock and ASN tiers uniformly and
	// the others weighted by Bandwidth.
	Hosts []Host
}

// Select returns MirrorManager's candidate hosts for a client, as tiers in preference
// order, each host in its most preferred tier only, empty tiers left out:
//
//  1. netblock: hosts with a netblock containing the client address, one tier per prefix
//     length, most specific first; private hosts included; no country restriction.
//  2. asn: hosts serving the client's ASN; private hosts included; no country restriction.
//  3. country: public hosts of the client's country.
//  4. continent: public hosts of the other countries of the client's continent, if the
//     list holds fewer than Minimum hosts (or always, with AlwaysContinent).
//  5. global: all other public hosts, if the list still holds fewer than Minimum hosts.
//
// Tiers 3 to 5 leave out a host restricted to client countries (AllowedCountries) that do
// not include the client's; when the client's country is unknown, every restricted host
// is left out.
func Select(hosts []Host, c Client, p Policy) []Tier {
	minimum := p.Minimum
	if minimum < 1 {
		minimum = DefaultMinimum
	}
	addr := c.Addr.Unmap()
	country := strings.ToUpper(c.Country)
	continent := strings.ToUpper(c.Continent)
	if continent == "" && country != "" && p.Continent != nil {
		continent = strings.ToUpper(p.Continent(country))
	}

	placed := map[int64]bool{}
	var tiers []Tier
	add := func(kind TierKind, bits int, match func(h *Host) bool) {
		t := Tier{Kind: kind, Bits: bits}
		for i := range hosts {
			h := &hosts[i]
			if !placed[h.ID] && match(h) {
				placed[h.ID] = true
				t.Hosts = append(t.Hosts, *h)
			}
		}
		if len(t.Hosts) > 0 {
			sort.Slice(t.Hosts, func(i, j int) bool { return t.Hosts[i].ID < t.Hosts[j].ID })
			tiers = append(tiers, t)
		}
	}

	// 1. Netblocks, most specific match first.
	if addr.IsValid() {
		best := map[int64]int{}
		var lengths []int
		for _, h := range hosts {
			b := -1
			for _, nb := range h.Netblocks {
				if nb.Contains(addr) && nb.Bits() > b {
					b = nb.Bits()
				}
			}
			if b >= 0 {
				best[h.ID] = b
				if !slices.Contains(lengths, b) {
					lengths = append(lengths, b)
				}
			}
		}
		sort.Sort(sort.Reverse(sort.IntSlice(lengths)))
		for _, bits := range lengths {
			add(TierNetblock, bits, func(h *Host) bool {
				b, ok := best[h.ID]
				return ok && b == bits
			})
		}
	}

	// 2. ASN.
	if c.ASN != 0 {
		add(TierASN, 0, func(h *Host) bool { return slices.Contains(h.ASNs, c.ASN) })
	}

	allowed := func(h *Host) bool {
		return !h.Private && (len(h.AllowedCountries) == 0 || (country != "" && slices.Contains(h.AllowedCountries, country)))
	}

	// 3. Country.
	if country != "" {
		add(TierCountry, 0, func(h *Host) bool { return allowed(h) && h.Country == country })
	}

	// 4. Continent.
	if continent != "" && p.Continent != nil && (p.AlwaysContinent || len(placed) < minimum) {
		add(TierContinent, 0, func(h *Host) bool {
			return allowed(h) && h.Country != "" && h.Country != country &&
				strings.EqualFold(p.Continent(h.Country), continent)
		})
	}

	// 5. Global.
	if len(placed) < minimum {
		add(TierGlobal, 0, allowed)
	}
	return tiers
}
