package e2e

import (
	"archive/tar"
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/regmirror/regmirror/internal/testsupport/peers"
	"github.com/regmirror/regmirror/internal/testsupport/testimages"
)

// The generator's quality bars (issue 2, design.md "Quality bars"), measured side by side in
// one run against docker-registry on loopback. Time ratios are reported as metrics, never
// asserted:
//
//	x-vs-crane  regmirror's time / `crane pull --format=oci` + `sync` time (want <= 1 for
//	            large layers, <= 0.5 for many small images)
//	x-vs-floor  regmirror's time / the floor's time (want <= 1.25): the floor is a bare
//	            concurrent copy of the same unique blobs, hashing while writing, fsync before
//	            rename (copyFloor)
//
// Contenders alternate within each iteration (the order rotating), each into a fresh
// directory after the previous outputs are deleted and synced, so page cache and disk
// flushing treat them alike. ns/op is regmirror's time.
//
// Each benchmark sets its source up once and times in a sub-benchmark, so that the testing
// package's calibration runs (b.N = 1, then -benchtime) reuse the same registry.

// pushParallel pushes refs with n concurrent pushers. The first ref of each repository goes
// first, one at a time, so that layers shared across images are in every repository before
// the rest are pushed: docker-registry 2.8 fails concurrent uploads of one blob
// (DIGEST_INVALID, then MANIFEST_BLOB_UNKNOWN).
func pushParallel(b testing.TB, reg *peers.Registry, refs []testimages.Ref, n int) {
	b.Helper()
	ctx := context.Background()
	var first, rest []testimages.Ref
	seenRepo := map[string]bool{}
	for _, r := range refs {
		if seenRepo[r.Repo] {
			rest = append(rest, r)
		} else {
			seenRepo[r.Repo] = true
			first = append(first, r)
		}
	}
	if err := testimages.Push(ctx, reg.Host, first, reg.RemoteOptions(ctx)...); err != nil {
		b.Fatalf("pushing: %v", err)
	}
	refs = rest
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	for i := range n {
		wg.Go(func() {
			var mine []testimages.Ref
			for j := i; j < len(refs); j += n {
				mine = append(mine, refs[j])
			}
			if err := testimages.Push(ctx, reg.Host, mine, reg.RemoteOptions(ctx)...); err != nil {
				mu.Lock()
				if firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		b.Fatalf("pushing: %v", firstErr)
	}
}

// refList is "host/repo:tag" for every tag, for crane.
func refList(host string, refs []testimages.Ref) []string {
	var out []string
	for _, r := range refs {
		for _, tag := range r.Tags {
			out = append(out, host+"/"+r.Repo+":"+tag)
		}
	}
	return out
}

// blobRef is one blob to copy and a repository that holds it.
type blobRef struct {
	repo string
	desc v1.Descriptor
}

// uniqueBlobs lists the configs and layers of refs once each.
func uniqueBlobs(b testing.TB, refs []testimages.Ref) []blobRef {
	b.Helper()
	seen := map[v1.Hash]bool{}
	var out []blobRef
	for _, r := range refs {
		if r.Image == nil {
			b.Fatalf("%s: uniqueBlobs handles images only", r.Repo)
		}
		m, err := r.Image.Manifest()
		if err != nil {
			b.Fatal(err)
		}
		for _, d := range append([]v1.Descriptor{m.Config}, m.Layers...) {
			if !seen[d.Digest] {
				seen[d.Digest] = true
				out = append(out, blobRef{repo: r.Repo, desc: d})
			}
		}
	}
	return out
}

// copyFloor is the floor a full sync is measured against: jobs concurrent GETs of the unique
// blobs from the registry, each streamed into a temporary file in dir while hashing, checked
// against its digest and size, fsynced and renamed; the directory fsynced once at the end.
func copyFloor(ctx context.Context, source, dir string, blobs []blobRef, jobs int) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: jobs, DisableCompression: true}}
	defer client.CloseIdleConnections()
	work := make(chan blobRef)
	errs := make(chan error, jobs)
	var wg sync.WaitGroup
	for range jobs {
		wg.Go(func() {
			buf := make([]byte, 1<<20)
			for br := range work {
				if err := copyBlob(ctx, client, source, dir, br, buf); err != nil {
					errs <- err
					for range work {
					}
					return
				}
			}
		})
	}
	for _, br := range blobs {
		work <- br
	}
	close(work)
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func copyBlob(ctx context.Context, client *http.Client, source, dir string, br blobRef, buf []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, source+"/v2/"+br.repo+"/blobs/"+br.desc.Digest.String(), nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET blob %s: %s", br.desc.Digest, resp.Status)
	}
	final := filepath.Join(dir, br.desc.Digest.Hex)
	f, err := os.CreateTemp(dir, ".tmp-floor-")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	h := sha256.New()
	n, err := io.CopyBuffer(io.MultiWriter(f, h), resp.Body, buf)
	if err != nil {
		return err
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != br.desc.Digest.Hex || n != br.desc.Size {
		return fmt.Errorf("blob %s: got %d bytes hashing to %s", br.desc.Digest, n, got)
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), final)
}

