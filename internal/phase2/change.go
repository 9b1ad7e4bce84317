package phase2

import (
	"bytes"
	"io/fs"
	"maps"
	"os"
	"path"
	"slices"
	"sort"
	"strings"

	"golang.org/x/sync/errgroup"

	"github.com/regmirror/regmirror/layout"
)

// Change is how the phase-2 files change from one metadata to the next (Diff): the
// tree-relative paths of the digest markers to add and of those to remove (DigestFiles of
// each), the repositories whose tag files change, and the lines of refs.map that change. The
// zero Change is no change (a crawl, which changes no content).
type Change struct {
	Add, Remove []string
	// Repos are the repositories, sorted, whose tag files or refs.map lines differ (added,
	// removed or changed); the others' are as they were.
	Repos []string
	refs  refsChange
}

// refsChange is how refs.map's lines change: those of Change.Repos only.
type refsChange struct {
	tags    []string       // tag lines to add, sorted
	digests []digestRef    // digest lines to add, sorted (compareRefs)
	remove  map[string]int // lines to remove: how many times each is there
}

func (c refsChange) empty() bool {
	return len(c.tags) == 0 && len(c.digests) == 0 && len(c.remove) == 0
}

// Diff returns the change of the phase-2 files from prev's to meta's, computed in memory.
// Only the repositories that differ are rendered: one whose tags, manifests, markers and
// their generations (layout.Blob.Since) are the same in both costs a comparison (its tags and
// manifest lists, and four map lookups a manifest, which vouch for its markers and their
// order in refs.map).
func Diff(prev, meta *layout.Meta) Change { return DiffKept(prev, meta, nil) }

// DiffKept is Diff told which repositories meta kept as prev has them (a generation that
// took them whole): each repository named in kept has, in meta, prev's tags and manifest
// list, and meta records each of those manifests as prev does (the same media type, the same
// layout.Blob.Since). Such a repository costs the comparison of its retiring manifests only,
// not of its tags and manifests. A wrong kept makes a wrong change: the caller vouches for it.
func DiffKept(prev, meta *layout.Meta, kept map[string]bool) Change {
	var c Change
	diff := func(name string, old, repo *layout.Repository) {
		if old != nil && repo != nil {
			same := sameTags // a kept repository differs from prev at most in what it retires
			if kept[name] {
				same = sameRetiring
			}
			if same(prev, meta, old, repo) {
				return
			}
		}
		c.Repos = append(c.Repos, name)
		have, want := repoMarkers(prev, name, old), repoMarkers(meta, name, repo)
		for k, mk := range want {
			if have[k] != mk {
				c.Add = append(c.Add, k+"/"+mk)
			}
		}
		for k, mk := range have {
			if want[k] != mk {
				c.Remove = append(c.Remove, k+"/"+mk)
			}
		}
		_, oldTags, oldDigests := repoTags(prev, name, old)
		_, newTags, newDigests := repoTags(meta, name, repo)
		c.refs.add(oldTags, newTags, oldDigests, newDigests)
	}
	for name, repo := range meta.Repositories {
		diff(name, prev.Repositories[name], repo)
	}
	for name, old := range prev.Repositories {
		if meta.Repositories[name] == nil {
			diff(name, old, nil)
		}
	}
	sort.Strings(c.Add)
	sort.Strings(c.Remove)
	sort.Strings(c.Repos)
	sort.Strings(c.refs.tags)
	slices.SortFunc(c.refs.digests, compareRefs)
	return c
}

// sameTags reports whether repository old of prev and repo of meta have the same tag files
// and refs.map lines: the same tags, manifests served by digest, markers and generations.
func sameTags(prev, meta *layout.Meta, old, repo *layout.Repository) bool {
	if !maps.Equal(old.Tags, repo.Tags) || !slices.Equal(old.Manifests, repo.Manifests) || !sameRetiring(prev, meta, old, repo) {
		return false
	}
	for _, d := range repo.Tags {
		if !sameMarker(prev, meta, d) {
			return false
		}
	}
	return sameServed(prev, meta, repo.Manifests)
}

