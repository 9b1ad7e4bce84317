package generator

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/regmirror/regmirror/layout"
)

// benchSet is a source filled for a benchmark, with every unique blob and manifest listed
// for the floor copy, and every ref for crane.
type benchSet struct {
	src   *source
	tags  int
	bytes int64
	items []benchItem // unique blobs and manifests: what a full sync must copy
	refs  []string
}

type benchItem struct {
	path string // /v2/<repo>/blobs/<digest> or /v2/<repo>/manifests/<digest>
	d    layout.Digest
}

var (
	benchMu   sync.Mutex
	benchSets = map[string]*benchSet{}
)

// largeSet: 4 images, each one 128 MiB layer. smallSet: 1,000 tags over 100 repositories,
// each a small image sharing a base layer.
func getBenchSet(b *testing.B, kind string) *benchSet {
	benchMu.Lock()
	defer benchMu.Unlock()
	if s, ok := benchSets[kind]; ok {
		s.src.t = b
		return s
	}
	s := &benchSet{src: newSourceKept(b)}
	seen := map[string]bool{}
	addImage := func(repo, tag string, img v1.Image) {
		s.src.pushImage(repo, tag, img)
		s.tags++
		s.refs = append(s.refs, s.src.host+"/"+repo+":"+tag)
		add := func(kind string, h v1.Hash, size int64) {
			if seen[h.String()] {
				return
			}
			seen[h.String()] = true
			s.bytes += size
			s.items = append(s.items, benchItem{path: "/v2/" + repo + "/" + kind + "/" + h.String(), d: layout.MustDigest(h.String())})
		}
		md, _ := img.Digest()
		raw, _ := img.RawManifest()
		add("manifests", md, int64(len(raw)))
		cd, _ := img.ConfigName()
		cfg, _ := img.RawConfigFile()
		add("blobs", cd, int64(len(cfg)))
		ls, _ := img.Layers()
		for _, l := range ls {
			d, _ := l.Digest()
			sz, _ := l.Size()
			add("blobs", d, sz)
		}
	}
	switch kind {
	case "large":
		for i := range 4 {
			img, err := random.Image(128<<20, 1)
			if err != nil {
				b.Fatal(err)
			}
			addImage(fmt.Sprintf("large/img%d", i), "1", img)
		}
	case "small":
		base, err := random.Layer(4096, "application/vnd.oci.image.layer.v1.tar+gzip")
		if err != nil {
			b.Fatal(err)
		}
		for i := range 1000 {
			top, err := random.Layer(1024, "application/vnd.oci.image.layer.v1.tar+gzip")
			if err != nil {
				b.Fatal(err)
			}
			img, err := mutate.AppendLayers(empty.Image, base, top)
			if err != nil {
				b.Fatal(err)
			}
			addImage(fmt.Sprintf("small/repo%d", i%100), fmt.Sprintf("t%d", i/100), img)
		}
	}
	benchSets[kind] = s
	return s
}

func benchOpts(s *benchSet, out string) Options {
	o := s.src.opts(out)
	o.Log = io.Discard
	return o
}

// BenchmarkFullSync times a full sync into an empty tree, until every byte is durable.
func BenchmarkFullSync(b *testing.B) {
	for _, kind := range []string{"large", "small"} {
		b.Run(kind, func(b *testing.B) {
			s := getBenchSet(b, kind)
			b.SetBytes(s.bytes)
			for b.Loop() {
				b.StopTimer()
				out := b.TempDir()
				s.src.resetCounts()
				b.StartTimer()
				mustRun(b, benchOpts(s, out))
			}
			reqs := 0
			for _, c := range s.src.resetCounts() {
				reqs += c
			}
			b.ReportMetric(float64(reqs)/float64(s.tags), "req/tag")
		})
	}
}

// BenchmarkNoopResync times a re-run with nothing new, and counts its requests per tag.
func BenchmarkNoopResync(b *testing.B) {
	s := getBenchSet(b, "small")
	out := b.TempDir()
	mustRun(b, benchOpts(s, out))
	s.src.resetCounts()
	runs := 0
	for b.Loop() {
		mustRun(b, benchOpts(s, out))
		runs++
	}
	reqs := 0
	for _, c := range s.src.resetCounts() {
		reqs += c
	}
	b.ReportMetric(float64(reqs)/float64(runs*s.tags), "req/tag")
}

