// Package filelist writes the fullfiletimelist-<module> file that quick-fedora-mirror reads,
// so mirrors of the Fedora network sync the tree by fetching only what changed instead of
// having rsync walk every file.
//
// The format, as Fedora's create-filelist writes it and quick-fedora-mirror (and other
// readers) parse it, tab-separated, one section after another ([Files] ordered by time, then
// path: sortByTime):
//
//	[Version]
//	2
//
//	[Files]
//	<timestamp>	<type>	<size>	<path>
//	…
//
//	[Checksums SHA1]
//	<sha1 hex>	<path>
//	…
//
//	[End]
//
// timestamp is the newer of the file's mtime and ctime in seconds since the epoch; type is
// "f" (file), "d" (directory) or "l" (symbolic link); size is st_size; path is relative to the
// module's top directory (the tree root), without a leading "./". A client transfers the
// entries whose timestamp is newer than its last run and deletes what the list no longer
// names. The checksummed files are those whose name and size may stay the same while their
// content changes: the generation stamp and index.json (Fedora lists repomd.xml files), read
// through their links.
//
// The list is part of each publication (layout.PubDir), written before the publication
// switches: the tree's fullfiletimelist-<module> is a constant link to the live one.
package filelist

import (
	"bytes"
	"cmp"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sync/errgroup"

	"github.com/regmirror/regmirror/layout"
)

// Version is the file list format version written.
const Version = 2

// DefaultModule is the module name used when none is given: the file is
// "fullfiletimelist-containers" at the tree root.
const DefaultModule = "containers"

// Prefix starts the name of every file list; such files are not listed (as create-filelist -s).
const Prefix = "fullfiletimelist-"

// ListenStateFile is the state file `regmirror listen` keeps in the tree by default; it is
// not part of the published content and is not listed.
const ListenStateFile = layout.MetaDir + "/listen-state.json"

// Checksummed are the files listed in [Checksums SHA1].
var Checksummed = []string{layout.IndexFile, layout.CurrentFile}

// Entry is one line of [Files].
type Entry struct {
	Time int64
	Type string // "f", "d", "l"
	Size int64
	Path string
}

// Name is the file list's name for module.
func Name(module string) string {
	if module == "" {
		module = DefaultModule
	}
	return Prefix + module
}

// Finish returns the layout.Publication.Finish of a publish: it renders the file list of the
// tree as it will be once the publication being built is live, as the publication's file
// Name(module) (stored as the shared file layout.SharedSeqPath, linked from the
// publication). The list names the new publication's files and links under their final
// paths, the live link with its new target, the root links (index.json, regmirror/current),
// and itself (its shared file and the publication's link to it: a mirror syncing by the list
// gets the file its root link leads to; the root link itself is never listed). The
// checksummed files are read from the new publication. Publish it with Name(module) among the
// publication's RootLinks.
//
// reuse, when not empty, spares listing directories whose changes since the live
// publication's list the caller knows: see Reuse. The live list's lines a splice copies are
// then parsed ahead once start is called (layout.Publication.Rendered: while the publish
// waits for the file system), so that the render only picks and copies them; without start,
// Finish parses them itself.
func Finish(tree *layout.Tree, module string, reuse []Reuse) (finish func(tmpDir, name string, sharedPath func(string) string) (map[string][]byte, error), start func(), err error) {
	if strings.ContainsAny(module, "/\\ \t\n") || strings.HasPrefix(module, ".") {
		return nil, nil, fmt.Errorf("file list module %q: want a plain name such as %q", module, DefaultModule)
	}
	parsed := make(chan *liveList, 1)
	var started, taken sync.Once
	start = func() {
		started.Do(func() {
			if len(reuse) == 0 {
				parsed <- nil
				return
			}
			go func() { parsed <- parseLive(tree, module, reusePrefixes(reuse)) }()
		})
	}
	return func(tmpDir, name string, sharedPath func(string) string) (map[string][]byte, error) {
		var live *liveList // parsed ahead, for the first call only
		taken.Do(func() {
			ahead := true
			started.Do(func() { ahead = false }) // not started: start does nothing from now on
			if ahead {
				live = <-parsed
			}
		})
		defer live.release()
		data, err := storePending(tree, tmpDir, name, module, sharedPath(Name(module)), reuse, live)
		if err != nil {
			return nil, err
		}
		return map[string][]byte{Name(module): data}, nil // nil: stored (layout.Publication.Finish)
	}, start, nil
}

