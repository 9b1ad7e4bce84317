package layout

import (
	"bufio"
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"maps"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/zstd"
)

// Format 3 stores a generation's metadata as three kinds of files in regmirror/meta/, each
// zstd-compressed JSON named by the sha256 of its compressed bytes (docs/tree-format.md,
// "Metadata"):
//
//   - a root (what the stamp's meta names): generation, creation time, source, the subset
//     table, and the names of the network file and of the content packs, in order;
//   - a network file: the origin, the mirrors with their crawl state, minMirrors, regions and
//     variant sets (a crawl writes only a new network file and a new root);
//   - content packs: the first (the base) the whole content (repositories, manifests with
//     their bytes, blob and orphan records), each later one a delta against the content
//     before it. A reader applies them in order.
//
// The in-memory Meta is the same whatever the format.

// Kinds of format 3 metadata files ("kind" in each).
const (
	metaKindRoot    = "root"
	metaKindNetwork = "network"
	metaKindPack    = "pack"
)

// Compaction of the pack chain (writeMeta): a new delta is merged with the newest deltas
// while their total is at least half the older delta's size; a fresh base replaces the chain
// when the deltas total more than a quarter of the base or there are more than maxPacks packs.
const (
	maxPacks         = 16
	baseRewriteRatio = 4
)

// metaRoot is a format 3 root.
type metaRoot struct {
	Format     int       `json:"format"`
	Kind       string    `json:"kind"`
	Generation uint64    `json:"generation"`
	Created    time.Time `json:"created"`
	Source     string    `json:"source,omitempty"`
	Subsets    []string  `json:"subsets,omitempty"`
	// GCGrace is Meta.GCGrace as time.Duration.String writes it ("168h0m0s").
	GCGrace string `json:"gcGrace,omitempty"`
	// Network names the network file.
	Network metaFileRef `json:"network"`
	// Packs name the content packs, base first, in the order they apply.
	Packs []metaFileRef `json:"packs"`
}

// metaFileRef names a metadata file the root needs, "meta/<hex>.json.zst" relative to
// MetaDir, with its compressed size (what the compaction weighs).
type metaFileRef struct {
	Ref  string `json:"ref"`
	Size int64  `json:"size"`
}

// metaNetwork is a format 3 network file: Meta's mirror network fields.
type metaNetwork struct {
	Format      int                `json:"format"`
	Kind        string             `json:"kind"`
	Origin      string             `json:"origin,omitempty"`
	Mirrors     []*Mirror          `json:"mirrors,omitempty"`
	MinMirrors  int                `json:"minMirrors,omitempty"`
	Regions     map[string]*Region `json:"regions,omitempty"`
	VariantSets []*VariantSet      `json:"variantSets,omitempty"`
}

// metaPack is a format 3 content pack: a delta against the content before it (the base is a
// delta against nothing). Drops apply first, then the records given (added or replaced), then
// the repository changes.
type metaPack struct {
	Format int    `json:"format"`
	Kind   string `json:"kind"`

	DropManifests    []Digest `json:"dropManifests,omitempty"`
	DropBlobs        []Digest `json:"dropBlobs,omitempty"`
	DropOrphans      []Digest `json:"dropOrphans,omitempty"`
	DropRepositories []string `json:"dropRepositories,omitempty"`

	Manifests map[Digest]*Manifest `json:"manifests,omitempty"`
	Blobs     map[Digest]*Blob     `json:"blobs,omitempty"`
	Orphans   map[Digest]*Orphan   `json:"orphans,omitempty"`
	// Repositories are added or replaced whole.
	Repositories map[string]*Repository `json:"repositories,omitempty"`
	// RepositoryChanges change repositories the content before the pack has, part by part.
	RepositoryChanges map[string]*repoChange `json:"repositoryChanges,omitempty"`
}

// repoChange changes a repository: tags set and removed, digests added to and dropped from its
// lists (which stay sorted), referrers set and removed, archived tags and removal times
// replaced whole.
type repoChange struct {
	Tags          map[string]Digest       `json:"tags,omitempty"`
	Untag         []string                `json:"untag,omitempty"`
	Manifests     *listChange             `json:"manifests,omitempty"`
	Blobs         *listChange             `json:"blobs,omitempty"`
	Retiring      *listChange             `json:"retiring,omitempty"`
	RetiringBlobs *listChange             `json:"retiringBlobs,omitempty"`
	Referrers     map[Digest][]Descriptor `json:"referrers,omitempty"`
	DropReferrers []Digest                `json:"dropReferrers,omitempty"`
	Archived      *[]string               `json:"archived,omitempty"`
	Removed       *map[string]time.Time   `json:"removed,omitempty"`
}

// listChange adds digests to and drops digests from a sorted list.
type listChange struct {
	Add  []Digest `json:"add,omitempty"`
	Drop []Digest `json:"drop,omitempty"`
}

// MetaFileError is a metadata file a generation needs that is missing or corrupt.
type MetaFileError struct {
	Path       string // tree-relative slash path
	Generation uint64 // the generation whose root names it; 0 if unknown
	Err        error
}

func (e *MetaFileError) Error() string {
	if e.Generation == 0 {
		return fmt.Sprintf("metadata file %s: %v", e.Path, e.Err)
	}
	return fmt.Sprintf("metadata file %s of generation %d: %v", e.Path, e.Generation, e.Err)
}

func (e *MetaFileError) Unwrap() error { return e.Err }

// Hint says how to repair the tree: every copy of it holds the same file under the same name.
func (e *MetaFileError) Hint() string {
	g := "the generation"
	if e.Generation != 0 {
		g = fmt.Sprintf("generation %d", e.Generation)
	}
	return fmt.Sprintf("copy %s back from a mirror that holds %s, where it has the same name", e.Path, g)
}

// readMetaFile reads the metadata file named ref ("meta/<hex>.json.zst"), checks it against
// its name and returns its decompressed JSON.
func (t *Tree) readMetaFile(ref string, generation uint64) ([]byte, error) {
	raw, unmap, rel, err := t.readMetaRaw(ref, generation)
	if err != nil {
		return nil, err
	}
	defer unmap() // the JSON is decompressed into memory of its own
	js, err := decompressMeta(raw)
	if err != nil {
		return nil, &MetaFileError{rel, generation, err}
	}
	return js, nil
}

// readMetaRaw maps the metadata file named ref (MapFile), checks it against its name and
// returns its compressed bytes, unmap (call it once they are decoded) and its tree-relative
// path.
func (t *Tree) readMetaRaw(ref string, generation uint64) (raw []byte, unmap func(), rel string, err error) {
	d, err := metaDigestFromRef(ref)
	if err != nil {
		return nil, nil, "", err
	}
	rel = MetaPath(d)
	raw, unmap, err = MapFile(t.Path(rel))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			err = errors.New("missing")
		}
		return nil, nil, rel, &MetaFileError{rel, generation, err}
	}
	if !t.vouched(rel, raw, d.Hex()) {
		if err := VerifyBytes(d, raw); err != nil {
			unmap()
			return nil, nil, rel, &MetaFileError{rel, generation, fmt.Errorf("corrupt: %w", err)}
		}
		t.held(rel, d.Hex())
	}
	return raw, unmap, rel, nil
}

