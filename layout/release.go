package layout

import (
	"io/fs"
	"os"
	"path/filepath"
)

// releaseMin is the smallest shared file whose cached pages releaseSuperseded gives back.
const releaseMin = 1 << 20

// releaseSuperseded gives back the page cache of the large shared files (index.json, the
// filters, refs.map, the file list: tens of MB at scale) that only publications other than
// the live one reach, before a publish writes their successors. Those files are read again
// rarely if ever (a mirror's sync pinned to an older publication reads them from the disk);
// the pages the publish then writes into are ones just freed rather than memory the kernel
// has not touched lately, which on a virtual machine that gives free memory back to its host
// costs a fault in the host per page (docs/benchmarks.md). Only a hint: nothing is removed,
// and failures are ignored.
func (t *Tree) releaseSuperseded() {
	live, err := t.LivePublication()
	if err != nil {
		return
	}
	names, err := t.Publications()
	if err != nil {
		return
	}
	keep := t.pubLargeFiles(live)
	for _, n := range names {
		if n == live {
			continue
		}
		for p := range t.pubLargeFiles(n) {
			if !keep[p] {
				keep[p] = true // once
				dropCache(p)
			}
		}
	}
}

// pubLargeFiles returns the regular files of at least releaseMin bytes that publication
// name's symbolic links reach, directly or through a linked directory's own links (v2's
// refs.map), by OS path with no symbolic link in it.
func (t *Tree) pubLargeFiles(name string) map[string]bool {
	files := map[string]bool{}
	var visit func(dir string, depth int)
	visit = func(dir string, depth int) {
		ents, err := os.ReadDir(dir)
		if err != nil {
			return
		}
		for _, e := range ents {
			p := filepath.Join(dir, e.Name())
			if e.IsDir() && depth == 0 {
				visit(p, depth+1) // a publication's own directory (subsets)
				continue
			}
			if e.Type()&fs.ModeSymlink == 0 {
				continue
			}
			fi, err := os.Stat(p)
			if err != nil {
				continue
			}
			if fi.IsDir() {
				if depth == 0 {
					visit(p, depth+1)
				}
				continue
			}
			if !fi.Mode().IsRegular() || fi.Size() < releaseMin {
				continue
			}
			if real, err := filepath.EvalSymlinks(p); err == nil {
				files[real] = true
			}
		}
	}
	visit(t.Path(PubPath(name)), 0)
	return files
}
