package layout

import (
	"os"

	"golang.org/x/sys/unix"
)

// startWriteback starts writing n bytes of f from off to the disk, without waiting
// (sync_file_range(2), SYNC_FILE_RANGE_WRITE): a hint, whose error is of no consequence, as
// only fsync makes the bytes durable.
func startWriteback(f *os.File, off, n int64) {
	_ = unix.SyncFileRange(int(f.Fd()), off, n, unix.SYNC_FILE_RANGE_WRITE)
}

// dropCache asks the kernel to drop the cached pages of the file at p
// (posix_fadvise(POSIX_FADV_DONTNEED)): a hint, of no consequence if it fails.
func dropCache(p string) {
	f, err := os.Open(p)
	if err != nil {
		return
	}
	defer f.Close()
	_ = unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
}