// readPack reads the content pack named ref: checked against its name, then decompressed and
// decoded a record at a time (decodePack), so that its JSON is never whole in memory. With a
// pack cache (UsePackCache), a large base is read from its copy there when it has one, and
// kept there when it has not.
func (t *Tree) readPack(ref string, generation uint64) (*metaPack, error) {
	raw, unmap, rel, err := t.readMetaRaw(ref, generation)
	if err != nil {
		return nil, err
	}
	defer unmap() // decodePackRaw copies what it keeps
	cache := t.packCache != "" && len(raw) >= packCacheMin
	var d Digest
	if cache {
		d, _ = metaDigestFromRef(ref) // readMetaRaw checked it
		if p, err := t.readCachedPack(d); err == nil {
			return p, nil
		}
	}
	p, err := decodePackRaw(raw, rel, generation)
	if err == nil && cache && p.cacheable() {
		_ = t.writeCachedPack(d, p) // an optimization: without it, the next load decodes the JSON again
	}
	return p, err
}

// decodePackRaw decompresses and decodes a content pack's file (at rel), a record at a time.
func decodePackRaw(raw []byte, rel string, generation uint64) (*metaPack, error) {
	zr, err := zstd.NewReader(bytes.NewReader(raw), zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(MaxMetaSize))
	if err != nil {
		return nil, &MetaFileError{rel, generation, fmt.Errorf("decoding metadata: %w", err)}
	}
	defer zr.Close()
	var p metaPack
	if err := decodePack(&limitedMeta{r: zr, n: MaxMetaSize}, &p); err != nil {
		return nil, &MetaFileError{rel, generation, err}
	}
	return &p, nil
}

// limitedMeta reads at most n bytes of r, and fails past them.
type limitedMeta struct {
	r io.Reader
	n int64
}

func (l *limitedMeta) Read(b []byte) (int, error) {
	if l.n < 0 {
		return 0, fmt.Errorf("decoding metadata: larger than %d bytes", MaxMetaSize)
	}
	if int64(len(b)) > l.n+1 {
		b = b[:l.n+1]
	}
	n, err := l.r.Read(b)
	l.n -= int64(n)
	if l.n < 0 {
		return n, fmt.Errorf("decoding metadata: larger than %d bytes", MaxMetaSize)
	}
	return n, err
}

// decompressMeta returns the JSON of a metadata file, at most MaxMetaSize bytes.
func decompressMeta(raw []byte) ([]byte, error) {
	zr, err := zstd.NewReader(bytes.NewReader(raw), zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(MaxMetaSize))
	if err != nil {
		return nil, fmt.Errorf("decoding metadata: %w", err)
	}
	defer zr.Close()
	js, err := io.ReadAll(io.LimitReader(zr, MaxMetaSize+1))
	if err != nil {
		return nil, fmt.Errorf("decoding metadata: %w", err)
	}
	if len(js) > MaxMetaSize {
		return nil, fmt.Errorf("decoding metadata: larger than %d bytes", MaxMetaSize)
	}
	return js, nil
}

// metaHeader is the start of every metadata document: its format, and in format 3 its kind.
// Every encoding puts "format" first (and "kind" second), so peekHeader reads a few bytes.
type metaHeader struct {
	Format int
	Kind   string
}

// peekHeader reads the format and kind at the start of a metadata document without decoding
// the rest. A document not starting with them gets a zero header.
func peekHeader(js []byte) metaHeader {
	var h metaHeader
	dec := json.NewDecoder(bytes.NewReader(js))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return h
	}
	for range 2 {
		k, err := dec.Token()
		if err != nil {
			return h
		}
		switch k {
		case "format":
			if dec.Decode(&h.Format) != nil {
				return h
			}
		case "kind":
			if dec.Decode(&h.Kind) != nil {
				return h
			}
		default:
			return h
		}
	}
	return h
}

// decodeMetaDoc decodes a format 3 document of the given kind.
func decodeMetaDoc(js []byte, kind string, v any) error {
	if h := peekHeader(js); h.Format != 3 || h.Kind != kind {
		return fmt.Errorf("not a format 3 metadata %s (format %d, kind %q)", kind, h.Format, h.Kind)
	}
	if err := json.Unmarshal(js, v); err != nil {
		return fmt.Errorf("decoding metadata %s: %w", kind, err)
	}
	return nil
}

// graceText is Meta.GCGrace as a root records it: "" when unknown.
func graceText(g time.Duration) string {
	if g <= 0 {
		return ""
	}
	return g.String()
}

// decodeRoot decodes a root and checks the names it gives.
func decodeRoot(js []byte) (*metaRoot, error) {
	var r metaRoot
	if err := decodeMetaDoc(js, metaKindRoot, &r); err != nil {
		return nil, err
	}
	if _, err := metaDigestFromRef(r.Network.Ref); err != nil {
		return nil, fmt.Errorf("metadata root: network: %w", err)
	}
	if len(r.Packs) == 0 {
		return nil, errors.New("metadata root names no content pack")
	}
	if r.GCGrace != "" {
		if g, err := time.ParseDuration(r.GCGrace); err != nil || g < 0 {
			return nil, fmt.Errorf("metadata root: gcGrace %q is not a duration like 168h0m0s", r.GCGrace)
		}
	}
	for _, p := range r.Packs {
		if _, err := metaDigestFromRef(p.Ref); err != nil {
			return nil, fmt.Errorf("metadata root: pack: %w", err)
		}
	}
	return &r, nil
}

// loadRoot reads the chain a format 3 root names (root itself decoded) into a Meta.
func (t *Tree) loadRoot(r *metaRoot) (*Meta, error) {
	m, _, _, err := t.loadChain(r, nil)
	return m, err
}

// loadChain reads the chain a format 3 root names into a Meta, and returns that chain as a
// Loader keeps it. With from (a Loader's last chain), when r's chain starts with from's base,
// it reads only the packs after the prefix the two chains share, applied to a copy of from's
// content maps from which from's later packs are undone: the records the packs leave alone
// are shared with from, never modified (apply copies a repository it changes). The same chain
// as from's (a crawl's generation) shares from's maps too. The change is then against from's
// content; read whole, its Base is "".
func (t *Tree) loadChain(r *metaRoot, from *loadedChain) (*Meta, *loadedChain, *ContentChange, error) {
	m := NewMeta(r.Generation)
	m.Created, m.Source, m.Subsets = r.Created, r.Source, r.Subsets
	if r.GCGrace != "" {
		// decodeRoot checked it.
		m.GCGrace, _ = time.ParseDuration(r.GCGrace)
	}
	js, err := t.readMetaFile(r.Network.Ref, r.Generation)
	if err != nil {
		return nil, nil, nil, err
	}
	var n metaNetwork
	if err := decodeMetaDoc(js, metaKindNetwork, &n); err != nil {
		return nil, nil, nil, &MetaFileError{path.Join(MetaDir, r.Network.Ref), r.Generation, err}
	}
	m.Origin, m.Mirrors, m.MinMirrors, m.Regions, m.VariantSets = n.Origin, n.Mirrors, n.MinMirrors, n.Regions, n.VariantSets
	c := &loadedChain{packs: r.Packs}
	ch := &ContentChange{Chain: chainName(r.Packs)}
	if k := from.shared(r); k > 0 && k == len(from.packs) && k == len(r.Packs) {
		// The same chain (a crawl's generation): the same content, its maps shared.
		m.Repositories, m.Manifests, m.Blobs, m.Orphans = from.content.Repositories, from.content.Manifests, from.content.Blobs, from.content.Orphans
		ch.Base = ch.Chain
		c.undo = from.undo
	} else if k > 0 {
		// The largest copies side by side: at a million manifests each takes most of a second.
		var wg sync.WaitGroup
		wg.Go(func() { m.Blobs = maps.Clone(from.content.Blobs) })
		m.Repositories, m.Manifests = maps.Clone(from.content.Repositories), maps.Clone(from.content.Manifests)
		m.Orphans = maps.Clone(from.content.Orphans)
		wg.Wait()
		if m.Orphans == nil {
			m.Orphans = map[Digest]*Orphan{}
		}
		ch.Base = chainName(from.packs)
		keys := newTouched()
		for i := len(from.packs) - 1; i >= k; i-- {
			u := from.undo[i-1]
			u.revert(m)
			keys.addUndo(u)
		}
		c.undo = slices.Clip(from.undo[:k-1])
		for _, ref := range r.Packs[k:] {
			u, err := t.applyPack(m, ref, r.Generation, true)
			if err != nil {
				return nil, nil, nil, err
			}
			c.undo = append(c.undo, u)
			keys.addUndo(u)
		}
		keys.fill(ch)
	} else {
		m.Orphans = map[Digest]*Orphan{}
		for i, ref := range r.Packs {
			u, err := t.applyPack(m, ref, r.Generation, i > 0)
			if err != nil {
				return nil, nil, nil, err
			}
			if i > 0 {
				c.undo = append(c.undo, u)
			}
		}
	}
	if len(m.Orphans) == 0 {
		m.Orphans = nil
	}
	c.content = &Meta{Repositories: m.Repositories, Manifests: m.Manifests, Blobs: m.Blobs, Orphans: m.Orphans}
	return m, c, ch, nil
}

