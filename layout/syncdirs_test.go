package layout

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSyncDirs fsyncs sets of directories side by side: none, one, more than are synced at
// once, and sets with a missing directory, whose error names it whichever its place.
func TestSyncDirs(t *testing.T) {
	root := t.TempDir()
	dirs := make([]string, syncDirsAtOnce*2+3)
	for i := range dirs {
		dirs[i] = filepath.Join(root, fmt.Sprintf("d%03d", i))
		if err := os.Mkdir(dirs[i], 0o755); err != nil {
			t.Fatal(err)
		}
	}
	missing := filepath.Join(root, "missing")
	tests := []struct {
		name    string
		dirs    []string
		wantErr string // substring; "" for success
	}{
		{name: "none"},
		{name: "one", dirs: dirs[:1]},
		{name: "a few, each fsynced", dirs: dirs[:syncDirsEach]},
		{name: "more than at once (their filesystem synced, where it can be)", dirs: dirs},
		{name: "a few, missing last", dirs: append(dirs[:3:3], missing), wantErr: "missing"},
		{name: "only one, missing", dirs: []string{missing}, wantErr: "missing"},
		{name: "missing first", dirs: append([]string{missing}, dirs...), wantErr: "missing"},
		{name: "missing last", dirs: append(dirs[:len(dirs):len(dirs)], missing), wantErr: "missing"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := SyncDirs(tc.dirs)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("SyncDirs: got %v, want nil", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("SyncDirs: got %v, want an error naming %q", err, tc.wantErr)
			}
		})
	}
}

// TestWriteSharedDirNoDirSync writes the same shared directory both ways: the same name and
// content, and an existing one kept.
func TestWriteSharedDirNoDirSync(t *testing.T) {
	entries := map[string]SharedEntry{"_tags.json": {Data: []byte(`{"tags":["a"]}`)}, "x/y": {Data: []byte("y")}}
	a := NewTree(t.TempDir())
	b := NewTree(t.TempDir())
	got, err := a.WriteSharedDirNoDirSync("v2-tags", entries)
	if err != nil {
		t.Fatal(err)
	}
	want, err := b.WriteSharedDir("v2-tags", entries)
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Fatalf("WriteSharedDirNoDirSync: got %s, want %s (WriteSharedDir's)", got, want)
	}
	for n, e := range entries {
		data, err := os.ReadFile(a.Path(got + "/" + n))
		if err != nil || string(data) != string(e.Data) {
			t.Errorf("%s: got %q (%v), want %q", n, data, err, e.Data)
		}
	}
	again, err := a.WriteSharedDirNoDirSync("v2-tags", entries)
	if err != nil || again != got {
		t.Fatalf("written again: got %s (%v), want %s", again, err, got)
	}
}
