package layout

import (
	"os"

	"golang.org/x/sys/unix"
)

// haveSyncFS tells whether syncFS syncs a whole filesystem in one call.
const haveSyncFS = true

// syncFS syncs the filesystem holding dir (syncfs(2)).
func syncFS(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return unix.Syncfs(int(d.Fd()))
}

// deviceOf is the device of the filesystem holding dir.
func deviceOf(dir string) (uint64, error) {
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return 0, &os.PathError{Op: "stat", Path: dir, Err: err}
	}
	return uint64(st.Dev), nil
}
