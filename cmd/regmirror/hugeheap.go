package main

import (
	"os"
	"strings"
)

// thpDisabled reports whether GODEBUG has disablethp=1, the Go runtime's own switch that keeps
// transparent huge pages off its heap: hugeHeap then leaves the heap alone too. Of a setting
// given twice, the last counts, as the runtime reads it.
func thpDisabled(godebug string) bool {
	off := false
	for _, kv := range strings.Split(godebug, ",") {
		if v, ok := strings.CutPrefix(kv, "disablethp="); ok {
			off = v == "1"
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
