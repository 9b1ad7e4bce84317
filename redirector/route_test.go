package redirector

import (
	"encoding/json"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/regmirror/regmirror/layout"
)

func getRoute(t *testing.T, s *Server, query, remote string) (int, routeExplanation) {
	t.Helper()
	w := do(s, "GET", "/route?"+query, remote, http.Header{"Accept": {"application/json"}})
	var ex routeExplanation
	if w.Code == http.StatusOK {
		check(t, json.Unmarshal(w.Body.Bytes(), &ex))
	}
	return w.Code, ex
}

// TestRouteAgreesWithHandler: for a client of every tier (netblock, country, continent,
// global, every mirror out, a blob newer than a mirror), /route's taken mirrors are exactly
// where the real handler sends that client's blob, and every mirror has a verdict.
func TestRouteAgreesWithHandler(t *testing.T) {
	dir, dm := newTestTree(t, func(m *layout.Meta, _ *demo) {
		addMirrors(m, 1)
		m.Origin = "https://origin.example/"
	})
	geo := filepath.Join(t.TempDir(), "geo.mmdb")
	writeFile(t, geo, testGeoDB(t, "country"))
	s := newServer(t, Options{Tree: dir, GeoIP: geo})
	layer := dm.toolboxLayer
	blobPath := "/v2/fedora/toolbox/blobs/" + layer.String()
	handlerTargets := func(remote string) []string {
		var got []string
		for range 300 {
			w := do(s, "GET", blobPath, remote, nil)
			if w.Code != http.StatusTemporaryRedirect {
				t.Fatalf("GET blob from %s: %d", remote, w.Code)
			}
			if loc := w.Header().Get("Location"); !slices.Contains(got, loc) {
				got = append(got, loc)
			}
		}
		slices.Sort(got)
		return got
	}
	cases := []struct {
		name, query, remote string
		region, decision    string
		reasons             map[string]string // mirror -> part of its verdict
	}{
		{"country", "ip=81.2.69.142", "192.0.2.1:1", "DE", "DE tier 1",
			map[string]string{"de1.example": "holds the blob", "fr.example": "not needed", "sick.example": "unhealthy at the last crawl", "off.example": "disabled"}},
		{"continent", "ip=2.16.5.5", "192.0.2.1:1", "EU", "EU tier 1", map[string]string{"fr.example": "holds the blob", "us.example": "not needed"}},
		{"country given", "country=fr", "192.0.2.1:1", "EU", "EU tier 1", nil},
		{"global", "ip=8.8.8.8", "192.0.2.1:1", "global", "global tier 1", nil},
		{"netblock", "ip=198.51.100.7", "192.0.2.1:1", "global", "netblock", map[string]string{"jp.example": "holds the blob"}},
		{"the asker's own address", "", "81.2.69.142:5555", "DE", "DE tier 1", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			q := c.query + "&repo=fedora/toolbox&digest=" + url.QueryEscape(layer.String())
			code, ex := getRoute(t, s, strings.TrimPrefix(q, "&"), c.remote)
			if code != http.StatusOK {
				t.Fatalf("GET /route?%s: %d", q, code)
			}
			if ex.Client.Region != c.region || !strings.Contains(ex.Decision, c.decision) {
				t.Errorf("region %q, decision %q; want %q, %q", ex.Client.Region, ex.Decision, c.region, c.decision)
			}
			remote := c.remote
			if ip, ok := strings.CutPrefix(c.query, "ip="); ok {
				remote = ip + ":1"
			}
			if c.query == "country=fr" {
				remote = "2.16.5.5:1"
			}
			want := handlerTargets(remote)
			got := slices.Clone(ex.To)
			slices.Sort(got)
			if strings.Join(got, " ") != strings.Join(want, " ") {
				t.Errorf("/route sends to %v, the handler to %v", got, want)
			}
			if len(ex.Candidates) != 7 {
				t.Errorf("%d mirrors with a verdict, want all 7: %+v", len(ex.Candidates), ex.Candidates)
			}
			for m, part := range c.reasons {
				i := slices.IndexFunc(ex.Candidates, func(rc routeCandidate) bool { return rc.Mirror == m })
				if i < 0 || !strings.Contains(ex.Candidates[i].Reason, part) {
					t.Errorf("verdict of %s: %+v, want it to contain %q", m, ex.Candidates, part)
				}
			}
		})
	}

	t.Run("mirrors out of rotation, then all: the origin", func(t *testing.T) {
		ms := fakeProbes(t, s)
		takeOut(s, ms, "de1.example", "de2.example")
		_, ex := getRoute(t, s, "ip=81.2.69.142&repo=fedora/toolbox&digest="+layer.String(), "192.0.2.1:1")
		if !strings.Contains(ex.Decision, "DE tier 2") || len(ex.To) != 1 || !strings.Contains(ex.To[0], "fr.example") {
			t.Errorf("decision %q to %v, want DE tier 2 (fr.example)", ex.Decision, ex.To)
		}
		i := slices.IndexFunc(ex.Candidates, func(rc routeCandidate) bool { return rc.Mirror == "de1.example" })
		if i < 0 || !strings.Contains(ex.Candidates[i].Reason, "out of rotation") {
			t.Errorf("de1.example: %+v", ex.Candidates)
		}
		if want := handlerTargets("81.2.69.142:1"); len(want) != 1 || want[0] != ex.To[0] {
			t.Errorf("handler sends to %v, /route says %v", want, ex.To)
		}
		takeOut(s, ms, "fr.example", "us.example", "jp.example")
		_, ex = getRoute(t, s, "ip=81.2.69.142&repo=fedora/toolbox&digest="+layer.String(), "192.0.2.1:1")
		if !strings.HasPrefix(ex.Decision, "origin") || len(ex.To) != 1 || !strings.HasPrefix(ex.To[0], "https://origin.example/") {
			t.Errorf("decision %q to %v, want the origin", ex.Decision, ex.To)
		}
		bringBack(s, ms, "de1.example", "de2.example", "fr.example", "us.example", "jp.example")
	})

	t.Run("manifest", func(t *testing.T) {
		code, ex := getRoute(t, s, "country=DE&repo=fedora&ref=42", "192.0.2.1:1")
		if code != 200 || ex.Manifest != dm.fedoraIndex.String() || !strings.Contains(ex.Decision, "never go to mirrors") {
			t.Errorf("%d %+v", code, ex)
		}
	})
}

