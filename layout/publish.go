package layout

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"golang.org/x/sync/errgroup"
)

// Publications kept besides the live one: the newest PubKeep, and every one created within
// PubKeepFor. A mirror syncing never needs an older one (deploy/mirror-sync pins the live one
// it copies and starts over if the source pruned it), but a redirector or web server on the
// source host may still be answering from the previous one for a moment.
const (
	PubKeep    = 4
	PubKeepFor = time.Hour
)

// annotationRefName names a tag in index.json.
const annotationRefName = "org.opencontainers.image.ref.name"

// Publication is what a publish puts into its publication directory besides the stamp and
// index.json, which Publish writes itself. Paths are slash paths relative to the
// publication's directory; directories are created as needed.
type Publication struct {
	// Files are small files of the publication, written into it.
	Files map[string][]byte
	// Shared are the large files of the publication, each stored once as a shared file of its
	// own kind (its path: WriteSharedFile) and linked from the publication, so that an
	// unchanged one is reused and a changed one is a new name rsync can delta-transfer
	// against the previous version.
	Shared map[string][]byte
	// SubsetFilters: the publication has the subsets' filter files (Meta.SubsetFilters),
	// stored like Shared. The publish renders them, from the live publication's when it knows
	// the change since (publicationFiles).
	SubsetFilters bool
	// Links are symbolic links of the publication to shared entries the caller wrote
	// (WriteSharedDir; the phase-2 tag files), by tree-relative target.
	Links map[string]string
	// Uses are the shared entries (tree-relative) the publication reaches through Links
	// without linking them itself: listed in its SharedUses file, so that they are kept
	// while it is.
	Uses []string
	// Prepare, when not nil, writes shared entries the publication links (the phase-2 tag
	// files: WriteSharedDir, WriteSharedFile, of kinds the publish itself does not write)
	// and returns more Links and Uses. It runs on a goroutine of its own while the metadata
	// is written and the publication's files are rendered and stored (after the temporary
	// files an interrupted publish left are removed, before the uses file is), which need
	// nothing of it: the two share the machine's cores and disk waits. Its error fails the
	// publish; the publish returns only once it has returned.
	Prepare func() (links map[string]string, uses []string, err error)
	// RootLinks are more names at the tree root that point at the same name in the live
	// publication (the quick-fedora-mirror file list), like index.json.
	RootLinks []string
	// Finish, when not nil, is called last, before the publication is renamed into place,
	// with the OS path of the publication's temporary directory (everything else written),
	// the publication's final name, and the tree-relative path each file it may return will
	// be stored at (SharedSeqPath; its directory made when asked): it returns more files of
	// the publication (the file list, which describes the rest and names itself), stored
	// there and linked like Shared. A file returned nil Finish stored there itself, whole and
	// synced (WriteFileFunc), as large files are best written as they are made.
	Finish func(tmpDir, name string, sharedPath func(rel string) string) (map[string][]byte, error)
	// Rendered, when not nil, is called once index.json and the filters are rendered, from
	// where the publish mostly waits for the file system (the files stored and synced,
	// Prepare): work for Finish that needs no file of the publication may start then.
	Rendered func()
}

// indexDescriptor is one entry of index.json, as encoding/json would render it (the tests
// compare IndexJSON with it).
type indexDescriptor struct {
	MediaType    string            `json:"mediaType"`
	Digest       string            `json:"digest"`
	Size         int64             `json:"size"`
	ArtifactType string            `json:"artifactType,omitempty"`
	Annotations  map[string]string `json:"annotations"`
}

// indexEntry is one tag of index.json: its annotation ("<repository>:<tag>"), manifest and
// digest.
type indexEntry struct {
	ref string
	d   Digest
	mf  *Manifest
}

