package main

import (
	"os"
	"strconv"
	"strings"
)

// thpDisabled reports whether GODEBUG sets disablethp, the Go runtime's own switch that keeps
// transparent huge pages off its heap, to anything but 0: hugeHeap then leaves the heap alone
// too. It reads the setting as the runtime does: left to right, the last one that is a
// number counting.
func thpDisabled(godebug string) bool {
	off := false
	for _, kv := range strings.Split(godebug, ",") {
		if v, ok := strings.CutPrefix(kv, "disablethp="); ok {
			if n, err := strconv.ParseInt(v, 10, 32); err == nil {
				off = n != 0
			}
		}
	}
	return off
}

// generateHugeHeap is how much of generate's heap hugeHeap asks huge pages for: its soft
// memory limit, which a promotion's heap stays below.
const generateHugeHeap = generateMemoryLimit

// hugeHeapSize is how much hugeHeap maps when asked for want bytes on a machine of ram bytes
// of memory: want, or a quarter of ram when that is less.
func hugeHeapSize(want int, ram uint64) int {
	return int(min(uint64(want), ram/4))
}

// hugeHeapFor runs hugeHeap(size) unless the environment's GODEBUG turns huge pages off.
func hugeHeapFor(size int) error {
	if thpDisabled(os.Getenv("GODEBUG")) {
		return nil
	}
	return hugeHeap(size)
}
