package layout

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
	"unsafe"
)

// The pack cache keeps, outside the tree, a binary copy of each large base pack a Tree
// decoded (UsePackCache), named by the pack's digest. A later load of the same pack (the
// next generate's previous generation: the base changes only when compaction rewrites it)
// reads the copy instead of decompressing and parsing the pack's JSON: the copy is one
// buffer whose strings and manifest bytes the records point into, each distinct digest one
// string, so decoding it allocates a few arrays and the maps, not every string. The tree's
// pack is still read and checked against its name first: the copy replaces the decode, never
// the check. A copy that is missing, of another version, damaged (its CRC-32C is wrong) or
// malformed is ignored and written again; the cache may be deleted at any time. Only packs
// that add records and drop or change nothing (bases) are kept, and only from packCacheMin
// compressed bytes: a small pack decodes fast enough.
//
// A copy is, little-endian: packCacheMagic; the pack's digest; the digest table (count, then
// each digest as a string); the manifests, blobs, orphans and repositories (each a count,
// -1 for a nil map, then the records, digests as indexes into the table); the CRC-32C
// (Castagnoli) of everything before it. A string is its length (uint32) and bytes; a time
// its MarshalBinary form after its length (uint8, 0 for the zero time); a list a count (-1
// for nil) and its items. The records lie in copyOrder's order and the table's digests in the
// order the records first name them, so that a pack's copy is the same bytes every time and
// a decode reads the table front to back; any order decodes the same.
const (
	packCacheMagic = "regmirror pack cache 1\n"
	packCacheMin   = 1 << 20
	packCacheKeep  = 2 // copies kept, the most recently used: a tree's base and the one before it (a copy is 69 MB at 90k manifests)
	packCacheExt   = ".pack"
)

var packCacheCRC = crc32.MakeTable(crc32.Castagnoli)

// UsePackCache makes t keep decoded copies of its large content packs in dir (created when
// needed), and read them instead of the packs' JSON when they are there. "" (the default)
// keeps none. Set it before the first load.
//
// A copy is read mapped (MapFile), and what a load takes from it, its records' strings and
// manifest bytes, points into the mapping: release unmaps the copies t's loads read, after
// which nothing those loads returned may be used (reading it faults). Call it once they are
// done with; without it the copies stay mapped until the process exits.
func (t *Tree) UsePackCache(dir string) (release func()) {
	t.packCache = dir
	return t.unmapPackCopies
}

// unmapPackCopies unmaps the pack cache copies t's loads read (UsePackCache).
func (t *Tree) unmapPackCopies() {
	t.mappedMu.Lock()
	unmaps := t.mapped
	t.mapped = nil
	t.mappedMu.Unlock()
	for _, unmap := range unmaps {
		unmap()
	}
}

// cacheable reports whether p may be kept in the pack cache: a base, which only adds records.
func (p *metaPack) cacheable() bool {
	return len(p.DropManifests) == 0 && len(p.DropBlobs) == 0 && len(p.DropOrphans) == 0 &&
		len(p.DropRepositories) == 0 && len(p.RepositoryChanges) == 0
}

func (t *Tree) packCachePath(d Digest) string {
	return filepath.Join(t.packCache, d.Hex()+packCacheExt)
}

// readCachedPack returns the cached copy of the pack with digest d, or an error if there is
// none that reads back whole.
func (t *Tree) readCachedPack(d Digest) (*metaPack, error) {
	path := t.packCachePath(d)
	b, unmap, err := MapFile(path)
	if err != nil {
		return nil, err
	}
	p, err := decodePackCopy(b, d)
	if err != nil {
		unmap()
		return nil, fmt.Errorf("pack cache %s: %w", path, err)
	}
	t.mappedMu.Lock()
	t.mapped = append(t.mapped, unmap) // p points into b: unmapped by UsePackCache's release
	t.mappedMu.Unlock()
	now := time.Now()
	_ = os.Chtimes(path, now, now) // most recently used: pruned last
	return p, nil
}

