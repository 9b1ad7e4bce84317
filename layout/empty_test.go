package layout

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestEmptyFiles creates batches of empty files and checks what is on disk, the error when
// something is in the way, and what Sync would make durable (each directory, or the whole
// filesystem beyond the directories SyncDirs fsyncs each, syncDirsEach).
func TestEmptyFiles(t *testing.T) {
	// Each file in its own directory below v2/r/_digests: with ".", "v2", "v2/r" and
	// "v2/r/_digests", one directory more than syncDirsEach.
	many := make([]string, syncDirsEach-3)
	for i := range many {
		many[i] = fmt.Sprintf("v2/r/_digests/%03d/m.ext", i)
	}
	atMax := many[:len(many)-1] // syncDirsEach directories
	tests := []struct {
		name      string
		setup     func(t *testing.T, root string)
		paths     []string
		wantErr   string   // substring; "" for success
		wantDirs  []string // directories Sync fsyncs, when not the whole filesystem
		wantWhole bool
	}{
		{
			name:     "new files in new nested directories",
			paths:    []string{"v2/a/_digests/01/01.x", "v2/a/b/_digests/03/03.x"},
			wantDirs: []string{".", "v2", "v2/a", "v2/a/_digests", "v2/a/_digests/01", "v2/a/b", "v2/a/b/_digests", "v2/a/b/_digests/03"},
		},
		{
			name: "existing files and directories are kept",
			setup: func(t *testing.T, root string) {
				mkfile(t, root, "v2/a/_digests/01/01.x", "")
			},
			paths:    []string{"v2/a/_digests/01/01.x", "v2/a/_digests/02/02.x"},
			wantDirs: []string{"v2/a/_digests", "v2/a/_digests/01", "v2/a/_digests/02"},
		},
		{
			name: "symbolic link where the file should be",
			setup: func(t *testing.T, root string) {
				mkfile(t, root, "elsewhere/f", "")
				mkdir(t, root, "v2/a/_digests/01")
				symlink(t, filepath.Join(root, "elsewhere/f"), filepath.Join(root, "v2/a/_digests/01/01.x"))
			},
			paths:   []string{"v2/a/_digests/01/01.x"},
			wantErr: "is in the way (a symbolic link), not a regular file",
		},
		{
			name: "dangling symbolic link where the file should be",
			setup: func(t *testing.T, root string) {
				mkdir(t, root, "v2/a/_digests/01")
				symlink(t, filepath.Join(root, "elsewhere/f"), filepath.Join(root, "v2/a/_digests/01/01.x"))
			},
			paths:   []string{"v2/a/_digests/01/01.x"},
			wantErr: "is in the way (a symbolic link), not a regular file",
		},
		{
			name: "symbolic link where a directory should be",
			setup: func(t *testing.T, root string) {
				mkdir(t, root, "elsewhere")
				mkdir(t, root, "v2")
				symlink(t, filepath.Join(root, "elsewhere"), filepath.Join(root, "v2/a"))
			},
			paths:   []string{"v2/a/_digests/01/01.x"},
			wantErr: "is in the way (a symbolic link), not a directory",
		},
		{
			name: "symbolic link where the file's own directory should be",
			setup: func(t *testing.T, root string) {
				mkdir(t, root, "elsewhere")
				mkdir(t, root, "v2/a/_digests")
				symlink(t, filepath.Join(root, "elsewhere"), filepath.Join(root, "v2/a/_digests/01"))
			},
			paths:   []string{"v2/a/_digests/01/01.x"},
			wantErr: "is in the way (a symbolic link), not a directory",
		},
		{
			name: "a file where a directory should be",
			setup: func(t *testing.T, root string) {
				mkfile(t, root, "v2/a", "x")
			},
			paths:   []string{"v2/a/_digests/01/01.x"},
			wantErr: "is in the way (a regular file), not a directory",
		},
		{
			name:    "a path leaving the root",
			paths:   []string{"../out/01.x"},
			wantErr: "not a path below",
		},
		{
			name:     "at the threshold: each directory",
			paths:    atMax,
			wantDirs: slices.Concat([]string{".", "v2", "v2/r", "v2/r/_digests"}, dirsOf(atMax)),
		},
		{
			name:      "beyond the threshold: the whole filesystem",
			paths:     many,
			wantWhole: haveSyncFS,
			wantDirs:  wantDirsUnlessSyncFS(slices.Concat([]string{".", "v2", "v2/r", "v2/r/_digests"}, dirsOf(many))),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			if tt.setup != nil {
				tt.setup(t, root)
			}
			b := NewEmptyFiles(root)
			var err error
			for _, rel := range tt.paths {
				if err = b.Create(rel); err != nil {
					break
				}
			}
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got error %v, want one containing %q", err, tt.wantErr)
				}
				if _, err := os.Stat(filepath.Join(root, "elsewhere/_digests")); err == nil {
					t.Errorf("got elsewhere/_digests created through a link, want nothing written through it")
				}
				if fi, err := os.Stat(filepath.Join(root, "elsewhere/f")); err == nil && fi.Size() != 0 {
					t.Errorf("got elsewhere/f written through a link")
				}
				return
			}
			if err != nil {
				t.Fatalf("Create: %v", err)
			}
			if got, want := b.whole, tt.wantWhole; got != want {
				t.Errorf("got whole filesystem sync %v, want %v", got, want)
			}
			got := slices.Sorted(func(yield func(string) bool) {
				for d := range b.dirs {
					if !yield(d) {
						return
					}
				}
			})
			want := slices.Sorted(slices.Values(tt.wantDirs))
			if !slices.Equal(got, want) {
				t.Errorf("got directories to sync %q, want %q", got, want)
			}
			if err := b.Sync(); err != nil {
				t.Fatalf("Sync: %v", err)
			}
			for _, rel := range tt.paths {
				fi, err := os.Lstat(filepath.Join(root, rel))
				if err != nil {
					t.Fatalf("got %v, want %s created", err, rel)
				}
				if !fi.Mode().IsRegular() || fi.Size() != 0 {
					t.Errorf("got %s %v of %d bytes, want an empty regular file", rel, fi.Mode(), fi.Size())
				}
			}
		})
	}
}