// IndexJSON is the OCI layout index of m: one descriptor per tag, annotated with
// "<repository>:<tag>", sorted by it. A tag whose manifest m lacks is left out (Verify
// reports it). The bytes are encoding/json's MarshalIndent (prefix "", indent " ") of
// {schemaVersion, mediaType, manifests: [indexDescriptor...]} and a newline, rendered
// directly: a descriptor's artifactType is read from its manifest only when the manifest's
// bytes may hold the member (manifestArtifactType).
func IndexJSON(m *Meta) ([]byte, error) {
	n := 0
	for _, repo := range m.Repositories {
		n += len(repo.Tags)
	}
	entries := make([]indexEntry, 0, n)
	for name, repo := range m.Repositories {
		for tag, d := range repo.Tags {
			if mf := m.Manifests[d]; mf != nil {
				entries = append(entries, indexEntry{name + ":" + tag, d, mf})
			}
		}
	}
	slices.SortFunc(entries, func(a, b indexEntry) int { return strings.Compare(a.ref, b.ref) })
	size := len(indexHead) + len(indexTail)
	for _, e := range entries {
		size += indexEntrySize + len(e.ref) + len(e.d.s) + len(e.mf.MediaType)
	}
	b := append(make([]byte, 0, size), indexHead...)
	for i, e := range entries {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendIndexEntry(b, e)
	}
	return appendIndexTail(b, len(entries)), nil
}

// index.json around its descriptors: MarshalIndent's.
const (
	indexHead      = "{\n \"schemaVersion\": 2,\n \"mediaType\": \"" + MediaTypeOCIIndex + "\",\n \"manifests\": ["
	indexTail      = "\n ]\n}\n"
	indexEmptyTail = "]\n}\n"
)

// appendIndexTail ends index.json of n descriptors.
func appendIndexTail(b []byte, n int) []byte {
	if n == 0 {
		return append(b, indexEmptyTail...)
	}
	return append(b, indexTail...)
}

// appendIndexEntry appends e's descriptor, from the newline before its "{" to its "}".
func appendIndexEntry(b []byte, e indexEntry) []byte {
	b = append(b, "\n  {\n   \"mediaType\": "...)
	b = appendJSONString(b, e.mf.MediaType)
	b = append(b, ",\n   \"digest\": "...)
	b = appendJSONString(b, e.d.s)
	b = append(b, ",\n   \"size\": "...)
	b = strconv.AppendInt(b, int64(len(e.mf.Data)), 10)
	if at := manifestArtifactType(e.mf.Data); at != "" {
		b = append(b, ",\n   \"artifactType\": "...)
		b = appendJSONString(b, at)
	}
	b = append(b, ",\n   \"annotations\": {\n    \""+annotationRefName+"\": "...)
	b = appendJSONString(b, e.ref)
	return append(b, "\n   }\n  }"...)
}

// indexEntrySize is what IndexJSON reserves a descriptor of index.json besides its strings'
// contents: the descriptor with room for a 20-digit size, without an artifact type.
const indexEntrySize = len("\n  {\n   \"mediaType\": \"\",\n   \"digest\": \"\",\n   \"size\": 12345678901234567890,\n   \"annotations\": {\n    \"" + annotationRefName + "\": \"\"\n   }\n  },")

// manifestArtifactType is the top-level artifactType member of a manifest's JSON, as
// encoding/json's Unmarshal reads it (names matched without regard to case, the last one
// winning, "" for invalid JSON or a value that is not a string). Bytes that cannot hold the
// member under any spelling (no "artifacttype" in any ASCII case, no escape, no byte
// outside ASCII, which a name may fold from) are not decoded: most manifests.
func manifestArtifactType(data []byte) string {
	if !mayHoldName(data, "artifacttype") {
		return ""
	}
	var at struct {
		ArtifactType string `json:"artifactType"`
	}
	_ = json.Unmarshal(data, &at)
	return at.ArtifactType
}

// mayHoldName reports whether JSON data may hold a member named lower (lower-case ASCII
// letters) as encoding/json matches names: lower in any ASCII case, or any escape or
// non-ASCII byte (a name may spell a letter as \u0061 or fold from K, the Kelvin sign).
func mayHoldName(data []byte, lower string) bool {
	first := lower[0]
	for i, c := range data {
		switch {
		case c >= utf8.RuneSelf || c == '\\':
			return true
		case c|0x20 == first && len(data)-i >= len(lower) && equalFoldASCII(data[i:i+len(lower)], lower):
			return true
		}
	}
	return false
}

