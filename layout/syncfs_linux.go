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
