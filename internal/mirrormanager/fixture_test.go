package mirrormanager

import (
	"net/netip"

	"github.com/regmirror/regmirror/internal/testsupport/mmtest"
)

// fixture is mmtest.Fixture, the cache the package's tests decode.
func fixture() cacheSpec { return mmtest.Fixture() }

// fixtureHosts is what Hosts("pub/fedora/containers") must return for fixture().
func fixtureHosts() []Host {
	return []Host{
		{ID: 1, Name: "mm-host-1", Country: "DE", Bandwidth: 10000,
			URLs: []string{"https://de-big.example/pub/fedora/containers/", "http://de-big.example/pub/fedora/containers/"}},
		{ID: 2, Name: "mm-host-2", Country: "DE", Bandwidth: 100,
			URLs: []string{"http://de-small.example/fedora/containers/"}},
		{ID: 3, Name: "mm-host-3", Country: "FR", Bandwidth: 500, Internet2: true,
			URLs: []string{"https://fr.example/mirror/fedora/containers/"}},
		{ID: 4, Name: "mm-host-4", Country: "DE", Bandwidth: 1000, Private: true, Internet2: true,
			Netblocks: []netip.Prefix{
				netip.MustParsePrefix("192.0.2.0/24"),
				netip.MustParsePrefix("198.51.100.7/32"),
				netip.MustParsePrefix("10.0.0.0/8"),
			},
			ASNs: []uint32{64500},
			URLs: []string{"https://mirror.campus.example/fedora/containers/"}},
		{ID: 5, Name: "mm-host-5", Country: "US", Bandwidth: 1000, AllowedCountries: []string{"US", "CA"},
			URLs: []string{"https://us.example/fedora/containers/"}},
		{ID: 6, Name: "mm-host-6", Country: "JP", Bandwidth: 1000,
			Netblocks: []netip.Prefix{netip.MustParsePrefix("2001:db8::/32"), netip.MustParsePrefix("10.20.0.0/16")},
			ASNs:      []uint32{64501, 64502},
			URLs:      []string{"https://jp.example/fedora/containers/"}},
		{ID: 8, Name: "mm-host-8", Country: "", Bandwidth: 1,
			URLs: []string{"https://nowhere.example/fedora/containers/"}},
		{ID: 11, Name: "mm-host-11", Country: "BR", Bandwidth: 100,
			URLs: []string{"https://br.example/fedora/containers/"}},
		{ID: 12, Name: "mm-host-12", Country: "AT", Bandwidth: 2000,
			URLs: []string{"HTTPS://at.example/fedora/containers/"}},
	}
}
