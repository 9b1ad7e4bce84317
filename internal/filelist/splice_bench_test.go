package filelist

import (
	"bytes"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"testing"

	"github.com/regmirror/regmirror/layout"
)

// reuseBench is a settled tree whose live list holds lines entries below the reused
// directories (only those changed exist on disk), and the publication being built.
type reuseBench struct {
	tree    *layout.Tree
	tmpDir  string
	file    string
	reuse   []Reuse
	prevLen int
}

// newReuseBench builds a tree for lines list entries (a marker directory and file per
// manifest, a file per blob) and a change of a 10-tag promotion: manifests and blobs added,
// some removed.
func newReuseBench(b *testing.B, lines int) reuseBench {
	b.Helper()
	tree := layout.NewTree(b.TempDir())
	const v2, blobs = "regmirror/v2", "blobs/sha256"
	var entries []Entry
	t0 := int64(1_700_000_000)
	for i := 0; len(entries) < lines; i++ {
		hex := fmt.Sprintf("%064x", uint64(i)*0x9e3779b97f4a7c15)
		t := t0 + int64(i/500) // generations of 500 manifests
		dir := fmt.Sprintf("%s/repo%d/_digests/%s", v2, i%300, hex)
		entries = append(entries,
			Entry{Time: t, Type: "d", Size: 4096, Path: dir},
			Entry{Time: t, Type: "f", Size: 0, Path: dir + "/" + hex + ".oci-index"},
			Entry{Time: t, Type: "f", Size: int64(1000 + i), Path: blobs + "/" + hex})
	}
	for _, d := range []string{v2, blobs} {
		if err := os.MkdirAll(tree.Path(d), 0o755); err != nil {
			b.Fatal(err)
		}
	}
	var changed2, changedBlobs []string
	for i := range 20 { // 10 two-arch tags: 20 manifests and their blobs added
		hex := fmt.Sprintf("%064x", uint64(1_000_000+i))
		f := fmt.Sprintf("%s/repo%d/_digests/%s/%s.oci-manifest", v2, i, hex, hex)
		if err := layout.WriteFile(tree.Path(f), nil); err != nil {
			b.Fatal(err)
		}
		changed2 = append(changed2, f)
		for _, k := range []string{"a", "b"} {
			p := blobs + "/" + k + hex[1:]
			if err := layout.WriteFile(tree.Path(p), []byte(p)); err != nil {
				b.Fatal(err)
			}
			changedBlobs = append(changedBlobs, p)
		}
	}
	for i := 0; i < 30; i++ { // removed: listed, no longer there
		e := entries[len(entries)/2+i*3]
		if e.Type == "f" && path.Dir(e.Path) != blobs {
			changed2 = append(changed2, e.Path)
		} else if e.Type == "f" {
			changedBlobs = append(changedBlobs, e.Path)
		}
	}
	if err := os.MkdirAll(tree.Path("regmirror/pub/p"), 0o755); err != nil {
		b.Fatal(err)
	}
	if err := os.Symlink("pub/p", tree.Path(layout.LiveLink)); err != nil {
		b.Fatal(err)
	}
	sortByTime(entries)
	prev, err := render(entries, map[string]string{})
	if err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(tree.Path("regmirror/pub/p/"+Name(DefaultModule)), prev, 0o644); err != nil {
		b.Fatal(err)
	}
	tmpDir := tree.Path("regmirror/pub/.tmp-q")
	for _, f := range []string{layout.PubIndex, layout.PubStamp} {
		if err := layout.WriteFile(filepath.Join(tmpDir, filepath.FromSlash(f)), []byte(f)); err != nil {
			b.Fatal(err)
		}
	}
	return reuseBench{
		tree:    tree,
		tmpDir:  tmpDir,
		file:    path.Join(layout.SharedDir, Name(DefaultModule), "2-"+strconv.Itoa(1)),
		reuse:   []Reuse{{Dir: v2, Changed: changed2}, {Dir: blobs, Changed: changedBlobs}},
		prevLen: len(prev),
	}
}

