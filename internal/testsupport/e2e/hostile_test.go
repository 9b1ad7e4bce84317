package e2e

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/regmirror/regmirror/internal/testsupport/peers"
	"github.com/regmirror/regmirror/layout"
)

// These tests play the attacker against the real binary: a hostile source registry for
// `regmirror generate`, raw sockets for `regmirror serve`. Each asserts the bound the
// product promises (time, peak RSS of the child process, the one-line error) and logs the
// measured figures. They need no real peer besides the regmirror binary, and are skipped
// with the package by -short all the same.

const (
	mtOCIIndex    = "application/vnd.oci.image.index.v1+json"
	mtOCIManifest = "application/vnd.oci.image.manifest.v1+json"
	mtOCIConfig   = "application/vnd.oci.image.config.v1+json"
	mtOCILayerGz  = "application/vnd.oci.image.layer.v1.tar+gzip"
)

// ociDesc is a descriptor as the hostile registry writes it.
type ociDesc struct {
	MediaType   string            `json:"mediaType"`
	Digest      string            `json:"digest"`
	Size        int               `json:"size"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

// ociDoc is an image manifest or an index.
type ociDoc struct {
	SchemaVersion int               `json:"schemaVersion"`
	MediaType     string            `json:"mediaType"`
	Config        *ociDesc          `json:"config,omitempty"`
	Layers        []ociDesc         `json:"layers,omitempty"`
	Manifests     []ociDesc         `json:"manifests,omitempty"`
	Subject       *ociDesc          `json:"subject,omitempty"`
	Annotations   map[string]string `json:"annotations,omitempty"`
}

// hostileRegistry answers the pull API from maps the test fills: whatever referrers, pages
// and blobs an attack needs. It does no auth.
type hostileRegistry struct {
	URL string

	mu        sync.Mutex
	manifests map[string][]byte            // digest → manifest (media type in the document)
	tags      map[string]map[string]string // repository → tag → digest
	blobs     map[string][]byte
	referrers map[string][]ociDesc // subject digest → referrers listed for it
	// catalog, when set, answers GET /v2/_catalog instead of the repositories in tags.
	catalog http.HandlerFunc
}

func newHostileRegistry(t testing.TB) *hostileRegistry {
	h := &hostileRegistry{manifests: map[string][]byte{}, tags: map[string]map[string]string{},
		blobs: map[string][]byte{}, referrers: map[string][]ociDesc{}}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	h.URL = srv.URL
	return h
}

func digestOf(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

// blob stores b and returns its descriptor.
func (h *hostileRegistry) blob(mediaType string, b []byte) ociDesc {
	d := digestOf(b)
	h.mu.Lock()
	h.blobs[d] = b
	h.mu.Unlock()
	return ociDesc{MediaType: mediaType, Digest: d, Size: len(b)}
}

// manifest stores doc and returns its descriptor; with tag it is tagged in repo.
func (h *hostileRegistry) manifest(t testing.TB, repo, tag string, doc ociDoc) ociDesc {
	doc.SchemaVersion = 2
	b, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	d := digestOf(b)
	h.mu.Lock()
	defer h.mu.Unlock()
	h.manifests[d] = b
	if h.tags[repo] == nil {
		h.tags[repo] = map[string]string{}
	}
	if tag != "" {
		h.tags[repo][tag] = d
	}
	return ociDesc{MediaType: doc.MediaType, Digest: d, Size: len(b)}
}

func (h *hostileRegistry) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	w.Header().Set("Docker-Distribution-Api-Version", "registry/2.0")
	h.mu.Lock()
	defer h.mu.Unlock()
	writeJSON := func(mt string, v any) {
		w.Header().Set("Content-Type", mt)
		json.NewEncoder(w).Encode(v)
	}
	switch {
	case p == "/v2/" || p == "/v2":
		writeJSON("application/json", map[string]any{})
	case p == "/v2/_catalog":
		if h.catalog != nil {
			h.catalog(w, r)
			return
		}
		repos := []string{}
		for repo := range h.tags {
			repos = append(repos, repo)
		}
		sort.Strings(repos)
		writeJSON("application/json", map[string][]string{"repositories": repos})
	case strings.HasSuffix(p, "/tags/list"):
		repo := strings.TrimSuffix(strings.TrimPrefix(p, "/v2/"), "/tags/list")
		tags := []string{}
		for tag := range h.tags[repo] {
			tags = append(tags, tag)
		}
		sort.Strings(tags)
		writeJSON("application/json", map[string]any{"name": repo, "tags": tags})
	case strings.Contains(p, "/manifests/"):
		repo, ref, _ := strings.Cut(strings.TrimPrefix(p, "/v2/"), "/manifests/")
		d := ref
		if !strings.HasPrefix(ref, "sha256:") {
			d = h.tags[repo][ref]
		}
		b, ok := h.manifests[d]
		if !ok {
			http.Error(w, `{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}`, http.StatusNotFound)
			return
		}
		var doc ociDoc
		json.Unmarshal(b, &doc)
		w.Header().Set("Content-Type", doc.MediaType)
		w.Header().Set("Docker-Content-Digest", d)
		w.Header().Set("Content-Length", strconv.Itoa(len(b)))
		if r.Method != http.MethodHead {
			w.Write(b)
		}
	case strings.Contains(p, "/blobs/"):
		d := p[strings.LastIndex(p, "/")+1:]
		b, ok := h.blobs[d]
		if !ok {
			http.Error(w, `{"errors":[{"code":"BLOB_UNKNOWN","message":"blob unknown"}]}`, http.StatusNotFound)
			return
		}
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(b))
	case strings.Contains(p, "/referrers/"):
		d := p[strings.LastIndex(p, "/")+1:]
		refs := h.referrers[d]
		if refs == nil {
			refs = []ociDesc{}
		}
		writeJSON(mtOCIIndex, ociDoc{SchemaVersion: 2, MediaType: mtOCIIndex, Manifests: refs})
	default:
		http.NotFound(w, r)
	}
}

// tinyImage stores one config and one empty gzip layer (shared by every image built on them)
// and returns an image manifest document with annotation n.
func (h *hostileRegistry) tinyImage(n string, subject *ociDesc) ociDoc {
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Close()
	layer := h.blob(mtOCILayerGz, gz.Bytes())
	raw := sha256.Sum256(nil)
	cfg := h.blob(mtOCIConfig, fmt.Appendf(nil, `{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["sha256:%x"]}}`, raw))
	return ociDoc{MediaType: mtOCIManifest, Config: &cfg, Layers: []ociDesc{layer}, Subject: subject, Annotations: map[string]string{"n": n}}
}

// measured is a finished child process with its peak RSS.
type measured struct {
	result
	maxRSS int64 // bytes
}

// runMeasured runs regmirror to completion and reads its peak RSS from the kernel's
// accounting of the child.
func runMeasured(t testing.TB, args ...string) measured {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, peers.Regmirror(t), args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	m := measured{result: result{args: args, stdout: stdout.String(), stderr: stderr.String(), err: err, took: time.Since(start)}}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		m.maxRSS = ru.Maxrss << 10 // Linux reports KiB
	}
	return m
}

// Bounds of the hostile generate runs. Before the fixes, K=8 mutual referrers took 37 s and
// 3.5 GB and an endless catalog 1.9 GB after 30 s; a healthy run on this fixture takes well
// under a second and some tens of MB.
const (
	hostileMaxRSS  = 200 << 20
	hostileMaxTime = 30 * time.Second
)

func checkBounded(t *testing.T, m measured) {
	t.Helper()
	t.Logf("took %v, peak RSS %.1f MiB", m.took.Round(time.Millisecond), float64(m.maxRSS)/(1<<20))
	if m.maxRSS == 0 || m.maxRSS > hostileMaxRSS {
		t.Errorf("peak RSS %d bytes, want at most %d", m.maxRSS, hostileMaxRSS)
	}
	if m.took > hostileMaxTime {
		t.Errorf("took %v, want at most %v", m.took, hostileMaxTime)
	}
}

// TestHostileSourceReferrers: sources whose referrers amplify the work (manifests listing
// each other, referrers that are indexes of their subject's siblings) are published in a
// fraction of a second with a small peak RSS; only referrers naming their subject are kept.
func TestHostileSourceReferrers(t *testing.T) {
	needPeers(t)
	tests := []struct {
		name string
		k    int
		// build fills the registry (repository "h", tag "t") and returns how many
		// referrers of the tagged manifest must be published.
		build func(h *hostileRegistry, k int) int
	}{
		{"K=9 mutual referrers without subjects", 9, func(h *hostileRegistry, k int) int {
			var ms []ociDesc
			for i := range k {
				tag := ""
				if i == 0 {
					tag = "t"
				}
				ms = append(ms, h.manifest(t, "h", tag, h.tinyImage(strconv.Itoa(i), nil)))
			}
			mutual(h, ms)
			return 0
		}},
		{"K=9 mutual referrers, all naming the first", 9, func(h *hostileRegistry, k int) int {
			first := h.manifest(t, "h", "t", h.tinyImage("0", nil))
			ms := []ociDesc{first}
			for i := 1; i < k; i++ {
				ms = append(ms, h.manifest(t, "h", "", h.tinyImage(strconv.Itoa(i), &first)))
			}
			mutual(h, ms)
			return k - 1
		}},
		{"K=8 index referrers listing every sibling", 8, func(h *hostileRegistry, k int) int {
			var cs []ociDesc
			for i := range k {
				cs = append(cs, h.manifest(t, "h", "", h.tinyImage(strconv.Itoa(i), nil)))
			}
			h.manifest(t, "h", "t", ociDoc{MediaType: mtOCIIndex, Manifests: cs})
			for _, c := range cs {
				subj := c
				r := h.manifest(t, "h", "", ociDoc{MediaType: mtOCIIndex, Manifests: cs, Subject: &subj})
				h.referrers[c.Digest] = []ociDesc{r}
			}
			return 0
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHostileRegistry(t)
			wantRefs := tc.build(h, tc.k)
			out := filepath.Join(t.TempDir(), "tree")
			m := runMeasured(t, "generate", "--source", h.URL, "--out", out)
			if m.err != nil {
				t.Fatalf("%v", m.result)
			}
			checkBounded(t, m)
			meta := checkTree(t, out)
			root := layout.MustDigest(h.tags["h"]["t"])
			if got := len(meta.Repositories["h"].Referrers[root]); got != wantRefs {
				t.Errorf("referrers of the tagged manifest: got %d, want %d", got, wantRefs)
			}
		})
	}
}

// mutual lists every manifest of ms as a referrer of every other.
func mutual(h *hostileRegistry, ms []ociDesc) {
	for i, m := range ms {
		for j, o := range ms {
			if i != j {
				h.referrers[m.Digest] = append(h.referrers[m.Digest], o)
			}
		}
	}
}

// TestHostileSourceEndlessListing: a catalog that keeps returning new names behind fresh Link
// headers stops the run at the default limit, with one line naming the source and the limit,
// in bounded time and memory.
func TestHostileSourceEndlessListing(t *testing.T) {
	needPeers(t)
	h := newHostileRegistry(t)
	h.catalog = func(w http.ResponseWriter, r *http.Request) {
		page, _ := strconv.Atoi(r.URL.Query().Get("page"))
		names := make([]string, 1000)
		for i := range names {
			names[i] = fmt.Sprintf("r%d/n%d", page, i)
		}
		w.Header().Set("Link", fmt.Sprintf(`</v2/_catalog?page=%d>; rel="next"`, page+1))
		json.NewEncoder(w).Encode(map[string][]string{"repositories": names})
	}
	out := filepath.Join(t.TempDir(), "tree")
	m := runMeasured(t, "generate", "--source", h.URL, "--out", out)
	var exit *exec.ExitError
	if !errors.As(m.err, &exit) {
		t.Fatalf("got %v, want a non-zero exit\n%v", m.err, m.result)
	}
	lines := strings.Split(strings.TrimRight(m.stderr, "\n"), "\n")
	want := "listing repositories at " + h.URL + ": more than 100000 repositories (limit: --max-entries 100000"
	if len(lines) != 1 || !strings.HasPrefix(lines[0], "regmirror: ") || !strings.Contains(lines[0], want) {
		t.Errorf("stderr: got %q, want one line with %q", m.stderr, want)
	}
	t.Logf("stderr: %s", strings.TrimSpace(m.stderr))
	checkBounded(t, m)
}

// TestHostileSourceVerifyLayersInterrupted: Ctrl-C while --verify-layers decompresses a huge
// layer (13 MB of gzip members that inflate to 12.5 GiB) stops the run within a second,
// publishing nothing.
func TestHostileSourceVerifyLayersInterrupted(t *testing.T) {
	needPeers(t)
	h := newHostileRegistry(t)
	// One gzip member of 64 MiB of zeros, repeated: gzip readers read every member.
	var member bytes.Buffer
	zw, err := gzip.NewWriterLevel(&member, gzip.BestCompression)
	if err != nil {
		t.Fatal(err)
	}
	zeros := make([]byte, 1<<20)
	for range 64 {
		zw.Write(zeros)
	}
	zw.Close()
	bomb := bytes.Repeat(member.Bytes(), 200)
	layer := h.blob(mtOCILayerGz, bomb)
	cfg := h.blob(mtOCIConfig, []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["sha256:`+strings.Repeat("0", 64)+`"]}}`))
	h.manifest(t, "big", "1", ociDoc{MediaType: mtOCIManifest, Config: &cfg, Layers: []ociDesc{layer}})

	out := filepath.Join(t.TempDir(), "tree")
	cmd := exec.Command(peers.Regmirror(t), "generate", "--source", h.URL, "--out", out, "--verify-layers")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var werr error
	done := make(chan struct{})
	go func() { werr = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
	})
	// The layer is renamed into the tree once downloaded, then decompressed.
	blobPath := filepath.Join(out, filepath.FromSlash(layout.BlobPath(layout.MustDigest(layer.Digest))))
	for {
		if _, err := os.Stat(blobPath); err == nil {
			break
		}
		select {
		case <-done:
			t.Fatalf("generate ended before the layer was in the tree: %v\n%s", werr, stderr.String())
		case <-time.After(10 * time.Millisecond):
		}
	}
	time.Sleep(300 * time.Millisecond) // well into the decompression
	sent := time.Now()
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatalf("still running 30 s after Ctrl-C")
	}
	took := time.Since(sent)
	t.Logf("stopped %v after Ctrl-C: %s", took.Round(time.Millisecond), strings.TrimSpace(stderr.String()))
	if took > time.Second {
		t.Errorf("stopped %v after Ctrl-C, want within a second", took)
	}
	var exit *exec.ExitError
	if !errors.As(werr, &exit) || !strings.Contains(stderr.String(), "interrupted") {
		t.Errorf("got %v, %q; want a non-zero exit saying the run was interrupted", werr, stderr.String())
	}
	if _, err := layout.NewTree(out).ReadStamp(); !errors.Is(err, layout.ErrNoGeneration) {
		t.Errorf("a generation was published (%v)", err)
	}
}