// writeCachedPack writes p, decoded from the pack with digest d, to the cache (CreateFile:
// renamed into place once written; no directory sync, a copy lost in a crash is only made
// again), then removes the copies beyond the packCacheKeep most recently used. The cache is
// an optimization: its errors are returned for tests, not for callers.
func (t *Tree) writeCachedPack(d Digest, p *metaPack) error {
	f, err := CreateFile(t.packCachePath(d))
	if err != nil {
		return fmt.Errorf("writing pack cache: %w", err)
	}
	defer f.Abort()
	if err := encodePackCopy(f, p, d); err != nil {
		return fmt.Errorf("writing pack cache: %w", err)
	}
	if err := f.CommitNoDirSync(); err != nil {
		return fmt.Errorf("writing pack cache: %w", err)
	}
	t.prunePackCache()
	return nil
}

// prunePackCache removes the copies beyond the packCacheKeep most recently used, and
// temporary files an interrupted write left more than an hour ago.
func (t *Tree) prunePackCache() {
	ents, err := os.ReadDir(t.packCache)
	if err != nil {
		return
	}
	type copyFile struct {
		name string
		used time.Time
	}
	var files []copyFile
	for _, e := range ents {
		fi, err := e.Info()
		if err != nil || !e.Type().IsRegular() {
			continue
		}
		switch {
		case strings.HasSuffix(e.Name(), packCacheExt):
			files = append(files, copyFile{e.Name(), fi.ModTime()})
		case strings.HasPrefix(e.Name(), TempPrefix) && time.Since(fi.ModTime()) > time.Hour:
			_ = os.Remove(filepath.Join(t.packCache, e.Name()))
		}
	}
	slices.SortFunc(files, func(a, b copyFile) int { return b.used.Compare(a.used) })
	for _, f := range files[min(len(files), packCacheKeep):] {
		_ = os.Remove(filepath.Join(t.packCache, f.name))
	}
}

// crcWriter passes writes on to w and keeps their CRC-32C (over bufio's large writes, not
// every field's).
type crcWriter struct {
	w   io.Writer
	crc hash.Hash32
}

func (c *crcWriter) Write(b []byte) (int, error) {
	c.crc.Write(b)
	return c.w.Write(b)
}

// packCopyWriter writes a copy's fields; the first error sticks.
type packCopyWriter struct {
	w   *bufio.Writer
	err error
	buf []byte
}

func (w *packCopyWriter) write(b []byte) {
	if w.err != nil {
		return
	}
	_, w.err = w.w.Write(b)
}

func (w *packCopyWriter) u32(v uint32) { w.write(binary.LittleEndian.AppendUint32(w.buf[:0], v)) }
func (w *packCopyWriter) u64(v uint64) { w.write(binary.LittleEndian.AppendUint64(w.buf[:0], v)) }

// count writes n, or -1 when nil is true.
func (w *packCopyWriter) count(n int, isNil bool) {
	if isNil {
		n = -1
	}
	w.u32(uint32(int32(n)))
}

func (w *packCopyWriter) str(s string) {
	w.u32(uint32(len(s)))
	w.write(unsafe.Slice(unsafe.StringData(s), len(s)))
}

func (w *packCopyWriter) bytes(b []byte) {
	w.count(len(b), b == nil)
	w.write(b)
}

func (w *packCopyWriter) time(t time.Time) {
	if t.IsZero() {
		if w.err == nil {
			w.err = w.w.WriteByte(0)
		}
		return
	}
	b, err := t.MarshalBinary()
	if err != nil {
		if w.err == nil {
			w.err = err
		}
		return
	}
	w.write(append([]byte{byte(len(b))}, b...))
}

