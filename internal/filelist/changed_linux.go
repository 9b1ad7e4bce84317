package filelist

import (
	"io/fs"
	"syscall"
)

// changed is the newer of mtime and ctime, in seconds (as create-filelist takes it: a file
// hardlinked or renamed into place counts as changed).
func changed(fi fs.FileInfo) int64 {
	t := fi.ModTime().Unix()
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Ctim.Sec > t {
		t = st.Ctim.Sec
	}
	return t
}
