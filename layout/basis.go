package layout

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
)

// Bases: the next version of each large shared file, started from the live one ahead.
//
// A promotion changes a few lines of index.json, the subsets' filters, refs.map and the file
// list, and writes each whole again under a new name: about 100 MB at 90,000 manifests. Most of
// what that costs is the page cache's memory for the new files (on a virtual machine whose
// freed memory goes back to its host, each page is a fault of the host's: docs/benchmarks.md).
// StartBases copies each of the live publication's shared files on a goroutine, while generate
// waits on the network, into a temporary directory of its own; a file the publish then writes
// of the same kind (WriteFileFunc, writeSharedFile) is made over that copy: the pages that hold
// what the copy holds already are left as they are, the others written in place, the file
// truncated to its size at the end. The bytes are the same as written whole; only the writes
// are fewer.

// basisPage is the unit in which a File made over a basis compares and writes: a page of the
// page cache.
const basisPage = 4096

// basesPrefix starts the name of the temporary directory (in PubDir) holding the copies.
const basesPrefix = TempPrefix + "bases-"

// bases is a Tree's copies of the live publication's shared files (StartBases).
type bases struct {
	dir  string // OS path of the temporary directory holding the copies, in PubDir
	done chan struct{}
	mu   sync.Mutex
	by   map[string]*basis // by kind (the shared directory below SharedDir)
}

// basis is the copy of one shared file, ready once ready is closed.
type basis struct {
	src   string // OS path of the live file
	tmp   string // OS path of the copy
	ready chan struct{}
	// Set before ready is closed: the copy, open for writing, and the live file's bytes,
	// mapped (nil f: no copy, an error or a file that changed under it).
	f     *os.File
	data  []byte
	unmap func()
	taken bool // by a File, which closes f
}

// StartBases starts copying the live publication's shared files (those it links to in
// SharedDir, and in the shared directories it links to: refs.map below v2) on a goroutine of
// its own, each the basis of the next file its kind's directory gets through this Tree. The
// caller holds the tree's lock and calls DropBases before releasing it. A tree without a live
// publication, or whose publication cannot be read, gets no bases: its files are written
// whole. It is a hint: nothing it fails to do is an error.
func (t *Tree) StartBases() {
	if t.bases != nil {
		return
	}
	files := t.liveSharedFiles()
	if len(files) == 0 {
		return
	}
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	dir := t.Path(path.Join(PubDir, basesPrefix+hex.EncodeToString(rnd[:])))
	if err := os.Mkdir(dir, 0o755); err != nil {
		return
	}
	b := &bases{dir: dir, done: make(chan struct{}), by: map[string]*basis{}}
	var order []*basis
	for i, f := range files {
		bs := &basis{src: t.Path(f.rel), tmp: filepath.Join(dir, fmt.Sprint(i)), ready: make(chan struct{})}
		b.by[f.kind] = bs
		order = append(order, bs)
	}
	t.bases = b
	go func() {
		defer close(b.done)
		for _, bs := range order {
			bs.copy()
		}
	}()
}

// copy makes bs's copy and closes ready; on any error it leaves no copy.
func (bs *basis) copy() {
	defer close(bs.ready)
	data, unmap, err := MapFile(bs.src)
	if err != nil {
		return
	}
	src, err := os.Open(bs.src)
	if err != nil {
		unmap()
		return
	}
	defer src.Close()
	dst, err := os.OpenFile(bs.tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		unmap()
		return
	}
	// copy_file_range(2) where the file system has it: the kernel copies, page cache to page
	// cache, and the writeback to the disk starts right away.
	n, err := io.Copy(dst, src)
	if err != nil || n != int64(len(data)) {
		dst.Close()
		os.Remove(bs.tmp)
		unmap()
		return
	}
	startWriteback(dst, 0, n)
	bs.f, bs.data, bs.unmap = dst, data, unmap
}

// takeBasis is the copy to make the tree-relative file rel over: the basis of its directory's
// kind, once ready, if there is one not taken yet; nil otherwise.
func (t *Tree) takeBasis(rel string) *basis {
	b := t.bases
	if b == nil {
		return nil
	}
	kind, ok := strings.CutPrefix(path.Dir(rel), SharedDir+"/")
	if !ok {
		return nil
	}
	b.mu.Lock()
	bs := b.by[kind]
	if bs == nil || bs.taken {
		b.mu.Unlock()
		return nil
	}
	bs.taken = true
	b.mu.Unlock()
	<-bs.ready
	if bs.f == nil {
		return nil
	}
	return bs
}

// DropBases waits for StartBases' goroutine and removes the copies no File took, with their
// directory. Every File made over a basis must be committed or aborted before.
func (t *Tree) DropBases() {
	b := t.bases
	if b == nil {
		return
	}
	t.bases = nil
	<-b.done
	for _, bs := range b.by {
		if bs.f != nil && !bs.taken {
			bs.f.Close()
		}
		if bs.unmap != nil {
			bs.unmap()
		}
	}
	os.RemoveAll(b.dir)
}

// sharedFile is a shared file a publication reaches: its tree-relative path and its kind.
type sharedFile struct{ rel, kind string }

