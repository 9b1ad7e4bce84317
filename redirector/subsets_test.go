package redirector

import (
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/regmirror/regmirror/layout"
)

// TestSubsetRouting: a blob goes only to mirrors whose content includes one of its subsets,
// the tiers widening past those that do not; with none, to the local tree; /route says the
// same, and why the others are passed over. Probes use a blob of each mirror's subsets.
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
		name, repo string
		blob       layout.Digest
		want       []string // mirrors; "local" for the tree
		passedOver string   // a mirror /route must say does not carry the blob
	}{
		{"arm64 layer: the arm64 mirror", "fedora/toolbox", dm.toolboxLayer, []string{"de1.example"}, "de2.example"},
		{"blob no platform claims: both", "fedora", dm.baseLayer, []string{"de1.example", "de2.example"}, ""},
		{"archive blob, no archive mirror: the tree", "fedora/httpd", dm.httpdConfig, []string{"local"}, "fr.example"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := "/v2/" + tc.repo + "/blobs/" + tc.blob.String()
			_, ex := getRoute(t, s, "ip=81.2.69.142&repo="+tc.repo+"&digest="+tc.blob.String(), "192.0.2.1:1")
			var routed []string
			for _, to := range ex.To {
				routed = append(routed, to[len("https://"):][:len("de1.example")])
			}
			if len(routed) == 0 && strings.HasPrefix(ex.Decision, "local") {
				routed = []string{"local"}
			}
			slices.Sort(routed)
			if !slices.Equal(routed, tc.want) {
				t.Errorf("/route: decision %q to %v, want %v", ex.Decision, ex.To, tc.want)
			}
			if tc.passedOver != "" {
				i := slices.IndexFunc(ex.Candidates, func(rc routeCandidate) bool { return rc.Mirror == tc.passedOver })
				if i < 0 || !strings.Contains(ex.Candidates[i].Reason, "not carrying the blob") {
					t.Errorf("/route: verdict of %s: %+v, want \"not carrying the blob\"", tc.passedOver, ex.Candidates)
				}
			}
			seen := map[string]int{}
			for range 100 {
				w := do(s, "GET", path, de, nil)
				switch w.Code {
				case http.StatusTemporaryRedirect:
					seen[w.Header().Get("Location")[len("https://"):][:len("de1.example")]]++
				case http.StatusOK:
					seen["local"]++
				default:
					t.Fatalf("GET %s: %d %s", path, w.Code, w.Body)
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
