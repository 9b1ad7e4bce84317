package layout

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// residentPages returns how many of the pages of the file at p are in the page cache, and
// how many it has.
func residentPages(t *testing.T, p string) (int, int) {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	data, err := unix.Mmap(int(f.Fd()), 0, int(fi.Size()), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(data)
	vec := make([]byte, (len(data)+os.Getpagesize()-1)/os.Getpagesize())
	if _, _, e := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&data[0])), uintptr(len(data)), uintptr(unsafe.Pointer(&vec[0]))); e != 0 {
		t.Fatalf("mincore: %v", e)
	}
	n := 0
	for _, v := range vec {
		n += int(v & 1)
	}
	return n, len(vec)
}

// TestReleaseSuperseded: a publish gives back the cached pages of the large shared files that
// only publications other than the live one reach (a filter in subsets/, a refs.map behind a
// linked directory), and keeps those the live one reaches (also where an older one reaches
// them too), small files, and what the publish writes.
func TestReleaseSuperseded(t *testing.T) {
	dir := t.TempDir()
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	if st.Type == unix.TMPFS_MAGIC {
		t.Fatalf("%s is a tmpfs, whose pages cannot be given back: run the tests with TMPDIR on a disk", dir)
	}
	tree := NewTree(dir)
	big := func(g, what byte) []byte { return bytes.Repeat([]byte{'a' + g, what, '\n'}, releaseMin) }
	shared := big(0, 's') // the same in every generation: one file
	type files struct{ filter, refs, kept, same, small string }
	publish := func(g byte) files {
		t.Helper()
		refs, err := tree.WriteSharedFile("v2-refs.map", uint64(g), big(g, 'r'))
		if err != nil {
			t.Fatal(err)
		}
		k := big(1, 'k') // the same in 1 and 2
		if g == 3 {
			k = big(3, 'k')
		}
		kept, err := tree.WriteSharedFile("v2-kept.map", uint64(g), k)
		if err != nil {
			t.Fatal(err)
		}
		root, err := tree.WriteSharedDir("v2", map[string]SharedEntry{"refs.map": {Link: refs}, "kept.map": {Link: kept}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tree.PublishWith(NewMeta(uint64(g)), Publication{
			Shared: map[string][]byte{
				"subsets/arm64.rsync-filter": big(g, 'f'),
				"subsets/all.rsync-filter":   shared,
				"subsets/tiny.rsync-filter":  {'a' + g},
			},
			Links: map[string]string{"v2": root},
			Uses:  []string{refs, kept},
		}); err != nil {
			t.Fatal(err)
		}
		target := func(rel string) string {
			t.Helper()
			p, err := filepath.EvalSymlinks(tree.Path(LiveLink + "/" + rel))
			if err != nil {
				t.Fatal(err)
			}
			return p
		}
		return files{filter: target("subsets/arm64.rsync-filter"), refs: tree.Path(refs), kept: tree.Path(kept), same: target("subsets/all.rsync-filter"), small: target("subsets/tiny.rsync-filter")}
	}
	read := func(p string) {
		if _, err := os.ReadFile(p); err != nil {
			t.Fatal(err)
		}
	}
	first := publish(1)
	second := publish(2)
	for _, p := range []string{first.filter, first.refs, first.small, second.filter, second.refs, second.kept, second.same} {
		read(p) // all cached, whatever the publish did before
	}
	third := publish(3)
	for _, c := range []struct {
		name    string
		path    string
		dropped bool
	}{
		{"filter only an older publication reaches", first.filter, true},
		{"refs.map only an older publication reaches", first.refs, true},
		{"small file of an older publication", first.small, false},
		{"filter of the publication live during the publish", second.filter, false},
		{"refs.map of the publication live during the publish", second.refs, false},
		{"file the live publication shares with an older one", second.kept, false},
		{"file every publication reaches", second.same, false},
		{"filter just written", third.filter, false},
		{"refs.map just written", third.refs, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, of := residentPages(t, c.path)
			if c.dropped && got != 0 {
				t.Errorf("%s: got %d of %d pages cached, want none", c.path, got, of)
			}
			if !c.dropped && got != of {
				t.Errorf("%s: got %d of %d pages cached, want all", c.path, got, of)
			}
		})
	}
}