// liveSharedFiles are the regular files in SharedDir the live publication links to, and those
// the shared directories it links to link to (v2/refs.map), each the only one of its kind; none
// when there is no live publication or it cannot be read.
func (t *Tree) liveSharedFiles() []sharedFile {
	name, err := t.LivePublication()
	if err != nil || name == "" {
		return nil
	}
	var files []sharedFile
	seen := map[string]bool{}
	var visit func(dir string, depth int)
	visit = func(dir string, depth int) {
		ents, err := os.ReadDir(t.Path(dir))
		if err != nil {
			return
		}
		for _, e := range ents {
			rel := path.Join(dir, e.Name())
			if e.IsDir() && depth == 0 { // the publication's subsets/
				visit(rel, depth+1)
				continue
			}
			if e.Type()&fs.ModeSymlink == 0 {
				continue
			}
			target, err := os.Readlink(t.Path(rel))
			if err != nil || path.IsAbs(target) {
				continue
			}
			to := path.Join(path.Dir(rel), target)
			kind, ok := strings.CutPrefix(path.Dir(to), SharedDir+"/")
			if !ok || !fs.ValidPath(to) {
				continue
			}
			fi, err := os.Lstat(t.Path(to))
			switch {
			case err != nil:
			case fi.Mode().IsRegular() && !seen[kind] && !strings.HasPrefix(path.Base(to), TempPrefix):
				seen[kind] = true
				files = append(files, sharedFile{rel: to, kind: kind})
			case fi.IsDir() && depth == 0 && strings.HasPrefix(dir, PubDir+"/"):
				visit(to, depth+1) // v2/: its refs.map
			}
		}
	}
	visit(PubPath(name), 0)
	return files
}

// createOver is CreateFile of the tree-relative path rel made over bs's copy.
func (t *Tree) createOver(rel string, bs *basis) (*File, error) {
	if err := os.MkdirAll(filepath.Dir(t.Path(rel)), 0o755); err != nil {
		bs.f.Close()
		os.Remove(bs.tmp)
		return nil, fmt.Errorf("creating directory: %w", err)
	}
	return &File{f: bs.f, final: t.Path(rel), basis: bs.data}, nil
}

// CreateFile is CreateFile of the tree-relative path rel, made over the basis of its kind when
// StartBases started one (see there): the caller must call Commit or Abort.
func (t *Tree) CreateFile(rel string) (*File, error) {
	if bs := t.takeBasis(rel); bs != nil {
		return t.createOver(rel, bs)
	}
	return CreateFile(t.Path(rel))
}

// WriteFileFunc is WriteFileFunc of the tree-relative path rel, made over the basis of its
// kind when StartBases started one.
func (t *Tree) WriteFileFunc(rel string, write func(io.Writer) error) error {
	f, err := t.CreateFile(rel)
	if err != nil {
		return fmt.Errorf("writing %s: %w", t.Path(rel), err)
	}
	defer f.Abort()
	if err := write(f); err != nil {
		return fmt.Errorf("writing %s: %w", t.Path(rel), err)
	}
	return f.Commit()
}

// writeOver is Write of a File made over a basis: p goes at w.written, page by page; a page
// that holds what the basis holds there is left as it is, the runs of others written in place.
func (w *File) writeOver(p []byte) (int, error) {
	off := w.written
	same := func(b []byte, at int64) bool {
		return at+int64(len(b)) <= int64(len(w.basis)) && bytes.Equal(b, w.basis[at:at+int64(len(b))])
	}
	// page is the length of the page-aligned piece of b starting at offset at.
	page := func(b []byte, at int64) int { return min(len(b), basisPage-int(at%basisPage)) }
	done := 0
	for done < len(p) {
		k := page(p[done:], off)
		if same(p[done:done+k], off) {
			done += k
			off += int64(k)
			continue
		}
		j := k // the run of pages that differ
		for done+j < len(p) {
			k := page(p[done+j:], off+int64(j))
			if same(p[done+j:done+j+k], off+int64(j)) {
				break
			}
			j += k
		}
		n, err := w.f.WriteAt(p[done:done+j], off)
		done += n
		off += int64(n)
		w.dirty(off-int64(n), int64(n))
		if err != nil {
			w.written = off
			return done, err
		}
	}
	w.written = off
	return done, nil
}

// dirty notes n bytes written at off over a basis, starting their writeback a chunk at a time
// (as Write does).
func (w *File) dirty(off, n int64) {
	w.over += n
	if w.pending == 0 {
		w.from = off
	}
	w.pending += n
	if w.pending >= writebackChunk {
		startWriteback(w.f, w.from, off+n-w.from)
		w.pending = 0
	}
}

// finishOver cuts a File made over a basis to what was written: the basis may be longer.
func (w *File) finishOver() error {
	if w.basis == nil || w.written >= int64(len(w.basis)) {
		return nil
	}
	if err := w.f.Truncate(w.written); err != nil {
		return fmt.Errorf("truncating %s: %w", w.final, err)
	}
	return nil
}

// isBasesDir reports whether name (an entry of PubDir) is the directory of the bases
// StartBases started: what removeStalePub leaves alone.
func (t *Tree) isBasesDir(name string) bool {
	return t.bases != nil && filepath.Base(t.bases.dir) == name
}
