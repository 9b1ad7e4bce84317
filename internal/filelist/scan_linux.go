package filelist

import (
	"errors"
	"io/fs"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// scanSkipping is Scan's listing, unsorted, without what lies below the directories in skip
// (slash paths below root, listed themselves), each path below base (the slash path of root
// in the tree, "" for the tree's root): walkScan's entries, read with a
// directory's descriptor (getdents, then fstatat of each name relative to it), without
// os.ReadDir's sorting and the kernel resolving every entry's full path: a tree holds a
// directory per manifest and repository (the phase-2 digest markers) and a file per blob, and
// publish lists it all.
func scanSkipping(root, base string, skip map[string]bool) ([]Entry, error) {
	var st unix.Stat_t
	if err := unix.Lstat(root, &st); err != nil {
		return nil, &fs.PathError{Op: "lstat", Path: root, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return nil, nil // as filepath.WalkDir: a root that is not a directory has nothing below
	}
	fd, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: root, Err: err}
	}
	var entries []Entry
	s := scanner{buf: make([]byte, 64<<10), skip: skip}
	err = s.dir(fd, root, base, &entries)
	unix.Close(fd)
	return entries, err
}

// scanner holds the buffer getdents fills, shared by every directory of a scan.
type scanner struct {
	buf  []byte
	skip map[string]bool // directories not descended into
}

// dir lists the directory open as fd (at OS path p, slash path rel below the root, "" for
// the root) into entries and descends into its directories; it does not close fd.
func (s *scanner) dir(fd int, p, rel string, entries *[]Entry) error {
	names, err := s.names(fd, p)
	if err != nil {
		return err
	}
	for _, name := range names {
		r := name
		if rel != "" {
			r = rel + "/" + name
		}
		if unlisted(r, name) {
			continue
		}
		if strings.ContainsAny(r, "\t\n") {
			return errTabOrNewline(r)
		}
		var st unix.Stat_t
		if err := fstatat(fd, name, &st); errors.Is(err, unix.ENOENT) {
			continue // removed while listing (a pruned orphan)
		} else if err != nil {
			return &fs.PathError{Op: "lstat", Path: filepath.Join(p, name), Err: err}
		}
		e := Entry{Time: max(int64(st.Mtim.Sec), int64(st.Ctim.Sec)), Size: st.Size, Path: r}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFREG:
			e.Type = "f"
		case unix.S_IFDIR:
			e.Type = "d"
		case unix.S_IFLNK:
			e.Type = "l"
		default:
			continue // sockets, fifos: nothing a mirror copies
		}
		*entries = append(*entries, e)
		if e.Type != "d" || s.skip[r] {
			continue
		}
		sub, err := unix.Openat(fd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if errors.Is(err, unix.ENOENT) {
			continue
		}
		if err != nil {
			return &fs.PathError{Op: "open", Path: filepath.Join(p, name), Err: err}
		}
		err = s.dir(sub, filepath.Join(p, name), r, entries)
		unix.Close(sub)
		if err != nil {
			return err
		}
	}
	return nil
}

// names reads the names in the directory open as fd ("." and ".." excepted).
func (s *scanner) names(fd int, p string) ([]string, error) {
	var names []string
	for {
		n, err := unix.ReadDirent(fd, s.buf)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return nil, &fs.PathError{Op: "readdirent", Path: p, Err: err}
		}
		if n <= 0 {
			return names, nil
		}
		_, _, names = unix.ParseDirent(s.buf[:n], -1, names)
	}
}

// fstatat is lstat of name relative to the directory open as dirfd.
func fstatat(dirfd int, name string, st *unix.Stat_t) error {
	for {
		err := unix.Fstatat(dirfd, name, st, unix.AT_SYMLINK_NOFOLLOW)
		if !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}
