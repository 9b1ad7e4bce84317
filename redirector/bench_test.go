package redirector

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/regmirror/regmirror/layout"
)

// benchWriter is a ResponseWriter that keeps nothing, reused across iterations, so that the
// benchmarks measure the handler, not a recorder.
type benchWriter struct {
	h      http.Header
	status int
	n      int
}

func (w *benchWriter) Header() http.Header         { return w.h }
func (w *benchWriter) WriteHeader(code int)        { w.status = code }
func (w *benchWriter) Write(p []byte) (int, error) { w.n += len(p); return len(p), nil }
func (w *benchWriter) reset()                      { clear(w.h); w.status, w.n = 0, 0 }

func benchRequest(method, target, remote string) *http.Request {
	u, _ := url.Parse(target)
	return &http.Request{Method: method, URL: u, Header: http.Header{}, RemoteAddr: remote, Host: "localhost"}
}

// compareHandlers runs the redirector and a bare handler writing the same prepared answer,
// side by side in one run, and reports their ratio (bare ns/op ÷ redirector ns/op: 1.0 means
// the redirector's own logic is free; the target, measured with wrk over loopback where the
// runtime's share is larger, is 0.8).
func compareHandlers(b *testing.B, full, bare http.Handler, req *http.Request, wantStatus int) {
	var ns [2]float64
	for i, h := range []http.Handler{full, bare} {
		name := [2]string{"redirector", "bare"}[i]
		b.Run(name, func(b *testing.B) {
			w := &benchWriter{h: http.Header{}}
			h.ServeHTTP(w, req)
			if w.status != wantStatus && !(w.status == 0 && wantStatus == 200) {
				b.Fatalf("%s: status %d", name, w.status)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				w.reset()
				h.ServeHTTP(w, req)
			}
			ns[i] = float64(b.Elapsed().Nanoseconds()) / float64(b.N)
		})
	}
	b.Run("ratio", func(b *testing.B) {
		for b.Loop() {
		}
		if ns[0] > 0 {
			b.ReportMetric(ns[1]/ns[0], "bare/redirector")
		}
	})
}

func benchServer(b *testing.B, mod func(*layout.Meta, *demo), opts Options) (*Server, *demo) {
	dir, dm := newTestTree(b, mod)
	opts.Tree = dir
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	s, err := New(opts)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s, dm
}

// bareAnswer is what a bare net/http handler would write for a prepared answer: the header
// values assigned from a prepared list, then the body.
func bareAnswer(status int, hdr map[string][]string, body []byte) http.Handler {
	type kv struct {
		k string
		v []string
	}
	var kvs []kv
	for k, v := range hdr {
		kvs = append(kvs, kv{http.CanonicalHeaderKey(k), v})
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		for _, p := range kvs {
			h[p.k] = p.v
		}
		w.WriteHeader(status)
		if body != nil {
			_, _ = w.Write(body)
		}
	})
}

func BenchmarkManifestByTag(b *testing.B) {
	for _, accessLog := range []bool{false, true} {
		b.Run("accesslog="+strconv.FormatBool(accessLog), func(b *testing.B) {
			opts := Options{}
			if accessLog {
				opts.AccessLog = mustAccessLog(b, io.Discard, "json")
			}
			s, dm := benchServer(b, nil, opts)
			d, body := dm.httpd, dm.manifests[dm.httpd]
			bare := bareAnswer(200, map[string][]string{
				"Docker-Distribution-Api-Version": {"registry/2.0"}, "X-Content-Type-Options": {"nosniff"},
				"Content-Type": {layout.MediaTypeDockerManifest}, "Docker-Content-Digest": {d.String()}, "Etag": {`"` + d.String() + `"`},
				"Content-Length": {strconv.Itoa(len(body))}, "Cache-Control": {"public, max-age=60"}, "Vary": {"Accept"},
			}, body)
			compareHandlers(b, s, bare, benchRequest("GET", "/v2/fedora/httpd/manifests/latest", "127.0.0.1:5555"), 200)
		})
	}
}

func BenchmarkBlobRedirect(b *testing.B) {
	s, dm := benchServer(b, func(m *layout.Meta, _ *demo) { addMirrors(m, 1) }, Options{})
	loc := "https://de2.example/pub/" + layout.BlobPath(dm.baseLayer)
	bare := bareAnswer(307, map[string][]string{
		"Docker-Distribution-Api-Version": {"registry/2.0"}, "X-Content-Type-Options": {"nosniff"},
		"Location": {loc}, "Docker-Content-Digest": {dm.baseLayer.String()}, "Cache-Control": {"private, no-store"}, "Content-Length": {"0"},
	}, nil)
	compareHandlers(b, s, bare, benchRequest("GET", "/v2/fedora/blobs/"+dm.baseLayer.String(), "81.2.69.1:5555"), 307)
}

