package redirector

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/netip"
	"testing"

	"github.com/regmirror/regmirror/layout"
)

func TestAccessLog(t *testing.T) {
	dir, dm := newTestTree(t, func(m *layout.Meta, _ *demo) { addMirrors(m, 1) })
	var buf bytes.Buffer
	s := newServer(t, Options{
		Tree:           dir,
		AccessLog:      slog.New(slog.NewJSONHandler(&buf, nil)),
		TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")},
		CountryHeader:  "CF-IPCountry",
	})
	do(s, "GET", "/v2/fedora/blobs/"+dm.baseLayer.String(), "10.0.0.1:1", http.Header{"X-Forwarded-For": {"192.0.2.44"}, "Cf-Ipcountry": {"DE"}, "User-Agent": {"containers/5.30"}})
	do(s, "GET", "/v2/fedora/manifests/42", "192.0.2.9:1", nil)
	lines := bytes.Split(bytes.TrimSpace(buf.Bytes()), []byte("\n"))
	if len(lines) != 2 {
		t.Fatalf("%d lines: %s", len(lines), buf.Bytes())
	}
	var blob, man map[string]any
	check(t, json.Unmarshal(lines[0], &blob))
	check(t, json.Unmarshal(lines[1], &man))
	for k, want := range map[string]any{"client": "192.0.2.44", "peer": "10.0.0.1:1", "status": 307.0, "region": "DE", "country": "DE", "method": "GET", "user_agent": "containers/5.30"} {
		if blob[k] != want {
			t.Errorf("blob line %s = %v, want %v (%s)", k, blob[k], want, lines[0])
		}
	}
	if m, _ := blob["mirror"].(string); m != "de1.example" && m != "de2.example" {
		t.Errorf("blob line mirror %v", blob["mirror"])
	}
	if man["client"] != "192.0.2.9" || man["status"] != 200.0 || man["bytes"] != float64(len(dm.manifests[dm.fedoraIndex])) {
		t.Errorf("manifest line %s", lines[1])
	}
}

func TestRecoverFromBug(t *testing.T) {
	dir, dm := newTestTree(t, nil)
	s := newServer(t, Options{Tree: dir})
	// A generation no loader builds: a tier whose weights name no mirror.
	g := *s.gen.Load()
	g.regions = map[string]*regionEntry{"global": {key: "global", tiers: []tierEntry{{total: 5, cum: []uint64{5}, minGen: 5}}}}
	s.gen.Store(&g)
	w := do(s, "GET", "/v2/fedora/blobs/"+dm.baseLayer.String(), "", nil)
	if w.Code != 500 {
		t.Fatalf("status %d", w.Code)
	}
	if !bytes.Contains(w.Body.Bytes(), []byte(`"code":"UNKNOWN"`)) || w.Header().Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("%s %v", w.Body, w.Header())
	}
}
