package generator

import (
	"bytes"
	"context"
	"errors"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/regmirror/regmirror/internal/testsupport/testimages"
	"github.com/regmirror/regmirror/layout"
)

func TestFullSyncDemo(t *testing.T) {
	src := newSource(t)
	want := src.demo()
	out := t.TempDir()
	sum := mustRun(t, src.opts(out))
	m := checkTree(t, out)

	if m.Generation != 1 || sum.Generation != 1 {
		t.Errorf("generation: got meta %d, summary %d, want 1", m.Generation, sum.Generation)
	}
	got := indexRefs(t, out)
	if len(got) != len(want) {
		t.Errorf("index.json: got %d refs (%s), want %d (%s)", len(got), fmtMap(got), len(want), fmtMap(want))
	}
	for ref, d := range want {
		if got[ref] != d {
			t.Errorf("index.json %s: got %q, want %q", ref, got[ref], d)
		}
		repo, tag, _ := strings.Cut(ref, ":")
		if r := m.Repositories[repo]; r == nil || r.Tags[tag].String() != d {
			t.Errorf("meta %s: got %v, want %s", ref, m.Repositories[repo], d)
		}
	}
	if sum.Tags != len(want) || sum.TagsAdded != len(want) {
		t.Errorf("summary tags: got %d (%d added), want %d", sum.Tags, sum.TagsAdded, len(want))
	}
	// Every blob file is in Meta.Blobs with Since 1, and each is one file.
	ents, err := os.ReadDir(filepath.Join(out, "blobs", "sha256"))
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != len(m.Blobs) {
		t.Errorf("blob files: got %d, want %d (Meta.Blobs)", len(ents), len(m.Blobs))
	}
	for d, b := range m.Blobs {
		if b.Since != 1 {
			t.Errorf("blob %s: Since %d, want 1", d, b.Since)
		}
	}
	// The fetched blobs plus manifests written make up the tree.
	if sum.BlobsFetched+sum.Manifests != len(m.Blobs) {
		t.Errorf("blobs fetched %d + manifests %d, want %d (all blobs)", sum.BlobsFetched, sum.Manifests, len(m.Blobs))
	}
	// Repository lists are sorted and complete.
	for name, r := range m.Repositories {
		for i := 1; i < len(r.Blobs); i++ {
			if r.Blobs[i-1].String() >= r.Blobs[i].String() {
				t.Errorf("%s: Blobs not sorted", name)
			}
		}
		for _, d := range r.Manifests {
			if _, ok := m.Manifests[d]; !ok {
				t.Errorf("%s: manifest %s missing from Meta.Manifests", name, d)
			}
		}
	}
	if tmp := listTemps(t, out); len(tmp) != 0 {
		t.Errorf("temporary files left: %v", tmp)
	}
}

func TestNoopResyncCostsOneRequestPerTag(t *testing.T) {
	src := newSource(t)
	want := src.demo()
	out := t.TempDir()
	mustRun(t, src.opts(out))
	first := checkTree(t, out)
	src.resetCounts()

	sum := mustRun(t, src.opts(out))
	counts := src.resetCounts()
	m := checkTree(t, out)

	if got := counts["HEAD manifest"]; got != len(want) {
		t.Errorf("manifest HEADs: got %d, want %d (one per tag)", got, len(want))
	}
	for _, k := range []string{"GET manifest", "GET blob", "HEAD blob"} {
		if counts[k] != 0 {
			t.Errorf("%s: got %d requests, want 0 on a no-op run", k, counts[k])
		}
	}
	if sum.BlobsFetched != 0 || sum.TagsAdded+sum.TagsChanged+sum.TagsRemoved != 0 {
		t.Errorf("no-op summary: got %+v", sum.Counts)
	}
	// Nothing fetched: each blob but the manifests is counted present, once.
	if want := len(m.Blobs) - len(m.Manifests); sum.BlobsPresent != want {
		t.Errorf("no-op: %d blobs present, want %d (every blob record but the manifests')", sum.BlobsPresent, want)
	}
	if m.Generation != first.Generation+1 {
		t.Errorf("generation: got %d, want %d", m.Generation, first.Generation+1)
	}
	for d, b := range m.Blobs {
		if b.Since != first.Blobs[d].Since {
			t.Errorf("blob %s: Since %d, want %d kept", d, b.Since, first.Blobs[d].Since)
		}
	}
	t.Logf("no-op requests: %v", counts)
}

