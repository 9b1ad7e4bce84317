// Package phase2 lets a mirror answer pulls itself with a plain web server (the proposal's
// "phase 2"): the generator writes a few small files into the tree, and `regmirror
// mirror-config` prints the nginx or Apache directives that turn an rsync copy of the tree into
// a read-only registry for `podman pull` / `skopeo copy`.
//
// What a tag resolves to changes with each generation, so those files are reached from each
// publication (layout.PubDir) and read through regmirror/live, which switches them all at
// once with the stamp. So that a publish adds what changed, not the tree, they are stored once
// as shared entries (layout.SharedDir), named by their content, and a publication links to
// them: one entry of tag files per repository, reused while its tags stay, and one entry per
// directory of v2/ (a repository's or a namespace's), linked from its parent's and reused
// while nothing below it changes, so that a promotion makes new directories only on the
// paths of the repositories it changes (a crawl none). Which manifests a repository holds by
// digest only grows within the grace, so those markers are shared as they are. For every
// published repository REPO (here fedora/toolbox, below fedora):
//
//	regmirror/pub/<name>/v2 -> ../../shared/v2/<hex>   (read as regmirror/live/v2/, LiveDir)
//	regmirror/shared/v2/<hex>/       (RootKind: a publication's v2/)
//	    fedora -> ../../v2-dir/<hex>                    a link per top-level component
//	    refs.map -> ../../v2-refs.map/<generation>-<hex>
//	    _base.json                  {} for GET /v2/
//	regmirror/shared/v2-dir/<hex>/   (DirKind: the directory of fedora)
//	    _tags -> ../../v2-tags/<hex>/_tags              when fedora is a published repository
//	    _tags.json -> ../../v2-tags/<hex>/_tags.json
//	    toolbox -> ../<hex>          a link per child component, to its DirKind entry
//	                                (below maxLinkedDepth components; deeper directories
//	                                are real directories inside their ancestor's entry)
//	regmirror/shared/v2-tags/<hex>/  (RepoKind: one repository's tag files)
//	    _tags/TAG -> …/regmirror/v2/REPO/_digests/HEX   TAG resolves to manifest sha256:HEX:
//	                                a link to its digest directory, which holds one marker
//	    _tags.json                  {"name":REPO,"tags":[…]} for GET /v2/REPO/tags/list
//	regmirror/shared/v2-refs.map/<generation>-<hex>    (RefsKind)
//	                                "REPO:TAG HEX.EXT" lines, then "REPO:sha256:HEX HEX.EXT"
//	                                lines (Tags.RefsMap: an Apache RewriteMap txt: file,
//	                                re-read when it changes; a new version is
//	                                delta-transferred by rsync)
//	regmirror/v2/                   (Dir, shared by the publications)
//	    REPO/_digests/HEX/HEX.EXT   empty marker: manifest sha256:HEX is in REPO
//
// The publication lists the v2-dir and v2-tags entries and refs.map in its uses file
// (layout.SharedUses), so they are kept while it is and deploy/mirror-sync copies them before
// switching to it. A publish that knows the change since the live publication makes what it
// keeps of the live entries hard links of them (layout.SharedEntry.Same): no new inode.
//
// EXT names the manifest's media type (see Extensions); the manifest's bytes are the blob
// blobs/sha256/HEX, already in the tree. Repository path components never start with "_", so
// "_tags", "_digests" and "_tags.json" cannot collide with a nested repository.
//
// nginx resolves a tag with random_index over the tag's directory in the live publication,
// which holds exactly one marker: the internal redirect to the marker's name gives the digest
// and the media type, and the answer is the blob file with the digest header. Apache looks
// both up in the live refs.map. Each request opens one path through the live link (the
// kernel follows it and the links behind it in that one open), so it answers one
// publication, the old or the new; neither server needs a reload when the tree changes.
package phase2

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/regmirror/regmirror/layout"
)

