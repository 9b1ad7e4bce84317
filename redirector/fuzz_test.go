package redirector

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"github.com/regmirror/regmirror/layout"
)

// FuzzRoute: no path makes the parser panic, and what it returns is a slice of the path that
// the handler validates.
func FuzzRoute(f *testing.F) {
	for _, s := range []string{"/v2/", "/v2", "/v2/_catalog", "/v2/a/b/manifests/latest", "/v2/a/blobs/uploads/", "/v2/a/blobs/uploads/x",
		"/v2/a/tags/list", "/v2//tags/list", "/v2/tags/list", "/v2/a/referrers/sha256:00", "/v2/manifests/manifests/manifests", "/healthz", "", "/", "/v2/a/b",
		"/v2/a/blobs/sha256:" + strings.Repeat("a", 64), "/v2/a/blobs/sha256:" + strings.Repeat("a", 30) + "/" + strings.Repeat("a", 33), "/" + strings.Repeat("b", 71)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, path string) {
		rt := parseRoute(path)
		if rt.ep >= numEndpoints {
			t.Fatalf("endpoint %d", rt.ep)
		}
		if rt.name != "" && !strings.Contains(path, rt.name) || rt.ref != "" && !strings.Contains(path, rt.ref) {
			t.Fatalf("route %+v is not from %q", rt, path)
		}
		if (rt.ep == epManifest || rt.ep == epBlob || rt.ep == epReferrers) && strings.Contains(rt.ref, "/") {
			t.Fatalf("reference %q has a slash", rt.ref)
		}
		if got, want := lastSlash(path), strings.LastIndexByte(path, '/'); got != want {
			t.Fatalf("lastSlash(%q): got %d, want %d", path, got, want)
		}
	})
}

// FuzzHandler sends arbitrary paths, methods and headers through the whole handler: never a
// panic, never a 500, the error JSON on every error, and a Location only at a mirror.
func FuzzHandler(f *testing.F) {
	for _, s := range []string{"/v2/fedora/manifests/42", "/v2/fedora/blobs/sha256:" + strings.Repeat("a", 64), "/v2/fedora/tags/list?n=1&last=4",
		"/v2/_catalog?n=99999999999999999999", "/v2/fedora/referrers/sha256:" + strings.Repeat("b", 64) + "?artifactType=x", "/v2/../../etc/passwd",
		"/v2/fedora/manifests/sha256:" + strings.Repeat("A", 64), "/v2/a%2Fb/tags/list", "/v2/fe%20dora/manifests/4%222", "/v2/fedora/blobs/sha512:" + strings.Repeat("c", 128)} {
		f.Add("GET", s, "application/json", "1.2.3.4, 10.0.0.1", "DE")
	}
	f.Add("HEAD", "/v2/fedora/manifests/latest", "*/*", "", "")
	f.Add("DELETE", "/v2/fedora/manifests/latest", "", "garbage", "xx")
	f.Add("GET", "/v2/fedora/manifests/sha256:"+strings.Repeat("<", 60000), "", "", "")
	dir := f.TempDir()
	m, _ := writeTree(f, dir, 1)
	addMirrors(m, 1)
	addVariants(f, m, 2)
	if _, err := layout.NewTree(dir).Publish(m); err != nil {
		f.Fatal(err)
	}
	s, err := New(Options{Tree: dir, RegionalManifests: true, CountryHeader: "Cf-Ipcountry",
		TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, Random: seeded(3)})
	if err != nil {
		f.Fatal(err)
	}
	defer s.Close()
	f.Fuzz(func(t *testing.T, method, target, accept, xff, country string) {
		if !strings.HasPrefix(target, "/") {
			target = "/" + target
		}
		req, err := http.NewRequest(method, "http://x"+target, nil)
		if err != nil {
			return // not a request a server would see
		}
		req.RemoteAddr = "10.0.0.1:1"
		req.Header.Set("Accept", accept)
		req.Header.Set("X-Forwarded-For", xff)
		req.Header.Set("Cf-Ipcountry", country)
		w := httptest.NewRecorder()
		s.ServeHTTP(w, req)
		if w.Code >= 500 {
			t.Fatalf("%s %s: %d %s", method, target, w.Code, w.Body)
		}
		if w.Header().Get("X-Content-Type-Options") != "nosniff" {
			t.Fatal("no nosniff")
		}
		if loc := w.Header().Get("Location"); loc != "" {
			if !strings.HasPrefix(loc, "https://") || !strings.Contains(loc, ".example/pub/blobs/sha") {
				t.Fatalf("Location %q", loc)
			}
		}
		// plainRequest's promise: what it calls plain is written as it is in both formats.
		st := reqState{status: w.Code, ep: parseRoute(req.URL.Path).ep}
		if p := req.URL.Path; plainRequest(&st, req) && (needsQuoting(p) || string(appendJSONEscaped(nil, p)) != p) {
			t.Fatalf("%s %s answered %d: plainRequest, but the path %q needs quoting or escaping", method, target, w.Code, p)
		}
		if w.Code >= 400 && method != "HEAD" && !strings.HasPrefix(w.Body.String(), `{"errors":[{"code":"`) {
			t.Fatalf("error without the error JSON: %s", w.Body)
		}
		// Whatever the request holds, an error echoes at most maxDetail bytes of it (each
		// escaped in at most 6 bytes of JSON).
		if w.Code >= 400 && w.Body.Len() > 6*maxDetail+200 {
			t.Fatalf("error answer of %d bytes: %.300s", w.Body.Len(), w.Body)
		}
	})
}