// applyPack reads the pack ref names and applies it to m's content, recording what it
// replaced when undoable (a delta, which a later chain may undo).
func (t *Tree) applyPack(m *Meta, ref metaFileRef, generation uint64, undoable bool) (*packUndo, error) {
	p, err := t.readPack(ref.Ref, generation)
	if err != nil {
		return nil, err
	}
	var u *packUndo
	if undoable {
		u = &packUndo{}
	}
	if err := p.applyTo(m, u); err != nil {
		return nil, &MetaFileError{path.Join(MetaDir, ref.Ref), generation, err}
	}
	return u, nil
}

// chainName identifies a pack chain: its packs' names, in order.
func chainName(packs []metaFileRef) string {
	names := make([]string, len(packs))
	for i, p := range packs {
		names[i] = p.Ref
	}
	return strings.Join(names, " ")
}

// loadedChain is a pack chain and the content it gives (a Meta's content maps, read-only),
// with what each delta replaced: undo[i] undoes packs[i+1].
type loadedChain struct {
	packs   []metaFileRef
	content *Meta
	undo    []*packUndo
}

// shared returns how many packs r's chain shares with c's, from the start: 0 when c is nil or
// the chains have different bases (c's content is then of no use).
func (c *loadedChain) shared(r *metaRoot) int {
	if c == nil {
		return 0
	}
	k := 0
	for k < len(c.packs) && k < len(r.Packs) && r.Packs[k].Ref == c.packs[k].Ref {
		k++
	}
	return k
}

// packUndo is what a delta pack replaced in the content it was applied to: every key it
// dropped or set, with the record the key had before (nil: none). It holds the replaced
// records, no more than the pack's keys, for as long as its chain is a Loader's last.
type packUndo struct {
	manifests map[Digest]*Manifest
	blobs     map[Digest]*Blob
	orphans   map[Digest]*Orphan
	repos     map[string]*Repository
}

// keepKeys records in *u the record cur has for each key of keys (nil: none), unless *u has
// the key's record already: the record from before the pack.
func keepKeys[K comparable, V any](u *map[K]*V, cur map[K]*V, keys ...iter.Seq[K]) {
	for _, seq := range keys {
		for k := range seq {
			if *u == nil {
				*u = map[K]*V{}
			}
			if _, ok := (*u)[k]; !ok {
				(*u)[k] = cur[k]
			}
		}
	}
}

// revert puts back in m's content what u's pack replaced.
func (u *packUndo) revert(m *Meta) {
	put(m.Manifests, u.manifests)
	put(m.Blobs, u.blobs)
	put(m.Orphans, u.orphans)
	put(m.Repositories, u.repos)
}

// put sets dst's records to those of old, deleting the keys old records as nil.
func put[K comparable, V any](dst, old map[K]*V) {
	for k, v := range old {
		if v == nil {
			delete(dst, k)
		} else {
			dst[k] = v
		}
	}
}

// A ContentChange is what a Loader's Load changed in the content (repositories, manifests,
// blobs) against the content of a previous Load: every key the packs it read or undid set
// or dropped, once each. That is a superset of the keys whose records differ; the records
// of every other key are the very records of that previous content.
type ContentChange struct {
	// Chain identifies the content loaded (its packs' names), Base the content the change
	// is against: "" when the content was read whole, the keys then empty.
	Chain, Base  string
	Repositories []string
	Manifests    []Digest
	Blobs        []Digest
}

// addUndo adds the keys u records: those its pack set or dropped.
func (t *touched) addUndo(u *packUndo) {
	touch(t.manifests, nil, u.manifests)
	touch(t.blobs, nil, u.blobs)
	touch(t.orphans, nil, u.orphans)
	touch(t.repos, nil, u.repos)
}

// fill sets ch's keys to t's (every key once, sorted).
func (t *touched) fill(ch *ContentChange) {
	ch.Repositories = slices.Sorted(maps.Keys(t.repos))
	ch.Manifests = slices.SortedFunc(maps.Keys(t.manifests), compareDigests)
	ch.Blobs = slices.SortedFunc(maps.Keys(t.blobs), compareDigests)
}

// Loader reads a tree's successive generations for a reader that serves one while it reads
// the next (serve). It keeps the content of the last format 3 generation it read, so that
// reading the next decodes only the network file and the packs that generation's chain does
// not share with the last one (after a crawl: none; after a promotion: one small delta, or
// the newest deltas merged), undoing the last chain's packs after the shared ones, and shares
// every record they leave alone. The Metas it returns share those records with each other:
// they are read-only. A chain on another base (a base rewritten, another tree's metadata) is
// read whole. Calls are serialized.
type Loader struct {
	tree *Tree
	mu   sync.Mutex
	last *loadedChain
}

// NewLoader returns a Loader of t's generations.
func (t *Tree) NewLoader() *Loader { return &Loader{tree: t} }

// Load reads the current generation's metadata, like Tree.Load, and what its content changed
// against the content of the Loader's previous Load (nil for a format 1 or 2 generation).
func (l *Loader) Load() (*Meta, Stamp, *ContentChange, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	m, s, c, ch, err := l.tree.load(l.last)
	if err != nil {
		return nil, Stamp{}, nil, err
	}
	l.last = c
	return m, s, ch, nil
}

// apply applies the pack to m's content.
func (p *metaPack) apply(m *Meta) error { return p.applyTo(m, nil) }

