package layout

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"golang.org/x/sync/errgroup"
)

// File is a file being written atomically: it has a temporary name in its final directory
// until Commit renames it into place. Until then the final path is untouched.
type File struct {
	f     *os.File
	final string
	done  bool
	// written and started are the bytes written, and those whose writeback has started.
	written, started int64
}

// writebackChunk is how many bytes of a File are written before their writeback to the disk
// is started (startWriteback): Commit's fsync of a file of tens of megabytes (the file
// list, refs.map) then waits for the last chunk only, the rest having been written while
// the file was made.
const writebackChunk = 8 << 20

// CreateFile starts writing the file at path (an OS path). Missing parent directories are
// created. The caller must call Commit or Abort.
func CreateFile(path string) (*File, error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	if err := MkdirAllSynced(dir); err != nil {
		return nil, fmt.Errorf("creating directory: %w", err)
	}
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	tmp := filepath.Join(dir, TempPrefix+base+"-"+hex.EncodeToString(rnd[:]))
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return nil, err
	}
	return &File{f: f, final: path}, nil
}

// Write writes to the temporary file.
func (w *File) Write(p []byte) (int, error) {
	n, err := w.f.Write(p)
	if w.written += int64(n); w.written-w.started >= writebackChunk {
		startWriteback(w.f, w.started, w.written-w.started)
		w.started = w.written
	}
	return n, err
}

// Name is the temporary file's path.
func (w *File) Name() string { return w.f.Name() }

// Commit fsyncs the file, renames it to its final path and fsyncs the directory. After a
// successful Commit the file is durable under its final name.
func (w *File) Commit() error {
	if err := w.CommitNoDirSync(); err != nil {
		return err
	}
	return SyncDir(filepath.Dir(w.final))
}

// CommitAs is Commit to the final path path instead of the one the file was created for, in
// the same directory (a name known only once the content is written: its digest).
func (w *File) CommitAs(path string) error {
	if filepath.Dir(path) != filepath.Dir(w.final) {
		w.Abort()
		return fmt.Errorf("committing %s as %s: not in the same directory", w.final, path)
	}
	w.final = path
	return w.Commit()
}

// CommitNoDirSync is Commit without the directory fsync, for callers that commit many files
// into one directory and call SyncDir once before anything depends on them.
func (w *File) CommitNoDirSync() error {
	if w.done {
		return errors.New("file already committed or aborted")
	}
	w.done = true
	if err := w.f.Sync(); err != nil {
		w.f.Close()
		os.Remove(w.f.Name())
		return fmt.Errorf("syncing %s: %w", w.final, err)
	}
	if err := w.f.Close(); err != nil {
		os.Remove(w.f.Name())
		return fmt.Errorf("closing %s: %w", w.final, err)
	}
	if err := os.Rename(w.f.Name(), w.final); err != nil {
		os.Remove(w.f.Name())
		return fmt.Errorf("renaming into %s: %w", w.final, err)
	}
	return nil
}

// Abort discards the temporary file. It is a no-op after Commit, so it can be deferred.
func (w *File) Abort() {
	if w.done {
		return
	}
	w.done = true
	w.f.Close()
	os.Remove(w.f.Name())
}

// WriteFile atomically replaces the file at path with data.
func WriteFile(path string, data []byte) error {
	return WriteFileFunc(path, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

// WriteFileFunc atomically replaces the file at path with what write writes. If write fails,
// the previous file (if any) is untouched.
func WriteFileFunc(path string, write func(io.Writer) error) error {
	f, err := CreateFile(path)
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	defer f.Abort()
	if err := write(f); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return f.Commit()
}

// MkdirAllSynced makes the directory dir and any missing parents (os.MkdirAll, mode 0755),
// and makes the entry of each directory it makes durable: the parent of each is fsynced
// (SyncDirs) before it returns. Nothing is fsynced when dir exists. A directory's own entries
// are its caller's to make durable, as with any directory.
func MkdirAllSynced(dir string) error { return mkdirAllSynced(dir, SyncDirs) }

// mkdirAllSynced is MkdirAllSynced with the fsync of the parents given (for the tests).
func mkdirAllSynced(dir string, syncDirs func([]string) error) error {
	if fi, err := os.Stat(dir); err == nil && fi.IsDir() {
		return nil
	}
	// The directories missing, deepest first, found before MkdirAll makes them; one made
	// meanwhile by another writer has its parent fsynced too, which does no harm.
	var parents []string
	for d := filepath.Clean(dir); ; {
		if _, err := os.Lstat(d); err == nil {
			break
		}
		up := filepath.Dir(d)
		if up == d {
			break
		}
		parents = append(parents, up)
		d = up
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return syncDirs(parents)
}

// SyncDir fsyncs a directory, making renames and creations in it durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("syncing directory: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("syncing directory %s: %w", dir, err)
	}
	return nil
}

// SyncDirs makes the entries of the directories dirs durable, returning the first error once
// all are done. A few (at most syncDirsEach) are fsynced side by side (SyncDir each): a
// journaling filesystem commits the entries of directories fsynced together in one
// transaction; one by one, each fsync may wait for a commit of its own while other writers go
// on changing the filesystem. More, where the system has syncfs(2), are made durable by
// syncing each of their filesystems once: on ext4 (data=ordered) each directory's fsync
// commits the journal, which first writes out the data of the files written meanwhile, so
// that dozens of them side by side, while a publish writes tens of megabytes, each waited
// for much of that work (docs/benchmarks.md); syncfs does it once, and also writes out what
// other writers left dirty on that filesystem.
func SyncDirs(dirs []string) error {
	switch {
	case len(dirs) == 0:
		return nil
	case len(dirs) == 1:
		return SyncDir(dirs[0])
	case haveSyncFS && len(dirs) > syncDirsEach:
		return syncFilesystems(dirs)
	}
	var g errgroup.Group
	g.SetLimit(syncDirsAtOnce)
	for _, d := range dirs {
		g.Go(func() error { return SyncDir(d) })
	}
	return g.Wait()
}

// syncFilesystems syncs the filesystem of each of dirs once (syncFS); each must exist.
func syncFilesystems(dirs []string) error {
	first := map[uint64]string{} // a directory of each filesystem, by device
	for _, d := range dirs {
		dev, err := deviceOf(d)
		if err != nil {
			return fmt.Errorf("syncing directory: %w", err)
		}
		if _, ok := first[dev]; !ok {
			first[dev] = d
		}
	}
	for _, d := range first {
		if err := syncFS(d); err != nil {
			return fmt.Errorf("syncing the filesystem of %s: %w", d, err)
		}
	}
	return nil
}

// syncDirsEach is the most directories SyncDirs fsyncs each where the system has syncfs(2).
const syncDirsEach = 8

// syncDirsAtOnce is how many directories SyncDirs fsyncs at once.
const syncDirsAtOnce = 32
