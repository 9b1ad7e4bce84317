package e2e

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/regmirror/regmirror/generator"
	"github.com/regmirror/regmirror/internal/testsupport/metacmp"
	"github.com/regmirror/regmirror/layout"
)

// TestPackCacheGenerate: generate with a pack cache (--cache-dir) publishes what generate
// without one publishes, run after run (the first load of the base writes its copy, the
// next ones read it): the same content, the same metadata files (named by their bytes), the
// same index.json; and the copy is read, not written again.
func TestPackCacheGenerate(t *testing.T) {
	src := newScaleSource(t, 20, 100) // 6,000 manifests: a base pack above the cache's minimum (3,600 is below it)
	dir := t.TempDir()
	cache := filepath.Join(dir, "packs")
	now := time.Date(2026, 12, 1, 6, 0, 0, 0, time.UTC)
	var copyFile string
	var copyInfo os.FileInfo
	for i, step := range []struct {
		name    string
		promote int
		archive []string
	}{
		{name: "first"},
		{name: "promotion (the copy written)", promote: 10},
		{name: "promotion (the copy read)", promote: 10},
		{name: "tags archived", archive: []string{"bench/r00002:*"}},
		{name: "no-op"},
	} {
		if step.promote > 0 {
			src.Promote(step.promote)
		}
		now = now.Add(time.Hour)
		var metas [2]*layout.Meta
		var stamps [2]layout.Stamp
		for j, cacheDir := range []string{"", cache} {
			out := filepath.Join(dir, []string{"plain", "cached"}[j])
			o := generator.Options{Source: src.URL, Out: out, CacheDir: cacheDir, Archive: step.archive, GCGrace: 90 * time.Minute, Now: func() time.Time { return now }}
			if i == 0 && j == 1 { // the same first generation: a copy of the tree
				copyTree(t, filepath.Join(dir, "plain"), o.Out)
			} else if _, err := generator.Run(context.Background(), o); err != nil {
				t.Fatalf("step %d (%s): generate (cache %q): %v", i, step.name, cacheDir, err)
			}
			var err error
			if metas[j], stamps[j], err = layout.NewTree(out).Load(); err != nil {
				t.Fatal(err)
			}
		}
		if d := metacmp.Diff(metas[1], metas[0]); d != "" {
			t.Fatalf("step %d (%s): with the cache, the content differs in %s", i, step.name, d)
		}
		// The network file and the packs are named by their bytes; the root holds the time.
		if got, want := stamps[1].MetaFiles, stamps[0].MetaFiles; got != want {
			t.Fatalf("step %d (%s): metadata files: got %q, want %q", i, step.name, got, want)
		}
		a, errA := os.ReadFile(filepath.Join(dir, "plain", layout.IndexFile))
		b, errB := os.ReadFile(filepath.Join(dir, "cached", layout.IndexFile))
		if errA != nil || errB != nil || !bytes.Equal(a, b) {
			t.Fatalf("step %d (%s): index.json differs (%v, %v)", i, step.name, errA, errB)
		}

		copies, err := filepath.Glob(filepath.Join(cache, "*.pack"))
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case i == 0:
			if len(copies) != 0 { // the first run loads nothing
				t.Fatalf("step %d (%s): copies %q, want none", i, step.name, copies)
			}
		case copyFile == "":
			if len(copies) != 1 || !strings.Contains(stamps[1].MetaFiles, strings.TrimSuffix(filepath.Base(copies[0]), ".pack")) {
				t.Fatalf("step %d (%s): copies %q, want the base pack's of %q", i, step.name, copies, stamps[1].MetaFiles)
			}
			copyFile = copies[0]
			if copyInfo, err = os.Stat(copyFile); err != nil {
				t.Fatal(err)
			}
		default:
			fi, err := os.Stat(copyFile)
			if err != nil {
				t.Fatalf("step %d (%s): the copy is gone: %v", i, step.name, err)
			}
			// Read, it is marked used (its time); written again, it would be a new file.
			if !os.SameFile(fi, copyInfo) || !fi.ModTime().After(copyInfo.ModTime()) {
				t.Fatalf("step %d (%s): the copy was not read (same file %v, used %v, before %v)", i, step.name, os.SameFile(fi, copyInfo), fi.ModTime(), copyInfo.ModTime())
			}
			copyInfo = fi
		}
	}
	// The runs kept vouches for the cached tree (layout.Tree.UseVouches), the base pack
	// among them: checked against its name by the first load, not hashed again since.
	vouches, err := filepath.Glob(filepath.Join(cache, "vouches-*"))
	if err != nil || len(vouches) != 1 {
		t.Fatalf("vouches: got %q (%v), want one file, the cached tree's", vouches, err)
	}
	b, err := os.ReadFile(vouches[0])
	if err != nil {
		t.Fatal(err)
	}
	base, err := layout.ParseDigest("sha256:" + strings.TrimSuffix(filepath.Base(copyFile), ".pack"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), " "+layout.MetaPath(base)+"\n") {
		t.Errorf("vouches:\n%s\nwant the base pack %s among them", b, layout.MetaPath(base))
	}
}
