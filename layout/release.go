package layout

import (
	"io/fs"
	"os"
	"path/filepath"
	"slices"
)

// releaseMin is the smallest shared file whose cached pages releaseSuperseded gives back.
const releaseMin = 1 << 20

// releaseSuperseded gives back the page cache of the large shared files (index.json, the
// filters, refs.map, the file list: tens of MB at scale) that stopped being live at the last
// publish (superseded), before a publish writes their successors. Those files are read again
// rarely if ever (a mirror's sync pinned to an older publication reads them from the disk);
// the pages the publish then writes into are ones just freed rather than memory the kernel
// has not touched lately, which on a virtual machine that gives free memory back to its host
// costs a fault in the host per page (docs/benchmarks.md). Only a hint: nothing is removed,
// and failures are ignored.
func (t *Tree) releaseSuperseded() {
	for _, p := range t.superseded() {
		dropCache(p)
	}
}

// superseded returns the large files (pubLargeFiles) of the publication created just before
// the live one (the one live before it) that the live one does not reach: what the last
// publish left to older publications alone. Those of older publications were given back by
// the publishes before it, each giving back the files of the publication live before it, so
// that the work stays that of one publication however many are kept (a publish waits for it
// before it writes). A publication newer than the live one (a publish that failed before its
// switch) is not looked at.
func (t *Tree) superseded() []string {
	live, err := t.LivePublication()
	if err != nil {
		return nil
	}
	names, err := t.Publications()
	if err != nil {
		return nil
	}
	i := slices.Index(names, live) + 1 // names are newest first
	if i == 0 || i == len(names) {
		return nil
	}
	keep := t.pubLargeFiles(live)
	var files []string
	for p := range t.pubLargeFiles(names[i]) {
		if !keep[p] {
			files = append(files, p)
		}
	}
	slices.Sort(files)
	return files
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
