package publish

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/regmirror/regmirror/internal/filelist"
	"github.com/regmirror/regmirror/internal/phase2"
	"github.com/regmirror/regmirror/internal/testsupport/listcheck"
	"github.com/regmirror/regmirror/layout"
)

// scaleMeta is generation gen of a tree of repos repositories of tags tags each, every tag an
// image manifest with one blob; the tags in moved (repository/tag) have new content.
func scaleMeta(gen uint64, repos, tags int, moved map[string]bool) *layout.Meta {
	m := layout.NewMeta(gen)
	digest := func(s string) layout.Digest {
		sum := sha256.Sum256([]byte(s))
		return layout.MustDigest("sha256:" + hex.EncodeToString(sum[:]))
	}
	for r := range repos {
		name := fmt.Sprintf("bench/r%03d", r)
		repo := &layout.Repository{Tags: map[string]layout.Digest{}}
		for i := range tags {
			tag := fmt.Sprintf("t%03d", i)
			body := name + ":" + tag
			if moved[name+"/"+tag] {
				body += " moved"
			}
			d, b := digest("manifest "+body), digest("layer "+body)
			m.Manifests[d] = &layout.Manifest{MediaType: layout.MediaTypeOCIManifest, Data: []byte(body)}
			m.Blobs[d] = &layout.Blob{Size: int64(len(body)), Since: 1}
			m.Blobs[b] = &layout.Blob{Size: 100, Since: 1}
			repo.Tags[tag] = d
			repo.Manifests = append(repo.Manifests, d)
			repo.Blobs = append(repo.Blobs, b)
		}
		sort.Slice(repo.Manifests, func(i, j int) bool { return repo.Manifests[i].String() < repo.Manifests[j].String() })
		sort.Slice(repo.Blobs, func(i, j int) bool { return repo.Blobs[i].String() < repo.Blobs[j].String() })
		m.Repositories[name] = repo
	}
	return m
}

