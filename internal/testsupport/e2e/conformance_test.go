package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/regmirror/regmirror/internal/testsupport/peers"
	"github.com/regmirror/regmirror/internal/testsupport/testimages"
)

// The OCI distribution-spec conformance suite, pinned (design.md, "Testing against real
// peers"). At this version it is a main package: "go install …@version" builds it.
const (
	conformanceModule  = "github.com/opencontainers/distribution-spec/conformance"
	conformanceVersion = "v0.0.0-20260831232431-97274622c111"
)

var (
	conformanceOnce sync.Once
	conformancePath string
	conformanceErr  error
)

// conformanceBinary returns the suite's binary: bin/tools/conformance when it is this
// version (as "GOBIN=$PWD/bin/tools go install …@version" leaves it), else a copy built once
// into a cache directory under os.TempDir() keyed by the version.
func conformanceBinary(t testing.TB) string {
	t.Helper()
	conformanceOnce.Do(func() {
		want := conformanceModule + "\t" + conformanceVersion
		if root, err := peers.ModuleRoot(); err == nil {
			p := filepath.Join(root, "bin", "tools", "conformance")
			if out, err := exec.Command("go", "version", "-m", p).Output(); err == nil && strings.Contains(string(out), want) {
				conformancePath = p
				return
			}
		}
		cache := filepath.Join(os.TempDir(), "regmirror-conformance-"+conformanceVersion)
		p := filepath.Join(cache, "conformance")
		if out, err := exec.Command("go", "version", "-m", p).Output(); err == nil && strings.Contains(string(out), want) {
			conformancePath = p
			return
		}
		if err := os.MkdirAll(cache, 0o755); err != nil {
			conformanceErr = err
			return
		}
		// Build into a fresh directory and rename: concurrent test binaries never see half a file.
		gobin, err := os.MkdirTemp(cache, "build-")
		if err != nil {
			conformanceErr = err
			return
		}
		defer os.RemoveAll(gobin)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "go", "install", conformanceModule+"@"+conformanceVersion)
		cmd.Dir = gobin // outside this module: "go install pkg@version" ignores go.mod anyway
		cmd.Env = append(os.Environ(), "GOBIN="+gobin, "GOFLAGS=", "GOWORK=off")
		if out, err := cmd.CombinedOutput(); err != nil {
			conformanceErr = fmt.Errorf("building the OCI conformance suite (needs the Go module proxy or a filled module cache): go install %s@%s: %v\n%s",
				conformanceModule, conformanceVersion, err, out)
			return
		}
		if err := os.Rename(filepath.Join(gobin, "conformance"), p); err != nil {
			conformanceErr = err
			return
		}
		conformancePath = p
	})
	if conformanceErr != nil {
		t.Fatal(conformanceErr)
	}
	return conformancePath
}

// conformanceData is the read-only data of one repository: what the suite is told exists.
type conformanceData struct {
	repo                              string
	tags, manifests, blobs, referrers []string
	manifestsSeen, blobsSeen          map[string]bool
}

func (c *conformanceData) addManifest(d string) {
	if !c.manifestsSeen[d] {
		c.manifestsSeen[d] = true
		c.manifests = append(c.manifests, d)
		c.referrers = append(c.referrers, d) // an empty referrers list must come back as an index
	}
}

func (c *conformanceData) addBlob(d string) {
	if !c.blobsSeen[d] {
		c.blobsSeen[d] = true
		c.blobs = append(c.blobs, d)
	}
}

func (c *conformanceData) addImage(t testing.TB, img v1.Image) {
	t.Helper()
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	c.addManifest(d.String())
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	c.addBlob(m.Config.Digest.String())
	for _, l := range m.Layers {
		c.addBlob(l.Digest.String())
	}
}

// conformanceDataOf collects every repository's tags, manifests and blobs from refs.
func conformanceDataOf(t testing.TB, refs []testimages.Ref) map[string]*conformanceData {
	t.Helper()
	out := map[string]*conformanceData{}
	for _, r := range refs {
		c := out[r.Repo]
		if c == nil {
			c = &conformanceData{repo: r.Repo, manifestsSeen: map[string]bool{}, blobsSeen: map[string]bool{}}
			out[r.Repo] = c
		}
		c.tags = append(c.tags, r.Tags...)
		if r.Image != nil {
			c.addImage(t, r.Image)
			continue
		}
		d, err := r.Index.Digest()
		if err != nil {
			t.Fatal(err)
		}
		c.addManifest(d.String())
		idx, err := r.Index.IndexManifest()
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range idx.Manifests {
			img, err := r.Index.Image(m.Digest)
			if err != nil {
				t.Fatal(err)
			}
			c.addImage(t, img)
		}
	}
	return out
}