// TestRouteRefusesBadQueries: hostile or wrong queries get a 4xx with a short body; HTML
// escapes whatever it shows.
func TestRouteRefusesBadQueries(t *testing.T) {
	dir, dm := newTestTree(t, func(m *layout.Meta, _ *demo) { addMirrors(m, 1) })
	s := newServer(t, Options{Tree: dir})
	d := url.QueryEscape(dm.toolboxLayer.String())
	for _, c := range []struct {
		name, query string
		want        int
	}{
		{"no repository", "digest=" + d, 400},
		{"invalid repository", "repo=<script>&digest=" + d, 400},
		{"unknown blob", "repo=fedora&digest=sha256:" + strings.Repeat("0", 64), 404},
		{"invalid digest", "repo=fedora&digest=sha256:<img>", 400},
		{"neither digest nor ref", "repo=fedora", 400},
		{"both", "repo=fedora&digest=" + d + "&ref=42", 400},
		{"invalid ip", "repo=fedora/toolbox&ip=999.1.1.1&digest=" + d, 400},
		{"invalid country", "repo=fedora/toolbox&country=<b>&digest=" + d, 400},
		{"huge query", "repo=fedora&ref=" + strings.Repeat("a", 5000), 400},
		{"unknown tag", "repo=fedora&ref=nope", 404},
		{"invalid tag", "repo=fedora&ref=" + url.QueryEscape("<script>alert(1)</script>"), 404},
	} {
		t.Run(c.name, func(t *testing.T) {
			w := do(s, "GET", "/route?"+c.query, "192.0.2.1:1", nil)
			if w.Code != c.want {
				t.Errorf("got %d, want %d: %s", w.Code, c.want, w.Body)
			}
			if w.Body.Len() > 600 || strings.Contains(w.Body.String(), "<script") || strings.Contains(w.Body.String(), "<img") {
				t.Errorf("body %d bytes, echoing the query: %.200s", w.Body.Len(), w.Body)
			}
		})
	}
	w := do(s, "GET", "/route?repo=fedora/toolbox&country=DE&digest="+d, "192.0.2.1:1", nil)
	if w.Code != 200 || w.Header().Get("Content-Type") != "text/html; charset=utf-8" || !strings.Contains(w.Body.String(), `id="decision"`) {
		t.Errorf("HTML: %d %v", w.Code, w.Header())
	}
}

func TestLastSlash(t *testing.T) {
	hex := strings.Repeat("0", 64)
	for _, tc := range []struct{ name, s string }{
		{"sha256 reference", "/v2/a/blobs/sha256:" + hex},
		{"slash inside the reference's place", "/v2/a/blobs/sha256:" + hex[:10] + "/" + hex[11:]},
		{"slash at the end", "/v2/a/blobs/sha256:" + hex + "/"},
		{"exactly a reference's length after a slash", "/" + strings.Repeat("x", 71)},
		{"a reference's length, no slash before", strings.Repeat("x", 72)},
		{"short", "/v2/a/manifests/latest"},
		{"none", "abc"},
		{"empty", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got, want := lastSlash(tc.s), strings.LastIndexByte(tc.s, '/'); got != want {
				t.Errorf("lastSlash(%q): got %d, want %d", tc.s, got, want)
			}
		})
	}
}