// encodePackCopy writes p (a cacheable pack with digest d) to out in the pack cache's form.
func encodePackCopy(out io.Writer, p *metaPack, d Digest) error {
	if !p.cacheable() {
		return errors.New("pack cache: only a pack that adds records is kept")
	}
	cw := &crcWriter{w: out, crc: crc32.New(packCacheCRC)}
	w := &packCopyWriter{w: bufio.NewWriterSize(cw, 1<<20), buf: make([]byte, 0, 8)}
	w.write([]byte(packCacheMagic))
	w.str(d.String())

	o := packOrder(p) // the records' order, and the table so far
	index := o.index
	for _, d := range o.orphans {
		o.add(d)
	}
	lists := 0
	for _, name := range o.repos {
		r := p.Repositories[name]
		if r == nil {
			return errors.New("pack cache: a repository is null")
		}
		for _, tag := range o.tags[name] {
			o.add(r.Tags[tag])
		}
		for _, l := range [...][]Digest{r.Manifests, r.Blobs, r.Retiring, r.RetiringBlobs} {
			for _, d := range l {
				o.add(d)
			}
			lists += len(l)
		}
	}
	if len(o.table) > math.MaxInt32 || lists > math.MaxInt32 {
		return errors.New("pack cache: too many records")
	}
	w.u32(uint32(len(o.table)))
	for _, d := range o.table {
		w.str(d.String())
	}
	digests := func(l []Digest) {
		w.count(len(l), l == nil)
		for _, d := range l {
			w.u32(index[d])
		}
	}

	w.count(len(p.Manifests), p.Manifests == nil)
	for _, d := range o.manifests {
		m := p.Manifests[d]
		if m == nil {
			return errors.New("pack cache: a manifest is null")
		}
		w.u32(index[d])
		w.str(m.MediaType)
		w.bytes(m.Data)
	}
	w.count(len(p.Blobs), p.Blobs == nil)
	for _, d := range o.blobs {
		b := p.Blobs[d]
		if b == nil {
			return errors.New("pack cache: a blob is null")
		}
		w.u32(index[d])
		w.u64(uint64(b.Size))
		w.u64(b.Since)
		w.time(b.Retired)
		w.u64(b.Subsets)
		w.u64(b.Former)
		w.time(b.Left)
	}
	w.count(len(p.Orphans), p.Orphans == nil)
	for _, d := range o.orphans {
		rec := p.Orphans[d]
		if rec == nil {
			return errors.New("pack cache: an orphan is null")
		}
		w.u32(index[d])
		w.u64(uint64(rec.Size))
		w.u64(rec.Since)
		w.time(rec.Unreferenced)
		w.u64(rec.Subsets)
	}
	w.count(len(p.Repositories), p.Repositories == nil)
	if p.Repositories != nil {
		w.u32(uint32(lists))
	}
	for _, name := range o.repos {
		r := p.Repositories[name]
		w.str(name)
		w.count(len(r.Tags), r.Tags == nil)
		for _, tag := range o.tags[name] {
			w.str(tag)
			w.u32(index[r.Tags[tag]])
		}
		digests(r.Manifests)
		digests(r.Blobs)
		digests(r.Retiring)
		digests(r.RetiringBlobs)
		var refs []byte
		if r.Referrers != nil {
			var err error
			if refs, err = json.Marshal(r.Referrers); err != nil {
				return fmt.Errorf("pack cache: %w", err)
			}
		}
		w.bytes(refs)
		w.count(len(r.Archived), r.Archived == nil)
		for _, tag := range r.Archived {
			w.str(tag)
		}
		w.count(len(r.Removed), r.Removed == nil)
		for tag, at := range r.Removed {
			w.str(tag)
			w.time(at)
		}
	}
	if w.err == nil {
		w.err = w.w.Flush()
	}
	if w.err == nil {
		_, w.err = out.Write(binary.LittleEndian.AppendUint32(nil, cw.crc.Sum32()))
	}
	return w.err
}

// copyOrder is the order encodePackCopy writes a pack's records in: the repositories by name,
// their tags by name; the manifests as the repositories name them (each one's tags, then its
// lists), then those no repository names; the blobs the same way, the manifests' own first, in
// the manifests' order; the orphans by digest. Records are decoded in the order they lie, and
// a digest is found in the table where it was first named: in this order a decode reads the
// table from its start to its end, the way it reads the records (BenchmarkPackCopy).
type copyOrder struct {
	repos                     []string
	tags                      map[string][]string
	manifests, blobs, orphans []Digest
	// table is the digest table so far (the manifests', then the other blobs'), index each
	// one's place in it.
	table []Digest
	index map[Digest]uint32
}

// add puts d in the table unless it is there; it reports whether it was not.
func (o *copyOrder) add(d Digest) bool {
	if _, ok := o.index[d]; ok {
		return false
	}
	o.index[d] = uint32(len(o.table))
	o.table = append(o.table, d)
	return true
}

