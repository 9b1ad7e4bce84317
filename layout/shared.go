package layout

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// SharedDir holds the large parts of publications, stored once and named by their content,
// so that a publication is a handful of small entries and a publish adds what changed, not
// the tree (deploy/mirror-sync copies only new names; rsync's --fuzzy finds the previous
// version of a file as the basis of its delta transfer). One directory per kind, named after
// the publication path it stands for:
//
//	regmirror/shared/<kind>/<generation>-<hex>   a file (index.json, refs.map, a subset's
//	                                             filter): hex is 16 hex digits of the sha256 of
//	                                             its bytes, generation the one that first wrote
//	                                             it; short, so that rsync --fuzzy, which takes
//	                                             a basis within 25 edits of the name only,
//	                                             finds the previous version
//	regmirror/shared/<kind>/<hex>/               a directory (phase-2 tag files): hex is 32
//	                                             hex digits of the sha256 of its listing
//	                                             (sharedDirDigest)
//	regmirror/shared/<kind>/<generation>-<seq>   a file describing one publication (the file
//	                                             list, which names itself: SharedSeqPath)
//
// A publication links to them with relative symbolic links; the entries it reaches through
// other entries are listed, one MetaDir-relative path a line, in its SharedUses file (itself
// shared). Nothing under SharedDir is modified once written; an entry no kept publication
// reaches is removed by the publish after the one that stopped reaching it (pruneShared).
const SharedDir = MetaDir + "/shared"

// SharedUses is the publication's link to the list of the shared entries it reaches besides
// its own links' targets.
const SharedUses = "uses"

// SharedEntry is one entry of a shared directory: a file's bytes, or, when Link is set, a
// symbolic link to the tree-relative path Link (written relative to the entry).
type SharedEntry struct {
	Data []byte
	Link string
	// Same, when set, is the tree-relative path of an existing file or symbolic link with
	// exactly this entry's content (for a link: the same target as written here, relative to
	// the entry), in a shared entry, so never modified: the entry is made a hard link of it,
	// which costs no new inode (writeTree; written as usual where that fails). The caller
	// vouches for the content; it is not part of the directory's name.
	Same string
}

// validKind reports whether kind can name a directory under SharedDir: a relative slash path
// of plain components.
func validKind(kind string) bool {
	if !fs.ValidPath(kind) || kind == "." || strings.Count(kind, "/") > 1 {
		return false
	}
	for c := range strings.SplitSeq(kind, "/") {
		if strings.HasPrefix(c, ".") {
			return false
		}
	}
	return true
}

// RelLink is the target of a symbolic link at the tree-relative path from that points at the
// tree-relative path to.
// Both are clean slash paths.
func RelLink(from, to string) string {
	dir := strings.Split(path.Dir(from), "/")
	if dir[0] == "." {
		dir = nil
	}
	dest := strings.Split(to, "/")
	common := 0
	for common < len(dir) && common < len(dest)-1 && dir[common] == dest[common] {
		common++
	}
	return strings.Repeat("../", len(dir)-common) + strings.Join(dest[common:], "/")
}

// WriteSharedFile stores data as a shared file of kind (SharedDir) and returns its
// tree-relative path: the existing file with the same content if there is one (a crawl reuses
// every file whose content did not change; one named so whose bytes differ is damaged, and
// written again), else "<generation>-<hex>", written atomically.
func (t *Tree) WriteSharedFile(kind string, generation uint64, data []byte) (string, error) {
	return t.writeSharedFile(kind, generation, Pieces{data}, DigestOf("sha256", data))
}

// WriteSharedPieces is WriteSharedFile of the bytes of data, written run by run.
func (t *Tree) WriteSharedPieces(kind string, generation uint64, data Pieces) (string, error) {
	if len(data) == 0 {
		data = Pieces{nil}
	}
	return t.writeSharedFile(kind, generation, data, data.digest())
}

