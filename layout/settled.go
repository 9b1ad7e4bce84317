package layout

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
)

// SettledFile is the tree's settled record: present only while the tree is exactly as the
// last finished publish and the garbage collection after it left it (nothing written since),
// it names that publication, then the files that garbage collection removed, one
// tree-relative path a line (the publication's file list, rendered before them, still names
// them). A writer removes it before its first change to the tree (Unsettle) and writes it
// again only once its publish and garbage collection are done (Settle); a tree without it (a
// run killed or failed mid-way, a tree older than the record, one edited by hand after
// removing it) is read whole by the next publish. It is the source tree's own bookkeeping:
// deploy/mirror-sync does not copy it and the file list does not list it.
const SettledFile = MetaDir + "/settled"

// Unsettle removes the settled record (durably: the directory is fsynced) and reports whether
// the tree was settled at its live publication (the record named it) and, if so, the files
// removed after that publication's file list was rendered. Call it holding the tree's lock,
// before the first change to the tree; what the caller changes after it, the next publish
// must find by reading the tree (or from the caller's own account, when this reported true).
// A record that cannot be read counts as absent.
func (t *Tree) Unsettle() (settled bool, removed []string, err error) {
	b, err := os.ReadFile(t.Path(SettledFile))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil, nil
	}
	if err == nil {
		settled, removed = t.parseSettled(string(b))
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
	return true, removed, nil
}

// parseSettled reads a settled record: whether it names the live publication, and the
// removed files it lists (each a plain tree-relative path, or the record does not count).
func (t *Tree) parseSettled(s string) (bool, []string) {
	lines := strings.Split(s, "\n")
	if len(lines) < 2 || lines[len(lines)-1] != "" {
		return false, nil
	}
	lines = lines[:len(lines)-1]
	live, err := t.LivePublication()
	if err != nil || lines[0] != live {
		return false, nil
	}
	removed := lines[1:]
	for _, rel := range removed {
		if !fs.ValidPath(rel) || rel == "." {
			return false, nil
		}
	}
	return true, removed
}

// Settle writes the settled record naming the live publication and the files removed since
// its file list was rendered (tree-relative slash paths: the garbage collection after its
// publish) (temporary file, fsync, rename, directory fsync). Call it holding the tree's lock,
// once the publish and the garbage collection after it are done.
func (t *Tree) Settle(removed []string) error {
	live, err := t.LivePublication()
	if err != nil {
		return fmt.Errorf("settling the tree: %w", err)
	}
	var b strings.Builder
	b.WriteString(live + "\n")
	for _, rel := range removed {
		if !fs.ValidPath(rel) || rel == "." || strings.Contains(rel, "\n") {
			return fmt.Errorf("settling the tree: %q is not a path in it", rel)
		}
		b.WriteString(rel + "\n")
	}
	if err := WriteFile(t.Path(SettledFile), []byte(b.String())); err != nil {
		return fmt.Errorf("settling the tree: %w", err)
	}
	return nil
}