// applyTo applies the pack to m's content, recording in u (unless nil) what it replaces.
func (p *metaPack) applyTo(m *Meta, u *packUndo) error {
	if u != nil {
		keepKeys(&u.manifests, m.Manifests, slices.Values(p.DropManifests), maps.Keys(p.Manifests))
		keepKeys(&u.blobs, m.Blobs, slices.Values(p.DropBlobs), maps.Keys(p.Blobs))
		keepKeys(&u.orphans, m.Orphans, slices.Values(p.DropOrphans), maps.Keys(p.Orphans))
		keepKeys(&u.repos, m.Repositories, slices.Values(p.DropRepositories), maps.Keys(p.Repositories), maps.Keys(p.RepositoryChanges))
	}
	for _, d := range p.DropManifests {
		delete(m.Manifests, d)
	}
	for _, d := range p.DropBlobs {
		delete(m.Blobs, d)
	}
	for _, d := range p.DropOrphans {
		delete(m.Orphans, d)
	}
	for _, n := range p.DropRepositories {
		delete(m.Repositories, n)
	}
	var err error
	if m.Manifests, err = upsert("manifest", m.Manifests, p.Manifests); err != nil {
		return err
	}
	if m.Blobs, err = upsert("blob", m.Blobs, p.Blobs); err != nil {
		return err
	}
	if m.Orphans, err = upsert("orphan", m.Orphans, p.Orphans); err != nil {
		return err
	}
	if m.Repositories, err = upsert("repository", m.Repositories, p.Repositories); err != nil {
		return err
	}
	for n, c := range p.RepositoryChanges {
		r := m.Repositories[n]
		if r == nil || c == nil {
			return fmt.Errorf("pack changes repository %s, which the content before it lacks", n)
		}
		// Copied, never changed in place: a Loader's Metas share the repositories a pack
		// leaves alone.
		nr := *r
		c.apply(&nr)
		m.Repositories[n] = &nr
	}
	return nil
}

// upsert adds or replaces the records of src in dst and returns dst; a null record is an
// error. An empty dst (a base pack's, applied first) is replaced by src itself, which the
// pack gives up: the records are not inserted a second time.
func upsert[K comparable, V any](what string, dst, src map[K]*V) (map[K]*V, error) {
	if len(dst) == 0 && len(src) > 0 {
		for k, v := range src {
			if v == nil {
				return nil, fmt.Errorf("pack: %s %v is null", what, k)
			}
		}
		return src, nil
	}
	for k, v := range src {
		if v == nil {
			return nil, fmt.Errorf("pack: %s %v is null", what, k)
		}
		dst[k] = v
	}
	return dst, nil
}

func (c *repoChange) apply(r *Repository) {
	if len(c.Untag) > 0 || len(c.Tags) > 0 {
		r.Tags = maps.Clone(r.Tags)
		if r.Tags == nil {
			r.Tags = map[string]Digest{}
		}
	}
	for _, tag := range c.Untag {
		delete(r.Tags, tag)
	}
	maps.Copy(r.Tags, c.Tags)
	r.Manifests = c.Manifests.apply(r.Manifests)
	r.Blobs = c.Blobs.apply(r.Blobs)
	r.Retiring = c.Retiring.apply(r.Retiring)
	r.RetiringBlobs = c.RetiringBlobs.apply(r.RetiringBlobs)
	if len(c.DropReferrers) > 0 || len(c.Referrers) > 0 {
		r.Referrers = maps.Clone(r.Referrers)
		if r.Referrers == nil {
			r.Referrers = map[Digest][]Descriptor{}
		}
	}
	for _, d := range c.DropReferrers {
		delete(r.Referrers, d)
	}
	maps.Copy(r.Referrers, c.Referrers)
	if c.Archived != nil {
		r.Archived = *c.Archived
	}
	if c.Removed != nil {
		r.Removed = *c.Removed
	}
}

// apply returns list with the change applied: sorted, without duplicates. A nil change
// returns list.
func (c *listChange) apply(list []Digest) []Digest {
	if c == nil {
		return list
	}
	drop := make(map[Digest]bool, len(c.Drop))
	for _, d := range c.Drop {
		drop[d] = true
	}
	out := make([]Digest, 0, len(list)+len(c.Add))
	for _, d := range list {
		if !drop[d] {
			out = append(out, d)
		}
	}
	out = append(out, c.Add...)
	slices.SortFunc(out, compareDigests)
	return slices.Compact(out)
}

func compareDigests(a, b Digest) int { return cmp.Compare(a.s, b.s) }

// touched is what a pack (or a run of packs) changes: the keys it drops or sets. A pack that
// brings some content to a Meta's is rebuilt from the keys it touched and that Meta
// (buildPack): a key the Meta has is set to its value, another is dropped. So a run of packs
// merges into one from the union of their touched keys and the content after them.
type touched struct {
	manifests, blobs, orphans map[Digest]bool
	repos                     map[string]bool // replaced or dropped whole
	repoParts                 map[string]*repoTouched
}

// repoTouched is what changes of one repository touched.
type repoTouched struct {
	tags              map[string]bool
	lists             [4]map[Digest]bool // Manifests, Blobs, Retiring, RetiringBlobs
	referrers         map[Digest]bool
	archived, removed bool
}

func newTouched() *touched {
	return &touched{manifests: map[Digest]bool{}, blobs: map[Digest]bool{}, orphans: map[Digest]bool{},
		repos: map[string]bool{}, repoParts: map[string]*repoTouched{}}
}

func (t *touched) part(name string) *repoTouched {
	rt := t.repoParts[name]
	if rt == nil {
		rt = &repoTouched{tags: map[string]bool{}, referrers: map[Digest]bool{}}
		for i := range rt.lists {
			rt.lists[i] = map[Digest]bool{}
		}
		t.repoParts[name] = rt
	}
	return rt
}

// clone returns a copy of t that shares no map with it.
func (t *touched) clone() *touched {
	c := &touched{manifests: maps.Clone(t.manifests), blobs: maps.Clone(t.blobs), orphans: maps.Clone(t.orphans),
		repos: maps.Clone(t.repos), repoParts: make(map[string]*repoTouched, len(t.repoParts))}
	for n, rt := range t.repoParts {
		ct := *rt
		ct.tags, ct.referrers = maps.Clone(rt.tags), maps.Clone(rt.referrers)
		for i := range rt.lists {
			ct.lists[i] = maps.Clone(rt.lists[i])
		}
		c.repoParts[n] = &ct
	}
	return c
}

func (t *touched) empty() bool {
	return len(t.manifests)+len(t.blobs)+len(t.orphans)+len(t.repos)+len(t.repoParts) == 0
}

// touch adds to set the keys dropped and the keys of the records set.
func touch[K comparable, V any](set map[K]bool, dropped []K, records map[K]V) {
	for _, k := range dropped {
		set[k] = true
	}
	for k := range records {
		set[k] = true
	}
}

// addPack adds what p touches.
func (t *touched) addPack(p *metaPack) {
	touch(t.manifests, p.DropManifests, p.Manifests)
	touch(t.blobs, p.DropBlobs, p.Blobs)
	touch(t.orphans, p.DropOrphans, p.Orphans)
	touch(t.repos, p.DropRepositories, p.Repositories)
	for n, c := range p.RepositoryChanges {
		rt := t.part(n)
		touch(rt.tags, c.Untag, c.Tags)
		for i, lc := range []*listChange{c.Manifests, c.Blobs, c.Retiring, c.RetiringBlobs} {
			if lc != nil {
				for _, d := range append(slices.Clip(lc.Add), lc.Drop...) {
					rt.lists[i][d] = true
				}
			}
		}
		touch(rt.referrers, c.DropReferrers, c.Referrers)
		rt.archived = rt.archived || c.Archived != nil
		rt.removed = rt.removed || c.Removed != nil
	}
}

