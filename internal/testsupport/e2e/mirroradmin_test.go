package e2e

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/regmirror/regmirror/internal/testsupport/peers"
	"github.com/regmirror/regmirror/layout"
)

// docBlock returns the indented code block that follows the line starting with intro in
// docs/mirror-admins.md, dedented.
func docBlock(t *testing.T, intro string) string {
	t.Helper()
	root, err := peers.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(root, "docs", "mirror-admins.md"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(b), "\n")
	for i, l := range lines {
		if !strings.HasPrefix(l, intro) {
			continue
		}
		var block []string
		j := i + 1
		// The intro may go on for a line or two; the block starts at the first indented line.
		for j < len(lines) && !strings.HasPrefix(lines[j], "    ") {
			j++
		}
		for ; j < len(lines) && (strings.HasPrefix(lines[j], "    ") || strings.TrimSpace(lines[j]) == ""); j++ {
			block = append(block, strings.TrimPrefix(lines[j], "    "))
		}
		return strings.TrimSpace(strings.Join(block, "\n")) + "\n"
	}
	t.Fatalf("docs/mirror-admins.md has no line starting with %q", intro)
	return ""
}

// TestMirrorAdminDocs: the web server settings docs/mirror-admins.md gives mirror admins, with
// the tree copied by its rsync commands, make a mirror the crawler finds healthy, with
// long-lived blobs and uncached switch files.
func TestMirrorAdminDocs(t *testing.T) {
	needPeers(t)
	reg := peers.StartRegistry(t)
	refs := demo(t)
	reg.Push(t, refs)
	tree := t.TempDir()
	generate(t, reg.URL, tree)
	srv := t.TempDir()
	mirror := filepath.Join(srv, "containers")
	peers.SyncMirror(t, tree, mirror)
	subst := func(s string) string { return strings.ReplaceAll(s, "/srv/mirror", srv) }

	nginx := peers.StartNginxConfig(t, &peers.NginxConfig{Dir: t.TempDir(), Servers: []peers.NginxServer{{Directives: subst(docBlock(t, "nginx, the tree synced"))}}})
	apache := peers.StartApache(t, &peers.ApacheConfig{Directives: subst(docBlock(t, "Apache:")), Readable: []string{srv}})

	meta, _, err := layout.NewTree(tree).Load()
	if err != nil {
		t.Fatal(err)
	}
	var blob layout.Digest
	for d := range meta.Blobs {
		blob = d
		break
	}
	var mirrorsYAML strings.Builder
	mirrorsYAML.WriteString("mirrors:\n")
	for _, s := range []struct{ name, url string }{{"nginx", nginx.URL}, {"apache", apache.URL}} {
		base := s.url + "containers/"
		fmt.Fprintf(&mirrorsYAML, "  - name: %s\n    url: %s\n    country: DE\n", s.name, base)
		t.Run(s.name, func(t *testing.T) {

			cases := []struct {
				path, wantCache string
				rangeHdr        string
				wantStatus      int
			}{
				{path: layout.BlobPath(blob), wantCache: "public, max-age=31536000, immutable", wantStatus: 200},
				{path: layout.BlobPath(blob), wantCache: "public, max-age=31536000, immutable", rangeHdr: "bytes=0-0", wantStatus: 206},
				{path: layout.IndexFile, wantCache: "no-cache", wantStatus: 200},
				{path: layout.CurrentFile, wantCache: "no-cache", wantStatus: 200},
			}
			for _, c := range cases {
				req, _ := http.NewRequest(http.MethodGet, base+c.path, nil)
				req.Header.Set("Accept-Encoding", "gzip")
				if c.rangeHdr != "" {
					req.Header.Set("Range", c.rangeHdr)
				}
				resp, err := http.DefaultTransport.RoundTrip(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != c.wantStatus || resp.Header.Get("Cache-Control") != c.wantCache || resp.Header.Get("Content-Encoding") != "" {
					t.Errorf("GET %s (Range %q): got %s, Cache-Control %q, Content-Encoding %q; want %d, %q, none",
						c.path, c.rangeHdr, resp.Status, resp.Header.Get("Cache-Control"), resp.Header.Get("Content-Encoding"), c.wantStatus, c.wantCache)
				}
			}
		})
	}
	file := filepath.Join(t.TempDir(), "mirrors.yaml")
	if err := os.WriteFile(file, []byte(mirrorsYAML.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	r := regmirror(t, nil, "crawl", "--tree", tree, "--mirrors", file)
	if r.err != nil || !strings.Contains(r.stdout, "2 of 2 mirrors healthy") {
		t.Errorf("crawl of the documented mirrors: want 2 of 2 healthy\n%v", r)
	}
}
