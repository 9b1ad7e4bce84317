package layout

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// SettledFile is the tree's settled record: present only while the tree is exactly as the
// last finished generate left it (its publish and the garbage collection after it done,
// blobs/sha256 holding only what its generation records, nothing written since; a crawl
// since, which writes no blob, keeps it so). Its first line names the live publication and
// blobs/sha256's modification time then ("<publication> <mtime> shared plain", Unix
// nanoseconds); the next lines are the paths changed after the publication's file list was
// rendered, one tree-relative path a line: the files that garbage collection removed (the
// list still names them), and the paths under SharedDir the publish changed after it
// (Tree.SharedChanged), each with everything below it; then a line "." and the generation's
// plain repositories, one name a line (Settle, SettledPlain). A writer removes it
// before its first change to the tree (Unsettle) and writes it again only once its publish
// and garbage collection are done (Settle); a tree without it (a run killed or failed
// mid-way, a tree older than the record, one edited by hand after removing it), or whose
// blobs/sha256 changed since (anything that writes or deletes there moves its time), is read
// whole by the next run. It is the source tree's own bookkeeping: deploy/mirror-sync does not
// copy it and the file list does not list it.
const SettledFile = MetaDir + "/settled"

// settleQuiet is how long blobs/sha256 must have been left alone for Settle to record its
// time: longer than the kernel's clock tick, by which file times move, so that any later
// change moves it.
const settleQuiet = 50 * time.Millisecond

// settledShared ends the first line of a record that also names the paths under SharedDir
// changed after the publication's file list was rendered (Tree.SharedChanged). A record
// without it (an older regmirror's) names none: all of SharedDir counts as changed. An older
// regmirror reads a record with it as not its own (it reads the tree whole).
const settledShared = "shared"

// settledPlain follows settledShared on the first line of a record that ends with the plain
// repositories (Settle): after the paths, a line "." (never a path), then a name a line. An
// older regmirror reads a record with it as not its own.
const settledPlain = "plain"

// Unsettle removes the settled record (durably: the directory is fsynced) and reports whether
// the tree was settled at its live publication (the record named it, and blobs/sha256's time
// is the one it records) and, if so, the paths changed after that publication's file list
// was rendered (the files removed, and the paths under SharedDir changed with everything
// below them; SharedDir itself for a record that does not say). Call it holding the tree's lock, before the first change to the tree; what
// the caller changes after it, the next publish must find by reading the tree (or from the
// caller's own account, when this reported true). A record that cannot be read counts as
// absent.
func (t *Tree) Unsettle() (settled bool, removed []string, err error) {
	t.plainRepos = nil
	b, err := os.ReadFile(t.Path(SettledFile))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil, nil
	}
	var plain []string
	if err == nil {
		settled, removed, plain = t.parseSettled(string(b))
	}
	if err := os.Remove(t.Path(SettledFile)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return false, nil, fmt.Errorf("unsettling the tree: %w", err)
	}
	if err := SyncDir(t.Path(MetaDir)); err != nil {
		return false, nil, fmt.Errorf("unsettling the tree: %w", err)
	}
	if !settled {
		return false, nil, nil
	}
	t.plainRepos = plain
	return true, removed, nil
}

// SettledPlain returns the plain repositories of the settled record the last Unsettle read
// (Settle); nil when it was not settled or its record named none.
func (t *Tree) SettledPlain() []string { return t.plainRepos }

// blobsTime is blobs/sha256's modification time, in Unix nanoseconds.
func (t *Tree) blobsTime() (int64, error) {
	fi, err := os.Stat(t.Path(BlobDir("sha256")))
	if err != nil {
		return 0, err
	}
	return fi.ModTime().UnixNano(), nil
}