// Dir is the directory of the shared digest markers, relative to the tree root.
const Dir = layout.MetaDir + "/v2"

// PubDir is the directory of the tag files within a publication, and LiveDir the same read
// through the live link, relative to the tree root.
const (
	PubDir  = "v2"
	LiveDir = layout.LiveLink + "/" + PubDir
)

// Names of the files in Dir and PubDir.
const (
	TagsDir     = "_tags"
	DigestsDir  = "_digests"
	TagListFile = "_tags.json"
	BaseFile    = "_base.json"
	RefsMapFile = "refs.map"
)

// Extensions maps the manifest media types a mirror can serve to the file extension that
// encodes them in a marker's name.
var Extensions = map[string]string{
	layout.MediaTypeOCIManifest:    "oci-manifest",
	layout.MediaTypeOCIIndex:       "oci-index",
	layout.MediaTypeDockerManifest: "docker-manifest",
	layout.MediaTypeDockerList:     "docker-list",
}

// mediaTypes is Extensions sorted by extension, for configs.
func mediaTypes() [][2]string {
	var l [][2]string
	for mt, ext := range Extensions {
		l = append(l, [2]string{mt, ext})
	}
	sort.Slice(l, func(i, j int) bool { return l[i][1] < l[j][1] })
	return l
}

// extension is the extension of manifest d's marker (Extensions), if a mirror can serve it.
func extension(meta *layout.Meta, d layout.Digest) (string, bool) {
	m := meta.Manifests[d]
	if m == nil || d.Algorithm() != "sha256" {
		return "", false
	}
	ext, ok := Extensions[m.MediaType]
	return ext, ok
}

// marker is the marker name of manifest d, "HEX.EXT", if a mirror can serve it.
func marker(meta *layout.Meta, d layout.Digest) (string, bool) {
	ext, ok := extension(meta, d)
	if !ok {
		return "", false
	}
	return d.Hex() + "." + ext, true
}

// servedByDigest are the manifests a repository answers by digest: those it references and
// those it retires (layout.Repository.Retiring).
func servedByDigest(repo *layout.Repository) []layout.Digest {
	return slices.Concat(repo.Manifests, repo.Retiring)
}

