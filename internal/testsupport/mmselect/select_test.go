package mmselect

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/regmirror/regmirror/internal/mirrormanager"
	"github.com/regmirror/regmirror/internal/testsupport/mmtest"
)

var testContinents = map[string]string{
	"DE": "EU", "FR": "EU", "AT": "EU", "US": "NA", "CA": "NA", "JP": "AS", "BR": "SA", "RU": "EU",
}

func testContinent(c string) string { return testContinents[c] }

// tiersString renders tiers as "netblock/24:4 country:1,2 …".
func tiersString(ts []Tier) string {
	var parts []string
	for _, t := range ts {
		var ids []string
		for _, h := range t.Hosts {
			ids = append(ids, fmt.Sprint(h.ID))
		}
		k := string(t.Kind)
		if t.Kind == TierNetblock {
			k += fmt.Sprintf("/%d", t.Bits)
		}
		parts = append(parts, k+":"+strings.Join(ids, ","))
	}
	return strings.Join(parts, " ")
}

// TestSelect routes clients over the fixture's hosts for pub/fedora/containers:
// 1 DE, 2 DE, 3 FR, 4 private DE (192.0.2.0/24, 198.51.100.7, 10.0.0.0/8, AS64500),
// 5 US restricted to US and CA, 6 JP (AS64501, AS64502, 2001:db8::/32, 10.20.0.0/16),
// 8 no country, 11 BR, 12 AT.
func TestSelect(t *testing.T) {
	s, err := mirrormanager.Decode(mmtest.Fixture().Bytes())
	if err != nil {
		t.Fatal(err)
	}
	hosts, err := s.Hosts("pub/fedora/containers")
	if err != nil {
		t.Fatal(err)
	}
	rust := Policy{Continent: testContinent, AlwaysContinent: true}
	tests := []struct {
		name    string
		addr    string
		country string
		cont    string
		asn     uint32
		policy  Policy
		want    string
	}{
		{"netblock reaches the private host, then country and continent reach the minimum",
			"192.0.2.10", "DE", "", 0, Policy{}, "netblock/24:4 country:1,2 continent:3,12"},
		{"bare-address netblock", "198.51.100.7", "DE", "", 0, Policy{}, "netblock/32:4 country:1,2 continent:3,12"},
		{"IPv4-mapped client address", "::ffff:192.0.2.10", "DE", "", 0, Policy{}, "netblock/24:4 country:1,2 continent:3,12"},
		{"most specific netblock first, global widening, restricted host left out",
			"10.20.1.1", "JP", "", 0, Policy{}, "netblock/16:6 netblock/8:4 global:1,2,3,8,11,12"},
		{"IPv6 netblock", "2001:db8::1", "JP", "", 0, Policy{}, "netblock/32:6 global:1,2,3,8,11,12"},
		{"ASN reaches the private host", "203.0.113.5", "DE", "", 64500, Policy{}, "asn:4 country:1,2 continent:3,12"},
		{"peer ASN", "203.0.113.5", "JP", "", 64502, Policy{}, "asn:6 global:1,2,3,8,11,12"},
		{"netblock and ASN of one host: netblock tier only", "192.0.2.10", "DE", "", 64500, Policy{}, "netblock/24:4 country:1,2 continent:3,12"},
		{"country client: private host not reached, widened to global",
			"203.0.113.5", "DE", "", 0, Policy{}, "country:1,2 continent:3,12 global:6,8,11"},
		{"country, continent, global; restricted host left out for AT",
			"203.0.113.5", "AT", "", 0, Policy{}, "country:12 continent:1,2,3 global:6,8,11"},
		{"restricted host serves an allowed country (CA) through its continent",
			"203.0.113.5", "CA", "", 0, Policy{}, "continent:5 global:1,2,3,6,8,11,12"},
		{"restricted host serves its own country", "203.0.113.5", "US", "", 0, Policy{}, "country:5 global:1,2,3,6,8,11,12"},
		{"unknown country: global, without restricted hosts", "203.0.113.5", "", "", 0, Policy{}, "global:1,2,3,6,8,11,12"},
		{"invalid address: no netblock tier", "", "DE", "", 0, Policy{}, "country:1,2 continent:3,12 global:6,8,11"},
		{"continent given by the caller (CountryContinentRedirectCache)",
			"203.0.113.5", "RU", "EU", 0, Policy{}, "continent:1,2,3,12 global:6,8,11"},
		{"minimum 2: the country tier suffices", "203.0.113.5", "DE", "", 0, Policy{Minimum: 2}, "country:1,2"},
		{"minimum 1: the country tier is listed even when a netblock satisfies it",
			"192.0.2.10", "DE", "", 0, Policy{Minimum: 1}, "netblock/24:4 country:1,2"},
		{"minimum 8: global widening after a full continent", "192.0.2.10", "DE", "", 0, Policy{Minimum: 8}, "netblock/24:4 country:1,2 continent:3,12 global:6,8,11"},
		{"Rust policy: continent always, global only below the minimum",
			"203.0.113.5", "DE", "", 0, Policy{Minimum: 2, Continent: testContinent, AlwaysContinent: true}, "country:1,2 continent:3,12"},
		{"Rust policy, default minimum", "203.0.113.5", "FR", "", 0, rust, "country:3 continent:1,2,12 global:6,8,11"},
		{"no continent table: no continent tier", "203.0.113.5", "DE", "", 0, Policy{Continent: func(string) string { return "" }}, "country:1,2 global:3,6,8,11,12"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var addr netip.Addr
			if tt.addr != "" {
				addr = netip.MustParseAddr(tt.addr)
			}
			p := tt.policy
			if p.Continent == nil {
				p.Continent = testContinent
			}
			got := tiersString(Select(hosts, Client{Addr: addr, Country: tt.country, Continent: tt.cont, ASN: tt.asn}, p))
			if got != tt.want {
				t.Errorf("Select(%s, %s, AS%d):\n got %s\nwant %s", tt.addr, tt.country, tt.asn, got, tt.want)
			}
		})
	}
}

func TestSelectNoHosts(t *testing.T) {
	got := Select(nil, Client{Addr: netip.MustParseAddr("192.0.2.1"), Country: "DE", ASN: 1}, Policy{Continent: testContinent})
	if got != nil {
		t.Errorf("Select(no hosts) = %s, want nil", tiersString(got))
	}
}
