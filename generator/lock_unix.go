//go:build unix

package generator

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// lockTree takes an exclusive advisory lock (flock) on the tree's root directory for the
// length of a run, so that two runs never interleave their writes and garbage collection. The
// lock creates no file (nothing for rsync to carry) and dies with the process, kill -9
// included.
func lockTree(dir string) (release func(), err error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("locking the tree: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("another regmirror generate is writing %s: wait for it to finish", dir)
		}
		return nil, fmt.Errorf("locking the tree %s: %w", dir, err)
	}
	return func() { f.Close() }, nil
}
