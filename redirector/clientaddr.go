package redirector

import (
	"context"
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// proxies is the set of trusted proxies (--trusted-proxy).
type proxies []netip.Prefix

func (p proxies) trusted(a netip.Addr) bool {
	if !a.IsValid() {
		return false
	}
	a = a.Unmap()
	for _, pf := range p {
		if pf.Contains(a) {
			return true
		}
	}
	return false
}

// connInfo is what the requests of one connection share, made once per connection by
// [Server.ConnContext]: the TCP peer's address, taken from the connection instead of parsed
// from Request.RemoteAddr at every request, and room for a redirect's Location (see
// redirect).
type connInfo struct {
	peer netip.Addr
	loc  []byte    // the last Location built on this connection (HTTP/1 only)
	hdr  [1]string // its header value
}

type connInfoKey struct{}

// ConnContext gives each connection of the API server its connInfo (http.Server.ConnContext).
// Without it (a handler mounted elsewhere) every request parses its RemoteAddr and
// allocates its Location, with the same answers.
func (s *Server) ConnContext(ctx context.Context, c net.Conn) context.Context {
	ci := &connInfo{}
	switch a := c.RemoteAddr().(type) {
	case *net.TCPAddr:
		ci.peer = a.AddrPort().Addr().Unmap()
	case nil:
	default:
		ci.peer = parsePeer(a.String())
	}
	return context.WithValue(ctx, connInfoKey{}, ci)
}

// connOf is the connInfo of r's connection, nil when the server has no ConnContext.
func connOf(r *http.Request) *connInfo {
	ci, _ := r.Context().Value(connInfoKey{}).(*connInfo)
	return ci
}

// peerAddr is the TCP peer of a request.
func peerAddr(ci *connInfo, r *http.Request) netip.Addr {
	if ci != nil {
		return ci.peer
	}
	return parsePeer(r.RemoteAddr)
}

// parsePeer parses a peer's address as net/http writes it in Request.RemoteAddr.
func parsePeer(s string) netip.Addr {
	ap, err := netip.ParseAddrPort(s)
	if err == nil {
		return ap.Addr().Unmap()
	}
	a, err := netip.ParseAddr(s) // some test harnesses and listeners give no port
	if err == nil {
		return a.Unmap()
	}
	return netip.Addr{}
}

// clientAddr is the address whose region counts: the TCP peer, unless the peer is a trusted
// proxy; then the right-most address of X-Forwarded-For that is not itself a trusted proxy.
// Anything left of that address was written by the client and is ignored, so an untrusted
// client cannot choose its region. If X-Forwarded-For is missing or holds an entry that does
// not parse before an untrusted address is found, the last trusted hop is the client.
// The second result reports whether the peer was trusted (and so may send a country header).
func clientAddr(ci *connInfo, r *http.Request, trusted proxies) (netip.Addr, bool) {
	peer := peerAddr(ci, r)
	if len(trusted) == 0 || !trusted.trusted(peer) {
		return peer, false
	}
	client := peer
	values := r.Header.Values("X-Forwarded-For")
	for i := len(values) - 1; i >= 0; i-- {
		v := values[i]
		for v != "" {
			var part string
			if j := strings.LastIndexByte(v, ','); j >= 0 {
				part, v = v[j+1:], v[:j]
			} else {
				part, v = v, ""
			}
			part = strings.TrimSpace(part)
			if part == "" {
				continue
			}
			a, ok := parseForwardedAddr(part)
			if !ok {
				return client, true
			}
			client = a
			if !trusted.trusted(a) {
				return a, true
			}
		}
	}
	return client, true
}

// parseForwardedAddr parses one X-Forwarded-For entry: an address, possibly with a port
// ("1.2.3.4:5678", "[2001:db8::1]:80") or in brackets.
func parseForwardedAddr(s string) (netip.Addr, bool) {
	if len(s) > 64 {
		return netip.Addr{}, false
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Unmap().WithZone(""), true
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap().WithZone(""), true
	}
	if len(s) > 2 && s[0] == '[' && s[len(s)-1] == ']' {
		if a, err := netip.ParseAddr(s[1 : len(s)-1]); err == nil {
			return a.Unmap().WithZone(""), true
		}
	}
	return netip.Addr{}, false
}