// contender is one way of syncing, run into a fresh directory.
type contender struct {
	name string
	run  func(b *testing.B, dir string)
}

// sideBySide runs every contender once per iteration, rotating the order, and returns each
// one's mean time. Before each run the previous outputs are removed and the disk synced.
func sideBySide(b *testing.B, cs []contender) map[string]time.Duration {
	b.Helper()
	total := map[string]time.Duration{}
	scratch := b.TempDir()
	b.ResetTimer()
	b.StopTimer()
	for i := 0; i < b.N; i++ {
		for k := range cs {
			c := cs[(i+k)%len(cs)]
			dir := filepath.Join(scratch, fmt.Sprintf("%s-%d", c.name, i))
			entries, _ := os.ReadDir(scratch)
			for _, e := range entries {
				if err := os.RemoveAll(filepath.Join(scratch, e.Name())); err != nil {
					b.Fatal(err)
				}
			}
			syscall.Sync()
			start := time.Now()
			if c.name == "regmirror" {
				b.StartTimer()
			}
			c.run(b, dir)
			if c.name == "regmirror" {
				b.StopTimer()
			}
			total[c.name] += time.Since(start)
		}
	}
	mean := map[string]time.Duration{}
	for name, d := range total {
		mean[name] = d / time.Duration(b.N)
		b.ReportMetric(mean[name].Seconds(), name+"-s/op")
	}
	return mean
}

func regmirrorContender(source string, extra ...string) contender {
	return contender{name: "regmirror", run: func(b *testing.B, dir string) {
		r := regmirror(b, nil, append([]string{"generate", "--source", source, "--out", dir}, extra...)...)
		if r.err != nil {
			b.Fatalf("%v", r)
		}
	}}
}

func craneContender(refs []string) contender {
	return contender{name: "crane", run: func(b *testing.B, dir string) {
		crane := peers.Require(b, "crane")
		peers.Run(b, 30*time.Minute, crane, append(append([]string{"pull", "--format=oci"}, refs...), dir)...)
		syscall.Sync()
	}}
}

// BenchmarkSyncLarge: a full sync of images with large random layers (4 × 64 MiB, 2
// repositories × 2 tags), timed until the bytes are on disk: regmirror generate, crane pull
// --format=oci followed by sync, and the floor.
func BenchmarkSyncLarge(b *testing.B) {
	reg := peers.StartRegistry(b)
	refs := randomImages(b, 100, []string{"large/one", "large/two"}, 2, 1, 64<<20)
	start := time.Now()
	pushParallel(b, reg, refs, 4)
	b.Logf("pushed 4 × 64 MiB in %v", time.Since(start).Round(time.Millisecond))
	blobs := uniqueBlobs(b, refs)
	var bytes int64
	for _, br := range blobs {
		bytes += br.desc.Size
	}
	peers.Regmirror(b) // build before timing
	b.Run("4x64MiB", func(b *testing.B) {
		mean := sideBySide(b, []contender{
			regmirrorContender(reg.URL),
			craneContender(refList(reg.Host, refs)),
			{name: "floor", run: func(b *testing.B, dir string) {
				if err := copyFloor(context.Background(), reg.URL, dir, blobs, 8); err != nil {
					b.Fatal(err)
				}
			}},
		})
		b.SetBytes(bytes)
		b.ReportMetric(float64(mean["regmirror"])/float64(mean["crane"]), "x-vs-crane")
		b.ReportMetric(float64(mean["regmirror"])/float64(mean["floor"]), "x-vs-floor")
	})
}

