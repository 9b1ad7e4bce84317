package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/regmirror/regmirror/internal/testsupport/peers"
	"github.com/regmirror/regmirror/layout"
)

// TestStatusPage: serve's status page, loaded in headless Chromium as an operator would, shows
// the generation and every mirror of a crawled network (a healthy nginx mirror, a dead one, a
// private one by name only); /status.json says what the crawl recorded. The screenshot is
// kept in out/test-artifacts/status-page.png.
func TestStatusPage(t *testing.T) {
	needPeers(t)
	chromium := peers.NewChromium(t)
	tree := filepath.Join(t.TempDir(), "tree")
	if r := regmirror(t, nil, "demo", "--once", "--out", tree, "--listen", "127.0.0.1:"+strconv.Itoa(peers.FreePort(t))); r.err != nil {
		t.Fatalf("regmirror demo --once: %v\n%s", r.err, r)
	}
	mirrorDir := filepath.Join(t.TempDir(), "mirror")
	peers.SyncMirror(t, tree, mirrorDir)
	nginx := peers.StartNginx(t, mirrorDir)
	dead := peers.FreePort(t)
	mirrorsFile := filepath.Join(t.TempDir(), "mirrors.yaml")
	yaml := fmt.Sprintf(`mirrors:
  - name: mirror.example.de
    url: %s
    country: DE
    bandwidth: 1000
  - name: dead.example.fr
    url: http://localhost:%d/containers/
    country: FR
  - name: campus-cache
    url: http://secret.campus.example/containers/
    country: DE
    private: true
    netblocks: [198.51.100.0/24]
`, nginx.URL, dead)
	if err := os.WriteFile(mirrorsFile, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	if r := regmirror(t, nil, "crawl", "--tree", tree, "--mirrors", mirrorsFile); r.err != nil {
		t.Fatalf("crawl: %v\n%s", r.err, r)
	}
	meta, _, err := layout.NewTree(tree).Load()
	if err != nil {
		t.Fatal(err)
	}
	srv := clientServe(t, tree, nil)

	// The JSON says what the crawl recorded.
	resp, err := http.Get(srv.URL() + "/status.json")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var status struct {
		Generation uint64
		Mirrors    []struct {
			Name       string
			URL        string
			Private    bool
			Generation uint64
			Healthy    bool
			Reason     string
		}
	}
	if err := json.Unmarshal(body, &status); err != nil {
		t.Fatalf("/status.json: %v\n%s", err, body)
	}
	if status.Generation != meta.Generation {
		t.Errorf("/status.json generation: got %d, want %d", status.Generation, meta.Generation)
	}
	if len(status.Mirrors) != len(meta.Mirrors) {
		t.Errorf("/status.json: got %d mirrors, want %d", len(status.Mirrors), len(meta.Mirrors))
	}
	for _, got := range status.Mirrors {
		for _, want := range meta.Mirrors {
			if want.Name != got.Name {
				continue
			}
			if want.Private {
				if !got.Private || got.URL != "" || got.Generation != 0 {
					t.Errorf("private mirror %s: shows more than its name: %+v", got.Name, got)
				}
				continue
			}
			if got.Healthy != want.Healthy || got.Generation != want.Generation || got.Reason != want.Status || got.URL != want.URL {
				t.Errorf("mirror %s: got %+v, want what the crawl recorded: %+v", got.Name, got, want)
			}
		}
	}
	if strings.Contains(string(body), "secret.campus") {
		t.Errorf("/status.json shows the private mirror's URL")
	}

	// The page, as a browser renders it.
	dom := chromium.DumpDOM(t, srv.URL()+"/")
	for _, want := range []string{
		`id="gen-number">` + strconv.FormatUint(meta.Generation, 10) + "<",
		`data-name="mirror.example.de"`, `data-name="dead.example.fr"`, `data-name="campus-cache"`,
		"healthy", "unhealthy",
	} {
		if !strings.Contains(dom, want) {
			t.Errorf("the rendered page lacks %q\n%s", want, dom)
		}
	}
	if strings.Contains(dom, "secret.campus") {
		t.Errorf("the rendered page shows the private mirror's URL")
	}
	shot := peers.ArtifactPath(t, "status-page.png")
	chromium.Screenshot(t, srv.URL()+"/", shot)
	t.Logf("screenshot: %s", shot)
}