// parseSettled reads a settled record: whether it names the live publication and
// blobs/sha256's current time, the removed files it lists (each a plain tree-relative path,
// or the record does not count) and its plain repositories.
func (t *Tree) parseSettled(s string) (bool, []string, []string) {
	lines := strings.Split(s, "\n")
	if len(lines) < 2 || lines[len(lines)-1] != "" {
		return false, nil, nil
	}
	lines = lines[:len(lines)-1]
	head := strings.Split(lines[0], " ")
	if len(head) < 2 || len(head) > 4 || len(head) >= 3 && head[2] != settledShared || len(head) == 4 && head[3] != settledPlain {
		return false, nil, nil
	}
	pub, mtime := head[0], head[1]
	live, err := t.LivePublication()
	if err != nil || pub != live {
		return false, nil, nil
	}
	now, err := t.blobsTime()
	if err != nil || mtime != strconv.FormatInt(now, 10) {
		return false, nil, nil
	}
	removed, plain := lines[1:], []string(nil)
	if len(head) == 4 {
		end := slices.Index(removed, ".")
		if end < 0 {
			return false, nil, nil
		}
		removed, plain = removed[:end], removed[end+1:]
		for _, name := range plain {
			if !plainName(name) {
				return false, nil, nil
			}
		}
	}
	for _, rel := range removed {
		if !fs.ValidPath(rel) || rel == "." {
			return false, nil, nil
		}
	}
	if len(head) == 2 {
		// Written before the record named what changed under SharedDir: all of it may have.
		removed = append(removed, SharedDir)
	}
	return true, removed, plain
}

// plainName reports whether name can be a plain repository's line in a settled record.
func plainName(name string) bool { return name != "" && !strings.ContainsAny(name, " \t\r\n") }

// Settle writes the settled record naming the live publication, blobs/sha256's time, and the
// files removed since the publication's file list was rendered (tree-relative slash paths:
// the garbage collection after its publish) with what the publish changed under SharedDir
// after its list (t's SharedChanged: the publish must have been t's), and the plain
// repositories: the generator's account of the live generation (run.unchanged), kept for
// the next run, which this package only records (temporary file, fsync, rename, directory
// fsync). Call it holding the tree's lock, once the publish and the garbage collection after
// it are done, blobs/sha256 synced and holding only what the live generation records (no
// temporary file, no stray, no transfer still writing there). When blobs/sha256 changed
// within the last settleQuiet it first waits for that long to pass (a change this recent may
// share its time with the next).
func (t *Tree) Settle(removed, plain []string) error {
	live, err := t.LivePublication()
	if err != nil {
		return fmt.Errorf("settling the tree: %w", err)
	}
	mtime, err := t.blobsTime()
	if err != nil {
		return fmt.Errorf("settling the tree: %w", err)
	}
	if wait := settleQuiet - time.Since(time.Unix(0, mtime)); wait > 0 {
		if wait > settleQuiet {
			return fmt.Errorf("settling the tree: %s's time is in the future", BlobDir("sha256"))
		}
		time.Sleep(wait)
		if again, err := t.blobsTime(); err != nil || again != mtime {
			return fmt.Errorf("settling the tree: %s changed while settling (%v)", BlobDir("sha256"), err)
		}
	}
	var b strings.Builder
	b.WriteString(live + " " + strconv.FormatInt(mtime, 10) + " " + settledShared + " " + settledPlain + "\n")
	for _, rel := range slices.Concat(removed, t.SharedChanged()) {
		if !fs.ValidPath(rel) || rel == "." || strings.Contains(rel, "\n") {
			return fmt.Errorf("settling the tree: %q is not a path in it", rel)
		}
		b.WriteString(rel + "\n")
	}
	b.WriteString(".\n")
	for _, name := range plain {
		if !plainName(name) {
			return fmt.Errorf("settling the tree: %q is not a repository name", name)
		}
		b.WriteString(name + "\n")
	}
	if err := WriteFile(t.Path(SettledFile), []byte(b.String())); err != nil {
		return fmt.Errorf("settling the tree: %w", err)
	}
	return nil
}
