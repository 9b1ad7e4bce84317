package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/regmirror/regmirror/internal/testsupport/peers"
	"github.com/regmirror/regmirror/internal/testsupport/testimages"
)

// inflightAccept names every manifest type, lists included.
const inflightAccept = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, " +
	"application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json"

// inflightClient reports 307s instead of following them.
var inflightClient = &http.Client{
	Timeout:       30 * time.Second,
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// inflightGet GETs (or HEADs) url; a 307 is followed once by hand and its target must answer
// 200 (GET: with bytes of the digest at the end of url). It returns the final status and body.
func inflightGet(t *testing.T, method, url string) (int, []byte) {
	code, b, _ := inflightGetLoc(t, method, url)
	return code, b
}

// inflightGetLoc is inflightGet, also returning the 307's Location ("" without one).
func inflightGetLoc(t *testing.T, method, url string) (int, []byte, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", inflightAccept)
	resp, err := inflightClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusTemporaryRedirect {
		return resp.StatusCode, body, ""
	}
	loc := resp.Header.Get("Location")
	code, b := inflightGet(t, method, loc)
	if code != http.StatusOK {
		t.Errorf("%s %s: 307 to %s, which answers %d: not a holder", method, url, loc, code)
	}
	if want := url[strings.LastIndex(url, "/")+1:]; method == http.MethodGet && sha256Digest(b) != want {
		t.Errorf("%s %s: 307 to %s, which sends bytes of %s", method, url, loc, sha256Digest(b))
	}
	return code, b, loc
}

// sha256Digest is the digest of b, "sha256:<hex>".
func sha256Digest(b []byte) string { return "sha256:" + sha256Hex(b) }

// inflightRest fetches by digest everything the document references, recursively: child
// manifests, configs and layers, each blob with HEAD and GET, every GET sent to mirror (which
// holds them). It returns how many it fetched.
func inflightRest(t *testing.T, base, repo string, doc []byte, mirror string) (manifests, blobs int) {
	t.Helper()
	var m struct {
		Manifests []struct{ Digest string } `json:"manifests"`
		Config    *struct{ Digest string }  `json:"config"`
		Layers    []struct{ Digest string } `json:"layers"`
	}
	if err := json.Unmarshal(doc, &m); err != nil {
		t.Fatalf("%s: %v", repo, err)
	}
	for _, c := range m.Manifests {
		code, b := inflightGet(t, http.MethodGet, base+"/v2/"+repo+"/manifests/"+c.Digest)
		if code != http.StatusOK || sha256Digest(b) != c.Digest {
			t.Errorf("GET %s manifest %s: %d", repo, c.Digest, code)
			continue
		}
		cm, cb := inflightRest(t, base, repo, b, mirror)
		manifests, blobs = manifests+1+cm, blobs+cb
	}
	var ds []string
	if m.Config != nil {
		ds = append(ds, m.Config.Digest)
	}
	for _, l := range m.Layers {
		ds = append(ds, l.Digest)
	}
	for _, d := range ds {
		for _, method := range []string{http.MethodHead, http.MethodGet} {
			code, _, loc := inflightGetLoc(t, method, base+"/v2/"+repo+"/blobs/"+d)
			if code != http.StatusOK {
				t.Errorf("%s %s blob %s: %d, want 200 or a 307 to a holder", method, repo, d, code)
			}
			if method == http.MethodGet && !strings.HasPrefix(loc, mirror) {
				t.Errorf("GET %s blob %s: sent to %q, want the mirror holding it (%s)", repo, d, loc, mirror)
			}
		}
		blobs++
	}
	return manifests, blobs
}

// syncMeta copies the tree's regmirror/ to dir as a redirector-only host's
// regmirror-sync.service does (deploy/mirror-sync --meta-only).
func syncMeta(t *testing.T, tree, dir string) {
	t.Helper()
	peers.SyncMirrorPhase(t, tree, dir, 0, "--meta-only")
}

// waitGeneration waits until the redirector at base serves generation gen (GET /healthz).
func waitGeneration(t *testing.T, base string, gen uint64) {
	t.Helper()
	want := fmt.Sprintf("ok generation %d\n", gen)
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(base + "/healthz")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(b) == want {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not at generation %d after 30 s", base, gen)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestPromotionInFlightE2E, with the real programs: docker-registry as the source, an nginx
// mirror synced with the documented rsync and crawled, an nginx origin on the tree, and two
// `regmirror serve`: one on the full tree, one on a redirector-only host (regmirror/ only).
// A client reads fedora:latest (an index) from both; fedora:latest moves to another image,
// fedora:42 (the old index's own tag) and fedora/toolbox's only tag are deleted (manifest
// DELETE); generate; both redirectors switch; then every child manifest and blob of what the
// client read answers 200 or 307 to a holder, crane pulls the old index by digest through the
// redirector-only host, and no mirror or origin logged a 404.
func TestPromotionInFlightE2E(t *testing.T) {
	needPeers(t)
	refs := demo(t)
	tree := filepath.Join(t.TempDir(), "tree")
	mirrorDir := t.TempDir()
	if err := os.MkdirAll(tree, 0o755); err != nil {
		t.Fatal(err)
	}
	origin := peers.StartNginx(t, tree)
	mirror := peers.StartNginx(t, mirrorDir)
	mirrorsFile := filepath.Join(t.TempDir(), "mirrors.yaml")
	if err := os.WriteFile(mirrorsFile, []byte(fmt.Sprintf("origin: %s\nmirrors:\n  - {name: m1, url: %s, country: DE}\n", origin.URL, mirror.URL)), 0o644); err != nil {
		t.Fatal(err)
	}
	src := peers.StartRegistry(t)
	src.Push(t, refs)
	generate(t, src.URL, tree, "--mirrors", mirrorsFile)
	peers.SyncMirror(t, tree, mirrorDir)
	if r := regmirror(t, nil, "crawl", "--tree", tree); r.err != nil {
		t.Fatalf("%v", r)
	}
	metaDir := t.TempDir()
	syncMeta(t, tree, metaDir)
	full := clientServe(t, tree, nil)
	metaOnly := clientServe(t, metaDir, nil)

	read := map[string][]byte{}
	for _, srv := range []*clientServer{full, metaOnly} {
		for _, ref := range []string{"fedora/manifests/latest", "fedora/toolbox/manifests/42"} {
			code, b := inflightGet(t, http.MethodGet, srv.URL()+"/v2/"+ref)
			if code != http.StatusOK {
				t.Fatalf("GET %s from %s: %d", ref, srv.Host, code)
			}
			read[srv.Host+" "+ref] = b
		}
	}
	if !strings.Contains(string(read[full.Host+" fedora/manifests/latest"]), `"manifests"`) {
		t.Fatalf("fedora:latest is not an index")
	}

	// The promotion.
	var minimal testimages.Ref
	for _, r := range refs {
		if r.Repo == "fedora/minimal" {
			minimal = r
		}
	}
	src.Push(t, []testimages.Ref{{Repo: "fedora", Tags: []string{"latest"}, Image: minimal.Image}})
	src.DeleteTag(t, "fedora", "42")
	src.DeleteTag(t, "fedora/toolbox", "42")
	gen2 := generate(t, src.URL, tree, "--mirrors", mirrorsFile)
	if !strings.Contains(gen2.stderr+gen2.stdout, "retiring ") {
		t.Errorf("the summary does not show the retiring set:\n%s", gen2)
	}
	syncMeta(t, tree, metaDir)
	waitGeneration(t, full.URL(), 2)
	waitGeneration(t, metaOnly.URL(), 2)

	for _, srv := range []*clientServer{full, metaOnly} {
		t.Run(srv.Host, func(t *testing.T) {
			if code, b := inflightGet(t, http.MethodGet, srv.URL()+"/v2/fedora/manifests/latest"); code != 200 || sha256Digest(b) == sha256Digest(read[srv.Host+" fedora/manifests/latest"]) {
				t.Errorf("fedora:latest after the promotion: %d, want the new image", code)
			}
			if code, _ := inflightGet(t, http.MethodGet, srv.URL()+"/v2/fedora/manifests/42"); code != 404 {
				t.Errorf("deleted fedora:42: %d, want 404", code)
			}
			if _, b := inflightGet(t, http.MethodGet, srv.URL()+"/v2/_catalog"); strings.Contains(string(b), "fedora/toolbox") {
				t.Errorf("the catalog still names fedora/toolbox: %s", b)
			}
			idx := read[srv.Host+" fedora/manifests/latest"]
			ms, bs := inflightRest(t, srv.URL(), "fedora", idx, mirror.URL)
			tb := read[srv.Host+" fedora/toolbox/manifests/42"]
			tms, tbs := inflightRest(t, srv.URL(), "fedora/toolbox", []byte(`{"manifests":[{"digest":"`+sha256Digest(tb)+`"}]}`), mirror.URL)
			t.Logf("after the switch: %d manifests and %d blobs of what was read before it, all served", ms+tms, bs+tbs)
		})
	}
	crane := peers.NewCrane(t)
	old := sha256Digest(read[metaOnly.Host+" fedora/manifests/latest"])
	crane.Pull(t, metaOnly.Endpoint, "fedora@"+old, old)

	for name, n := range map[string]*peers.Nginx{"mirror": mirror, "origin": origin} {
		for _, line := range n.AccessLog() {
			if f := strings.Fields(line); len(f) >= 3 && strings.Contains(f[1], "/blobs/") && f[2] == "404" {
				t.Errorf("%s answered 404: %s", name, line)
			}
		}
	}
}