// Reuse is a directory of the tree whose entries the live publication's list holds as they
// are but for the paths Changed: the list being rendered takes the others from it instead of
// listing the directory. The caller vouches for it: the tree is settled at the live
// publication (layout.Tree.Unsettle), so that publication's list was rendered when the
// directory was as it was left, and the caller knows every path changed in it since.
type Reuse struct {
	// Dir is the directory, a tree-relative slash path. Its own entry is listed as usual.
	Dir string
	// Changed are the files and links below Dir created, replaced or removed since
	// (tree-relative slash paths). Their directories up to Dir, whose times those changes
	// moved (or which were made or removed with them), are read again with them: a directory
	// below Dir may change only with the files and links it holds.
	Changed []string
	// Whole: each changed path is read again with everything below it (a directory made,
	// removed or whose files' times moved), not as one file or link; with Dir itself among
	// them, Dir is listed.
	Whole bool
	// Later, when not nil, gives more changed paths when the list is rendered: what the
	// publish changes before (layout.Tree.SharedChanged), or what it finds out only while it
	// runs (the phase-2 markers' change, found beside the metadata's write).
	Later func() []string
}

// reused is what a render takes from the live list: the Reuse directories left once their
// changes are known, and the paths below them to read again.
type reused struct {
	dirs     []Reuse
	prefixes []string        // the dirs' paths with a slash
	skip     map[string]bool // the dirs: listed, not descended into
	dirty    map[string]bool // paths read again: changed, their directories, what the publish makes
	whole    map[string]bool // paths read again with everything below them (in dirty too)
	// wholeFrom is a prefix of every path of whole (their longest common one, as first
	// made): a path that lacks it is below none (most of the list's lines).
	wholeFrom string
}

// resolveReuse is what a render takes of the live list with reuse, given the paths the
// publish makes (read again where below a Reuse directory).
func resolveReuse(reuse []Reuse, made []string) (reused, error) {
	u := reused{skip: map[string]bool{}, dirty: map[string]bool{}, whole: map[string]bool{}}
	for _, r := range reuse {
		changed := r.Changed
		if r.Later != nil {
			changed = slices.Concat(changed, r.Later())
		}
		if r.Whole && slices.Contains(changed, r.Dir) {
			continue // changed whole: listed
		}
		for _, rel := range changed {
			if !strings.HasPrefix(rel, r.Dir+"/") {
				return reused{}, fmt.Errorf("listing the tree: %q is not below %s", rel, r.Dir)
			}
			if r.Whole {
				u.whole[rel] = true
			}
			for p := rel; p != r.Dir && !u.dirty[p]; p = path.Dir(p) {
				u.dirty[p] = true
			}
		}
		u.dirs = append(u.dirs, r)
		u.prefixes = append(u.prefixes, r.Dir+"/")
		u.skip[r.Dir] = true
	}
	for _, p := range made {
		for _, r := range u.dirs {
			for q := p; strings.HasPrefix(q, r.Dir+"/") && !u.dirty[q]; q = path.Dir(q) {
				u.dirty[q] = true
			}
		}
	}
	first := true
	for p := range u.whole {
		if first {
			u.wholeFrom, first = p, false
		}
		for !strings.HasPrefix(p, u.wholeFrom) {
			u.wholeFrom = u.wholeFrom[:len(u.wholeFrom)-1]
		}
	}
	// What lies below a path read again whole is read with it.
	for p := range u.dirty {
		if u.belowWhole([]byte(p)) {
			delete(u.dirty, p)
			delete(u.whole, p)
		}
	}
	return u, nil
}

// belowWhole reports whether the path p lies below a path read again whole.
func (u *reused) belowWhole(p []byte) bool {
	if len(u.whole) == 0 || len(p) < len(u.wholeFrom) || string(p[:len(u.wholeFrom)]) != u.wholeFrom {
		return false
	}
	for i := bytes.LastIndexByte(p, '/'); i > 0; i = bytes.LastIndexByte(p[:i], '/') {
		if u.whole[string(p[:i])] {
			return true
		}
	}
	return false
}

