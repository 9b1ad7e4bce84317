package e2e

import (
	"bytes"
	"io"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/regmirror/regmirror/internal/testsupport/peers"
	"github.com/regmirror/regmirror/layout"
)

// startPhase2Servers starts Debian's nginx and Apache serving the tree copied to mirror as
// phase-2 mirrors, configured with `regmirror mirror-config`.
func startPhase2Servers(t *testing.T, mirror string) (*peers.Nginx, *peers.Apache) {
	t.Helper()
	config := func(server string) string {
		r := regmirror(t, nil, "mirror-config", "--server", server, "--root", mirror)
		if r.err != nil {
			t.Fatalf("%v", r)
		}
		return r.stdout
	}
	nginx := peers.StartNginxConfig(t, &peers.NginxConfig{Dir: t.TempDir(), Servers: []peers.NginxServer{{Directives: config("nginx")}}})
	apache := peers.StartApache(t, &peers.ApacheConfig{Directives: config("apache"), Readable: []string{mirror}})
	return nginx, apache
}

// loadMeta loads the tree's current generation.
func loadMeta(t *testing.T, dir string) *layout.Meta {
	t.Helper()
	meta, _, err := layout.NewTree(dir).Load()
	if err != nil {
		t.Fatal(err)
	}
	return meta
}

type httpAnswer struct {
	status                int
	ctype, digest, length string
	body                  string
}

func fetch(t *testing.T, method, url string) httpAnswer {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Like a client: accept every manifest type (the mirror ignores it).
	req.Header.Set("Accept", "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json")
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return httpAnswer{resp.StatusCode, resp.Header.Get("Content-Type"), resp.Header.Get("Docker-Content-Digest"), resp.Header.Get("Content-Length"), string(b)}
}

