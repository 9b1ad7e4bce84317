package layout

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// A tree's metadata files and shared files are named by their bytes' sha256, and a run checks
// the bytes against the name before it builds on them (a damaged file is never spliced from
// or loaded). The vouches make that check cheap for the files the run before checked or
// wrote: kept in the pack cache directory (UseVouches), a file per tree, they name each such
// file (its tree-relative path), the digits its name gives, and its identity when that run
// ended (device, inode, size, modification and change times). A file whose identity is still
// that is taken as holding those digits' bytes without being read again: nothing changes a
// file's bytes without moving its change time or replacing its inode, short of the disk
// itself, for which blobs are not read again either (generate --verify takes no vouch). A
// file changed within settleQuiet of the run's end is not vouched for (a change in the same
// clock tick could leave its times as they were). Any other file is hashed as before. The
// vouches may be deleted at any time; one that does not read back whole is ignored, and one
// left unused for vouchesKeep is removed. Only a tree's writers use them, holding its lock.
//
// A vouches file is "regmirror vouches 1\n", then a line a file: "<digits> <device> <inode>
// <size> <mtime> <ctime> <path>" (times in Unix nanoseconds), sorted by path.
const (
	vouchesMagic  = "regmirror vouches 1\n"
	vouchesPrefix = "vouches-"
	vouchesKeep   = 7 * 24 * time.Hour
)

// fileID is a file's identity: what any change of its bytes changes.
type fileID struct {
	dev, ino           uint64
	size, mtime, ctime int64
}

// vouch is what a vouches file says of a path: its file's identity, and the digits its name
// gives (a hex prefix of its sha256), which it holds.
type vouch struct {
	id  fileID
	hex string
}

// vouches are a tree's vouches (UseVouches): those the last run left (read at the first
// check) and the paths this run checked or wrote, with the digits they hold.
type vouches struct {
	path  string // the vouches file
	trust bool   // use the last run's; false: only record this run's

	mu     sync.Mutex
	loaded bool
	last   map[string]vouch
	now    map[string]string
}

// UseVouches makes t's checks of its metadata and shared files against their names take the
// vouches in the pack cache directory dir (see vouchesMagic) when trust, and record what it
// checks or writes; save writes the vouches for the next run (atomically; a failure only
// costs that run the hashing). "" keeps none. Set it before the first load.
func (t *Tree) UseVouches(dir string, trust bool) (save func()) {
	if dir == "" {
		return func() {}
	}
	abs, err := filepath.Abs(t.dir)
	if err != nil {
		return func() {}
	}
	sum := sha256.Sum256([]byte(abs))
	v := &vouches{path: filepath.Join(dir, vouchesPrefix+hex.EncodeToString(sum[:8])), trust: trust, now: map[string]string{}}
	t.vouches = v
	return func() { _ = t.saveVouches(v) }
}

// holdsNamed reports whether data, the bytes of the tree-relative file rel, hash to the hex
// digits want (the sha256 its name gives, or a prefix of it): by the file's vouch when its
// identity is unchanged, else by hashing them.
func (t *Tree) holdsNamed(rel string, data []byte, want string) bool {
	if want == "" || len(want) > 2*sha256.Size {
		return false
	}
	if t.vouched(rel, data, want) {
		return true
	}
	if DigestOf("sha256", data).Hex()[:len(want)] != want {
		return false
	}
	t.held(rel, want)
	return true
}

// vouched reports whether the last run's vouch says that data, the bytes of the tree-relative
// file rel, hash to the hex digits want: it names those digits and the file's identity is
// unchanged since. When it does, the vouch is kept for the next run.
func (t *Tree) vouched(rel string, data []byte, want string) bool {
	v := t.vouches
	if v == nil || !v.trust {
		return false
	}
	last, ok := v.lastOf(rel)
	if !ok || last.hex != want || last.id.size != int64(len(data)) {
		return false
	}
	if id, ok := identityOf(t.Path(rel)); !ok || id != last.id {
		return false
	}
	v.note(rel, want)
	return true
}

// held records that the tree-relative file rel holds the bytes whose sha256 begins with the
// hex digits want: t hashed them, or wrote them whole.
func (t *Tree) held(rel, want string) {
	if v := t.vouches; v != nil {
		v.note(rel, want)
	}
}

