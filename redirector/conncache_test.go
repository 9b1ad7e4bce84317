package redirector

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"sync/atomic"
	"testing"

	"github.com/regmirror/regmirror/layout"
)

// connServer serves s as serve does (with its ConnContext) and returns a client that keeps one
// connection, and the number of connections the server accepted.
func connServer(t *testing.T, s *Server) (*httptest.Server, *http.Client, *atomic.Int32) {
	t.Helper()
	var conns atomic.Int32
	ts := httptest.NewUnstartedServer(s)
	ts.Config.ConnContext = s.ConnContext
	ts.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			conns.Add(1)
		}
	}
	ts.Start()
	t.Cleanup(ts.Close)
	c := &http.Client{
		Transport:     &http.Transport{MaxConnsPerHost: 1, MaxIdleConnsPerHost: 1},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return ts, c, &conns
}

// redirectHost GETs url with hdr and returns the host of the 307's Location.
func redirectHost(t *testing.T, c *http.Client, target string, hdr http.Header) string {
	t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), "GET", target, nil)
	check(t, err)
	req.Header = hdr
	resp, err := c.Do(req)
	check(t, err)
	resp.Body.Close()
	if resp.StatusCode != http.StatusTemporaryRedirect {
		t.Fatalf("GET %s: status %d, want 307", target, resp.StatusCode)
	}
	u, err := url.Parse(resp.Header.Get("Location"))
	check(t, err)
	return u.Host
}

// TestConnCacheProxiedClients: a trusted proxy's connection carries many clients, and each
// request's is its own: a client in a Japanese mirror's netblock goes there, a German one to
// a German mirror, alternately, on one connection.
func TestConnCacheProxiedClients(t *testing.T) {
	dir, dm := newTestTree(t, func(m *layout.Meta, _ *demo) { addMirrors(m, 1) })
	s := newServer(t, Options{Tree: dir, TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, CountryHeader: "Cf-Ipcountry"})
	ts, c, conns := connServer(t, s)
	blob := ts.URL + "/v2/fedora/blobs/" + dm.baseLayer.String()
	for i := range 6 {
		if got := redirectHost(t, c, blob, http.Header{"X-Forwarded-For": {"198.51.100.7"}}); got != "jp.example" {
			t.Errorf("request %d, a client in jp.example's netblock: sent to %s", 2*i, got)
		}
		if got := redirectHost(t, c, blob, http.Header{"X-Forwarded-For": {"192.0.2.44"}, "Cf-Ipcountry": {"DE"}}); got != "de1.example" && got != "de2.example" {
			t.Errorf("request %d, a German client: sent to %s", 2*i+1, got)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("%d connections, want the 12 requests on one", n)
	}
}

// TestConnCacheFollowsGeneration: a connection's client keeps its place only while the
// generation it was found in is served: after a switch that gives its region other mirrors,
// the same connection's next request goes to them.
func TestConnCacheFollowsGeneration(t *testing.T) {
	dir, dm := newTestTree(t, func(m *layout.Meta, _ *demo) { addMirrors(m, 1) })
	s := newServer(t, Options{Tree: dir})
	ts, c, conns := connServer(t, s)
	blob := ts.URL + "/v2/fedora/blobs/" + dm.baseLayer.String()
	before := map[string]int{}
	for range 8 {
		before[redirectHost(t, c, blob, nil)]++
	}
	if len(before) < 2 { // global holds five mirrors, chosen by weight
		t.Fatalf("before the switch, 8 requests all went to %v: want the global region's mirrors", before)
	}
	republish(t, dir, 2, func(m *layout.Meta, _ *demo) {
		addMirrors(m, 2)
		m.Regions["global"] = &layout.Region{Tiers: [][]string{{"us.example"}}, VariantSet: -1}
	})
	check(t, s.Check())
	for i := range 4 {
		if got := redirectHost(t, c, blob, nil); got != "us.example" {
			t.Errorf("request %d after the switch: sent to %s, want us.example, the region's only mirror now", i, got)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("%d connections, want every request on one", n)
	}
}
