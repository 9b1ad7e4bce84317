// Package redirector answers the pull side of the OCI distribution API from a tree's metadata
// and sends every blob download to a mirror near the client.
//
// [New] loads the tree's current generation into memory with every answer prepared (bytes and
// header values), so a request costs a few map lookups (regional variants aside, below). [Server.Run] watches the tree's
// current stamp (and the GeoIP database) and swaps a new generation in atomically; a
// generation that does not load is refused with an error log line and the previous one keeps
// serving. [Server.ListenAndServe] runs the HTTP(S) and metrics listeners with timeouts and a
// graceful drain.
//
// Every name, tag and digest from a request is checked against the distribution grammar
// (package layout) before any lookup; no filesystem path is built from request input (local
// blobs are opened through an [os.Root] at a path made by layout.BlobPath from a digest the
// metadata holds); a Location header only ever names a configured mirror or origin.
//
// Regions: the client address is the TCP peer, or, when the peer is a trusted proxy, the
// right-most untrusted address of X-Forwarded-For (clientaddr.go). Its country comes from a
// trusted proxy's country header, else from the GeoIP database (region.go); its region is the
// country's, else the continent's, else "global"; its autonomous system, when a mirror lists
// ASNs, from the ASN database (Options.ASNDB, GeoLite2-ASN). A blob goes to a mirror whose
// netblock holds the client (the most specific match first), else to one serving its AS, else
// to the region's tiers in order, bandwidth-weighted within a tier, only to mirrors holding the
// blob's generation (choose.go); else to the origin URL, else it is served from the local
// tree. Private mirrors are reached through netblocks and ASNs only, and a mirror restricted to
// some client countries is only in those countries' regions (the generator side writes the
// regions so).
//
// Regional variants (variants.go) are not in memory at load, nor in the metadata: a variant
// is rendered (layout.Renderer) when a client first asks for it, by tag with
// Options.RegionalManifests (with its children's, for an index) or by digest (found by
// rendering the repository's manifests once per variant set, the client's first), then kept
// in an LRU cache bounded by Options.VariantCacheBytes.
//
// Metrics (Prometheus, on their own listener): regmirror_requests_total{endpoint,code},
// regmirror_blob_downloads_total{region,to}, regmirror_generation,
// regmirror_generation_age_seconds, regmirror_generation_loads_total{result},
// regmirror_geoip_loads_total{result}, regmirror_asn_db_loads_total{result},
// regmirror_variant_renders_total{result},
// regmirror_variant_cache_bytes, and the Go and process collectors.
//
// See headers.go for the Cache-Control policy.
package redirector
