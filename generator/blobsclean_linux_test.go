package generator

import (
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/random"

	"github.com/regmirror/regmirror/layout"
)

// TestBlobsCleanNote: a run that publishes and leaves blobs/ holding only what its generation
// records notes it clean, and the next run then does not list it: a stray slipped in without
// changing the directory's time stays unseen, while one that changes it (anything that
// writes there does) is found and becomes an orphan. A run with a failed tag notes nothing.
func TestBlobsCleanNote(t *testing.T) {
	src := newSource(t)
	src.demo()
	out := t.TempDir()
	mustRun(t, src.opts(out))
	tree := layout.NewTree(out)
	dir := tree.Path(layout.BlobDir("sha256"))
	if err := syscall.Setxattr(dir, "user.regmirror.probe", []byte("1"), 0); errors.Is(err, syscall.ENOTSUP) {
		t.Skipf("%s keeps no extended attributes: generate lists blobs/ every run there", dir)
	}
	// Settle the directory (a note needs it left alone for a moment), and let a no-op run,
	// which writes nothing there, note it.
	old := time.Now().Add(-time.Hour).Truncate(time.Second)
	if err := os.Chtimes(dir, old, old); err != nil {
		t.Fatal(err)
	}
	mustRun(t, src.opts(out))
	m := checkTree(t, out)
	if !tree.BlobsClean(m.Generation) {
		t.Fatalf("after a clean no-op run: blobs/ not noted clean for generation %d", m.Generation)
	}
	stray := func(s string) layout.Digest {
		t.Helper()
		d := layout.DigestOf("sha256", []byte(s))
		if err := os.WriteFile(filepath.Join(out, layout.BlobPath(d)), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		return d
	}
	hidden := stray("slipped in behind the note\n")
	if err := os.Chtimes(dir, old, old); err != nil {
		t.Fatal(err)
	}
	mustRun(t, src.opts(out))
	if m := checkTree(t, out); m.Orphans[hidden] != nil {
		t.Errorf("a stray the note hides: got an orphan, want it unseen (blobs/ not listed)")
	}
	seen := stray("left by a run that failed before publishing\n")
	mustRun(t, src.opts(out))
	m = checkTree(t, out)
	for _, d := range []layout.Digest{hidden, seen} {
		if m.Orphans[d] == nil {
			t.Errorf("stray %s after blobs/ changed: got no orphan, want one", d)
		}
	}

	// A tag that fails leaves no note.
	img, err := random.Image(512, 1)
	if err != nil {
		t.Fatal(err)
	}
	src.pushImage("fedora/new", "1", img)
	src.addFault(&fault{method: "GET", match: pathHas("/blobs/"), do: func(w http.ResponseWriter, r *http.Request, _ http.Handler) {
		http.Error(w, "broken", http.StatusNotFound)
	}})
	if err := os.Chtimes(dir, old, old); err != nil {
		t.Fatal(err)
	}
	o := src.opts(out)
	o.Retries = 0
	var pe *PartialError
	if _, err := Run(t.Context(), o); !errors.As(err, &pe) || !pe.Published {
		t.Fatalf("Run with a failing blob: got %v, want a published partial run", err)
	}
	m = checkTree(t, out)
	if tree.BlobsClean(m.Generation) {
		t.Errorf("after a run with a failed tag: blobs/ noted clean, want not")
	}
}
