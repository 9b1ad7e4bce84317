package main

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// hugePage is the size of a transparent huge page on the platforms Go's runtime supports
// here (amd64, arm64 with 4 KiB pages).
const hugePage = 2 << 20

// hugeHeap asks the kernel to back the next size bytes the Go heap maps with transparent huge
// pages (madvise MADV_HUGEPAGE), where the kernel leaves huge pages to each process
// (/sys/kernel/mm/transparent_hugepage/enabled set to madvise) and Go's runtime never asks.
// A generate's heap is filled once and thrown away at exit: each 4 KiB page touched for the
// first time is a page fault, about 30,000 of them in a 90k-manifest promotion, and on a
// virtual machine each costs tens of microseconds (docs/benchmarks.md, "Huge pages for
// generate's heap"). With huge pages a fault maps 2 MiB.
//
// The runtime gives no say over how its heap is mapped, so hugeHeap has it map the span:
// it allocates size bytes (fresh memory, which the runtime neither zeroes nor touches),
// advises the range, and drops it. The next collection frees it and later allocations
// reuse it, keeping the advice (it belongs to the mapping, not to the allocation). It
// must run before the heap grows, at the start of the command.
//
// It maps at most a quarter of the machine's memory (hugeHeapSize): the runtime cannot
// survive a mapping the kernel refuses, and on a small host a large one could be.
func hugeHeap(size int) error {
	var si unix.Sysinfo_t
	if err := unix.Sysinfo(&si); err != nil {
		return fmt.Errorf("reading the machine's memory size: %w", err)
	}
	size = hugeHeapSize(size, uint64(si.Totalram)*uint64(si.Unit))
	if size < 2*hugePage {
		return nil
	}
	return adviseHuge(make([]byte, size))
}

// adviseHuge advises the huge pages b covers whole (MADV_HUGEPAGE). A kernel without
// transparent huge pages refuses the advice (EINVAL): that is no error, there is nothing to
// ask for.
func adviseHuge(b []byte) error {
	base := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	lo := int((base+hugePage-1)&^(hugePage-1) - base)
	hi := int((base+uintptr(len(b)))&^(hugePage-1) - base)
	if hi <= lo {
		return nil
	}
	err := unix.Madvise(b[lo:hi], unix.MADV_HUGEPAGE)
	if err != nil && err != unix.EINVAL {
		return fmt.Errorf("asking for huge pages under the heap: %w", err)
	}
	return nil
}