// TestTagRemovalRetiresThenCollects: a repository whose only tag left the source retires its
// content (served by digest, out of the catalog) for the grace period, then its files go.
func TestTagRemovalRetiresThenCollects(t *testing.T) {
	src := newSource(t)
	src.demo()
	out := t.TempDir()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	o := src.opts(out)
	o.Now = func() time.Time { return now }
	o.GCGrace = time.Hour
	mustRun(t, o)
	before := checkTree(t, out)
	minimal := before.Repositories["fedora/minimal"]
	if minimal == nil {
		t.Fatal("fedora/minimal not published")
	}

	src.deleteTag("fedora/minimal", "42")
	sum := mustRun(t, o)
	m := checkTree(t, out)
	repo := m.Repositories["fedora/minimal"]
	switch {
	case repo == nil:
		t.Fatalf("fedora/minimal dropped at once, want it kept retiring")
	case repo.Published() || len(repo.Manifests) > 0 || len(repo.Blobs) > 0:
		t.Errorf("fedora/minimal: got tags %v, manifests %v, blobs %v; want none (retiring only)", repo.Tags, repo.Manifests, repo.Blobs)
	}
	if sum.TagsRemoved != 1 || sum.Repositories != len(before.Repositories)-1 {
		t.Errorf("tags removed, repositories: got %d, %d; want 1, %d", sum.TagsRemoved, sum.Repositories, len(before.Repositories)-1)
	}
	if got, want := repo.Retiring, minimal.Manifests; !slices.Equal(got, want) {
		t.Errorf("retiring manifests: got %v, want %v", got, want)
	}
	if got, want := repo.RetiringBlobs, minimal.Blobs; !slices.Equal(got, want) {
		t.Errorf("retiring blobs: got %v, want %v", got, want)
	}
	if sum.RetiringManifests != len(minimal.Manifests) || sum.RetiringBlobs != len(minimal.Blobs) || sum.RetiringBytes <= 0 {
		t.Errorf("summary: got retiring %d manifests, %d blobs, %d bytes; want %d, %d, > 0",
			sum.RetiringManifests, sum.RetiringBlobs, sum.RetiringBytes, len(minimal.Manifests), len(minimal.Blobs))
	}
	if !strings.Contains(sum.String(), "retiring 1 manifests") {
		t.Errorf("summary line lacks the retiring set: %s", sum)
	}
	gone := append(append([]layout.Digest{}, minimal.Blobs...), minimal.Manifests...)
	for _, d := range gone {
		b, ok := m.Blobs[d]
		if !ok {
			t.Errorf("%s: not kept among the blobs while retiring", d)
			continue
		}
		if !b.Retired.Equal(now) || b.Since != before.Blobs[d].Since {
			t.Errorf("retiring %s: got %+v, want Retired %v, Since %d", d, b, now, before.Blobs[d].Since)
		}
		if _, ok := m.Orphans[d]; ok {
			t.Errorf("retiring %s is also an orphan", d)
		}
		if _, err := os.Stat(filepath.Join(out, layout.BlobPath(d))); err != nil {
			t.Errorf("retiring %s deleted within the grace period: %v", d, err)
		}
	}

	// Exactly at the grace period: kept. Past it: deleted, and the repository is gone.
	now = now.Add(time.Hour)
	mustRun(t, o)
	for _, d := range gone {
		if _, err := os.Stat(filepath.Join(out, layout.BlobPath(d))); err != nil {
			t.Errorf("retiring %s deleted at exactly the grace period: %v", d, err)
		}
	}
	now = now.Add(time.Second)
	sum = mustRun(t, o)
	m = checkTree(t, out)
	if sum.Deleted != len(gone) {
		t.Errorf("deleted: got %d, want %d", sum.Deleted, len(gone))
	}
	if _, ok := m.Repositories["fedora/minimal"]; ok {
		t.Errorf("fedora/minimal still in the metadata after its retiring content expired")
	}
	for _, d := range gone {
		if _, err := os.Stat(filepath.Join(out, layout.BlobPath(d))); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("retired %s past the grace period: got %v, want deleted", d, err)
		}
		if _, ok := m.Orphans[d]; ok {
			t.Errorf("deleted %s still listed as an orphan", d)
		}
		if _, ok := m.Manifests[d]; ok {
			t.Errorf("deleted %s still among the manifests", d)
		}
	}
}

