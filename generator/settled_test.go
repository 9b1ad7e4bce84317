package generator

import (
	"errors"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/random"

	"github.com/regmirror/regmirror/internal/phase2"
	"github.com/regmirror/regmirror/internal/testsupport/listcheck"
	"github.com/regmirror/regmirror/layout"
)

// phase2Files lists the files below regmirror/v2 (tree-relative slash paths), and the
// directories as "dir/".
func phase2Files(t *testing.T, dir string) []string {
	t.Helper()
	var got []string
	root := filepath.Join(dir, filepath.FromSlash(phase2.Dir))
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			rel += "/"
		}
		got = append(got, rel)
		return nil
	})
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	return got
}

// wantPhase2Files is what regmirror/v2 holds for m: its digest markers and their directories.
func wantPhase2Files(m *layout.Meta) []string {
	set := map[string]bool{phase2.Dir + "/": true}
	for rel := range phase2.DigestFiles(m) {
		set[rel] = true
		for d := filepath.ToSlash(filepath.Dir(rel)); d != phase2.Dir; d = filepath.ToSlash(filepath.Dir(d)) {
			set[d+"/"] = true
		}
	}
	l := make([]string, 0, len(set))
	for rel := range set {
		l = append(l, rel)
	}
	slices.Sort(l)
	return l
}

// TestSettledRecord: every run leaves the settled record naming its publication; a run on a
// settled tree applies the change of the digest markers instead of reading regmirror/v2 and
// leaves the same files as reading it would (new blobs, a tag removed, its content
// retiring, then expired and deleted), and the file list's lines of regmirror/v2 and
// blobs/sha256, taken from the previous list but for the change, equal a listing of the tree
// but for the garbage deleted after the publish, which the record names and the next list
// drops; a tree without the record, and a run with Verify, read it whole.
func TestSettledRecord(t *testing.T) {
	src := newSource(t)
	src.demo()
	out := t.TempDir()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	o := src.opts(out)
	o.Now = func() time.Time { now = now.Add(time.Minute); return now }
	o.GCGrace = time.Nanosecond
	tree := layout.NewTree(out)
	stray := phase2.Dir + "/stray/_digests/00/00.oci-manifest"
	putStray := func() {
		t.Helper()
		if err := layout.WriteFile(tree.Path(stray), nil); err != nil {
			t.Fatal(err)
		}
	}
	steps := []struct {
		name      string
		before    func()
		verify    bool
		wantStray bool // the run trusted the record: a file put there by hand stays
	}{
		{"first generation", func() {}, false, false},
		{"image pushed: new blobs", func() {
			img, err := random.Image(512, 2)
			if err != nil {
				t.Fatal(err)
			}
			src.pushImage("fedora/new", "1", img)
		}, false, false},
		{"tag removed: its content retiring", func() { src.deleteTag("fedora/minimal", "42") }, false, false},
		{"retiring content expired and deleted (after the publish)", func() {}, false, false},
		{"no-op after the deletion", func() {}, false, false},
		{"settled tree edited by hand", putStray, false, true},
		{"with Verify", func() {}, true, false},
		{"no record (a run killed mid-way)", func() {
			putStray()
			if err := os.Remove(tree.Path(layout.SettledFile)); err != nil {
				t.Fatal(err)
			}
		}, false, false},
		{"record of another publication", func() {
			putStray()
			if err := layout.WriteFile(tree.Path(layout.SettledFile), []byte("1-0011223344556677\n")); err != nil {
				t.Fatal(err)
			}
		}, false, false},
	}
	for _, st := range steps {
		st.before()
		o.Verify = st.verify
		mustRun(t, o)
		m := checkTree(t, out)
		live, err := tree.LivePublication()
		if err != nil {
			t.Fatal(err)
		}
		record, err := os.ReadFile(tree.Path(layout.SettledFile))
		if first, _, _ := strings.Cut(string(record), " "); err != nil || first != live {
			t.Errorf("%s: settled record: got %q (%v), want it to name %q", st.name, record, err, live)
		}
		got := slices.DeleteFunc(phase2Files(t, out), func(rel string) bool { return strings.Contains(rel, "/stray/") })
		if want := wantPhase2Files(m); !slices.Equal(got, want) {
			t.Errorf("%s: regmirror/v2:\ngot  %q\nwant %q", st.name, got, want)
		}
		diffs, err := listcheck.Check(out, func(rel string) bool { return strings.Contains(rel, "/stray") })
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range diffs {
			t.Errorf("%s: file list: %s", st.name, d)
		}
		_, err = os.Lstat(tree.Path(stray))
		if gotStray := err == nil; gotStray != st.wantStray {
			t.Errorf("%s: the file put in regmirror/v2 by hand: got there %v, want %v", st.name, gotStray, st.wantStray)
		}
	}
}