// buildPack returns the pack that sets every key t touches to its value in m, or drops it.
func (t *touched) buildPack(m *Meta) *metaPack {
	p := &metaPack{Format: 3, Kind: metaKindPack}
	for d := range t.manifests {
		if v := m.Manifests[d]; v != nil {
			setKey(&p.Manifests, d, v)
		} else {
			p.DropManifests = append(p.DropManifests, d)
		}
	}
	for d := range t.blobs {
		if v := m.Blobs[d]; v != nil {
			setKey(&p.Blobs, d, v)
		} else {
			p.DropBlobs = append(p.DropBlobs, d)
		}
	}
	for d := range t.orphans {
		if v := m.Orphans[d]; v != nil {
			setKey(&p.Orphans, d, v)
		} else {
			p.DropOrphans = append(p.DropOrphans, d)
		}
	}
	for n := range t.repos {
		if r := m.Repositories[n]; r != nil {
			setKey(&p.Repositories, n, r)
		} else {
			p.DropRepositories = append(p.DropRepositories, n)
		}
	}
	for n, rt := range t.repoParts {
		if t.repos[n] {
			continue
		}
		r := m.Repositories[n]
		if r == nil {
			p.DropRepositories = append(p.DropRepositories, n)
			continue
		}
		c := &repoChange{}
		for tag := range rt.tags {
			if d, ok := r.Tags[tag]; ok {
				setKey(&c.Tags, tag, d)
			} else {
				c.Untag = append(c.Untag, tag)
			}
		}
		for i, list := range [][]Digest{r.Manifests, r.Blobs, r.Retiring, r.RetiringBlobs} {
			if len(rt.lists[i]) == 0 {
				continue
			}
			in := make(map[Digest]bool, len(list))
			for _, d := range list {
				in[d] = true
			}
			lc := &listChange{}
			for d := range rt.lists[i] {
				if in[d] {
					lc.Add = append(lc.Add, d)
				} else {
					lc.Drop = append(lc.Drop, d)
				}
			}
			slices.SortFunc(lc.Add, compareDigests)
			slices.SortFunc(lc.Drop, compareDigests)
			*[...]**listChange{&c.Manifests, &c.Blobs, &c.Retiring, &c.RetiringBlobs}[i] = lc
		}
		for s := range rt.referrers {
			if v, ok := r.Referrers[s]; ok {
				setKey(&c.Referrers, s, v)
			} else {
				c.DropReferrers = append(c.DropReferrers, s)
			}
		}
		// Never null: a null would read as no change.
		if rt.archived {
			a := r.Archived
			if a == nil {
				a = []string{}
			}
			c.Archived = &a
		}
		if rt.removed {
			rm := r.Removed
			if rm == nil {
				rm = map[string]time.Time{}
			}
			c.Removed = &rm
		}
		slices.Sort(c.Untag)
		slices.SortFunc(c.DropReferrers, compareDigests)
		setKey(&p.RepositoryChanges, n, c)
	}
	slices.SortFunc(p.DropManifests, compareDigests)
	slices.SortFunc(p.DropBlobs, compareDigests)
	slices.SortFunc(p.DropOrphans, compareDigests)
	slices.Sort(p.DropRepositories)
	return p
}

func setKey[K comparable, V any](m *map[K]V, k K, v V) {
	if *m == nil {
		*m = map[K]V{}
	}
	(*m)[k] = v
}

// contentState is what the writer diffs a new Meta's content against: the content of the
// live generation when it was loaded, either copied (LoadForUpdate: the caller may change the
// Meta it got) or shared (LoadForSuccessor, and a chain liveChain reads itself: nobody
// changes it).
type contentState struct {
	root      string // the stamp's meta ref it was loaded from
	subsets   []string
	manifests map[Digest]*Manifest
	blobs     map[Digest]*Blob
	orphans   map[Digest]*Orphan
	repos     map[string]*Repository
}

// shared returns m's content, not copied: m's content must not change while it is kept.
func shared(root string, m *Meta) *contentState {
	return &contentState{root: root, subsets: slices.Clone(m.Subsets), manifests: m.Manifests, blobs: m.Blobs, orphans: m.Orphans, repos: m.Repositories}
}

// snapshot copies m's content.
func snapshot(root string, m *Meta) *contentState {
	s := &contentState{root: root, subsets: slices.Clone(m.Subsets), manifests: make(map[Digest]*Manifest, len(m.Manifests)),
		blobs: make(map[Digest]*Blob, len(m.Blobs)), orphans: make(map[Digest]*Orphan, len(m.Orphans)),
		repos: make(map[string]*Repository, len(m.Repositories))}
	for d, v := range m.Manifests {
		c := *v // the bytes are shared, not copied: a Meta's manifest bytes are never changed in place
		s.manifests[d] = &c
	}
	for d, v := range m.Blobs {
		c := *v
		s.blobs[d] = &c
	}
	for d, v := range m.Orphans {
		c := *v
		s.orphans[d] = &c
	}
	for n, r := range m.Repositories {
		s.repos[n] = &Repository{Tags: maps.Clone(r.Tags), Manifests: slices.Clone(r.Manifests), Blobs: slices.Clone(r.Blobs),
			Referrers: maps.Clone(r.Referrers), Retiring: slices.Clone(r.Retiring), RetiringBlobs: slices.Clone(r.RetiringBlobs),
			Archived: slices.Clone(r.Archived), Removed: maps.Clone(r.Removed)}
		for k, v := range s.repos[n].Referrers {
			s.repos[n].Referrers[k] = slices.Clone(v)
		}
	}
	return s
}

// diff returns the keys whose values differ between s and m's content.
func (s *contentState) diff(m *Meta) *touched {
	t := newTouched()
	// The time goes to memory, not to instructions: each record a lookup in another map. The
	// walks are split into parts (the blobs and the manifests each in two, by Digest.side)
	// that two workers take in turn, the largest first, each part writing only its own
	// result. Each walk only reads s and m.
	type keys struct {
		differ map[Digest]bool
		found  int // m's keys s has: fewer than s's, and s has keys m lacks
	}
	var blobs, manifests [2]keys
	var orphansFound, reposFound int
	parts := []func(){
		func() { blobs[0].differ, blobs[0].found = s.diffBlobs(m, 0) },
		func() { blobs[1].differ, blobs[1].found = s.diffBlobs(m, 1) },
		func() { manifests[0].differ, manifests[0].found = s.diffManifests(m, 0) },
		func() { manifests[1].differ, manifests[1].found = s.diffManifests(m, 1) },
		func() { reposFound = s.diffRepos(m, t) },
		func() { t.orphans, orphansFound = s.diffOrphans(m) },
	}
	var next atomic.Int32
	work := func() {
		for i := int(next.Add(1)) - 1; i < len(parts); i = int(next.Add(1)) - 1 {
			parts[i]()
		}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		work()
	}()
	work()
	<-done
	// Each old map is walked again only when some of its keys are not in the new one: a
	// promotion removes little, a crawl nothing.
	t.blobs, t.manifests = blobs[0].differ, manifests[0].differ
	maps.Copy(t.blobs, blobs[1].differ)
	maps.Copy(t.manifests, manifests[1].differ)
	if blobs[0].found+blobs[1].found < len(s.blobs) {
		for d := range s.blobs {
			if m.Blobs[d] == nil {
				t.blobs[d] = true
			}
		}
	}
	if manifests[0].found+manifests[1].found < len(s.manifests) {
		for d := range s.manifests {
			if m.Manifests[d] == nil {
				t.manifests[d] = true
			}
		}
	}
	if orphansFound < len(s.orphans) {
		for d := range s.orphans {
			if m.Orphans[d] == nil {
				t.orphans[d] = true
			}
		}
	}
	if reposFound < len(s.repos) {
		for n := range s.repos {
			if m.Repositories[n] == nil {
				t.repos[n] = true
			}
		}
	}
	return t
}