// TestRetiringKeepsThePreviousGenerationWhateverTheGrace: with a grace of 1ns, what the
// previous generation published stays (retiring) for one generation, then goes.
func TestRetiringKeepsThePreviousGenerationWhateverTheGrace(t *testing.T) {
	src := newSource(t)
	src.demo()
	out := t.TempDir()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	o := src.opts(out)
	o.Now = func() time.Time { now = now.Add(time.Minute); return now }
	o.GCGrace = time.Nanosecond
	mustRun(t, o)
	minimal := checkTree(t, out).Repositories["fedora/minimal"]
	src.deleteTag("fedora/minimal", "42")
	mustRun(t, o)
	m := checkTree(t, out)
	for _, d := range append(append([]layout.Digest{}, minimal.Blobs...), minimal.Manifests...) {
		if _, err := os.Stat(filepath.Join(out, layout.BlobPath(d))); err != nil {
			t.Errorf("%s: deleted by the generation that retired it: %v", d, err)
		}
	}
	if r := m.Repositories["fedora/minimal"]; r == nil || len(r.Retiring) != len(minimal.Manifests) {
		t.Fatalf("fedora/minimal: got %+v, want its manifests retiring", r)
	}
	sum := mustRun(t, o)
	if sum.Deleted != len(minimal.Blobs)+len(minimal.Manifests) || sum.RetiringManifests != 0 {
		t.Errorf("next generation: got %d deleted, %d retiring manifests; want %d, 0", sum.Deleted, sum.RetiringManifests, len(minimal.Blobs)+len(minimal.Manifests))
	}
}

// TestMovedTagRetiresPerRepository: a tag moving to another image retires the old image in
// its repository even when another repository still references it; the dry run shows it.
func TestMovedTagRetiresPerRepository(t *testing.T) {
	src := newSource(t)
	src.demo()
	refs, err := testimages.Demo()
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	o := src.opts(out)
	mustRun(t, o)
	prev := checkTree(t, out)
	old := prev.Repositories["fedora/httpd"].Tags["latest"]
	// Re-point fedora/httpd:latest and :2.4 at fedora/minimal's image.
	minimal := prev.Repositories["fedora/minimal"].Tags["42"]
	var img v1.Image
	for _, r := range refs {
		if r.Repo == "fedora/minimal" && r.Image != nil {
			img = r.Image
		}
	}
	if img == nil {
		t.Fatal("no fedora/minimal:42 in the demo set")
	}
	for _, tag := range []string{"latest", "2.4"} {
		src.pushImage("fedora/httpd", tag, img)
	}

	dry := o
	dry.DryRun = true
	sum, err := Run(context.Background(), dry)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	sum.Plan.Print(&buf)
	if want := "retire fedora/httpd@" + old.String(); !strings.Contains(buf.String(), want) {
		t.Errorf("dry-run plan lacks %q:\n%s", want, buf.String())
	}
	if !strings.Contains(buf.String(), "retiring 1 manifests") {
		t.Errorf("dry-run plan lacks the retiring totals:\n%s", buf.String())
	}

	mustRun(t, o)
	m := checkTree(t, out)
	httpd := m.Repositories["fedora/httpd"]
	if got := httpd.Tags["latest"]; got != minimal {
		t.Fatalf("fedora/httpd:latest: got %s, want %s", got, minimal)
	}
	if !slices.Contains(httpd.Retiring, old) {
		t.Errorf("fedora/httpd retiring: got %v, want %s among them", httpd.Retiring, old)
	}
	for _, d := range prev.Repositories["fedora/httpd"].Blobs {
		if slices.Contains(httpd.Blobs, d) != !slices.Contains(httpd.RetiringBlobs, d) {
			t.Errorf("blob %s: got referenced %v, retiring %v; want exactly one", d, slices.Contains(httpd.Blobs, d), slices.Contains(httpd.RetiringBlobs, d))
		}
	}
	if _, ok := m.Manifests[old]; !ok {
		t.Errorf("retiring manifest %s lost its bytes", old)
	}
	if len(m.Repositories["fedora/minimal"].Retiring) != 0 {
		t.Errorf("fedora/minimal retires %v, want nothing (unchanged)", m.Repositories["fedora/minimal"].Retiring)
	}
}

