package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/regmirror/regmirror/internal/testsupport/peers"
	"github.com/regmirror/regmirror/layout"
)

// TestHarnessRegistry checks the docker-registry harness: push, resolve, delete, and the
// htpasswd variant refusing anonymous and wrong credentials.
func TestHarnessRegistry(t *testing.T) {
	needPeers(t)
	ctx := context.Background()
	refs := demo(t)
	w := wantOf(t, refs)

	t.Run("plain", func(t *testing.T) {
		reg := peers.StartRegistry(t)
		reg.Push(t, refs)
		for _, n := range w.keys() {
			ref, err := name.ParseReference(reg.Host+"/"+n, name.Insecure)
			if err != nil {
				t.Fatal(err)
			}
			desc, err := remote.Head(ref, reg.RemoteOptions(ctx)...)
			if err != nil {
				t.Fatalf("HEAD %s: %v", ref, err)
			}
			if desc.Digest != w[n] {
				t.Errorf("%s: got %s, want %s", n, desc.Digest, w[n])
			}
		}
		reg.DeleteTag(t, "fedora/httpd", "2.4")
		ref, _ := name.ParseReference(reg.Host+"/fedora/httpd:latest", name.Insecure)
		if _, err := remote.Head(ref, reg.RemoteOptions(ctx)...); err == nil {
			t.Errorf("fedora/httpd:latest still resolves after deleting its manifest by digest, want it gone")
		}
	})

	t.Run("htpasswd", func(t *testing.T) {
		reg := peers.StartRegistry(t, peers.WithHtpasswd("alice", "s3cret"))
		resp, err := http.Get(reg.URL + "/v2/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("anonymous GET /v2/: got %s, want 401", resp.Status)
		}
		reg.Push(t, refs[:1])
		ref, _ := name.ParseReference(reg.Host+"/fedora:42", name.Insecure)
		if _, err := remote.Head(ref, remote.WithAuth(&authn.Basic{Username: "alice", Password: "wrong"})); err == nil {
			t.Errorf("HEAD with a wrong password: got success, want 401")
		}
		if _, err := remote.Head(ref, reg.RemoteOptions(ctx)...); err != nil {
			t.Errorf("HEAD with the right password: %v", err)
		}
	})
}

// TestHarnessNginx checks the private nginx: it serves a directory, logs each request, and
// refuses connections between Stop and Start.
func TestHarnessNginx(t *testing.T) {
	needPeers(t)
	root := t.TempDir()
	blob := filepath.Join(root, "blobs", "sha256", strings.Repeat("ab", 32))
	if err := os.MkdirAll(filepath.Dir(blob), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(blob, []byte("layer bytes"), 0o644); err != nil {
		t.Fatal(err)
	}
	n := peers.StartNginx(t, root)
	path := "/blobs/sha256/" + strings.Repeat("ab", 32)
	get := func() (string, error) {
		resp, err := http.Get(n.URL + strings.TrimPrefix(path, "/"))
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			return "", errors.New(resp.Status)
		}
		return string(b), err
	}
	if got, err := get(); err != nil || got != "layer bytes" {
		t.Fatalf("GET %s: got %q, %v, want %q", path, got, err, "layer bytes")
	}
	if got := n.Requests(path); got != 1 {
		t.Errorf("access log GETs of %s: got %d, want 1\n%s", path, got, strings.Join(n.AccessLog(), "\n"))
	}
	n.Stop()
	if _, err := get(); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("GET after Stop: got %v, want connection refused", err)
	}
	n.Start()
	if got, err := get(); err != nil || got != "layer bytes" {
		t.Fatalf("GET after Start: got %q, %v, want %q", got, err, "layer bytes")
	}
	if got := n.Requests(path); got != 2 {
		t.Errorf("access log GETs of %s: got %d, want 2", path, got)
	}
}

// TestHarnessSyncMirror checks deploy/mirror-sync on a hand-made tree over a mirror made
// before publications existed (regular index.json and regmirror/current): the mirror ends up
// equal to the tree (temporary files excepted), its links included, old files deleted.
func TestHarnessSyncMirror(t *testing.T) {
	needPeers(t)
	tree, mirror := t.TempDir(), t.TempDir()
	// The mirror's files date from an earlier sync, as they would: rsync's quick check
	// compares size and mtime.
	write := func(root string, files map[string]string, mtime time.Time) {
		for p, c := range files {
			full := filepath.Join(root, p)
			if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Chtimes(full, mtime, mtime); err != nil {
				t.Fatal(err)
			}
		}
	}
	meta := "regmirror/meta/" + strings.Repeat("ab", 32) + ".json.zst"
	stamp := `{"format":2,"generation":2,"meta":"meta/` + strings.Repeat("ab", 32) + `.json.zst"}`
	files := map[string]string{
		"oci-layout":                      "{}",
		"regmirror/pub/2-x/index.json":    "new index",
		"blobs/sha256/aa":                 "new blob",
		"blobs/sha256/bb":                 "kept blob",
		"regmirror/pub/2-x/current":       stamp,
		meta:                              "new meta",
		"blobs/sha256/.tmp-x-1":           "half-written",
		"regmirror/pub/.tmp-3-y/current":  "half-written",
		"regmirror/v2/a/_digests/aa/aa.x": "",
	}
	write(tree, files, time.Now())
	links := map[string]string{
		"regmirror/live":    "pub/2-x",
		"index.json":        "regmirror/live/index.json",
		"regmirror/current": "live/current",
	}
	for p, target := range links {
		if err := os.Symlink(target, filepath.Join(tree, p)); err != nil {
			t.Fatal(err)
		}
	}
	write(mirror, map[string]string{
		"index.json":        "old index",
		"blobs/sha256/bb":   "kept blob",
		"blobs/sha256/cc":   "deleted blob",
		"regmirror/current": "old stamp",
		"regmirror/meta/m1": "old meta",
	}, time.Now().Add(-time.Hour))
	peers.SyncMirror(t, tree, mirror)
	got := map[string]string{}
	filepath.WalkDir(mirror, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(mirror, p)
		switch {
		case d.Type().IsRegular():
			b, _ := os.ReadFile(p)
			got[rel] = string(b)
		case d.Type()&os.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			got[rel] = "-> " + target
		}
		return nil
	})
	// The tree's files but the unfinished ones, and its links.
	want := map[string]string{}
	for p, c := range files {
		if !strings.Contains(p, layout.TempPrefix) {
			want[p] = c
		}
	}
	for p, target := range links {
		want[p] = "-> " + target
	}
	for p, c := range want {
		if got[p] != c {
			t.Errorf("mirror %s: got %q, want %q", p, got[p], c)
		}
	}
	for p := range got {
		if _, ok := want[p]; !ok {
			t.Errorf("mirror has %s, want it absent", p)
		}
	}
}