// FuzzXForwardedFor: the client address is always the peer or an address from the header, and
// an untrusted peer is always itself.
func FuzzXForwardedFor(f *testing.F) {
	for _, s := range []string{"1.2.3.4", "1.2.3.4, 10.0.0.1", "[::1]:80, 2001:db8::1", ",,,", "1.2.3.4:5:6", "fe80::1%25eth0", strings.Repeat("1.1.1.1,", 100)} {
		f.Add(s, true)
	}
	trusted := proxies{netip.MustParsePrefix("10.0.0.0/8")}
	f.Fuzz(func(t *testing.T, xff string, viaProxy bool) {
		r := httptest.NewRequest("GET", "/v2/", nil)
		r.RemoteAddr = "192.0.2.1:1"
		if viaProxy {
			r.RemoteAddr = "10.0.0.1:1"
		}
		r.Header.Set("X-Forwarded-For", xff)
		a, via := clientAddr(nil, r, trusted)
		if !a.IsValid() {
			t.Fatalf("invalid client address from %q", xff)
		}
		if !viaProxy && (via || a.String() != "192.0.2.1") {
			t.Fatalf("untrusted peer became %s", a)
		}
		if viaProxy && a.String() != "10.0.0.1" && !strings.Contains(xff, strings.Split(a.String(), ":")[0]) && !strings.Contains(xff, a.String()) {
			// Mapped and zoned forms differ in text; accept when parse of some entry yields it.
			found := false
			for _, part := range strings.Split(xff, ",") {
				if p, ok := parseForwardedAddr(strings.TrimSpace(part)); ok && p == a {
					found = true
				}
			}
			if !found {
				t.Fatalf("client %s is not from %q", a, xff)
			}
		}
	})
}

// FuzzAccept: the Accept parser never panics and a list type anywhere accepts lists.
func FuzzAccept(f *testing.F) {
	f.Add("application/vnd.oci.image.index.v1+json;q=0.5, */*")
	f.Add(",;,")
	f.Fuzz(func(t *testing.T, a string) {
		got := acceptsList([]string{a})
		if strings.Contains(a, ","+layout.MediaTypeOCIIndex+",") && !got {
			t.Fatalf("%q contains the index type", a)
		}
		_ = etagMatch([]string{a}, "sha256:x")
	})
}