// BenchmarkLoad10k builds a tree of 10,000 manifests (100 repositories of 100 tags) with 10
// regions, each with its own variant set (100,000 variants, neither stored nor recorded), and reports
// how long a generation takes to load (decompress, decode, verify, prepare) and the heap it
// holds.
func BenchmarkLoad10k(b *testing.B) {
	dir := writeLoadTree(b)
	s := &Server{tree: layout.NewTree(dir), log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	var ms runtime.MemStats
	b.ResetTimer()
	for b.Loop() {
		s.loader = s.tree.NewLoader() // a cold load: nothing kept from the previous one
		runtime.GC()                  // twice: sync.Pool (json's encode buffers) keeps a victim cache for one GC
		runtime.GC()
		runtime.ReadMemStats(&ms)
		before := ms.HeapAlloc
		start := time.Now()
		g, err := s.load()
		if err != nil {
			b.Fatal(err)
		}
		took := time.Since(start)
		runtime.GC()
		runtime.GC()
		runtime.ReadMemStats(&ms)
		b.ReportMetric(float64(took.Milliseconds()), "load-ms")
		b.ReportMetric(float64(int64(ms.HeapAlloc)-int64(before))/(1<<20), "heap-MiB")
		b.ReportMetric(float64(ms.HeapAlloc)/(1<<20), "total-heap-MiB")
		debug.FreeOSMemory() // give back what building the test tree used, then read RSS
		if rss := vmRSS(); rss > 0 {
			b.ReportMetric(float64(rss)/(1<<20), "rss-MiB")
		}
		if g.manifestCount != 10000 || g.variantSetCount != 10 {
			b.Fatalf("loaded %d manifests, %d variant sets", g.manifestCount, g.variantSetCount)
		}
		runtime.KeepAlive(g)
	}
}

// BenchmarkVariantScan measures what a request by digest for a variant nobody asked this
// server for costs, once per variant set and repository: rendering the repository's
// manifests in the set (100 in the tree of BenchmarkLoad10k) to find it.
func BenchmarkVariantScan(b *testing.B) {
	dir := writeLoadTree(b)
	s := newServer(b, Options{Tree: dir})
	g := s.gen.Load()
	repo := g.repos["project/repo000"]
	canon := repo.tags["v42"]
	want, err := g.variants.renderer.Variant(3, canon.d)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		view := newVariantView(g.variants.renderer, nil)
		if got := s.scan(view, 3, repo, want.Digest); got != canon {
			b.Fatalf("scan found %v, want %s", got, canon.digest)
		}
	}
	b.ReportMetric(float64(len(repo.manifests)), "manifests")
}

// writeLoadTree publishes the tree of BenchmarkLoad10k; nothing of it stays referenced.
func writeLoadTree(b *testing.B) string {
	dir := b.TempDir()
	m := layout.NewMeta(1)
	m.Origin = "https://origin.example/pub/" // a redirector host's tree: regmirror/ without blobs/
	const repos, tags, regions = 100, 100, 10
	cfg := layout.MustDigest("sha256:" + fmt.Sprintf("%064x", 1))
	m.Blobs[cfg] = &layout.Blob{Size: 1000, Since: 1}
	for r := range repos {
		name := fmt.Sprintf("project/repo%03d", r)
		repo := &layout.Repository{Tags: map[string]layout.Digest{}}
		for t := range tags {
			layer := layout.MustDigest("sha256:" + fmt.Sprintf("%064x", 1000+r*tags+t))
			m.Blobs[layer] = &layout.Blob{Size: 30 << 20, Since: 1}
			raw := []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":%q,"size":1000},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":%q,"size":%d}],"annotations":{"org.opencontainers.image.version":"%d.%d"}}`,
				layout.MediaTypeOCIManifest, cfg, layer, 30<<20, r, t))
			d := digestOf(raw)
			m.Manifests[d] = &layout.Manifest{MediaType: layout.MediaTypeOCIManifest, Data: raw}
			repo.Tags[fmt.Sprintf("v%d", t)] = d
			repo.Manifests = append(repo.Manifests, d)
			repo.Blobs = append(repo.Blobs, cfg, layer)
		}
		repo.Manifests = sortedUnique(repo.Manifests)
		repo.Blobs = sortedUnique(repo.Blobs)
		m.Repositories[name] = repo
	}
	m.Regions = map[string]*layout.Region{}
	for i := range regions {
		name := fmt.Sprintf("mirror%d.example", i)
		m.VariantSets = append(m.VariantSets, &layout.VariantSet{Mirrors: []string{name}})
		m.Mirrors = append(m.Mirrors, &layout.Mirror{Name: name, URL: "https://" + name + "/pub/", Enabled: true, Healthy: true, Generation: 1, Checked: time.Now(), Bandwidth: 1000})
		m.Regions[[]string{"DE", "FR", "US", "JP", "BR", "EU", "NA", "AS", "SA", "global"}[i]] = &layout.Region{Tiers: [][]string{{name}}, VariantSet: i}
	}
	if _, err := layout.NewTree(dir).Publish(m); err != nil {
		b.Fatal(err)
	}
	return dir
}

// vmRSS is the process's resident set size from /proc (0 where there is none).
func vmRSS() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}
