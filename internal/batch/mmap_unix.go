//go:build unix

package batch

import (
	"fmt"
	"syscall"
)

// mapBuffer returns n bytes of anonymous memory mapped outside the Go heap (pages are
// committed as they are first written).
func mapBuffer(n int) ([]byte, error) {
	b, err := syscall.Mmap(-1, 0, n, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		return nil, fmt.Errorf("batch: mapping a buffer of %d bytes: %w", n, err)
	}
	return b, nil
}

// unmapBuffer releases a buffer of mapBuffer (nil: nothing).
func unmapBuffer(b []byte) {
	if cap(b) > 0 {
		_ = syscall.Munmap(b[:cap(b)])
	}
}
