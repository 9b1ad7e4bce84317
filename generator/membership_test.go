package generator

import (
	"path/filepath"
	"slices"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"

	"github.com/regmirror/regmirror/layout"
)

// TestMembershipFollowsTheChange: the membership a run records from the change since the
// previous generation (layout.MembershipSince) is the one --verify records from every manifest
// (layout.Membership), generation after generation: tags archived and deleted, a tag moved to
// an image of another architecture (its layers, some shared with an unchanged repository,
// retiring), and a no-op.
func TestMembershipFollowsTheChange(t *testing.T) {
	src := newSource(t)
	src.demo()
	dir := t.TempDir()
	now := time.Date(2026, 11, 30, 6, 0, 0, 0, time.UTC)
	arm, err := random.Image(512, 2)
	if err != nil {
		t.Fatal(err)
	}
	if arm, err = withArchitecture(arm, "arm64"); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name    string
		archive []string
		change  func()
	}{
		{name: "first"},
		{name: "archived and deleted", archive: []string{"fedora/httpd:*"}, change: func() { src.deleteTag("fedora", "latest") }},
		{name: "moved to arm64", archive: []string{"fedora/httpd:*"}, change: func() { src.pushImage("fedora/toolbox", "42", arm) }},
		{name: "unarchived", change: func() {}},
		{name: "no-op", change: func() {}},
	}
	for i, step := range steps {
		if step.change != nil {
			step.change()
		}
		now = now.Add(time.Hour)
		var got [2]*layout.Meta
		for j, verify := range []bool{false, true} {
			o := src.opts(filepath.Join(dir, []string{"since", "full"}[j]))
			o.Archive, o.Verify, o.GCGrace = step.archive, verify, 90*time.Minute
			o.Now = func() time.Time { return now }
			mustRun(t, o)
			got[j] = checkTree(t, o.Out)
		}
		inc, full := got[0], got[1]
		if !slices.Equal(inc.Subsets, full.Subsets) {
			t.Fatalf("step %d (%s): subsets: got %q, want %q", i, step.name, inc.Subsets, full.Subsets)
		}
		if len(inc.Blobs) != len(full.Blobs) {
			t.Fatalf("step %d (%s): blobs: got %d, want %d", i, step.name, len(inc.Blobs), len(full.Blobs))
		}
		for d, want := range full.Blobs {
			b := inc.Blobs[d]
			if b == nil || b.Subsets != want.Subsets || b.Former != want.Former || !b.Left.Equal(want.Left) || b.Since != want.Since {
				t.Errorf("step %d (%s): blob %s: got %+v, want %+v", i, step.name, d, b, want)
			}
		}
	}
}

// withArchitecture is img with its config naming arch.
func withArchitecture(img v1.Image, arch string) (v1.Image, error) {
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.Architecture, cf.OS = arch, "linux"
	return mutate.ConfigFile(img, cf)
}