// packOrder is p's copyOrder.
func packOrder(p *metaPack) *copyOrder {
	n := len(p.Manifests) + len(p.Blobs) + len(p.Orphans)
	o := &copyOrder{repos: make([]string, 0, len(p.Repositories)), tags: make(map[string][]string, len(p.Repositories)),
		manifests: make([]Digest, 0, len(p.Manifests)), blobs: make([]Digest, 0, len(p.Blobs)),
		table: make([]Digest, 0, n), index: make(map[Digest]uint32, n)}
	for name := range p.Repositories {
		o.repos = append(o.repos, name)
	}
	slices.Sort(o.repos)
	// While the manifests are ordered, the table holds manifests only; then the blobs not
	// yet in it: a digest in the table is one placed.
	addM := func(d Digest) {
		if _, ok := p.Manifests[d]; ok && o.add(d) {
			o.manifests = append(o.manifests, d)
		}
	}
	for _, name := range o.repos {
		r := p.Repositories[name]
		if r == nil {
			continue
		}
		tags := make([]string, 0, len(r.Tags))
		for tag := range r.Tags {
			tags = append(tags, tag)
		}
		slices.Sort(tags)
		o.tags[name] = tags
		for _, tag := range tags {
			addM(r.Tags[tag])
		}
		for _, l := range [...][]Digest{r.Manifests, r.Retiring} {
			for _, d := range l {
				addM(d)
			}
		}
	}
	for _, d := range rest(p.Manifests, o.index) {
		addM(d)
	}
	for _, d := range o.manifests {
		if _, ok := p.Blobs[d]; ok {
			o.blobs = append(o.blobs, d)
		}
	}
	addB := func(d Digest) {
		if _, ok := p.Blobs[d]; ok && o.add(d) {
			o.blobs = append(o.blobs, d)
		}
	}
	for _, name := range o.repos {
		if r := p.Repositories[name]; r != nil {
			for _, l := range [...][]Digest{r.Blobs, r.RetiringBlobs} {
				for _, d := range l {
					addB(d)
				}
			}
		}
	}
	for _, d := range rest(p.Blobs, o.index) {
		addB(d)
	}
	o.orphans = rest(p.Orphans, nil)
	return o
}

// rest are the keys of m that placed lacks, by digest.
func rest[V any](m map[Digest]V, placed map[Digest]uint32) []Digest {
	var out []Digest
	for d := range m {
		if _, ok := placed[d]; !ok {
			out = append(out, d)
		}
	}
	slices.SortFunc(out, compareDigests)
	return out
}

// packCopyReader reads a copy's fields from b; the first error sticks, and reads after it
// give zero values. Strings and byte slices point into b, which must not change afterwards.
type packCopyReader struct {
	b   []byte
	off int
	err error
}

var errPackCopyShort = errors.New("cut short")

func (r *packCopyReader) take(n int) []byte {
	if r.err != nil || n < 0 || n > len(r.b)-r.off {
		if r.err == nil {
			r.err = errPackCopyShort
		}
		return nil
	}
	b := r.b[r.off : r.off+n : r.off+n]
	r.off += n
	return b
}

func (r *packCopyReader) u32() uint32 {
	if b := r.take(4); b != nil {
		return binary.LittleEndian.Uint32(b)
	}
	return 0
}

func (r *packCopyReader) u64() uint64 {
	if b := r.take(8); b != nil {
		return binary.LittleEndian.Uint64(b)
	}
	return 0
}

// count reads a count of items of at least size bytes each, and whether it was nil (-1).
func (r *packCopyReader) count(size int) (int, bool) {
	n := int(int32(r.u32()))
	if n == -1 {
		return 0, true
	}
	if n < 0 || n > (len(r.b)-r.off)/size {
		if r.err == nil {
			r.err = fmt.Errorf("count %d at byte %d beyond the copy", n, r.off)
		}
		return 0, false
	}
	return n, false
}

