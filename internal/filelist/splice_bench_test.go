package filelist

import (
	"fmt"
	"os"
	"path"
	"path/filepath"
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

// BenchmarkRenderReused renders the list of a settled tree after a 10-tag promotion, the
// entries of the reused directories taken from the live list (250k lines).
//
//	go test ./internal/filelist -run '^$' -bench '^BenchmarkRenderReused$' -benchmem -count 6
func BenchmarkRenderReused(b *testing.B) {
	rb := newReuseBench(b, 250_000)
	b.SetBytes(int64(rb.prevLen))
	b.ResetTimer()
	for b.Loop() {
		if _, err := renderPending(rb.tree, rb.tmpDir, "q", DefaultModule, rb.file, rb.reuse); err != nil {
			b.Fatal(err)
		}
	}
}
