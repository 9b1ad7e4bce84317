package layout

import (
	"bytes"
	"encoding/json"
	"errors"
	"io/fs"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"
)

// TestPublishWith: a publication holds the stamp, index.json and the given files; live points
// at it; the constant links read through it; the previous publication is untouched.
func TestPublishWith(t *testing.T) {
	tree := NewTree(t.TempDir())
	d := MustDigest("sha256:" + strings.Repeat("ab", 32))
	m := NewMeta(1)
	m.Repositories["fedora"] = &Repository{Tags: map[string]Digest{"42": d}, Manifests: []Digest{d}}
	m.Manifests[d] = &Manifest{MediaType: "application/vnd.oci.image.manifest.v1+json", Data: []byte(`{"schemaVersion":2}`)}
	var finished string
	rendered := 0
	s1, err := tree.PublishWith(m, Publication{
		Files:     map[string][]byte{"v2/fedora/_tags.json": []byte("one")},
		RootLinks: []string{"list"},
		Rendered:  func() { rendered++ },
		Finish: func(dir, name string, _ func(string) string) (map[string][]byte, error) {
			finished = name
			if rendered != 1 {
				t.Errorf("Finish: Rendered called %d times before, want once", rendered)
			}
			if _, err := os.Lstat(filepath.Join(dir, PubIndex)); err != nil {
				t.Errorf("Finish: the publication has no %s yet: %v", PubIndex, err)
			}
			return map[string][]byte{"list": []byte("list one")}, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	first, err := tree.LivePublication()
	if err != nil {
		t.Fatal(err)
	}
	if finished != first {
		t.Errorf("Finish got name %q, the publication is %q", finished, first)
	}
	links := []struct{ path, target string }{
		{LiveLink, "pub/" + first},
		{IndexFile, "regmirror/live/index.json"},
		{CurrentFile, "live/current"},
		{"list", "regmirror/live/list"},
	}
	for _, l := range links {
		if got, err := os.Readlink(tree.Path(l.path)); err != nil || got != l.target {
			t.Errorf("%s: got link to %q (%v), want %q", l.path, got, err, l.target)
		}
	}
	reads := []struct{ path, want string }{
		{LiveLink + "/v2/fedora/_tags.json", "one"},
		{"list", "list one"},
	}
	for _, r := range reads {
		if got, err := os.ReadFile(tree.Path(r.path)); err != nil || string(got) != r.want {
			t.Errorf("%s: got %q (%v), want %q", r.path, got, err, r.want)
		}
	}
	var idx struct {
		Manifests []struct {
			Digest      string            `json:"digest"`
			Annotations map[string]string `json:"annotations"`
		} `json:"manifests"`
	}
	if b, err := os.ReadFile(tree.Path(IndexFile)); err != nil || json.Unmarshal(b, &idx) != nil || len(idx.Manifests) != 1 || idx.Manifests[0].Digest != d.String() || idx.Manifests[0].Annotations[annotationRefName] != "fedora:42" {
		t.Errorf("index.json through its link: got %+v (%v)", idx, err)
	}
	if _, s, err := tree.Load(); err != nil || s != s1 {
		t.Errorf("Load: got %+v, %v; want %+v", s, err, s1)
	}

	m2 := NewMeta(2)
	s2, err := tree.PublishWith(m2, Publication{Files: map[string][]byte{"v2/fedora/_tags.json": []byte("two")}})
	if err != nil {
		t.Fatal(err)
	}
	if _, s, err := tree.Load(); err != nil || s != s2 {
		t.Errorf("Load after the second publish: got %+v, %v; want %+v", s, err, s2)
	}
	if got, _ := os.ReadFile(tree.Path(LiveLink + "/v2/fedora/_tags.json")); string(got) != "two" {
		t.Errorf("live tag list: got %q, want two", got)
	}
	if got, _ := os.ReadFile(tree.Path(PubPath(first) + "/v2/fedora/_tags.json")); string(got) != "one" {
		t.Errorf("previous publication's tag list: got %q, want it untouched", got)
	}
}

// TestPublishMigrates: a tree written before publications existed (regular index.json and
// regmirror/current) gets its links in place, and reads as the new generation.
func TestPublishMigrates(t *testing.T) {
	tree := NewTree(t.TempDir())
	for _, f := range []string{IndexFile, CurrentFile} {
		if err := WriteFile(tree.Path(f), []byte("old")); err != nil {
			t.Fatal(err)
		}
	}
	s, err := tree.Publish(NewMeta(5))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{IndexFile, CurrentFile} {
		fi, err := os.Lstat(tree.Path(f))
		if err != nil || fi.Mode()&os.ModeSymlink == 0 {
			t.Errorf("%s: got mode %v (%v), want a link", f, fi.Mode(), err)
		}
	}
	if _, got, err := tree.Load(); err != nil || got != s {
		t.Errorf("Load: got %+v, %v; want %+v", got, err, s)
	}
}

// TestPublishCleansAndPrunes: what an interrupted publish left (a temporary publication, a
// temporary link) goes at the next publish; publications beyond PubKeep older than
// PubKeepFor go, the live one and recent ones stay.
func TestPublishCleansAndPrunes(t *testing.T) {
	tree := NewTree(t.TempDir())
	var names []string
	for g := uint64(1); g <= PubKeep+3; g++ {
		if _, err := tree.Publish(NewMeta(g)); err != nil {
			t.Fatal(err)
		}
		n, err := tree.LivePublication()
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, n)
	}
	pubs, err := tree.Publications()
	if err != nil || len(pubs) != len(names) {
		t.Fatalf("recent publications: got %d (%v), want all %d kept", len(pubs), err, len(names))
	}
	// Age the two oldest beyond PubKeepFor.
	for _, n := range names[:2] {
		p := tree.Path(PubPath(n) + "/" + PubStamp)
		b, _ := os.ReadFile(p)
		var s Stamp
		if err := json.Unmarshal(b, &s); err != nil {
			t.Fatal(err)
		}
		s.Created = time.Now().Add(-2 * PubKeepFor)
		b, _ = json.Marshal(s)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	stale := []string{PubDir + "/" + TempPrefix + "9-x/current", MetaDir + "/" + TempPrefix + "live-x"}
	if err := WriteFile(tree.Path(stale[0]), nil); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("pub/nothing", tree.Path(stale[1])); err != nil {
		t.Fatal(err)
	}
	if _, err := tree.Publish(NewMeta(PubKeep + 4)); err != nil {
		t.Fatal(err)
	}
	for _, p := range stale {
		if _, err := os.Lstat(tree.Path(p)); err == nil {
			t.Errorf("%s: left over from an interrupted publish, still there", p)
		}
	}
	pubs, _ = tree.Publications()
	if got, want := len(pubs), len(names)+1-2; got != want {
		t.Errorf("publications after pruning: got %d %v, want %d", got, pubs, want)
	}
	for _, n := range names[:2] {
		if _, err := os.Stat(tree.Path(PubPath(n))); err == nil {
			t.Errorf("publication %s: older than PubKeepFor and beyond PubKeep, still there", n)
		}
	}
	// The metadata files left are exactly those the publications left need: their roots and
	// the network files and packs these name (a stray file named by none goes too).
	want := map[string]bool{}
	for _, n := range pubs {
		b, err := os.ReadFile(tree.Path(PubPath(n) + "/" + PubStamp))
		if err != nil {
			t.Fatal(err)
		}
		st, err := ParseStamp(b)
		if err != nil {
			t.Fatal(err)
		}
		files, err := tree.MetaFiles(st)
		if err != nil || len(files) < 3 {
			t.Fatalf("MetaFiles: got %v, %v; want the root, the network file and a pack", files, err)
		}
		for _, f := range files {
			want[path.Base(f)] = true
		}
	}
	ents, _ := os.ReadDir(tree.Path(MetaFilesDir))
	var got []string
	for _, e := range ents {
		got = append(got, e.Name())
		if !want[e.Name()] {
			t.Errorf("metadata file %s: no publication names it, still there", e.Name())
		}
	}
	if len(got) != len(want) {
		t.Errorf("metadata files: got %d, want the %d the publications name", len(got), len(want))
	}
}

func TestPublishRefusesBadNames(t *testing.T) {
	cases := []struct {
		name string
		p    Publication
	}{
		{"file overriding the stamp", Publication{Files: map[string][]byte{PubStamp: nil}}},
		{"file leaving the publication", Publication{Files: map[string][]byte{"../x": nil}}},
		{"temporary file name", Publication{Files: map[string][]byte{"v2/" + TempPrefix + "x": nil}}},
		{"root link in a directory", Publication{RootLinks: []string{"a/b"}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if _, err := NewTree(t.TempDir()).PublishWith(NewMeta(1), c.p); err == nil {
				t.Errorf("got no error")
			}
		})
	}
}

// sharedEntries lists the entries under SharedDir (tree-relative), as pruneShared sees them.
func sharedEntries(t *testing.T, tree *Tree) map[string]bool {
	t.Helper()
	got := map[string]bool{}
	err := filepath.WalkDir(tree.Path(SharedDir), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !isSharedName(d.Name()) {
			return nil
		}
		rel, _ := filepath.Rel(tree.Dir(), p)
		got[filepath.ToSlash(rel)] = true
		if d.IsDir() {
			return fs.SkipDir
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// TestPublishShared: large files and linked directories are stored once in SharedDir and
// reached through relative links; a publish with nothing changed (a crawl) adds no shared
// entry; one that changes a file adds only its new version; the entries no publication left
// reaches (by a link or its uses list) are pruned, those a kept one reaches stay.
func TestPublishShared(t *testing.T) {
	tree := NewTree(t.TempDir())
	gen := func(g uint64, filter, tags string) (*Meta, Publication) {
		t.Helper()
		repo, err := tree.WriteSharedDir("v2-tags", map[string]SharedEntry{"_tags.json": {Data: []byte(tags)}})
		if err != nil {
			t.Fatal(err)
		}
		root, err := tree.WriteSharedDir("v2", map[string]SharedEntry{
			"fedora/_tags.json": {Link: repo + "/_tags.json"},
			"_base.json":        {Data: []byte("{}")},
		})
		if err != nil {
			t.Fatal(err)
		}
		return NewMeta(g), Publication{
			Shared: map[string][]byte{"subsets/arm64.rsync-filter": []byte(filter)},
			Links:  map[string]string{"v2": root},
			Uses:   []string{repo},
		}
	}
	publish := func(m *Meta, p Publication) string {
		t.Helper()
		if _, err := tree.PublishWith(m, p); err != nil {
			t.Fatal(err)
		}
		n, err := tree.LivePublication()
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	first := publish(gen(1, "+ /blobs/sha256/aa\n", "one"))
	for _, r := range []struct{ path, want string }{
		{LiveLink + "/subsets/arm64.rsync-filter", "+ /blobs/sha256/aa\n"},
		{LiveLink + "/v2/fedora/_tags.json", "one"},
		{LiveLink + "/v2/_base.json", "{}"},
	} {
		if got, err := os.ReadFile(tree.Path(r.path)); err != nil || string(got) != r.want {
			t.Errorf("%s: got %q (%v), want %q", r.path, got, err, r.want)
		}
	}
	for _, l := range []string{PubIndex, "subsets/arm64.rsync-filter", "v2", SharedUses} {
		target, err := os.Readlink(tree.Path(PubPath(first) + "/" + l))
		if err != nil || !strings.HasPrefix(target, "../") || !strings.Contains(target, "shared/") {
			t.Errorf("%s in the publication: got link %q (%v), want a relative link into %s", l, target, err, SharedDir)
		}
	}
	before := sharedEntries(t, tree)

	// A crawl: the same content again, nothing new shared.
	crawl := publish(gen(1, "+ /blobs/sha256/aa\n", "one"))
	if crawl == first {
		t.Fatalf("the crawl's publication has the first one's name %s", first)
	}
	if got := sharedEntries(t, tree); len(got) != len(before) {
		t.Errorf("shared entries after a publish with nothing changed: got %v, want %v", got, before)
	}

	// A promotion changes the filter and the tag list: their new versions, a new v2/ and
	// a new uses list, nothing else.
	second := publish(gen(2, "+ /blobs/sha256/aa\n+ /blobs/sha256/bb\n", "two"))
	var added []string
	for e := range sharedEntries(t, tree) {
		if !before[e] {
			added = append(added, path.Dir(strings.TrimPrefix(e, SharedDir+"/")))
		}
	}
	sort.Strings(added)
	if want := []string{"subsets/arm64.rsync-filter", "uses", "v2", "v2-tags"}; strings.Join(added, " ") != strings.Join(want, " ") {
		t.Errorf("kinds of the shared entries a promotion added: got %q, want %q", added, want)
	}

	// Once the first two publications are gone, what only they reached goes too; a stray
	// entry no publication reaches and a temporary one go as well.
	stray, err := tree.WriteSharedFile("index.json", 9, []byte("stray"))
	if err != nil {
		t.Fatal(err)
	}
	tmp := SharedDir + "/v2/" + TempPrefix + "x/y"
	if err := WriteFile(tree.Path(tmp), nil); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{first, crawl} {
		if err := os.RemoveAll(tree.Path(PubPath(n))); err != nil {
			t.Fatal(err)
		}
	}
	third := publish(gen(2, "+ /blobs/sha256/aa\n+ /blobs/sha256/bb\n", "two"))
	want := map[string]bool{}
	for _, n := range []string{second, third} {
		used, err := tree.pubShared(n)
		if err != nil {
			t.Fatal(err)
		}
		for e := range used {
			want[e] = true
		}
	}
	got := sharedEntries(t, tree)
	if len(got) != len(want) {
		t.Errorf("shared entries after pruning: got %v, want those the publications left reach, %v", got, want)
	}
	for e := range want {
		if !got[e] {
			t.Errorf("%s: reached by a kept publication, pruned", e)
		}
	}
	for _, p := range []string{stray, path.Dir(tmp)} {
		if _, err := os.Lstat(tree.Path(p)); err == nil {
			t.Errorf("%s: still there", p)
		}
	}
	if got, err := os.ReadFile(tree.Path(LiveLink + "/v2/fedora/_tags.json")); err != nil || string(got) != "two" {
		t.Errorf("live tag list after pruning: got %q (%v), want two", got, err)
	}
}

func TestRelLink(t *testing.T) {
	cases := []struct{ from, to, want string }{
		{"regmirror/pub/1-ab/index.json", "regmirror/shared/index.json/1-cd", "../../shared/index.json/1-cd"},
		{"regmirror/pub/1-ab/subsets/x.rsync-filter", "regmirror/shared/subsets/x.rsync-filter/1-cd", "../../../shared/subsets/x.rsync-filter/1-cd"},
		{"regmirror/shared/v2/ab/fedora/toolbox/_tags", "regmirror/shared/v2-tags/cd/_tags", "../../../../v2-tags/cd/_tags"},
		{"index.json", "regmirror/live/index.json", "regmirror/live/index.json"},
	}
	for _, c := range cases {
		t.Run(c.from, func(t *testing.T) {
			if got := RelLink(c.from, c.to); got != c.want {
				t.Errorf("got %q, want %q", got, c.want)
			}
			if got := path.Join(path.Dir(c.from), RelLink(c.from, c.to)); got != c.to {
				t.Errorf("resolves to %q, want %q", got, c.to)
			}
		})
	}
}

// TestSharedFileOnce: shared files of one publish with the same bytes are stored once; a
// file found damaged (its bytes not those its name says) is written again.
func TestSharedFileOnce(t *testing.T) {
	tree := NewTree(t.TempDir())
	same := []byte("+ /blobs/sha256/aa\n")
	if _, err := tree.PublishWith(NewMeta(1), Publication{Shared: map[string][]byte{
		"subsets/arm.rsync-filter":   same,
		"subsets/s390x.rsync-filter": same,
	}}); err != nil {
		t.Fatal(err)
	}
	pub, err := tree.LivePublication()
	if err != nil {
		t.Fatal(err)
	}
	a, errA := os.Readlink(tree.Path(PubPath(pub) + "/subsets/arm.rsync-filter"))
	b, errB := os.Readlink(tree.Path(PubPath(pub) + "/subsets/s390x.rsync-filter"))
	if errA != nil || errB != nil || a != b || !strings.Contains(a, "/arm.rsync-filter/") {
		t.Errorf("links to identical files: got %q (%v) and %q (%v), want both to arm's", a, errA, b, errB)
	}

	rel, err := tree.WriteSharedFile("index.json", 1, []byte("index"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(tree.Path(rel), []byte("damaged"), 0o644); err != nil {
		t.Fatal(err)
	}
	again, err := tree.WriteSharedFile("index.json", 2, []byte("index"))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(tree.Path(again)); again != rel || err != nil || string(got) != "index" {
		t.Errorf("damaged file written again: got %s holding %q (%v), want %s holding %q", again, got, err, rel, "index")
	}
}

// TestSharedFilesSideBySide: a publish's shared files, hashed and written side by side, are
// each linked to a file holding its bytes, files with the same bytes (one slice given for
// several paths, equal slices, empty ones) to the first of them by path.
func TestSharedFilesSideBySide(t *testing.T) {
	tree := NewTree(t.TempDir())
	one, other := []byte("+ /blobs/sha256/aa\n"), []byte("+ /blobs/sha256/bb\n")
	given := map[string][]byte{
		"subsets/386.rsync-filter":     one,
		"subsets/amd64.rsync-filter":   other,
		"subsets/arm.rsync-filter":     one,
		"subsets/arm64.rsync-filter":   []byte("+ /blobs/sha256/bb\n"),
		"subsets/archive.rsync-filter": {},
		"subsets/mips.rsync-filter":    nil,
		"subsets/ppc64.rsync-filter":   []byte("+ /blobs/sha256/cc\n"),
		"subsets/s390x.rsync-filter":   one,
	}
	if _, err := tree.PublishWith(NewMeta(1), Publication{Shared: given}); err != nil {
		t.Fatal(err)
	}
	pub, err := tree.LivePublication()
	if err != nil {
		t.Fatal(err)
	}
	firstOf := map[string]string{} // bytes → the first path given them
	for _, rel := range slices.Sorted(maps.Keys(given)) {
		if _, ok := firstOf[string(given[rel])]; !ok {
			firstOf[string(given[rel])] = rel
		}
	}
	for rel, want := range given {
		at := tree.Path(PubPath(pub) + "/" + rel)
		target, err := os.Readlink(at)
		if err != nil {
			t.Fatal(err)
		}
		if first := firstOf[string(want)]; !strings.Contains(target, "/"+path.Base(first)+"/") {
			t.Errorf("%s links to %s, want the file of %s", rel, target, first)
		}
		if got, err := os.ReadFile(at); err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s holds %q (%v), want %q", rel, got, err, want)
		}
	}
}

// TestPublishAfterOldPublications: a tree whose publications hold regular files (written
// before regmirror/shared/) gets the new shape at its next publish; the old publication stays
// as it was, reaches no shared entry, and is pruned like any other.
func TestPublishAfterOldPublications(t *testing.T) {
	tree := NewTree(t.TempDir())
	if _, err := tree.Publish(NewMeta(1)); err != nil {
		t.Fatal(err)
	}
	old, err := tree.LivePublication()
	if err != nil {
		t.Fatal(err)
	}
	// Make it an old one: index.json a regular file, a tag list in v2/.
	idx := tree.Path(PubPath(old) + "/" + PubIndex)
	data, err := os.ReadFile(idx)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(idx); err != nil {
		t.Fatal(err)
	}
	for p, b := range map[string][]byte{idx: data, tree.Path(PubPath(old) + "/v2/fedora/_tags.json"): []byte("old")} {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if used, err := tree.pubShared(old); err != nil || len(used) != 0 {
		t.Errorf("shared entries of an old publication: got %v (%v), want none", used, err)
	}
	m := NewMeta(2)
	d := MustDigest("sha256:" + strings.Repeat("cd", 32))
	m.Repositories["fedora"] = &Repository{Tags: map[string]Digest{"42": d}, Manifests: []Digest{d}}
	m.Manifests[d] = &Manifest{MediaType: "application/vnd.oci.image.manifest.v1+json", Data: []byte(`{}`)}
	if _, err := tree.Publish(m); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(tree.Path(LiveLink + "/" + PubIndex)); err != nil || fi.Mode()&fs.ModeSymlink == 0 {
		t.Errorf("the new publication's index.json: got %v (%v), want a link into %s", fi, err, SharedDir)
	}
	if got, err := os.ReadFile(tree.Path(IndexFile)); err != nil || !strings.Contains(string(got), d.String()) {
		t.Errorf("index.json after the publish: got %q (%v), want the new tag", got, err)
	}
	for p, want := range map[string]string{idx: string(data), tree.Path(PubPath(old) + "/v2/fedora/_tags.json"): "old"} {
		if got, err := os.ReadFile(p); err != nil || string(got) != want {
			t.Errorf("old publication's %s: got %q (%v), want it untouched", p, got, err)
		}
	}
}

// TestPublishPrepare: the links and uses a Publication's Prepare writes and returns make the
// publication they make when written before and given (the same links, the same uses list);
// an error of Prepare, or a use it returns that is not a shared entry, fails the publish with
// nothing switched live.
func TestPublishPrepare(t *testing.T) {
	write := func(tree *Tree) (map[string]string, []string, error) {
		repo, err := tree.WriteSharedDir("v2-tags", map[string]SharedEntry{"_tags.json": {Data: []byte("one")}})
		if err != nil {
			return nil, nil, err
		}
		root, err := tree.WriteSharedDir("v2", map[string]SharedEntry{"fedora/_tags.json": {Link: repo + "/_tags.json"}})
		if err != nil {
			return nil, nil, err
		}
		return map[string]string{"v2": root}, []string{repo}, nil
	}
	shared := map[string][]byte{"subsets/arm64.rsync-filter": []byte("+ /blobs/sha256/aa\n"), "z/after-uses": []byte("z")}
	// contents are the publication's entries: a link's target, a file's bytes (the stamp's
	// left out: it has the time).
	contents := func(t *testing.T, tree *Tree) map[string]string {
		t.Helper()
		n, err := tree.LivePublication()
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]string{}
		dir := tree.Path(PubPath(n))
		err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			rel, _ := filepath.Rel(dir, p)
			if rel == PubStamp {
				return nil
			}
			if target, err := os.Readlink(p); err == nil {
				b, _ := os.ReadFile(p)
				got[rel] = target + " " + string(b)
				return nil
			}
			b, err := os.ReadFile(p)
			got[rel] = string(b)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	given := NewTree(t.TempDir())
	links, uses, err := write(given)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := given.PublishWith(NewMeta(1), Publication{Shared: shared, Links: links, Uses: uses}); err != nil {
		t.Fatal(err)
	}
	prepared := NewTree(t.TempDir())
	if _, err := prepared.PublishWith(NewMeta(1), Publication{Shared: shared, Prepare: func() (map[string]string, []string, error) {
		return write(prepared)
	}}); err != nil {
		t.Fatal(err)
	}
	got, want := contents(t, prepared), contents(t, given)
	if !maps.Equal(got, want) {
		t.Errorf("publication with the entries prepared: got %v, want %v (given)", got, want)
	}
	if _, ok := got[SharedUses]; !ok {
		t.Errorf("publication with the entries prepared: no %s in %v", SharedUses, got)
	}

	for _, c := range []struct {
		name    string
		prepare func(tree *Tree) (map[string]string, []string, error)
	}{
		{"error", func(*Tree) (map[string]string, []string, error) { return nil, nil, errors.New("prepare failed") }},
		{"not a shared entry", func(*Tree) (map[string]string, []string, error) {
			return nil, []string{SharedDir + "/v2-tags"}, nil
		}},
		{"link to no shared entry", func(*Tree) (map[string]string, []string, error) {
			return map[string]string{"v2": "blobs"}, nil, nil
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			tree := NewTree(t.TempDir())
			_, err := tree.PublishWith(NewMeta(1), Publication{Prepare: func() (map[string]string, []string, error) { return c.prepare(tree) }})
			if err == nil {
				t.Fatal("got no error")
			}
			if n, err := tree.LivePublication(); err == nil {
				t.Errorf("live publication after a failed prepare: got %s, want none", n)
			}
		})
	}
}
