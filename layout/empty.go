package layout

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
)

// EmptyFiles is a batch of empty files created in place under a root and made durable at
// once. An empty file has no content to tear, so it needs no temporary file and no rename:
// Create makes its missing directories and the file itself (a file already there is kept),
// and Sync makes every entry the batch created or kept durable: the entry of each file in
// its directory and the entry of each directory Create made in its parent, as SyncDirs
// makes a set of directories durable: a few fsynced each, side by side; more, the root's
// filesystem synced once (syncfs(2) on Linux; elsewhere each directory fsynced once). Past
// SyncDirs's few the batch stops recording directories, since the whole filesystem will be
// synced. Nothing that needs the files may depend on them before Sync returns.
//
// Create refuses a symbolic link, or anything but a directory, where one of the file's
// directories below the root should be, and anything but a regular file where the file
// should be: it never writes through a link.
type EmptyFiles struct {
	root     string
	verified map[string]bool // directories below root known to be real directories
	leaf     string          // the last file's directory, known to be a real directory
	dirs     map[string]bool // directories to fsync, while they are few (or no syncfs)
	whole    bool            // more than SyncDirs fsyncs each: sync the whole filesystem
}

// NewEmptyFiles starts a batch of empty files under the OS directory root.
func NewEmptyFiles(root string) *EmptyFiles {
	return &EmptyFiles{root: root, verified: map[string]bool{}, dirs: map[string]bool{}}
}

// CreateEmptyFiles creates the empty files at paths (slash paths relative to root) and makes
// them durable (EmptyFiles).
func CreateEmptyFiles(root string, paths []string) error {
	b := NewEmptyFiles(root)
	for _, rel := range paths {
		if err := b.Create(rel); err != nil {
			return err
		}
	}
	return b.Sync()
}

// Create creates the empty file at rel (a slash path relative to the root) and its missing
// directories, or keeps the regular file already there.
func (b *EmptyFiles) Create(rel string) error {
	rel = path.Clean(rel)
	if !fs.ValidPath(rel) || rel == "." {
		return fmt.Errorf("creating empty file %q: not a path below %s", rel, b.root)
	}
	dir := path.Dir(rel)
	if err := b.ensureDir(dir, false); err != nil {
		return fmt.Errorf("creating empty file %s: %w", rel, err)
	}
	p := b.path(rel)
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	switch {
	case err == nil:
		if err := f.Close(); err != nil {
			return fmt.Errorf("creating empty file %s: %w", rel, err)
		}
	case errors.Is(err, fs.ErrExist):
		// O_EXCL does not follow a link at the last component: look at what is there.
		fi, err := os.Lstat(p)
		if err != nil {
			return fmt.Errorf("creating empty file %s: %w", rel, err)
		}
		if !fi.Mode().IsRegular() {
			return fmt.Errorf("creating empty file %s: %s is in the way (%s), not a regular file", rel, p, kind(fi.Mode()))
		}
	default:
		return fmt.Errorf("creating empty file %s: %w", rel, err)
	}
	b.note(dir)
	return nil
}

// Keep adds the file at rel, already there, to what Sync makes durable: one a killed run may
// have created without syncing.
func (b *EmptyFiles) Keep(rel string) { b.note(path.Dir(path.Clean(rel))) }

// Sync makes the entries the batch created or kept durable (EmptyFiles).
func (b *EmptyFiles) Sync() error {
	if b.whole {
		if err := syncFS(b.root); err != nil {
			return fmt.Errorf("syncing the filesystem of %s: %w", b.root, err)
		}
		b.whole = false
		return nil
	}
	dirs := make([]string, 0, len(b.dirs))
	for dir := range b.dirs {
		dirs = append(dirs, b.path(dir))
	}
	if err := SyncDirs(dirs); err != nil {
		return err
	}
	clear(b.dirs)
	return nil
}

// note records that dir's entries must be made durable.
func (b *EmptyFiles) note(dir string) {
	if b.whole {
		return
	}
	b.dirs[dir] = true
	if len(b.dirs) > syncDirsEach && haveSyncFS {
		b.whole = true
		clear(b.dirs)
	}
}

// ensureDir makes sure dir (a slash path relative to the root, "." the root itself) is a
// real directory, creating it and its missing parents. Parents are remembered (few, shared
// by many files), a file's own directory only until the next one (one per file, often).
func (b *EmptyFiles) ensureDir(dir string, parent bool) error {
	if dir == "." || b.verified[dir] || dir == b.leaf {
		return nil
	}
	if err := b.ensureDir(path.Dir(dir), true); err != nil {
		return err
	}
	p := b.path(dir)
	err := os.Mkdir(p, 0o755)
	switch {
	case err == nil:
		b.note(path.Dir(dir))
	case errors.Is(err, fs.ErrExist):
		fi, err := os.Lstat(p)
		if err != nil {
			return fmt.Errorf("creating directory: %w", err)
		}
		if !fi.IsDir() {
			return fmt.Errorf("creating directory: %s is in the way (%s), not a directory", p, kind(fi.Mode()))
		}
	default:
		return fmt.Errorf("creating directory: %w", err)
	}
	if parent {
		b.verified[dir] = true
	} else {
		b.leaf = dir
	}
	return nil
}

// path is the OS path of rel below the root.
func (b *EmptyFiles) path(rel string) string { return filepath.Join(b.root, filepath.FromSlash(rel)) }

// kind names a file mode's type for an error.
func kind(m fs.FileMode) string {
	switch {
	case m&fs.ModeSymlink != 0:
		return "a symbolic link"
	case m.IsDir():
		return "a directory"
	case m.IsRegular():
		return "a regular file"
	default:
		return "a special file"
	}
}
