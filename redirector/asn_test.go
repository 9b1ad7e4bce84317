package redirector

import (
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/regmirror/regmirror/internal/testsupport/geoiptest"
	"github.com/regmirror/regmirror/layout"
)

// addASNMirrors adds to addMirrors' network a private campus mirror (netblock
// 198.51.100.0/25, more specific than jp's /24) and a private ISP mirror serving AS 64501,
// reached through netblock and ASN only: no region lists them.
func addASNMirrors(m *layout.Meta, gen uint64) {
	addMirrors(m, gen)
	for _, mi := range []*layout.Mirror{
		{Name: "campus.example", URL: "https://campus.example/pub/", Country: "DE", Netblocks: []string{"198.51.100.0/25"}, Private: true},
		{Name: "isp.example", URL: "https://isp.example/pub/", Country: "JP", ASNs: []uint32{64501, 64502}, Private: true},
	} {
		mi.Bandwidth, mi.Enabled, mi.Healthy, mi.Generation, mi.Checked = 100, true, true, gen, m.Created
		m.Mirrors = append(m.Mirrors, mi)
	}
}

func TestASNAndNetblockTiers(t *testing.T) {
	dir, dm := newTestTree(t, func(m *layout.Meta, _ *demo) { addASNMirrors(m, 1) })
	db := filepath.Join(t.TempDir(), "asn.mmdb")
	if err := geoiptest.WriteASN(db, []geoiptest.ASNNetwork{
		{CIDR: "203.0.113.0/24", ASN: 64501},
		{CIDR: "192.0.2.0/24", ASN: 64999}, // nobody serves it
		{CIDR: "198.51.100.0/24", ASN: 64501},
	}); err != nil {
		t.Fatal(err)
	}
	s := newServer(t, Options{Tree: dir, ASNDB: db})
	blob := "/v2/fedora/toolbox/blobs/" + dm.toolboxLayer.String()
	hosts := func(peer string) map[string]bool {
		seen := map[string]bool{}
		for range 100 {
			w := do(s, http.MethodGet, blob, peer, nil)
			if w.Code != http.StatusTemporaryRedirect {
				t.Fatalf("%s: status %d", peer, w.Code)
			}
			seen[mirrorOf(t, w, dm.toolboxLayer)] = true
		}
		return seen
	}
	only := func(peer, want string) {
		t.Helper()
		if got := hosts(peer); len(got) != 1 || !got[want] {
			t.Errorf("client %s sent to %v, want %s", peer, got, want)
		}
	}
	only("198.51.100.7:1", "campus.example") // most specific netblock, before the ASN too
	only("198.51.100.200:1", "jp.example")   // only jp's /24
	only("203.0.113.9:1", "isp.example")     // ASN
	for h := range hosts("192.0.2.1:1") {    // an AS nobody serves: global, never a private mirror
		if strings.HasPrefix(h, "campus") || strings.HasPrefix(h, "isp") {
			t.Errorf("a client without a match reached the private mirror %s", h)
		}
	}

	// A new ASN database is picked up; a corrupt one is refused and the last good one kept.
	if err := geoiptest.WriteASN(db, []geoiptest.ASNNetwork{{CIDR: "203.0.113.0/24", ASN: 64999}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Check(); err != nil {
		t.Fatal(err)
	}
	if got := hosts("203.0.113.9:1"); got["isp.example"] {
		t.Errorf("after the reload, the AS 64999 client still reached the ISP mirror: %v", got)
	}
	for name, b := range corruptGeoDBs(t) {
		writeFile(t, db, b)
		if err := s.Check(); err == nil || !strings.Contains(err.Error(), db) {
			t.Fatalf("%s: corrupt ASN database accepted on reload (%v)", name, err)
		}
	}
	if got := hosts("203.0.113.9:1"); got["isp.example"] {
		t.Errorf("after a refused reload: %v", got)
	}
}