// writeSharedFile is WriteSharedFile of data whose sha256 is d.
func (t *Tree) writeSharedFile(kind string, generation uint64, data Pieces, d Digest) (string, error) {
	if !validKind(kind) {
		return "", fmt.Errorf("writing shared file: %q cannot be a kind", kind)
	}
	hex := d.Hex()[:16]
	dir := path.Join(SharedDir, kind)
	rel := path.Join(dir, strconv.FormatUint(generation, 10)+"-"+hex)
	if old, ok := t.findShared(dir, "-"+hex); ok {
		// 64 bits name it among a kind's few files; the bytes decide: a file that does not
		// hold them (damaged) is written again.
		if t.holds(old, data) {
			t.held(old, hex)
			return old, nil
		}
		rel = old
	}
	t.noteShared(rel)
	if err := WriteFileFunc(t.Path(rel), data.writeTo); err != nil {
		return "", fmt.Errorf("writing shared file: %w", err)
	}
	t.held(rel, hex)
	return rel, nil
}

// holds reports whether the tree-relative file rel holds data's bytes (read mapped).
func (t *Tree) holds(rel string, data Pieces) bool {
	b, unmap, err := MapFile(t.Path(rel))
	if err != nil {
		return false
	}
	defer unmap()
	return data.equal(b)
}

// findShared looks in the tree-relative dir for the entry whose name ends with suffix.
func (t *Tree) findShared(dir, suffix string) (string, bool) {
	ents, err := os.ReadDir(t.Path(dir))
	if err != nil {
		return "", false
	}
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), suffix) && !strings.HasPrefix(e.Name(), TempPrefix) {
			return path.Join(dir, e.Name()), true
		}
	}
	return "", false
}

// sharedDirDigest is the content address of a shared directory's entries: 32 hex digits (128
// bits: the file list names every entry of a new directory, so its name is kept short) of the
// sha256 of "<path>\x00f\x00<sha256 of data>\n" or "<path>\x00l\x00<target>\n" lines,
// sorted by path.
func sharedDirDigest(entries map[string]SharedEntry) string {
	names := make([]string, 0, len(entries))
	for n := range entries {
		names = append(names, n)
	}
	sort.Strings(names)
	var b bytes.Buffer
	for _, n := range names {
		e := entries[n]
		if e.Link != "" {
			fmt.Fprintf(&b, "%s\x00l\x00%s\n", n, e.Link)
		} else {
			fmt.Fprintf(&b, "%s\x00f\x00%s\n", n, DigestOf("sha256", e.Data).Hex())
		}
	}
	return DigestOf("sha256", b.Bytes()).Hex()[:32]
}

// WriteSharedDir stores entries (slash paths relative to the directory) as a shared directory
// of kind and returns its tree-relative path, SharedDir/<kind>/<hex>: the existing one if
// there is one, else built under a temporary name, fsynced and renamed into place.
func (t *Tree) WriteSharedDir(kind string, entries map[string]SharedEntry) (string, error) {
	rel, made, err := t.writeSharedDir(kind, entries)
	if err != nil || !made {
		return rel, err
	}
	return rel, SyncDir(t.Path(path.Dir(rel)))
}

// WriteSharedDirNoDirSync is WriteSharedDir without the fsync of the kind's directory after
// the rename, for callers that write many shared directories and fsync each kind's
// directory once (SyncDirs) before anything depends on them. The directory's content is
// durable before its rename, as WriteSharedDir's.
func (t *Tree) WriteSharedDirNoDirSync(kind string, entries map[string]SharedEntry) (string, error) {
	rel, _, err := t.writeSharedDir(kind, entries)
	return rel, err
}