// smallImages is the many-small-images set: tags across 10 repositories, each image a small
// unique layer on a shared base layer.
func smallImages(b testing.TB, tags int) []testimages.Ref {
	b.Helper()
	base := randomImages(b, 200, []string{"small/base"}, 1, 1, 64<<10)
	shared, err := base[0].Image.Layers()
	if err != nil {
		b.Fatal(err)
	}
	var repos []string
	for i := range 10 {
		repos = append(repos, fmt.Sprintf("small/r%d", i))
	}
	return randomImages(b, 201, repos, tags/len(repos), 1, 512, shared...)
}

// BenchmarkSyncManySmall: a full sync of 1,000 small images (1,000 tags): regmirror generate
// against crane pull --format=oci of the same refs followed by sync.
func BenchmarkSyncManySmall(b *testing.B) {
	reg := peers.StartRegistry(b)
	refs := smallImages(b, 1000)
	start := time.Now()
	pushParallel(b, reg, refs, 8)
	b.Logf("pushed %d tags in %v", len(refs), time.Since(start).Round(time.Millisecond))
	peers.Regmirror(b)
	b.Run("1000tags", func(b *testing.B) {
		mean := sideBySide(b, []contender{
			regmirrorContender(reg.URL),
			craneContender(refList(reg.Host, refs)),
		})
		b.ReportMetric(float64(mean["regmirror"])/float64(mean["crane"]), "x-vs-crane")
	})
}

// BenchmarkNoopResync: a re-run over 1,200 tags with nothing new. Timed against the source
// directly, next to its floor (one HEAD per tag, 8 at a time, from a bare client: what
// docker-registry can answer) and the full sync; then run again through a proxy that counts
// requests per tag and blob GETs.
func BenchmarkNoopResync(b *testing.B) {
	reg := peers.StartRegistry(b)
	refs := smallImages(b, 1200)
	pushParallel(b, reg, refs, 8)
	out := filepath.Join(b.TempDir(), "tree")
	full := regmirror(b, nil, "generate", "--source", reg.URL, "--out", out)
	if full.err != nil {
		b.Fatalf("%v", full)
	}
	proxy := newSourceProxy(b, reg.URL, 0)
	b.Run("1200tags", func(b *testing.B) {
		var took, floor time.Duration
		requests, blobGets := 0, 0
		for i := 0; i < b.N; i++ {
			r := regmirror(b, nil, "generate", "--source", reg.URL, "--out", out)
			if r.err != nil {
				b.Fatalf("%v", r)
			}
			took += r.took
			b.StopTimer()
			floor += headFloor(b, reg.URL, refs, 8)
			proxy.Reset()
			if r := regmirror(b, nil, "generate", "--source", proxy.URL, "--out", out); r.err != nil {
				b.Fatalf("%v", r)
			}
			requests += proxy.Total()
			blobGets += proxy.Count("GET blob")
			b.StartTimer()
		}
		b.StopTimer()
		n := float64(b.N)
		b.ReportMetric(float64(requests)/n/float64(len(refs)), "requests/tag")
		b.ReportMetric(float64(blobGets)/n, "blob-GETs/op")
		b.ReportMetric(took.Seconds()/n, "noop-s/op")
		b.ReportMetric(floor.Seconds()/n, "heads-s/op")
		b.ReportMetric(took.Seconds()/floor.Seconds(), "x-vs-heads")
		b.ReportMetric(took.Seconds()/n/full.took.Seconds(), "x-vs-full-sync")
		b.Logf("full sync of %d tags: %v; last counted no-op: %s", len(refs), full.took.Round(time.Millisecond), proxy)
	})
}