// sameRetiring reports whether repository old of prev and repo of meta retire the same
// manifests, with the same markers and generations.
func sameRetiring(prev, meta *layout.Meta, old, repo *layout.Repository) bool {
	return slices.Equal(old.Retiring, repo.Retiring) && sameServed(prev, meta, repo.Retiring)
}

// sameServed reports whether prev and meta give each manifest of list (served by digest)
// the same marker, if any, and the same generation.
func sameServed(prev, meta *layout.Meta, list []layout.Digest) bool {
	for _, d := range list {
		if !sameMarker(prev, meta, d) || since(prev, d) != since(meta, d) {
			return false
		}
	}
	return true
}

// sameMarker reports whether prev and meta give manifest d the same marker, if any.
func sameMarker(prev, meta *layout.Meta, d layout.Digest) bool {
	a, b := prev.Manifests[d], meta.Manifests[d]
	if a == nil || b == nil {
		return a == b
	}
	if a.MediaType == b.MediaType {
		return true
	}
	x, okX := extension(prev, d)
	y, okY := extension(meta, d)
	return x == y && okX == okY
}

// repoMarkers are the digest markers of repository name (nil: none) of meta: digest
// directory (digestDir) → marker name.
func repoMarkers(meta *layout.Meta, name string, repo *layout.Repository) map[string]string {
	l := map[string]string{}
	if repo == nil {
		return l
	}
	for _, d := range servedByDigest(repo) {
		if mk, ok := marker(meta, d); ok {
			l[digestDir(name, d)] = mk
		}
	}
	return l
}

// add records how one repository's refs.map lines change from the old ones to the new ones.
// A digest line whose generation changed moves: it is removed and added.
func (c *refsChange) add(oldTags, newTags []string, oldDigests, newDigests []digestRef) {
	if c.remove == nil {
		c.remove = map[string]int{}
	}
	count := func(tags []string, digests []digestRef) map[digestRef]int {
		n := map[digestRef]int{}
		for _, t := range tags {
			n[digestRef{line: t}]++
		}
		for _, d := range digests {
			n[d]++
		}
		return n
	}
	have, want := count(oldTags, oldDigests), count(newTags, newDigests)
	for r, n := range have {
		if d := n - want[r]; d > 0 {
			c.remove[r.line] += d
		}
	}
	for r, n := range want {
		for range n - have[r] {
			if isDigestLine(r.line) {
				c.digests = append(c.digests, r)
			} else {
				c.tags = append(c.tags, r.line)
			}
		}
	}
	if len(c.remove) == 0 {
		c.remove = nil
	}
}

// isDigestLine reports whether a refs.map line ("REPO:REF HEX.EXT") is a digest line: REF is
// "sha256:HEX". A tag has no colon and a repository name none either.
func isDigestLine(line string) bool {
	_, ref, _ := strings.Cut(line, ":")
	return strings.HasPrefix(ref, "sha256:")
}

// live is what a publish of a change reuses of the live publication's tag files (readLive).
type live struct {
	// dirs are the directories of v2/ on the changed repositories' paths that the live
	// publication has, by path ("" the root): the entry and its entries, each with its Same.
	dirs map[string]liveDir
	// tags are the changed repositories' live v2-tags entries.
	tags map[string]string
	// dirty are the changed repositories' paths and their parents (the directories to make
	// anew), by parent: the root's children under "".
	dirty map[string][]string
	// uses are the live publication's uses without the entries the publish replaces: the
	// directories of dirty, tags, and refs.map when it changes.
	uses []string
	// refs is the live refs.map entry: the new publication's when refs.map is unchanged
	// (then still in uses), else the one spliceLiveRefs splices the new refs.map from.
	refs string
	// spliced: refs.map changes (refs is the live one, no longer in uses).
	spliced bool
	changed map[string]bool // the changed repositories (change.Repos)
}

// liveDir is a directory of the live publication's v2/: its entry and its entries.
type liveDir struct {
	rel     string
	entries map[string]layout.SharedEntry
}