// stale reports whether the live list's line of the path p (below a Reuse directory) is not
// taken: p is read again, or lies below a path read again whole.
func (u *reused) stale(p []byte) bool {
	return u.dirty[string(p)] || u.belowWhole(p)
}

// reuseEntries lists the tree as it is: each Reuse directory's subtree from the live
// publication's list (module's) with the changed paths read again, the rest listed. It
// returns false when that list cannot be read (the caller then lists the tree).
func reuseEntries(tree *layout.Tree, module string, u reused) ([]Entry, bool, error) {
	prev, unmap, ok := previousList(tree, module)
	if !ok {
		return nil, false, nil
	}
	defer unmap() // parseFiles copies what it keeps
	kept, ok := parseFiles(prev, u.prefixes)
	if !ok {
		return nil, false, nil
	}
	entries, err := scanSkipping(tree.Dir(), "", u.skip)
	if err != nil {
		return nil, false, fmt.Errorf("listing the tree: %w", err)
	}
	for _, e := range kept {
		if !u.stale([]byte(e.Path)) {
			entries = append(entries, e)
		}
	}
	again, err := readAgain(tree, u)
	if err != nil {
		return nil, false, err
	}
	return append(entries, again...), true, nil
}

// previousList is the live publication's list (module's), mapped (layout.MapFile: call
// unmap once done with it); false when it cannot be read.
func previousList(tree *layout.Tree, module string) (prev []byte, unmap func(), ok bool) {
	prev, unmap, err := layout.MapFile(tree.Path(path.Join(layout.LiveLink, Name(module))))
	return prev, unmap, err == nil
}

