package redirector

import (
	"context"
	"net"
	"net/http"
	"net/netip"
	"sync/atomic"
)

// A connection's requests come from one client: its place (address, country, continent, AS,
// region) is worked out once per connection, generation and GeoIP database, not at every
// request. A connection from a trusted proxy carries many clients (X-Forwarded-For) and is
// never cached.

// connCacheKey is the context key of a connection's *connCache.
type connCacheKey struct{}

// connCache is one connection's last resolved place. HTTP/2 serves a connection's streams
// concurrently: the place is replaced whole, atomically.
type connCache struct{ p atomic.Pointer[clientPlace] }

// clientPlace is a client's place as resolveClient found it, with what it was found from.
type clientPlace struct {
	g        *generation
	geo, asn *geoDB
	client   netip.Addr
	country  string
	cont     string
	asnNum   uint32
	region   *regionEntry
}

// ConnContext gives each connection its cache (http.Server.ConnContext).
func (s *Server) ConnContext(ctx context.Context, _ net.Conn) context.Context {
	return context.WithValue(ctx, connCacheKey{}, new(connCache))
}

// cachedPlace returns r's connection's cache, and the place it holds if it was resolved for g
// with the GeoIP and ASN databases geo and asn.
func cachedPlace(r *http.Request, g *generation, geo, asn *geoDB) (*connCache, *clientPlace) {
	cc, _ := r.Context().Value(connCacheKey{}).(*connCache)
	if cc == nil {
		return nil, nil
	}
	if p := cc.p.Load(); p != nil && p.g == g && p.geo == geo && p.asn == asn {
		return cc, p
	}
	return cc, nil
}