// headFloor times one manifest HEAD per tag, jobs at a time, from a bare HTTP client.
func headFloor(b testing.TB, source string, refs []testimages.Ref, jobs int) time.Duration {
	b.Helper()
	took, err := headFloorRun(source, refs, jobs)
	if err != nil {
		b.Fatal(err)
	}
	return took
}

// headFloorRun is headFloor's work; it returns the first request's failure, if any.
func headFloorRun(source string, refs []testimages.Ref, jobs int) (time.Duration, error) {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: jobs}}
	defer client.CloseIdleConnections()
	urls := make(chan string)
	var wg sync.WaitGroup
	var failed sync.Once
	var ferr error
	start := time.Now()
	for range jobs {
		wg.Go(func() {
			for u := range urls {
				req, _ := http.NewRequest(http.MethodHead, u, nil)
				req.Header.Set("Accept", string(types.OCIManifestSchema1)+", "+string(types.OCIImageIndex))
				resp, err := client.Do(req)
				if err == nil {
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						err = fmt.Errorf("HEAD %s: %s", u, resp.Status)
					}
				}
				if err != nil {
					failed.Do(func() { ferr = err })
				}
			}
		})
	}
	for _, r := range refs {
		for _, tag := range r.Tags {
			urls <- source + "/v2/" + r.Repo + "/manifests/" + tag
		}
	}
	close(urls)
	wg.Wait()
	return time.Since(start), ferr
}

// headFloorPipelined is headFloorRun with the HEADs pipelined as generate sends them: each
// repository's tags in batches of depth, a batch written on one of jobs HTTP/1.1
// connections before its answers are read. The same requests as headFloorRun's, at the same
// concurrency at the source, for less of both ends' CPU.
func headFloorPipelined(source string, refs []testimages.Ref, jobs, depth int) (time.Duration, error) {
	u, err := url.Parse(source)
	if err != nil {
		return 0, err
	}
	accept := string(types.OCIManifestSchema1) + ", " + string(types.OCIImageIndex)
	batches := make(chan []string)
	var (
		wg     sync.WaitGroup
		failed sync.Once
		ferr   error
	)
	fail := func(err error) { failed.Do(func() { ferr = err }) }
	start := time.Now()
	for range jobs {
		wg.Go(func() {
			c, err := net.Dial("tcp", u.Host)
			if err != nil {
				fail(err)
				for range batches {
				}
				return
			}
			defer c.Close()
			br, bw := bufio.NewReader(c), bufio.NewWriter(c)
			head := &http.Request{Method: http.MethodHead}
			for batch := range batches {
				for _, p := range batch {
					fmt.Fprintf(bw, "HEAD %s HTTP/1.1\r\nHost: %s\r\nAccept: %s\r\n\r\n", p, u.Host, accept)
				}
				if err := bw.Flush(); err != nil {
					fail(err)
					continue
				}
				for _, p := range batch {
					resp, err := http.ReadResponse(br, head)
					if err != nil {
						fail(fmt.Errorf("HEAD %s: %w", p, err))
						break
					}
					if resp.StatusCode != http.StatusOK || resp.Header.Get("Docker-Content-Digest") == "" {
						fail(fmt.Errorf("HEAD %s: %s", p, resp.Status))
					}
				}
			}
		})
	}
	for _, r := range refs {
		for lo := 0; lo < len(r.Tags); lo += depth {
			var batch []string
			for _, tag := range r.Tags[lo:min(lo+depth, len(r.Tags))] {
				batch = append(batch, "/v2/"+r.Repo+"/manifests/"+tag)
			}
			batches <- batch
		}
	}
	close(batches)
	wg.Wait()
	return time.Since(start), ferr
}

// streamLayer is an uncompressed tar layer of one file of size pseudo-random bytes, generated
// as it is read: a layer of any size without holding it in memory.
type streamLayer struct {
	seed   uint64
	size   int64
	digest v1.Hash
	total  int64
}

func newStreamLayer(b testing.TB, seed uint64, size int64) *streamLayer {
	b.Helper()
	l := &streamLayer{seed: seed, size: size}
	h := sha256.New()
	n, err := io.Copy(h, l.open())
	if err != nil {
		b.Fatal(err)
	}
	l.total = n
	l.digest = v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(h.Sum(nil))}
	return l
}

