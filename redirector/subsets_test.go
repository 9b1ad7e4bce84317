package redirector

import (
	"net/http"
	"path/filepath"
	"slices"
	"testing"

	"github.com/regmirror/regmirror/layout"
)

// TestSubsetRouting: a blob goes only to mirrors whose content includes one of its subsets,
// the tiers widening past those that do not; with none, to the local tree. Probes use a blob
// of each mirror's subsets.
func TestSubsetRouting(t *testing.T) {
	dir, dm := newTestTree(t, func(m *layout.Meta, dm *demo) {
		addMirrors(m, 1)
		m.Subsets = []string{"amd64", "arm64", layout.AnyArchitecture, layout.ArchiveSubset}
		const amd64, arm64, anyArch, archive = 1, 2, 4, 8
		for _, b := range m.Blobs {
			b.Subsets = amd64
		}
		m.Blobs[dm.toolboxLayer].Subsets = arm64
		m.Blobs[dm.httpdConfig].Subsets = archive
		m.Blobs[dm.baseLayer].Subsets = anyArch
		for _, mi := range m.Mirrors {
			switch mi.Name {
			case "de1.example":
				mi.Content = []string{"arm64"}
			case "de2.example", "fr.example":
				mi.Content = []string{"amd64"}
			}
		}
	})
	geo := filepath.Join(t.TempDir(), "geo.mmdb")
	writeFile(t, geo, testGeoDB(t, "country"))
	s := newServer(t, Options{Tree: dir, GeoIP: geo})
	const de = "81.2.69.142:5555"
	for _, tc := range []struct {
		name, path string
		want       []string // mirrors; "local" for the tree
	}{
		{"arm64 layer: the arm64 mirror", "/v2/fedora/toolbox/blobs/" + dm.toolboxLayer.String(), []string{"de1.example"}},
		{"blob no platform claims: both", "/v2/fedora/blobs/" + dm.baseLayer.String(), []string{"de1.example", "de2.example"}},
		{"archive blob, no archive mirror: the tree", "/v2/fedora/httpd/blobs/" + dm.httpdConfig.String(), []string{"local"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			seen := map[string]int{}
			for range 100 {
				w := do(s, "GET", tc.path, de, nil)
				switch w.Code {
				case http.StatusTemporaryRedirect:
					seen[w.Header().Get("Location")[len("https://"):][:len("de1.example")]]++
				case http.StatusOK:
					seen["local"]++
				default:
					t.Fatalf("GET %s: %d %s", tc.path, w.Code, w.Body)
				}
			}
			if tc.want == nil {
				return
			}
			got := make([]string, 0, len(seen))
			for k := range seen {
				got = append(got, k)
			}
			slices.Sort(got)
			if !slices.Equal(got, tc.want) {
				t.Errorf("sent to %v, want each of %v and nowhere else", seen, tc.want)
			}
		})
	}
	g := s.gen.Load()
	m, _, err := layout.NewTree(dir).Load()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range g.probes {
		var content []string
		for _, mi := range m.Mirrors {
			if mi.Name == p.name {
				content = mi.Content
			}
		}
		if !layout.Carries(m.ContentMask(content), m.Blobs[p.blob]) {
			t.Errorf("mirror %s (content %v) probed with %s, a blob of none of its subsets", p.name, content, p.blob)
		}
	}
}
