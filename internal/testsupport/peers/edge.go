package peers

import (
	"fmt"
	"strconv"
	"testing"
)

// Edge is one simulated CDN edge: a server of a private nginx that proxies every request to
// an upstream (the redirector) as a client from ClientAddr, and passes redirects through.
type Edge struct {
	// Upstream is "HOST:PORT" of what the edge proxies to, e.g. the redirector's
	// "127.0.0.1:PORT" (the edge connects from 127.0.0.1: trust that as the proxy).
	Upstream string
	// ClientAddr is the address the edge puts in X-Forwarded-For, replacing whatever the
	// client sent: the client the upstream sees, whatever its real address.
	ClientAddr string

	// Endpoint is where clients reach the edge ("localhost:PORT"), set by StartEdges.
	Endpoint Endpoint
}

// EdgeDirectives are the nginx lines of an edge: proxy to upstream, X-Forwarded-For set to
// client (not appended to: a CDN edge is the first trusted hop), Host as the client sent it,
// the upstream's redirects passed through unchanged (proxy_redirect off: a 307 to a mirror
// reaches the client as it is), nothing buffered, any request body size.
func EdgeDirectives(upstream, client string) string {
	return fmt.Sprintf(`location / {
    proxy_pass http://%s;
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_set_header Host $http_host;
    proxy_set_header X-Forwarded-For %s;
    proxy_redirect off;
    proxy_buffering off;
    proxy_request_buffering off;
    client_max_body_size 0;
}
`, upstream, client)
}

// StartEdges starts one private nginx with a server per edge, each on a free port, and sets
// each edge's Endpoint. nginx stops when the test ends; its access log (AccessLogFormat) has
// every edge's requests.
func StartEdges(t testing.TB, edges []*Edge) *Nginx {
	t.Helper()
	if len(edges) == 0 {
		t.Fatal("StartEdges: no edge")
	}
	cfg := &NginxConfig{Dir: t.TempDir()}
	for _, e := range edges {
		if e.Upstream == "" || e.ClientAddr == "" {
			t.Fatalf("StartEdges: edge %+v lacks an upstream or a client address", e)
		}
		cfg.Servers = append(cfg.Servers, NginxServer{Directives: EdgeDirectives(e.Upstream, e.ClientAddr)})
	}
	n := StartNginxConfig(t, cfg)
	for i, e := range edges {
		e.Endpoint = Endpoint{Host: "localhost:" + strconv.Itoa(cfg.Servers[i].Port)}
	}
	return n
}
