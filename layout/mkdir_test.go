package layout

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestMkdirAllSynced: the parent of every directory made is fsynced, and nothing when the
// directory exists; a file in the way is an error.
func TestMkdirAllSynced(t *testing.T) {
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "a"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "file"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name    string
		dir     string
		synced  []string // relative to root; "." is root
		wantErr bool
	}{
		{"exists", "a", nil, false},
		{"one made", "a/b", []string{"a"}, false},
		{"three made", "a/c/d/e", []string{"a/c/d", "a/c", "a"}, false},
		{"below the root", "f", []string{"."}, false},
		{"a file in the way", "file/g", nil, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			var got []string
			err := mkdirAllSynced(filepath.Join(root, c.dir), func(dirs []string) error {
				for _, d := range dirs {
					rel, err := filepath.Rel(root, d)
					if err != nil {
						t.Fatal(err)
					}
					got = append(got, filepath.ToSlash(rel))
				}
				return SyncDirs(dirs)
			})
			if (err != nil) != c.wantErr {
				t.Fatalf("error: got %v, want error %v", err, c.wantErr)
			}
			if !slices.Equal(got, c.synced) {
				t.Errorf("directories fsynced: got %q, want %q", got, c.synced)
			}
			if fi, err := os.Stat(filepath.Join(root, c.dir)); !c.wantErr && (err != nil || !fi.IsDir()) {
				t.Errorf("%s: got %v (%v), want a directory", c.dir, fi, err)
			}
		})
	}
	// CreateFile makes the directories it needs the same way.
	f, err := CreateFile(filepath.Join(root, "x", "y", "z"))
	if err != nil {
		t.Fatal(err)
	}
	f.Abort()
	if fi, err := os.Stat(filepath.Join(root, "x", "y")); err != nil || !fi.IsDir() || strings.Contains(fi.Name(), TempPrefix) {
		t.Errorf("CreateFile's directory: got %v (%v), want x/y made", fi, err)
	}
}
