package redirector

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/regmirror/regmirror/layout"
)

func TestStatusPage(t *testing.T) {
	dir, _ := newTestTree(t, func(m *layout.Meta, _ *demo) {
		addMirrors(m, 1)
		m.Generation = 3
		m.Source = "https://candidate.example.org"
		m.Origin = "https://origin.example.org/containers/"
		m.Mirrors[0].Generation = 2 // de1 is behind
		m.Mirrors[6].Status = "HEAD blobs/sha256/…: 503 Service Unavailable"
		m.Mirrors[1].Content = []string{"arm64", "archive"}
		m.Mirrors = append(m.Mirrors, &layout.Mirror{Name: "campus.example", URL: "https://secret.campus.example/", Country: "DE",
			Netblocks: []string{"192.0.2.0/24"}, Private: true, Enabled: true, Healthy: true, Generation: 3, Checked: time.Now()})
	})
	for _, hide := range []bool{false, true} {
		s := newServer(t, Options{Tree: dir, HidePrivateMirrors: hide})

		w := do(s, "GET", "/status.json", "192.0.2.9:1", nil)
		if w.Code != 200 || w.Header().Get("Content-Type") != "application/json" || !strings.HasPrefix(w.Header().Get("Cache-Control"), "public, max-age=") {
			t.Fatalf("GET /status.json: %d %v", w.Code, w.Header())
		}
		var got struct {
			Generation uint64
			Source     string
			Origin     string
			AgeSeconds *int64
			Mirrors    []statusMirror
			Regions    []statusRegion
		}
		check(t, json.Unmarshal(w.Body.Bytes(), &got))
		if got.Generation != 3 || got.Source != "https://candidate.example.org" || got.Origin != "https://origin.example.org/containers/" || got.AgeSeconds == nil {
			t.Errorf("generation: got %+v", got)
		}
		byName := map[string]statusMirror{}
		for _, m := range got.Mirrors {
			byName[m.Name] = m
		}
		want := []string{"de1.example", "de2.example", "fr.example", "us.example", "jp.example", "off.example", "sick.example"}
		if !hide {
			want = append(want, "campus.example")
		}
		if len(got.Mirrors) != len(want) {
			t.Errorf("got %d mirrors, want %d: %+v", len(got.Mirrors), len(want), got.Mirrors)
		}
		for _, n := range want {
			if _, ok := byName[n]; !ok {
				t.Errorf("mirror %s missing", n)
			}
		}
		if m := byName["de1.example"]; !m.Behind || m.Generation != 2 || !m.Healthy || m.Country != "DE" || m.Continent != "EU" || m.Bandwidth != 1000 || m.Checked.IsZero() {
			t.Errorf("de1: got %+v", m)
		}
		if got, want := byName["de2.example"].Content, "arm64, archive"; got != want {
			t.Errorf("de2's content: got %q, want %q", got, want)
		}
		if got, want := byName["de1.example"].Content, "every architecture"; got != want {
			t.Errorf("de1's content: got %q, want %q", got, want)
		}
		if m := byName["sick.example"]; m.Healthy || !strings.Contains(m.Reason, "503") {
			t.Errorf("sick: got %+v", m)
		}
		if m := byName["off.example"]; m.Enabled {
			t.Errorf("off: got %+v", m)
		}
		if m, ok := byName["campus.example"]; ok && (m.URL != "" || m.Country != "" || m.Generation != 0 || !m.Private) {
			t.Errorf("a private mirror shows more than its name: %+v", m)
		}
		if strings.Contains(w.Body.String(), "secret.campus") || strings.Contains(w.Body.String(), "192.0.2.0") {
			t.Errorf("the private mirror's URL or netblock is on the status page: %s", w.Body)
		}
		var regions []string
		for _, r := range got.Regions {
			regions = append(regions, r.Region)
		}
		if g, w := strings.Join(regions, " "), "DE EU global"; g != w {
			t.Errorf("regions: got %q, want %q", g, w)
		}

		w = do(s, "GET", "/", "192.0.2.9:1", nil)
		body := w.Body.String()
		if w.Code != 200 || w.Header().Get("Content-Type") != "text/html; charset=utf-8" {
			t.Fatalf("GET /: %d %v", w.Code, w.Header())
		}
		for _, n := range want {
			if !strings.Contains(body, `data-name="`+n+`"`) {
				t.Errorf("GET /: mirror %s missing", n)
			}
		}
		for _, s := range []string{`id="gen-number">3<`, "(behind)", "unhealthy", "disabled", "503 Service Unavailable", "de1.example, de2.example, off.example, sick.example → fr.example"} {
			if !strings.Contains(body, s) {
				t.Errorf("GET /: %q missing", s)
			}
		}
		if strings.Contains(body, "<script") || strings.Contains(body, "secret.campus") {
			t.Errorf("GET /: script or private URL in the page")
		}
		if w := do(s, "HEAD", "/", "192.0.2.9:1", nil); w.Code != 200 || w.Body.Len() != 0 || w.Header().Get("Content-Length") == "0" {
			t.Errorf("HEAD /: %d, %d bytes, %v", w.Code, w.Body.Len(), w.Header())
		}
		if w := do(s, "POST", "/", "192.0.2.9:1", nil); w.Code != http.StatusMethodNotAllowed {
			t.Errorf("POST /: %d", w.Code)
		}
	}
}

// TestStatusPageEscapes: a metadata file is not trusted to be tame; names and reasons are
// escaped in the HTML.
func TestStatusPageEscapes(t *testing.T) {
	dir, _ := newTestTree(t, func(m *layout.Meta, _ *demo) {
		addMirrors(m, 1)
		m.Mirrors[6].Status = `<script>alert(1)</script>"'&`
		m.Source = `https://x.example/"><img src=x onerror=alert(1)>`
	})
	s := newServer(t, Options{Tree: dir})
	body := do(s, "GET", "/", "192.0.2.9:1", nil).Body.String()
	for _, bad := range []string{"<script>alert", "<img src=x"} {
		if strings.Contains(body, bad) {
			t.Errorf("unescaped %q in the page", bad)
		}
	}
	if !strings.Contains(body, "&lt;script&gt;alert(1)&lt;/script&gt;") {
		t.Errorf("the reason is not on the page, escaped")
	}
}

// TestMirrorsGauge: regmirror_mirrors counts the served generation's mirrors by what the crawl
// found, every state reported.
func TestMirrorsGauge(t *testing.T) {
	dir, _ := newTestTree(t, func(m *layout.Meta, _ *demo) {
		addMirrors(m, 1)
		m.Generation = 2
		for _, mi := range m.Mirrors[:4] {
			mi.Generation = 2
		}
	})
	s := newServer(t, Options{Tree: dir})
	w := httptest.NewRecorder()
	s.MetricsHandler().ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
	for _, want := range []string{
		`regmirror_mirrors{state="healthy"} 4`, // de1, de2, fr, us
		`regmirror_mirrors{state="behind"} 1`,  // jp
		`regmirror_mirrors{state="unhealthy"} 1`,
		`regmirror_mirrors{state="disabled"} 1`,
	} {
		if !strings.Contains(w.Body.String(), want+"\n") {
			t.Errorf("metrics lack %q", want)
		}
	}
}