// diffBlobs is diff's part for the blobs of m on side (Digest.side): the keys of those that
// differ from s's or that s lacks, and how many of them s has.
func (s *contentState) diffBlobs(m *Meta, side byte) (map[Digest]bool, int) {
	differ, found := map[Digest]bool{}, 0
	copied := m.copiedFromMap(s.blobs)
	for d, v := range m.Blobs {
		if d.side() != side {
			continue
		}
		var o *Blob
		if copied {
			o = m.copiedFrom(d, v) // s.blobs[d], without the lookup
		}
		ok := o != nil
		if !ok {
			o, ok = s.blobs[d]
		}
		if ok {
			found++
		}
		if !ok || !blobEqual(*o, *v) {
			differ[d] = true
		}
	}
	return differ, found
}

// diffManifests is diffBlobs for the manifests.
func (s *contentState) diffManifests(m *Meta, side byte) (map[Digest]bool, int) {
	differ, found := map[Digest]bool{}, 0
	for d, v := range m.Manifests {
		if d.side() != side {
			continue
		}
		// The bytes are named by their digest, but a Meta could still hold others (the
		// redirector refuses them); unchanged bytes are the same array, compared at once.
		o, ok := s.manifests[d]
		if ok {
			found++
		}
		if !ok || o != v && (o.MediaType != v.MediaType || !bytes.Equal(o.Data, v.Data)) {
			differ[d] = true
		}
	}
	return differ, found
}

// diffOrphans is diffBlobs for the orphans, all of them.
func (s *contentState) diffOrphans(m *Meta) (map[Digest]bool, int) {
	differ, found := map[Digest]bool{}, 0
	for d, v := range m.Orphans {
		o, ok := s.orphans[d]
		if ok {
			found++
		}
		if !ok || o.Size != v.Size || o.Since != v.Since || o.Subsets != v.Subsets || !o.Unreferenced.Equal(v.Unreferenced) {
			differ[d] = true
		}
	}
	return differ, found
}

// diffRepos records in t's repos and repoParts the repositories of m that differ from s's
// (diffRepo) or that s lacks, and returns how many of them s has.
func (s *contentState) diffRepos(m *Meta, t *touched) int {
	found := 0
	for n, r := range m.Repositories {
		o := s.repos[n]
		if o == nil {
			t.repos[n] = true
			continue
		}
		found++
		diffRepo(o, r, func() *repoTouched { return t.part(n) })
	}
	return found
}

func blobEqual(a, b Blob) bool {
	return a.Size == b.Size && a.Since == b.Since && a.Subsets == b.Subsets && a.Former == b.Former &&
		a.Retired.Equal(b.Retired) && a.Left.Equal(b.Left)
}

// diffRepo records in part() what differs between repositories o and r.
func diffRepo(o, r *Repository, part func() *repoTouched) {
	for tag, d := range r.Tags {
		if od, ok := o.Tags[tag]; !ok || od != d {
			part().tags[tag] = true
		}
	}
	for tag := range o.Tags {
		if _, ok := r.Tags[tag]; !ok {
			part().tags[tag] = true
		}
	}
	olds := [][]Digest{o.Manifests, o.Blobs, o.Retiring, o.RetiringBlobs}
	for i, list := range [][]Digest{r.Manifests, r.Blobs, r.Retiring, r.RetiringBlobs} {
		if slices.Equal(olds[i], list) {
			continue
		}
		in := make(map[Digest]int, len(list))
		for _, d := range olds[i] {
			in[d] |= 1
		}
		for _, d := range list {
			in[d] |= 2
		}
		for d, v := range in {
			if v != 3 {
				part().lists[i][d] = true
			}
		}
		if !slices.IsSortedFunc(list, compareDigests) {
			// The reader keeps lists sorted: replace every element so that the pack gives
			// the list as the reader would. (The generator sorts them.)
			for _, d := range list {
				part().lists[i][d] = true
			}
		}
	}
	for s, v := range r.Referrers {
		if ov, ok := o.Referrers[s]; !ok || !reflect.DeepEqual(ov, v) {
			part().referrers[s] = true
		}
	}
	for s := range o.Referrers {
		if _, ok := r.Referrers[s]; !ok {
			part().referrers[s] = true
		}
	}
	if !slices.Equal(o.Archived, r.Archived) {
		part().archived = true
	}
	if !maps.EqualFunc(o.Removed, r.Removed, time.Time.Equal) {
		part().removed = true
	}
}

// all touches every key of m's content: the pack it builds is a base.
func all(m *Meta) *touched {
	t := newTouched()
	for d := range m.Manifests {
		t.manifests[d] = true
	}
	for d := range m.Blobs {
		t.blobs[d] = true
	}
	for d := range m.Orphans {
		t.orphans[d] = true
	}
	for n := range m.Repositories {
		t.repos[n] = true
	}
	return t
}

// encodeMetaDoc returns the compressed bytes of a metadata document and their digest.
// encoding/json sorts map keys, so equal content gives equal bytes. A pack is encoded a
// record at a time (encodePack): its JSON, a base's the size of the tree's manifests and
// more, is never whole in memory.
func encodeMetaDoc(v any) ([]byte, Digest, error) {
	var buf bytes.Buffer
	if err := encodeMetaTo(&buf, v); err != nil {
		return nil, Digest{}, err
	}
	return buf.Bytes(), DigestOf("sha256", buf.Bytes()), nil
}

// encodeMetaTo writes the compressed bytes of a metadata document to w (encodeMetaDoc).
func encodeMetaTo(w io.Writer, v any) error {
	zw, err := zstd.NewWriter(w, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderConcurrency(1))
	if err != nil {
		return err
	}
	if p, ok := v.(*metaPack); ok {
		err = encodePack(zw, p)
	} else {
		err = json.NewEncoder(zw).Encode(v)
	}
	if err != nil {
		zw.Close()
		return fmt.Errorf("encoding metadata: %w", err)
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("compressing metadata: %w", err)
	}
	return nil
}

// encodePack writes p as json.NewEncoder(w).Encode(p) does, byte for byte (fields in order,
// empty ones omitted, map keys sorted, a final newline), but marshals one record at a time.
func encodePack(w io.Writer, p *metaPack) error {
	e := &jsonStream{w: bufio.NewWriterSize(w, 64<<10)}
	e.w.WriteByte('{')
	e.field("format", p.Format)
	e.field("kind", p.Kind)
	for _, f := range []struct {
		name string
		list []Digest
	}{{"dropManifests", p.DropManifests}, {"dropBlobs", p.DropBlobs}, {"dropOrphans", p.DropOrphans}} {
		if len(f.list) > 0 {
			e.field(f.name, f.list)
		}
	}
	if len(p.DropRepositories) > 0 {
		e.field("dropRepositories", p.DropRepositories)
	}
	streamMap(e, "manifests", p.Manifests, Digest.String)
	streamMap(e, "blobs", p.Blobs, Digest.String)
	streamMap(e, "orphans", p.Orphans, Digest.String)
	streamMap(e, "repositories", p.Repositories, func(n string) string { return n })
	streamMap(e, "repositoryChanges", p.RepositoryChanges, func(n string) string { return n })
	e.w.WriteString("}\n")
	if e.err != nil {
		return e.err
	}
	return e.w.Flush()
}

// jsonStream writes a JSON object's members one at a time; the first error sticks.
type jsonStream struct {
	w      *bufio.Writer
	fields int
	err    error
}

