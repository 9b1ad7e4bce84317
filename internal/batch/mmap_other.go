//go:build !unix

package batch

// mapBuffer returns n bytes on the heap: this system has no anonymous mappings in package
// syscall.
func mapBuffer(n int) ([]byte, error) { return make([]byte, n), nil }

func unmapBuffer([]byte) {}
