package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strings"
	"testing"
	"unsafe"
)

// TestAdviseHuge checks that adviseHuge leaves the mapping under a heap allocation advised
// for huge pages (VmFlags "hg" in /proc/self/smaps) where the kernel has transparent huge
// pages, and is no error where it has none.
func TestAdviseHuge(t *testing.T) {
	b := make([]byte, 8*hugePage)
	if err := adviseHuge(b); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat("/sys/kernel/mm/transparent_hugepage"); err != nil {
		t.Logf("this kernel has no transparent huge pages (%v): adviseHuge was no error, as it should be", err)
		return
	}
	at := (uintptr(unsafe.Pointer(unsafe.SliceData(b))) + hugePage - 1) &^ (hugePage - 1)
	flags, err := vmFlagsAt(at)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(" "+flags+" ", " hg ") {
		t.Errorf("VmFlags of the mapping at %#x: got %q, want hg (MADV_HUGEPAGE) among them", at, flags)
	}
}

// vmFlagsAt returns the VmFlags line of the mapping holding addr, from /proc/self/smaps.
func vmFlagsAt(addr uintptr) (string, error) {
	data, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		return "", err
	}
	in := false
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := sc.Text()
		var lo, hi uintptr
		if n, _ := fmt.Sscanf(line, "%x-%x ", &lo, &hi); n == 2 && strings.Contains(line[:strings.IndexByte(line, ' ')], "-") {
			in = lo <= addr && addr < hi
			continue
		}
		if v, ok := strings.CutPrefix(line, "VmFlags:"); ok && in {
			return strings.TrimSpace(v), nil
		}
	}
	return "", fmt.Errorf("no mapping holds %#x in /proc/self/smaps", addr)
}
