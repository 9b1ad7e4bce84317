package e2e

import (
	"bytes"
	"context"
	"github.com/regmirror/regmirror/internal/testsupport/metacmp"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/regmirror/regmirror/generator"
	"github.com/regmirror/regmirror/layout"
)

// TestScaleMembershipFollowsTheChange: on the scale benchmark's source (two-arch indexes,
// layers shared by every image of an architecture, by a repository's images, and unique),
// over promotions that move and add tags and archive changes, the subset membership a run
// records from the change since the previous generation is the one `--verify` records from
// every manifest: the same subset table and, for every blob, the same subsets, former
// subsets, time it left them and generation it appeared in.
func TestScaleMembershipFollowsTheChange(t *testing.T) {
	src := newScaleSource(t, 6, 12)
	dir := t.TempDir()
	now := time.Date(2026, 11, 30, 6, 0, 0, 0, time.UTC)
	steps := []struct {
		name    string
		promote int
		archive []string
	}{
		{name: "first"},
		{name: "promotion", promote: 10},
		{name: "promotion, a repository archived", promote: 10, archive: []string{"bench/r00002:*"}},
		{name: "some tags archived", archive: []string{"bench/r00002:*", "bench/*:t00000[0-4]"}},
		{name: "promotion, nothing archived", promote: 10},
		{name: "no-op"},
	}
	for i, step := range steps {
		if step.promote > 0 {
			src.Promote(step.promote)
		}
		now = now.Add(time.Hour)
		var got [2]*layout.Meta
		for j, verify := range []bool{false, true} {
			out := filepath.Join(dir, []string{"since", "full"}[j])
			o := generator.Options{Source: src.URL, Out: out, Archive: step.archive, Verify: verify, GCGrace: 90 * time.Minute, Now: func() time.Time { return now }}
			if _, err := generator.Run(context.Background(), o); err != nil {
				t.Fatalf("step %d (%s): generate: %v", i, step.name, err)
			}
			m, _, err := layout.NewTree(out).Load()
			if err != nil {
				t.Fatal(err)
			}
			got[j] = m
		}
		inc, full := got[0], got[1]
		if !slices.Equal(inc.Subsets, full.Subsets) {
			t.Fatalf("step %d (%s): subsets: got %q, want %q", i, step.name, inc.Subsets, full.Subsets)
		}
		if len(inc.Blobs) != len(full.Blobs) {
			t.Fatalf("step %d (%s): blobs: got %d, want %d", i, step.name, len(inc.Blobs), len(full.Blobs))
		}
		diffs := 0
		for d, want := range full.Blobs {
			b := inc.Blobs[d]
			if b == nil || b.Subsets != want.Subsets || b.Former != want.Former || !b.Left.Equal(want.Left) || b.Since != want.Since {
				if diffs++; diffs <= 5 {
					t.Errorf("step %d (%s): blob %s: got %+v, want %+v", i, step.name, d, b, want)
				}
			}
		}
		if diffs > 0 {
			t.Fatalf("step %d (%s): %d blobs differ", i, step.name, diffs)
		}
		// The rest of the content too: what a run takes from the previous generation
		// (repositories taken whole, retiring sets, orphans) is what walking every manifest
		// gives, and so are the files the publication renders from it.
		if d := metacmp.Diff(inc, full); d != "" {
			t.Fatalf("step %d (%s): differs from --verify's in %s", i, step.name, d)
		}
		for _, f := range append([]string{layout.IndexFile}, subsetFilterFiles(t, filepath.Join(dir, "full"))...) {
			a, errA := os.ReadFile(filepath.Join(dir, "since", f))
			b, errB := os.ReadFile(filepath.Join(dir, "full", f))
			if errA != nil || errB != nil || !bytes.Equal(a, b) {
				t.Fatalf("step %d (%s): %s differs from --verify's (%v, %v)", i, step.name, f, errA, errB)
			}
		}
	}
}

// subsetFilterFiles are the live publication's subset filter files (tree-relative).
func subsetFilterFiles(t *testing.T, tree string) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(tree, layout.LiveLink, layout.SubsetsDir))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, layout.LiveLink+"/"+layout.SubsetsDir+"/"+e.Name())
	}
	if len(out) == 0 {
		t.Fatal("no subset filter in the live publication")
	}
	return out
}