// TestSettledStrays: a run that publishes and leaves blobs/ holding only what its generation
// records settles the tree, and the next run then does not list blobs/: a stray slipped in
// without changing the directory's time stays unseen, while one that changes it (anything
// that writes there does) voids the record, is found and becomes an orphan. A run with a
// failed tag leaves the tree unsettled, and the run after it lists blobs/ again.
func TestSettledStrays(t *testing.T) {
	src := newSource(t)
	src.demo()
	out := t.TempDir()
	tree := layout.NewTree(out)
	dir := tree.Path(layout.BlobDir("sha256"))
	mustRun(t, src.opts(out))
	mustRun(t, src.opts(out))
	checkTree(t, out)
	// recorded is blobs/sha256's time the settled record holds.
	recorded := func() time.Time {
		t.Helper()
		b, err := os.ReadFile(tree.Path(layout.SettledFile))
		if err != nil {
			t.Fatalf("settled record: %v", err)
		}
		first, _, _ := strings.Cut(string(b), "\n")
		_, mtime, _ := strings.Cut(first, " ")
		mtime, _, _ = strings.Cut(mtime, " ")
		ns, err := strconv.ParseInt(mtime, 10, 64)
		if err != nil {
			t.Fatalf("settled record %q: %v", b, err)
		}
		return time.Unix(0, ns)
	}
	stray := func(s string) layout.Digest {
		t.Helper()
		d := layout.DigestOf("sha256", []byte(s))
		if err := os.WriteFile(filepath.Join(out, layout.BlobPath(d)), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		return d
	}
	hidden := stray("slipped in behind the record\n")
	if at := recorded(); os.Chtimes(dir, at, at) != nil {
		t.Fatal("restoring blobs/sha256's time")
	}
	mustRun(t, src.opts(out))
	if m := checkTree(t, out); m.Orphans[hidden] != nil {
		t.Errorf("a stray the record hides: got an orphan, want it unseen (blobs/ not listed)")
	}
	recorded() // the run settled the tree again
	seen := stray("left by a run that failed before publishing\n")
	mustRun(t, src.opts(out))
	m := checkTree(t, out)
	for _, d := range []layout.Digest{hidden, seen} {
		if m.Orphans[d] == nil {
			t.Errorf("stray %s after blobs/ changed: got no orphan, want one", d)
		}
	}

	// A tag that fails (its transfer may write there later) leaves the tree unsettled.
	img, err := random.Image(512, 1)
	if err != nil {
		t.Fatal(err)
	}
	src.pushImage("fedora/new", "1", img)
	src.addFault(&fault{method: "GET", match: pathHas("/blobs/"), do: func(w http.ResponseWriter, r *http.Request, _ http.Handler) {
		http.Error(w, "broken", http.StatusNotFound)
	}})
	o := src.opts(out)
	o.Retries = 0
	var pe *PartialError
	if _, err := Run(t.Context(), o); !errors.As(err, &pe) || !pe.Published {
		t.Fatalf("Run with a failing blob: got %v, want a published partial run", err)
	}
	checkTree(t, out)
	if _, err := os.Lstat(tree.Path(layout.SettledFile)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("after a run with a failed tag: settled record there (%v), want none", err)
	}
	src.clearFaults()
	later := stray("left while the tree was unsettled\n")
	// Its time hides nothing: without a record, blobs/ is listed.
	old := time.Now().Add(-time.Hour)
	if err := os.Chtimes(dir, old, old); err != nil {
		t.Fatal(err)
	}
	mustRun(t, src.opts(out))
	if m := checkTree(t, out); m.Orphans[later] == nil {
		t.Errorf("stray %s after a run with a failed tag: got no orphan, want one (blobs/ listed)", later)
	}
	recorded()
}

// TestSettledPlain: the settled record names the repositories whose records are plain
// (plainIn, recomputed here from the tree), never one with a foreign layer; the next run
// takes those of them whose tags are unchanged on its word (trusted), the others it checks;
// --verify trusts none; and the record stays true after a promotion, whose repositories
// taken whole are named without a look.
func TestSettledPlain(t *testing.T) {
	src := newSource(t)
	src.demo()
	pushForeign(t, src)
	out := t.TempDir()
	tree := layout.NewTree(out)
	recorded := func() []string {
		t.Helper()
		b, err := os.ReadFile(tree.Path(layout.SettledFile))
		if err != nil {
			t.Fatalf("settled record: %v", err)
		}
		_, plain, ok := strings.Cut(string(b), "\n.\n")
		if !ok {
			t.Fatalf("settled record %q: no plain repositories", b)
		}
		return strings.Fields(plain)
	}
	recomputed := func() []string {
		t.Helper()
		m, _, err := tree.Load()
		if err != nil {
			t.Fatal(err)
		}
		var plain []string
		for name, repo := range m.Repositories {
			if plainIn(m, repo) {
				plain = append(plain, name)
			}
		}
		slices.Sort(plain)
		return plain
	}
	steps := []struct {
		name        string
		before      func()
		verify      bool
		wantTrusted func(plainBefore []string) int
	}{
		{"first generation", func() {}, false, func([]string) int { return 0 }},
		{"no-op", func() {}, false, func(p []string) int { return len(p) }},
		{"image pushed to a new repository, a tag of another", func() {
			img, err := random.Image(512, 2)
			if err != nil {
				t.Fatal(err)
			}
			src.pushImage("fedora/new", "1", img)
			src.pushImage("fedora/httpd", "latest", img)
		}, false, func(p []string) int { return len(p) - 1 }},
		{"--verify", func() {}, true, func([]string) int { return 0 }},
	}
	var before []string
	for _, st := range steps {
		st.before()
		o := src.opts(out)
		o.Verify = st.verify
		sum := mustRun(t, o)
		if want := st.wantTrusted(before); sum.trusted != want {
			t.Errorf("%s: got %d repositories taken on the record's word, want %d (of %q)", st.name, sum.trusted, want, before)
		}
		if sum.ForeignSkipped != 1 {
			t.Errorf("%s: got %d foreign layers skipped, want 1", st.name, sum.ForeignSkipped)
		}
		got, want := recorded(), recomputed()
		if !slices.Equal(got, want) {
			t.Errorf("%s: settled record's plain repositories: got %q, want %q", st.name, got, want)
		}
		if slices.Contains(got, "win") || !slices.Contains(got, "fedora/httpd") {
			t.Errorf("%s: plain repositories %q: want fedora/httpd and not win (a foreign layer)", st.name, got)
		}
		before = got
	}
}
