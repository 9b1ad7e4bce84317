// Package listcheck checks, for tests, that the file list a publish took in part from the
// previous one (filelist.Reuse) says what a listing of the tree says.
package listcheck

import (
	"fmt"
	"os"
	"path"
	"slices"
	"sort"
	"strings"

	"github.com/regmirror/regmirror/internal/filelist"
	"github.com/regmirror/regmirror/layout"
)

// Dirs are the directories a publish on a settled tree takes from the previous file list.
var Dirs = []string{layout.MetaDir + "/v2", layout.BlobDir("sha256"), layout.SharedDir}

// Check compares the live file list's [Files] lines of Dirs (and below) in the tree at dir
// with a listing of the tree (filelist.Scan). They must be equal but for what changed after
// the list was rendered, which the settled record names: each path it names is listed and
// gone (the garbage deleted after the publish), or not listed and there, but for the paths
// under layout.SharedDir, which are not compared, nor what lies below them; the times of
// their directories are not compared; without a record the list must equal the listing. ignore,
// when not nil, leaves paths out of the comparison. It returns the differences, sorted.
func Check(dir string, ignore func(rel string) bool) ([]string, error) {
	tree := layout.NewTree(dir)
	b, err := os.ReadFile(tree.Path(filelist.Name(filelist.DefaultModule)))
	if err != nil {
		return nil, err
	}
	in := func(rel string) bool {
		return slices.ContainsFunc(Dirs, func(d string) bool { return rel == d || strings.HasPrefix(rel, d+"/") }) &&
			(ignore == nil || !ignore(rel))
	}
	files, _, _ := strings.Cut(string(b), "\n\n[Checksums SHA1]")
	listed := map[string]string{}
	for _, line := range strings.Split(files, "\n") {
		if f := strings.Split(line, "\t"); len(f) == 4 && in(f[3]) {
			listed[f[3]] = line
		}
	}
	entries, err := filelist.Scan(dir)
	if err != nil {
		return nil, err
	}
	scanned := map[string]string{}
	for _, e := range entries {
		if in(e.Path) {
			scanned[e.Path] = fmt.Sprintf("%d\t%s\t%d\t%s", e.Time, e.Type, e.Size, e.Path)
		}
	}
	var diffs []string
	record, err := os.ReadFile(tree.Path(layout.SettledFile))
	if err != nil && !os.IsNotExist(err) {
		return nil, err
	}
	if lines := strings.Split(strings.TrimSuffix(string(record), "\n"), "\n"); len(lines) > 1 {
		paths := lines[1:]
		if end := slices.Index(paths, "."); end >= 0 { // the plain repositories follow
			paths = paths[:end]
		}
		for _, rel := range paths {
			if rel == layout.SharedDir || strings.HasPrefix(rel, layout.SharedDir+"/") {
				for _, m := range []map[string]string{listed, scanned} {
					for p := range m {
						if p == rel || strings.HasPrefix(p, rel+"/") || p == path.Dir(rel) {
							delete(m, p)
						}
					}
				}
				continue
			}
			_, isListed := listed[rel]
			_, isThere := scanned[rel]
			if isListed == isThere {
				diffs = append(diffs, fmt.Sprintf("the settled record names %s: listed %v, there %v", rel, isListed, isThere))
			}
			for _, p := range []string{rel, path.Dir(rel)} {
				delete(listed, p)
				delete(scanned, p)
			}
		}
	}
	for rel, line := range scanned {
		if listed[rel] != line {
			diffs = append(diffs, fmt.Sprintf("%s: listed %q, a listing says %q", rel, listed[rel], line))
		}
	}
	for rel := range listed {
		if _, ok := scanned[rel]; !ok {
			diffs = append(diffs, fmt.Sprintf("%s: listed, not in the tree", rel))
		}
	}
	sort.Strings(diffs)
	return diffs, nil
}
