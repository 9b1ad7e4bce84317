package layout

import (
	"os"
	"syscall"
)

// identityOf is the identity of the file at path (not following a last symlink: a vouch is
// for a regular file); false when it cannot be read or is not a regular file.
func identityOf(path string) (fileID, bool) {
	fi, err := os.Lstat(path)
	if err != nil || !fi.Mode().IsRegular() {
		return fileID{}, false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fileID{}, false
	}
	return fileID{
		dev: uint64(st.Dev), ino: st.Ino, size: st.Size,
		mtime: st.Mtim.Nano(), ctime: st.Ctim.Nano(),
	}, true
}