// readLive reads from the live publication what a publish of meta can reuse, given the
// change from the live publication's metadata to meta's (the tree settled at it): the
// directories of v2/ on the paths of the repositories change names (the other directories
// are linked as the live root links them), those repositories' v2-tags entries, refs.map's
// entry (writeChange splices the new refs.map from it: spliceLiveRefs) and the uses. It
// reports false, and the caller renders everything, whenever it cannot vouch for what it
// read: no live publication of this shape, a directory whose entries are not those its name
// says or not as this version writes them (readDir), a changed repository stored inside
// another's directory (maxLinkedDepth), an unchanged refs.map's or the uses' bytes not those
// their names say, an entry to replace that the uses lack.
func readLive(tree *layout.Tree, meta *layout.Meta, change *Change) (live, bool) {
	changed := map[string]bool{}
	l := live{dirs: map[string]liveDir{}, tags: map[string]string{}, dirty: map[string][]string{}}
	for _, name := range change.Repos {
		if depth(name) >= maxLinkedDepth {
			return live{}, false
		}
		changed[name] = true
		for p := name; p != ""; {
			parent, c := parentOf(p)
			if slices.Contains(l.dirty[parent], c) {
				break // and its parents too
			}
			l.dirty[parent] = append(l.dirty[parent], c)
			p = parent
		}
	}
	rootRel, ok := liveRoot(tree)
	if !ok {
		return live{}, false
	}
	root, ok := readDir(tree, rootRel, true)
	if !ok {
		return live{}, false
	}
	l.dirs[""] = liveDir{rootRel, root}
	// Parents before their children: a directory the live one lacks has no children there.
	var walk func(p string) bool
	walk = func(p string) bool {
		for _, c := range l.dirty[p] {
			child := path.Join(p, c)
			if e, ok := l.dirs[p].entries[c]; ok {
				if path.Dir(e.Link) != path.Join(layout.SharedDir, DirKind) {
					return false
				}
				entries, ok := readDir(tree, e.Link, false)
				if !ok {
					return false
				}
				l.dirs[child] = liveDir{e.Link, entries}
				if !walk(child) {
					return false
				}
			}
		}
		return true
	}
	if !walk("") {
		return live{}, false
	}
	uses, ok := liveUses(tree)
	if !ok {
		return live{}, false
	}
	drop := func(rel string) bool {
		if uses[rel] == 0 {
			return false
		}
		uses[rel]--
		return true
	}
	for p, d := range l.dirs {
		if p != "" && !drop(d.rel) {
			return live{}, false
		}
	}
	for name := range changed {
		if e, ok := l.dirs[name].entries[TagListFile]; ok {
			l.tags[name] = path.Dir(e.Link)
			if !drop(l.tags[name]) {
				return live{}, false
			}
		}
	}
	refs, ok := root[RefsMapFile]
	if !ok {
		return live{}, false
	}
	l.refs, l.changed = refs.Link, changed
	if !change.refs.empty() {
		if !drop(refs.Link) {
			return live{}, false
		}
		l.spliced = true
	} else if _, unmap, ok := readLiveRefs(tree, refs.Link); !ok {
		return live{}, false
	} else {
		unmap()
	}
	for rel, n := range uses {
		for range n {
			l.uses = append(l.uses, rel)
		}
	}
	return l, true
}

// readDir reads the directory of v2/ (DirKind; the root, RootKind, when root) at the
// tree-relative rel as WriteTags wrote it: links to a repository's v2-tags entry (_tags and
// _tags.json), to refs.map and to the children's DirKind entries, and the root's _base.json,
// each entry with Same set to it. It reports false unless every entry is one of these, as
// WriteTags writes it (linkedEntry), and the entries are those the directory's name says
// (layout.SharedDirHolds).
func readDir(tree *layout.Tree, rel string, root bool) (map[string]layout.SharedEntry, bool) {
	ents, err := os.ReadDir(tree.Path(rel))
	if err != nil {
		return nil, false
	}
	entries := make(map[string]layout.SharedEntry, len(ents))
	for _, e := range ents {
		n := e.Name()
		from := path.Join(rel, n)
		switch {
		case root && n == BaseFile && e.Type().IsRegular():
			b, err := os.ReadFile(tree.Path(from))
			if err != nil {
				return nil, false
			}
			entries[n] = layout.SharedEntry{Data: b, Same: from}
		case e.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(tree.Path(from))
			if err != nil {
				return nil, false
			}
			kind, want := DirKind, ""
			switch {
			case !root && (n == TagsDir || n == TagListFile):
				kind, want = RepoKind, n
			case root && n == RefsMapFile:
				kind = RefsKind
			}
			entry, rest, ok := linkedEntry(from, target, kind)
			if !ok || rest != want {
				return nil, false
			}
			entries[n] = layout.SharedEntry{Link: path.Join(entry, rest), Same: from}
		default:
			return nil, false
		}
	}
	return entries, layout.SharedDirHolds(rel, entries)
}