// equalFoldASCII reports whether b is lower (lower-case ASCII letters) in any ASCII case.
func equalFoldASCII(b []byte, lower string) bool {
	for i := range len(lower) {
		if b[i]|0x20 != lower[i] {
			return false
		}
	}
	return true
}

// appendJSONString appends s as encoding/json's Marshal renders a string: quoted, with the
// HTML characters, control characters, U+2028 and U+2029 escaped and invalid UTF-8 replaced.
// Strings of printable ASCII needing none of that (names, digests, media types) are copied.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= utf8.RuneSelf || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s) // a string always marshals
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// Publish publishes m with nothing but the stamp and index.json in its publication: see
// PublishWith.
func (t *Tree) Publish(m *Meta) (Stamp, error) { return t.PublishWith(m, Publication{}) }

// PublishWith is the publish sequence, the only one: it writes m as a metadata file, then a
// new publication directory regmirror/pub/<name>/ (built under a temporary name: the stamp,
// p.Files, links to index.json, p.Shared, the subsets' filters and p.Links (shared entries:
// SharedDir), the list of p.Uses, then p.Finish's shared files; everything fsynced, then
// renamed into place; index.json and the filters spliced from the live publication's when
// the metadata's change since it is known: publicationFiles; their writes take the pages of
// the large shared files the live publication superseded, given back first: releaseSuperseded), then
// switches regmirror/live to it by renaming a new symbolic link over the old one: the last
// write, and the one step in which everything a reader sees through live (the stamp,
// index.json, tags, tag lists, the file list) changes together. Until that rename readers see
// the previous publication. After it, a tree that still has a regular index.json or
// regmirror/current (written before publications existed) gets its constant links, and
// publications, and the shared entries and metadata files they alone needed, are removed once
// no longer needed. The caller holds the tree's lock.
func (t *Tree) PublishWith(m *Meta, p Publication) (Stamp, error) {
	links := map[string]string{IndexFile: RootLinkTarget(IndexFile), CurrentFile: CurrentLinkTarget}
	for _, n := range p.RootLinks {
		if n == "" || strings.Contains(n, "/") || strings.HasPrefix(n, ".") {
			return Stamp{}, fmt.Errorf("publishing: %q cannot be a root link", n)
		}
		links[n] = RootLinkTarget(n)
	}
	if err := t.removeStalePub(); err != nil {
		return Stamp{}, err
	}
	// The page cache of the files the live publication superseded (those of the one live
	// before it that it does not reach) is given back while the metadata is compared, before
	// the writes that take its pages.
	released := make(chan struct{})
	go func() {
		defer close(released)
		t.releaseSuperseded()
	}()
	defer func() { <-released }() // whatever the publish returns, the release has returned too
	m.Format = FormatVersion
	prepared := prepare(p.Prepare)
	defer prepared() // whatever the publish returns, Prepare has returned too
	// The metadata is written while index.json and the filters are made and stored: they
	// need its change, which startMeta returns first, not its files; the stamp needs both.
	change, metaWritten := t.startMeta(m)
	defer metaWritten() // whatever the publish returns, the metadata's writer has returned too
	idx, filters, release, err := t.publicationFiles(m, change, p.SubsetFilters)
	if err != nil {
		return Stamp{}, err
	}
	defer release() // the files may be the live publication's, mapped
	if p.Rendered != nil {
		p.Rendered()
	}
	<-released
	contents, err := t.pubContents(m.Generation, idx, filters, p, prepared)
	if err != nil {
		return Stamp{}, fmt.Errorf("publishing: %w", err)
	}
	d, needs, err := metaWritten()
	if err != nil {
		return Stamp{}, err
	}
	s := Stamp{Format: FormatVersion, Generation: m.Generation, Meta: metaRef(d), Created: time.Now().UTC(), MetaFiles: strings.Join(needs, " ")}
	sb, err := json.Marshal(s)
	if err != nil {
		return Stamp{}, err
	}
	sb = append(sb, '\n')
	name := fmt.Sprintf("%d-%s", m.Generation, DigestOf("sha256", sb).Hex()[:16])
	contents.files[PubStamp] = sb
	tmp := t.Path(PubDir + "/" + TempPrefix + name)
	if err := t.writePub(tmp, name, m.Generation, contents, p.Finish); err != nil {
		os.RemoveAll(tmp)
		return Stamp{}, fmt.Errorf("publishing: %w", err)
	}
	if err := os.Rename(tmp, t.Path(PubPath(name))); err != nil {
		os.RemoveAll(tmp)
		return Stamp{}, fmt.Errorf("publishing: %w", err)
	}
	if err := SyncDir(t.Path(PubDir)); err != nil {
		return Stamp{}, fmt.Errorf("publishing: %w", err)
	}
	// A fresh tree gets its constant links before live exists (they dangle: no generation
	// yet), so that a crash between the two cannot leave live without them.
	for rel, target := range links {
		if _, err := os.Lstat(t.Path(rel)); errors.Is(err, fs.ErrNotExist) {
			if err := replaceSymlink(t.Path(rel), target); err != nil {
				return Stamp{}, fmt.Errorf("publishing: %w", err)
			}
		}
	}
	if err := replaceSymlink(t.Path(LiveLink), LiveTarget(name)); err != nil {
		return Stamp{}, fmt.Errorf("switching generation: %w", err)
	}
	// A tree written before publications existed gets its constant links now, each replacing
	// its regular file atomically.
	for rel, target := range links {
		if got, err := os.Readlink(t.Path(rel)); err == nil && got == target {
			continue
		}
		if err := replaceSymlink(t.Path(rel), target); err != nil {
			return s, fmt.Errorf("switching generation: %w", err)
		}
	}
	t.pruneShared(t.prunePub(name))
	t.pruneMeta()
	return s, nil
}

