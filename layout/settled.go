package layout

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
)

// SettledFile is the tree's settled record: present only while the tree is exactly as the
// last finished publish left it (its publication live, its garbage collected, nothing written
// since), it names that publication. A writer removes it before its first change to the tree
// (Unsettle) and writes it again only once its publish and garbage collection are done
// (Settle); a tree without it (a run killed or failed mid-way, a tree older than the record,
// one edited by hand after removing it) is read whole by the next publish. It is the source
// tree's own bookkeeping: deploy/mirror-sync does not copy it and the file list does not list
// it.
const SettledFile = MetaDir + "/settled"

// Unsettle removes the settled record (durably: the directory is fsynced) and reports whether
// the tree was settled at its live publication: the record named it. Call it holding the
// tree's lock, before the first change to the tree; what the caller changes after it, the
// next publish must find by reading the tree (or from the caller's own account, when this
// reported true). A record that cannot be read counts as absent.
func (t *Tree) Unsettle() (bool, error) {
	b, err := os.ReadFile(t.Path(SettledFile))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	settled := false
	if err == nil {
		live, lerr := t.LivePublication()
		settled = lerr == nil && strings.TrimSuffix(string(b), "\n") == live
	}
	if err := os.Remove(t.Path(SettledFile)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return false, fmt.Errorf("unsettling the tree: %w", err)
	}
	if err := SyncDir(t.Path(MetaDir)); err != nil {
		return false, fmt.Errorf("unsettling the tree: %w", err)
	}
	return settled, nil
}

// Settle writes the settled record naming the live publication (temporary file, fsync,
// rename, directory fsync). Call it holding the tree's lock, once the publish and the garbage
// collection after it are done.
func (t *Tree) Settle() error {
	live, err := t.LivePublication()
	if err != nil {
		return fmt.Errorf("settling the tree: %w", err)
	}
	if err := WriteFile(t.Path(SettledFile), []byte(live+"\n")); err != nil {
		return fmt.Errorf("settling the tree: %w", err)
	}
	return nil
}