// writeSharedDir is WriteSharedDirNoDirSync, reporting whether it renamed the directory into
// place (false: it was there).
func (t *Tree) writeSharedDir(kind string, entries map[string]SharedEntry) (rel string, made bool, err error) {
	if !validKind(kind) {
		return "", false, fmt.Errorf("writing shared directory: %q cannot be a kind", kind)
	}
	rel = path.Join(SharedDir, kind, sharedDirDigest(entries))
	if fi, err := os.Lstat(t.Path(rel)); err == nil && fi.IsDir() {
		return rel, false, nil
	}
	files := map[string][]byte{}
	links := map[string]string{}
	same := map[string]string{}
	for n, e := range entries {
		if !fs.ValidPath(n) || n == "." || strings.HasPrefix(path.Base(n), TempPrefix) {
			return "", false, fmt.Errorf("writing shared directory: %q cannot be an entry", n)
		}
		if e.Same != "" {
			if _, ok := t.sharedEntryOf(e.Same); !ok || !fs.ValidPath(e.Same) {
				return "", false, fmt.Errorf("writing shared directory: %q is not in a shared entry", e.Same)
			}
			same[n] = t.Path(e.Same)
		}
		if e.Link != "" {
			links[n] = RelLink(path.Join(rel, n), e.Link)
		} else {
			files[n] = e.Data
		}
	}
	if len(same) > 0 {
		t.noteLinked(entries)
	}
	tmp := t.Path(path.Join(path.Dir(rel), TempPrefix+path.Base(rel)))
	t.noteShared(rel)
	os.RemoveAll(tmp)
	if err := writeTree(tmp, files, links, same); err != nil { // makes the kind's directory (MkdirAllSynced)
		os.RemoveAll(tmp)
		return "", false, fmt.Errorf("writing shared directory: %w", err)
	}
	if err := os.Rename(tmp, t.Path(rel)); err != nil {
		os.RemoveAll(tmp)
		return "", false, fmt.Errorf("writing shared directory: %w", err)
	}
	return rel, true, nil
}

// SharedDirHolds reports whether entries (as WriteSharedDir takes them; Same is ignored) are
// what the name of the shared directory rel (SharedDir/<kind>/<hex>) says it holds: a check
// that a directory read back is not damaged.
func SharedDirHolds(rel string, entries map[string]SharedEntry) bool {
	return path.Base(rel) == sharedDirDigest(entries)
}

// SharedEntryOf is the shared entry (SharedDir/<kind>/<name>, kind one or two components as
// the tree has them) the tree-relative slash path rel lies in (or is), if it lies under
// SharedDir in an entry named as this package names them.
func SharedEntryOf(rel string) (string, bool) {
	rest, ok := strings.CutPrefix(rel, SharedDir+"/")
	if !ok {
		return "", false
	}
	// The entry is the first component named like one, below a kind of one or two components.
	parts := strings.Split(rest, "/")
	for i := 1; i < len(parts) && i <= 2; i++ {
		if isSharedName(parts[i]) {
			return path.Join(SharedDir, path.Join(parts[:i+1]...)), true
		}
	}
	return "", false
}

// SharedFileHolds reports whether data, the bytes of the tree-relative shared file rel, are
// those its name ("<generation>-<hex>", WriteSharedFile) says it holds: a check that it is
// not damaged (taken from a vouch when the file is unchanged since the last run checked or
// wrote it, UseVouches).
func (t *Tree) SharedFileHolds(rel string, data []byte) bool {
	_, hex, ok := strings.Cut(path.Base(rel), "-")
	return ok && len(hex) == 16 && isLowerHex(hex) && t.holdsNamed(rel, data, hex)
}

// sharedEntryOf is SharedEntryOf.
func (t *Tree) sharedEntryOf(rel string) (string, bool) { return SharedEntryOf(rel) }

// isSharedName reports whether name is the name of a shared entry: "<hex>" (32 hex digits),
// "<generation>-<hex>" (16 hex digits: a publication's name too) or SharedSeqPath's
// "<generation>-<sequence>".
func isSharedName(name string) bool {
	isHex := func(s string) bool {
		for _, c := range s {
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
				return false
			}
		}
		return true
	}
	gen, h, ok := strings.Cut(name, "-")
	if !ok {
		return len(name) == 32 && isHex(name)
	}
	_, err := strconv.ParseUint(gen, 10, 64)
	return err == nil && len(h) == 16 && isHex(h)
}