func TestOrphanReturnsKeepingSince(t *testing.T) {
	src := newSource(t)
	src.demo()
	out := t.TempDir()
	o := src.opts(out)
	mustRun(t, o)
	first := checkTree(t, out)
	src.deleteTag("fedora/minimal", "42")
	mustRun(t, o)
	// Push it again: the blobs come back from the orphans with their first generation.
	refs := src.demo()
	_ = refs
	mustRun(t, o)
	m := checkTree(t, out)
	for _, d := range first.Repositories["fedora/minimal"].Blobs {
		b, ok := m.Blobs[d]
		if !ok {
			t.Errorf("%s: not back among the blobs", d)
			continue
		}
		if b.Since != first.Blobs[d].Since {
			t.Errorf("%s: Since %d, want %d", d, b.Since, first.Blobs[d].Since)
		}
		if _, ok := m.Orphans[d]; ok {
			t.Errorf("%s: still an orphan", d)
		}
	}
}

func TestRepoGlobSelects(t *testing.T) {
	src := newSource(t)
	src.demo()
	tests := []struct {
		name  string
		globs []string
		want  []string
	}{
		{"all", nil, []string{"fedora", "fedora/httpd", "fedora/minimal", "fedora/toolbox"}},
		{"one segment", []string{"fedora/*"}, []string{"fedora/httpd", "fedora/minimal", "fedora/toolbox"}},
		{"exact", []string{"fedora"}, []string{"fedora"}},
		{"across", []string{"**/toolbox"}, []string{"fedora/toolbox"}},
		{"two globs", []string{"fedora", "*/httpd"}, []string{"fedora", "fedora/httpd"}},
		{"none", []string{"debian/**"}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out := t.TempDir()
			o := src.opts(out)
			o.Repos = tc.globs
			mustRun(t, o)
			m := checkTree(t, out)
			var got []string
			for name := range m.Repositories {
				got = append(got, name)
			}
			if strings.Join(sorted(got), ",") != strings.Join(tc.want, ",") {
				t.Errorf("got %v, want %v", sorted(got), tc.want)
			}
		})
	}
}

func TestDryRunWritesNothing(t *testing.T) {
	src := newSource(t)
	want := src.demo()
	out := filepath.Join(t.TempDir(), "tree")
	o := src.opts(out)
	o.DryRun = true
	sum := mustRun(t, o)
	if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("dry run created %s: %v", out, err)
	}
	if sum.Plan == nil || len(sum.Plan.Added) != len(want) {
		t.Fatalf("plan: got %+v, want %d tags added", sum.Plan, len(want))
	}
	if sum.Plan.BlobsToFetch == 0 || sum.Plan.BytesToFetch == 0 {
		t.Errorf("plan fetches nothing: %+v", sum.Plan)
	}

	// After a real run, the plan for a removed tag.
	o.DryRun = false
	mustRun(t, o)
	src.deleteTag("fedora/httpd", "2.4")
	before := snapshot(t, out)
	o.DryRun = true
	sum = mustRun(t, o)
	if after := snapshot(t, out); after != before {
		t.Errorf("dry run changed the tree:\nbefore %s\nafter  %s", before, after)
	}
	if len(sum.Plan.Removed) != 1 || !strings.Contains(sum.Plan.Removed[0], "fedora/httpd:2.4") {
		t.Errorf("plan removed: got %v, want fedora/httpd:2.4", sum.Plan.Removed)
	}
	if sum.Plan.BlobsToFetch != 0 {
		t.Errorf("plan fetches %d blobs, want 0", sum.Plan.BlobsToFetch)
	}
}

