package phase2

import (
	"path"
	"strings"

	"github.com/regmirror/regmirror/layout"
)

// DirKind is the kind of the shared entries holding the directories of a publication's v2/
// below its root (RootKind): one per directory, the directory of a repository, of a
// namespace (fedora/ for fedora/toolbox) or both, named by its content. It holds, when it is
// a published repository's, the links _tags and _tags.json into the repository's v2-tags
// entry (_tags when it has a tag a mirror can serve), and a link per child component to the
// child's DirKind entry. A directory and everything below it are the same bytes while no
// repository below it changes, so a promotion makes new entries only on the paths of the
// repositories it changes, and the other directories are linked as they are.
const DirKind = "v2-dir"

// maxLinkedDepth is the depth, in name components, of the deepest directories of v2/ stored
// as DirKind entries of their own and linked from their parent; the directories below one at
// that depth are stored inside it, as real directories. A request's path then crosses at
// most maxLinkedDepth+4 symbolic links (live, the publication's v2, a directory's each, _tags
// and the tag), well within the 40 Linux follows in one path. A variable for the tests.
var maxLinkedDepth = 16

// depth is the number of components of the slash path p ("" is the root: 0).
func depth(p string) int {
	if p == "" {
		return 0
	}
	return strings.Count(p, "/") + 1
}

// parentOf is the directory holding the v2/ directory p and p's last component ("" for the
// root's children).
func parentOf(p string) (parent, name string) {
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		return p[:i], p[i+1:]
	}
	return "", p
}

// repoEntry is a published repository's v2-tags entry (tree-relative), and whether it holds
// _tags (a tag a mirror can serve).
type repoEntry struct {
	dir  string
	tags bool
}

// repoLinks adds the links of the repository r to its v2/ directory's entries e.
func repoLinks(e map[string]layout.SharedEntry, r repoEntry) {
	if r.tags {
		e[TagsDir] = layout.SharedEntry{Link: path.Join(r.dir, TagsDir)}
	}
	e[TagListFile] = layout.SharedEntry{Link: path.Join(r.dir, TagListFile)}
}

// writeDirs stores the directories of v2/ holding the published repositories repos (name →
// its v2-tags entry) as DirKind entries (those already there are found) and returns the
// root's entries linking them, and every DirKind entry they reach.
func writeDirs(tree *layout.Tree, repos map[string]repoEntry) (root map[string]layout.SharedEntry, dirs []string, err error) {
	kids := map[string]map[string]bool{}
	for name := range repos {
		for p := name; p != ""; {
			parent, c := parentOf(p)
			if kids[parent] == nil {
				kids[parent] = map[string]bool{}
			}
			if kids[parent][c] {
				break // and its parents too
			}
			kids[parent][c] = true
			p = parent
		}
	}
	var entries func(p string) (map[string]layout.SharedEntry, error)
	entries = func(p string) (map[string]layout.SharedEntry, error) {
		e := map[string]layout.SharedEntry{}
		if r, ok := repos[p]; ok {
			repoLinks(e, r)
		}
		for c := range kids[p] {
			sub, err := entries(path.Join(p, c))
			if err != nil {
				return nil, err
			}
			if depth(p) >= maxLinkedDepth {
				for n, x := range sub {
					e[c+"/"+n] = x
				}
				continue
			}
			dir, err := tree.WriteSharedDirNoDirSync(DirKind, sub) // synced with the rest: syncKinds
			if err != nil {
				return nil, err
			}
			dirs = append(dirs, dir)
			e[c] = layout.SharedEntry{Link: dir}
		}
		return e, nil
	}
	root, err = entries("")
	return root, dirs, err
}
