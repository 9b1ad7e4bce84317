package crawl

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/regmirror/regmirror/internal/filelist"
	"github.com/regmirror/regmirror/internal/phase2"
	"github.com/regmirror/regmirror/layout"
)

func digestOf(b []byte) layout.Digest {
	sum := sha256.Sum256(b)
	return layout.MustDigest("sha256:" + hex.EncodeToString(sum[:]))
}

// testTree is a tree on disk: generation 2, blobs of generations 1 and 2, one image manifest.
type testTree struct {
	dir      string
	meta     *layout.Meta
	old, new []layout.Digest // blobs of generation 1 and 2
	manifest layout.Digest
	content  map[layout.Digest][]byte
}

func writeBlob(t testing.TB, dir string, d layout.Digest, data []byte) {
	t.Helper()
	p := filepath.Join(dir, filepath.FromSlash(layout.BlobPath(d)))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func newTestTree(t testing.TB, nOld, nNew int) *testTree {
	t.Helper()
	tt := &testTree{dir: t.TempDir(), meta: layout.NewMeta(2), content: map[layout.Digest][]byte{}}
	add := func(data []byte, since uint64) layout.Digest {
		d := digestOf(data)
		tt.content[d] = data
		tt.meta.Blobs[d] = &layout.Blob{Size: int64(len(data)), Since: since}
		writeBlob(t, tt.dir, d, data)
		return d
	}
	for i := 0; i < nOld; i++ {
		tt.old = append(tt.old, add([]byte(strings.Repeat(fmt.Sprint("old blob ", i, " "), 10+i)), 1))
	}
	for i := 0; i < nNew; i++ {
		tt.new = append(tt.new, add([]byte(strings.Repeat(fmt.Sprint("new blob ", i, " "), 10+i)), 2))
	}
	layers := ""
	for i, d := range append(append([]layout.Digest{}, tt.old[1:]...), tt.new...) {
		if i > 0 {
			layers += ","
		}
		layers += fmt.Sprintf(`{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"%s","size":%d}`, d, tt.meta.Blobs[d].Size)
	}
	m := []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%d},"layers":[%s]}`,
		tt.old[0], tt.meta.Blobs[tt.old[0]].Size, layers))
	tt.manifest = add(m, 2)
	tt.meta.Manifests[tt.manifest] = &layout.Manifest{MediaType: "application/vnd.oci.image.manifest.v1+json", Data: m}
	tt.meta.Repositories["demo"] = &layout.Repository{Tags: map[string]layout.Digest{"latest": tt.manifest}, Manifests: []layout.Digest{tt.manifest}}
	if _, err := layout.NewTree(tt.dir).Publish(tt.meta); err != nil {
		t.Fatal(err)
	}
	return tt
}

// mirrorCopy writes a mirror's copy of the tree: the blobs keep(d) accepts, modified by
// edit, and a stamp of generation gen.
func (tt *testTree) mirrorCopy(t testing.TB, gen uint64, keep func(layout.Digest) bool, edit func(layout.Digest, []byte) []byte) string {
	t.Helper()
	dir := t.TempDir()
	for d, data := range tt.content {
		if keep != nil && !keep(d) {
			continue
		}
		if edit != nil {
			data = edit(d, data)
		}
		writeBlob(t, dir, d, data)
	}
	m := layout.NewMeta(gen)
	if _, err := layout.NewTree(dir).Publish(m); err != nil {
		t.Fatal(err)
	}
	return dir
}

type testMirror struct {
	name, country string
	bandwidth     int
	handler       http.Handler
	disabled      bool
}

// serve starts the mirrors and writes a mirrors file naming them.
func serve(t testing.TB, ms []testMirror) (file string, urls map[string]string) {
	t.Helper()
	urls = map[string]string{}
	var b strings.Builder
	b.WriteString("mirrors:\n")
	for _, m := range ms {
		srv := httptest.NewServer(m.handler)
		t.Cleanup(srv.Close)
		u := srv.URL + "/"
		if m.handler == nil { // a mirror that is down: a closed server's address
			srv.Close()
		}
		urls[m.name] = u
		fmt.Fprintf(&b, "  - name: %s\n    url: %s\n    country: %s\n    bandwidth: %d\n    enabled: %v\n", m.name, u, m.country, m.bandwidth, !m.disabled)
	}
	file = filepath.Join(t.TempDir(), "mirrors.yaml")
	if err := os.WriteFile(file, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return file, urls
}

func gzipHeader(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/blobs/") && strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
			w.Header().Set("Content-Encoding", "gzip")
		}
		h.ServeHTTP(w, r)
	})
}

func noHEAD(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodHead {
			http.Error(w, "no HEAD here", http.StatusMethodNotAllowed)
			return
		}
		h.ServeHTTP(w, r)
	})
}

func counting(n *atomic.Int64, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		h.ServeHTTP(w, r)
	})
}

func TestRun(t *testing.T) {
	tt := newTestTree(t, 6, 2)
	isOld := func(d layout.Digest) bool { return tt.meta.Blobs[d].Since == 1 }
	newest := tt.new[1]
	slow := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	})
	var disabledHits atomic.Int64
	file, urls := serve(t, []testMirror{
		{name: "good", country: "DE", bandwidth: 1000, handler: http.FileServer(http.Dir(tt.dir))},
		{name: "behind", country: "DE", bandwidth: 100, handler: http.FileServer(http.Dir(tt.mirrorCopy(t, 1, isOld, nil)))},
		{name: "nohead", country: "FR", bandwidth: 100, handler: noHEAD(http.FileServer(http.Dir(tt.dir)))},
		{name: "ahead", country: "SE", bandwidth: 10, handler: http.FileServer(http.Dir(tt.mirrorCopy(t, 3, nil, nil)))},
		{name: "down", country: "DE", bandwidth: 100},
		{name: "wrongsize", country: "US", bandwidth: 100, handler: http.FileServer(http.Dir(tt.mirrorCopy(t, 2, nil, func(d layout.Digest, b []byte) []byte {
			if d == newest {
				return b[:len(b)-1]
			}
			return b
		})))},
		{name: "missing", country: "FR", bandwidth: 100, handler: http.FileServer(http.Dir(tt.mirrorCopy(t, 2, func(d layout.Digest) bool { return d != newest }, nil)))},
		{name: "gzip", country: "US", bandwidth: 100, handler: gzipHeader(http.FileServer(http.Dir(tt.dir)))},
		{name: "slow", country: "JP", bandwidth: 100, handler: slow},
		{name: "off", country: "BR", bandwidth: 100, disabled: true, handler: counting(&disabledHits, http.FileServer(http.Dir(tt.dir)))},
	})
	rep, err := Run(context.Background(), Options{Tree: tt.dir, MirrorsFile: file, Timeout: 300 * time.Millisecond, Sample: 3, Rand: rand.New(rand.NewPCG(1, 2))})
	if err != nil {
		t.Fatal(err)
	}
	var table strings.Builder
	if err := rep.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", table.String())

	want := map[string]struct {
		healthy bool
		gen     uint64
		status  string
	}{
		"good":      {true, 2, "up to date"},
		"behind":    {true, 1, "behind by 1 generation"},
		"nohead":    {true, 2, "up to date"},
		"ahead":     {true, 2, "ahead of the tree by 1 generation"},
		"down":      {false, 0, "down: dial tcp"},
		"wrongsize": {false, 2, "wrong size for " + newest.String() + ": Content-Length"},
		"missing":   {false, 2, "missing " + newest.String() + ": HTTP 404"},
		"gzip":      {false, 2, "compressed: Content-Encoding gzip for sha256:"},
		"slow":      {false, 0, "timeout: reading regmirror/current"},
		"off":       {false, 0, "disabled"},
	}
	if len(rep.Mirrors) != len(want) {
		t.Fatalf("%d results", len(rep.Mirrors))
	}
	for _, r := range rep.Mirrors {
		w := want[r.Name]
		if r.Healthy != w.healthy || r.Generation != w.gen || !strings.HasPrefix(r.Status, w.status) {
			t.Errorf("%s: healthy %v generation %d status %q; want %v %d %q", r.Name, r.Healthy, r.Generation, r.Status, w.healthy, w.gen, w.status)
		}
		if r.Name == "good" && r.Blobs != 6 {
			t.Errorf("good: %d blobs checked, want 3 newest + 3 random", r.Blobs)
		}
	}
	if disabledHits.Load() != 0 {
		t.Errorf("a disabled mirror was asked %d times", disabledHits.Load())
	}

	// The result is in the tree, same generation, new metadata.
	meta, stamp, err := layout.NewTree(tt.dir).Load()
	if err != nil {
		t.Fatal(err)
	}
	if stamp.Generation != 2 || stamp != rep.Stamp || len(meta.Manifests) != 1 || len(meta.Blobs) != len(tt.meta.Blobs) {
		t.Errorf("stamp %+v, report %+v", stamp, rep.Stamp)
	}
	tiers := map[string][][]string{}
	for r, reg := range meta.Regions {
		tiers[r] = reg.Tiers
	}
	wantTiers := map[string][][]string{
		"DE": {{"good", "behind"}, {"nohead", "ahead"}},
		"FR": {{"nohead"}, {"good", "behind", "ahead"}},
		"EU": {{"good", "behind", "nohead", "ahead"}},
	}
	for r, w := range wantTiers {
		if !reflect.DeepEqual(tiers[r], w) {
			t.Errorf("region %s: %v, want %v", r, tiers[r], w)
		}
	}
	for _, r := range []string{"US", "JP", "BR", "NA", "global"} {
		if !reflect.DeepEqual(tiers[r], [][]string{{"good", "behind", "nohead", "ahead"}}) {
			t.Errorf("region %s: %v", r, tiers[r])
		}
	}
	if rep.Stats.VariantSets != 4 || len(meta.VariantSets) != 4 || meta.Regions["US"].VariantSet != meta.Regions["global"].VariantSet {
		t.Errorf("stats %+v", rep.Stats)
	}
	// DE's variant: the new blob only from mirrors holding generation 2.
	v, err := layout.NewRenderer(meta).Variant(meta.Regions["DE"].VariantSet, tt.manifest)
	if err != nil {
		t.Fatalf("DE variant: %v", err)
	}
	s := string(v.Data)
	newURLs := fmt.Sprintf(`"urls":["%sblobs/sha256/%s","%sblobs/sha256/%s","%sblobs/sha256/%s"]`, urls["good"], newest.Hex(), urls["nohead"], newest.Hex(), urls["ahead"], newest.Hex())
	oldURLs := fmt.Sprintf(`"urls":["%sblobs/sha256/%s","%sblobs/sha256/%s","%sblobs/sha256/%s"]`, urls["good"], tt.old[1].Hex(), urls["behind"], tt.old[1].Hex(), urls["nohead"], tt.old[1].Hex())
	if !strings.Contains(s, newURLs) || !strings.Contains(s, oldURLs) {
		t.Errorf("DE variant:\n%s\nwant %s\nand  %s", s, newURLs, oldURLs)
	}
}

func TestFailuresAndComeback(t *testing.T) {
	tt := newTestTree(t, 40, 2)
	var up atomic.Bool
	var hits atomic.Int64
	fs := http.FileServer(http.Dir(tt.dir))
	flaky := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !up.Load() {
			http.Error(w, "maintenance", http.StatusServiceUnavailable)
			return
		}
		hits.Add(1)
		fs.ServeHTTP(w, r)
	})
	file, _ := serve(t, []testMirror{
		{name: "steady", country: "DE", bandwidth: 100, handler: fs},
		{name: "flaky", country: "DE", bandwidth: 100, handler: flaky},
	})
	opts := Options{Tree: tt.dir, MirrorsFile: file, Sample: 3, MaxFailures: 3, Timeout: 2 * time.Second}
	crawl := func() Result {
		t.Helper()
		rep, err := Run(context.Background(), opts)
		if err != nil {
			t.Fatal(err)
		}
		opts.MirrorsFile = "" // later crawls use the mirrors recorded in the tree
		return rep.Mirrors[1]
	}
	up.Store(true)
	if r := crawl(); !r.Healthy || r.Status != "up to date" || r.Blobs != 6 {
		t.Fatalf("first crawl: %+v", r)
	}
	up.Store(false)
	for i := 1; i <= 3; i++ {
		r := crawl()
		if r.Healthy || r.Failures != i {
			t.Fatalf("failed crawl %d: %+v", i, r)
		}
		if i < 3 && r.Status != "down: HTTP 503 for regmirror/current" {
			t.Errorf("crawl %d: %q", i, r.Status)
		}
		if i == 3 && r.Status != "dead, 3 failed crawls in a row: down: HTTP 503 for regmirror/current" {
			t.Errorf("crawl %d: %q", i, r.Status)
		}
		meta, _, err := layout.NewTree(tt.dir).Load()
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(meta.Regions["DE"].Tiers, [][]string{{"steady"}}) {
			t.Errorf("crawl %d: a failing mirror is a candidate: %v", i, meta.Regions["DE"].Tiers)
		}
	}
	up.Store(true)
	hits.Store(0)
	r := crawl()
	if !r.Healthy || r.Failures != 0 || r.Status != "up to date (back after 3 failed crawls)" {
		t.Errorf("comeback: %+v", r)
	}
	if r.Blobs != 2*3*DeadSampleFactor || hits.Load() != int64(1+2*3*DeadSampleFactor) {
		t.Errorf("comeback checked %d blobs in %d requests, want %d", r.Blobs, hits.Load(), 2*3*DeadSampleFactor)
	}
	// Five crawls of one generation leave the metadata files of the publications kept (a
	// mirror mid-sync may hold any of them), no more: a root and a network file each, and
	// the content pack they share.
	ents, err := os.ReadDir(filepath.Join(tt.dir, filepath.FromSlash(layout.MetaFilesDir)))
	pubs, _ := layout.NewTree(tt.dir).Publications()
	if want := keptMetaFiles(t, tt.dir); err != nil || len(ents) != len(want) || len(want) != 2*len(pubs)+1 {
		t.Errorf("metadata files after five crawls: %d, %v; want the %d the %d publications need (a root and a network file each, one pack)", len(ents), err, len(want), len(pubs))
	}
}

// keptMetaFiles returns the names of the metadata files the publications of the tree at dir
// need.
func keptMetaFiles(t *testing.T, dir string) map[string]bool {
	t.Helper()
	kept, err := layout.NewTree(dir).KeptMetaFiles()
	if err != nil {
		t.Fatal(err)
	}
	return kept
}

func TestSampleNewestAlwaysChecked(t *testing.T) {
	tt := newTestTree(t, 100, 2) // with the manifest, three blobs of generation 2
	blobs := newestFirst(tt.meta, rand.New(rand.NewPCG(3, 4)))
	for seed := uint64(0); seed < 20; seed++ {
		c := &checker{blobs: blobs, rnd: rand.New(rand.NewPCG(seed, 1))}
		got := c.sample(2, 3, ^uint64(0))
		if len(got) != 6 {
			t.Fatalf("%d picked", len(got))
		}
		seen := map[layout.Digest]bool{}
		for _, b := range got {
			if seen[b.digest] {
				t.Errorf("%s picked twice", b.digest)
			}
			seen[b.digest] = true
		}
		for _, d := range tt.new {
			if !seen[d] {
				t.Errorf("seed %d: newest blob %s not checked", seed, d)
			}
		}
		// A mirror at generation 1 is asked only for blobs of generation 1.
		for _, b := range c.sample(1, 3, ^uint64(0)) {
			if b.since != 1 {
				t.Errorf("generation 1 mirror asked for %s of generation %d", b.digest, b.since)
			}
		}
	}
}

func TestRunRefusesATreeThatMoved(t *testing.T) {
	tt := newTestTree(t, 3, 1)
	tree := layout.NewTree(tt.dir)
	fs := http.FileServer(http.Dir(tt.dir))
	var once atomic.Bool
	file, _ := serve(t, []testMirror{{name: "m", country: "DE", bandwidth: 1, handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if once.CompareAndSwap(false, true) { // a generate finishes while the crawl runs
			next := layout.NewMeta(3)
			next.Blobs = tt.meta.Blobs
			if _, err := tree.Publish(next); err != nil {
				t.Error(err)
			}
		}
		fs.ServeHTTP(w, r)
	})}})
	_, err := Run(context.Background(), Options{Tree: tt.dir, MirrorsFile: file})
	if err == nil || !strings.Contains(err.Error(), "changed during the crawl (generation 2, now 3): nothing published") {
		t.Fatalf("got %v", err)
	}
	if s, _ := tree.ReadStamp(); s.Generation != 3 {
		t.Errorf("stamp %+v", s)
	}
}

func TestRunErrors(t *testing.T) {
	empty := t.TempDir()
	if _, err := Run(context.Background(), Options{Tree: empty}); err == nil || !strings.Contains(err.Error(), "run regmirror generate first") {
		t.Errorf("no generation: %v", err)
	}
	tt := newTestTree(t, 1, 1)
	if _, err := Run(context.Background(), Options{Tree: tt.dir}); err == nil || !strings.Contains(err.Error(), "records no mirrors: give the mirrors file with Options.MirrorsFile FILE") {
		t.Errorf("no mirrors: %v", err)
	}
	bad := filepath.Join(t.TempDir(), "m.yaml")
	os.WriteFile(bad, []byte("mirrors:\n  - name: x\n    url: http://x.example/\n    country: XX\n"), 0o644)
	if _, err := Run(context.Background(), Options{Tree: tt.dir, MirrorsFile: bad}); err == nil || !strings.Contains(err.Error(), bad+`:4: mirror "x": country "XX"`) {
		t.Errorf("bad file: %v", err)
	}
	// Cancelled: nothing published.
	before, _ := layout.NewTree(tt.dir).ReadStamp()
	file, _ := serve(t, []testMirror{{name: "m", country: "DE", bandwidth: 1, handler: http.FileServer(http.Dir(tt.dir))}})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Run(ctx, Options{Tree: tt.dir, MirrorsFile: file}); err == nil {
		t.Error("cancelled crawl succeeded")
	}
	if after, _ := layout.NewTree(tt.dir).ReadStamp(); after != before {
		t.Error("cancelled crawl published")
	}
}

func TestApplyChangedMirrorList(t *testing.T) {
	tt := newTestTree(t, 2, 1)
	fs := http.FileServer(http.Dir(tt.dir))
	file, _ := serve(t, []testMirror{{name: "a", country: "DE", bandwidth: 1, handler: fs}, {name: "b", country: "FR", bandwidth: 1, handler: fs}})
	if _, err := Run(context.Background(), Options{Tree: tt.dir, MirrorsFile: file}); err != nil {
		t.Fatal(err)
	}
	file2, _ := serve(t, []testMirror{{name: "a", country: "DE", bandwidth: 1, handler: fs}})
	rep, err := Run(context.Background(), Options{Tree: tt.dir, MirrorsFile: file2})
	if err != nil {
		t.Fatal(err)
	}
	meta, _, _ := layout.NewTree(tt.dir).Load()
	if len(rep.Mirrors) != 1 || len(meta.Mirrors) != 1 || meta.Regions["FR"] != nil {
		t.Errorf("mirror b still there: %+v, regions %v", rep.Mirrors, meta.Regions)
	}
}

// TestPruneKeepsWhatPublicationsName: a crawl's publish keeps the metadata of every
// publication left (mirrors mid-sync may hold any of them) and removes a file none names.
func TestPruneKeepsWhatPublicationsName(t *testing.T) {
	tt := newTestTree(t, 2, 1)
	tree := layout.NewTree(tt.dir)
	raw, d, err := layout.EncodeMeta(layout.NewMeta(1))
	if err != nil {
		t.Fatal(err)
	}
	if err := layout.WriteFile(tree.Path(layout.MetaPath(d)), raw); err != nil {
		t.Fatal(err)
	}
	file, _ := serve(t, []testMirror{{name: "a", country: "DE", bandwidth: 1, handler: http.FileServer(http.Dir(tt.dir))}})
	for i := 0; i < 3; i++ {
		if _, err := Run(context.Background(), Options{Tree: tt.dir, MirrorsFile: file}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := os.Stat(tree.Path(layout.MetaPath(d))); err == nil {
		t.Errorf("a metadata file no publication names is still there")
	}
	want := keptMetaFiles(t, tt.dir)
	ents, _ := os.ReadDir(tree.Path(layout.MetaFilesDir))
	for _, e := range ents {
		if !want[e.Name()] {
			t.Errorf("metadata file %s: no publication needs it", e.Name())
		}
	}
	if len(ents) != len(want) {
		t.Errorf("%d metadata files, want the %d the publications need", len(ents), len(want))
	}
}

func TestRunWaitsForNoGenerate(t *testing.T) {
	tt := newTestTree(t, 2, 1)
	file, _ := serve(t, []testMirror{{name: "a", country: "DE", bandwidth: 1, handler: http.FileServer(http.Dir(tt.dir))}})
	release, err := layout.NewTree(tt.dir).Lock(0) // as a running generate does
	if err != nil {
		t.Fatal(err)
	}
	before, _ := layout.NewTree(tt.dir).ReadStamp()
	_, err = Run(context.Background(), Options{Tree: tt.dir, MirrorsFile: file})
	release()
	if err == nil || !strings.Contains(err.Error(), "a regmirror generate is writing") {
		t.Errorf("got %v", err)
	}
	if after, _ := layout.NewTree(tt.dir).ReadStamp(); after != before {
		t.Error("published while the tree was locked")
	}
	if _, err := Run(context.Background(), Options{Tree: tt.dir, MirrorsFile: file}); err != nil {
		t.Errorf("after the lock is released: %v", err)
	}
}

// TestCheckPerSubset: a mirror is sampled in each of its subsets and only there: an arm64
// mirror lacking every amd64 blob is healthy, one lacking an arm64 blob is not, and the
// result names the subset.
func TestCheckPerSubset(t *testing.T) {
	tt := newTestTree(t, 6, 2)
	const amd64, arm64, anyArch = 1, 2, 4
	tt.meta.Subsets = []string{"amd64", "arm64", layout.AnyArchitecture}
	for d, b := range tt.meta.Blobs {
		switch {
		case d == tt.manifest:
			b.Subsets = anyArch
		case b.Since == 1:
			b.Subsets = amd64
		default:
			b.Subsets = arm64
		}
	}
	isArm := func(d layout.Digest) bool { return tt.meta.Blobs[d].Subsets != amd64 }
	lacking := tt.new[0]
	mk := func(name string, content []string, keep func(layout.Digest) bool) *layout.Mirror {
		srv := httptest.NewServer(http.FileServer(http.Dir(tt.mirrorCopy(t, 2, keep, nil))))
		t.Cleanup(srv.Close)
		return &layout.Mirror{Name: name, URL: srv.URL + "/", Country: "DE", Enabled: true, Content: content}
	}
	tt.meta.Mirrors = []*layout.Mirror{
		mk("arm", []string{"arm64"}, isArm),
		mk("arm-lacking", []string{"arm64"}, func(d layout.Digest) bool { return isArm(d) && d != lacking }),
		mk("full-with-arm-only", nil, isArm),
	}
	res := Check(context.Background(), tt.meta, Options{Timeout: 2 * time.Second, Sample: 8, Rand: rand.New(rand.NewPCG(1, 2))})
	for _, tc := range []struct {
		mirror  string
		healthy bool
		status  string // prefix
		subsets string
	}{
		{"arm", true, "up to date", "arm64 ok"},
		{"arm-lacking", false, "arm64: ", "arm64 FAILED"},
		{"full-with-arm-only", false, "amd64: ", "amd64 FAILED,arm64 ok"},
	} {
		i := slices.IndexFunc(res, func(r Result) bool { return r.Name == tc.mirror })
		got := res[i]
		if got.Healthy != tc.healthy || !strings.HasPrefix(got.Status, tc.status) || contentCell(got) != tc.subsets {
			t.Errorf("mirror %s: healthy %v, status %q, subsets %q; want %v, %q…, %q", tc.mirror, got.Healthy, got.Status, contentCell(got), tc.healthy, tc.status, tc.subsets)
		}
	}
}

// TestRunRefusesBrokenMetadata: a crawl of a tree whose live generation lacks its network
// file is refused with one line naming the file and how to restore it; nothing is published.
func TestRunRefusesBrokenMetadata(t *testing.T) {
	tt := newTestTree(t, 2, 1)
	tree := layout.NewTree(tt.dir)
	st, err := tree.ReadStamp()
	if err != nil {
		t.Fatal(err)
	}
	files, err := tree.MetaFiles(st)
	if err != nil {
		t.Fatal(err)
	}
	network := files[1]
	if err := os.Remove(tree.Path(network)); err != nil {
		t.Fatal(err)
	}
	file, _ := serve(t, []testMirror{{name: "a", country: "DE", bandwidth: 1, handler: http.FileServer(http.Dir(tt.dir))}})
	_, err = Run(context.Background(), Options{Tree: tt.dir, MirrorsFile: file})
	if err == nil || !strings.Contains(err.Error(), "nothing published: copy "+network+" back from a mirror") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("Run: got %v, want one line naming %s and how to restore it", err, network)
	}
	if again, err := tree.ReadStamp(); err != nil || again != st {
		t.Errorf("stamp after the refusal: %+v, %v; want %+v unchanged", again, err, st)
	}
}

// TestRunSettled: a crawl of a settled tree leaves it settled, the record naming the crawl's
// publication, changes no digest marker and lists regmirror/v2 and blobs/sha256 from the
// previous file list, lines equal to a listing of the tree; a crawl of a tree that is not
// settled (no record; blobs/sha256 changed since it) reads it whole and leaves it unsettled,
// for generate to look through blobs/.
func TestRunSettled(t *testing.T) {
	tt := newTestTree(t, 2, 1)
	tree := layout.NewTree(tt.dir)
	file, _ := serve(t, []testMirror{{name: "good", country: "DE", bandwidth: 1000, handler: http.FileServer(http.Dir(tt.dir))}})
	marker := phase2.Dir + "/demo/_digests/" + tt.manifest.Hex() + "/" + tt.manifest.Hex() + ".oci-manifest"
	settle := func() { // as a generate that left blobs/ clean, its repository plain
		if err := tree.Settle(nil, []string{"demo"}); err != nil {
			t.Fatal(err)
		}
	}
	steps := []struct {
		name   string
		before func()
		want   bool // the tree settled after the crawl
	}{
		{"first crawl (no record: the tree is read)", func() {}, false},
		{"crawl of a settled tree", settle, true},
		{"crawl of a settled tree again", func() {}, true},
		{"crawl after a file was put in blobs/sha256", func() {
			writeBlob(t, tt.dir, digestOf([]byte("stray\n")), []byte("stray\n"))
		}, false},
	}
	for _, st := range steps {
		step := st.name
		st.before()
		if _, err := Run(context.Background(), Options{Tree: tt.dir, MirrorsFile: file}); err != nil {
			t.Fatalf("%s: %v", step, err)
		}
		live, err := tree.LivePublication()
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(tree.Path(layout.SettledFile))
		pub, _, _ := strings.Cut(string(got), " ")
		// Besides its first line, only what the publish changed under regmirror/shared after
		// its file list (a crawl deletes no blob), then the plain repositories as they were
		// (a crawl changes no content).
		_, rest, _ := strings.Cut(string(got), "\n")
		paths, plain, _ := strings.Cut(rest, ".\n")
		other := slices.ContainsFunc(strings.Split(strings.TrimSuffix(paths, "\n"), "\n"), func(l string) bool {
			return l != "" && !strings.HasPrefix(l, layout.SharedDir+"/")
		})
		if gotSettled := err == nil; gotSettled != st.want || (st.want && (pub != live || other || plain != "demo\n")) {
			t.Errorf("%s: settled record: got %q (%v), want it naming %q, nothing outside %s and the plain repository demo: %v", step, got, err, live, layout.SharedDir, st.want)
		}
		if _, err := os.Stat(tree.Path(marker)); err != nil {
			t.Errorf("%s: digest marker: %v", step, err)
		}
		list, err := os.ReadFile(tree.Path(filelist.Name(filelist.DefaultModule)))
		if err != nil {
			t.Fatal(err)
		}
		entries, err := filelist.Scan(tt.dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, dir := range []string{phase2.Dir, layout.BlobDir("sha256")} {
			n := 0
			for _, e := range entries {
				if e.Path != dir && !strings.HasPrefix(e.Path, dir+"/") {
					continue
				}
				n++
				if line := fmt.Sprintf("\n%d\t%s\t%d\t%s\n", e.Time, e.Type, e.Size, e.Path); !strings.Contains(string(list), line) {
					t.Errorf("%s: the file list lacks %q", step, line)
				}
			}
			if got := strings.Count(string(list), "\t"+dir); got != n || n < 5 {
				t.Errorf("%s: the file list has %d lines of %s, a listing %d (want at least 5)", step, got, dir, n)
			}
		}
	}
}
