//go:build unix

package layout

import (
	"fmt"
	"io"
	"os"
	"syscall"
)

// MapFile returns the bytes of the regular file at path, mapped read-only, and unmap, which
// releases them: after it, reading them faults, so nothing made of them may outlive it
// (copy what is kept). On a filesystem that cannot map files it reads the file whole. Mapped, a large file costs the pages the
// kernel already caches, where reading it into memory costs a fresh page of the process's
// per 4 KiB, which on a virtual machine is most of the read's time (docs/benchmarks.md,
// "Fresh memory"). The file must not be truncated while mapped (the tree's and the pack
// cache's files never are: they are written under a temporary name and renamed). Its callers
// read the file whole, so the pages are mapped up front where the system can (mapPopulate).
func MapFile(path string) (b []byte, unmap func(), err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, nil, fmt.Errorf("%s: not a regular file", path)
	}
	size := fi.Size()
	if size == 0 {
		return []byte{}, func() {}, nil
	}
	if int64(int(size)) != size {
		return nil, nil, fmt.Errorf("%s: too large to map (%d bytes)", path, size)
	}
	b, err = syscall.Mmap(int(f.Fd()), 0, int(size), syscall.PROT_READ, syscall.MAP_SHARED|mapPopulate)
	if err != nil { // a filesystem that cannot map files: read it whole
		b = make([]byte, size)
		if _, err := io.ReadFull(f, b); err != nil {
			return nil, nil, fmt.Errorf("reading %s: %w", path, err)
		}
		return b, func() {}, nil
	}
	return b, func() { _ = syscall.Munmap(b) }, nil
}