// prepare starts f (Publication.Prepare) on a goroutine of its own and returns what waits for
// it and returns what it returned (nothing for a nil f); it may be called again.
func prepare(f func() (map[string]string, []string, error)) func() (map[string]string, []string, error) {
	if f == nil {
		return func() (map[string]string, []string, error) { return nil, nil, nil }
	}
	var (
		links map[string]string
		uses  []string
		err   error
	)
	done := make(chan struct{})
	go func() {
		defer close(done)
		links, uses, err = f()
	}()
	return func() (map[string]string, []string, error) {
		<-done
		return links, uses, err
	}
}

// pubContents are a publication's files and links (publication path → tree-relative target)
// before Finish: p.Files as files, and the stamp's place among them (PubStamp, nil: the
// caller puts the stamp there once the metadata it names is written); index.json (idx), the
// filters, p.Shared and the list of p.Uses stored as shared files (WriteSharedFile) and
// linked, with p.Links; and the Links and Uses prepared returns (Publication.Prepare), waited
// for once the shared files named before the uses file are stored.
func (t *Tree) pubContents(generation uint64, idx Pieces, filters map[string]Pieces, p Publication, prepared func() (map[string]string, []string, error)) (pubEntries, error) {
	c := pubEntries{files: map[string][]byte{PubStamp: nil}, links: map[string]string{}} // the stamp's place: the caller fills it
	shared := map[string]Pieces{PubIndex: idx}
	for rel, data := range filters {
		shared[rel] = data
	}
	for rel, data := range piecesOf(p.Shared) {
		if _, dup := shared[rel]; dup {
			return pubEntries{}, fmt.Errorf("%q cannot be a publication's file", rel)
		}
		shared[rel] = data
	}
	uses := make([]string, 0, len(p.Uses))
	use := func(l []string) error {
		for _, u := range l {
			e, ok := t.sharedEntryOf(u)
			if !ok || e != u {
				return fmt.Errorf("%q is not a shared entry", u)
			}
			uses = append(uses, strings.TrimPrefix(u, MetaDir+"/"))
		}
		return nil
	}
	link := func(l map[string]string) error {
		for rel, target := range l {
			if _, ok := t.sharedEntryOf(target); !ok {
				return fmt.Errorf("%q cannot link to %q, not a shared entry", rel, target)
			}
			if _, dup := c.links[rel]; dup {
				return fmt.Errorf("%q cannot be a publication's file", rel)
			}
			c.links[rel] = target
		}
		return nil
	}
	if err := use(p.Uses); err != nil {
		return pubEntries{}, err
	}
	if err := link(p.Links); err != nil {
		return pubEntries{}, err
	}
	for rel, data := range p.Files {
		if _, dup := c.files[rel]; dup {
			return pubEntries{}, fmt.Errorf("%q cannot be a publication's file", rel)
		}
		c.files[rel] = data
	}
	// Files with the same bytes (the filters of the architectures the tree has no image of)
	// are stored once, as the first by path. Pieces given for several paths (subsets sharing
	// a file share them) are hashed once. The files (index.json, the filters: tens of
	// megabytes at scale) are hashed and written side by side: each is its own file, and
	// writing one waits mostly for the file system.
	stored := map[Digest]string{}
	sums := map[*[]byte]*Digest{} // by pieces' first run, over both stores; each digest read only after the Wait that fills it
	store := func(rels []string) error {
		digests := make([]*Digest, len(rels))
		var g errgroup.Group
		g.SetLimit(sharedWriters)
		for i, rel := range rels {
			data := shared[rel]
			if d, ok := sums[&data[0]]; ok {
				digests[i] = d
				continue
			}
			d := new(Digest)
			sums[&data[0]], digests[i] = d, d
			g.Go(func() error { *d = data.digest(); return nil })
		}
		_ = g.Wait()
		first := map[Digest]int{} // the first path of each new file
		for i := range rels {
			if _, ok := stored[*digests[i]]; !ok {
				if _, ok := first[*digests[i]]; !ok {
					first[*digests[i]] = i
				}
			}
		}
		targets := make([]string, len(rels))
		for _, i := range first {
			g.Go(func() (err error) {
				targets[i], err = t.writeSharedFile(rels[i], generation, shared[rels[i]], *digests[i])
				return err
			})
		}
		if err := g.Wait(); err != nil {
			return err
		}
		for d, i := range first {
			stored[d] = targets[i]
		}
		for i, rel := range rels {
			c.links[rel] = stored[*digests[i]]
		}
		return nil
	}
	// The shared files named before the uses file are stored while Prepare runs; the uses
	// file, which lists what it wrote, and those after it once it is done.
	rels := slices.Sorted(maps.Keys(shared))
	before := 0
	for before < len(rels) && rels[before] < SharedUses {
		before++
	}
	if err := store(rels[:before]); err != nil {
		return pubEntries{}, err
	}
	links, more, err := prepared()
	if err != nil {
		return pubEntries{}, err
	}
	if err := use(more); err != nil {
		return pubEntries{}, err
	}
	if err := link(links); err != nil {
		return pubEntries{}, err
	}
	sort.Strings(uses)
	if len(uses) > 0 {
		shared[SharedUses] = Pieces{[]byte(strings.Join(uses, "\n") + "\n")}
	}
	rels = slices.Sorted(maps.Keys(shared))
	if err := store(rels[before:]); err != nil {
		return pubEntries{}, err
	}
	return c, c.check()
}

