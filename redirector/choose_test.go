package redirector

import (
	"math"
	"net/http"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"

	"github.com/regmirror/regmirror/layout"
)

// mirrorOf returns the mirror host a 307 points at, checking the Location's form.
func mirrorOf(t *testing.T, w interface {
	Header() http.Header
}, d layout.Digest) string {
	t.Helper()
	loc := w.Header().Get("Location")
	host, rest, ok := strings.Cut(strings.TrimPrefix(loc, "https://"), "/")
	if !ok {
		t.Fatalf("Location %q", loc)
	}
	if want := "pub/" + layout.BlobPath(d); rest != want && rest != layout.BlobPath(d) {
		t.Fatalf("Location %q, want https://<mirror>/%s", loc, want)
	}
	return host
}

func TestRegionChoice(t *testing.T) {
	dir, dm := newTestTree(t, func(m *layout.Meta, _ *demo) { addMirrors(m, 1) })
	for _, schema := range []string{"country", "city", "flat", "flat+continent"} {
		t.Run(schema, func(t *testing.T) {
			geo := filepath.Join(t.TempDir(), "geo.mmdb")
			writeFile(t, geo, testGeoDB(t, schema))
			s := newServer(t, Options{
				Tree:           dir,
				GeoIP:          geo,
				TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8")},
				CountryHeader:  "CF-IPCountry",
			})
			blob := "/v2/fedora/toolbox/blobs/" + dm.toolboxLayer.String()
			all := []string{"de1.example", "de2.example", "fr.example", "us.example", "jp.example"}
			cases := []struct {
				name   string
				peer   string
				hdr    http.Header
				want   []string
				region string
			}{
				{"german client direct", "81.2.69.142:5555", nil, []string{"de1.example", "de2.example"}, "DE"},
				{"german client ipv6", "[2001:db8:de::5]:5555", nil, []string{"de1.example", "de2.example"}, "DE"},
				{"german client via proxy", "10.1.2.3:5555", http.Header{"X-Forwarded-For": {"81.2.69.142"}}, []string{"de1.example", "de2.example"}, "DE"},
				{"spoofed entry left of the real one", "10.1.2.3:5555", http.Header{"X-Forwarded-For": {"8.8.8.8, 81.2.69.142, 10.9.9.9"}}, []string{"de1.example", "de2.example"}, "DE"},
				{"two proxies, two headers", "10.1.2.3:5555", http.Header{"X-Forwarded-For": {"8.8.8.8", "81.2.69.142, 10.0.0.1"}}, []string{"de1.example", "de2.example"}, "DE"},
				{"untrusted peer cannot choose", "81.2.69.142:5555", http.Header{"X-Forwarded-For": {"8.8.8.8"}, "Cf-Ipcountry": {"US"}}, []string{"de1.example", "de2.example"}, "DE"},
				{"french client: continent", "2.16.1.1:5555", nil, []string{"de1.example", "de2.example", "fr.example"}, "EU"},
				{"american client: global", "10.1.2.3:5555", http.Header{"X-Forwarded-For": {"8.8.8.8"}}, all, "global"},
				{"unknown client: global", "9.9.9.9:5555", nil, all, "global"},
				{"netblock first", "10.1.2.3:5555", http.Header{"X-Forwarded-For": {"198.51.100.7"}}, []string{"jp.example"}, "global"},
				{"country header from a trusted proxy", "10.1.2.3:5555", http.Header{"X-Forwarded-For": {"8.8.8.8"}, "Cf-Ipcountry": {"de"}}, []string{"de1.example", "de2.example"}, "DE"},
				{"country header placeholder", "10.1.2.3:5555", http.Header{"X-Forwarded-For": {"81.2.69.1"}, "Cf-Ipcountry": {"XX"}}, []string{"de1.example", "de2.example"}, "DE"},
				{"country header other continent", "[fd00::1]:5555", http.Header{"Cf-Ipcountry": {"IT"}}, []string{"de1.example", "de2.example", "fr.example"}, "EU"},
			}
			for _, c := range cases {
				t.Run(c.name, func(t *testing.T) {
					seen := map[string]int{}
					for range 200 {
						w := do(s, "GET", blob, c.peer, c.hdr)
						if w.Code != http.StatusTemporaryRedirect {
							t.Fatalf("status %d: %s", w.Code, w.Body)
						}
						if cc := w.Header().Get("Cache-Control"); cc != "private, no-store" {
							t.Errorf("307 Cache-Control %q", cc)
						}
						if d := w.Header().Get("Docker-Content-Digest"); d != dm.toolboxLayer.String() {
							t.Errorf("307 Docker-Content-Digest %q", d)
						}
						seen[mirrorOf(t, w, dm.toolboxLayer)]++
					}
					for m := range seen {
						if !contains(c.want, m) {
							t.Errorf("sent to %s, want one of %v (seen %v)", m, c.want, seen)
						}
					}
					if len(seen) != len(c.want) {
						t.Errorf("seen %v, want every one of %v", seen, c.want)
					}
				})
			}
			// HEAD is never redirected, whatever the region.
			w := do(s, "HEAD", blob, "81.2.69.142:5555", nil)
			if w.Code != 200 || w.Header().Get("Location") != "" {
				t.Errorf("HEAD: %d, Location %q", w.Code, w.Header().Get("Location"))
			}
		})
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// Within a tier, the choice follows bandwidth: de2 (3000) gets three times de1's (1000).
func TestBandwidthWeighting(t *testing.T) {
	dir, _ := newTestTree(t, func(m *layout.Meta, _ *demo) { addMirrors(m, 1) })
	s := newServer(t, Options{Tree: dir})
	g := s.gen.Load()
	rnd := seeded(42)
	const n = 40000
	count := map[string]int{}
	for range n {
		count[g.chooseMirror(netip.MustParseAddr("81.2.69.1"), 0, g.regions["DE"], want{since: 1}, rnd).name]++
	}
	share := float64(count["de2.example"]) / n
	// Binomial: sd = sqrt(.75*.25/n) ≈ 0.0022; allow 5 sd.
	if math.Abs(share-0.75) > 0.011 || count["de1.example"]+count["de2.example"] != n {
		t.Errorf("counts %v: de2 share %.4f, want 0.75", count, share)
	}
	// Global: weights 1000,3000,1000,1000,100 of 6100.
	count = map[string]int{}
	for range n {
		count[g.chooseMirror(netip.Addr{}, 0, g.regions["global"], want{since: 1}, rnd).name]++
	}
	for name, w := range map[string]float64{"de1.example": 1000, "de2.example": 3000, "fr.example": 1000, "us.example": 1000, "jp.example": 100} {
		p := w / 6100
		sd := math.Sqrt(p * (1 - p) / n)
		if got := float64(count[name]) / n; math.Abs(got-p) > 5*sd {
			t.Errorf("%s: share %.4f, want %.4f", name, got, p)
		}
	}
	// Same seed, same choices.
	a, b := seeded(7), seeded(7)
	for range 100 {
		if g.chooseMirror(netip.Addr{}, 0, g.regions["global"], want{since: 1}, a) != g.chooseMirror(netip.Addr{}, 0, g.regions["global"], want{since: 1}, b) {
			t.Fatal("choice is not deterministic for a seeded source")
		}
	}
}

// A mirror that holds an older generation is never sent a blob that is newer; when no mirror
// holds it, the origin (or the local tree) serves it.
func TestGenerationFilter(t *testing.T) {
	setup := func(t *testing.T, origin string, gens map[string]uint64) (*Server, *demo) {
		dir, dm := newTestTree(t, func(m *layout.Meta, dm *demo) {
			m.Generation = 3
			addMirrors(m, 3)
			for _, mi := range m.Mirrors {
				if g, ok := gens[mi.Name]; ok {
					mi.Generation = g
				}
			}
			for _, b := range m.Blobs {
				b.Since = 1
			}
			m.Blobs[dm.toolboxLayer].Since = 3 // new in this generation
			m.Origin = origin
		})
		return newServer(t, Options{Tree: dir}), dm
	}
	blobNew := "/v2/fedora/toolbox/blobs/"
	t.Run("stale mirror skipped", func(t *testing.T) {
		s, dm := setup(t, "", map[string]uint64{"de2.example": 2, "fr.example": 2, "us.example": 2})
		for range 300 {
			w := do(s, "GET", blobNew+dm.toolboxLayer.String(), "[2001:db8:de::1]:1", http.Header{"Cf-Ipcountry": {"DE"}})
			if m := mirrorOf(t, w, dm.toolboxLayer); m != "de1.example" && m != "jp.example" {
				t.Fatalf("new blob sent to stale mirror %s", m)
			}
		}
		// An old blob may go to any of them.
		seen := map[string]bool{}
		for range 300 {
			seen[mirrorOf(t, do(s, "GET", blobNew+dm.baseLayer.String(), "9.9.9.9:1", nil), dm.baseLayer)] = true
		}
		if !seen["de2.example"] || !seen["us.example"] {
			t.Errorf("old blob: seen %v", seen)
		}
	})
	t.Run("all stale: origin", func(t *testing.T) {
		s, dm := setup(t, "https://origin.example/tree/", map[string]uint64{"de1.example": 2, "de2.example": 2, "fr.example": 2, "us.example": 2, "jp.example": 2})
		w := do(s, "GET", blobNew+dm.toolboxLayer.String(), "9.9.9.9:1", nil)
		if loc := w.Header().Get("Location"); w.Code != 307 || loc != "https://origin.example/tree/"+layout.BlobPath(dm.toolboxLayer) {
			t.Fatalf("%d Location %q", w.Code, loc)
		}
	})
	t.Run("all stale, no origin: local", func(t *testing.T) {
		s, dm := setup(t, "", map[string]uint64{"de1.example": 2, "de2.example": 2, "fr.example": 2, "us.example": 2, "jp.example": 2})
		w := do(s, "GET", blobNew+dm.toolboxLayer.String(), "9.9.9.9:1", nil)
		if w.Code != 200 || w.Body.Len() != len(dm.blobs[dm.toolboxLayer]) || w.Header().Get("Location") != "" {
			t.Fatalf("%d, %d bytes, Location %q", w.Code, w.Body.Len(), w.Header().Get("Location"))
		}
	})
}

func TestNoMirrorsOrigin(t *testing.T) {
	dir, dm := newTestTree(t, func(m *layout.Meta, _ *demo) { m.Origin = "https://origin.example/" })
	s := newServer(t, Options{Tree: dir})
	w := do(s, "GET", "/v2/fedora/blobs/"+dm.baseLayer.String(), "9.9.9.9:1", nil)
	if w.Code != 307 || w.Header().Get("Location") != "https://origin.example/"+layout.BlobPath(dm.baseLayer) || w.Header().Get("Cache-Control") != "private, no-store" {
		t.Fatalf("%d %v", w.Code, w.Header())
	}
}

func TestMirrorURLsChecked(t *testing.T) {
	dir, dm := newTestTree(t, func(m *layout.Meta, _ *demo) {
		addMirrors(m, 1)
		for _, mi := range m.Mirrors {
			mi.URL = "javascript:alert(1)//" // never a Location
		}
	})
	s := newServer(t, Options{Tree: dir})
	w := do(s, "GET", "/v2/fedora/blobs/"+dm.baseLayer.String(), "9.9.9.9:1", nil)
	if w.Code != 200 || w.Header().Get("Location") != "" {
		t.Fatalf("%d Location %q", w.Code, w.Header().Get("Location"))
	}
	_, err := loadGeneration(&layout.Meta{Origin: "ftp://x/"}, layout.Stamp{}, nil, nil, func(string, ...any) {})
	if err == nil {
		t.Error("ftp origin accepted")
	}
}
