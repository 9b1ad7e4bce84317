//go:build !linux

package main

// hugeHeap does nothing where transparent huge pages are not Linux's (see hugeheap_linux.go).
func hugeHeap(size int) error { return nil }