// readAgain lists the dirty paths that are there (and listed), with what lies below those
// read again whole, in no order. The paths are read side by side (readersAgain at once):
// the shared entries a promotion reads again whole are thousands of files, each a system
// call that waits little and computes less.
func readAgain(tree *layout.Tree, u reused) ([]Entry, error) {
	paths := make([]string, 0, len(u.dirty))
	for rel := range u.dirty {
		paths = append(paths, rel)
	}
	found := make([][]Entry, len(paths))
	var g errgroup.Group
	g.SetLimit(readersAgain)
	for i, rel := range paths {
		g.Go(func() error {
			fi, err := os.Lstat(tree.Path(rel))
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			if err != nil {
				return fmt.Errorf("listing the tree: %w", err)
			}
			e, ok := entryOf(rel, fi)
			if !ok || unlisted(rel, path.Base(rel)) {
				return nil
			}
			found[i] = []Entry{e}
			if u.whole[rel] && e.Type == "d" {
				below, err := scanSkipping(tree.Path(rel), rel, nil)
				if err != nil {
					return fmt.Errorf("listing the tree: %w", err)
				}
				found[i] = append(found[i], below...)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return slices.Concat(found...), nil
}

// readersAgain is how many paths readAgain reads at once.
const readersAgain = 4

// parseFiles returns the [Files] entries of a file list whose path starts with one of
// prefixes, and false when data is not a list this package wrote.
func parseFiles(data []byte, prefixes []string) ([]Entry, bool) {
	rest, ok := bytes.CutPrefix(data, []byte(listHead))
	if !ok {
		return nil, false
	}
	var entries []Entry
	for len(rest) > 0 {
		line, more, found := bytes.Cut(rest, []byte{'\n'})
		if !found {
			return nil, false
		}
		rest = more
		if len(line) == 0 {
			return entries, bytes.HasPrefix(rest, []byte("[Checksums SHA1]\n"))
		}
		f := bytes.SplitN(line, []byte{'\t'}, 4)
		if len(f) != 4 {
			return nil, false
		}
		if !slices.ContainsFunc(prefixes, func(p string) bool { return bytes.HasPrefix(f[3], []byte(p)) }) {
			continue
		}
		t, err1 := strconv.ParseInt(string(f[0]), 10, 64)
		size, err2 := strconv.ParseInt(string(f[2]), 10, 64)
		typ := string(f[1])
		if err1 != nil || err2 != nil || (typ != "f" && typ != "d" && typ != "l") {
			return nil, false
		}
		entries = append(entries, Entry{Time: t, Type: typ, Size: size, Path: string(f[3])})
	}
	return nil, false
}

// storePending makes the list of the tree with the publication being built in tmpDir
// (called name) live, its list (module's, stored as the tree-relative file) included. A list
// it can splice from the live one it writes as it is made straight into file (through
// layout.WriteFileFunc) and returns nil; any other it renders and returns, for the publish
// to store. A list built whole is as large as the tree's listing (50 MB at 90,000
// manifests), each page of it fresh memory.
func storePending(tree *layout.Tree, tmpDir, name, module, file string, reuse []Reuse, live *liveList) ([]byte, error) {
	var u reused
	if len(reuse) > 0 {
		var err error
		if u, err = resolveReuse(reuse, madePaths(name, file)); err != nil {
			return nil, err
		}
		if stored, err := storeSpliced(tree, tmpDir, name, module, file, u, fsNow, live); stored || err != nil {
			return nil, err
		}
	}
	return renderListed(tree, tmpDir, name, module, file, u, fsNow)
}

// storeSpliced writes writeSpliced's list into the tree-relative file (through
// layout.WriteFileFunc: complete and synced, or not there); false, with nothing written,
// where writeSpliced gives false.
func storeSpliced(tree *layout.Tree, tmpDir, name, module, file string, u reused, now func() int64, live *liveList) (bool, error) {
	err := layout.WriteFileFunc(tree.Path(file), func(w io.Writer) error {
		ok, err := writeSpliced(w, tree, tmpDir, name, module, file, u, now, live)
		if err == nil && !ok {
			err = errNotSpliced
		}
		return err
	})
	if errors.Is(err, errNotSpliced) {
		return false, nil
	}
	return err == nil, err
}

// errNotSpliced is a list writeSpliced left to renderListed (its partial file discarded).
var errNotSpliced = errors.New("file list not spliced")

// movedDirs are the directories whose times a publish moves after its list (stored as file) is
// rendered, each with an entry made or replaced in it: the list's own directory (the list
// written), layout.PubDir (the publication renamed into place) and layout.MetaDir (live
// switched). The list gives them the time of what the publish makes; the directories above
// the list's are made before it is rendered (layout.Publication.Finish), so read as they are.
func movedDirs(file string) map[string]bool {
	return map[string]bool{path.Dir(file): true, layout.PubDir: true, layout.MetaDir: true}
}

// madePaths are the tree-relative paths a publish of publication name, its list stored as
// file, makes or changes (pending): read again where the live list's lines would be taken.
func madePaths(name, file string) []string {
	return []string{layout.LiveLink, layout.IndexFile, layout.CurrentFile, layout.PubPath(name), path.Dir(file), file}
}

// renderListed is storePending's list rendered from the tree's entries (the reused ones parsed from the live
// list), sorted and rendered whole; now gives the time of what the publish makes, read once
// the tree is listed (fsNow: the listing of a large tree takes seconds, and what the publish
// makes after the render must not be listed older than it is).
func renderListed(tree *layout.Tree, tmpDir, name, module, file string, u reused, now func() int64) ([]byte, error) {
	var entries []Entry
	ok := false
	if len(u.dirs) > 0 {
		var err error
		if entries, ok, err = reuseEntries(tree, module, u); err != nil {
			return nil, err
		}
	}
	if !ok {
		var err error
		if entries, err = Scan(tree.Dir()); err != nil {
			return nil, err
		}
	}
	entries, sums, err := pending(entries, tmpDir, name, module, file, now())
	if err != nil {
		return nil, err
	}
	c := startChecksums(sums) // read once, while the entries are sorted
	sortByTime(entries)
	at := slices.IndexFunc(entries, func(e Entry) bool { return e.Path == file })
	for range 8 {
		data, err := renderWith(entries, c)
		if err != nil {
			return nil, err
		}
		if int64(len(data)) == entries[at].Size {
			return data, nil
		}
		entries[at].Size = int64(len(data))
	}
	return nil, errUnsettled
}

// errUnsettled is the error when the list's own size cannot be found.
var errUnsettled = errors.New("listing the tree: the file list's own size does not settle")

// pending adds to entries, the tree as it is, what the publication being built in tmpDir
// (called name) makes, at time now: the publication's entries, the links as they will be and
// the list itself (stored as file, its size zero: found by rendering), and gives the
// directories whose times the publish moves after the list is rendered (movedDirs) time now.
// It returns the entries, unsorted, and the OS paths of the checksummed files.
func pending(entries []Entry, tmpDir, name, module, file string, now int64) ([]Entry, map[string]string, error) {
	pub, err := Scan(tmpDir)
	if err != nil {
		return nil, nil, err
	}
	final := layout.PubPath(name)
	fi, err := os.Stat(tmpDir)
	if err != nil {
		return nil, nil, fmt.Errorf("listing the tree: %w", err)
	}
	entries = append(entries, Entry{Time: now, Type: "d", Size: fi.Size(), Path: final})
	for _, e := range pub {
		e.Path = final + "/" + e.Path
		entries = append(entries, e)
	}
	// The links as they will be: live (switched), index.json and regmirror/current (made
	// when missing).
	links := map[string]string{
		layout.LiveLink:    layout.LiveTarget(name),
		layout.IndexFile:   layout.RootLinkTarget(layout.IndexFile),
		layout.CurrentFile: layout.CurrentLinkTarget,
	}
	for i := 0; i < len(entries); i++ {
		if target, ok := links[entries[i].Path]; ok {
			if entries[i].Type != "l" || entries[i].Size != int64(len(target)) || entries[i].Path == layout.LiveLink {
				entries[i] = Entry{Time: now, Type: "l", Size: int64(len(target)), Path: entries[i].Path}
			}
			delete(links, entries[i].Path)
		}
	}
	for rel, target := range links {
		entries = append(entries, Entry{Time: now, Type: "l", Size: int64(len(target)), Path: rel})
	}
	// The list itself: the publication's link and the shared file (its size is found by
	// rendering until it no longer changes: a few digits more or less).
	link := path.Join(final, Name(module))
	entries = append(entries, Entry{Time: now, Type: "l", Size: int64(len(layout.RelLink(link, file))), Path: link})
	entries = append(entries, Entry{Time: now, Type: "f", Path: file})
	// The directories the publish writes in after the render: listed as they will be.
	moved := movedDirs(file)
	for i := range entries {
		if entries[i].Type == "d" && moved[entries[i].Path] {
			entries[i].Time = now
			delete(moved, entries[i].Path)
		}
	}
	if dir := path.Dir(file); moved[dir] { // not made (layout.Publication.Finish makes it)
		entries = append(entries, Entry{Time: now, Type: "d", Size: fi.Size(), Path: dir})
	}
	sums := map[string]string{}
	for _, rel := range Checksummed {
		sums[rel] = filepath.Join(tmpDir, filepath.FromSlash(pubFileOf[rel]))
	}
	return entries, sums, nil
}

// splicedChunk is how much of a spliced list writeSpliced holds before writing it out (a
// variable for the tests).
var splicedChunk = 1 << 20

// writeSpliced writes renderListed's list to w as it is made, built by following the
// change: the [Files] lines of the live list below the Reuse directories that the change
// leaves alone are copied as they are (they keep their time and path, so their order), and
// the other entries (the rest of the tree listed, the changed paths read again, what the
// publish makes) sorted and merged in. No line is parsed into an Entry, sorted or formatted
// but these. It holds only the lines after the list's own (whose size is known at the end)
// and a chunk of the others. It returns false, perhaps with part of the list written, for
// renderListed to render the list, when the live list cannot be read or is not one this
// package wrote in order with each reused line as rendered (canonical numbers, no key twice),
// when the new publication would be below a Reuse directory, and on any error (the other
// paths the publish makes or changes are read again where below one: madePaths); an error
// is w's.
func writeSpliced(w io.Writer, tree *layout.Tree, tmpDir, name, module, file string, u reused, now func() int64, live *liveList) (bool, error) {
	if len(u.dirs) == 0 {
		return false, nil
	}
	prefixes := u.prefixes
	if slices.ContainsFunc(prefixes, func(pre string) bool { return strings.HasPrefix(layout.PubPath(name)+"/", pre) }) {
		return false, nil
	}
	if live == nil || !live.covers(prefixes) {
		live = parseLive(tree, module, prefixes)
		if live == nil {
			return false, nil
		}
		defer live.release() // the lines kept are copied into the new list
	}
	active := live.mask(prefixes)
	others, err := scanSkipping(tree.Dir(), "", u.skip)
	if err != nil {
		return false, nil
	}
	again, err := readAgain(tree, u)
	if err != nil {
		return false, nil
	}
	others, sums, err := pending(append(others, again...), tmpDir, name, module, file, now())
	if err != nil {
		return false, nil
	}
	c := startChecksums(sums) // read while the lines are made
	sortByTime(others)
	for i := 1; i < len(others); i++ {
		if others[i].Time == others[i-1].Time && others[i].Path == others[i-1].Path {
			return false, nil // an order the sort of the whole list might not keep
		}
	}
	at := slices.IndexFunc(others, func(e Entry) bool { return e.Path == file })
	if at < 0 {
		return false, nil
	}
	// The lines before the list's own go to out, written to w a chunk at a time (flushed
	// bytes so far) while the next is made (chunkWriter), the ones after to tail: its size is
	// found once the rest is known.
	cw := newChunkWriter(w, splicedChunk+64<<10)
	defer cw.close() // the chunks handed over are written, or dropped after an error, before w is closed
	out := cw.buffer()
	out = append(out, listHead...)
	flushed := 0
	flush := func() {
		if len(out) > 0 {
			flushed += len(out)
			out = cw.swap(out)
		}
	}
	var tail []byte
	into := &out
	j := 0
	// next writes the other entries ordered before (t, p), or all when last; false when one
	// has that key.
	next := func(t int64, p []byte, last bool) bool {
		for ; j < len(others); j++ {
			e := &others[j]
			if !last && (e.Time > t || e.Time == t && e.Path >= string(p)) {
				return e.Time != t || e.Path != string(p)
			}
			if j == at {
				into = &tail
				continue
			}
			*into = appendLine(*into, *e)
			if len(out) >= splicedChunk {
				flush()
			}
		}
		return true
	}
	// The live list's lines below the directories taken from it, parsed and checked
	// (parseLive), in order: each copied unless read again.
	for _, ln := range live.lines {
		if ln.pre&active == 0 {
			continue
		}
		line := live.data[ln.start : ln.start+uint32(ln.n)]
		p := line[ln.path:]
		if u.stale(p) {
			continue
		}
		if !next(ln.t, p, false) {
			return false, nil
		}
		*into = append(append(*into, line...), '\n')
		if len(out) >= splicedChunk {
			flush()
		}
	}
	next(0, nil, true)
	tail, err = appendSums(tail, c)
	if err != nil {
		return false, nil
	}
	self := others[at]
	var buf [256]byte
	for range 8 {
		n := int64(flushed + len(out) + len(appendLine(buf[:0], self)) + len(tail))
		if n == self.Size {
			out = append(appendLine(out, self), tail...)
			flush()
			werr := cw.close()
			return werr == nil, werr
		}
		self.Size = n
	}
	return false, cw.close()
}

// chunkWriter writes the chunks handed to it (swap) to w on a goroutine of its own, one at a
// time, while the caller fills the other of its two buffers: a write that grows a file's
// page cache costs about what making the chunk does, so the two go side by side.
type chunkWriter struct {
	w          io.Writer
	full, free chan []byte
	done       chan struct{}
	err        error // w's first error, read once done is closed
	closed     bool
}

func newChunkWriter(w io.Writer, size int) *chunkWriter {
	c := &chunkWriter{w: w, full: make(chan []byte, 1), free: make(chan []byte, 2), done: make(chan struct{})}
	c.free <- make([]byte, 0, size)
	c.free <- make([]byte, 0, size)
	go func() {
		defer close(c.done)
		for b := range c.full {
			if c.err == nil {
				_, c.err = c.w.Write(b)
			}
			c.free <- b[:0]
		}
	}()
	return c
}

// buffer is an empty buffer to fill: the first one.
func (c *chunkWriter) buffer() []byte { return <-c.free }

// swap hands b over to be written and returns an empty buffer, once one is free.
func (c *chunkWriter) swap(b []byte) []byte {
	c.full <- b
	return <-c.free
}

// close waits until every chunk handed over is written and returns w's first error. It may
// be called again; nothing may be handed over after it.
func (c *chunkWriter) close() error {
	if !c.closed {
		c.closed = true
		close(c.full)
	}
	<-c.done
	return c.err
}

// canonicalInt is the integer b holds as strconv.AppendInt writes it (no sign but a minus, no
// leading zero, 18 digits at most); false for anything else.
func canonicalInt(b []byte) (int64, bool) {
	d, neg := b, len(b) > 0 && b[0] == '-'
	if neg {
		d = b[1:]
	}
	if len(d) == 0 || len(d) > 18 || d[0] == '0' && (len(d) > 1 || neg) {
		return 0, false
	}
	var n int64
	for _, c := range d {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	if neg {
		n = -n
	}
	return n, true
}

// pubFileOf is, for each checksummed file, the publication's file it is a link to.
var pubFileOf = map[string]string{layout.IndexFile: layout.PubIndex, layout.CurrentFile: layout.PubStamp}

// sortByTime orders the [Files] lines by time, then path: readers do not depend on the order
// (quick-fedora-mirror selects lines by time and sorts what it needs), and what a publish
// changes (new files, the new publication, directories whose time moved) then gathers at the
// end, next to what the previous publish changed, so that rsync's delta transfer of a new list
// against the previous one sends little more than the new lines (deploy/mirror-sync --fuzzy).
func sortByTime(entries []Entry) {
	slices.SortFunc(entries, func(a, b Entry) int {
		if c := cmp.Compare(a.Time, b.Time); c != 0 {
			return c
		}
		return strings.Compare(a.Path, b.Path)
	})
}

// Render returns the file list of the directory tree at root as it is.
func Render(root string) ([]byte, error) {
	entries, err := Scan(root)
	if err != nil {
		return nil, err
	}
	sortByTime(entries)
	sums := map[string]string{}
	for _, rel := range Checksummed {
		sums[rel] = filepath.Join(root, filepath.FromSlash(rel))
	}
	return render(entries, sums)
}

// listHead starts every list.
var listHead = fmt.Sprintf("[Version]\n%d\n\n[Files]\n", Version)

// render writes the list of entries; the checksummed files are read from the OS paths in sums.
func render(entries []Entry, sums map[string]string) ([]byte, error) {
	return renderWith(entries, startChecksums(sums))
}

// renderWith is render with the checksummed files read (startChecksums).
func renderWith(entries []Entry, c *checksums) ([]byte, error) {
	// A line is about the size of its path and 30 bytes more; appended without fmt, which
	// took most of a render's time at scale.
	n := 0
	for _, e := range entries {
		n += len(e.Path) + 32
	}
	b := make([]byte, 0, len(listHead)+n+256)
	b = append(b, listHead...)
	for _, e := range entries {
		b = appendLine(b, e)
	}
	return appendSums(b, c)
}

// appendLine appends the [Files] line of e to b.
func appendLine(b []byte, e Entry) []byte {
	b = strconv.AppendInt(b, e.Time, 10)
	b = append(b, '\t')
	b = append(b, e.Type...)
	b = append(b, '\t')
	b = strconv.AppendInt(b, e.Size, 10)
	b = append(b, '\t')
	b = append(b, e.Path...)
	return append(b, '\n')
}

// appendSums appends the end of [Files] and the rest of the list to b, once c's files are
// read.
func appendSums(b []byte, c *checksums) ([]byte, error) {
	<-c.done
	if c.err != nil {
		return nil, c.err
	}
	b = append(b, "\n[Checksums SHA1]\n"...)
	b = append(b, c.lines...)
	return append(b, "\n[End]\n"...), nil
}

// checksums are the lines of a list's [Checksums SHA1], read on a goroutine of their own
// (startChecksums) while the [Files] lines are made: index.json is megabytes.
type checksums struct {
	done  chan struct{} // closed once lines or err is set
	lines []byte
	err   error
}

// startChecksums starts reading the SHA-1 of each of the Checksummed files, at the OS paths in
// sums; one that is not there is left out.
func startChecksums(sums map[string]string) *checksums {
	c := &checksums{done: make(chan struct{})}
	go func() {
		defer close(c.done)
		for _, rel := range Checksummed {
			sum, err := sha1Of(sums[rel])
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			if err != nil {
				c.err = fmt.Errorf("listing the tree: %w", err)
				return
			}
			c.lines = hex.AppendEncode(c.lines, sum)
			c.lines = append(c.lines, '\t')
			c.lines = append(c.lines, rel...)
			c.lines = append(c.lines, '\n')
		}
	}()
	return c
}

// sha1Of is the SHA-1 of the file at the OS path p, read a small buffer at a time (io.Copy):
// index.json is megabytes, and a buffer of its size would be fresh memory.
func sha1Of(p string) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	h := sha1.New()
	if _, err := io.Copy(h, f); err != nil {
		return nil, err
	}
	return h.Sum(nil), nil
}

// Scan lists every file, directory and link below root (root itself, file lists, temporary
// files, the listener's state file and the settled record excepted), sorted by path.
func Scan(root string) ([]Entry, error) {
	entries, err := scanSkipping(root, "", nil)
	if err != nil {
		return nil, fmt.Errorf("listing the tree: %w", err)
	}
	slices.SortFunc(entries, func(a, b Entry) int { return strings.Compare(a.Path, b.Path) })
	return entries, nil
}

// unlisted reports whether the entry at rel (slash path below the root), named name, is left
// out of the list, and with it what lies below it.
func unlisted(rel, name string) bool {
	return strings.HasPrefix(name, layout.TempPrefix) || rel == ListenStateFile || rel == layout.SettledFile || (!strings.Contains(rel, "/") && strings.HasPrefix(name, Prefix))
}

// errTabOrNewline is the error for a path the format cannot hold.
func errTabOrNewline(rel string) error {
	return fmt.Errorf("%q has a tab or newline in its name, which the file list format cannot hold", rel)
}

// walkScan is Scan's listing, unsorted, with filepath.WalkDir, without what lies below the
// directories in skip (listed themselves), each path below base (root's slash path in the
// tree, "" for the tree's root).
func walkScan(root, base string, skip map[string]bool) ([]Entry, error) {
	var entries []Entry
	prefix := strings.TrimSuffix(root, string(filepath.Separator)) + string(filepath.Separator)
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && p != root {
				return nil // removed while listing (a pruned orphan)
			}
			return err
		}
		if p == root {
			return nil
		}
		rel, ok := strings.CutPrefix(p, prefix)
		if !ok { // a root such as "." that WalkDir does not repeat
			var err error
			if rel, err = filepath.Rel(root, p); err != nil {
				return err
			}
		}
		rel = filepath.ToSlash(rel)
		if base != "" {
			rel = base + "/" + rel
		}
		if unlisted(rel, d.Name()) {
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		if strings.ContainsAny(rel, "\t\n") {
			return errTabOrNewline(rel)
		}
		fi, err := d.Info()
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		if e, ok := entryOf(rel, fi); ok {
			entries = append(entries, e)
		}
		if skip[rel] && d.IsDir() {
			return fs.SkipDir
		}
		return nil
	})
	return entries, err
}

// entryOf is the entry of the file, directory or link at rel described by fi; false for
// what a mirror does not copy (sockets, fifos).
func entryOf(rel string, fi fs.FileInfo) (Entry, bool) {
	e := Entry{Time: changed(fi), Size: fi.Size(), Path: rel}
	switch {
	case fi.Mode().IsRegular():
		e.Type = "f"
	case fi.IsDir():
		e.Type = "d"
	case fi.Mode()&fs.ModeSymlink != 0:
		e.Type = "l"
	default:
		return Entry{}, false
	}
	return e, true
}