// SharedSeqPath is the tree-relative path of the next shared file of kind that describes a
// publication of generation (Publication.Finish: the file list, which names itself, so it
// cannot be named by its content): SharedDir/<kind>/<generation>-<sequence>, both numbers
// zero-padded (20 and 16 digits), sequence one more than the kind's last of that
// generation. rsync --fuzzy takes as the basis the name at the least edit distance, and of
// equal ones the last in name order: the previous publication's file, or one of the same
// generation, which differ from it in little more than the publications' own entries.
func (t *Tree) SharedSeqPath(kind string, generation uint64) string {
	prefix := fmt.Sprintf("%020d-", generation)
	next := uint64(0)
	ents, _ := os.ReadDir(t.Path(path.Join(SharedDir, kind)))
	for _, e := range ents {
		if seq, ok := strings.CutPrefix(e.Name(), prefix); ok {
			if n, err := strconv.ParseUint(seq, 10, 64); err == nil && n >= next {
				next = n + 1
			}
		}
	}
	return path.Join(SharedDir, kind, fmt.Sprintf("%s%016d", prefix, next))
}

// pubShared returns the shared entries publication name reaches: its links' targets (in its
// directory and below) and the lines of its SharedUses list.
func (t *Tree) pubShared(name string) (map[string]bool, error) {
	used := map[string]bool{}
	pub := PubPath(name)
	err := filepath.WalkDir(t.Path(pub), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type()&fs.ModeSymlink == 0 {
			return nil
		}
		target, err := os.Readlink(p)
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(t.Dir(), filepath.Join(filepath.Dir(p), target))
		if err != nil {
			return err
		}
		if e, ok := t.sharedEntryOf(filepath.ToSlash(rel)); ok {
			used[e] = true
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(t.Path(path.Join(pub, SharedUses)))
	if errors.Is(err, fs.ErrNotExist) {
		return used, nil
	}
	if err != nil {
		return nil, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if line == "" {
			continue
		}
		e, ok := t.sharedEntryOf(path.Join(MetaDir, line))
		if !ok {
			return nil, fmt.Errorf("publication %s: %s names %q, not a shared entry", name, SharedUses, line)
		}
		used[e] = true
	}
	return used, nil
}

// pruneShared removes the shared entries no publication left reaches (the live one and those
// prunePub kept for mirrors mid-sync keep theirs, so a copy that lags behind finds them).
// Entries it cannot judge, and everything when a publication cannot be read, are left for
// the next publish. gone are the entries each publication prunePub just removed reached.
//
// It records what it removes (noteShared) and what that changes: an entry may share files by
// hard link (SharedEntry.Same) with the entries that stood at its place in other
// publications, whose times move when it goes. So every kept entry that not every
// publication (kept or gone) reaches is recorded too, and the kind of an entry no gone
// publication reached (left by a run that failed), or everything when a gone publication
// could not be read: the next file list reads them again.
func (t *Tree) pruneShared(gone []map[string]bool) {
	reached, pubs, err := t.reachCounts()
	if err != nil {
		return
	}
	keep := map[string]bool{}
	for e := range reached {
		keep[e] = true
	}
	known := true
	goneUsed := map[string]bool{}
	for _, used := range gone {
		known = known && used != nil
		for e := range used {
			goneUsed[e] = true
			reached[e]++
		}
	}
	pubs += len(gone)
	removed := false
	_ = filepath.WalkDir(t.Path(SharedDir), func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == t.Path(SharedDir) {
			return nil
		}
		if strings.HasPrefix(d.Name(), TempPrefix) {
			return fs.SkipDir
		}
		if !isSharedName(d.Name()) {
			return nil // a kind directory, or something this version does not know: kept
		}
		rel, err := filepath.Rel(t.Dir(), p)
		if err != nil {
			return nil
		}
		rel = filepath.ToSlash(rel)
		if !keep[rel] {
			removed = true
			t.noteShared(rel)
			if !goneUsed[rel] {
				t.noteShared(path.Dir(rel))
			}
			os.RemoveAll(p)
		}
		if d.IsDir() {
			return fs.SkipDir
		}
		return nil
	})
	switch {
	case !removed:
	case !known:
		t.noteShared(SharedDir)
	default:
		for e := range keep {
			if reached[e] < pubs {
				t.noteShared(e)
			}
		}
	}
}

// removeStaleShared removes the temporary files and directories an interrupted publish left
// under SharedDir.
func (t *Tree) removeStaleShared() error {
	err := filepath.WalkDir(t.Path(SharedDir), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if strings.HasPrefix(d.Name(), TempPrefix) {
			if rel, err := filepath.Rel(t.Dir(), p); err == nil {
				t.noteShared(filepath.ToSlash(rel)) // its directory's time moves
			} else {
				t.noteShared(SharedDir)
			}
			if err := os.RemoveAll(p); err != nil {
				return err
			}
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		if d.IsDir() && isSharedName(d.Name()) {
			return fs.SkipDir // an entry: written whole, nothing temporary inside
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("cleaning temporary files: %w", err)
	}
	return nil
}

// sharedLog records the paths under SharedDir a Tree writes, replaces or removes, so that the
// file list can take the lines of everything else below SharedDir from the live
// publication's list (SharedChanged).
type sharedLog struct {
	mu     sync.Mutex
	paths  []string
	linked bool // noteLinked recorded the entries not every publication reaches
}

// noteShared records that the tree-relative path rel under SharedDir (an entry, a kind
// directory, a temporary name, or SharedDir itself) changed, with everything below it.
func (t *Tree) noteShared(rel string) {
	t.shared.mu.Lock()
	t.shared.paths = append(t.shared.paths, rel)
	t.shared.mu.Unlock()
}

// SharedChanged returns the paths under SharedDir (tree-relative; SharedDir itself when
// what changed there is not known) that this Tree wrote, replaced or removed since its last
// publish's file list was rendered (Publication.Finish), each with everything below it: the
// shared entries written, the live entries new entries were made hard links of (a link
// moves the time of the file linked), temporary names removed, and, after the list, the list
// itself and the entries pruned with the kept entries that may share a file with them (an
// entry pruned moves the time of every file it shared by hard link; Settle records these).
// What is not among them is as that list has it, for a tree no one else changed since. The
// paths are sorted, each once.
func (t *Tree) SharedChanged() []string {
	t.shared.mu.Lock()
	defer t.shared.mu.Unlock()
	paths := slices.Clone(t.shared.paths)
	slices.Sort(paths)
	return slices.Compact(paths)
}

// resetShared starts SharedChanged afresh: the file list was just rendered.
func (t *Tree) resetShared() {
	t.shared.mu.Lock()
	t.shared.paths = nil
	t.shared.linked = false
	t.shared.mu.Unlock()
}

// noteLinked records what making entries' Same hard links changes: the time of every file
// linked, and so of each entry holding one of those files. A file of an entry is shared by
// hard link only with the entries that stood at the same place in other publications, so
// the entries that hold it are the one linked from and entries that not every publication
// reaches: all of these are recorded (the publications are read once until the next file
// list; everything when one cannot be read).
func (t *Tree) noteLinked(entries map[string]SharedEntry) {
	for _, e := range entries {
		if e.Same != "" {
			src, _ := t.sharedEntryOf(e.Same)
			t.noteShared(src)
		}
	}
	t.shared.mu.Lock()
	done := t.shared.linked
	t.shared.linked = true
	t.shared.mu.Unlock()
	if done {
		return
	}
	reached, pubs, err := t.reachCounts()
	if err != nil {
		t.noteShared(SharedDir)
		return
	}
	for e, n := range reached {
		if n < pubs {
			t.noteShared(e)
		}
	}
}

// reachCounts counts, for every shared entry a publication of the tree reaches (pubShared),
// the publications reaching it, and returns the number of publications.
func (t *Tree) reachCounts() (map[string]int, int, error) {
	names, err := t.Publications()
	if err != nil {
		return nil, 0, err
	}
	reached := map[string]int{}
	for _, n := range names {
		used, err := t.pubShared(n)
		if err != nil {
			return nil, 0, err
		}
		for e := range used {
			reached[e]++
		}
	}
	return reached, len(names), nil
}
