package layout

import (
	"bufio"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"unsafe"
)

// mappingOf returns the path of the file mapped at address p in this process
// (/proc/self/maps), or "" when p is in no file mapping.
func mappingOf(t *testing.T, p uintptr) string {
	t.Helper()
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		lo, hi, ok := strings.Cut(fields[0], "-")
		if !ok || len(fields) < 6 {
			continue
		}
		start, err1 := strconv.ParseUint(lo, 16, 64)
		end, err2 := strconv.ParseUint(hi, 16, 64)
		if err1 == nil && err2 == nil && uint64(p) >= start && uint64(p) < end {
			return fields[5]
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return ""
}

// TestPackCopyMapped: a load reads a pack cache copy mapped, its manifests' bytes in the
// mapping, not copied into memory of the process's own; UsePackCache's release unmaps it.
func TestPackCopyMapped(t *testing.T) {
	tree := cacheableTree(t, 5)
	cache := t.TempDir()
	first := NewTree(tree.Dir())
	release := first.UsePackCache(cache)
	if _, _, err := first.Load(); err != nil { // decodes the JSON, writes the copy
		t.Fatal(err)
	}
	release()
	copies, err := filepath.Glob(filepath.Join(cache, "*"+packCacheExt))
	if err != nil || len(copies) != 1 {
		t.Fatalf("copies: got %v (%v), want one", copies, err)
	}

	ct := NewTree(tree.Dir())
	release = ct.UsePackCache(cache)
	got, _, err := ct.Load()
	if err != nil {
		t.Fatal(err)
	}
	var data []byte
	for _, mf := range got.Manifests {
		if len(mf.Data) > 0 {
			data = mf.Data
			break
		}
	}
	if data == nil {
		t.Fatal("no manifest with bytes loaded")
	}
	addr := uintptr(unsafe.Pointer(&data[0]))
	if got, want := mappingOf(t, addr), copies[0]; got != want {
		t.Fatalf("a manifest's bytes are in %q, want the mapped copy %s", got, want)
	}
	release()
	if got := mappingOf(t, addr); got == copies[0] {
		t.Fatalf("the copy %s is still mapped after release", got)
	}
}
