package layout

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// needXattrs skips, saying why, where the test's file system keeps no extended attributes.
func needXattrs(t *testing.T, dir string) {
	t.Helper()
	if err := syscall.Setxattr(dir, "user.regmirror.probe", []byte("1"), 0); errors.Is(err, syscall.ENOTSUP) {
		t.Skipf("%s keeps no extended attributes: the blobs/ note cannot be tested here", dir)
	} else if err != nil {
		t.Fatal(err)
	}
}

// TestBlobsClean: the note holds for the generation it was made for while blobs/sha256 is
// unchanged; a file created there, a later generation, clearing it, or a change too recent to
// tell from the next void it.
func TestBlobsClean(t *testing.T) {
	tree := NewTree(t.TempDir())
	dir := tree.Path(BlobDir("sha256"))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	needXattrs(t, dir)
	settle := func() {
		t.Helper()
		old := time.Now().Add(-time.Hour)
		if err := os.Chtimes(dir, old, old); err != nil {
			t.Fatal(err)
		}
	}
	mark := func(gen uint64) {
		t.Helper()
		if err := tree.MarkBlobsClean(gen); err != nil {
			t.Fatal(err)
		}
	}
	if tree.BlobsClean(0) || tree.BlobsClean(3) {
		t.Fatalf("a directory never noted: got clean, want not")
	}
	settle()
	mark(3)
	tests := []struct {
		name  string
		gen   uint64
		apply func()
		want  bool
	}{
		{"noted", 3, func() {}, true},
		{"a later generation", 4, func() {}, false},
		{"noted again", 3, func() {}, true},
		{"a file created", 3, func() {
			if err := os.WriteFile(filepath.Join(dir, "x"), []byte("x"), 0o644); err != nil {
				t.Fatal(err)
			}
		}, false},
		{"noted once settled", 3, func() { settle(); mark(3) }, true},
		{"cleared", 3, tree.ClearBlobsClean, false},
		{"noted right after a change", 3, func() {
			if err := os.Remove(filepath.Join(dir, "x")); err != nil {
				t.Fatal(err)
			}
			mark(3)
		}, false},
	}
	for _, tc := range tests {
		tc.apply()
		if got := tree.BlobsClean(tc.gen); got != tc.want {
			t.Errorf("%s: BlobsClean(%d): got %v, want %v", tc.name, tc.gen, got, tc.want)
		}
	}
}
