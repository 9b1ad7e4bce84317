package mirrormanager

import (
	"net/netip"
)

// fixture is a cache as generate-mirrorlist-cache writes it for a category whose top
// directory is pub/fedora, with hosts covering every field the decoder reads:
//
//	1  de-big      DE, 10000 Mbit/s, https + http + rsync URLs (http listed first)
//	2  de-small    DE, 100 Mbit/s, an http URL entered with a trailing slash
//	3  fr          FR, Internet2
//	4  campus      private (not in Global/ByCountry), netblocks (CIDR, bare address,
//	               CIDR with host bits), ASN 64500, Internet2 via i2_clients
//	5  us          US, restricted to clients from US and CA (stored lower-case "us")
//	6  jp          JP, ASNs 64501 and 64502, an IPv6 netblock, 10.20.0.0/16
//	7  stale       DE, 5000 Mbit/s, a netblock, but not up to date for containers
//	               (listed for pub/fedora/linux only)
//	8  nowhere     no country, no bandwidth entry
//	9  rsynconly   DE, only an rsync URL
//	10 dangling    its ByHostId names a URL id missing from HCUrlCache
//	11 br          BR
//	12 at          AT, 2000 Mbit/s
func fixture() cacheSpec {
	return cacheSpec{
		time:              1767225600, // 2026-01-01T00:00:00Z
		netblockCountry:   []kv{{"100.64.0.0/10", "jp"}, {"100.64.1.0/24", "BR"}},
		continentRedirect: []kv{{"ru", "eu"}},
		skipped:           true,
		hcURL: []idString{
			{101, "https://de-big.example/pub/fedora"},
			{102, "http://de-big.example/pub/fedora"},
			{103, "rsync://de-big.example/fedora"},
			{201, "http://de-small.example/fedora/"},
			{301, "https://fr.example/mirror/fedora"},
			{401, "https://mirror.campus.example/fedora"},
			{501, "https://us.example/fedora"},
			{601, "https://jp.example/fedora"},
			{701, "https://stale.example/fedora"},
			{801, "https://nowhere.example/fedora"},
			{901, "rsync://rsync-only.example/fedora"},
			{1101, "https://br.example/fedora"},
			{1201, "HTTPS://at.example/fedora"},
		},
		hostASN: []idInts{
			{64500, []int64{4}},
			{64501, []int64{6}},
			{64502, []int64{6}},
			{64999, []int64{7}}, // stale: not listed for containers, so never a candidate there
		},
		hostMaxConn: []idInt{{1, 10}, {2, 5}},
		hostCountry: []idString{
			{1, "DE"}, {2, "DE"}, {3, "FR"}, {4, "DE"}, {5, "US"}, {6, "JP"},
			{7, "DE"}, {9, "DE"}, {10, "DE"}, {11, "BR"}, {12, "AT"},
		},
		hostBandwidth: []idInt{
			{1, 10000}, {2, 100}, {3, 500}, {4, 1000}, {5, 1000}, {6, 1000},
			{7, 5000}, {9, 100}, {10, 100}, {11, 100}, {12, 2000},
		},
		hostAllowed: []idStrings{{5, []string{"us", "CA"}}},
		hostNetblock: []strInts{
			{"192.0.2.0/24", []int64{4}},
			{"198.51.100.7", []int64{4}},
			{"10.1.2.3/8", []int64{4}},
			{"2001:db8::/32", []int64{6}},
			{"10.20.0.0/16", []int64{6}}, // inside campus's 10.0.0.0/8, more specific
			{"203.0.113.0/24", []int64{7}},
			{"not-a-netblock", []int64{1}}, // skipped, as mirrorlist-server does
		},
		dirs: []dirSpec{
			{
				name:    "pub/fedora/containers",
				subpath: strp("containers"),
				global:  []int64{1, 2, 3, 5, 6, 8, 9, 10, 11, 12},
				byCountry: []strInts{
					{"DE", []int64{1, 2, 9, 10}}, {"FR", []int64{3}}, {"US", []int64{5}},
					{"JP", []int64{6}}, {"BR", []int64{11}}, {"AT", []int64{12}},
				},
				internet2: []strInts{{"FR", []int64{3}}, {"DE", []int64{4}}},
				byHostID: []idInts{
					{1, []int64{102, 101, 103}}, {2, []int64{201}}, {3, []int64{301}},
					{4, []int64{401}}, {5, []int64{501}}, {6, []int64{601}},
					{8, []int64{801}}, {9, []int64{901}}, {10, []int64{1001}},
					{11, []int64{1101}}, {12, []int64{1201}},
				},
				ordered: boolp(true),
			},
			{
				name:      "pub/fedora/linux",
				subpath:   strp("linux"),
				global:    []int64{7},
				byCountry: []strInts{{"DE", []int64{7}}},
				byHostID:  []idInts{{7, []int64{701}}},
			},
			{
				name:      "pub/fedora",
				subpath:   strp(""),
				global:    []int64{1},
				byCountry: []strInts{{"DE", []int64{1}}},
				byHostID:  []idInts{{1, []int64{101}}},
			},
			{
				name:     "pub/alt",
				global:   []int64{2},
				byHostID: []idInts{{2, []int64{201}}},
			},
		},
	}
}

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