// sortedNames are meta's repository names, sorted.
func sortedNames(meta *layout.Meta) []string {
	names := make([]string, 0, len(meta.Repositories))
	for name := range meta.Repositories {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

// Kinds of the shared entries (layout.SharedDir) holding the tag files.
const (
	RootKind = "v2"          // a publication's v2/ directory: RootEntries
	RepoKind = "v2-tags"     // one repository's tag files: _tags/TAG/HEX.EXT and _tags.json
	RefsKind = "v2-refs.map" // refs.map
)

// Tags are the phase-2 tag files of a publication of meta as they are stored: one shared
// directory per published repository and refs.map.
type Tags struct {
	// Repos are, per published repository, its directory's entries: _tags/TAG (when it has
	// a tag a mirror can serve), a link to the tag's manifest's digest directory (DigestFiles:
	// it holds the one marker HEX.EXT), and _tags.json.
	Repos map[string]map[string]layout.SharedEntry
	// RefsMap is refs.map: "REPO:TAG HEX.EXT" lines sorted, then "REPO:sha256:HEX HEX.EXT"
	// lines ordered by the generation the manifest appeared in (layout.Blob.Since), then
	// sorted: a moved tag changes its line in place and new manifests gather at the end, so
	// that rsync's delta transfer of a new refs.map sends little more than the changed lines.
	RefsMap []byte
}

// refsHeader is refs.map's first line.
const refsHeader = "# regmirror phase-2 references (Apache RewriteMap txt): REPO:TAG or REPO:DIGEST -> HEX.EXT\n"

// digestRef is one "REPO:sha256:HEX HEX.EXT" line of refs.map and the generation its
// manifest appeared in, by which such lines are ordered (Tags.RefsMap).
type digestRef struct {
	since uint64
	line  string
}

func compareRefs(a, b digestRef) int {
	if a.since != b.since {
		return cmp.Compare(a.since, b.since)
	}
	return strings.Compare(a.line, b.line)
}

// repoTags are repository name's part of meta's tag files: its directory's entries (nil
// when it is not published: retiring content only, served by digest, no tag list, 404 as
// from serve), its refs.map tag lines (unsorted) and its digest lines (unsorted).
func repoTags(meta *layout.Meta, name string, repo *layout.Repository) (files map[string]layout.SharedEntry, tagLines []string, digestLines []digestRef) {
	if repo == nil {
		return nil, nil, nil
	}
	files = map[string]layout.SharedEntry{}
	tags := make([]string, 0, len(repo.Tags))
	for tag, d := range repo.Tags {
		mk, ok := marker(meta, d)
		if !ok {
			continue
		}
		tags = append(tags, tag)
		files[path.Join(TagsDir, tag)] = layout.SharedEntry{Link: digestDir(name, d)}
		tagLines = append(tagLines, name+":"+tag+" "+mk)
	}
	for _, l := range [][]layout.Digest{repo.Manifests, repo.Retiring} { // servedByDigest
		for _, d := range l {
			if mk, ok := marker(meta, d); ok {
				digestLines = append(digestLines, digestRef{since(meta, d), name + ":" + d.String() + " " + mk})
			}
		}
	}
	if !repo.Published() {
		return nil, tagLines, digestLines
	}
	sort.Strings(tags)
	list, _ := json.Marshal(struct {
		Name string   `json:"name"`
		Tags []string `json:"tags"`
	}{name, tags})
	files[TagListFile] = layout.SharedEntry{Data: append(list, '\n')}
	return files, tagLines, digestLines
}

// since is the generation manifest d appeared in, as meta records it (0 if it does not).
func since(meta *layout.Meta, d layout.Digest) uint64 {
	if b := meta.Blobs[d]; b != nil {
		return b.Since
	}
	return 0
}

// TagFiles returns the phase-2 tag files of a publication of meta.
func TagFiles(meta *layout.Meta) Tags {
	t := Tags{Repos: map[string]map[string]layout.SharedEntry{}}
	var refs []string
	var digestRefs []digestRef
	for _, name := range sortedNames(meta) {
		files, tagLines, digestLines := repoTags(meta, name, meta.Repositories[name])
		refs = append(refs, tagLines...)
		digestRefs = append(digestRefs, digestLines...)
		if files != nil {
			t.Repos[name] = files
		}
	}
	sort.Strings(refs)
	slices.SortFunc(digestRefs, compareRefs)
	var b bytes.Buffer
	b.WriteString(refsHeader)
	for _, r := range refs {
		b.WriteString(r)
		b.WriteByte('\n')
	}
	for _, r := range digestRefs {
		b.WriteString(r.line)
		b.WriteByte('\n')
	}
	t.RefsMap = b.Bytes()
	return t
}

// WriteTags stores the phase-2 tag files of a publication of meta in tree's shared
// directory (the repositories' v2-tags entries, the directories of v2/ and refs.map new
// since the last publish, all reused when unchanged, and a v2/ root linking them) and returns
// the v2/ root to link as the publication's PubDir and the shared entries it reaches
// (layout.Publication.Links and Uses).
//
// change, when not nil, is the change from the live publication's metadata to meta's (Diff,
// the tree settled at that publication: Write's change): then only the changed repositories'
// v2-tags entries and the directories on their paths are made, from the live publication's
// (whatever they keep of it is a hard link of the live entry: SharedEntry.Same), the other
// directories are those the live publication links, refs.map is the live one with the
// changed lines replaced and the uses the live ones with the replaced entries swapped
// (writeChange). Whenever the live publication cannot vouch for that (it is not there, not of
// this shape, a directory or file not as its name says), everything is rendered from meta,
// as without a change. Either way the entries written and their bytes are the same.
// WriteTags writes nothing Write reads or writes (below Dir): the two may run side by side.
func WriteTags(tree *layout.Tree, meta *layout.Meta, change *Change) (root string, uses []string, err error) {
	if change != nil {
		if l, ok := readLive(tree, meta, change); ok {
			root, uses, ok, err := writeChange(tree, meta, change, l)
			if err != nil || ok {
				return root, uses, err
			}
		}
	}
	t := TagFiles(meta)
	repos := map[string]repoEntry{}
	for name, files := range t.Repos {
		dir, err := writeRepo(tree, name, files)
		if err != nil {
			return "", nil, err
		}
		uses = append(uses, dir)
		repos[name] = repoEntry{dir, len(files) > 1}
	}
	refs, err := tree.WriteSharedFile(RefsKind, meta.Generation, t.RefsMap)
	if err != nil {
		return "", nil, err
	}
	entries, dirs, err := writeDirs(tree, repos)
	if err != nil {
		return "", nil, err
	}
	uses = append(append(uses, dirs...), refs)
	entries[BaseFile] = layout.SharedEntry{Data: []byte(baseJSON)}
	entries[RefsMapFile] = layout.SharedEntry{Link: refs}
	if err := syncKinds(tree); err != nil {
		return "", nil, err
	}
	if root, err = tree.WriteSharedDir(RootKind, entries); err != nil {
		return "", nil, err
	}
	return root, uses, nil
}

// syncKinds makes durable the renames of the v2-tags and v2-dir entries written without
// (writeRepo, writeDirs, writeChange), once, before the root entry that links to them is
// written: each kind's directory fsynced, side by side (layout.SyncDirs), instead of once
// per entry.
func syncKinds(tree *layout.Tree) error {
	var dirs []string
	for _, kind := range []string{RepoKind, DirKind} {
		dir := tree.Path(path.Join(layout.SharedDir, kind))
		if _, err := os.Lstat(dir); errors.Is(err, fs.ErrNotExist) {
			continue // a kind none was written of
		}
		dirs = append(dirs, dir)
	}
	if err := layout.SyncDirs(dirs); err != nil {
		return fmt.Errorf("writing the phase-2 tag files: %w", err)
	}
	return nil
}

// baseJSON is _base.json, the answer to GET /v2/.
const baseJSON = "{}"

// writeRepo stores repository name's tag files (repoTags) as its v2-tags entry, its rename
// not yet durable (syncKinds).
func writeRepo(tree *layout.Tree, name string, files map[string]layout.SharedEntry) (string, error) {
	dir, err := tree.WriteSharedDirNoDirSync(RepoKind, files)
	if err != nil {
		return "", fmt.Errorf("writing the tag files of %s: %w", name, err)
	}
	return dir, nil
}

// DigestFiles returns the shared digest markers of meta: tree-relative slash path → content.
func DigestFiles(meta *layout.Meta) map[string][]byte {
	files := map[string][]byte{}
	for _, name := range sortedNames(meta) {
		for _, d := range servedByDigest(meta.Repositories[name]) {
			if mk, ok := marker(meta, d); ok {
				files[path.Join(digestDir(name, d), mk)] = nil
			}
		}
	}
	return files
}

// digestDir is the directory of repository name's digest marker of manifest d, relative to
// the tree root.
func digestDir(name string, d layout.Digest) string {
	return path.Join(Dir, name, DigestsDir, d.Hex())
}

// Write brings the shared digest markers in line with meta: it adds those the tree lacks and
// removes what meta no longer needs under Dir (digest markers of manifests it lacks, the tag
// files trees kept there before publications existed, temporary files, directories left
// empty). Call it after the manifests are in blobs/ and before publishing meta, so the
// publication's file list describes Dir as it is.
//
// change, when not nil, is the change from the markers Dir holds to meta's (Diff of the
// metadata of the publication the tree is settled at, layout.Tree.Unsettle, and meta): only
// it is applied, and only the directories its removals may leave empty are removed, so the
// work grows with the change. Without it, one walk of Dir finds what is there; beyond it,
// the work grows with the change too: only missing markers are written, and only stale
// files and the directories they leave empty removed.
//
// The markers are empty files created in place and made durable together
// (layout.EmptyFiles), before Write returns: a publication never needs one that is not on
// disk. Without a change, the markers already there are synced too (a killed run may have
// created them without syncing).
func Write(tree *layout.Tree, meta *layout.Meta, change *Change) error {
	if change != nil {
		return apply(tree, *change)
	}
	want := DigestFiles(meta)
	have, dirs, err := scan(tree)
	if err != nil {
		return fmt.Errorf("removing stale phase-2 files: %w", err)
	}
	b := layout.NewEmptyFiles(tree.Dir())
	for rel := range want {
		if have[rel] {
			b.Keep(rel) // a killed run may have created it without syncing
			continue
		}
		if err := b.Create(rel); err != nil {
			return fmt.Errorf("writing phase-2 file: %w", err)
		}
	}
	if err := b.Sync(); err != nil {
		return fmt.Errorf("writing phase-2 file: %w", err)
	}
	return prune(tree, want, have, dirs)
}

// apply makes change to the digest markers of tree: the new markers written, the stale ones
// removed, then their directories up to Dir, deepest first, those left empty.
func apply(tree *layout.Tree, change Change) error {
	if err := layout.CreateEmptyFiles(tree.Dir(), change.Add); err != nil {
		return fmt.Errorf("writing phase-2 file: %w", err)
	}
	dirs := map[string]bool{}
	for _, rel := range change.Remove {
		if err := os.Remove(tree.Path(rel)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("removing stale phase-2 files: %w", err)
		}
		for d := path.Dir(rel); d != Dir && d != "." && !dirs[d]; d = path.Dir(d) {
			dirs[d] = true
		}
	}
	l := slices.Collect(maps.Keys(dirs))
	sort.Slice(l, func(i, j int) bool { return len(l[i]) > len(l[j]) })
	for _, d := range l {
		_ = os.Remove(tree.Path(d)) // one that is not empty stays
	}
	return nil
}

// scan lists what lies under Dir: its files and links (tree-relative slash paths) and its
// directories below Dir itself.
func scan(tree *layout.Tree) (files map[string]bool, dirs []string, err error) {
	files = map[string]bool{}
	root := tree.Path(Dir)
	prefix := tree.Dir() + string(filepath.Separator)
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		rel, ok := strings.CutPrefix(p, prefix)
		if !ok {
			return fmt.Errorf("%s is not below %s", p, tree.Dir())
		}
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			if rel != Dir {
				dirs = append(dirs, rel)
			}
			return nil
		}
		files[rel] = true
		return nil
	})
	return files, dirs, err
}

// prune removes the files under Dir (have) that are not in want, then the directories
// (dirs) left without any wanted file below them. Temporary files go too: Write runs under
// the generator's lock on the tree, so any here are left over from a run that was killed.
func prune(tree *layout.Tree, want map[string][]byte, have map[string]bool, dirs []string) error {
	// The directories that hold a wanted file stay; no system call is spent on them.
	keep := map[string]bool{}
	for rel := range want {
		for d := path.Dir(rel); d != Dir && d != "." && !keep[d]; d = path.Dir(d) {
			keep[d] = true
		}
	}
	for rel := range have {
		if _, ok := want[rel]; ok && !strings.HasPrefix(path.Base(rel), layout.TempPrefix) {
			continue
		}
		if err := os.Remove(tree.Path(rel)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("removing stale phase-2 files: %w", err)
		}
	}
	// Deepest first; a directory that is not empty (something not listed) stays.
	sort.Slice(dirs, func(i, j int) bool { return len(dirs[i]) > len(dirs[j]) })
	for _, d := range dirs {
		if !keep[d] {
			_ = os.Remove(tree.Path(d))
		}
	}
	return nil
}