func (v *vouches) note(rel, want string) {
	v.mu.Lock()
	v.now[rel] = want
	v.mu.Unlock()
}

// lastOf is the last run's vouch for rel.
func (v *vouches) lastOf(rel string) (vouch, bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.readLast()
	last, ok := v.last[rel]
	return last, ok
}

// readLast reads the last run's vouches, once; v.mu is held.
func (v *vouches) readLast() {
	if !v.loaded {
		v.loaded = true
		if b, err := os.ReadFile(v.path); err == nil {
			v.last = parseVouches(b)
		}
	}
}

// parseVouches reads a vouches file; nil unless it reads whole.
func parseVouches(b []byte) map[string]vouch {
	rest, ok := bytes.CutPrefix(b, []byte(vouchesMagic))
	if !ok {
		return nil
	}
	out := map[string]vouch{}
	for line := range strings.Lines(string(rest)) {
		f := strings.SplitN(strings.TrimSuffix(line, "\n"), " ", 7)
		if len(f) != 7 || !strings.HasSuffix(line, "\n") || f[0] == "" || !isLowerHex(f[0]) || !vouchPath(f[6]) {
			return nil
		}
		var id fileID
		var errs [5]error
		id.dev, errs[0] = strconv.ParseUint(f[1], 10, 64)
		id.ino, errs[1] = strconv.ParseUint(f[2], 10, 64)
		id.size, errs[2] = strconv.ParseInt(f[3], 10, 64)
		id.mtime, errs[3] = strconv.ParseInt(f[4], 10, 64)
		id.ctime, errs[4] = strconv.ParseInt(f[5], 10, 64)
		for _, err := range errs {
			if err != nil {
				return nil
			}
		}
		out[f[6]] = vouch{id: id, hex: f[0]}
	}
	return out
}

// saveVouches writes v's file for the next run: the paths v recorded, each with its identity
// now, and the last run's vouches for files still as they were.
func (t *Tree) saveVouches(v *vouches) error {
	v.mu.Lock()
	v.readLast() // if no check did
	now, last := v.now, v.last
	v.now = map[string]string{}
	v.mu.Unlock()
	// A file changed within settleQuiet may change again without its times moving (they
	// move by the kernel's clock tick): it is not vouched for, and is hashed next time.
	recent := time.Now().Add(-settleQuiet).UnixNano()
	keep := map[string]vouch{}
	for rel, hex := range now {
		if id, ok := identityOf(t.Path(rel)); ok && vouchPath(rel) && id.ctime <= recent && id.mtime <= recent {
			keep[rel] = vouch{id: id, hex: hex}
		}
	}
	// The last run's vouches for the files this one did not look at (a crawl's run does not
	// read index.json) stand while those files are unchanged.
	for rel, l := range last {
		if _, seen := now[rel]; !seen {
			if id, ok := identityOf(t.Path(rel)); ok && id == l.id {
				keep[rel] = l
			}
		}
	}
	var b strings.Builder
	b.WriteString(vouchesMagic)
	for _, rel := range slices.Sorted(maps.Keys(keep)) {
		k := keep[rel]
		fmt.Fprintf(&b, "%s %d %d %d %d %d %s\n", k.hex, k.id.dev, k.id.ino, k.id.size, k.id.mtime, k.id.ctime, rel)
	}
	f, err := CreateFile(v.path)
	if err != nil {
		return err
	}
	defer f.Abort()
	if _, err := f.Write([]byte(b.String())); err != nil {
		return err
	}
	if err := f.CommitNoDirSync(); err != nil {
		return err
	}
	pruneVouches(filepath.Dir(v.path))
	return nil
}

// pruneVouches removes the vouches files in dir left unused for vouchesKeep (trees gone).
func pruneVouches(dir string) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), vouchesPrefix) || !e.Type().IsRegular() {
			continue
		}
		if fi, err := e.Info(); err == nil && time.Since(fi.ModTime()) > vouchesKeep {
			_ = os.Remove(filepath.Join(dir, e.Name()))
		}
	}
}

// vouchPath reports whether rel can be a vouch's path: a plain tree-relative path, on one line.
func vouchPath(rel string) bool {
	return fs.ValidPath(rel) && rel != "." && !strings.Contains(rel, "\n")
}
