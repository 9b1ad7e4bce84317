package e2e

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/regmirror/regmirror/internal/testsupport/peers"
	"github.com/regmirror/regmirror/internal/testsupport/testimages"
)

// clientDigests are the digests the demo set publishes (testdata/README.md), as the real
// clients must find them after pulling through the redirector.
type clientDigests struct {
	fedora, fedoraAMD64, fedoraARM64 string // fedora:42 (an OCI index) and its two images
	toolbox                          string // fedora/toolbox:42, OCI image
	httpd                            string // fedora/httpd:2.4, Docker schema 2 image
	minimal                          string // fedora/minimal:42, OCI image with a zstd layer
	// blobs of fedora:42's linux/amd64 image: its config and its one layer
	fedoraAMD64Blobs []string
}

func clientDigestsOf(t testing.TB, refs []testimages.Ref) clientDigests {
	t.Helper()
	var d clientDigests
	for _, r := range refs {
		h, err := r.Digest()
		if err != nil {
			t.Fatal(err)
		}
		switch r.Repo {
		case "fedora":
			d.fedora = h.String()
			idx, err := r.Index.IndexManifest()
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range idx.Manifests {
				switch m.Platform.Architecture {
				case "amd64":
					d.fedoraAMD64 = m.Digest.String()
					img, err := r.Index.Image(m.Digest)
					if err != nil {
						t.Fatal(err)
					}
					mf, err := img.Manifest()
					if err != nil {
						t.Fatal(err)
					}
					d.fedoraAMD64Blobs = append(d.fedoraAMD64Blobs, mf.Config.Digest.String())
					for _, l := range mf.Layers {
						d.fedoraAMD64Blobs = append(d.fedoraAMD64Blobs, l.Digest.String())
					}
				case "arm64":
					d.fedoraARM64 = m.Digest.String()
				}
			}
		case "fedora/toolbox":
			d.toolbox = h.String()
		case "fedora/httpd":
			d.httpd = h.String()
		case "fedora/minimal":
			d.minimal = h.String()
		}
	}
	for _, s := range []string{d.fedora, d.fedoraAMD64, d.fedoraARM64, d.toolbox, d.httpd, d.minimal} {
		if s == "" {
			t.Fatalf("the demo set changed: %+v", d)
		}
	}
	return d
}

// clientServer is a running "regmirror serve".
type clientServer struct {
	peers.Endpoint
	proc *peers.Process
}

// clientServe runs "regmirror serve --tree TREE --listen 127.0.0.1:PORT [extra]" (HTTPS with
// the certificate of tf when tf is not nil) and waits until /v2/ answers 200. Clients address
// it as localhost:PORT.
func clientServe(t testing.TB, tree string, tf *peers.TLSFiles, extra ...string) *clientServer {
	t.Helper()
	bin := peers.Regmirror(t)
	port := peers.FreePort(t)
	args := []string{"serve", "--tree", tree, "--listen", "127.0.0.1:" + strconv.Itoa(port)}
	if tf != nil {
		args = append(args, "--tls-cert", tf.Cert, "--tls-key", tf.Key)
	}
	args = append(args, extra...)
	ep := peers.Endpoint{Host: "localhost:" + strconv.Itoa(port), TLS: tf}
	client := clientHTTP(ep, true)
	ready := func() error {
		resp, err := client.Get(ep.URL() + "/v2/")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET /v2/: %s", resp.Status)
		}
		return nil
	}
	p := peers.Start(t, "regmirror-serve", exec.Command(bin, args...), ready)
	return &clientServer{Endpoint: ep, proc: p}
}

