package redirector_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/regmirror/regmirror/generator"
	"github.com/regmirror/regmirror/internal/crawl"
	"github.com/regmirror/regmirror/internal/testsupport/testimages"
	"github.com/regmirror/regmirror/layout"
	"github.com/regmirror/regmirror/redirector"
)

// promotion is a source registry (go-containerregistry's, in process) with the demo images, a
// tree generated from it, and the tree served over HTTP as the origin.
type promotion struct {
	t       *testing.T
	src     *httptest.Server
	tree    string
	origin  *httptest.Server
	mirror  *httptest.Server // a copy of the tree as it was at syncMirror
	mirrorD string
	mirrors string // the mirrors file
	// gcGrace and now, when set, are generate's Options.GCGrace and Options.Now.
	gcGrace time.Duration
	now     func() time.Time
}

// newPromotion starts the source and writes a mirrors file naming the origin (withOrigin) and
// one mirror (withMirror).
func newPromotion(t *testing.T, withOrigin, withMirror bool) *promotion {
	t.Helper()
	p := &promotion{t: t, tree: t.TempDir(), mirrorD: t.TempDir()}
	p.src = httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(p.src.Close)
	p.origin = httptest.NewServer(http.FileServer(http.Dir(p.tree)))
	t.Cleanup(p.origin.Close)
	p.mirror = httptest.NewServer(http.FileServer(http.Dir(p.mirrorD)))
	t.Cleanup(p.mirror.Close)
	var file string
	if withOrigin {
		file += "origin: " + p.origin.URL + "/\n"
	}
	file += "mirrors: []\n"
	if withMirror {
		file = strings.Replace(file, "mirrors: []\n", "mirrors:\n  - {name: m1, url: "+p.mirror.URL+"/, country: DE}\n", 1)
	}
	if withOrigin || withMirror {
		p.mirrors = filepath.Join(t.TempDir(), "mirrors.yaml")
		if err := os.WriteFile(p.mirrors, []byte(file), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	refs, err := testimages.Demo()
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range refs {
		for _, tag := range r.Tags {
			ref, err := name.NewTag(strings.TrimPrefix(p.src.URL, "http://")+"/"+r.Repo+":"+tag, name.Insecure)
			if err != nil {
				t.Fatal(err)
			}
			if r.Index != nil {
				err = remote.WriteIndex(ref, r.Index)
			} else {
				err = remote.Write(ref, r.Image)
			}
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	return p
}

// generate publishes a generation of the tree.
func (p *promotion) generate() *generator.Summary {
	p.t.Helper()
	o := generator.Options{Source: p.src.URL, Out: p.tree, Keychain: authn.NewMultiKeychain(), MirrorsFile: p.mirrors,
		RetryBackoff: time.Millisecond, GCGrace: p.gcGrace, Now: p.now}
	sum, err := generator.Run(context.Background(), o)
	if err != nil {
		p.t.Fatalf("generate: %v", err)
	}
	return sum
}

// promote moves fedora:latest to fedora/minimal's image and deletes the old index's own tag
// fedora:42 (a manifest DELETE), and deletes fedora/toolbox's only tag (the repository goes).
func (p *promotion) promote() {
	p.t.Helper()
	srcHost := strings.TrimPrefix(p.src.URL, "http://")
	img, err := remote.Image(mustRef(p.t, srcHost+"/fedora/minimal:42"))
	if err != nil {
		p.t.Fatal(err)
	}
	if err := remote.Write(mustRef(p.t, srcHost+"/fedora:latest"), img); err != nil {
		p.t.Fatal(err)
	}
	for _, ref := range []string{"/v2/fedora/manifests/42", "/v2/fedora/toolbox/manifests/42"} {
		req, _ := http.NewRequest(http.MethodDelete, p.src.URL+ref, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			p.t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			p.t.Fatalf("DELETE %s: %s", ref, resp.Status)
		}
	}
}

func mustRef(t *testing.T, s string) name.Reference {
	t.Helper()
	r, err := name.ParseReference(s, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// metaOnly copies the tree's regmirror/ (what a redirector-only host syncs) into a new directory.
func (p *promotion) metaOnly() string {
	p.t.Helper()
	dst := p.t.TempDir()
	p.copyTree(dst, layout.MetaDir)
	return dst
}

// syncMirror copies the whole tree to the mirror, then crawls: the mirror holds the current
// generation.
func (p *promotion) syncMirror() {
	p.t.Helper()
	p.copyTree(p.mirrorD, ".")
	if _, err := crawl.Run(context.Background(), crawl.Options{Tree: p.tree}); err != nil {
		p.t.Fatalf("crawl: %v", err)
	}
}

// copyTree copies the tree's directory sub into dst, links as links (a plain copy: the
// publication switch is mirror-sync's business, tested in deploy and e2e).
func (p *promotion) copyTree(dst, sub string) {
	p.t.Helper()
	err := filepath.WalkDir(filepath.Join(p.tree, sub), func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(p.tree, path)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		if d.Type()&os.ModeSymlink != 0 { // the publication links (layout)
			target, err := os.Readlink(path)
			if err != nil {
				return err
			}
			os.Remove(filepath.Join(dst, rel))
			return os.Symlink(target, filepath.Join(dst, rel))
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o644)
	})
	if err != nil {
		p.t.Fatal(err)
	}
}

// replica is a redirector on a tree directory.
type replica struct {
	srv *redirector.Server
	url string
}

func startReplica(t *testing.T, dir string) *replica {
	t.Helper()
	return startReplicaWith(t, redirector.Options{Tree: dir})
}

func startReplicaWith(t *testing.T, opts redirector.Options) *replica {
	t.Helper()
	dir := opts.Tree
	s, err := redirector.New(opts)
	if err != nil {
		t.Fatalf("redirector on %s: %v", dir, err)
	}
	t.Cleanup(func() { s.Close() })
	hs := httptest.NewServer(s)
	t.Cleanup(hs.Close)
	return &replica{srv: s, url: hs.URL}
}

// noRedirect is a client that reports 307s instead of following them.
var noRedirect = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// get fetches url and returns the status, body and headers (of the first answer); a 307 is
// followed once, by hand, and the target must answer 200 with bytes of the digest the request
// named.
func get(t *testing.T, method, url string, accept ...string) (int, []byte, http.Header) {
	t.Helper()
	req, _ := http.NewRequest(method, url, nil)
	for _, a := range accept {
		req.Header.Add("Accept", a)
	}
	resp, err := noRedirect.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == http.StatusTemporaryRedirect {
		loc := resp.Header.Get("Location")
		code, b, _ := get(t, method, loc)
		if code != http.StatusOK {
			t.Errorf("%s %s: 307 to %s, which answers %d: not a holder", method, url, loc, code)
		}
		if method == http.MethodGet {
			if want := url[strings.LastIndex(url, "/")+1:]; digestOf(b) != want {
				t.Errorf("%s %s: 307 to %s, which sends bytes of %s", method, url, loc, digestOf(b))
			}
		}
		return code, b, resp.Header
	}
	return resp.StatusCode, body, resp.Header
}

func digestOf(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

// closure lists the children and blobs (configs, layers) of a manifest, recursively, as the
// redirector serves them.
func closure(t *testing.T, base, repo string, data []byte) (manifests, blobs []string) {
	t.Helper()
	var doc struct {
		Manifests []struct{ Digest string } `json:"manifests"`
		Config    *struct{ Digest string }  `json:"config"`
		Layers    []struct{ Digest string } `json:"layers"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	for _, c := range doc.Manifests {
		manifests = append(manifests, c.Digest)
		code, b, _ := get(t, http.MethodGet, base+"/v2/"+repo+"/manifests/"+c.Digest)
		if code != http.StatusOK {
			t.Errorf("GET child manifest %s of %s: %d", c.Digest, repo, code)
			continue
		}
		ms, bs := closure(t, base, repo, b)
		manifests, blobs = append(manifests, ms...), append(blobs, bs...)
	}
	if doc.Config != nil {
		blobs = append(blobs, doc.Config.Digest)
	}
	for _, l := range doc.Layers {
		blobs = append(blobs, l.Digest)
	}
	return manifests, blobs
}

// pullRest fetches, by digest from base, everything an index read earlier references: every
// child manifest and every blob, GET and HEAD. All must answer 200, or 307 to a holder; with
// mirror set, every blob GET a 307 to it.
func pullRest(t *testing.T, base, repo string, index []byte, mirror ...string) {
	t.Helper()
	manifests, blobs := closure(t, base, repo, index)
	if len(manifests) == 0 || len(blobs) == 0 {
		t.Fatalf("the index names %d manifests and %d blobs, want some", len(manifests), len(blobs))
	}
	for _, d := range blobs {
		for _, method := range []string{http.MethodHead, http.MethodGet} {
			code, b, h := get(t, method, base+"/v2/"+repo+"/blobs/"+d)
			if code != http.StatusOK {
				t.Errorf("%s blob %s in %s: %d, want 200 or a 307 to a holder", method, d, repo, code)
				continue
			}
			if method == http.MethodGet && digestOf(b) != d {
				t.Errorf("GET blob %s: got bytes of %s", d, digestOf(b))
			}
			if loc := h.Get("Location"); method == http.MethodGet && len(mirror) > 0 && !strings.HasPrefix(loc, mirror[0]) {
				t.Errorf("GET blob %s in %s: sent to %q, want the mirror holding it, %s", d, repo, loc, mirror[0])
			}
			if method == http.MethodHead && h.Get("Docker-Content-Digest") != d && h.Get("Location") == "" {
				t.Errorf("HEAD blob %s: Docker-Content-Digest %q", d, h.Get("Docker-Content-Digest"))
			}
		}
	}
}

const acceptAll = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json"

// TestPromotionInFlight: a client reads fedora:latest (an index), the tag moves to another
// image, the old index's own tag and another repository are deleted at the source, a new
// generation is published and the redirector switches; then every child and blob of the index
// the client read is still served by digest (200, or 307 to a holder: the mirror, which still
// holds generation 1), from a redirector on the full tree and from one on a host with
// regmirror/ only and an origin.
func TestPromotionInFlight(t *testing.T) {
	for _, c := range []struct {
		name     string
		metaOnly bool
	}{
		{"full tree", false},
		{"regmirror/ only, origin", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := newPromotion(t, c.metaOnly, true)
			p.generate()
			p.syncMirror() // the mirror holds generation 1 and lags behind from here on
			dir := p.tree
			if c.metaOnly {
				dir = p.metaOnly()
			}
			r := startReplica(t, dir)
			code, index, h := get(t, http.MethodGet, r.url+"/v2/fedora/manifests/latest", acceptAll)
			if code != http.StatusOK || !strings.Contains(h.Get("Content-Type"), "index") {
				t.Fatalf("GET fedora:latest: %d %s, want an index", code, h.Get("Content-Type"))
			}
			_, toolbox, _ := get(t, http.MethodGet, r.url+"/v2/fedora/toolbox/manifests/42", acceptAll)

			p.promote()
			sum := p.generate()
			if sum.RetiringManifests == 0 || sum.RetiringBlobs == 0 {
				t.Errorf("summary: %s; want a retiring set", sum)
			}
			t.Logf("generation 2: %s; the retiring set costs %d bytes of compressed metadata", sum, retiringMetaBytes(t, p.tree))
			if c.metaOnly {
				p.metaOnlyInto(dir)
			}
			if err := r.srv.Check(); err != nil || r.srv.Generation() != 2 {
				t.Fatalf("switch: generation %d, %v; want 2", r.srv.Generation(), err)
			}

			// Tags, tag lists and the catalog answer the new generation only.
			if code, b, _ := get(t, http.MethodGet, r.url+"/v2/fedora/manifests/latest", acceptAll); code != 200 || digestOf(b) == digestOf(index) {
				t.Errorf("fedora:latest after the promotion: %d, %s; want the new image", code, digestOf(b))
			}
			if code, _, _ := get(t, http.MethodGet, r.url+"/v2/fedora/manifests/42"); code != 404 {
				t.Errorf("deleted tag fedora:42: %d, want 404", code)
			}
			if _, b, _ := get(t, http.MethodGet, r.url+"/v2/fedora/tags/list"); strings.Contains(string(b), `"42"`) {
				t.Errorf("tags/list still names the deleted tag: %s", b)
			}
			if _, b, _ := get(t, http.MethodGet, r.url+"/v2/_catalog"); strings.Contains(string(b), "fedora/toolbox") {
				t.Errorf("catalog still names the deleted repository: %s", b)
			}
			if code, _, _ := get(t, http.MethodGet, r.url+"/v2/fedora/toolbox/tags/list"); code != 404 {
				t.Errorf("tags/list of the deleted repository: %d, want 404", code)
			}

			// The pull in flight completes.
			if code, b, _ := get(t, http.MethodGet, r.url+"/v2/fedora/manifests/"+digestOf(index)); code != 200 || digestOf(b) != digestOf(index) {
				t.Errorf("the old index by digest: %d", code)
			}
			pullRest(t, r.url, "fedora", index, p.mirror.URL+"/")
			pullRest(t, r.url, "fedora/toolbox", []byte(`{"manifests":[{"digest":"`+digestOf(toolbox)+`"}]}`), p.mirror.URL+"/")
		})
	}
}

// retiringMetaBytes is what the retiring set adds to the tree's current metadata file
// (layout.RetiringMetaBytes).
func retiringMetaBytes(t *testing.T, tree string) int {
	t.Helper()
	m, _, err := layout.NewTree(tree).Load()
	if err != nil {
		t.Fatal(err)
	}
	n, err := layout.RetiringMetaBytes(m)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// metaOnlyInto brings dir's regmirror/ up to the tree's (the redirector host's sync).
func (p *promotion) metaOnlyInto(dir string) {
	p.t.Helper()
	fresh := p.metaOnly()
	if err := os.RemoveAll(filepath.Join(dir, layout.MetaDir)); err != nil {
		p.t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(fresh, layout.MetaDir), filepath.Join(dir, layout.MetaDir)); err != nil {
		p.t.Fatal(err)
	}
}

// TestReplicasAGenerationApart: a client reads an index from a replica at generation 2 and
// asks a replica still at generation 1 for its children and blobs, including a repository the
// older generation does not have. The older replica answers from its tree's blobs/ or the
// origin.
func TestReplicasAGenerationApart(t *testing.T) {
	for _, c := range []struct {
		name     string
		metaOnly bool
	}{
		{"old replica on the full tree", false},
		{"old replica with regmirror/ only, origin", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := newPromotion(t, true, false)
			p.generate()
			oldDir := p.tree
			if c.metaOnly {
				oldDir = p.metaOnly()
			}
			old := startReplica(t, oldDir) // never checks again: stays at generation 1

			// Generation 2: fedora:latest moves to a new index, and a new repository appears.
			srcHost := strings.TrimPrefix(p.src.URL, "http://")
			idx, err := remote.Index(mustRef(t, srcHost+"/fedora:42"))
			if err != nil {
				t.Fatal(err)
			}
			img, err := remote.Image(mustRef(t, srcHost+"/fedora/httpd:2.4"))
			if err != nil {
				t.Fatal(err)
			}
			newIdx, ok := mutate.Annotations(idx, map[string]string{"generation": "2"}).(v1.ImageIndex)
			if !ok {
				t.Fatal("annotated index is not an index")
			}
			if err := remote.WriteIndex(mustRef(t, srcHost+"/fedora:latest"), newIdx); err != nil {
				t.Fatal(err)
			}
			if err := remote.Write(mustRef(t, srcHost+"/fresh/app:1"), img); err != nil {
				t.Fatal(err)
			}
			p.generate()
			cur := startReplica(t, p.tree)
			if old.srv.Generation() != 1 || cur.srv.Generation() != 2 {
				t.Fatalf("replicas at %d and %d, want 1 and 2", old.srv.Generation(), cur.srv.Generation())
			}
			for _, ref := range []string{"fedora/manifests/latest", "fresh/app/manifests/1"} {
				code, top, _ := get(t, http.MethodGet, cur.url+"/v2/"+ref, acceptAll)
				if code != 200 {
					t.Fatalf("GET %s from the new replica: %d", ref, code)
				}
				repo := ref[:strings.Index(ref, "/manifests/")]
				if code, b, h := get(t, http.MethodGet, old.url+"/v2/"+repo+"/manifests/"+digestOf(top)); code != 200 || digestOf(b) != digestOf(top) || h.Get("Content-Type") == "" {
					t.Errorf("GET %s@%s from the old replica: %d", repo, digestOf(top), code)
				}
				doc := top
				if !strings.Contains(string(top), `"manifests"`) {
					doc = []byte(`{"manifests":[{"digest":"` + digestOf(top) + `"}]}`)
				}
				pullRest(t, old.url, repo, doc)
			}
			// A digest nobody has: 404, never a 500.
			if code, _, _ := get(t, http.MethodGet, old.url+"/v2/fedora/manifests/sha256:"+strings.Repeat("0", 64)); code != 404 {
				t.Errorf("unknown manifest on the old replica: %d, want 404", code)
			}
		})
	}
}

// TestReplicaTwoGenerationsBehind: what failed a soak in CI (stop 29). A layer leaves the
// source (generation 2 retires it), outlives its grace (generation 3 deletes it, and the mirror
// syncs that generation) and comes back (generation 4 fetches it again). A client reads the
// image from a replica at generation 4 and asks one still at generation 2, whose last crawl
// found the mirror holding the layer, for it. The mirror no longer has it: the old replica must
// not send the client there, but to the origin, which holds generation 4.
func TestReplicaTwoGenerationsBehind(t *testing.T) {
	for _, c := range []struct {
		name     string
		metaOnly bool
	}{
		{"old replica on a copy of the full tree", false},
		{"old replica with regmirror/ only, origin", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := newPromotion(t, true, true)
			// One clock for the generator and the replicas: an hour between generations, a
			// grace of half of one.
			var mu sync.Mutex
			clock := time.Now()
			now := func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
			tick := func() { mu.Lock(); defer mu.Unlock(); clock = clock.Add(time.Hour) }
			p.gcGrace, p.now = 30*time.Minute, now
			srcHost := strings.TrimPrefix(p.src.URL, "http://")
			img, err := random.Image(4096, 2)
			if err != nil {
				t.Fatal(err)
			}
			ref := mustRef(t, srcHost+"/soak/app:1")
			if err := remote.Write(ref, img); err != nil {
				t.Fatal(err)
			}
			layers, err := img.Layers()
			if err != nil {
				t.Fatal(err)
			}
			ld, err := layers[0].Digest()
			if err != nil {
				t.Fatal(err)
			}
			layer := ld.String()
			lpath, err := layout.ParseDigest(layer)
			if err != nil {
				t.Fatal(err)
			}
			// sync copies the tree whole to the mirror, without what the tree no longer has,
			// and crawls.
			syncMirror := func() {
				t.Helper()
				if err := os.RemoveAll(p.mirrorD); err != nil {
					t.Fatal(err)
				}
				p.syncMirror()
			}

			p.generate() // 1: soak/app:1
			syncMirror()
			tick()
			req, _ := http.NewRequest(http.MethodDelete, p.src.URL+"/v2/soak/app/manifests/1", nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			p.generate() // 2: the image retires
			syncMirror() // the mirror holds generation 2, the crawl says so
			oldDir := t.TempDir()
			if c.metaOnly {
				oldDir = p.metaOnly()
			} else {
				p.copyTree(oldDir, ".")
			}
			old := startReplicaWith(t, redirector.Options{Tree: oldDir, Now: now}) // never checks again: stays at generation 2
			if code, _, h := get(t, http.MethodGet, old.url+"/v2/soak/app/blobs/"+layer); code != 200 || !strings.HasPrefix(h.Get("Location"), p.mirror.URL) {
				t.Fatalf("GET the retiring layer from the replica at generation 2, within the grace: %d, Location %q; want 200 from the mirror %s", code, h.Get("Location"), p.mirror.URL)
			}

			tick()
			if sum := p.generate(); sum.Generation != 3 { // 3: the grace is over: the layer's file goes
				t.Fatalf("generation %d, want 3", sum.Generation)
			}
			if _, err := os.Stat(filepath.Join(p.tree, layout.BlobPath(lpath))); !os.IsNotExist(err) {
				t.Fatalf("generation 3 kept the layer whose grace is over: %v", err)
			}
			syncMirror() // the mirror deletes it
			tick()
			if err := remote.Write(ref, img); err != nil {
				t.Fatal(err)
			}
			p.generate() // 4: back, as new content the mirror (at 3) lacks
			cur := startReplica(t, p.tree)
			if old.srv.Generation() != 2 || cur.srv.Generation() != 4 {
				t.Fatalf("replicas at %d and %d, want 2 and 4", old.srv.Generation(), cur.srv.Generation())
			}
			code, top, _ := get(t, http.MethodGet, cur.url+"/v2/soak/app/manifests/1", acceptAll)
			if code != 200 {
				t.Fatalf("GET soak/app:1 from the replica at generation 4: %d", code)
			}
			doc := []byte(`{"manifests":[{"digest":"` + digestOf(top) + `"}]}`)
			pullRest(t, old.url, "soak/app", doc) // every 307 is checked: its target answers the bytes
			if code, _, h := get(t, http.MethodGet, old.url+"/v2/soak/app/blobs/"+layer); code != 200 || strings.HasPrefix(h.Get("Location"), p.mirror.URL) {
				t.Errorf("GET the layer from the replica at generation 2: %d, Location %q; want 200, not from the mirror, which synced generation 3", code, h.Get("Location"))
			}
			// /route says why.
			code, body, _ := get(t, http.MethodGet, old.url+"/route?repo=soak/app&digest="+layer+"&country=DE", "application/json")
			if code != 200 || !strings.Contains(string(body), "grace is over") {
				t.Errorf("GET /route for the layer from the replica at generation 2: %d %s; want a decision naming the grace", code, body)
			}
		})
	}
}

// TestRedirectorOnlyHost: a host with regmirror/ only starts when the metadata names an
// origin (and sends blobs there), and is refused with one line otherwise.
func TestRedirectorOnlyHost(t *testing.T) {
	t.Run("no origin", func(t *testing.T) {
		p := newPromotion(t, false, false)
		p.generate()
		_, err := redirector.New(redirector.Options{Tree: p.metaOnly()})
		if err == nil || !strings.Contains(err.Error(), "origin:") || strings.Contains(err.Error(), "\n") {
			t.Fatalf("got %v, want one line saying to set origin:", err)
		}
	})
	t.Run("origin", func(t *testing.T) {
		p := newPromotion(t, true, false)
		p.generate()
		r := startReplica(t, p.metaOnly())
		_, index, _ := get(t, http.MethodGet, r.url+"/v2/fedora/manifests/latest", acceptAll)
		pullRest(t, r.url, "fedora", index)
	})
	t.Run("new generation without origin refused", func(t *testing.T) {
		p := newPromotion(t, true, false)
		p.generate()
		dir := p.metaOnly()
		r := startReplica(t, dir)
		p.mirrors = "" // the next generation has no mirrors file, hence no origin
		p.generate()
		p.metaOnlyInto(dir)
		if err := r.srv.Check(); err == nil || !strings.Contains(err.Error(), "origin:") {
			t.Errorf("Check: got %v, want the generation without origin refused", err)
		}
		if r.srv.Generation() != 1 {
			t.Errorf("serving generation %d, want 1 kept", r.srv.Generation())
		}
	})
}