// BenchmarkRenderReused makes the list of a settled tree after a 10-tag promotion, the
// entries of the reused directories taken from the live list (250k lines), as a publish does
// (storePending: a spliced list written into its file). Its sub-benchmark
// "shared" has a regmirror/shared/ of 1,000 repositories' v2-tags entries of 30 tag links
// (31,000 entries, as at 90k manifests), listed ("listed") or taken from the live list but for
// the 10 entries a promotion writes ("reused").
//
//	go test ./internal/filelist -run '^$' -bench '^BenchmarkRenderReused$' -benchmem -count 6
func BenchmarkRenderReused(b *testing.B) {
	rb := newReuseBench(b, 250_000)
	render := func(b *testing.B, reuse []Reuse) {
		b.SetBytes(int64(rb.prevLen))
		for b.Loop() {
			if _, err := storePending(rb.tree, rb.tmpDir, "q", DefaultModule, rb.file, reuse, nil); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("v2+blobs", func(b *testing.B) { render(b, rb.reuse) })
	changed := rb.addShared(b, 1000)
	b.Run("shared/listed", func(b *testing.B) { render(b, rb.reuse) })
	b.Run("shared/reused", func(b *testing.B) {
		render(b, append(slices.Clone(rb.reuse), Reuse{Dir: layout.SharedDir, Changed: changed, Whole: true}))
	})
}

// addShared adds to the tree a regmirror/shared/ of repos repositories' v2-tags entries of
// 30 tag links each, and their lines to the live list, and returns the entries a promotion
// of 10 repositories writes (on disk and in the list, as if written after it).
func (rb reuseBench) addShared(b *testing.B, repos int) []string {
	b.Helper()
	// regmirror/shared/: the entries on disk, the live list with their lines.
	kind := layout.SharedDir + "/v2-tags"
	var changed []string
	for r := range repos {
		entry := fmt.Sprintf("%s/%032x", kind, uint64(r)*0x9e3779b97f4a7c15)
		for i := range 30 {
			if err := os.MkdirAll(rb.tree.Path(entry+"/_tags"), 0o755); err != nil {
				b.Fatal(err)
			}
			if err := os.Symlink(fmt.Sprintf("../../../../v2/repo%d/_digests/%d", r, i), rb.tree.Path(fmt.Sprintf("%s/_tags/t%02d", entry, i))); err != nil {
				b.Fatal(err)
			}
		}
		if r%(repos/10) == 0 {
			changed = append(changed, entry) // written by the promotion
		}
	}
	live := rb.tree.Path("regmirror/pub/p/" + Name(DefaultModule))
	prev, err := os.ReadFile(live)
	if err != nil {
		b.Fatal(err)
	}
	shared, err := scanSkipping(rb.tree.Path(layout.SharedDir), layout.SharedDir, nil)
	if err != nil {
		b.Fatal(err)
	}
	before, rest, _ := bytes.Cut(prev, []byte("\n[Checksums SHA1]"))
	files := slices.Clone(before)
	sortByTime(shared) // newer than the rest: last, as sorted by time
	for _, e := range shared {
		files = appendLine(files, e)
	}
	merged := append(files, append([]byte("\n[Checksums SHA1]"), rest...)...)
	if err := os.WriteFile(live, merged, 0o644); err != nil {
		b.Fatal(err)
	}
	return changed
}

// BenchmarkParseLive parses the live list of BenchmarkRenderReused's tree (250k lines below
// the reused directories) as a publish does ahead of its render (parseLive).
//
//	go test ./internal/filelist -run '^$' -bench '^BenchmarkParseLive$' -benchmem -count 6
func BenchmarkParseLive(b *testing.B) {
	rb := newReuseBench(b, 250_000)
	b.SetBytes(int64(rb.prevLen))
	for b.Loop() {
		l := parseLive(rb.tree, DefaultModule, reusePrefixes(rb.reuse))
		if l == nil {
			b.Fatal("the live list was refused")
		}
		l.release()
	}
}