// raw writes v's JSON.
func (e *jsonStream) raw(v any) {
	if e.err != nil {
		return
	}
	b, err := json.Marshal(v)
	if err != nil {
		e.err = err
		return
	}
	if _, err := e.w.Write(b); err != nil {
		e.err = err
	}
}

// key writes the member name k (after a comma but for the first member).
func (e *jsonStream) key(first bool, k string) {
	if !first {
		e.w.WriteByte(',')
	}
	e.raw(k)
	e.w.WriteByte(':')
}

func (e *jsonStream) field(name string, v any) {
	e.key(e.fields == 0, name)
	e.fields++
	e.raw(v)
}

// streamMap writes m as the member name (omitted when empty), its keys named by key and in
// the order encoding/json sorts them.
func streamMap[K comparable, V any](e *jsonStream, name string, m map[K]V, key func(K) string) {
	if len(m) == 0 {
		return
	}
	e.key(e.fields == 0, name)
	e.fields++
	keys := make([]K, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b K) int { return strings.Compare(key(a), key(b)) })
	e.w.WriteByte('{')
	for i, k := range keys {
		e.key(i == 0, key(k))
		e.raw(m[k])
	}
	e.w.WriteByte('}')
}

// writeMetaDoc writes a metadata document into regmirror/meta/ (unless a file of that name,
// hence that content, is there) and returns its reference. It is compressed into a temporary
// file as it is encoded, its digest taken on the way: a base pack's bytes (tens of megabytes
// at scale) are never whole in memory.
func (t *Tree) writeMetaDoc(v any) (metaFileRef, error) {
	f, err := CreateFile(t.Path(path.Join(MetaFilesDir, "new.json.zst"))) // named once its digest is known
	if err != nil {
		return metaFileRef{}, fmt.Errorf("writing metadata: %w", err)
	}
	defer f.Abort()
	h := sha256.New()
	if err := encodeMetaTo(io.MultiWriter(f, h), v); err != nil {
		return metaFileRef{}, err
	}
	d := digestOfHash("sha256", h)
	ref, rel := metaFileRef{Ref: metaRef(d), Size: f.written}, MetaPath(d)
	if t.intactMeta(rel, d) {
		return ref, nil // there already
	}
	if err := f.CommitAs(t.Path(rel)); err != nil {
		return metaFileRef{}, fmt.Errorf("writing metadata: %w", err)
	}
	t.held(rel, d.Hex())
	return ref, nil
}

// writeEncoded writes the encoded metadata document raw, of digest d, as writeMetaDoc does.
func (t *Tree) writeEncoded(raw []byte, d Digest) (metaFileRef, error) {
	ref, rel := metaFileRef{Ref: metaRef(d), Size: int64(len(raw))}, MetaPath(d)
	if t.intactMeta(rel, d) {
		return ref, nil // there already
	}
	if err := WriteFile(t.Path(rel), raw); err != nil {
		return metaFileRef{}, fmt.Errorf("writing metadata: %w", err)
	}
	t.held(rel, d.Hex())
	return ref, nil
}

// intactMeta reports whether the metadata file rel is there and holds the bytes of digest d,
// its name's.
func (t *Tree) intactMeta(rel string, d Digest) bool {
	b, unmap, err := MapFile(t.Path(rel))
	if err != nil {
		return false
	}
	defer unmap()
	return t.holdsNamed(rel, b, d.Hex())
}

// contentChange is the change of a Meta's content since the live generation's: that content
// (prev: what the live publication was rendered from) and the keys that differ from it, or
// more (touched).
type contentChange struct {
	prev    *contentState
	touched *touched
}

// updateBase is what LoadForUpdate keeps for the next publish: the content loaded.
type updateBase = atomic.Pointer[contentState]

// LoadForUpdate is Load for a caller that publishes a successor (crawl): it also keeps a
// copy of the loaded content, so that the publish writes only what changed (a content pack)
// without reading the tree's metadata again. The caller may change the Meta it gets.
func (t *Tree) LoadForUpdate() (*Meta, Stamp, error) {
	m, s, err := t.Load()
	if err != nil {
		return nil, Stamp{}, err
	}
	t.base.Store(snapshot(s.Meta, m))
	return m, s, nil
}

// LoadForSuccessor is LoadForUpdate for a caller that builds its successor as a new Meta
// (generate): the content of the Meta it gets (its Manifests, Blobs, Orphans and
// Repositories maps and the records in them) is read-only, and the tree keeps it as it is
// rather than a copy, which at scale is tens of MiB. The other fields may change.
func (t *Tree) LoadForSuccessor() (*Meta, Stamp, error) {
	m, s, err := t.Load()
	if err != nil {
		return nil, Stamp{}, err
	}
	t.base.Store(shared(s.Meta, m))
	return m, s, nil
}

// startMeta starts writing m as a format 3 metadata root, with the network file and content
// packs it names, on a goroutine of its own, and returns at once the change of m's content
// since the live generation's (nil without a usable live format 3 generation: its diff is
// made before startMeta returns), and what waits for the files and returns the root's
// digest and the references of the files it names (it may be called again). The content packs
// are those of the live generation plus one delta (none if the content did not change),
// compacted: see the constants above. Without a usable live format 3 generation it writes a
// fresh base. m must not change until the wait returns; the change is not changed by the
// writer, so the caller may read it meanwhile.
func (t *Tree) startMeta(m *Meta) (*contentChange, func() (Digest, []string, error)) {
	chain, prev := t.liveChain()
	var change *contentChange
	if prev != nil && len(chain) > 0 {
		touched := t.takeEarly(m, chain, prev)
		if touched == nil {
			touched = prev.diff(m)
		}
		change = &contentChange{prev: prev, touched: touched}
	}
	var (
		d     Digest
		needs []string
		err   error
	)
	done := make(chan struct{})
	go func() {
		defer close(done)
		d, needs, err = t.writeMetaFiles(m, chain, change)
	}()
	return change, func() (Digest, []string, error) {
		<-done
		return d, needs, err
	}
}

// earlyDiff is a content diff StartDiff started: of m against prev, the live chain's.
type earlyDiff struct {
	m       *Meta
	chain   []metaFileRef
	prev    *contentState
	touched *touched
	done    chan struct{} // closed once the fields above are set
}

// StartDiff starts, on a goroutine of its own, the comparison of m's content with the live
// generation's that m's publish makes first (PublishWith), for a caller with other work to
// do between making m and publishing it (generate: the manifests written, the mirror
// network applied). From the call on, m's content (Repositories, Manifests, Blobs, Orphans)
// must not change. The publish of m takes the result, unless the live generation changed
// meanwhile; any other publish drops it.
func (t *Tree) StartDiff(m *Meta) {
	e := &earlyDiff{m: m, done: make(chan struct{})}
	t.early.Store(e)
	go func() {
		defer close(e.done)
		e.chain, e.prev = t.liveChain()
		if e.prev != nil && len(e.chain) > 0 {
			e.touched = e.prev.diff(m)
		}
	}()
}

// takeEarly returns the diff StartDiff started for m, once done, when it compared m with
// the content of the live chain (prev, chain): nil when there is none to take.
func (t *Tree) takeEarly(m *Meta, chain []metaFileRef, prev *contentState) *touched {
	e := t.early.Swap(nil)
	if e == nil || e.m != m {
		return nil
	}
	<-e.done
	if e.prev == nil || e.prev.root != prev.root || !slices.Equal(e.chain, chain) {
		return nil // the live generation changed since (a content is named by its root)
	}
	return e.touched
}