// sharedWriters is how many of a publication's shared files pubContents hashes or writes at
// once.
const sharedWriters = 4

// pubEntries are a publication's files and links, by publication path.
type pubEntries struct {
	files map[string][]byte
	links map[string]string // tree-relative targets
}

// check refuses a publication path that is not a plain relative path, is temporary or is
// given twice.
func (c pubEntries) check() error {
	seen := map[string]bool{}
	for _, m := range []map[string]bool{keysOf(c.files), keysOf(c.links)} {
		for rel := range m {
			if seen[rel] || !fs.ValidPath(rel) || rel == "." || strings.HasPrefix(path.Base(rel), TempPrefix) {
				return fmt.Errorf("%q cannot be a publication's file", rel)
			}
			seen[rel] = true
		}
	}
	return nil
}

func keysOf[V any](m map[string]V) map[string]bool {
	k := make(map[string]bool, len(m))
	for n := range m {
		k[n] = true
	}
	return k
}

// writePub writes publication name's contents into the directory tmp (which must not exist),
// then finish's shared files and their links; everything fsynced.
func (t *Tree) writePub(tmp, name string, generation uint64, c pubEntries, finish func(string, string, func(string) string) (map[string][]byte, error)) error {
	final := PubPath(name)
	links := map[string]string{}
	for rel, target := range c.links {
		links[rel] = RelLink(path.Join(final, rel), target)
	}
	if err := writeTree(tmp, c.files, links, nil); err != nil {
		return err
	}
	if finish == nil {
		t.resetShared() // no file list: none to follow
		return nil
	}
	// Each file finish may return is stored in a directory made before it renders: the file
	// list reads the times of the directories above it as they are, not as they will be.
	paths := map[string]string{}
	var mkErr error
	sharedPath := func(rel string) string {
		if _, ok := paths[rel]; !ok {
			paths[rel] = t.SharedSeqPath(rel, generation)
			if err := MkdirAllSynced(t.Path(path.Dir(paths[rel]))); err != nil && mkErr == nil {
				mkErr = err
			}
		}
		return paths[rel]
	}
	more, err := finish(tmp, name, sharedPath)
	if err == nil {
		err = mkErr
	}
	if err != nil {
		return err
	}
	// The file list is rendered: what changes under SharedDir from here on, the next one
	// must read again (SharedChanged, Settle).
	t.resetShared()
	for rel, data := range more {
		if _, dup := c.files[rel]; dup || c.links[rel] != "" || !fs.ValidPath(rel) || strings.Contains(rel, "/") || strings.HasPrefix(rel, ".") {
			return fmt.Errorf("%q cannot be a publication's file", rel)
		}
		target := sharedPath(rel)
		t.noteShared(target)
		if data == nil { // stored by finish
			if fi, err := os.Lstat(t.Path(target)); err != nil || !fi.Mode().IsRegular() {
				return fmt.Errorf("%q: Finish stored no file at %s (%v)", rel, target, err)
			}
		} else if err := WriteFile(t.Path(target), data); err != nil {
			return err
		}
		if err := os.Symlink(RelLink(path.Join(final, rel), target), filepath.Join(tmp, rel)); err != nil {
			return err
		}
	}
	return SyncDir(tmp)
}

