package filelist

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/regmirror/regmirror/layout"
)

// TestSplicedMatchesListed: the list renderSpliced builds by following the change is, byte
// for byte, the one renderListed renders from the entries; on random trees and changes: times
// of the reused lines before, equal to and after those of the paths read again, removed
// files and directories, new ones, checksummed files; and on live lists it must refuse
// (out of order, a key twice, numbers not as rendered), where it leaves the list to
// renderListed.
func TestSplicedMatchesListed(t *testing.T) {
	const v2, blobs = "regmirror/v2", "blobs/sha256"
	mutations := []struct {
		name   string
		mutate func(r *rand.Rand, lines []string) []string // of the [Files] lines
		wantOK bool
	}{
		{"as rendered", nil, true},
		{"out of order", func(r *rand.Rand, l []string) []string {
			i := r.IntN(len(l) - 1)
			l[i], l[i+1] = l[i+1], l[i]
			return l
		}, false},
		{"a line twice", func(r *rand.Rand, l []string) []string {
			i := r.IntN(len(l))
			return slices.Insert(l, i, l[i])
		}, false},
		{"a leading zero", func(r *rand.Rand, l []string) []string {
			i := r.IntN(len(l))
			l[i] = "0" + l[i]
			return l
		}, false},
		{"a size with a plus", func(r *rand.Rand, l []string) []string {
			i := r.IntN(len(l))
			f := strings.SplitN(l[i], "\t", 4)
			l[i] = strings.Join([]string{f[0], f[1], "+" + f[2], f[3]}, "\t")
			return l
		}, false},
		{"an unknown type", func(r *rand.Rand, l []string) []string {
			i := r.IntN(len(l))
			f := strings.SplitN(l[i], "\t", 4)
			l[i] = strings.Join([]string{f[0], "x", f[2], f[3]}, "\t")
			return l
		}, false},
	}
	for _, m := range mutations {
		refused := 0
		for seed := range uint64(12) {
			t.Run(fmt.Sprintf("%s/%d", m.name, seed), func(t *testing.T) {
				r := rand.New(rand.NewPCG(seed, 7))
				tree := layout.NewTree(t.TempDir())
				now := time.Now().Unix()
				// The live list: lines below the reused directories, a few on disk, at times
				// around now (before, equal to and after the times the change's files get).
				var listed []Entry
				var onDisk []string
				for i := range 40 + r.IntN(60) {
					tm := now - 3 + r.Int64N(7)
					var dir, f string
					if r.IntN(2) == 0 {
						dir = fmt.Sprintf("%s/r%d/_digests/%02x", v2, r.IntN(3), i)
						f = dir + fmt.Sprintf("/%02x.oci-manifest", i)
						listed = append(listed, Entry{Time: tm, Type: "d", Size: 4096, Path: dir})
					} else {
						f = fmt.Sprintf("%s/%02x%d", blobs, i, r.IntN(1000))
					}
					listed = append(listed, Entry{Time: tm, Type: "f", Size: r.Int64N(5000), Path: f})
					if r.IntN(3) == 0 {
						onDisk = append(onDisk, f)
					}
				}
				for _, f := range append(onDisk, v2+"/new/_digests/aa/aa.oci-index", blobs+"/new") {
					writeFile(t, tree.Path(f), []byte(f))
				}
				// Outside: the live publication, root links, an old publication.
				for _, f := range []string{"regmirror/pub/p/index.json", "regmirror/pub/old/x", "oci-layout"} {
					writeFile(t, tree.Path(f), []byte(f))
				}
				if err := os.Symlink("pub/p", tree.Path(layout.LiveLink)); err != nil {
					t.Fatal(err)
				}
				if r.IntN(2) == 0 {
					if err := os.Symlink(layout.RootLinkTarget(layout.IndexFile), tree.Path(layout.IndexFile)); err != nil {
						t.Fatal(err)
					}
				}
				if m.mutate == nil {
					// A line outside the reused directories, which the render lists instead.
					listed = append(listed, Entry{Time: now, Type: "f", Size: 1, Path: "regmirror/pub/old/x"})
				}
				sortByTime(listed)
				prev, err := render(listed, map[string]string{})
				if err != nil {
					t.Fatal(err)
				}
				if m.mutate != nil {
					files, rest, _ := strings.Cut(strings.TrimPrefix(string(prev), listHead), "\n\n")
					prev = []byte(listHead + strings.Join(m.mutate(r, strings.Split(files, "\n")), "\n") + "\n\n" + rest)
				}
				if err := os.WriteFile(tree.Path("regmirror/pub/p/"+Name(DefaultModule)), prev, 0o644); err != nil {
					t.Fatal(err)
				}
				// The change: the new files, some listed files (removed: not on disk), some on disk
				// (re-read), a removed directory's file.
				changed := map[string][]string{v2: {v2 + "/new/_digests/aa/aa.oci-index", v2 + "/gone/_digests/bb/bb.oci-index"}, blobs: {blobs + "/new"}}
				for _, e := range listed {
					if e.Type == "f" && !strings.HasPrefix(e.Path, layout.PubDir+"/") && r.IntN(4) == 0 {
						d := v2
						if strings.HasPrefix(e.Path, blobs+"/") {
							d = blobs
						}
						changed[d] = append(changed[d], e.Path)
					}
				}
				reuse := []Reuse{{Dir: v2, Changed: changed[v2]}, {Dir: blobs, Changed: changed[blobs]}}
				tmpDir := tree.Path("regmirror/pub/.tmp-q")
				for _, f := range []string{layout.PubIndex, layout.PubStamp} {
					writeFile(t, filepath.Join(tmpDir, filepath.FromSlash(f)), []byte(f+fmt.Sprint(seed)))
				}
				file := path.Join(layout.SharedDir, Name(DefaultModule), "2-1")
				// The publish makes the list's directory before the list is rendered.
				if err := os.MkdirAll(tree.Path(path.Dir(file)), 0o755); err != nil {
					t.Fatal(err)
				}
				u := mustResolve(t, reuse, "q", file)
				want, err := renderListed(tree, tmpDir, "q", DefaultModule, file, u, func() int64 { return now })
				if err != nil {
					t.Fatal(err)
				}
				got, ok := renderSpliced(tree, tmpDir, "q", DefaultModule, file, u, func() int64 { return now })
				// A mutation may touch a line the change drops, leaving the list usable.
				if !ok && m.wantOK {
					t.Fatalf("spliced: got ok %v, want %v", ok, m.wantOK)
				}
				if !ok {
					refused++
				}
				if ok && !bytes.Equal(got, want) {
					t.Errorf("spliced list:\ngot\n%s\nwant\n%s", got, want)
				}
				// The live list parsed before (as Finish does, beside the publish) under more
				// directories than the render takes from it (regmirror/pub, which it lists):
				// the same list.
				var pre bytes.Buffer
				live := parseLive(tree, DefaultModule, append(reusePrefixes(reuse), layout.SharedDir+"/", layout.PubDir+"/"))
				okPre, err := writeSpliced(&pre, tree, tmpDir, "q", DefaultModule, file, u, func() int64 { return now }, live)
				live.release()
				if err != nil || okPre != ok {
					t.Fatalf("spliced from the list parsed before: got ok %v (%v), want %v", okPre, err, ok)
				}
				if ok && !bytes.Equal(pre.Bytes(), want) {
					t.Errorf("spliced from the list parsed before:\ngot\n%s\nwant\n%s", pre.Bytes(), want)
				}
				// Written as it is made, a few lines at a time: the same bytes in the file,
				// or, refused, no file and no temporary one (part of the list may have been
				// written before the refusal).
				defer func(chunk int) { splicedChunk = chunk }(splicedChunk)
				splicedChunk = 1 + r.IntN(200)
				stored, err := storeSpliced(tree, tmpDir, "q", DefaultModule, file, u, func() int64 { return now }, nil)
				if err != nil || stored != ok {
					t.Fatalf("stored: got %v (%v), want %v as renderSpliced", stored, err, ok)
				}
				inDir, err := os.ReadDir(tree.Path(path.Dir(file)))
				if err != nil {
					t.Fatal(err)
				}
				var names []string
				for _, e := range inDir {
					names = append(names, e.Name())
				}
				if !stored {
					if len(names) != 0 {
						t.Fatalf("refused, the list's directory holds %v, want nothing", names)
					}
					return
				}
				if len(names) != 1 || names[0] != path.Base(file) {
					t.Fatalf("the list's directory holds %v, want only %s", names, path.Base(file))
				}
				if b, err := os.ReadFile(tree.Path(file)); err != nil || !bytes.Equal(b, want) {
					t.Errorf("stored list (%v):\ngot\n%s\nwant\n%s", err, b, want)
				}
			})
		}
		if !m.wantOK && refused == 0 {
			t.Errorf("%s: no list refused", m.name)
		}
	}
}