// conformanceResult is the suite's printed summary.
type conformanceResult struct {
	overall string            // "OCI Conformance Result: …"
	apis    map[string]string // "API conformance:" section: API → status
	data    map[string]string // "Data conformance:" section
	failed  []string          // test tree lines with FAIL or Error, with their messages
	summary string            // the API and data sections as printed
}

// parseConformance reads the summary the suite prints on stdout. At this version it then
// panics while writing results.yaml in read-only mode, so its exit status says nothing.
func parseConformance(out string) conformanceResult {
	r := conformanceResult{apis: map[string]string{}, data: map[string]string{}}
	section := ""
	var summary strings.Builder
	inTree, collecting := false, false
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		switch {
		case line == "Test results":
			inTree = true
			continue
		case line == "Configuration:":
			inTree = false
		case strings.HasPrefix(line, "OCI Conformance Result:"):
			r.overall = strings.TrimSpace(strings.TrimPrefix(line, "OCI Conformance Result:"))
			summary.WriteString(line + "\n")
		case line == "API conformance:" || line == "Data conformance:":
			section = line
			summary.WriteString(line + "\n")
			continue
		case trimmed == "":
			section = ""
		}
		if inTree && trimmed != "" {
			// A failed test's line and the error lines after it, up to the next test.
			if strings.HasPrefix(trimmed, "OCI Conformance Test") {
				collecting = strings.HasSuffix(trimmed, ": FAIL") || strings.HasSuffix(trimmed, ": Error")
			}
			if collecting {
				r.failed = append(r.failed, line)
			}
		}
		if section != "" {
			name, status, ok := strings.Cut(trimmed, ":")
			if !ok {
				continue
			}
			name = strings.TrimRight(name, ".")
			status = strings.TrimSpace(status)
			if section == "API conformance:" {
				r.apis[name] = status
			} else {
				r.data[name] = status
			}
			summary.WriteString(line + "\n")
		}
	}
	r.summary = summary.String()
	return r
}

// runConformance runs the suite in read-only mode against ep for one repository's data.
func runConformance(t *testing.T, ep peers.Endpoint, c *conformanceData) conformanceResult {
	t.Helper()
	bin := conformanceBinary(t)
	dir := t.TempDir()
	tlsMode := "disabled"
	env := []string{}
	if ep.TLS != nil {
		tlsMode = "enabled"
		env = append(env, "SSL_CERT_FILE="+ep.TLS.CACert)
	}
	env = append(env,
		"OCI_REGISTRY="+ep.Host,
		"OCI_TLS="+tlsMode,
		"OCI_REPO1="+c.repo,
		"OCI_REPO2="+c.repo,
		"OCI_RESULTS_DIR="+filepath.Join(dir, "results"),
		"OCI_LOG=warn",
		"OCI_API_PULL=true",
		"OCI_API_PUSH=false",
		"OCI_API_BLOBS_DELETE=false",
		"OCI_API_MANIFESTS_DELETE=false",
		"OCI_API_TAGS_DELETE=false",
		"OCI_API_TAGS_LIST=true",
		"OCI_API_REFERRER=true",
		// Not OCI_API_*_DIGEST_HEADER=true: in read-only mode this version checks the header on
		// a response it never captured, and fails every registry. conformancePullChecks does.
		"OCI_RO_DATA_TAGS="+strings.Join(c.tags, " "),
		"OCI_RO_DATA_MANIFESTS="+strings.Join(c.manifests, " "),
		"OCI_RO_DATA_BLOBS="+strings.Join(c.blobs, " "),
		"OCI_RO_DATA_REFERRERS="+strings.Join(c.referrers, " "),
	)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin)
	cmd.Dir = dir // it would read ./oci-conformance.yaml
	cmd.Env = append(conformanceEnviron(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	runErr := cmd.Run()
	r := parseConformance(stdout.String())
	if r.overall == "" || len(r.apis) == 0 {
		t.Fatalf("the conformance suite printed no summary (%v)\nstdout:\n%s\nstderr:\n%s", runErr, lastLines(stdout.String(), 60), lastLines(stderr.String(), 40))
	}
	return r
}

// conformanceEnviron is the environment without any OCI_ variable of the caller's.
func conformanceEnviron() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "OCI_") {
			env = append(env, kv)
		}
	}
	return env
}