func (l *streamLayer) open() io.ReadCloser {
	pr, pw := io.Pipe()
	go func() {
		var s [32]byte
		binary.LittleEndian.PutUint64(s[:], l.seed)
		rng := rand.NewChaCha8(s)
		tw := tar.NewWriter(pw)
		err := tw.WriteHeader(&tar.Header{Name: "data", Typeflag: tar.TypeReg, Mode: 0o644, Size: l.size, ModTime: time.Unix(0, 0), Format: tar.FormatPAX})
		buf := make([]byte, 1<<20)
		for left := l.size; err == nil && left > 0; {
			n := min(int64(len(buf)), left)
			_, _ = rng.Read(buf[:n])
			_, err = tw.Write(buf[:n])
			left -= n
		}
		if err == nil {
			err = tw.Close()
		}
		pw.CloseWithError(err)
	}()
	return pr
}

func (l *streamLayer) Digest() (v1.Hash, error)             { return l.digest, nil }
func (l *streamLayer) DiffID() (v1.Hash, error)             { return l.digest, nil }
func (l *streamLayer) Compressed() (io.ReadCloser, error)   { return l.open(), nil }
func (l *streamLayer) Uncompressed() (io.ReadCloser, error) { return l.open(), nil }
func (l *streamLayer) Size() (int64, error)                 { return l.total, nil }
func (l *streamLayer) MediaType() (types.MediaType, error)  { return types.OCIUncompressedLayer, nil }

// watchHWM polls /proc/<pid>/status every 5 ms and sends the last VmHWM seen (KiB) once the
// process is gone. Not getrusage's ru_maxrss: os/exec starts children with vfork, and Linux
// then carries the parent's (this test process's) high-water mark into the child's.
func watchHWM(pid int) <-chan int64 {
	ch := make(chan int64, 1)
	go func() {
		var last int64
		for {
			b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
			if err != nil {
				ch <- last
				return
			}
			for line := range strings.SplitSeq(string(b), "\n") {
				if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
					var kb int64
					if _, err := fmt.Sscan(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), &kb); err == nil {
						last = kb
					}
				}
			}
			if strings.Contains(string(b), "State:\tZ") {
				ch <- last
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	return ch
}

// BenchmarkPeakRSS: regmirror generate syncing one image with a 1 GiB layer; reports the
// child's peak resident set (VmHWM) and its throughput.
func BenchmarkPeakRSS(b *testing.B) {
	reg := peers.StartRegistry(b)
	layer := newStreamLayer(b, 300, 1<<30)
	img, err := testimages.Image(types.OCIManifestSchema1, types.OCIConfigJSON, "amd64", layer)
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	reg.Push(b, []testimages.Ref{{Repo: "huge/one", Tags: []string{"1"}, Image: img}})
	b.Logf("pushed a 1 GiB layer in %v", time.Since(start).Round(time.Millisecond))
	bin := peers.Regmirror(b)
	b.Run("1GiB", func(b *testing.B) {
		scratch := b.TempDir()
		var peak int64
		var took time.Duration
		for i := 0; i < b.N; i++ {
			out := filepath.Join(scratch, fmt.Sprint(i))
			cmd := exec.Command(bin, "generate", "--source", reg.URL, "--out", out)
			var stderr strings.Builder
			cmd.Stderr = &stderr
			t0 := time.Now()
			if err := cmd.Start(); err != nil {
				b.Fatal(err)
			}
			hwm := watchHWM(cmd.Process.Pid)
			err := cmd.Wait()
			took += time.Since(t0)
			if err != nil {
				b.Fatalf("regmirror generate: %v\n%s", err, stderr.String())
			}
			peak = max(peak, <-hwm)
			b.StopTimer()
			if err := os.RemoveAll(out); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
		b.SetBytes(layer.total)
		b.ReportMetric(float64(peak)/1024, "peak-RSS-MiB")
		b.ReportMetric(float64(layer.total)/(1<<20)/(took.Seconds()/float64(b.N)), "MiB/s")
	})
}
