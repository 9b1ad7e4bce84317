package layout

// The publication's whole-tree files (index.json, the subsets' filters) follow the change:
// when the publish knows what its content changed since the live generation's (writeMeta's
// diff), the new files are the live publication's with the changed lines taken out and put
// in, the others copied as they are. The bytes are those of the full renderers (IndexJSON,
// SubsetFilters) whenever the live files are theirs of the live generation's content; what
// cannot be vouched for is rendered whole.

import (
	"bytes"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// publicationFiles returns m's index.json and, when filters, its subsets' filter files
// (SubsetFilters), spliced from the live publication's when change is known (see livePub),
// else rendered whole.
//
// The files may be the live ones' bytes, mapped: call release once done with them.
func (t *Tree) publicationFiles(m *Meta, change *contentChange, filters bool) (idx Pieces, files map[string]Pieces, release func(), err error) {
	live := t.livePub(change)
	defer func() {
		if err != nil {
			live.release()
		}
	}()
	ok := false
	if old, found := live.file(PubIndex); found {
		idx, ok = spliceIndexJSON(old, live.change, m)
	}
	if !ok {
		b, err := IndexJSON(m)
		if err != nil {
			return nil, nil, nil, err
		}
		idx = Pieces{b}
	}
	if !filters {
		return idx, nil, live.release, nil
	}
	ok = false
	if live != nil {
		files, ok = spliceSubsetFilters(live.file, live.change, m)
	}
	if !ok {
		files = piecesOf(m.SubsetFilters())
	}
	return idx, files, live.release, nil
}

// livePub is the live publication as a splice reads it: the change of the content since the
// content its files were rendered from, and its shared files, read once each.
type livePub struct {
	t      *Tree
	dir    string // tree-relative
	change *contentChange
	read   map[string][]byte // by tree-relative path, mapped (MapFile)
	unmaps []func()
}

// release unmaps the files lp read: nothing made of them may be used after it.
func (lp *livePub) release() {
	if lp == nil {
		return
	}
	for _, unmap := range lp.unmaps {
		unmap()
	}
	lp.read, lp.unmaps = nil, nil
}

// livePub returns the live publication whose files change follows: the one whose stamp
// names the metadata change was diffed against. Only a format 3 generation has a change, and
// every regmirror writing format 3 orders the filters as SubsetFilters does (by Since, then
// path). Nil without a change or when the live publication is another.
func (t *Tree) livePub(change *contentChange) *livePub {
	if change == nil {
		return nil
	}
	name, err := t.LivePublication()
	if err != nil {
		return nil
	}
	dir := PubPath(name)
	b, err := os.ReadFile(t.Path(path.Join(dir, PubStamp)))
	if err != nil {
		return nil
	}
	if s, err := ParseStamp(b); err != nil || s.Meta != change.prev.root {
		return nil
	}
	return &livePub{t: t, dir: dir, change: change, read: map[string][]byte{}}
}

// file returns the bytes of the shared file the live publication links at rel, as a publish
// wrote them (they hash to the 16 hex digits of its name); false when it has none, or they do
// not.
func (lp *livePub) file(rel string) ([]byte, bool) {
	if lp == nil {
		return nil, false
	}
	link := path.Join(lp.dir, rel)
	target, err := os.Readlink(lp.t.Path(link))
	if err != nil || path.IsAbs(target) {
		return nil, false
	}
	p := path.Join(path.Dir(link), target)
	if b, ok := lp.read[p]; ok {
		return b, true
	}
	if e, ok := lp.t.sharedEntryOf(p); !ok || e != p {
		return nil, false
	}
	_, hex, _ := strings.Cut(path.Base(p), "-")
	b, unmap, err := MapFile(lp.t.Path(p))
	if err != nil {
		return nil, false
	}
	if !lp.t.holdsNamed(p, b, hex) {
		unmap()
		return nil, false
	}
	lp.read[p] = b
	lp.unmaps = append(lp.unmaps, unmap)
	return b, true
}

// spliceIndexJSON is IndexJSON(m) made from old, the live publication's, rendered from the
// content the change c is from: its descriptors of the tags c leaves alone copied, those of
// the changed tags rendered and merged in by their annotation. False, for IndexJSON to render
// it, when old is not IndexJSON's (descriptors as it renders them, strictly ordered, one per
// tag of that content), or a tag c leaves alone names a manifest c touched (changed in place,
// or dropped).
func spliceIndexJSON(old []byte, c *contentChange, m *Meta) (Pieces, bool) {
	prev, tc := c.prev, c.touched
	// The changed tags: every tag of a repository replaced or dropped whole, and the tags
	// changed in the others; their descriptors as m gives them.
	changed := map[string]string{} // annotation → repository
	collision := false
	var entries []indexEntry
	tag := func(name, tag string) {
		ref := name + ":" + tag
		if n, ok := changed[ref]; ok {
			collision = collision || n != name
			return
		}
		changed[ref] = name
		if r := m.Repositories[name]; r != nil {
			if d, ok := r.Tags[tag]; ok && m.Manifests[d] != nil {
				entries = append(entries, indexEntry{ref, d, m.Manifests[d]})
			}
		}
	}
	for name := range tc.repos {
		for _, r := range []*Repository{prev.repos[name], m.Repositories[name]} {
			if r != nil {
				for t := range r.Tags {
					tag(name, t)
				}
			}
		}
	}
	for name, rt := range tc.repoParts {
		for t := range rt.tags {
			tag(name, t)
		}
	}
	if collision { // names no parser accepts: their order is the full render's to decide
		return nil, false
	}
	slices.SortFunc(entries, func(a, b indexEntry) int { return strings.Compare(a.ref, b.ref) })
	touchedManifests := make(map[string]bool, len(tc.manifests))
	for d := range tc.manifests {
		touchedManifests[d.s] = true
	}
	tags := 0
	for _, r := range prev.repos {
		tags += len(r.Tags)
	}

	rest, ok := bytes.CutPrefix(old, []byte(indexHead))
	if !ok {
		return nil, false
	}
	out := NewSplicer(old, len(entries)*(indexEntrySize+160))
	out.Keep(0, len(indexHead))
	n, j := 0, 0 // descriptors written, the next of entries
	// add writes e's descriptor; keep old's that starts at from and ends at to.
	add := func(e indexEntry) {
		out.Add(func(b []byte) []byte {
			if n > 0 {
				b = append(b, ',')
			}
			return appendIndexEntry(b, e)
		})
		n++
	}
	keep := func(from, to int) {
		switch {
		case n > 0 && old[from-1] == ',':
			from-- // its comma too: a run with the descriptor before, if kept
		case n > 0:
			out.Add(func(b []byte) []byte { return append(b, ',') })
		}
		out.Keep(from, to)
		n++
	}
	seen := 0
	var last []byte
	if !bytes.Equal(rest, []byte(indexEmptyTail)) {
		for {
			end, ref, digest, ok := parseIndexEntry(rest)
			if !ok || last != nil && bytes.Compare(ref, last) <= 0 {
				return nil, false
			}
			last = ref
			seen++
			for ; j < len(entries) && entries[j].ref < string(ref); j++ {
				add(entries[j])
			}
			if _, ok := changed[string(ref)]; !ok {
				if touchedManifests[string(digest)] {
					return nil, false
				}
				at := len(old) - len(rest)
				keep(at, at+end)
			}
			rest = rest[end:]
			if len(rest) > 0 && rest[0] == ',' {
				rest = rest[1:]
				continue
			}
			if !bytes.Equal(rest, []byte(indexTail)) {
				return nil, false
			}
			break
		}
	}
	// One descriptor a tag: no tag of the content it was rendered from lacked its manifest,
	// so none the change leaves alone gains one.
	if seen != tags {
		return nil, false
	}
	for ; j < len(entries); j++ {
		add(entries[j])
	}
	out.Add(func(b []byte) []byte { return appendIndexTail(b, n) })
	return out.Pieces(), true
}

// parseIndexEntry reads the descriptor at the start of b as appendIndexEntry renders it, with
// strings it copies (no byte it escapes) and a size without leading zeros: its length,
// annotation and digest.
func parseIndexEntry(b []byte) (end int, ref, digest []byte, ok bool) {
	i := 0
	lit := func(s string) bool {
		if len(b)-i < len(s) || string(b[i:i+len(s)]) != s {
			return false
		}
		i += len(s)
		return true
	}
	// str reads a string's contents and its closing quote.
	str := func() ([]byte, bool) {
		for j := i; j < len(b); j++ {
			switch c := b[j]; {
			case c == '"':
				s := b[i:j]
				i = j + 1
				return s, true
			case c < 0x20 || c >= utf8.RuneSelf || c == '\\' || c == '<' || c == '>' || c == '&':
				return nil, false
			}
		}
		return nil, false
	}
	if !lit("\n  {\n   \"mediaType\": \"") {
		return 0, nil, nil, false
	}
	if _, ok := str(); !ok || !lit(",\n   \"digest\": \"") {
		return 0, nil, nil, false
	}
	if digest, ok = str(); !ok || !lit(",\n   \"size\": ") {
		return 0, nil, nil, false
	}
	digits := i
	for i < len(b) && '0' <= b[i] && b[i] <= '9' {
		i++
	}
	if _, err := strconv.ParseInt(string(b[digits:i]), 10, 64); err != nil || i-digits > 1 && b[digits] == '0' || !lit(",\n   \"") {
		return 0, nil, nil, false
	}
	if lit("artifactType\": \"") {
		if at, ok := str(); !ok || len(at) == 0 || !lit(",\n   \"") {
			return 0, nil, nil, false
		}
	}
	if !lit("annotations\": {\n    \"" + annotationRefName + "\": \"") {
		return 0, nil, nil, false
	}
	if ref, ok = str(); !ok || !lit("\n   }\n  }") {
		return 0, nil, nil, false
	}
	return i, ref, digest, true
}

// spliceSubsetFilters is m.SubsetFilters() made from the live publication's filters (read
// by old, by publication path), rendered from the content the change c is from: each
// distinct file's lines of the blobs and orphans c leaves alone copied, the lines of those
// whose line it changed taken out where that content had them and put in where m has them
// (found by bisection: the lines are ordered by Since, then path). False, for SubsetFilters
// to render them, when the subset table changed, a blob is both a blob and an orphan, or a
// live filter cannot be read or is not SubsetFilters' (spliceFilter).
func spliceSubsetFilters(old func(rel string) ([]byte, bool), c *contentChange, m *Meta) (map[string]Pieces, bool) {
	if !slices.Equal(m.Subsets, c.prev.subsets) {
		return nil, false
	}
	prev, tc := c.prev, c.touched
	var changes []filterChange
	for i, set := range []map[Digest]bool{tc.blobs, tc.orphans} {
		for d := range set {
			if i == 1 && tc.blobs[d] {
				continue
			}
			fc := filterChange{d: d}
			var ok bool
			if fc.was, ok = recordLine(prev.blobs[d], prev.orphans[d]); !ok {
				return nil, false
			}
			if fc.is, ok = recordLine(m.Blobs[d], m.Orphans[d]); !ok {
				return nil, false
			}
			if fc.was != nil && fc.is != nil && *fc.was == *fc.is {
				continue // its line stays (a record changed, not its line: retired)
			}
			changes = append(changes, fc)
		}
	}
	files := subsetFiles(m)
	spliced := map[*subsetFile]Pieces{}
	out := map[string]Pieces{}
	for _, s := range AllSubsets() {
		f := files[s]
		if b, ok := spliced[f]; ok {
			out[SubsetFilterPath(s)] = b
			continue
		}
		live, ok := old(SubsetFilterPath(s))
		if !ok {
			return nil, false
		}
		b, ok := spliceFilter(live, f, changes, prev)
		if !ok {
			return nil, false
		}
		spliced[f] = b
		out[SubsetFilterPath(s)] = b
	}
	return out, true
}

// subsetFile is a distinct filter file: the lines of the masks it includes (a blob without
// membership is in every file but the archive's).
type subsetFile struct {
	mask    uint64
	archive bool
}

func (f *subsetFile) includes(mask uint64) bool {
	return mask&f.mask != 0 || mask == 0 && !f.archive
}

// subsetFiles returns the file of each subset of AllSubsets: subsets with the same file
// share one.
func subsetFiles(m *Meta) map[string]*subsetFile {
	var files []*subsetFile
	out := map[string]*subsetFile{}
	for _, s := range AllSubsets() {
		k := subsetFile{mask: m.ContentMask([]string{s}), archive: s == ArchiveSubset}
		j := slices.IndexFunc(files, func(f *subsetFile) bool { return *f == k })
		if j < 0 {
			j = len(files)
			files = append(files, &k)
		}
		out[s] = files[j]
	}
	return out
}

// recordLine is the since and mask of the line of a blob's record (b or o; neither: no line).
// False when it has both: the full render gives it two lines.
func recordLine(b *Blob, o *Orphan) (*lineRecord, bool) {
	switch {
	case b != nil && o != nil:
		return nil, false
	case b != nil:
		return &lineRecord{b.Since, b.Subsets | b.Former}, true
	case o != nil:
		return &lineRecord{o.Since, o.Subsets}, true
	}
	return nil, true
}

type lineRecord struct{ since, mask uint64 }

// filterChange is a blob or orphan the change touched: its line's record in the live
// content (was) and in the new (is), nil for none.
type filterChange struct {
	d       Digest
	was, is *lineRecord
}

// spliceFilter is file f of the new content, from old, its file of the live content prev:
// the lines of changes taken out and put in. False when old is not as SubsetFilters renders
// it from prev (lines of one length "+ /blobs/<algorithm>/<hex>\n", ordered by Since in
// prev, then hex: a line a bisection meets names a blob or orphan of prev, a line to take out
// is where its record puts it), or a line to put in has another shape.
func spliceFilter(old []byte, f *subsetFile, changes []filterChange, prev *contentState) (Pieces, bool) {
	// The lines' shape: the old file's, else (empty) the first new line's.
	var prefix string
	if nl := bytes.IndexByte(old, '\n'); nl >= 0 {
		line := string(old[:nl])
		prefix = line[:strings.LastIndexByte(line, '/')+1]
	} else if len(old) > 0 {
		return nil, false
	} else {
		for _, c := range changes {
			if c.is != nil && f.includes(c.is.mask) {
				algo, _, _ := strings.Cut(c.d.s, ":")
				prefix = "+ /" + BlobsDir + "/" + algo + "/"
				break
			}
		}
		if prefix == "" {
			return Pieces{old}, true // empty, and nothing to put in
		}
	}
	algo, ok := strings.CutPrefix(prefix, "+ /"+BlobsDir+"/")
	if !ok || !plainSegment(strings.TrimSuffix(algo, "/")) {
		return nil, false
	}
	algo = strings.TrimSuffix(algo, "/")
	hexOf := func(d Digest) (string, bool) {
		a, hex, ok := strings.Cut(d.s, ":")
		return hex, ok && a == algo && plainSegment(hex) && !strings.ContainsAny(hex, "\n")
	}
	width := len(prefix) + 1 // a line's length, hex included
	if len(old) > 0 {
		width = bytes.IndexByte(old, '\n') + 1
	} else {
		for _, c := range changes {
			if c.is != nil && f.includes(c.is.mask) {
				hex, _ := hexOf(c.d)
				width += len(hex)
				break
			}
		}
	}
	if width <= len(prefix)+1 || len(old)%width != 0 {
		return nil, false
	}
	lines := len(old) / width
	for i := range lines {
		l := old[i*width : (i+1)*width]
		if string(l[:len(prefix)]) != prefix || l[width-1] != '\n' {
			return nil, false
		}
	}
	hexAt := func(i int) []byte { return old[i*width+len(prefix) : (i+1)*width-1] }
	// search returns the first line not before (since, hex) in prev's order; false when a
	// line it meets names nothing of prev.
	search := func(since uint64, hex string) (int, bool) {
		lo, hi := 0, lines
		for lo < hi {
			mid := int(uint(lo+hi) >> 1)
			h := hexAt(mid)
			rec, ok := recordLine(prev.blobs[Digest{algo + ":" + string(h)}], prev.orphans[Digest{algo + ":" + string(h)}])
			if !ok || rec == nil {
				return 0, false
			}
			if rec.since < since || rec.since == since && string(h) < hex {
				lo = mid + 1
			} else {
				hi = mid
			}
		}
		return lo, true
	}
	type insert struct {
		at    int
		since uint64
		hex   string
	}
	var remove []int
	var inserts []insert
	for _, c := range changes {
		hex, ok := hexOf(c.d)
		if c.was != nil && f.includes(c.was.mask) {
			at, found := search(c.was.since, hex)
			if !ok || !found || at == lines || string(hexAt(at)) != hex {
				return nil, false
			}
			remove = append(remove, at)
		}
		if c.is != nil && f.includes(c.is.mask) {
			if !ok || len(prefix)+len(hex)+1 != width {
				return nil, false
			}
			at, found := search(c.is.since, hex)
			if !found {
				return nil, false
			}
			inserts = append(inserts, insert{at, c.is.since, hex})
		}
	}
	if len(remove) == 0 && len(inserts) == 0 {
		return Pieces{old}, true
	}
	slices.Sort(remove)
	slices.SortFunc(inserts, func(a, b insert) int {
		if a.at != b.at {
			return a.at - b.at
		}
		if a.since != b.since {
			if a.since < b.since {
				return -1
			}
			return 1
		}
		return strings.Compare(a.hex, b.hex)
	})
	out := NewSplicer(old, len(inserts)*width)
	next, r := 0, 0 // the next old line to keep, the next line to take out
	keepTo := func(end int) {
		for ; r < len(remove) && remove[r] < end; r++ {
			out.Keep(next*width, remove[r]*width)
			next = remove[r] + 1
		}
		out.Keep(next*width, end*width)
		next = end
	}
	for _, in := range inserts {
		keepTo(in.at)
		out.Add(func(b []byte) []byte { return append(append(append(b, prefix...), in.hex...), '\n') })
	}
	keepTo(lines)
	return out.Pieces(), true
}
