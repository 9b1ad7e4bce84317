package generator

import (
	"bytes"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/regmirror/regmirror/layout"
)

// TestArchiveAndKeepRemoved: --archive marks tags archived and their own blobs the archive
// subset; --keep-removed keeps a tag deleted at the source, archived, until --archive-max-age;
// the summary and the dry run give the bytes per subset.
func TestArchiveAndKeepRemoved(t *testing.T) {
	src := newSource(t)
	src.demo()
	out := filepath.Join(t.TempDir(), "tree")
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	o := src.opts(out)
	o.Archive = []string{"fedora/httpd:*"}
	o.KeepRemoved = true
	o.Now = func() time.Time { return now }
	sum := mustRun(t, o)
	m := checkTree(t, out)
	if got, want := m.Repositories["fedora/httpd"].Archived, []string{"2.4", "latest"}; !slices.Equal(got, want) {
		t.Errorf("fedora/httpd archived: got %v, want %v", got, want)
	}
	if got := m.Repositories["fedora"].Archived; len(got) != 0 {
		t.Errorf("fedora archived: got %v, want none", got)
	}
	sizes := map[string]int64{}
	for _, s := range sum.Subsets {
		sizes[s.Name] = s.Bytes
	}
	if sizes["archive"] == 0 || sizes["amd64"] == 0 || sizes["arm64"] == 0 {
		t.Errorf("summary subsets: got %v, want amd64, arm64 and archive bytes", sum.Subsets)
	}
	if !strings.Contains(sum.String(), "subsets: amd64 ") || !strings.Contains(sum.String(), "; 2 archived tags") {
		t.Errorf("summary line: got %q, want the bytes per subset and 2 archived tags", sum.String())
	}
	archiveMask := m.ContentMask([]string{layout.ArchiveSubset})
	amdMask := m.ContentMask([]string{"amd64"})
	live := map[layout.Digest]bool{}
	for name, r := range m.Repositories {
		if name != "fedora/httpd" {
			for _, d := range r.Blobs {
				live[d] = true
			}
		}
	}
	own := 0
	for _, d := range m.Repositories["fedora/httpd"].Blobs {
		b := m.Blobs[d]
		if live[d] { // a layer fedora:42 shares: its architecture's, not the archive's
			if !layout.Carries(amdMask, b) || layout.Carries(archiveMask, b) {
				t.Errorf("fedora/httpd blob %s, shared with a live image: subsets %b of %v, want amd64", d, b.Subsets, m.Subsets)
			}
			continue
		}
		own++
		if !layout.Carries(archiveMask, b) || layout.Carries(amdMask, b) {
			t.Errorf("fedora/httpd blob %s: subsets %b of %v, want archive only", d, b.Subsets, m.Subsets)
		}
	}
	if own == 0 {
		t.Fatalf("fedora/httpd has no blob of its own: the test checks nothing")
	}

	// Deleted at the source: kept, archived, since now.
	src.deleteTag("fedora/toolbox", "42")
	now = now.Add(time.Hour)
	sum = mustRun(t, o)
	m = checkTree(t, out)
	r := m.Repositories["fedora/toolbox"]
	if r == nil || r.Tags["42"].IsZero() || !r.IsArchived("42") || !r.Removed["42"].Equal(now) {
		t.Fatalf("fedora/toolbox:42 deleted at the source with --keep-removed: got %+v, want kept, archived, removed at %s", r, now)
	}
	if sum.TagsRemoved != 0 {
		t.Errorf("tags removed: got %d, want 0", sum.TagsRemoved)
	}

	// The dry run's plan shows the subsets.
	o.DryRun = true
	sum = mustRun(t, o)
	var b bytes.Buffer
	sum.Plan.Print(&b)
	if !strings.Contains(b.String(), "subsets: amd64 ") {
		t.Errorf("dry run plan: got %q, want the bytes per subset", b.String())
	}
	o.DryRun = false

	// Past --archive-max-age it goes; the removal time is kept until then.
	o.ArchiveMaxAge = 2 * time.Hour
	now = now.Add(time.Hour)
	mustRun(t, o)
	if r := checkTree(t, out).Repositories["fedora/toolbox"]; r == nil || r.Tags["42"].IsZero() {
		t.Fatalf("fedora/toolbox:42 an hour after removal, --archive-max-age 2h: gone, want kept")
	}
	now = now.Add(2 * time.Hour)
	sum = mustRun(t, o)
	if r := checkTree(t, out).Repositories["fedora/toolbox"]; r != nil && !r.Tags["42"].IsZero() {
		t.Errorf("fedora/toolbox:42 three hours after removal, --archive-max-age 2h: kept, want removed")
	}
	if sum.TagsRemoved != 1 {
		t.Errorf("tags removed: got %d, want 1", sum.TagsRemoved)
	}
}

func TestArchiveFlagErrors(t *testing.T) {
	src := newSource(t)
	for _, tc := range []struct {
		name string
		mod  func(*Options)
		err  string
	}{
		{"no tag part", func(o *Options) { o.Archive = []string{"fedora"} }, `Options.Archive "fedora": want a repository:tag pattern, like fedora:3[0-9]`},
		{"open class", func(o *Options) { o.Archive = []string{"fedora:[3"} }, `Options.Archive: pattern "fedora:[3": "[" without its closing ]`},
		{"max age without keep-removed", func(o *Options) { o.ArchiveMaxAge = time.Hour }, "Options.ArchiveMaxAge without Options.KeepRemoved: it ages out removed tags that Options.KeepRemoved keeps"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := src.opts(filepath.Join(t.TempDir(), "tree"))
			tc.mod(&o)
			_, err := Run(t.Context(), o)
			if err == nil || err.Error() != tc.err {
				t.Errorf("got %v, want %q", err, tc.err)
			}
		})
	}
}
