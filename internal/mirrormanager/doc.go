// Package mirrormanager reads MirrorManager's mirrorlist cache and implements
// MirrorManager's choice of mirrors for a client, so that a site running MirrorManager
// can use it as the system of record for regmirror's mirror network.
//
// # Sources
//
// Confirmed against MirrorManager's own code, read from:
//
//   - adrianreber/mirrorlist-server (commit f199d1f): protos/mirrormanager.proto (the
//     schema), src/bin/generate-mirrorlist-cache.rs (writes the cache from MirrorManager2's
//     database; a drop-in replacement for MirrorManager2's mm2_refresh_mirrorlist_cache),
//     src/bin/mirrorlist-server.rs (reads it and answers mirrorlist/metalink requests).
//   - fedora-infra/mirrormanager2 (commit 49f0cf26): mirrormanager.proto, byte-identical to
//     the above; and, from before its removal in commit 68195564 ("Remove mirrorlist
//     related code", 2023), mirrormanager2/lib/mirrorlist.py (the Python cache writer) and
//     mirrorlist/mirrorlist_server.py (the Python server the Rust one replaced).
//
// The schema is vendored unchanged, with its MIT licence notice, in package mmpb, beside the
// Go code protoc-gen-go generates from it (`make proto`). Decode checks a cache against the
// schema's descriptor (wire.go: errors naming the field and byte offset, wrong wire types
// refused, records counted against MaxRecords), then decodes it with the generated code.
// Tests check it against snapshots from package mmtest (proto.Marshal of the generated
// types), which other packages' tests use to build snapshots too, and against
// testdata/protoc-sample.bin, encoded by protoc from the schema.
//
// # The cache file
//
// mirrorlist_cache.proto (default /var/lib/mirrormanager/mirrorlist_cache.proto) is one
// proto2 message MirrorList, serialized with no length prefix or header: the generator
// calls write_to on a CodedOutputStream over the file, the server parse_from_reader on
// it. Repeated int64 fields are written unpacked. The fields this package reads:
//
//	MirrorList
//	 1 Time                          required uint64: when the cache was written (Unix s)
//	 2 NetblockCountryCache          netblock → country: clients there count as that country
//	 4 HCUrlCache                    host_category_url.id → URL of the host's copy of the
//	                                 category's top directory, no trailing slash; only
//	                                 URLs not marked private, any scheme (http, https, ftp,
//	                                 rsync)
//	 7 CountryContinentRedirectCache country → continent, overriding country_continent.csv
//	10 HostAsnCache                  ASN → [host.id]: hosts with asn_clients set, under
//	                                 their ASN (the Python writer also their peer ASNs)
//	12 HostCountryCache              host.id → country (upper case)
//	13 HostBandwidthCache            host.id → bandwidth_int, clamped to 1..10000 (Mbit/s)
//	14 HostCountryAllowedCache       host.id → [country]: active hosts that serve only
//	                                 clients of these countries
//	15 HostNetblockCache             netblock (CIDR, or a bare address) → [host.id]:
//	                                 active hosts' netblocks (DNS names resolved)
//	16 MirrorListCache               one MirrorListCacheType per directory
//
//	MirrorListCacheType
//	 1 directory          required string: the directory's path, e.g. pub/fedora/linux
//	 2 Global             [host.id]: the directory's public hosts
//	 3 Subpath            directory path below its category's top directory
//	 4 ByCountry          country → [host.id]: the public hosts with a country
//	 5 ByCountryInternet2 country → [host.id]: Internet2 hosts (unused by the Rust server)
//	 6 ByHostId           host.id → [host_category_url.id]: every listed host
//	 7 OrderedMirrorList  obsolete, not written by the Rust generator
//
// A host is listed for a directory (has a ByHostId entry) when it is active (site and
// host user_active and admin_active) and its host category for the directory's category
// is always_up2date or has an up2date host_category_dir for the directory, and it has
// URLs. A private host (host.private or site.private) is in ByHostId only: never in Global
// or ByCountry. So a host's URL for a directory is HCUrlCache[id] + "/" + Subpath (nothing
// appended when Subpath is empty), and it is private when it is in ByHostId but not in
// Global. Fields 3, 5, 6, 8, 9 and 11 serve repo=/arch= queries and metalinks, or nothing,
// and are checked against the schema but not decoded. The cache carries no host names.
//
// Hosts turns a directory's lists into []Host: MirrorManager's data for each listed host,
// its http and https URLs (https first) ending in "/", so that URL + "blobs/sha256/<hex>"
// names a blob. Hosts with only ftp or rsync URLs cannot take a redirect and are left out.
//
// # MirrorManager's mirror choice (mirrorlist-server, Rust, in use since before 2023)
//
// For a request for a directory (path=, or repo= and arch= mapped to a directory):
//
//  1. Client address: ip= parameter, else the last address of X-Forwarded-For, else the
//     TCP peer. (There is no trusted-proxy check.)
//  2. Netblock (unless country= is given or netblock=0): every HostNetblockCache entry
//     containing the client; its hosts that have a ByHostId entry for the directory.
//     No country restriction applies; private hosts are reached this way.
//  3. ASN (same condition): the client's ASN from the global_netblocks file (lines
//     "CIDR ASN", longest match), then HostAsnCache[ASN]. No country restriction;
//     private hosts reached.
//  4. Client country: the first NetblockCountryCache entry containing the client, else
//     GeoIP2 country iso_code, else "N/A".
//  5. With country=C1,C2 (or "global"): those countries' ByCountry hosts (Global for
//     "global"); if none, the ByCountry hosts of those countries' continents; both trimmed
//     by HostCountryAllowedCache against the client's country; nothing else is added.
//  6. Otherwise, country: ByCountry[client country]; continent: ByCountry of every other
//     country of the client's continent (country_continent.csv, overridden by
//     CountryContinentRedirectCache). Both are always added, whatever their size, and
//     neither is trimmed by HostCountryAllowedCache.
//  7. Minimum: the distinct hosts of steps 2–6 that have URLs for the directory are
//     counted; if fewer than --minimum (default 5) and country= was not given, Global is
//     added, trimmed by HostCountryAllowedCache (a host with an entry stays only if the
//     client's country is among its countries; "N/A" matches none).
//  8. Order: netblock hosts, longest prefix first, uniformly shuffled within a prefix
//     length; ASN hosts, uniformly shuffled; then requested-country, country, continent
//     and global hosts, each list shuffled weighted by HostBandwidthCache; duplicates
//     keep their first place.
//  9. Answer: per host, its URLs + "/" + Subpath (+ file). A mirrorlist gives each host's
//     first URL whose scheme is https, http or ftp (or one of protocol=); redirect=1 sends
//     a 302 to the first host's first http(s) URL; a metalink lists every URL with
//     preference 100, 99, … and mm0:private="True" for hosts not in Global.
//
// The Python mirrorlist_server.py it replaced differed: it trimmed country, continent,
// Internet2 and global results by HostCountryAllowedCache (and trimmed nothing when the
// client country was unknown); it consulted ByCountryInternet2 for clients in Internet2
// netblocks; it counted only country + continent hosts against the minimum; and for
// directories whose version was not ordered_mirrorlist it stopped early (after a netblock
// match, after 3 netblock + ASN hosts, or after a country with at least minimum hosts).
// For ordered_mirrorlist versions (the model's default) it, too, always added the
// continent and added Global only below the minimum.
//
// # The test oracle (package mmselect)
//
// mmselect.Select, test support beside this package, applies MirrorManager's tiers to []Host for one client, returning them in
// preference order and leaving shuffling to the caller (bandwidth-weighted for country,
// continent and global in MirrorManager; uniform for netblock and ASN):
//
//	netblock (one tier per prefix length, most specific first; private hosts included)
//	→ asn (private hosts included)
//	→ country → continent → global (public hosts only; restricted hosts only for their
//	  allowed client countries; none of them when the client's country is unknown)
//
// Netblock, ASN and country tiers are always listed. The continent tier is added while
// the list holds fewer than Policy.Minimum (default 5) distinct hosts, and the global tier
// likewise: the tier-by-tier widening regmirror's design asks for. Policy.AlwaysContinent
// adds the continent tier unconditionally, as both MirrorManager servers do for ordered
// mirror lists. Counting includes netblock and ASN hosts (as the Rust server does), and
// the country restriction applies to the country and continent tiers too (as the Python
// server did), so that a restricted host serves no other client countries than its own
// settings say. The ASN comes from the caller (e.g. a GeoLite2-ASN database), not from a
// global_netblocks file; the client country from the caller's GeoIP lookup, which should
// consult Snapshot.ClientCountry first; continents from Policy.Continent, which should
// consult Snapshot.ContinentRedirect first.
package mirrormanager
