//go:build unix

package crawl

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// lockTree takes the exclusive advisory lock (flock on the tree's root directory) that
// regmirror generate holds for the length of its run, without waiting: crawl holds it only
// while it re-checks the stamp and publishes.
func lockTree(dir string) (release func(), err error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("locking the tree: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("a regmirror generate is writing %s: nothing published, crawl again when it is done", dir)
		}
		return nil, fmt.Errorf("locking the tree %s: %w", dir, err)
	}
	return func() { f.Close() }, nil
}