func (r *packCopyReader) str() string {
	n := int(r.u32())
	b := r.take(n)
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

// bytes reads a byte string: nil, or a slice of the copy (empty, not nil, when its length is 0).
func (r *packCopyReader) bytes() []byte {
	n, isNil := r.count(1)
	if isNil {
		return nil
	}
	return r.take(n)
}

func (r *packCopyReader) time() time.Time {
	n := r.take(1)
	if n == nil || n[0] == 0 {
		return time.Time{}
	}
	var t time.Time
	if err := t.UnmarshalBinary(r.take(int(n[0]))); err != nil && r.err == nil {
		r.err = err
	}
	return t
}

func (r *packCopyReader) digest(table []Digest) Digest {
	i := r.u32()
	if int(i) >= len(table) {
		if r.err == nil {
			r.err = fmt.Errorf("digest %d of %d", i, len(table))
		}
		return Digest{}
	}
	return table[i]
}

// decodePackCopy decodes a copy of the pack with digest d: checked whole (its CRC, its
// digest, every digest's grammar, every index and length), so that a damaged copy is an
// error, never a wrong pack.
func decodePackCopy(b []byte, d Digest) (*metaPack, error) {
	if len(b) < len(packCacheMagic)+4 || string(b[:len(packCacheMagic)]) != packCacheMagic {
		return nil, errors.New("not a pack cache copy of this version")
	}
	body := b[:len(b)-4]
	if crc32.Checksum(body, packCacheCRC) != binary.LittleEndian.Uint32(b[len(body):]) {
		return nil, errors.New("damaged: its CRC does not match")
	}
	r := &packCopyReader{b: body, off: len(packCacheMagic)}
	if got := r.str(); got != d.String() {
		return nil, fmt.Errorf("a copy of %.80q, not %s", got, d)
	}
	nd, _ := r.count(4)
	table := make([]Digest, nd)
	for i := range table {
		var err error
		if table[i], err = ParseDigest(r.str()); err != nil && r.err == nil {
			r.err = err
		}
	}

	p := &metaPack{Format: 3, Kind: metaKindPack}
	if n, isNil := r.count(4 + 4 + 4); !isNil {
		recs := make([]Manifest, n)
		p.Manifests = make(map[Digest]*Manifest, n)
		for i := range recs {
			k := r.digest(table)
			recs[i] = Manifest{MediaType: r.str(), Data: r.bytes()}
			p.Manifests[k] = &recs[i]
		}
	}
	if n, isNil := r.count(4 + 8*4 + 2); !isNil {
		recs := make([]Blob, n)
		p.Blobs = make(map[Digest]*Blob, n)
		for i := range recs {
			k := r.digest(table)
			recs[i] = Blob{Size: int64(r.u64()), Since: r.u64(), Retired: r.time(), Subsets: r.u64(), Former: r.u64(), Left: r.time()}
			p.Blobs[k] = &recs[i]
		}
	}
	if n, isNil := r.count(4 + 8*3 + 1); !isNil {
		recs := make([]Orphan, n)
		p.Orphans = make(map[Digest]*Orphan, n)
		for i := range recs {
			k := r.digest(table)
			recs[i] = Orphan{Size: int64(r.u64()), Since: r.u64(), Unreferenced: r.time(), Subsets: r.u64()}
			p.Orphans[k] = &recs[i]
		}
	}
	if n, isNil := r.count(4 + 4*9); !isNil {
		lists, _ := r.count(4)
		backing := make([]Digest, lists)
		digests := func() []Digest {
			k, isNil := r.count(4)
			if isNil || r.err != nil {
				return nil
			}
			if k > len(backing) {
				r.err = fmt.Errorf("lists longer than their total %d", lists)
				return nil
			}
			l := backing[:k:k]
			backing = backing[k:]
			for i := range l {
				l[i] = r.digest(table)
			}
			return l
		}
		recs := make([]Repository, n)
		p.Repositories = make(map[string]*Repository, n)
		for i := range recs {
			name := r.str()
			rec := &recs[i]
			if k, isNil := r.count(4 + 4); !isNil {
				rec.Tags = make(map[string]Digest, k)
				for range k {
					tag := r.str()
					rec.Tags[tag] = r.digest(table)
				}
			}
			rec.Manifests, rec.Blobs, rec.Retiring, rec.RetiringBlobs = digests(), digests(), digests(), digests()
			if refs := r.bytes(); refs != nil && r.err == nil {
				if err := json.Unmarshal(refs, &rec.Referrers); err != nil {
					r.err = fmt.Errorf("referrers of %.80q: %w", name, err)
				}
			}
			if k, isNil := r.count(4); !isNil {
				rec.Archived = make([]string, k)
				for j := range rec.Archived {
					rec.Archived[j] = r.str()
				}
			}
			if k, isNil := r.count(4 + 1); !isNil {
				rec.Removed = make(map[string]time.Time, k)
				for range k {
					tag := r.str()
					rec.Removed[tag] = r.time()
				}
			}
			p.Repositories[name] = rec
		}
	}
	if r.err == nil && r.off != len(body) {
		r.err = fmt.Errorf("%d bytes after the records", len(body)-r.off)
	}
	if r.err != nil {
		return nil, r.err
	}
	return p, nil
}
