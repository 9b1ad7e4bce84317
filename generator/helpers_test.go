package generator

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
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
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/regmirror/regmirror/internal/testsupport/testimages"
	"github.com/regmirror/regmirror/layout"
)

// source is an in-process registry behind a counting, fault-injecting handler.
type source struct {
	t    testing.TB
	srv  *httptest.Server
	host string
	url  string

	mu     sync.Mutex
	counts map[string]int // "HEAD manifest", "GET blob", ...
	faults []*fault
	// auth, when set, answers 401 to requests it refuses.
	auth func(w http.ResponseWriter, r *http.Request) bool
}

// fault changes answers to requests whose method and path match, for the first times
// requests (0: every one).
type fault struct {
	method string
	match  func(path string) bool
	times  int
	do     func(w http.ResponseWriter, r *http.Request, next http.Handler)
	hits   int
}

func newSource(t testing.TB) *source {
	t.Helper()
	s := newSourceKept(t)
	t.Cleanup(s.srv.Close)
	return s
}

// newSourceKept is newSource without closing the server when t ends (benchmark fixtures
// shared by sub-benchmarks).
func newSourceKept(t testing.TB) *source {
	return newSourceWith(t, registry.WithReferrersSupport(true))
}

// newSourceWith is newSourceKept with the registry's options.
func newSourceWith(t testing.TB, opts ...registry.Option) *source {
	s := &source{t: t, counts: map[string]int{}}
	reg := registry.New(append([]registry.Option{registry.Logger(log.New(io.Discard, "", 0))}, opts...)...)
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.counts[r.Method+" "+kind(r.URL.Path)]++
		var f *fault
		for _, x := range s.faults {
			if (x.method == "" || x.method == r.Method) && x.match(r.URL.Path) && (x.times == 0 || x.hits < x.times) {
				x.hits++
				f = x
				break
			}
		}
		auth := s.auth
		s.mu.Unlock()
		if auth != nil && !auth(w, r) {
			return
		}
		if f != nil {
			f.do(w, r, reg)
			return
		}
		reg.ServeHTTP(w, r)
	}))
	s.url = s.srv.URL
	s.host = strings.TrimPrefix(s.srv.URL, "http://")
	return s
}

func kind(p string) string {
	switch {
	case p == "/v2/" || p == "/v2":
		return "ping"
	case strings.HasSuffix(p, "/_catalog"):
		return "catalog"
	case strings.Contains(p, "/manifests/"):
		return "manifest"
	case strings.Contains(p, "/blobs/"):
		return "blob"
	case strings.HasSuffix(p, "/tags/list"):
		return "tags"
	case strings.Contains(p, "/referrers/"):
		return "referrers"
	}
	return "other"
}

func (s *source) addFault(f *fault) {
	s.mu.Lock()
	s.faults = append(s.faults, f)
	s.mu.Unlock()
}

func (s *source) clearFaults() {
	s.mu.Lock()
	s.faults = nil
	s.mu.Unlock()
}

func (s *source) resetCounts() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.counts
	s.counts = map[string]int{}
	return c
}

func (s *source) push(refs ...testimages.Ref) {
	s.t.Helper()
	if err := testimages.Push(context.Background(), s.host, refs); err != nil {
		s.t.Fatal(err)
	}
}

// putManifest pushes raw manifest bytes under a tag (or digest) with a content type.
func (s *source) putManifest(repo, ref, mediaType string, data []byte) string {
	s.t.Helper()
	req, _ := http.NewRequest(http.MethodPut, s.url+"/v2/"+repo+"/manifests/"+ref, bytes.NewReader(data))
	req.Header.Set("Content-Type", mediaType)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		s.t.Fatalf("PUT manifest %s:%s: HTTP %d", repo, ref, resp.StatusCode)
	}
	return sha256Digest(data)
}

// putBlob uploads a blob (monolithic POST).
func (s *source) putBlob(repo string, data []byte) string {
	s.t.Helper()
	d := sha256Digest(data)
	resp, err := http.Post(s.url+"/v2/"+repo+"/blobs/uploads/?digest="+d, "application/octet-stream", bytes.NewReader(data))
	if err != nil {
		s.t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		s.t.Fatalf("POST blob to %s: HTTP %d", repo, resp.StatusCode)
	}
	return d
}

func (s *source) deleteTag(repo, tag string) {
	s.t.Helper()
	req, _ := http.NewRequest(http.MethodDelete, s.url+"/v2/"+repo+"/manifests/"+tag, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		s.t.Fatalf("DELETE %s:%s: HTTP %d", repo, tag, resp.StatusCode)
	}
}

func (s *source) pushImage(repo, tag string, img v1.Image) {
	s.t.Helper()
	ref, err := name.NewTag(s.host+"/"+repo+":"+tag, name.Insecure)
	if err != nil {
		s.t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		s.t.Fatal(err)
	}
}

func sha256Digest(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// opts are test options: fast retries, no keychain lookups.
func (s *source) opts(out string) Options {
	return Options{
		Source:       s.url,
		Out:          out,
		Keychain:     emptyKeychain(),
		RetryBackoff: time.Millisecond,
		Retries:      3,
		StallTimeout: 5 * time.Second,
	}
}

// mustRun runs and fails the test on any error.
func mustRun(t testing.TB, o Options) *Summary {
	t.Helper()
	sum, err := Run(context.Background(), o)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	return sum
}

// checkTree asserts the tree loads and verifies.
func checkTree(t testing.TB, dir string) *layout.Meta {
	t.Helper()
	tree := layout.NewTree(dir)
	m, _, err := tree.Load()
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if err := tree.Verify(context.Background()); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	return m
}

// indexRefs reads index.json and returns ref.name → digest.
func indexRefs(t testing.TB, dir string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, layout.IndexFile))
	if err != nil {
		t.Fatal(err)
	}
	var idx struct {
		Manifests []struct {
			Digest      string            `json:"digest"`
			Annotations map[string]string `json:"annotations"`
		} `json:"manifests"`
	}
	if err := json.Unmarshal(b, &idx); err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, m := range idx.Manifests {
		out[m.Annotations[annotationRefName]] = m.Digest
	}
	return out
}

// demo pushes the demo images and returns ref → digest for every tag.
func (s *source) demo() map[string]string {
	s.t.Helper()
	refs, err := testimages.Demo()
	if err != nil {
		s.t.Fatal(err)
	}
	s.push(refs...)
	want := map[string]string{}
	for _, r := range refs {
		d, err := r.Digest()
		if err != nil {
			s.t.Fatal(err)
		}
		for _, tag := range r.Tags {
			want[r.Repo+":"+tag] = d.String()
		}
	}
	return want
}

func listTemps(t testing.TB, dir string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && strings.HasPrefix(d.Name(), layout.TempPrefix) {
			out = append(out, p)
		}
		return nil
	})
	return out
}

func fmtMap(m map[string]string) string {
	var b strings.Builder
	for k, v := range m {
		fmt.Fprintf(&b, "%s=%s ", k, v)
	}
	return b.String()
}

// emptyKeychain finds no credentials (keeps tests away from the user's docker config).
func emptyKeychain() authn.Keychain { return authn.NewMultiKeychain() }