// writeMetaFiles writes startMeta's files: the network file, the packs of m's content (the
// live chain with change appended, and compacted, or a fresh base when change is nil) and
// the root naming them.
func (t *Tree) writeMetaFiles(m *Meta, chain []metaFileRef, change *contentChange) (Digest, []string, error) {
	net, err := t.writeMetaDoc(&metaNetwork{Format: 3, Kind: metaKindNetwork, Origin: m.Origin, Mirrors: m.Mirrors,
		MinMirrors: m.MinMirrors, Regions: m.Regions, VariantSets: m.VariantSets})
	if err != nil {
		return Digest{}, nil, err
	}
	var packs []metaFileRef
	switch {
	case change == nil:
		packs, err = t.writeBase(m)
	case change.touched.empty():
		packs = chain
	default:
		packs, err = t.appendDelta(m, chain, change.touched)
	}
	if err != nil {
		return Digest{}, nil, err
	}
	raw, d, err := encodeMetaDoc(&metaRoot{Format: 3, Kind: metaKindRoot, Generation: m.Generation, Created: m.Created,
		Source: m.Source, Subsets: m.Subsets, GCGrace: graceText(m.GCGrace), Network: net, Packs: packs})
	if err != nil {
		return Digest{}, nil, err
	}
	if err := WriteFile(t.Path(MetaPath(d)), raw); err != nil {
		return Digest{}, nil, fmt.Errorf("writing metadata: %w", err)
	}
	needs := []string{net.Ref}
	for _, p := range packs {
		needs = append(needs, p.Ref)
	}
	return d, needs, nil
}

// appendDelta is writeMetaFiles's chain once the content changed by tc: the live chain with
// a delta appended, and compacted.
func (t *Tree) appendDelta(m *Meta, chain []metaFileRef, tc *touched) ([]metaFileRef, error) {
	// Only the pack the chain keeps is written: a file no root names would be listed (the
	// file list is made before the switch) and then pruned.
	raw, d, err := encodeMetaDoc(tc.buildPack(m))
	if err != nil {
		return nil, err
	}
	// Merge the new delta with the newest deltas while their total is at least half the
	// older one: the chain's sizes then fall geometrically, so it stays short.
	run, total := len(chain), int64(len(raw))
	for run > 1 && total*2 >= chain[run-1].Size {
		run--
		total += chain[run].Size
	}
	if run < len(chain) {
		// The merged pack's keys are tc's and the older packs', in a copy: tc is the
		// change the caller reads meanwhile (startMeta).
		tc = tc.clone()
		for _, r := range chain[run:] {
			old, err := t.readPack(r.Ref, 0)
			if err != nil {
				return t.writeBase(m) // a broken chain is replaced
			}
			tc.addPack(old)
		}
		if raw, d, err = encodeMetaDoc(tc.buildPack(m)); err != nil {
			return nil, err
		}
	}
	deltas := int64(len(raw))
	for _, r := range chain[1:run] {
		deltas += r.Size
	}
	if run+1 > maxPacks || deltas*baseRewriteRatio > chain[0].Size {
		return t.writeBase(m)
	}
	ref, err := t.writeEncoded(raw, d)
	if err != nil {
		return nil, err
	}
	return append(slices.Clip(chain[:run]), ref), nil
}

func (t *Tree) writeBase(m *Meta) ([]metaFileRef, error) {
	ref, err := t.writeMetaDoc(all(m).buildPack(m))
	if err != nil {
		return nil, err
	}
	return []metaFileRef{ref}, nil
}

// liveChain returns the live generation's pack chain and content: the content kept by
// LoadForUpdate if it is the live generation's, else read from the tree. Nil if the live
// generation is not format 3 or does not load.
func (t *Tree) liveChain() ([]metaFileRef, *contentState) {
	s, err := t.ReadStamp()
	if err != nil {
		return nil, nil
	}
	js, err := t.readMetaFile(s.Meta, s.Generation)
	if err != nil {
		return nil, nil
	}
	r, err := decodeRoot(js)
	if err != nil {
		return nil, nil
	}
	if b := t.base.Load(); b != nil && b.root == s.Meta {
		return r.Packs, b
	}
	m, err := t.loadRoot(r)
	if err != nil {
		return nil, nil
	}
	return r.Packs, shared(s.Meta, m) // read here, changed by nobody
}

// MetaFiles returns the tree-relative paths of the metadata files the generation of stamp s
// needs: the file its stamp names and, for a format 3 root, the network file and the content
// packs that root names, in order. It reads only the start of an older format's file.
func (t *Tree) MetaFiles(s Stamp) ([]string, error) {
	d, err := metaDigestFromRef(s.Meta)
	if err != nil {
		return nil, err
	}
	files := []string{MetaPath(d)}
	f, err := os.Open(t.Path(MetaPath(d)))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	zr, err := zstd.NewReader(f, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(64<<20))
	if err != nil {
		return nil, err
	}
	defer zr.Close()
	head := make([]byte, 64)
	n, _ := io.ReadFull(zr, head)
	if h := peekHeader(head[:n]); h.Format != 3 { // formats 1 and 2 are one file
		if h.Format == 0 {
			return nil, fmt.Errorf("%s: not a metadata file", files[0])
		}
		return files, nil
	}
	rest, err := io.ReadAll(io.LimitReader(zr, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", files[0], err)
	}
	r, err := decodeRoot(append(head[:n], rest...))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", files[0], err)
	}
	for _, ref := range append([]metaFileRef{r.Network}, r.Packs...) {
		files = append(files, path.Join(MetaDir, ref.Ref))
	}
	return files, nil
}

// KeptMetaFiles returns the names (in regmirror/meta/) of the metadata files the tree's
// publications need: each one's root and, for a format 3 root, the network file and packs it
// names (MetaFiles). It fails if a publication's stamp or root does not read.
func (t *Tree) KeptMetaFiles() (map[string]bool, error) {
	names, err := t.Publications()
	if err != nil {
		return nil, err
	}
	keep := map[string]bool{}
	for _, n := range names {
		b, err := os.ReadFile(t.Path(path.Join(PubPath(n), PubStamp)))
		if err != nil {
			return nil, fmt.Errorf("reading publication %s: %w", n, err)
		}
		s, err := ParseStamp(b)
		if err != nil {
			return nil, fmt.Errorf("publication %s: %w", n, err)
		}
		files, err := t.MetaFiles(s)
		if err != nil {
			return nil, fmt.Errorf("publication %s: %w", n, err)
		}
		for _, f := range files {
			keep[path.Base(f)] = true
		}
	}
	return keep, nil
}

// pruneMeta removes the metadata files that no publication left needs: the live one and the
// ones kept for mirrors mid-sync (prunePub) keep theirs, so a copy that lags behind finds the
// metadata its stamp names. Files it cannot judge (a publication whose stamp or root does not
// read) are left for the next publish.
func (t *Tree) pruneMeta() {
	keep, err := t.KeptMetaFiles()
	if err != nil {
		return
	}
	dir := t.Path(MetaFilesDir)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	removed := false
	for _, e := range ents {
		name := e.Name()
		if keep[name] || strings.HasPrefix(name, TempPrefix) || !strings.HasSuffix(name, ".json.zst") {
			continue
		}
		if os.Remove(filepath.Join(dir, name)) == nil {
			removed = true
		}
	}
	if removed {
		_ = SyncDir(dir)
	}
}