// TestDryRunCountsEqualRun: what a dry run plans to fetch and write is what the run then
// says it fetched and wrote, for a first run and for a promotion.
func TestDryRunCountsEqualRun(t *testing.T) {
	src := newSource(t)
	src.demo()
	out := filepath.Join(t.TempDir(), "tree")
	o := src.opts(out)
	for _, step := range []struct {
		name   string
		change func()
	}{
		{"first run", func() {}},
		{"a new image", func() {
			img, err := random.Image(3000, 2)
			if err != nil {
				t.Fatal(err)
			}
			src.pushImage("fedora/extra", "1", img)
		}},
		{"nothing new", func() {}},
	} {
		t.Run(step.name, func(t *testing.T) {
			step.change()
			o.DryRun = true
			plan := mustRun(t, o).Plan
			o.DryRun = false
			sum := mustRun(t, o)
			if plan.BlobsToFetch != sum.BlobsFetched || plan.BytesToFetch != sum.BytesFetched || plan.ManifestsToWrite != sum.ManifestsWritten {
				t.Errorf("dry run: %d blobs (%d bytes), %d manifests; run: %d blobs (%d bytes), %d manifests",
					plan.BlobsToFetch, plan.BytesToFetch, plan.ManifestsToWrite, sum.BlobsFetched, sum.BytesFetched, sum.ManifestsWritten)
			}
			if step.name == "a new image" && (sum.BlobsFetched != 3 || sum.ManifestsWritten != 1) {
				t.Errorf("a new image of 2 layers: %d blobs fetched, %d manifests written; want 3 (config and layers), 1", sum.BlobsFetched, sum.ManifestsWritten)
			}
		})
	}
}

// snapshot lists every file with its size and modification time.
func snapshot(t testing.TB, dir string) string {
	t.Helper()
	var b strings.Builder
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil {
			b.WriteString(p + " " + fi.ModTime().String() + " " + fi.Mode().String() + ";")
		}
		return nil
	})
	return b.String()
}

func sorted(s []string) []string {
	out := append([]string(nil), s...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}

// TestMetaFilesOfKeptPublications: every metadata file left is named by a publication left
// (layout prunes both in the one publish), and the live one's is among them.
func TestMetaFilesOfKeptPublications(t *testing.T) {
	src := newSource(t)
	src.demo()
	out := t.TempDir()
	for range 5 {
		mustRun(t, src.opts(out))
	}
	tree := layout.NewTree(out)
	pubs, err := tree.Publications()
	if err != nil {
		t.Fatal(err)
	}
	named, err := tree.KeptMetaFiles()
	if err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(filepath.Join(out, layout.MetaFilesDir))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if !named[e.Name()] {
			t.Errorf("metadata file %s: no publication kept needs it", e.Name())
		}
	}
	if len(ents) != len(named) {
		t.Errorf("%d metadata files, want the %d the %d publications need", len(ents), len(named), len(pubs))
	}
	live, err := tree.ReadStamp()
	if err != nil || !named[filepath.Base(live.Meta)] {
		t.Errorf("the live stamp's metadata %s is not among the kept: %v", live.Meta, err)
	}
	checkTree(t, out)
}

func TestRemovesStaleTemps(t *testing.T) {
	src := newSource(t)
	src.demo()
	out := t.TempDir()
	stale := []string{
		filepath.Join(out, layout.TempPrefix+"index.json-abc"),
		filepath.Join(out, "blobs", "sha256", layout.TempPrefix+"deadbeef-123"),
	}
	for _, p := range stale {
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	mustRun(t, src.opts(out))
	if tmp := listTemps(t, out); len(tmp) != 0 {
		t.Errorf("stale temporary files left: %v", tmp)
	}
}

func TestOptionErrors(t *testing.T) {
	tests := []struct {
		name string
		o    Options
		want string
	}{
		{"no source", Options{Out: "x"}, "Options.Source"},
		{"no out", Options{Source: "http://x"}, "Options.Out"},
		{"ftp", Options{Source: "ftp://x", Out: "x"}, "http://"},
		{"path", Options{Source: "http://x/foo", Out: "x"}, "path"},
		{"userinfo", Options{Source: "http://u:p@x", Out: "x"}, "credentials"},
		{"bad glob", Options{Source: "http://x", Out: "x", Repos: []string{""}}, "empty Options.Repos"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Run(context.Background(), tc.o)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an error mentioning %q", err, tc.want)
			}
		})
	}
}