// TestConformance runs the OCI distribution-spec conformance suite, read-only (push and
// delete disabled, the published content given as OCI_RO_DATA_*), against "regmirror serve"
// for every repository of the demo set plus one with many tags, over plain HTTP, and once
// over TLS. Every API it tests must pass: ping, manifests and blobs by tag and digest (GET
// and HEAD, Docker-Content-Digest required), tag listing with "last", referrers (an empty
// list is an index), missing manifests, invalid digests.
func TestConformance(t *testing.T) {
	needPeers(t)
	refs := demo(t)
	// A repository with more tags than the demo's, so the tag listing's "last" cuts a longer list.
	for _, r := range refs {
		if r.Repo == "fedora/toolbox" {
			refs = append(refs, testimages.Ref{Repo: "conformance/tags", Tags: []string{"1", "1.0", "2", "2.0", "a", "b", "latest", "z"}, Image: r.Image})
		}
	}
	data := conformanceDataOf(t, refs)
	src := peers.StartRegistry(t)
	src.Push(t, refs)
	tree := filepath.Join(t.TempDir(), "tree")
	generate(t, src.URL, tree)
	src.Proc.Stop()
	plain := clientServe(t, tree, nil)
	secure := clientServe(t, tree, peers.NewTLS(t))

	var repos []string
	for repo := range data {
		repos = append(repos, repo)
	}
	sort.Strings(repos)
	check := func(t *testing.T, srv *clientServer, c *conformanceData) {
		r := runConformance(t, srv.Endpoint, c)
		t.Logf("OCI conformance (%s, repository %s):\n%s", srv.Endpoint, c.repo, r.summary)
		var bad []string
		for name, status := range r.apis {
			switch status {
			case "Pass", "Disabled", "Unknown": // Unknown: not exercised in read-only mode
			default:
				bad = append(bad, name+": "+status)
			}
		}
		for name, status := range r.data {
			if status != "Pass" && status != "Disabled" {
				bad = append(bad, "data "+name+": "+status)
			}
		}
		sort.Strings(bad)
		for _, api := range []string{"Ping", "Tag listing", "Blob get", "Blob head", "Manifest get by digest", "Manifest get by tag",
			"Manifest head by digest", "Manifest head by tag", "Referrers"} {
			if r.apis[api] != "Pass" {
				bad = append(bad, fmt.Sprintf("%s: %q, want Pass", api, r.apis[api]))
			}
		}
		if r.overall != "Pass" || len(bad) > 0 {
			t.Errorf("OCI conformance against regmirror serve (repository %s): result %s; %s\nfailed tests:\n%s\nredirector log:\n%s",
				c.repo, r.overall, strings.Join(bad, "; "), strings.Join(r.failed, "\n"), peers.Tail(srv.proc.Log, 20))
		}
	}
	for _, repo := range repos {
		t.Run("http/"+repo, func(t *testing.T) { check(t, plain, data[repo]) })
	}
	t.Run("tls/fedora", func(t *testing.T) { check(t, secure, data["fedora"]) })
	t.Run("pull-checks", func(t *testing.T) { conformancePullChecks(t, plain, refs) })

	// The same with a mirror: blob GETs are 307s to nginx, which the suite follows.
	t.Run("mirror", func(t *testing.T) {
		mirrored := filepath.Join(t.TempDir(), "tree")
		peers.SyncMirror(t, tree, mirrored) // a copy: the crawl writes a generation into it
		nginx := clientAddMirror(t, mirrored)
		srv := clientServe(t, mirrored, nil)
		for _, repo := range []string{"fedora", "fedora/httpd"} {
			t.Run(repo, func(t *testing.T) { check(t, srv, data[repo]) })
		}
		t.Run("pull-checks", func(t *testing.T) { conformancePullChecks(t, srv, refs) })
		if n := len(nginx.AccessLog()); n == 0 {
			t.Errorf("the mirror served nothing: the blob GETs were not redirected to it")
		}
	})
}

