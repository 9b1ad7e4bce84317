//go:build unix

package layout

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"
)

// Lock takes the tree's exclusive advisory lock (flock on its root directory), waiting up to
// wait for it (0: not at all); it returns ErrLocked when another process keeps it. Writers hold
// it: generate for its whole run, crawl while it re-checks the stamp and publishes. The lock
// creates no file (nothing for rsync to carry) and dies with its process, kill -9 included.
func (t *Tree) Lock(wait time.Duration) (release func(), err error) {
	f, err := os.Open(t.dir)
	if err != nil {
		return nil, fmt.Errorf("locking the tree: %w", err)
	}
	deadline := time.Now().Add(wait)
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("locking the tree %s: %w", t.dir, err)
		}
		if !time.Now().Before(deadline) {
			f.Close()
			return nil, fmt.Errorf("%w: %s", ErrLocked, t.dir)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