func TestConcurrentRunRefused(t *testing.T) {
	src := newSource(t)
	src.demo()
	out := t.TempDir()
	release, err := layout.NewTree(out).Lock(0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Run(context.Background(), src.opts(out))
	if !errors.Is(err, layout.ErrLocked) || !strings.Contains(err.Error(), "another regmirror generate") {
		t.Errorf("got %v, want a refusal naming the other run", err)
	}
	release()
	mustRun(t, src.opts(out))
	checkTree(t, out)
}

func TestVerifyRefetchesCorruptBlobs(t *testing.T) {
	src := newSource(t)
	src.demo()
	out := t.TempDir()
	mustRun(t, src.opts(out))
	m := checkTree(t, out)
	// Corrupt one layer without changing its size.
	var victim layout.Digest
	for _, d := range m.Repositories["fedora/toolbox"].Blobs {
		victim = d
	}
	p := filepath.Join(out, layout.BlobPath(victim))
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0xff
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		verify  bool
		fetched int
	}{
		{"trusts sizes", false, 0},
		{"--verify re-hashes", true, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := src.opts(out)
			o.Verify = tc.verify
			sum := mustRun(t, o)
			if sum.BlobsFetched != tc.fetched {
				t.Errorf("blobs fetched: got %d, want %d", sum.BlobsFetched, tc.fetched)
			}
		})
	}
	checkTree(t, out)
}

// TestRefusesBrokenMetadata: a tree whose live generation lacks a content pack (or has a
// corrupt one) is refused with one line naming the file and how to repair it; nothing is
// written. The generation is read while the source is asked: a source that does not answer
// does not hold the refusal back.
func TestRefusesBrokenMetadata(t *testing.T) {
	for _, tc := range []struct {
		name   string
		break_ func(p string) error
		hang   bool // the source's HEADs never answer
	}{
		{"pack missing", os.Remove, false},
		{"pack corrupt", func(p string) error { return os.WriteFile(p, []byte("garbage"), 0o644) }, false},
		{"pack missing, the source hanging", os.Remove, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := newSource(t)
			src.demo()
			out := t.TempDir()
			mustRun(t, src.opts(out))
			if tc.hang {
				src.addFault(&fault{method: "HEAD", match: pathHas("/manifests/"), do: func(_ http.ResponseWriter, r *http.Request, _ http.Handler) {
					<-r.Context().Done()
				}})
			}
			tree := layout.NewTree(out)
			st, err := tree.ReadStamp()
			if err != nil {
				t.Fatal(err)
			}
			files, err := tree.MetaFiles(st)
			if err != nil {
				t.Fatal(err)
			}
			pack := files[len(files)-1]
			if err := tc.break_(tree.Path(pack)); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			_, err = Run(ctx, src.opts(out))
			if err == nil || !strings.Contains(err.Error(), pack) || !strings.Contains(err.Error(), "copy "+pack+" back from a mirror") || strings.Contains(err.Error(), "\n") {
				t.Fatalf("Run: got %v, want one line naming %s and how to restore it", err, pack)
			}
			if again, err := tree.ReadStamp(); err != nil || again != st {
				t.Errorf("stamp after the refusal: %+v, %v; want %+v unchanged", again, err, st)
			}
		})
	}
}

// A file in blobs/ no generation records (left by a run that failed before publishing) is an
// orphan of the next generation, dry run or not, with its size.
func TestStrayFileBecomesOrphan(t *testing.T) {
	src := newSource(t)
	src.demo()
	out := t.TempDir()
	mustRun(t, src.opts(out))
	data := []byte("left by a run that failed before publishing\n")
	stray := layout.DigestOf("sha256", data)
	if err := os.WriteFile(filepath.Join(out, layout.BlobPath(stray)), data, 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		dryRun bool
	}{
		{"dry run", true},
		{"generation", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := src.opts(out)
			o.DryRun = tc.dryRun
			sum := mustRun(t, o)
			if got, want := sum.Orphans, 1; got != want {
				t.Errorf("orphans: got %d, want %d", got, want)
			}
			if tc.dryRun {
				return
			}
			m := checkTree(t, out)
			o2 := m.Orphans[stray]
			if o2 == nil {
				t.Fatalf("%s: not an orphan (orphans %v)", stray, m.Orphans)
			}
			if got, want := o2.Size, int64(len(data)); got != want {
				t.Errorf("orphan size: got %d, want %d", got, want)
			}
		})
	}
}
