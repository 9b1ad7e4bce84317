package e2e

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/regmirror/regmirror/internal/testsupport/peers"
	"github.com/regmirror/regmirror/internal/testsupport/testimages"
	"github.com/regmirror/regmirror/layout"
)

// needPeers skips under -short (make unit) and nowhere else: without -short a missing peer
// fails the test (peers.Require).
func needPeers(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end against real peers; skipped by -short (make unit)")
	}
}

// result is one finished regmirror run.
type result struct {
	args           []string
	stdout, stderr string
	err            error
	took           time.Duration
}

func (r result) String() string {
	return fmt.Sprintf("regmirror %s: %v (after %v)\nstdout:\n%s\nstderr:\n%s", strings.Join(r.args, " "), r.err,
		r.took.Round(time.Millisecond), lastLines(r.stdout, 30), lastLines(r.stderr, 30))
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = append([]string{"…"}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}

// regmirror runs the binary built from this checkout to completion.
func regmirror(t testing.TB, env []string, args ...string) result {
	t.Helper()
	bin := peers.Regmirror(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	return result{args: args, stdout: stdout.String(), stderr: stderr.String(), err: err, took: time.Since(start)}
}

// generate runs `regmirror generate` and fails the test if it does not succeed.
func generate(t testing.TB, source, out string, extra ...string) result {
	t.Helper()
	r := regmirror(t, nil, append([]string{"generate", "--source", source, "--out", out}, extra...)...)
	if r.err != nil {
		t.Fatalf("%v", r)
	}
	return r
}

// want is what the source publishes: "repository:tag" → digest of the tagged manifest.
type want map[string]v1.Hash

func wantOf(t testing.TB, refs ...[]testimages.Ref) want {
	t.Helper()
	w := want{}
	for _, set := range refs {
		for _, r := range set {
			d, err := r.Digest()
			if err != nil {
				t.Fatal(err)
			}
			for _, tag := range r.Tags {
				w[r.Repo+":"+tag] = d
			}
		}
	}
	return w
}

func (w want) without(names ...string) want {
	c := want{}
	for k, v := range w {
		c[k] = v
	}
	for _, n := range names {
		delete(c, n)
	}
	return c
}

func (w want) keys() []string {
	var ks []string
	for k := range w {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

const refNameAnnotation = "org.opencontainers.image.ref.name"

// readIndex returns index.json's tags: "repository:tag" → digest.
func readIndex(t testing.TB, dir string) (map[string]v1.Hash, *v1.IndexManifest) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, layout.IndexFile))
	if err != nil {
		t.Fatalf("reading index.json: %v", err)
	}
	var idx v1.IndexManifest
	if err := json.Unmarshal(b, &idx); err != nil {
		t.Fatalf("parsing index.json: %v", err)
	}
	tags := map[string]v1.Hash{}
	for _, d := range idx.Manifests {
		name := d.Annotations[refNameAnnotation]
		if name == "" {
			t.Errorf("index.json: descriptor %s has no %s annotation", d.Digest, refNameAnnotation)
			continue
		}
		if prev, dup := tags[name]; dup {
			t.Errorf("index.json: %s listed twice (%s and %s)", name, prev, d.Digest)
		}
		tags[name] = d.Digest
	}
	return tags, &idx
}

// checkPublished checks that index.json and the metadata publish exactly w.
func checkPublished(t testing.TB, dir string, w want) {
	t.Helper()
	got, _ := readIndex(t, dir)
	for _, name := range w.keys() {
		if got[name] != w[name] {
			t.Errorf("index.json %s: got %v, want %v", name, got[name], w[name])
		}
	}
	for name := range got {
		if _, ok := w[name]; !ok {
			t.Errorf("index.json publishes %s = %v, want it absent", name, got[name])
		}
	}
	m, _, err := layout.NewTree(dir).Load()
	if err != nil {
		t.Fatalf("loading the tree: %v", err)
	}
	metaTags := map[string]v1.Hash{}
	for repo, r := range m.Repositories {
		for tag, d := range r.Tags {
			metaTags[repo+":"+tag] = v1.Hash{Algorithm: d.Algorithm(), Hex: d.Hex()}
		}
	}
	for _, name := range w.keys() {
		if metaTags[name] != w[name] {
			t.Errorf("metadata %s: got %v, want %v", name, metaTags[name], w[name])
		}
	}
	for name := range metaTags {
		if _, ok := w[name]; !ok {
			t.Errorf("metadata publishes %s = %v, want it absent", name, metaTags[name])
		}
	}
}

// treeChecker validates a tree independently of the code under test: everything reachable
// from index.json and everything the metadata lists is present and hashes right. Blob hashes
// are remembered by (size, mtime) so a loop of checks over a growing tree stays cheap.
type treeChecker struct {
	dir    string
	hashed map[string]string // path → "size/mtime" last seen hashing right
}

func newTreeChecker(dir string) *treeChecker {
	return &treeChecker{dir: dir, hashed: map[string]string{}}
}

// check returns the loaded metadata, or layout.ErrNoGeneration, or the first problem found.
func (c *treeChecker) check() (*layout.Meta, error) {
	tree := layout.NewTree(c.dir)
	m, _, err := tree.Load()
	if err != nil {
		return nil, err
	}
	if b, err := os.ReadFile(filepath.Join(c.dir, layout.OCILayoutFile)); err != nil {
		return nil, fmt.Errorf("oci-layout: %w", err)
	} else {
		var v struct {
			Version string `json:"imageLayoutVersion"`
		}
		if err := json.Unmarshal(b, &v); err != nil || v.Version != "1.0.0" {
			return nil, fmt.Errorf("oci-layout: got %q, want imageLayoutVersion 1.0.0", b)
		}
	}
	b, err := os.ReadFile(filepath.Join(c.dir, layout.IndexFile))
	if err != nil {
		return nil, fmt.Errorf("index.json: %w", err)
	}
	var idx v1.IndexManifest
	if err := json.Unmarshal(b, &idx); err != nil {
		return nil, fmt.Errorf("index.json: %w", err)
	}
	seen := map[v1.Hash]bool{}
	for _, d := range idx.Manifests {
		if err := c.walk(d, seen); err != nil {
			return nil, fmt.Errorf("index.json %s: %w", d.Annotations[refNameAnnotation], err)
		}
	}
	for d, mf := range m.Manifests {
		sum := sha256.Sum256(mf.Data)
		if got := "sha256:" + hex.EncodeToString(sum[:]); got != d.String() {
			return nil, fmt.Errorf("metadata manifest %s: its bytes hash to %s", d, got)
		}
	}
	for d, bl := range m.Blobs {
		if err := c.blob(v1.Hash{Algorithm: d.Algorithm(), Hex: d.Hex()}, bl.Size); err != nil {
			return nil, fmt.Errorf("metadata blob: %w", err)
		}
	}
	for repo, r := range m.Repositories {
		for tag, d := range r.Tags {
			if m.Manifests[d] == nil {
				return nil, fmt.Errorf("metadata: %s:%s names manifest %s that the metadata lacks", repo, tag, d)
			}
		}
	}
	// And the layout package's own check, which the crawler and operators rely on.
	if err := tree.Verify(context.Background()); err != nil {
		return nil, fmt.Errorf("layout.Tree.Verify: %w", err)
	}
	return m, nil
}

func (c *treeChecker) walk(d v1.Descriptor, seen map[v1.Hash]bool) error {
	if seen[d.Digest] {
		return nil
	}
	seen[d.Digest] = true
	if err := c.blob(d.Digest, d.Size); err != nil {
		return err
	}
	switch d.MediaType {
	case types.OCIImageIndex, types.DockerManifestList:
		b, err := os.ReadFile(c.path(d.Digest))
		if err != nil {
			return err
		}
		var idx v1.IndexManifest
		if err := json.Unmarshal(b, &idx); err != nil {
			return fmt.Errorf("index %s: %w", d.Digest, err)
		}
		for _, child := range idx.Manifests {
			if err := c.walk(child, seen); err != nil {
				return fmt.Errorf("child of %s: %w", d.Digest, err)
			}
		}
	case types.OCIManifestSchema1, types.DockerManifestSchema2:
		b, err := os.ReadFile(c.path(d.Digest))
		if err != nil {
			return err
		}
		var mf v1.Manifest
		if err := json.Unmarshal(b, &mf); err != nil {
			return fmt.Errorf("manifest %s: %w", d.Digest, err)
		}
		if mf.Config.Size > 0 || mf.Config.Digest.Hex != "" {
			if err := c.blob(mf.Config.Digest, mf.Config.Size); err != nil {
				return fmt.Errorf("config of %s: %w", d.Digest, err)
			}
		}
		for _, l := range mf.Layers {
			if len(l.URLs) > 0 {
				continue // foreign layer: the source need not hold it
			}
			if err := c.blob(l.Digest, l.Size); err != nil {
				return fmt.Errorf("layer of %s: %w", d.Digest, err)
			}
		}
	}
	return nil
}

func (c *treeChecker) path(h v1.Hash) string {
	return filepath.Join(c.dir, layout.BlobsDir, h.Algorithm, h.Hex)
}

func (c *treeChecker) blob(h v1.Hash, size int64) error {
	p := c.path(h)
	fi, err := os.Stat(p)
	if err != nil {
		return fmt.Errorf("blob %s: %w", h, err)
	}
	if fi.Size() != size {
		return fmt.Errorf("blob %s: got %d bytes, want %d", h, fi.Size(), size)
	}
	key := fmt.Sprintf("%d/%d", fi.Size(), fi.ModTime().UnixNano())
	if c.hashed[p] == key {
		return nil
	}
	got, err := peers.FileDigest(p)
	if err != nil {
		return err
	}
	if got != h.String() {
		return fmt.Errorf("blob %s: its bytes hash to %s", h, got)
	}
	c.hashed[p] = key
	return nil
}

// checkTree fails the test unless the tree has a generation and validates.
func checkTree(t testing.TB, dir string) *layout.Meta {
	t.Helper()
	m, err := newTreeChecker(dir).check()
	if err != nil {
		t.Fatalf("tree %s does not validate: %v", dir, err)
	}
	return m
}

// rehashAllBlobs hashes every file under blobs/sha256 and checks it against its name; it
// also fails on leftover temporary files anywhere in the tree.
func rehashAllBlobs(t testing.TB, dir string) int {
	t.Helper()
	n := 0
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if strings.HasPrefix(d.Name(), layout.TempPrefix) {
			t.Errorf("temporary file left after a successful run: %s", p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	blobs := filepath.Join(dir, layout.BlobDir("sha256"))
	entries, err := os.ReadDir(blobs)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), layout.TempPrefix) {
			continue
		}
		got, err := peers.FileDigest(filepath.Join(blobs, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if want := "sha256:" + e.Name(); got != want {
			t.Errorf("blob %s: got content hashing to %s, want %s", e.Name(), got, want)
		}
		n++
	}
	return n
}

// snapshot records every path under dir with its type, mode, size, mtime and content hash.
func snapshot(t testing.TB, dir string) map[string]string {
	t.Helper()
	s := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) && p == dir {
			return fs.SkipAll
		}
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		v := fmt.Sprintf("%v %d %d", fi.Mode(), fi.Size(), fi.ModTime().UnixNano())
		if fi.Mode().IsRegular() {
			h, err := peers.FileDigest(p)
			if err != nil {
				return err
			}
			v += " " + h
		}
		s[rel] = v
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func diffSnapshots(before, after map[string]string) []string {
	var diffs []string
	for p, v := range before {
		if w, ok := after[p]; !ok {
			diffs = append(diffs, "removed "+p)
		} else if w != v {
			diffs = append(diffs, fmt.Sprintf("changed %s: %s → %s", p, v, w))
		}
	}
	for p := range after {
		if _, ok := before[p]; !ok {
			diffs = append(diffs, "added "+p)
		}
	}
	sort.Strings(diffs)
	return diffs
}

// randomLayer is an uncompressed tar layer holding one file of size pseudo-random bytes from
// rng: deterministic for a seed, incompressible, cheap to make.
func randomLayer(rng *rand.ChaCha8, size int) v1.Layer {
	data := make([]byte, size)
	for i := 0; i+8 <= len(data); i += 8 {
		binary.LittleEndian.PutUint64(data[i:], rng.Uint64())
	}
	var buf bytes.Buffer
	buf.Grow(size + 2048)
	tw := tar.NewWriter(&buf)
	_ = tw.WriteHeader(&tar.Header{Name: "data", Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(size), ModTime: time.Unix(0, 0), Format: tar.FormatPAX})
	_, _ = tw.Write(data)
	_ = tw.Close()
	return static.NewLayer(buf.Bytes(), types.OCIUncompressedLayer)
}

// randomImages builds, for each repository, tags images (tag "t0", "t1", …) of layers random
// layers of layerSize bytes each, on top of the shared layers. Same seed, same digests.
func randomImages(t testing.TB, seed uint64, repos []string, tags, layers, layerSize int, shared ...v1.Layer) []testimages.Ref {
	t.Helper()
	var s [32]byte
	binary.LittleEndian.PutUint64(s[:], seed)
	rng := rand.NewChaCha8(s)
	var refs []testimages.Ref
	for _, repo := range repos {
		for i := range tags {
			ls := append([]v1.Layer(nil), shared...)
			for range layers {
				ls = append(ls, randomLayer(rng, layerSize))
			}
			img, err := testimages.Image(types.OCIManifestSchema1, types.OCIConfigJSON, "amd64", ls...)
			if err != nil {
				t.Fatal(err)
			}
			refs = append(refs, testimages.Ref{Repo: repo, Tags: []string{fmt.Sprintf("t%d", i)}, Image: img})
		}
	}
	return refs
}

// demo is testimages.Demo, failing the test on error.
func demo(t testing.TB) []testimages.Ref {
	t.Helper()
	refs, err := testimages.Demo()
	if err != nil {
		t.Fatal(err)
	}
	return refs
}