// TestSyncMirrorKeepsAGeneration syncs a generated tree to a mirror directory with the
// documented two phases, over a mirror holding the previous generation, and checks the
// mirror between the phases (still the previous generation, whole) and after them (the new
// one, whole, the blobs the generator collected deleted, no temporary file copied), then
// serves it with nginx and fetches every blob.
func TestSyncMirrorKeepsAGeneration(t *testing.T) {
	needPeers(t)
	reg := peers.StartRegistry(t)
	refs := demo(t)
	extra := randomImages(t, 7, []string{"extra/app"}, 2, 1, 256<<10)
	reg.Push(t, append(refs, extra...))
	tree, mirror := filepath.Join(t.TempDir(), "tree"), filepath.Join(t.TempDir(), "mirror")
	generate(t, reg.URL, tree)
	peers.SyncMirror(t, tree, mirror)
	_, old, err := layout.NewTree(mirror).Load()
	if err != nil {
		t.Fatalf("mirror after the first sync: %v", err)
	}
	checkTree(t, mirror)

	// Next generation: a tag gone, a tag added, the gone tag's blobs collected at once.
	reg.DeleteTag(t, "extra/app", "t0")
	generate(t, reg.URL, tree)
	time.Sleep(5 * time.Millisecond)
	added := randomImages(t, 8, []string{"extra/app"}, 1, 1, 256<<10)
	added[0].Tags = []string{"t7"}
	reg.Push(t, added)
	generate(t, reg.URL, tree, "--gc-grace", "1ms")
	if err := os.WriteFile(filepath.Join(tree, "blobs", "sha256", layout.TempPrefix+"unfinished"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, next, err := layout.NewTree(tree).Load()
	if err != nil {
		t.Fatal(err)
	}

	peers.SyncMirrorPhase(t, tree, mirror, 1)
	if _, s, err := layout.NewTree(mirror).Load(); err != nil || s != old {
		t.Fatalf("mirror between the phases: got %+v, %v, want the previous generation %+v", s, err, old)
	}
	checkTree(t, mirror)
	peers.SyncMirrorPhase(t, tree, mirror, 2)
	if _, s, err := layout.NewTree(mirror).Load(); err != nil || s != next {
		t.Fatalf("mirror after both phases: got %+v, %v, want the new generation %+v", s, err, next)
	}
	checkTree(t, mirror)
	w := wantOf(t, refs, extra, added).without("extra/app:t0")
	checkPublished(t, mirror, w)
	treeFiles, mirrorFiles := snapshot(t, tree), snapshot(t, mirror)
	for p := range mirrorFiles {
		if _, ok := treeFiles[p]; !ok {
			t.Errorf("mirror has %s, which the tree does not", p)
		}
	}
	for p, v := range treeFiles {
		if filepath.ToSlash(p) == layout.SettledFile {
			if _, ok := mirrorFiles[p]; ok {
				t.Errorf("the source's settled record %s copied to the mirror", p)
			}
			continue // the source tree's own bookkeeping, not copied (deploy/mirror-sync)
		}
		if strings.Contains(p, layout.TempPrefix) {
			if _, ok := mirrorFiles[p]; ok {
				t.Errorf("temporary file %s copied to the mirror", p)
			}
			continue
		}
		// Same content (mode, size and hash; mtimes too, rsync -a keeps them, but not a
		// link's: rsync 3.5 gives a link it creates the time of its creation).
		if strings.HasPrefix(v, "L") {
			got, want := strings.Fields(mirrorFiles[p]), strings.Fields(v)
			if len(got) < 2 || got[0] != want[0] || got[1] != want[1] {
				t.Errorf("mirror %s: got %q, want %q", p, mirrorFiles[p], v)
			}
			continue
		}
		if mirrorFiles[p] != v && !strings.HasPrefix(v, "d") {
			t.Errorf("mirror %s: got %q, want %q", p, mirrorFiles[p], v)
		}
	}

	n := peers.StartNginx(t, mirror)
	m := checkTree(t, mirror)
	for d := range m.Blobs {
		resp, err := http.Get(n.URL + layout.BlobPath(d))
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.New()
		_, err = io.Copy(h, resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s from the mirror: %s, %v", d, resp.Status, err)
		}
		if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); got != d.String() {
			t.Errorf("GET %s from the mirror: got bytes hashing to %s", d, got)
		}
		if got := n.Requests("/" + layout.BlobPath(d)); got != 1 {
			t.Errorf("access log GETs of %s: got %d, want 1", d, got)
		}
	}
}