// TestServeHostileBodies: 1,000 raw connections announcing a request body (Content-Length or
// chunked) and never sending it are all answered and closed within the header timeout, and
// the `regmirror serve` child's RSS stays bounded. Before the fix 2,000 such connections were
// all open after 131 s (RSS 16 → 67 MB).
func TestServeHostileBodies(t *testing.T) {
	needPeers(t)
	h := newHostileRegistry(t)
	h.manifest(t, "plain", "1", h.tinyImage("plain", nil))
	tree := filepath.Join(t.TempDir(), "tree")
	generate(t, h.URL, tree)
	port := peers.FreePort(t)
	addr := "127.0.0.1:" + strconv.Itoa(port)
	p := peers.Start(t, "regmirror-serve", exec.Command(peers.Regmirror(t), "serve", "--tree", tree, "--listen", addr, "--access-log=false"),
		peers.HTTPReady("http://"+addr+"/v2/"))
	pid := p.Cmd.Process.Pid
	before := procStatus(t, pid)

	const (
		conns         = 1000
		headerTimeout = 10 * time.Second // serve's ReadHeaderTimeout, the documented bound
	)
	heads := []string{
		"GET /v2/plain/manifests/1 HTTP/1.1\r\nHost: x\r\nContent-Length: 262144\r\n\r\n",
		"GET /v2/ HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
		"POST /v2/plain/blobs/uploads/ HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n",
		"HEAD /v2/plain/manifests/1 HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n",
	}
	start := time.Now()
	var open []net.Conn
	defer func() {
		for _, c := range open {
			c.Close()
		}
	}()
	for i := range conns {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		open = append(open, c)
		if _, err := io.WriteString(c, heads[i%len(heads)]); err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
	}
	peak := procStatus(t, pid)
	var notClosed, unanswered int
	var last time.Duration
	for i, c := range open {
		c.SetReadDeadline(start.Add(headerTimeout))
		br := bufio.NewReader(c)
		req, _ := http.NewRequest(strings.Fields(heads[i%len(heads)])[0], "/", nil)
		resp, err := http.ReadResponse(br, req)
		if err != nil {
			unanswered++
			continue
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if _, err := br.ReadByte(); err != io.EOF {
			notClosed++
			continue
		}
		last = max(last, time.Since(start))
	}
	after := procStatus(t, pid)
	t.Logf("%d connections: %d answered and closed, the last %v after the first was opened; serve's RSS %d → %d kB (peak %d kB, high-water %d kB)",
		conns, conns-unanswered-notClosed, last.Round(time.Millisecond), before.rss, after.rss, max(peak.rss, after.rss), after.hwm)
	if unanswered > 0 || notClosed > 0 {
		t.Errorf("%d connections unanswered and %d not closed within the header timeout %v", unanswered, notClosed, headerTimeout)
	}
	if grew := after.hwm - before.rss; grew > 32<<10 {
		t.Errorf("serve's peak RSS grew by %d kB (from %d kB), want at most 32 MiB", grew, before.rss)
	}
}

// procStatus is a process's resident set (VmRSS) and its high-water mark (VmHWM), in kB.
type status struct{ rss, hwm int64 }

func procStatus(t *testing.T, pid int) status {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("reading serve's memory: %v", err)
	}
	var s status
	for line := range strings.SplitSeq(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		v, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			s.rss = v
		case "VmHWM:":
			s.hwm = v
		}
	}
	return s
}