// conformancePullChecks checks what the suite leaves out in read-only mode (it knows no
// expected bytes there): every manifest, by tag and by digest, GET and HEAD, comes back with
// exactly the published bytes (GET), Content-Type its media type, Content-Length its size and
// Docker-Content-Digest its digest; every blob GET returns bytes of the blob's digest.
func conformancePullChecks(t *testing.T, srv *clientServer, refs []testimages.Ref) {
	client := clientHTTP(srv.Endpoint, true)
	accept := strings.Join([]string{
		"application/vnd.oci.image.index.v1+json", "application/vnd.oci.image.manifest.v1+json",
		"application/vnd.docker.distribution.manifest.list.v2+json", "application/vnd.docker.distribution.manifest.v2+json",
	}, ", ")
	type manifest struct {
		repo, ref, mediaType string
		raw                  []byte
		digest               string
	}
	var manifests []manifest
	blobs := map[string]string{} // digest → repo
	addImage := func(repo string, img v1.Image, refs ...string) {
		raw, err := img.RawManifest()
		if err != nil {
			t.Fatal(err)
		}
		mt, err := img.MediaType()
		if err != nil {
			t.Fatal(err)
		}
		d, _ := img.Digest()
		for _, ref := range append(refs, d.String()) {
			manifests = append(manifests, manifest{repo, ref, string(mt), raw, d.String()})
		}
		m, _ := img.Manifest()
		blobs[m.Config.Digest.String()] = repo
		for _, l := range m.Layers {
			blobs[l.Digest.String()] = repo
		}
	}
	for _, r := range refs {
		if r.Image != nil {
			addImage(r.Repo, r.Image, r.Tags...)
			continue
		}
		raw, err := r.Index.RawManifest()
		if err != nil {
			t.Fatal(err)
		}
		mt, _ := r.Index.MediaType()
		d, _ := r.Index.Digest()
		for _, ref := range append(append([]string{}, r.Tags...), d.String()) {
			manifests = append(manifests, manifest{r.Repo, ref, string(mt), raw, d.String()})
		}
		idx, _ := r.Index.IndexManifest()
		for _, m := range idx.Manifests {
			img, err := r.Index.Image(m.Digest)
			if err != nil {
				t.Fatal(err)
			}
			addImage(r.Repo, img)
		}
	}
	for _, m := range manifests {
		for _, method := range []string{http.MethodGet, http.MethodHead} {
			req, err := http.NewRequest(method, srv.URL()+"/v2/"+m.repo+"/manifests/"+m.ref, nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Accept", accept)
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			what := method + " " + m.repo + "/manifests/" + m.ref
			switch {
			case resp.StatusCode != http.StatusOK:
				t.Errorf("%s: %s", what, resp.Status)
			case resp.Header.Get("Docker-Content-Digest") != m.digest:
				t.Errorf("%s: Docker-Content-Digest %q, want %s", what, resp.Header.Get("Docker-Content-Digest"), m.digest)
			case resp.Header.Get("Content-Type") != m.mediaType:
				t.Errorf("%s: Content-Type %q, want %s", what, resp.Header.Get("Content-Type"), m.mediaType)
			case resp.Header.Get("Content-Length") != strconv.Itoa(len(m.raw)):
				t.Errorf("%s: Content-Length %q, want %d", what, resp.Header.Get("Content-Length"), len(m.raw))
			case method == http.MethodGet && !bytes.Equal(body, m.raw):
				t.Errorf("%s: the body is not the published manifest (%d bytes, digest %s)", what, len(body), sha256Hex(body))
			case method == http.MethodHead && len(body) != 0:
				t.Errorf("%s: a body of %d bytes", what, len(body))
			}
		}
	}
	for d, repo := range blobs {
		resp, err := client.Get(srv.URL() + "/v2/" + repo + "/blobs/" + d)
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusOK || "sha256:"+sha256Hex(body) != d {
			t.Errorf("GET %s/blobs/%s: %s, body digest sha256:%s", repo, d, resp.Status, sha256Hex(body))
		}
	}
}