// files lists the tree's files and links (tree-relative path → size).
func files(t *testing.T, tree *layout.Tree) map[string]int64 {
	t.Helper()
	got := map[string]int64{}
	err := filepath.WalkDir(tree.Dir(), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(tree.Dir(), p)
		got[filepath.ToSlash(rel)] = fi.Size()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// added is what after has that before lacks, by path.
func added(before, after map[string]int64) map[string]int64 {
	out := map[string]int64{}
	for p, size := range after {
		if _, ok := before[p]; !ok {
			out[p] = size
		}
	}
	return out
}

// TestPublishGrowsWithTheChange: with 30 repositories of 30 tags, a crawl's publish (nothing
// changed) adds a handful of entries, none over 4 KiB but the file list (and the metadata
// file, whose shape is not this test's concern), which differs from
// the previous one in a few lines; a promotion of tags in 2 repositories adds those 2
// repositories' tag files, and besides them only new versions of the files that list the
// whole tree (index.json, refs.map, the subsets' filters, the file list, the uses list) and
// the publication's few entries.
func TestPublishGrowsWithTheChange(t *testing.T) {
	const repos, tags = 30, 30
	tree := layout.NewTree(t.TempDir())
	if _, err := Publish(tree, scaleMeta(1, repos, tags, nil), Change{}); err != nil {
		t.Fatal(err)
	}
	before := files(t, tree)
	oldList, err := os.ReadFile(tree.Path(filelist.Name(filelist.DefaultModule)))
	if err != nil {
		t.Fatal(err)
	}

	// The crawl.
	if _, err := Publish(tree, scaleMeta(1, repos, tags, nil), Change{}); err != nil {
		t.Fatal(err)
	}
	after := files(t, tree)
	live, err := tree.LivePublication()
	if err != nil {
		t.Fatal(err)
	}
	target, err := os.Readlink(tree.Path(layout.PubPath(live) + "/" + filelist.Name(filelist.DefaultModule)))
	if err != nil {
		t.Fatal(err)
	}
	list := path.Join(layout.PubPath(live), target)
	crawl := added(before, after)
	if len(crawl) > 30 {
		t.Errorf("a crawl added %d files, want a handful: %v", len(crawl), crawl)
	}
	for p, size := range crawl {
		if size > 4<<10 && p != list && !strings.HasPrefix(p, layout.MetaFilesDir+"/") {
			t.Errorf("a crawl added %s, %d bytes: want no file over 4 KiB but the file list", p, size)
		}
	}
	newList, err := os.ReadFile(tree.Path(list))
	if err != nil {
		t.Fatal(err)
	}
	// Besides the new publication's own entries (a few links a subset), the lines that change
	// are a handful: the directories and links the publish wrote into or replaced (their times
	// move when it ends in a later second than the previous one did), the metadata file and
	// the file lists. Never a line of the tree's content.
	oldOut, newOut := outside(oldList, layout.PubPath(live)), outside(newList, layout.PubPath(live))
	for l := range strings.Lines(string(newOut)) {
		f := strings.Split(strings.TrimSuffix(l, "\n"), "\t")
		if len(f) != 4 || f[1] == "d" || f[1] == "l" || bytes.Contains(oldOut, []byte(l)) ||
			strings.HasPrefix(f[3], layout.MetaFilesDir+"/") || strings.HasPrefix(f[3], "regmirror/shared/fullfiletimelist-containers/") {
			continue
		}
		t.Errorf("the crawl's file list has a new line for %s: want no file but the metadata file and the file lists changed", l)
	}
	if d := lineDiff(oldOut, newOut); d > 40 {
		t.Errorf("the crawl's file list differs from the previous one in %d lines (of %d) outside the new publication, want a few", d, strings.Count(string(newList), "\n"))
		ol := map[string]bool{}
		for l := range strings.SplitSeq(string(oldList), "\n") {
			ol[l] = true
		}
		for l := range strings.SplitSeq(string(newList), "\n") {
			if !ol[l] {
				t.Log("new: ", l)
			}
		}
	}

	// The promotion.
	moved := map[string]bool{"bench/r003/t001": true, "bench/r003/t002": true, "bench/r017/t029": true}
	if _, err := Publish(tree, scaleMeta(2, repos, tags, moved), Change{}); err != nil {
		t.Fatal(err)
	}
	promo := added(after, files(t, tree))
	kinds := map[string]int{}
	repoDirs, v2Dirs := map[string]bool{}, map[string]bool{}
	for p := range promo {
		rest, ok := strings.CutPrefix(p, layout.SharedDir+"/")
		if !ok {
			continue
		}
		kind := path.Dir(rest)
		if strings.HasPrefix(rest, phase2.RepoKind+"/") {
			repoDirs[strings.Split(rest, "/")[1]] = true
			continue
		}
		if strings.HasPrefix(rest, phase2.DirKind+"/") {
			v2Dirs[strings.Split(rest, "/")[1]] = true
			continue
		}
		if strings.HasPrefix(rest, phase2.RootKind+"/") {
			kind = phase2.RootKind
		}
		kinds[kind]++
	}
	if len(repoDirs) != 2 {
		t.Errorf("a promotion in 2 repositories wrote %d repositories' tag files, want 2", len(repoDirs))
	}
	// The directories of v2/ on the changed repositories' paths: bench/r003, bench/r017 and
	// bench; the root holds bench, refs.map and _base.json.
	if len(v2Dirs) != 3 {
		t.Errorf("a promotion in 2 repositories wrote %d directories of v2/, want 3 (theirs and bench's)", len(v2Dirs))
	}
	for kind, n := range kinds {
		if kind == phase2.RootKind {
			if n > 3 {
				t.Errorf("the new v2/ root holds %d files and links, want 3", n)
			}
			continue
		}
		if n != 1 {
			t.Errorf("kind %s: %d new shared files, want one", kind, n)
		}
	}
	for _, kind := range []string{layout.PubIndex, phase2.RefsKind, filelist.Name(filelist.DefaultModule), layout.SharedUses} {
		if kinds[kind] != 1 {
			t.Errorf("kind %s: no new version after a promotion", kind)
		}
	}
	// Everything still reads through live.
	got, err := os.ReadFile(tree.Path(phase2.LiveDir + "/bench/r003/" + phase2.TagListFile))
	if err != nil || !strings.Contains(string(got), `"t001"`) {
		t.Errorf("live tag list: got %q (%v)", got, err)
	}
}

// lineDiff counts the lines of a and b that the other lacks.
// outside is a file list's lines but those of the publication directory pub and below it.
func outside(list []byte, pub string) []byte {
	var out []byte
	for l := range strings.Lines(string(list)) {
		f := strings.Split(strings.TrimSuffix(l, "\n"), "\t")
		if p := f[len(f)-1]; p == pub || strings.HasPrefix(p, pub+"/") {
			continue
		}
		out = append(out, l...)
	}
	return out
}

func lineDiff(a, b []byte) int {
	count := func(s []byte) map[string]int {
		m := map[string]int{}
		for l := range strings.SplitSeq(string(s), "\n") {
			m[l]++
		}
		return m
	}
	ca, cb := count(a), count(b)
	n := 0
	for l, k := range ca {
		n += max(0, k-cb[l])
	}
	for l, k := range cb {
		n += max(0, k-ca[l])
	}
	return n
}

// TestSettledListMatchesListing: on a settled tree, a chain of publishes (promotions, some
// moving a tag back to content an older publication had, a crawl, old publications pruned
// with the shared entries only they reached, which share files by hard link with kept ones)
// takes the file list's lines of regmirror/v2, blobs/sha256 and regmirror/shared from the
// live publication's list but for the change, and each list says what a listing of the tree
// says but for what the settled record names (changed after it was rendered: read again by
// the next publish); a record of the previous format (naming nothing under regmirror/shared)
// has regmirror/shared listed. Each publish is a second after the previous one, so that a
// time a change moves shows in the list.
func TestSettledListMatchesListing(t *testing.T) {
	const repos, tags = 6, 4
	tree := layout.NewTree(t.TempDir())
	if err := os.MkdirAll(tree.Path(layout.BlobDir("sha256")), 0o755); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name      string
		moved     []string // the tags with new content
		oldRecord bool     // the record rewritten as the previous format writes it
	}{
		{"first", nil, false},
		{"promotion", []string{"bench/r001/t001"}, false},
		{"promotion elsewhere", []string{"bench/r001/t001", "bench/r004/t000"}, false},
		{"crawl", []string{"bench/r001/t001", "bench/r004/t000"}, false},
		{"back to older content", []string{"bench/r004/t000"}, false},
		{"promotion, previous record format", []string{"bench/r002/t003"}, true},
		{"promotion, old ones pruned", []string{"bench/r002/t003", "bench/r001/t002"}, false},
		{"back again", []string{"bench/r001/t001", "bench/r004/t000"}, false},
		{"promotion, more pruned", []string{"bench/r005/t001"}, false},
	}
	var prev *layout.Meta
	gen := uint64(0)
	for i, st := range steps {
		moved := map[string]bool{}
		for _, m := range st.moved {
			moved[m] = true
		}
		if i == 0 || !strings.HasPrefix(st.name, "crawl") {
			gen++
		}
		next := scaleMeta(gen, repos, tags, moved)
		// A second after the previous publish, and the publications but the live one older
		// than kept for (the newest layout.PubKeep of them are kept all the same).
		time.Sleep(time.Until(time.Now().Truncate(time.Second).Add(time.Second)))
		ageOldPublications(t, tree)
		if st.oldRecord {
			b, err := os.ReadFile(tree.Path(layout.SettledFile))
			if err != nil {
				t.Fatal(err)
			}
			head, rest, _ := strings.Cut(string(b), "\n")
			head = strings.TrimSuffix(head, " shared")
			var keep []string
			for l := range strings.Lines(rest) {
				if !strings.HasPrefix(l, layout.SharedDir) {
					keep = append(keep, l)
				}
			}
			if err := layout.WriteFile(tree.Path(layout.SettledFile), []byte(head+"\n"+strings.Join(keep, ""))); err != nil {
				t.Fatal(err)
			}
		}
		settled, removed, err := tree.Unsettle()
		if err != nil {
			t.Fatal(err)
		}
		if settled != (i > 0) {
			t.Fatalf("%s: settled %v, want %v", st.name, settled, i > 0)
		}
		ch := Change{Settled: settled, Changed: removed}
		if settled {
			ch.Phase2 = phase2.Diff(prev, next)
		}
		if _, err := Publish(tree, next, ch); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if err := tree.Settle(nil, nil); err != nil {
			t.Fatal(err)
		}
		prev = next
		diffs, err := listcheck.Check(tree.Dir(), nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range diffs {
			t.Errorf("%s: file list: %s", st.name, d)
		}
	}
	// Old publications were pruned, and with them shared entries.
	pubs, err := tree.Publications()
	if err != nil {
		t.Fatal(err)
	}
	if len(pubs) != layout.PubKeep+1 {
		t.Errorf("publications left: got %d, want %d", len(pubs), layout.PubKeep+1)
	}
}

// ageOldPublications makes every publication but the live one older than
// layout.PubKeepFor, by its stamp.
func ageOldPublications(t *testing.T, tree *layout.Tree) {
	t.Helper()
	names, err := tree.Publications()
	if err != nil {
		t.Fatal(err)
	}
	live, _ := tree.LivePublication()
	for _, n := range names {
		if n == live {
			continue
		}
		p := tree.Path(path.Join(layout.PubPath(n), layout.PubStamp))
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		s, err := layout.ParseStamp(b)
		if err != nil {
			t.Fatal(err)
		}
		s.Created = s.Created.Add(-2 * layout.PubKeepFor)
		if b, err = json.Marshal(s); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
