package layout

import (
	"bytes"
	"math/rand/v2"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// pagesOf is n pages of deterministic bytes.
func pagesOf(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, n*basisPage)
	for i := range b {
		b[i] = byte('a' + r.IntN(26))
	}
	return b
}

func TestFileOverBasis(t *testing.T) {
	base := pagesOf(8, 1)
	changed := func(at ...int) []byte {
		b := bytes.Clone(base)
		for _, i := range at {
			b[i] = '!'
		}
		return b
	}
	cases := []struct {
		name     string
		basis    []byte
		data     []byte
		wantOver int64 // bytes written over the basis
	}{
		{"same bytes", base, base, 0},
		{"one byte in the middle", base, changed(3*basisPage + 17), basisPage},
		{"across a page boundary", base, changed(2*basisPage-1, 2*basisPage), 2 * basisPage},
		{"the first byte", base, changed(0), basisPage},
		{"two pages apart", base, changed(basisPage+5, 6*basisPage+9), 2 * basisPage},
		{"shorter", base, base[:5*basisPage+100], 0},
		{"longer", base, append(bytes.Clone(base), "more"...), 4},
		{"a line inserted shifts the rest", base, append(append(bytes.Clone(base[:basisPage+10]), "new line\n"...), base[basisPage+10:]...), 7*basisPage + 9},
		{"empty", base, nil, 0},
		{"over an empty basis", []byte{}, base[:basisPage+3], basisPage + 3},
	}
	for _, c := range cases {
		for _, chunk := range []int{1, 7, basisPage, 10000, 1 << 20} {
			dir := t.TempDir()
			tmp := filepath.Join(dir, "tmp")
			if err := os.WriteFile(tmp, c.basis, 0o644); err != nil {
				t.Fatal(err)
			}
			f, err := os.OpenFile(tmp, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			w := &File{f: f, final: filepath.Join(dir, "final"), basis: c.basis}
			for d := c.data; len(d) > 0; {
				n := min(chunk, len(d))
				if got, err := w.Write(d[:n]); err != nil || got != n {
					t.Fatalf("%s, chunks of %d: Write: got %d, %v; want %d, nil", c.name, chunk, got, err, n)
				}
				d = d[n:]
			}
			if err := w.Commit(); err != nil {
				t.Fatalf("%s, chunks of %d: Commit: %v", c.name, chunk, err)
			}
			got, err := os.ReadFile(filepath.Join(dir, "final"))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, c.data) {
				t.Errorf("%s, chunks of %d: the file holds %d bytes unlike those written (%d)", c.name, chunk, len(got), len(c.data))
			}
			if chunk%basisPage == 0 && w.over != c.wantOver {
				t.Errorf("%s, chunks of %d: bytes written over the basis: got %d, want %d", c.name, chunk, w.over, c.wantOver)
			}
			if w.over > c.wantOver+basisPage {
				t.Errorf("%s, chunks of %d: bytes written over the basis: got %d, want at most %d", c.name, chunk, w.over, c.wantOver+basisPage)
			}
		}
	}
}

func TestStartBases(t *testing.T) {
	tree := NewTree(t.TempDir())
	filter := bytes.Repeat([]byte("+ /blobs/sha256/aa\n"), 1000)
	refs := bytes.Repeat([]byte("fedora:42 sha256:aa\n"), 1000)
	gen := func(g uint64, filter, refs []byte) (*Meta, Publication) {
		t.Helper()
		refsRel, err := tree.WriteSharedFile("v2-refs.map", g, refs)
		if err != nil {
			t.Fatal(err)
		}
		root, err := tree.WriteSharedDir("v2", map[string]SharedEntry{
			"refs.map":   {Link: refsRel},
			"_base.json": {Data: []byte("{}")},
		})
		if err != nil {
			t.Fatal(err)
		}
		return NewMeta(g), Publication{
			Shared: map[string][]byte{"subsets/arm64.rsync-filter": filter},
			Links:  map[string]string{"v2": root},
			Uses:   []string{refsRel},
		}
	}
	if tree.StartBases(); tree.bases != nil {
		t.Fatalf("bases started on a tree without a publication")
	}
	if _, err := tree.PublishWith(gen(1, filter, refs)); err != nil {
		t.Fatal(err)
	}
	stale := tree.Path(PubDir + "/" + basesPrefix + "0")
	if err := os.Mkdir(stale, 0o755); err != nil {
		t.Fatal(err)
	}

	tree.StartBases()
	if tree.bases == nil {
		t.Fatal("no bases started on a tree with a live publication")
	}
	<-tree.bases.done
	var kinds []string
	for k, bs := range tree.bases.by {
		kinds = append(kinds, k)
		if bs.f == nil {
			t.Errorf("%s: no copy made", k)
		}
	}
	slices.Sort(kinds)
	if got, want := strings.Join(kinds, " "), "index.json subsets/arm64.rsync-filter uses v2-refs.map"; got != want {
		t.Errorf("kinds of the bases: got %q, want %q", got, want)
	}
	dir := tree.bases.dir
	newFilter := append(bytes.Clone(filter), "+ /blobs/sha256/bb\n"...)
	newFilter[5000] = '!'
	newRefs := bytes.Clone(refs)
	newRefs[100] = '!'
	if _, err := tree.PublishWith(gen(2, newFilter, newRefs)); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); err == nil {
		t.Errorf("%s: a stale bases directory still there after a publish", stale)
	}
	for _, k := range []string{"subsets/arm64.rsync-filter", "v2-refs.map"} {
		if !tree.bases.by[k].taken {
			t.Errorf("%s: the new version not made over its basis", k)
		}
	}
	if tree.bases.by["index.json"].taken {
		t.Errorf("index.json: the basis taken by a publish that reuses the file")
	}
	tree.DropBases()
	if _, err := os.Stat(dir); err == nil {
		t.Errorf("%s: still there after DropBases", dir)
	}
	for p, want := range map[string][]byte{
		LiveLink + "/subsets/arm64.rsync-filter": newFilter,
		LiveLink + "/v2/refs.map":                newRefs,
	} {
		if got, err := os.ReadFile(tree.Path(p)); err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: got %d bytes (%v), want the %d written", p, len(got), err, len(want))
		}
	}
	// What the files are named by (their content) holds.
	for _, k := range []string{"subsets/arm64.rsync-filter", "v2-refs.map"} {
		ents, err := os.ReadDir(tree.Path(path.Join(SharedDir, k)))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			rel := path.Join(SharedDir, k, e.Name())
			b, err := os.ReadFile(tree.Path(rel))
			if err != nil {
				t.Fatal(err)
			}
			if !SharedFileHolds(rel, b) {
				t.Errorf("%s: does not hold what its name says", rel)
			}
		}
	}
}