// TestCreateEmptyFilesKeepsContent checks that a file already there is left as it is.
func TestCreateEmptyFilesKeepsContent(t *testing.T) {
	root := t.TempDir()
	mkfile(t, root, "a/b", "kept")
	if err := CreateEmptyFiles(root, []string{"a/b", "a/c"}); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(filepath.Join(root, "a/b")); err != nil || string(got) != "kept" {
		t.Errorf("got %q, %v, want a/b kept", got, err)
	}
}

// dirsOf are the directories of paths.
func dirsOf(paths []string) []string {
	var l []string
	for _, p := range paths {
		l = append(l, filepath.ToSlash(filepath.Dir(p)))
	}
	return l
}

// wantDirsUnlessSyncFS is dirs where the system has no syncfs, else none.
func wantDirsUnlessSyncFS(dirs []string) []string {
	if haveSyncFS {
		return nil
	}
	return dirs
}

func mkdir(t *testing.T, root, rel string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(root, rel), 0o755); err != nil {
		t.Fatal(err)
	}
}

func mkfile(t *testing.T, root, rel, data string) {
	t.Helper()
	mkdir(t, root, filepath.Dir(rel))
	if err := os.WriteFile(filepath.Join(root, rel), []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func symlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}

// BenchmarkEmptyFiles writes n digest-marker-shaped empty files
// (v2/REPO/_digests/HEX/HEX.ext, 100 per repository) into a new tree: one file at a time
// with WriteFile (temporary file, fsync, rename, directory fsync: how markers were written
// before) and as one EmptyFiles batch. 30 is a small promotion's change, 20000 a first
// generation's share.
//
//	go test ./layout -run '^$' -bench '^BenchmarkEmptyFiles$' -benchtime 1x -count 5
//
// On the shared 2-core machine (ext4, loaded), medians of 5: n=30 74.7 ms → 22.7 ms (60
// fsyncs → 34), n=20000 51.5 s → 5.0 s (40,000 fsyncs → one syncfs); interleaved runs of
// n=20000, medians of 3: 32.2 s → 7.1 s. The syncfs waits for whatever else is dirty on the
// filesystem, so its cost varies with the other writers.
func BenchmarkEmptyFiles(b *testing.B) {
	for _, n := range []int{30, 20000} {
		paths := make([]string, n)
		for i := range paths {
			hex := fmt.Sprintf("%064x", i)
			paths[i] = fmt.Sprintf("v2/repo%d/_digests/%s/%s.oci-manifest", i/100, hex, hex)
		}
		b.Run(fmt.Sprintf("n=%d/WriteFile", n), func(b *testing.B) {
			for b.Loop() {
				root := b.TempDir()
				for _, rel := range paths {
					if err := WriteFile(filepath.Join(root, filepath.FromSlash(rel)), nil); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
		b.Run(fmt.Sprintf("n=%d/EmptyFiles", n), func(b *testing.B) {
			for b.Loop() {
				if err := CreateEmptyFiles(b.TempDir(), paths); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