// writeTree writes files and symbolic links (to the given targets) below dir (which must not
// exist), fsyncing every file and directory; dir's own entry in its parent is the caller's to
// make durable (each renames dir into place, then fsyncs the parent). An entry of files or links that same names is
// made a hard link of the existing file or link same gives (an OS path: one with exactly that
// content, already durable), which costs no new inode; where the link cannot be made (another
// filesystem, too many links, a system without hard links to symbolic links) it is written.
func writeTree(dir string, files map[string][]byte, links map[string]string, same map[string]string) error {
	dirs := map[string]bool{dir: true}
	// dir's parent may be new (regmirror/pub at the first publish): its entry is made
	// durable; dir's own, the caller's.
	if err := MkdirAllSynced(filepath.Dir(dir)); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	mkdir := func(rel string) (string, error) {
		p := filepath.Join(dir, filepath.FromSlash(rel))
		if dirs[filepath.Dir(p)] {
			return p, nil // made already
		}
		for d := filepath.Dir(p); !dirs[d]; d = filepath.Dir(d) {
			dirs[d] = true
		}
		return p, os.MkdirAll(filepath.Dir(p), 0o755)
	}
	linked := func(rel, p string, symlink bool) bool {
		from, ok := same[rel]
		if !ok || os.Link(from, p) != nil {
			return false
		}
		if runtime.GOOS == "linux" {
			return true // link(2) links a symbolic link itself there, never its target
		}
		if fi, err := os.Lstat(p); err == nil && (fi.Mode()&fs.ModeSymlink != 0) == symlink {
			return true
		}
		os.Remove(p) // a system whose link(2) followed the symbolic link: written below
		return false
	}
	for rel, data := range files {
		p, err := mkdir(rel)
		if err != nil {
			return err
		}
		if linked(rel, p, false) {
			continue
		}
		f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if err != nil {
			return err
		}
		_, err = f.Write(data)
		if err == nil {
			err = f.Sync()
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("writing %s: %w", rel, err)
		}
	}
	for rel, target := range links {
		p, err := mkdir(rel)
		if err != nil {
			return err
		}
		if linked(rel, p, true) {
			continue
		}
		if err := os.Symlink(target, p); err != nil {
			return err
		}
	}
	return SyncDirs(slices.Collect(maps.Keys(dirs)))
}