// renderSpliced is writeSpliced's list in memory; false where writeSpliced gives false.
func renderSpliced(tree *layout.Tree, tmpDir, name, module, file string, u reused, now func() int64) ([]byte, bool) {
	var b bytes.Buffer
	if ok, err := writeSpliced(&b, tree, tmpDir, name, module, file, u, now, nil); !ok || err != nil {
		return nil, false
	}
	return b.Bytes(), true
}

// mustResolve is resolveReuse for a publish of name storing its list as file.
func mustResolve(t *testing.T, reuse []Reuse, name, file string) reused {
	t.Helper()
	u, err := resolveReuse(reuse, madePaths(name, file))
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// writeFile writes a file for a test, making its directories (without layout.WriteFile's
// fsync: many small trees).
func writeFile(t *testing.T, name string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(name, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// FuzzSplicedMatchesListed: whatever the live list holds, renderSpliced either leaves it to
// renderListed or builds the same bytes.
func FuzzSplicedMatchesListed(f *testing.F) {
	f.Add([]byte(listHead + "5\td\t4096\tregmirror/v2/a\n6\tf\t3\tregmirror/v2/a/x\n7\tf\t9\tblobs/sha256/b\n7\tf\t0\tblobs/sha256/c\n9\tl\t2\toci-layout\n\n[Checksums SHA1]\n\n[End]\n"))
	f.Add([]byte(listHead + "7\tf\t9\tblobs/sha256/b\n6\tf\t3\tregmirror/v2/a/x\n\n[Checksums SHA1]\n"))
	f.Add([]byte(listHead + "-1\tf\t09\tblobs/sha256/b\n-0\tf\t3\tregmirror/v2/a/x\n\n[Checksums SHA1]\n"))
	tree := layout.NewTree(f.TempDir())
	for _, p := range []string{"regmirror/v2/a/x", "blobs/sha256/new", "regmirror/pub/.tmp-q/index.json", "oci-layout"} {
		if err := os.MkdirAll(filepath.Dir(tree.Path(p)), 0o755); err != nil {
			f.Fatal(err)
		}
		if err := os.WriteFile(tree.Path(p), []byte(p), 0o644); err != nil {
			f.Fatal(err)
		}
	}
	if err := os.MkdirAll(tree.Path("regmirror/pub/p"), 0o755); err != nil {
		f.Fatal(err)
	}
	if err := os.Symlink("pub/p", tree.Path(layout.LiveLink)); err != nil {
		f.Fatal(err)
	}
	reuse := []Reuse{
		{Dir: "regmirror/v2", Changed: []string{"regmirror/v2/a/x", "regmirror/v2/gone/y"}},
		{Dir: "blobs/sha256", Changed: []string{"blobs/sha256/new", "blobs/sha256/c"}},
	}
	tmpDir := tree.Path("regmirror/pub/.tmp-q")
	file := path.Join(layout.SharedDir, Name(DefaultModule), "2-1")
	now := time.Now().Unix()
	u, err := resolveReuse(reuse, madePaths("q", file))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, prev []byte) {
		if err := os.WriteFile(tree.Path("regmirror/pub/p/"+Name(DefaultModule)), prev, 0o644); err != nil {
			t.Fatal(err)
		}
		got, ok := renderSpliced(tree, tmpDir, "q", DefaultModule, file, u, func() int64 { return now })
		if !ok {
			return
		}
		want, err := renderListed(tree, tmpDir, "q", DefaultModule, file, u, func() int64 { return now })
		if err != nil {
			t.Fatalf("spliced a list renderListed refuses: %v", err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("spliced list:\ngot\n%s\nwant\n%s", got, want)
		}
	})
}

// failAfter is a writer that takes n writes, then fails every one after.
type failAfter struct {
	n   int
	got bytes.Buffer
}

var errDiskFull = errors.New("disk full")

func (f *failAfter) Write(p []byte) (int, error) {
	if f.n == 0 {
		return 0, errDiskFull
	}
	f.n--
	return f.got.Write(p)
}

// TestChunkWriter: the chunks handed over reach the writer in order, each whole, and after
// the writer's first error the rest are dropped, swap never blocks, and close returns it.
func TestChunkWriter(t *testing.T) {
	for _, tc := range []struct {
		name    string
		writes  int // the writer's successful writes
		want    string
		wantErr error
	}{
		{"every chunk", 100, "chunk 0\nchunk 1\nchunk 2\nchunk 3\nchunk 4\n", nil},
		{"the third write fails", 2, "chunk 0\nchunk 1\n", errDiskFull},
		{"the first write fails", 0, "", errDiskFull},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := &failAfter{n: tc.writes}
			c := newChunkWriter(w, 16)
			b := c.buffer()
			for i := range 5 {
				b = c.swap(fmt.Appendf(b, "chunk %d\n", i))
				if len(b) != 0 {
					t.Fatalf("swap gave a buffer of %d bytes, want an empty one", len(b))
				}
			}
			if err := c.close(); err != tc.wantErr {
				t.Errorf("close: got %v, want %v", err, tc.wantErr)
			}
			if err := c.close(); err != tc.wantErr {
				t.Errorf("close again: got %v, want %v", err, tc.wantErr)
			}
			if got := w.got.String(); got != tc.want {
				t.Errorf("written: got %q, want %q", got, tc.want)
			}
		})
	}
}