// floorCopy is the floor a full sync is measured against: a bare concurrent copy of the same
// unique blobs and manifests (jobs at a time), hashing while writing and fsyncing before the
// rename, then one directory fsync.
func floorCopy(base, dir string, items []benchItem, jobs int) error {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: jobs}}
	ch := make(chan benchItem)
	errs := make(chan error, jobs)
	var wg sync.WaitGroup
	for range jobs {
		wg.Go(func() {
			buf := make([]byte, 1<<20)
			for it := range ch {
				if err := floorOne(client, base, dir, it, buf); err != nil {
					errs <- err
					for range ch {
					}
					return
				}
			}
		})
	}
	for _, it := range items {
		ch <- it
	}
	close(ch)
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	return layout.SyncDir(dir)
}

func floorOne(client *http.Client, base, dir string, it benchItem, buf []byte) error {
	req, _ := http.NewRequest(http.MethodGet, base+it.path, nil)
	req.Header.Set("Accept", manifestAccept)
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	f, err := os.CreateTemp(dir, ".tmp-")
	if err != nil {
		return err
	}
	h := sha256.New()
	if _, err := io.CopyBuffer(io.MultiWriter(f, h), resp.Body, buf); err != nil {
		f.Close()
		return err
	}
	if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); got != it.d.String() {
		f.Close()
		return fmt.Errorf("%s: got %s", it.path, got)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), filepath.Join(dir, it.d.Hex()))
}

// findTool finds an installed tool: bin/tools/<name> (.ci/install-deps), or on PATH.
func findTool(name string) string {
	_, file, _, _ := runtime.Caller(0)
	p := filepath.Join(filepath.Dir(file), "..", "bin", "tools", name)
	if _, err := os.Stat(p); err == nil {
		return p
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	return ""
}

// BenchmarkSideBySide alternates, within each iteration (in rotating order), a full sync by the
// generator, the floor copy and (when installed) crane pull --format=oci + sync, then a no-op
// re-run of the generator, and
// reports each one's mean time and the ratios the quality bars name:
// gen/floor (want ≤ 1.25), crane/gen (want ≥ 1, ≥ 2 for small images), noop/gen.
func BenchmarkSideBySide(b *testing.B) {
	crane := findTool("crane")
	for _, kind := range []string{"large", "small"} {
		b.Run(kind, func(b *testing.B) {
			s := getBenchSet(b, kind)
			var gen, floor, cr, noop time.Duration
			n := 0
			for b.Loop() {
				b.StopTimer()
				out := b.TempDir()
				dir := filepath.Join(b.TempDir(), "blobs", "sha256")
				if err := os.MkdirAll(dir, 0o755); err != nil {
					b.Fatal(err)
				}
				craneOut := b.TempDir()
				b.StartTimer()

				steps := []func(){
					func() {
						t0 := time.Now()
						mustRun(b, benchOpts(s, out))
						gen += time.Since(t0)
					},
					func() {
						t0 := time.Now()
						if err := floorCopy(s.src.url, dir, s.items, DefaultJobs); err != nil {
							b.Fatal(err)
						}
						floor += time.Since(t0)
					},
					func() {
						if crane == "" {
							return
						}
						args := append([]string{"pull", "--insecure", "--format=oci"}, s.refs...)
						t0 := time.Now()
						if msg, err := exec.Command(crane, append(args, craneOut)...).CombinedOutput(); err != nil {
							b.Fatalf("crane: %v: %s", err, msg)
						}
						if err := exec.Command("sync").Run(); err != nil {
							b.Fatal(err)
						}
						cr += time.Since(t0)
					},
				}
				// Rotate the order so that no contender always follows another's writeback.
				for i := range steps {
					steps[(i+n)%len(steps)]()
				}

				t0 := time.Now()
				mustRun(b, benchOpts(s, out))
				noop += time.Since(t0)
				n++
			}
			ms := func(d time.Duration) float64 { return float64(d.Milliseconds()) / float64(n) }
			b.ReportMetric(ms(gen), "gen-ms")
			b.ReportMetric(ms(floor), "floor-ms")
			b.ReportMetric(ms(noop), "noop-ms")
			b.ReportMetric(float64(gen)/float64(floor), "gen/floor")
			b.ReportMetric(float64(noop)/float64(gen), "noop/gen")
			if crane != "" {
				b.ReportMetric(ms(cr), "crane-ms")
				b.ReportMetric(float64(cr)/float64(gen), "crane/gen")
			}
		})
	}
}