// replaceSymlink points the symbolic link at p to target: a new link under a temporary name,
// renamed over whatever p is (a regular file or the old link), then the directory fsynced.
func replaceSymlink(p, target string) error {
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	tmp := filepath.Join(filepath.Dir(p), TempPrefix+filepath.Base(p)+"-"+hex.EncodeToString(rnd[:]))
	if err := os.Symlink(target, tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, p); err != nil {
		os.Remove(tmp)
		return err
	}
	return SyncDir(filepath.Dir(p))
}

// removeStalePub removes what an interrupted publish left: temporary publication directories
// and temporary links.
func (t *Tree) removeStalePub() error {
	if err := t.removeStaleShared(); err != nil {
		return err
	}
	for _, dir := range []string{"", MetaDir, PubDir} {
		ents, err := os.ReadDir(t.Path(dir))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("cleaning temporary files: %w", err)
		}
		for _, e := range ents {
			if !strings.HasPrefix(e.Name(), TempPrefix) || (dir != PubDir && e.Type()&fs.ModeSymlink == 0) {
				continue
			}
			if err := os.RemoveAll(t.Path(path.Join(dir, e.Name()))); err != nil {
				return fmt.Errorf("cleaning temporary files: %w", err)
			}
		}
	}
	return nil
}

// Publications lists the names of the tree's publication directories, newest first (by their
// stamps' creation time; unreadable ones last).
func (t *Tree) Publications() ([]string, error) {
	ents, err := os.ReadDir(t.Path(PubDir))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listing publications: %w", err)
	}
	type pub struct {
		name    string
		created time.Time
	}
	var pubs []pub
	for _, e := range ents {
		if !e.IsDir() || strings.HasPrefix(e.Name(), TempPrefix) {
			continue
		}
		var created time.Time
		if b, err := os.ReadFile(t.Path(path.Join(PubPath(e.Name()), PubStamp))); err == nil {
			if s, err := ParseStamp(b); err == nil {
				created = s.Created
			}
		}
		pubs = append(pubs, pub{e.Name(), created})
	}
	sort.SliceStable(pubs, func(i, j int) bool { return pubs[i].created.After(pubs[j].created) })
	names := make([]string, len(pubs))
	for i, p := range pubs {
		names[i] = p.name
	}
	return names, nil
}

// prunePub removes the publications beyond the newest PubKeep besides live that are older
// than PubKeepFor. Failures are left for the next publish. It returns the shared entries each
// removed publication reached (pubShared; nil for one that could not be read), for
// pruneShared.
func (t *Tree) prunePub(live string) []map[string]bool {
	names, err := t.Publications()
	if err != nil {
		return nil
	}
	kept := 0
	var gone []map[string]bool
	for _, n := range names {
		if n == live {
			continue
		}
		if kept < PubKeep {
			kept++
			continue
		}
		b, err := os.ReadFile(t.Path(path.Join(PubPath(n), PubStamp)))
		if err == nil {
			if s, err := ParseStamp(b); err == nil && time.Since(s.Created) < PubKeepFor {
				continue
			}
		}
		used, err := t.pubShared(n)
		if err != nil {
			used = nil
		}
		if os.RemoveAll(t.Path(PubPath(n))) == nil {
			gone = append(gone, used)
		}
	}
	if len(gone) > 0 {
		_ = SyncDir(t.Path(PubDir))
	}
	return gone
}

// LivePublication is the name of the publication regmirror/live points at.
func (t *Tree) LivePublication() (string, error) {
	target, err := os.Readlink(t.Path(LiveLink))
	if err != nil {
		return "", fmt.Errorf("reading %s: %w", LiveLink, err)
	}
	name, ok := strings.CutPrefix(target, "pub/")
	if !ok || name == "" || strings.Contains(name, "/") {
		return "", fmt.Errorf("%s points at %q, want pub/<name>", LiveLink, target)
	}
	return name, nil
}
