package mmtest

// Fixture is a cache as generate-mirrorlist-cache writes it for a category whose top
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
func Fixture() Cache {
	return Cache{
		Time:              1767225600, // 2026-01-01T00:00:00Z
		NetblockCountry:   []KV{{K: "100.64.0.0/10", V: "jp"}, {K: "100.64.1.0/24", V: "BR"}},
		ContinentRedirect: []KV{{K: "ru", V: "eu"}},
		Skipped:           true,
		HCURL: []IDString{
			{ID: 101, S: "https://de-big.example/pub/fedora"},
			{ID: 102, S: "http://de-big.example/pub/fedora"},
			{ID: 103, S: "rsync://de-big.example/fedora"},
			{ID: 201, S: "http://de-small.example/fedora/"},
			{ID: 301, S: "https://fr.example/mirror/fedora"},
			{ID: 401, S: "https://mirror.campus.example/fedora"},
			{ID: 501, S: "https://us.example/fedora"},
			{ID: 601, S: "https://jp.example/fedora"},
			{ID: 701, S: "https://stale.example/fedora"},
			{ID: 801, S: "https://nowhere.example/fedora"},
			{ID: 901, S: "rsync://rsync-only.example/fedora"},
			{ID: 1101, S: "https://br.example/fedora"},
			{ID: 1201, S: "HTTPS://at.example/fedora"},
		},
		HostASN: []IDInts{
			{ID: 64500, IDs: []int64{4}},
			{ID: 64501, IDs: []int64{6}},
			{ID: 64502, IDs: []int64{6}},
			{ID: 64999, IDs: []int64{7}}, // stale: not listed for containers, so never a candidate there
		},
		HostMaxConn: []IDInt{{ID: 1, V: 10}, {ID: 2, V: 5}},
		HostCountry: []IDString{
			{ID: 1, S: "DE"}, {ID: 2, S: "DE"}, {ID: 3, S: "FR"}, {ID: 4, S: "DE"}, {ID: 5, S: "US"}, {ID: 6, S: "JP"},
			{ID: 7, S: "DE"}, {ID: 9, S: "DE"}, {ID: 10, S: "DE"}, {ID: 11, S: "BR"}, {ID: 12, S: "AT"},
		},
		HostBandwidth: []IDInt{
			{ID: 1, V: 10000}, {ID: 2, V: 100}, {ID: 3, V: 500}, {ID: 4, V: 1000}, {ID: 5, V: 1000}, {ID: 6, V: 1000},
			{ID: 7, V: 5000}, {ID: 9, V: 100}, {ID: 10, V: 100}, {ID: 11, V: 100}, {ID: 12, V: 2000},
		},
		HostAllowed: []IDStrings{{ID: 5, SS: []string{"us", "CA"}}},
		HostNetblock: []StrInts{
			{S: "192.0.2.0/24", IDs: []int64{4}},
			{S: "198.51.100.7", IDs: []int64{4}},
			{S: "10.1.2.3/8", IDs: []int64{4}},
			{S: "2001:db8::/32", IDs: []int64{6}},
			{S: "10.20.0.0/16", IDs: []int64{6}}, // inside campus's 10.0.0.0/8, more specific
			{S: "203.0.113.0/24", IDs: []int64{7}},
			{S: "not-a-netblock", IDs: []int64{1}}, // skipped, as mirrorlist-server does
		},
		Dirs: []Dir{
			{
				Name:    "pub/fedora/containers",
				Subpath: Str("containers"),
				Global:  []int64{1, 2, 3, 5, 6, 8, 9, 10, 11, 12},
				ByCountry: []StrInts{
					{S: "DE", IDs: []int64{1, 2, 9, 10}}, {S: "FR", IDs: []int64{3}}, {S: "US", IDs: []int64{5}},
					{S: "JP", IDs: []int64{6}}, {S: "BR", IDs: []int64{11}}, {S: "AT", IDs: []int64{12}},
				},
				Internet2: []StrInts{{S: "FR", IDs: []int64{3}}, {S: "DE", IDs: []int64{4}}},
				ByHostID: []IDInts{
					{ID: 1, IDs: []int64{102, 101, 103}}, {ID: 2, IDs: []int64{201}}, {ID: 3, IDs: []int64{301}},
					{ID: 4, IDs: []int64{401}}, {ID: 5, IDs: []int64{501}}, {ID: 6, IDs: []int64{601}},
					{ID: 8, IDs: []int64{801}}, {ID: 9, IDs: []int64{901}}, {ID: 10, IDs: []int64{1001}},
					{ID: 11, IDs: []int64{1101}}, {ID: 12, IDs: []int64{1201}},
				},
				Ordered: Bool(true),
			},
			{
				Name:      "pub/fedora/linux",
				Subpath:   Str("linux"),
				Global:    []int64{7},
				ByCountry: []StrInts{{S: "DE", IDs: []int64{7}}},
				ByHostID:  []IDInts{{ID: 7, IDs: []int64{701}}},
			},
			{
				Name:      "pub/fedora",
				Subpath:   Str(""),
				Global:    []int64{1},
				ByCountry: []StrInts{{S: "DE", IDs: []int64{1}}},
				ByHostID:  []IDInts{{ID: 1, IDs: []int64{101}}},
			},
			{
				Name:     "pub/alt",
				Global:   []int64{2},
				ByHostID: []IDInts{{ID: 2, IDs: []int64{201}}},
			},
		},
	}
}