// TestPhase2Mirrors: a mirror's plain nginx or Apache, configured with `regmirror
// mirror-config`, serving an rsync copy of the tree, answers skopeo, crane and podman pulls by
// tag and by digest with exact Content-Type and Docker-Content-Digest; a tag deleted at the source
// stops resolving after the next generation and sync.
func TestPhase2Mirrors(t *testing.T) {
	needPeers(t)
	reg := peers.StartRegistry(t)
	refs := demo(t)
	reg.Push(t, refs)
	w := wantOf(t, refs)
	tree := t.TempDir()
	generate(t, reg.URL, tree)
	meta := loadMeta(t, tree)
	mirror := filepath.Join(t.TempDir(), "containers")
	peers.SyncMirror(t, tree, mirror)

	nginx, apache := startPhase2Servers(t, mirror)
	servers := []struct {
		name string
		url  string
		logs func() string
	}{
		{"nginx", nginx.URL, func() string { return peers.Tail(nginx.Config.ErrorLogPath(), 20) }},
		{"apache", apache.URL, apache.ErrorLog},
	}
	peers.CleanHostResidue(t)
	skopeo := peers.NewSkopeo(t)
	crane := peers.NewCrane(t)
	podman := peers.NewPodman(t)

	for _, s := range servers {
		t.Run(s.name, func(t *testing.T) {
			base := strings.TrimSuffix(s.url, "/")
			ep := peers.Endpoint{Host: strings.TrimPrefix(base, "http://")}
			t.Run("http", func(t *testing.T) {
				if got := fetch(t, http.MethodGet, base+"/v2/"); got.status != 200 || strings.TrimSpace(got.body) != "{}" {
					t.Errorf("GET /v2/: got %d %q, want 200 {}\n%s", got.status, got.body, s.logs())
				}
				for _, name := range w.keys() {
					repo, tag, _ := strings.Cut(name, ":")
					d := w[name]
					m := meta.Manifests[layout.MustDigest(d.String())]
					for _, ref := range []string{tag, d.String()} {
						for _, method := range []string{http.MethodGet, http.MethodHead} {
							got := fetch(t, method, base+"/v2/"+repo+"/manifests/"+ref)
							if got.status != 200 || got.ctype != m.MediaType || got.digest != d.String() || got.length != itoa(len(m.Data)) {
								t.Errorf("%s %s@%s: got %d, type %q, digest %q, length %q; want 200, %q, %q, %d\n%s", method, repo, ref, got.status, got.ctype, got.digest, got.length, m.MediaType, d, len(m.Data), s.logs())
							}
							if method == http.MethodGet && got.body != string(m.Data) {
								t.Errorf("GET %s@%s: body differs from the manifest", repo, ref)
							}
						}
					}
				}
				if got := fetch(t, http.MethodGet, base+"/v2/fedora/manifests/nosuchtag"); got.status != 404 {
					t.Errorf("unknown tag: got %d, want 404", got.status)
				}
				if got := fetch(t, http.MethodGet, base+"/v2/fedora/manifests/sha256:"+strings.Repeat("0", 64)); got.status != 404 {
					t.Errorf("unknown digest: got %d, want 404", got.status)
				}
				if got := fetch(t, http.MethodGet, base+"/v2/fedora/tags/list"); got.status != 200 || got.body != `{"name":"fedora","tags":["42","latest"]}`+"\n" {
					t.Errorf("tags/list: got %d %q", got.status, got.body)
				}
				for d, b := range meta.Blobs {
					got := fetch(t, http.MethodHead, base+"/v2/fedora/blobs/"+d.String())
					if got.status != 200 || got.digest != d.String() || got.length != itoa(int(b.Size)) {
						t.Errorf("HEAD blob %s: got %d, digest %q, length %q; want 200, %d bytes", d, got.status, got.digest, got.length, b.Size)
					}
					break
				}
			})
			t.Run("skopeo", func(t *testing.T) {
				for _, name := range w.keys() {
					repo, _, _ := strings.Cut(name, ":")
					d := w[name].String()
					if strings.HasPrefix(meta.Manifests[layout.MustDigest(d)].MediaType, "application/vnd.docker.") {
						// Keep the manifest as it is (an OCI layout would convert it).
						skopeo.CopyDir(t, ep, name, d)
						skopeo.CopyDir(t, ep, repo+"@"+d, d)
						continue
					}
					m := meta.Manifests[layout.MustDigest(d)]
					if idx, err := v1.ParseIndexManifest(bytes.NewReader(m.Data)); err == nil && len(idx.Manifests) > 0 {
						// An index: the bytes as served, then the amd64 image through it.
						for _, ref := range []string{name, repo + "@" + d} {
							if got := skopeo.InspectDigest(t, ep, ref); got != d {
								t.Errorf("skopeo inspect --raw %s: got %s, want %s", ref, got, d)
							}
						}
						var amd64 string
						for _, c := range idx.Manifests {
							if c.Platform != nil && c.Platform.Architecture == "amd64" {
								amd64 = c.Digest.String()
							}
						}
						skopeo.Copy(t, ep, name, amd64, "--override-arch", "amd64", "--override-os", "linux")
						continue
					}
					skopeo.Copy(t, ep, name, d)
					skopeo.Copy(t, ep, repo+"@"+d, d)
				}
			})
			t.Run("crane", func(t *testing.T) {
				for _, name := range w.keys() {
					if got, want := crane.Digest(t, ep, name), w[name].String(); got != want {
						t.Errorf("crane digest %s: got %s, want %s", name, got, want)
					}
				}
				crane.Pull(t, ep, "fedora/toolbox:42", w["fedora/toolbox:42"].String())
			})
			t.Run("podman", func(t *testing.T) {
				podman.Pull(t, ep, "fedora:42", w["fedora:42"].String())
				podman.Pull(t, ep, "fedora/httpd:2.4", w["fedora/httpd:2.4"].String())
				podman.Pull(t, ep, "fedora/minimal@"+w["fedora/minimal:42"].String(), w["fedora/minimal:42"].String())
			})
		})
	}

	t.Run("deleted tag", func(t *testing.T) {
		reg.DeleteTag(t, "fedora/minimal", "42")
		generate(t, reg.URL, tree)
		peers.SyncMirror(t, tree, mirror)
		for _, s := range servers {
			if got := fetch(t, http.MethodGet, strings.TrimSuffix(s.url, "/")+"/v2/fedora/minimal/manifests/42"); got.status != 404 {
				t.Errorf("%s: deleted tag: got %d, want 404", s.name, got.status)
			}
			if got := fetch(t, http.MethodGet, strings.TrimSuffix(s.url, "/")+"/v2/fedora/toolbox/manifests/42"); got.status != 200 {
				t.Errorf("%s: remaining tag: got %d, want 200", s.name, got.status)
			}
		}
	})
}

func itoa(n int) string { return strconv.Itoa(n) }
