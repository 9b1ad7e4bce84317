package e2e

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/regmirror/regmirror/internal/filelist"
	"github.com/regmirror/regmirror/internal/testsupport/peers"
	"github.com/regmirror/regmirror/layout"
)

type listed struct {
	time int64
	typ  string
	size int64
}

// readFileList parses [Files] the way quick-fedora-mirror's awk does: from the [Files] line to
// the next empty line, four tab-separated fields.
func readFileList(t *testing.T, path string) map[string]listed {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]listed{}
	in := false
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		l := sc.Text()
		switch {
		case l == "[Files]":
			in = true
		case l == "":
			in = false
		case in:
			f := strings.Split(l, "\t")
			if len(f) != 4 {
				t.Fatalf("file list line %q: want 4 tab-separated fields", l)
			}
			ts, _ := strconv.ParseInt(f[0], 10, 64)
			size, _ := strconv.ParseInt(f[2], 10, 64)
			out[f[3]] = listed{ts, f[1], size}
		}
	}
	return out
}

// qfmSync does what quick-fedora-mirror does with a file list: transfer (rsync --files-from)
// the files newer than the last run or missing or of another size locally, the file list
// included, then delete what the list does not name. It returns the transferred paths.
func qfmSync(t *testing.T, src, dst string, last int64) []string {
	t.Helper()
	list := readFileList(t, filepath.Join(src, filelist.Name(filelist.DefaultModule)))
	var xfer []string
	for p, e := range list {
		if e.typ == "d" {
			continue
		}
		fi, err := os.Lstat(filepath.Join(dst, p))
		if e.time > last || err != nil || fi.Size() != e.size {
			xfer = append(xfer, p)
		}
	}
	xfer = append(xfer, filelist.Name(filelist.DefaultModule))
	sort.Strings(xfer)
	from := filepath.Join(t.TempDir(), "files-from")
	if err := os.WriteFile(from, []byte(strings.Join(xfer, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	rsync := peers.Require(t, "rsync")
	peers.Run(t, 5*time.Minute, rsync, "-a", "--delay-updates", "--files-from="+from, src+"/", dst+"/")
	// Deletions last.
	err := filepath.Walk(dst, func(p string, fi os.FileInfo, err error) error {
		if err != nil || p == dst {
			return err
		}
		rel, _ := filepath.Rel(dst, p)
		rel = filepath.ToSlash(rel)
		if _, ok := list[rel]; ok || rel == filelist.Name(filelist.DefaultModule) {
			return nil
		}
		if err := os.RemoveAll(p); err != nil {
			return err
		}
		if fi.IsDir() {
			return filepath.SkipDir
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return xfer
}

// TestQuickFedoraMirrorSync: a mirror that syncs the way quick-fedora-mirror does, from the
// tree's fullfiletimelist-containers, ends up with exactly the tree after a new generation,
// having transferred only what changed.
func TestQuickFedoraMirrorSync(t *testing.T) {
	needPeers(t)
	reg := peers.StartRegistry(t)
	reg.Push(t, demo(t))
	tree := t.TempDir()
	generate(t, reg.URL, tree)
	mirror := filepath.Join(t.TempDir(), "containers")
	if err := os.MkdirAll(mirror, 0o755); err != nil {
		t.Fatal(err)
	}
	first := qfmSync(t, tree, mirror, 0)
	compareTrees(t, tree, mirror)
	last := time.Now().Unix()

	// The list's resolution is a second.
	time.Sleep(1100 * time.Millisecond)
	before := snapshot(t, tree)
	reg.Push(t, extraRefs(t))
	reg.DeleteTag(t, "fedora/minimal", "42")
	generate(t, reg.URL, tree)
	second := qfmSync(t, tree, mirror, last)
	compareTrees(t, tree, mirror)

	// Only what changed moved: no blob of the first generation was sent again.
	sent := map[string]bool{}
	for _, p := range second {
		sent[p] = true
	}
	for p := range before {
		if strings.HasPrefix(p, "blobs/") && sent[p] {
			t.Errorf("unchanged %s transferred again", p)
		}
	}
	t.Logf("first sync: %d files; second: %d files", len(first), len(second))
}

// compareTrees checks that dst holds exactly src's regular files (temporary files aside),
// byte for byte. Directory timestamps are not compared: quick-fedora-mirror does not keep them.
func compareTrees(t *testing.T, src, dst string) {
	t.Helper()
	a, b := fileHashes(t, src), fileHashes(t, dst)
	for p, h := range a {
		if b[p] != h {
			t.Errorf("mirror: %s differs or is missing", p)
		}
	}
	for p := range b {
		if _, ok := a[p]; !ok {
			t.Errorf("mirror: %s is not in the tree", p)
		}
	}
}

func fileHashes(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil || !fi.Mode().IsRegular() || strings.HasPrefix(fi.Name(), layout.TempPrefix) {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if filepath.ToSlash(rel) == layout.SettledFile {
			return nil // the source's own record: never copied
		}
		h, err := peers.FileDigest(p)
		if err != nil {
			return err
		}
		out[filepath.ToSlash(rel)] = h
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}
