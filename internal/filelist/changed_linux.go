package filelist

import (
	"io/fs"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
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

// fsNow is the current time in seconds as the kernel stamps files' times: its coarse clock,
// which lags the precise one by up to a tick, so never later than the time of a file written
// after it is read (a precise second just begun may be one the files written next are not in
// yet).
func fsNow() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_REALTIME_COARSE, &ts); err != nil {
		return time.Now().Unix()
	}
	return ts.Sec
}