// blobGETs counts the access log's GET requests for a blob with digest d (any repository)
// answered with status, waiting up to 2 s for a count above atLeast (the log is flushed
// every 100 ms).
func (s *clientServer) blobGETs(d string, status int, atLeast int) int {
	deadline := time.Now().Add(2 * time.Second)
	for {
		n := 0
		b, _ := os.ReadFile(s.proc.Log)
		for _, line := range strings.Split(string(b), "\n") {
			if strings.Contains(line, " method=GET ") && strings.Contains(line, " status="+strconv.Itoa(status)+" ") &&
				clientLoggedBlob(line, d) {
				n++
			}
		}
		if n > atLeast || time.Now().After(deadline) {
			return n
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// clientLoggedBlob says whether an access log line's path is a blob request for digest d. The
// redirector shortens long paths in its log in the middle ("/v2/long…/blobs/sha256:…"), so the
// digest at the end is always whole.
func clientLoggedBlob(line, d string) bool {
	_, path, ok := strings.Cut(line, " path=")
	if !ok {
		return false
	}
	path, _, _ = strings.Cut(path, " ")
	_, got, ok := strings.Cut(path, "/blobs/")
	return ok && got == d
}

// clientFetchesAMD64 says whether a pullAll step downloads fedora:42's linux/amd64 blobs.
func clientFetchesAMD64(step string) bool {
	switch step {
	case "skopeo-copy-by-digest", "skopeo-copy-override-arch-arm64", "skopeo-inspect-raw":
		return false
	}
	return true
}

// clientHTTP is a Go client for the endpoint (trusting its test CA); with follow false it
// returns redirects instead of following them.
func clientHTTP(ep peers.Endpoint, follow bool) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if ep.TLS != nil {
		tr.TLSClientConfig = ep.TLS.ClientConfig()
	} else {
		tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	c := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	if !follow {
		c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	}
	return c
}

// clientFixture is everything the pull tests share: one source, one tree, one private
// containerd and dockerd, the client wrappers.
type clientFixture struct {
	d      clientDigests
	tree   string
	skopeo *peers.Skopeo
	crane  *peers.Crane
	regctl *peers.Regctl
	podman *peers.Podman
	ctd    *peers.Containerd
	docker *peers.Docker
}

// newClientFixture publishes the demo set into a docker-registry, generates the tree from it
// (extra: more generate flags) and stops the registry, so every pull can only be answered
// from the tree; then starts the daemons.
func newClientFixture(t *testing.T, extra ...string) *clientFixture {
	t.Helper()
	needPeers(t)
	peers.CleanHostResidue(t)
	refs := demo(t)
	f := &clientFixture{d: clientDigestsOf(t, refs), tree: filepath.Join(t.TempDir(), "tree")}
	src := peers.StartRegistry(t)
	src.Push(t, refs)
	generate(t, src.URL, f.tree, extra...)
	src.Proc.Stop()
	f.startClients(t)
	return f
}

// startClients finds the client programs and starts the private containerd and dockerd.
func (f *clientFixture) startClients(t *testing.T) {
	t.Helper()
	f.skopeo = peers.NewSkopeo(t)
	f.crane = peers.NewCrane(t)
	f.regctl = peers.NewRegctl(t)
	f.podman = peers.NewPodman(t)
	f.ctd = peers.StartContainerd(t)
	f.docker = peers.StartDocker(t, f.ctd)
}

// pullAll pulls with every real client from ep, each as a subtest, each checking digests.
// after, when not nil, is called at the end of each step with the step's name (to check
// where the blobs came from).
func (f *clientFixture) pullAll(t *testing.T, ep peers.Endpoint, after func(t *testing.T, client string)) {
	d := f.d
	step := func(name string, fn func(t *testing.T)) {
		t.Run(name, func(t *testing.T) {
			fn(t)
			if after != nil {
				after(t, name)
			}
		})
	}
	step("skopeo-copy-by-tag", func(t *testing.T) {
		// An index by tag: skopeo picks linux/amd64 and copies that manifest verbatim.
		f.skopeo.CopyDir(t, ep, "fedora:42", d.fedoraAMD64)
		f.skopeo.CopyDir(t, ep, "fedora/httpd:2.4", d.httpd)
		f.skopeo.CopyDir(t, ep, "fedora/minimal:42", d.minimal)
		f.skopeo.Copy(t, ep, "fedora/toolbox:42", d.toolbox)
	})
	step("skopeo-copy-by-digest", func(t *testing.T) {
		f.skopeo.CopyDir(t, ep, "fedora/httpd@"+d.httpd, d.httpd)
		f.skopeo.CopyDir(t, ep, "fedora@"+d.fedoraAMD64, d.fedoraAMD64)
	})
	step("skopeo-copy-override-arch-arm64", func(t *testing.T) {
		f.skopeo.CopyDir(t, ep, "fedora:42", d.fedoraARM64, "--override-arch", "arm64")
	})
	step("skopeo-inspect-raw", func(t *testing.T) {
		if got := f.skopeo.InspectDigest(t, ep, "fedora:42"); got != d.fedora {
			t.Fatalf("skopeo inspect --raw fedora:42: the bytes have digest %s, want %s", got, d.fedora)
		}
	})
	step("crane", func(t *testing.T) {
		if got := f.crane.Digest(t, ep, "fedora:42"); got != d.fedora {
			t.Fatalf("crane digest fedora:42 = %s, want %s", got, d.fedora)
		}
		f.crane.Pull(t, ep, "fedora:42", d.fedora)
		f.crane.Pull(t, ep, "fedora/httpd@"+d.httpd, d.httpd)
	})
	step("regctl", func(t *testing.T) {
		if got := f.regctl.Digest(t, ep, "fedora:42"); got != d.fedora {
			t.Fatalf("regctl image digest fedora:42 = %s, want %s", got, d.fedora)
		}
		f.regctl.Copy(t, ep, "fedora:42", d.fedora)
		f.regctl.Copy(t, ep, "fedora/minimal:42", d.minimal)
	})
	step("podman", func(t *testing.T) {
		f.podman.Pull(t, ep, "fedora:42", d.fedora)
		f.podman.Pull(t, ep, "fedora/httpd@"+d.httpd, d.httpd)
	})
	step("containerd", func(t *testing.T) {
		f.ctd.Pull(t, ep, "fedora:42", d.fedora)
		f.ctd.Pull(t, ep, "fedora/minimal:42", d.minimal)
	})
	step("docker", func(t *testing.T) {
		// Docker 20.10 cannot apply zstd layers (fedora/minimal): not pulled here.
		f.docker.Pull(t, ep, "fedora:42", d.fedora)
		f.docker.Pull(t, ep, "fedora/httpd:2.4", d.httpd)
	})
}

// TestClientPulls: every real client pulls the demo set through "regmirror serve" (no
// mirrors: the redirector serves blobs from its tree), over plain HTTP and over TLS with a
// test CA, each checking the digests it got.
func TestClientPulls(t *testing.T) {
	f := newClientFixture(t)
	plain := clientServe(t, f.tree, nil)
	secure := clientServe(t, f.tree, peers.NewTLS(t))
	for _, srv := range []struct {
		name string
		*clientServer
	}{{"http", plain}, {"tls", secure}} {
		seen := map[string]int{}
		t.Run(srv.name, func(t *testing.T) {
			// Every client really downloads the blobs, from the redirector (no mirror).
			f.pullAll(t, srv.Endpoint, func(t *testing.T, step string) {
				if t.Failed() || !clientFetchesAMD64(step) {
					return
				}
				for _, b := range f.d.fedoraAMD64Blobs {
					n := srv.blobGETs(b, http.StatusOK, seen[b])
					if n <= seen[b] {
						t.Errorf("%s: the redirector logged no GET of blob %s answered 200 during the pull\nredirector log:\n%s", step, b, peers.Tail(srv.proc.Log, 10))
					}
					seen[b] = n
				}
			})
		})
	}
	// Certificates are verified: trusting another CA, the TLS clients refuse the redirector.
	t.Run("tls-other-ca", func(t *testing.T) {
		ep := peers.Endpoint{Host: secure.Host, TLS: peers.NewTLS(t)}
		if _, err := f.skopeo.InspectDigestErr(ep, "fedora:42"); err == nil || !strings.Contains(err.Error(), "certificate") {
			t.Errorf("skopeo inspect with another CA: %v, want a certificate error", err)
		}
		if _, err := f.crane.DigestErr(ep, "fedora:42"); err == nil || !strings.Contains(err.Error(), "certificate") {
			t.Errorf("crane digest with another CA: %v, want a certificate error", err)
		}
	})
}

// clientWithMirror is newClientFixture plus one mirror, the way design.md runs it:
// "regmirror generate --mirrors FILE", the documented two-phase rsync to the mirror (nginx on
// loopback), "regmirror crawl --tree TREE" (the mirrors recorded in the tree), rsync again so
// the mirror carries the crawl's metadata too.
func clientWithMirror(t *testing.T) (*clientFixture, *peers.Nginx) {
	t.Helper()
	needPeers(t)
	nginx, mirrorRoot, mirrors := clientStartMirror(t)
	f := newClientFixture(t, "--mirrors", mirrors)
	peers.SyncMirror(t, f.tree, mirrorRoot)
	r := regmirror(t, nil, "crawl", "--tree", f.tree)
	if r.err != nil {
		t.Fatalf("%v", r)
	}
	t.Logf("regmirror crawl:\n%s", r.stdout)
	peers.SyncMirror(t, f.tree, mirrorRoot)
	return f, nginx
}

// clientStartMirror starts nginx serving an empty mirror directory and writes a mirrors file
// naming it (mirror-de, country DE).
func clientStartMirror(t *testing.T) (nginx *peers.Nginx, root, mirrorsFile string) {
	t.Helper()
	root = filepath.Join(t.TempDir(), "mirror")
	if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatal(err)
	}
	nginx = peers.StartNginx(t, root)
	mirrorsFile = filepath.Join(t.TempDir(), "mirrors.yaml")
	mirrorsYAML := fmt.Sprintf("mirrors:\n  - name: mirror-de\n    url: %s\n    country: DE\n    bandwidth: 100\n", nginx.URL)
	if err := os.WriteFile(mirrorsFile, []byte(mirrorsYAML), 0o644); err != nil {
		t.Fatal(err)
	}
	return nginx, root, mirrorsFile
}

// clientAddMirror gives an existing tree one mirror the other way: rsync to the mirror, then
// "regmirror crawl --mirrors FILE" (which applies the mirrors file and checks that the mirror
// holds the tree's blobs), then rsync again.
func clientAddMirror(t *testing.T, tree string) *peers.Nginx {
	t.Helper()
	needPeers(t)
	nginx, mirrorRoot, mirrors := clientStartMirror(t)
	peers.SyncMirror(t, tree, mirrorRoot)
	r := regmirror(t, nil, "crawl", "--tree", tree, "--mirrors", mirrors)
	if r.err != nil {
		t.Fatalf("%v", r)
	}
	t.Logf("regmirror crawl --mirrors:\n%s", r.stdout)
	peers.SyncMirror(t, tree, mirrorRoot)
	return nginx
}

// TestClientPullsThroughMirror: with one healthy mirror, every blob GET at the redirector is a
// 307 to the mirror's copy, and every real client's pull of fedora:42 fetches its blobs from
// nginx (access log) after the redirector's 307 (redirector log).
func TestClientPullsThroughMirror(t *testing.T) {
	f, nginx := clientWithMirror(t)
	srv := clientServe(t, f.tree, nil)

	// The redirector answers a blob GET with a 307 to the mirror's copy.
	client := clientHTTP(srv.Endpoint, false)
	for _, b := range f.d.fedoraAMD64Blobs {
		resp, err := client.Get(srv.URL() + "/v2/fedora/blobs/" + b)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		want := nginx.URL + "blobs/sha256/" + strings.TrimPrefix(b, "sha256:")
		if resp.StatusCode != http.StatusTemporaryRedirect || resp.Header.Get("Location") != want {
			t.Fatalf("GET /v2/fedora/blobs/%s: %s Location %q, want 307 to %s\nredirector log:\n%s",
				b, resp.Status, resp.Header.Get("Location"), want, peers.Tail(srv.proc.Log, 20))
		}
	}

	seen, redirected := map[string]int{}, map[string]int{}
	for _, b := range f.d.fedoraAMD64Blobs {
		seen[b] = nginx.Requests("/blobs/sha256/" + strings.TrimPrefix(b, "sha256:"))
		redirected[b] = srv.blobGETs(b, http.StatusTemporaryRedirect, 0)
	}
	f.pullAll(t, srv.Endpoint, func(t *testing.T, step string) {
		if t.Failed() || !clientFetchesAMD64(step) {
			return
		}
		for _, b := range f.d.fedoraAMD64Blobs {
			if n := srv.blobGETs(b, http.StatusTemporaryRedirect, redirected[b]); n <= redirected[b] {
				t.Errorf("%s: the redirector logged no 307 for blob %s during the pull", step, b)
			} else {
				redirected[b] = n
			}
			n := nginx.Requests("/blobs/sha256/" + strings.TrimPrefix(b, "sha256:"))
			if n <= seen[b] {
				t.Errorf("%s: the mirror served %s no GET during the pull (nginx access log: %d before, %d after)", step, b, seen[b], n)
			}
			seen[b] = n
		}
	})
}

// TestClientPullsRegionalManifests: with --regional-manifests, a tag request gets the
// region's variant of the manifest (descriptor urls at the mirror, so another digest), a
// digest request the canonical bytes; every real client pulls the variant by tag, reports
// the variant's digest, and gets the config and layers from the mirror, either through the
// urls or through the redirector's 307. Which way each client went is logged (design.md's
// client table), not asserted: it is the clients' choice.
func TestClientPullsRegionalManifests(t *testing.T) {
	f, nginx := clientWithMirror(t)
	srv := clientServe(t, f.tree, nil, "--regional-manifests")
	client := clientHTTP(srv.Endpoint, true)

	get := func(ref string) ([]byte, string) {
		req, err := http.NewRequest(http.MethodGet, srv.URL()+"/v2/fedora/toolbox/manifests/"+ref, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Accept", "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("GET fedora/toolbox/manifests/%s: %s %v", ref, resp.Status, err)
		}
		return body, resp.Header.Get("Docker-Content-Digest")
	}
	variant, header := get("42")
	vd := "sha256:" + sha256Hex(variant)
	if header != vd || vd == f.d.toolbox {
		t.Fatalf("GET fedora/toolbox:42 with --regional-manifests: digest %s (header %s), want a variant's, not the canonical %s", vd, header, f.d.toolbox)
	}
	var m struct {
		Config v1.Descriptor
		Layers []v1.Descriptor
	}
	if err := json.Unmarshal(variant, &m); err != nil {
		t.Fatal(err)
	}
	var blobs []string
	for _, d := range append([]v1.Descriptor{m.Config}, m.Layers...) {
		want := nginx.URL + "blobs/sha256/" + d.Digest.Hex
		if len(d.URLs) == 0 || d.URLs[0] != want {
			t.Errorf("variant descriptor %s: urls %q, want the mirror's %s first", d.Digest, d.URLs, want)
		}
		blobs = append(blobs, d.Digest.String())
	}
	if canonical, _ := get(f.d.toolbox); "sha256:"+sha256Hex(canonical) != f.d.toolbox {
		t.Errorf("GET fedora/toolbox by its digest with --regional-manifests: not the canonical bytes")
	}
	t.Logf("variant of fedora/toolbox:42: %s\n%s", vd, variant)

	mirrorGETs := func(d string) int { return nginx.Requests("/blobs/sha256/" + strings.TrimPrefix(d, "sha256:")) }
	type count struct{ mirror, redirect int }
	counts := func() map[string]count {
		c := map[string]count{}
		for _, b := range blobs {
			c[b] = count{mirrorGETs(b), srv.blobGETs(b, http.StatusTemporaryRedirect, -1)}
		}
		return c
	}
	var report []string
	pull := func(name string, fn func(t *testing.T)) {
		t.Run(name, func(t *testing.T) {
			before := counts()
			fn(t)
			time.Sleep(200 * time.Millisecond) // the redirector flushes its log every 100 ms
			after := counts()
			viaURLs, viaRedirect := 0, 0
			for _, b := range blobs {
				if after[b].mirror <= before[b].mirror {
					t.Errorf("%s: the mirror served no GET of %s", name, b)
				}
				if after[b].redirect > before[b].redirect {
					viaRedirect++
				} else {
					viaURLs++
				}
			}
			report = append(report, fmt.Sprintf("%-10s %d of %d blobs through the urls, %d through the redirector's 307", name, viaURLs, len(blobs), viaRedirect))
		})
	}
	ep := srv.Endpoint
	pull("skopeo", func(t *testing.T) { f.skopeo.CopyDir(t, ep, "fedora/toolbox:42", vd) })
	pull("crane", func(t *testing.T) { f.crane.Pull(t, ep, "fedora/toolbox:42", vd) })
	pull("regctl", func(t *testing.T) { f.regctl.Copy(t, ep, "fedora/toolbox:42", vd, "--include-external") })
	pull("podman", func(t *testing.T) { f.podman.Pull(t, ep, "fedora/toolbox:42", vd) })
	pull("containerd", func(t *testing.T) { f.ctd.Pull(t, ep, "fedora/toolbox:42", vd) })
	pull("docker", func(t *testing.T) { f.docker.Pull(t, ep, "fedora/toolbox:42", vd) })
	t.Logf("where the clients took fedora/toolbox:42's config and layers from (variant with urls):\n%s", strings.Join(report, "\n"))
}

// TestClientPullsAfterMirrorDies: the only mirror goes away; the next "regmirror crawl"
// finds it down, the running redirector picks up the crawl's generation and serves blobs
// itself (origin), and the real clients pull again with the right digests.
func TestClientPullsAfterMirrorDies(t *testing.T) {
	f, nginx := clientWithMirror(t)
	srv := clientServe(t, f.tree, nil)
	client := clientHTTP(srv.Endpoint, false)
	blob := f.d.fedoraAMD64Blobs[len(f.d.fedoraAMD64Blobs)-1]
	status := func() int {
		resp, err := client.Get(srv.URL() + "/v2/fedora/blobs/" + blob)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := status(); got != http.StatusTemporaryRedirect {
		t.Fatalf("GET a blob with a healthy mirror: %d, want 307", got)
	}
	nginx.Stop()
	r := regmirror(t, nil, "crawl", "--tree", f.tree)
	t.Logf("regmirror crawl with the mirror down: %v\n%s%s", r.err, r.stdout, r.stderr)
	deadline := time.Now().Add(15 * time.Second)
	for status() != http.StatusOK {
		if time.Now().After(deadline) {
			t.Fatalf("15 s after a crawl found the only mirror down, the redirector still redirects blob GETs (crawl: %v)\nredirector log:\n%s",
				r, peers.Tail(srv.proc.Log, 20))
		}
		time.Sleep(200 * time.Millisecond)
	}
	ep := srv.Endpoint
	t.Run("skopeo", func(t *testing.T) { f.skopeo.CopyDir(t, ep, "fedora:42", f.d.fedoraAMD64) })
	t.Run("crane", func(t *testing.T) { f.crane.Pull(t, ep, "fedora:42", f.d.fedora) })
	t.Run("podman", func(t *testing.T) { f.podman.Pull(t, ep, "fedora:42", f.d.fedora) })
	t.Run("containerd", func(t *testing.T) { f.ctd.Pull(t, ep, "fedora:42", f.d.fedora) })
	t.Run("docker", func(t *testing.T) { f.docker.Pull(t, ep, "fedora:42", f.d.fedora) })
}
