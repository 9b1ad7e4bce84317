// Package mirrors reads the mirrors file and precomputes, for the tree's metadata, the regions
// and the regional manifest variants that the redirector serves from.
//
// # The mirrors file
//
// YAML; JSON is accepted, being YAML:
//
//	origin: https://origin.example.org/containers/   # optional: a full copy of the tree
//	mirrors:
//	  - name: mirror.example.de        # unique; letters, digits, '.', '_', '-'
//	    url: https://mirror.example.de/pub/containers/   # http(s), ends in "/", the tree root
//	    country: DE                    # ISO 3166-1 alpha-2 (XK for Kosovo, as GeoIP has it)
//	    continent: EU                  # optional: AF AN AS EU NA OC SA; default: the country's
//	    bandwidth: 1000                # optional: Mbit/s, 1..10000000; default 100
//	    netblocks: [192.0.2.0/24]      # optional: CIDRs whose clients go to this mirror first
//	    asns: [64500]                  # optional: AS numbers (or AS64500) whose clients go here next
//	    allowed_countries: [DE, AT]    # optional: the only client countries regions send here
//	    private: false                 # optional: reached through netblocks and asns only
//	    enabled: true                  # optional: default true
//
// Every problem is reported with the file, the line and the field, for example
// `mirrors.yaml:7: mirror "x": country "XX" is not an ISO 3166-1 alpha-2 code`; a file with
// several problems reports the first and how many others there are (Errors holds them all).
// Unknown fields, duplicate fields or names, YAML aliases and merge keys, and more than one
// YAML document are errors. Country and continent codes are accepted in any case and stored in
// upper case. A bandwidth of 0 or less is an error (enabled: false takes a mirror out).
// Netblocks are stored masked (192.0.2.1/24 becomes 192.0.2.0/24), IPv4-mapped IPv6 prefixes
// as IPv4, and /0 is refused. URLs carry no user info, query or fragment.
//
// An AS number is 1..4294967295; allowed_countries, when given, is a non-empty list of ISO
// codes (stored in upper case, sorted); a private mirror needs netblocks or asns.
//
// # MirrorManager's mirrorlist cache
//
// --mirrors also takes MirrorManager's mirrorlist cache (the protobuf file its mirrorlist
// servers read), with --mm-directory naming the tree's directory in it: LoadSource tells the
// two apart by content (IsMirrorListCache) and FromMirrorManager turns the hosts the cache
// lists for the directory into a File with the same fields. See docs/mirrormanager.md.
//
// A mirror's continent field, when given, overrides the continent of its country (a mirror in
// Russia's Asian part may say AS): it places the mirror in that continent's region. A country's
// region uses the continent GeoIP gives the country's clients.
//
// # Regions and candidates
//
// A mirror is a candidate only when it is enabled and the last crawl found it healthy: a
// mirror never crawled (new, or whose URL changed) is not a candidate, so `generate --mirrors`
// followed by `crawl` is the way to bring mirrors in. Per blob, a candidate qualifies only if
// the generation it holds is at least the blob's Since (layout.Mirror.Holds).
//
// Regions are every country with a mirror in the file or named in a mirror's
// allowed_countries, all seven continents and "global". A region never lists a private mirror,
// and lists a restricted one only if it is one of the mirror's countries. Their tiers, the
// candidate list widened tier by tier to the tree's minimum (layout.Meta.MinMirrors, default
// 5, --min-mirrors), and sharing are described at Precompute. Netblock and ASN matches depend
// on the client, not on a region: the redirector applies them per request. A tree without
// mirrors has no regions and no variants.
//
// # Entry points
//
// Load (or Parse) reads a mirrors file; LoadSource a mirrors file or a mirrorlist cache.
// ApplyFile is what `generate --mirrors FILE [--mm-directory DIR]` calls: it records the file in the
// new generation's metadata, carrying the previous generation's crawl state over by name (and
// URL), and precomputes regions and variant sets. The crawl (package internal/crawl) calls
// SetMirrors and Precompute. The candidate rules (layout.Mirror's Usable and Holds) and the
// country table (layout.ContinentOf) are in package layout, which the redirector shares.
//
// # Variants
//
// Each distinct candidate list is a variant set: its mirrors in preference order (tiers in
// order, within a tier by bandwidth then name). Every canonical manifest has a regional variant
// per set, in which config and layer descriptors carry urls at the set's mirrors holding the
// blob, the origin last, and indexes point at their children's variants. The metadata holds
// neither the variants nor their digests, and Precompute renders none: the redirector renders
// a variant with layout.Renderer when a client asks for it. The rendering rules are documented
// in package layout (variants.go).
//
// With 10,000 manifests and 50 mirrors in 30 countries there are 37 variant sets and 370,000
// variants (about 850 MiB if they were stored; BenchmarkPrecompute reports the metadata's size,
// which their digests no longer swell).
package mirrors