// liveUses are the entries the live publication's uses file lists (tree-relative), and how
// many times, if the file is there as a publish writes it.
func liveUses(tree *layout.Tree) (map[string]int, bool) {
	name, err := tree.LivePublication()
	if err != nil {
		return nil, false
	}
	from := path.Join(layout.PubPath(name), layout.SharedUses)
	target, err := os.Readlink(tree.Path(from))
	if err != nil {
		return nil, false
	}
	entry, rest, ok := linkedEntry(from, target, layout.SharedUses)
	if !ok || rest != "" {
		return nil, false
	}
	b, err := os.ReadFile(tree.Path(entry))
	if err != nil || !tree.SharedFileHolds(entry, b) {
		return nil, false
	}
	uses := map[string]int{}
	for line := range strings.Lines(string(b)) {
		rel := path.Join(layout.MetaDir, strings.TrimSuffix(line, "\n"))
		if e, ok := layout.SharedEntryOf(rel); !ok || e != rel {
			return nil, false
		}
		uses[rel]++
	}
	return uses, true
}

// writeChange is WriteTags of meta with change, from what readLive read of the live
// publication: the changed repositories' v2-tags entries, keeping the links and file the
// live entry has the same as hard links of them; the directories of v2/ on their paths,
// deepest first, each the live one (its entries hard links of the live ones) with the
// changed repositories' links and the changed children's replaced, and left out once empty;
// the root likewise, and refs.map, spliced from the live one (spliceLiveRefs) while the
// entries are written. The repositories' entries are written side by side: each is its own
// directory (a repository's _tags.json names it, so no two are the same entry), and most of
// their cost is waiting for the file system. It reports false, having written nothing the
// caller then needs, when the live refs.map cannot be spliced (the caller renders
// everything: the same entries, and refs.map whole).
func writeChange(tree *layout.Tree, meta *layout.Meta, change *Change, l live) (string, []string, bool, error) {
	var (
		refs     string
		refsOK   bool
		refsErr  error
		refsDone = make(chan struct{})
	)
	if l.spliced {
		go func() {
			defer close(refsDone)
			refs, refsOK, refsErr = writeSplicedRefs(tree, meta, l.changed, change.refs, l.refs)
		}()
	} else {
		refs, refsOK = l.refs, true // the live one, still in uses
		close(refsDone)
	}
	defer func() { <-refsDone }() // whatever this returns, the splice has returned too
	uses := l.uses
	written := make([]repoEntry, len(change.Repos))
	var g errgroup.Group
	g.SetLimit(repoWriters)
	for i, name := range change.Repos {
		g.Go(func() error {
			files, _, _ := repoTags(meta, name, meta.Repositories[name])
			if files == nil {
				return nil
			}
			if old, ok := l.tags[name]; ok {
				sameAs(tree, old, files)
			}
			dir, err := writeRepo(tree, name, files)
			written[i] = repoEntry{dir, len(files) > 1}
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return "", nil, false, err
	}
	repos := map[string]repoEntry{}
	for i, name := range change.Repos {
		if written[i].dir != "" {
			uses = append(uses, written[i].dir)
			repos[name] = written[i]
		}
	}
	var dir func(p string) (map[string]layout.SharedEntry, error)
	dir = func(p string) (map[string]layout.SharedEntry, error) {
		e := maps.Clone(l.dirs[p].entries)
		if e == nil {
			e = map[string]layout.SharedEntry{}
		}
		if l.changed[p] {
			delete(e, TagsDir)
			delete(e, TagListFile)
			if r, ok := repos[p]; ok {
				repoLinks(e, r)
			}
		}
		for _, c := range l.dirty[p] {
			child := path.Join(p, c)
			sub, err := dir(child)
			if err != nil {
				return nil, err
			}
			delete(e, c)
			if len(sub) == 0 {
				continue
			}
			rel, err := tree.WriteSharedDirNoDirSync(DirKind, sub) // synced with the rest: syncKinds
			if err != nil {
				return nil, err
			}
			uses = append(uses, rel)
			e[c] = layout.SharedEntry{Link: rel}
		}
		return e, nil
	}
	entries, err := dir("")
	if err != nil {
		return "", nil, false, err
	}
	<-refsDone
	if refsErr != nil {
		return "", nil, false, refsErr
	}
	if !refsOK {
		return "", nil, false, nil
	}
	entries[RefsMapFile] = layout.SharedEntry{Link: refs}
	if l.spliced {
		uses = append(uses, refs)
	}
	if err := syncKinds(tree); err != nil {
		return "", nil, false, err
	}
	root, err := tree.WriteSharedDir(RootKind, entries)
	if err != nil {
		return "", nil, false, err
	}
	return root, uses, true, nil
}

// repoWriters is how many repositories' v2-tags entries writeChange writes at once.
const repoWriters = 4

// readLiveRefs is the bytes of the live refs.map entry rel (tree-relative), mapped
// (layout.MapFile: call unmap once done with them); false when it cannot be read or does not
// hold the bytes its name says (damaged: WriteSharedFile writes it again).
func readLiveRefs(tree *layout.Tree, rel string) (b []byte, unmap func(), ok bool) {
	b, unmap, err := layout.MapFile(tree.Path(rel))
	if err != nil {
		return nil, nil, false
	}
	if !tree.SharedFileHolds(rel, b) {
		unmap()
		return nil, nil, false
	}
	return b, unmap, true
}

// writeSplicedRefs stores the new refs.map spliced (spliceRefs) from the live one, the entry
// rel (tree-relative), and returns its shared file; false, with nothing written, when the
// live one cannot be read, does not hold the bytes its name says, or cannot be spliced.
func writeSplicedRefs(tree *layout.Tree, meta *layout.Meta, changed map[string]bool, c refsChange, rel string) (string, bool, error) {
	b, unmap, ok := readLiveRefs(tree, rel)
	if !ok {
		return "", false, nil
	}
	defer unmap() // the pieces refer to the lines kept where they are
	p, ok := spliceRefs(b, meta, changed, c)
	if !ok {
		return "", false, nil
	}
	written, err := tree.WriteSharedPieces(RefsKind, meta.Generation, p)
	return written, true, err
}

// sameAs sets Same on the tag files of a repository whose live v2-tags entry old (the
// same repository's) holds them with the same content: a link with the same target, a file
// with the same bytes.
func sameAs(tree *layout.Tree, old string, files map[string]layout.SharedEntry) {
	for n, f := range files {
		at := path.Join(old, n)
		if f.Link != "" {
			if target, err := os.Readlink(tree.Path(at)); err != nil || target != layout.RelLink(at, f.Link) {
				continue
			}
		} else if b, err := os.ReadFile(tree.Path(at)); err != nil || !bytes.Equal(b, f.Data) {
			continue
		}
		f.Same = at
		files[n] = f
	}
}

// liveRoot is the v2 entry (RootKind, tree-relative) the live publication links as its
// PubDir, if it links one.
func liveRoot(tree *layout.Tree) (string, bool) {
	name, err := tree.LivePublication()
	if err != nil {
		return "", false
	}
	from := path.Join(layout.PubPath(name), PubDir)
	target, err := os.Readlink(tree.Path(from))
	if err != nil {
		return "", false
	}
	root, rest, ok := linkedEntry(from, target, RootKind)
	return root, ok && rest == ""
}

// linkedEntry is the shared entry of kind (tree-relative) that target, the target of the
// symbolic link at the tree-relative path from, points into, and the path within it ("" for
// the entry itself), if target is the link WriteTags or a publish writes there
// (layout.RelLink).
func linkedEntry(from, target, kind string) (entry, rest string, ok bool) {
	to := path.Join(path.Dir(from), target)
	entry, ok = layout.SharedEntryOf(to)
	if !ok || path.Dir(entry) != path.Join(layout.SharedDir, kind) || layout.RelLink(from, to) != target {
		return "", "", false
	}
	if to == entry {
		return entry, "", true
	}
	return entry, strings.TrimPrefix(to, entry+"/"), true
}

// spliceRefs is refs.map of meta made from prev, refs.map of the metadata the change c is
// from: the lines of the repositories in changed that c removes taken out, those it adds
// merged in where TagFiles orders them, every other line copied. The tag lines are merged by
// comparing lines, the digest lines by a binary search per added line (their generations
// looked up in meta: those of the lines kept are the same in both metadata, Diff moves a line
// whose generation changed). The lines kept are pieces of prev (layout.Splicer), which must
// stay as it is until they are written. It reports false when prev is not laid out as
// TagFiles writes it (the header, tag lines sorted before digest lines, every line to remove
// there once per removal), so that the caller renders refs.map whole.
func spliceRefs(prev []byte, meta *layout.Meta, changed map[string]bool, c refsChange) (layout.Pieces, bool) {
	rest, ok := bytes.CutPrefix(prev, []byte(refsHeader))
	if !ok || len(rest) > 0 && rest[len(rest)-1] != '\n' || int64(len(prev)) != int64(int32(len(prev))) {
		return nil, false
	}
	remove := maps.Clone(c.remove)
	grow := 0 // the lines added
	for _, t := range c.tags {
		grow += len(t) + 1
	}
	for _, r := range c.digests {
		grow += len(r.line) + 1
	}
	out := layout.NewSplicer(prev, grow)
	out.Keep(0, len(refsHeader))
	add := func(line string) { out.Add(func(b []byte) []byte { return append(append(b, line...), '\n') }) }
	tags := c.tags
	var last []byte  // the last tag line
	var kept []int32 // where the digest lines kept start in prev
	inDigests := false
	for len(rest) > 0 {
		at := len(prev) - len(rest)
		i := bytes.IndexByte(rest, '\n')
		line := rest[:i]
		rest = rest[i+1:]
		repo, ref, ok := bytes.Cut(line, []byte(":"))
		if !ok || len(repo) == 0 || !bytes.Contains(ref, []byte(" ")) {
			return nil, false
		}
		if changed[string(repo)] {
			if n := remove[string(line)]; n > 0 {
				remove[string(line)] = n - 1
				continue
			}
		}
		if bytes.HasPrefix(ref, []byte("sha256:")) {
			inDigests = true
			kept = append(kept, int32(at))
			continue
		}
		if inDigests || last != nil && bytes.Compare(last, line) >= 0 {
			return nil, false // a tag line after a digest line, or out of order
		}
		last = line
		for len(tags) > 0 && tags[0] < string(line) {
			add(tags[0])
			tags = tags[1:]
		}
		out.Keep(at, at+len(line)+1)
	}
	for _, n := range remove {
		if n != 0 {
			return nil, false // not there: prev is not the change's refs.map
		}
	}
	for _, t := range tags {
		add(t)
	}
	// lineAt is the kept digest line i, without its newline.
	lineAt := func(i int) []byte {
		at := int(kept[i])
		return prev[at : at+bytes.IndexByte(prev[at:], '\n')]
	}
	keep := func(from, to int) {
		for i := from; i < to; i++ {
			at := int(kept[i])
			out.Keep(at, at+len(lineAt(i))+1)
		}
	}
	// The kept digest lines are ordered by (generation, line): each added line goes before
	// the first kept line ordered after it.
	bad := false
	key := func(line []byte) digestRef {
		_, ref, _ := bytes.Cut(line, []byte(":"))
		ref, _, _ = bytes.Cut(ref, []byte(" "))
		d, err := layout.ParseDigest(string(ref))
		if err != nil {
			bad = true
		}
		return digestRef{since(meta, d), string(line)}
	}
	next := 0
	for _, r := range c.digests {
		at := next + sort.Search(len(kept)-next, func(i int) bool { return compareRefs(key(lineAt(next+i)), r) > 0 })
		keep(next, at)
		add(r.line)
		next = at
	}
	keep(next, len(kept))
	if bad {
		return nil, false
	}
	return out.Pieces(), true
}
