package redirector

import (
	"cmp"
	"container/list"
	"slices"
	"strconv"
	"sync"

	"github.com/regmirror/regmirror/layout"
	"golang.org/x/sync/singleflight"
)

// Regional variants are rendered, never loaded: the metadata names each variant set's mirrors,
// and a variant is rendered (layout.Renderer) when a client first asks for it.
//
// By tag (regional mode), the tagged manifest's variant in the client's set is rendered, an
// index's children first, and all of them are kept in the variant cache (bounded by bytes,
// shared by the generations: variants are content-addressed). By digest, a variant is found in
// the cache, else by rendering once the manifests of the repository asked in the client's set,
// then in the others (a scan, remembered per set and repository, within a bound): so a replica
// that never served the tag answers the children of an index another replica served, and
// every region gets the bytes of any variant digest (design.md). A variant digest the
// generation does not render (a replica a crawl apart, whose mirrors' states differ) is
// unknown, as is one of another repository.

// DefaultVariantCacheBytes bounds the rendered regional variants a server keeps.
const DefaultVariantCacheBytes = 64 << 20

const (
	// variantRefs bounds, per view, the (set, manifest) → variant digest pairs remembered for
	// tag requests (a pair is about 150 bytes).
	variantRefs = 1 << 16
	// variantScanned bounds, per view, the variant digests remembered from scans (16 bytes
	// each); a scan larger than the bound is kept alone.
	variantScanned = 1 << 21
)

// variantView renders a generation's variants with the mirrors in rotation: the generation's
// own (every mirror of its sets), or, while health probes take mirrors out, one leaving them
// out (layout.Renderer.Without). What it remembers is bounded, and safe for concurrent use.
type variantView struct {
	renderer *layout.Renderer
	// base is, for a view leaving mirrors out, the generation's view: it renders the sets
	// this one leaves no mirror out of, and its variants stay answerable by digest.
	base *variantView

	mu sync.Mutex
	// refs maps a set and canonical manifest to its variant's digest (zero: none).
	refs *lru[refKey, layout.Digest]
	// scans maps a set and repository to every variant of its manifests.
	scans    *lru[scanKey, *scanned]
	scanning singleflight.Group
}

type refKey struct {
	set   int
	canon layout.Digest
}

type scanKey struct {
	set  int
	repo *repoEntry
}

func newVariantView(r *layout.Renderer, base *variantView) *variantView {
	return &variantView{renderer: r, base: base, refs: newLRU[refKey, layout.Digest](variantRefs), scans: newLRU[scanKey, *scanned](variantScanned)}
}

// forSet is the view that renders set: the base view for a set this view leaves no mirror out
// of (the same bytes), so that what either renders is shared.
func (v *variantView) forSet(set int) *variantView {
	if v.base != nil && !v.renderer.Leaves(set) {
		return v.base
	}
	return v
}

// answers reports whether a variant rendered by view w is a variant of this view's generation.
func (v *variantView) answers(w *variantView) bool {
	return w == v || v.base != nil && w == v.base
}

// without returns the view leaving out the mirrors in down, or v when no set lists one.
func (v *variantView) without(down map[string]string) *variantView {
	w, leaves := v.renderer.Without(func(name string) bool { _, ok := down[name]; return ok })
	if !leaves {
		return v
	}
	return newVariantView(w, v)
}

// variantOf returns the variant of canonical manifest e in region reg, rendered (or cached),
// or nil when the region has none for it: the caller then serves the canonical manifest.
func (s *Server) variantOf(g *generation, reg *regionEntry, e *manifestEntry) *manifestEntry {
	if reg.variantSet < 0 || g.variants == nil {
		return nil
	}
	set := reg.variantSet
	view := g.variants.forSet(set)
	view.mu.Lock()
	d, known := view.refs.get(refKey{set, e.d})
	view.mu.Unlock()
	if known {
		if d.IsZero() {
			return nil
		}
		if v := s.variantCache.get(d); v != nil {
			return v
		}
	}
	return s.renderVariant(view, set, e.d)
}

// renderVariant renders the variant of canonical manifest canon in set, its children's first,
// keeps them all, and returns canon's (nil when it has none).
func (s *Server) renderVariant(view *variantView, set int, canon layout.Digest) *manifestEntry {
	var out *manifestEntry
	n := 0
	view.renderer.Render(set, []layout.Digest{canon}, func(c layout.Digest, v *layout.Variant) {
		n++
		e := view.keep(s.variantCache, set, c, v)
		if c == canon {
			out = e
		}
	})
	s.metrics.variantRenders.WithLabelValues("ok").Add(float64(n))
	if out == nil {
		view.mu.Lock()
		view.refs.add(refKey{set, canon}, layout.Digest{}, 1)
		view.mu.Unlock()
	}
	return out
}

// keep adds rv, the variant of canonical manifest c in set, to the cache, and remembers its
// digest.
func (v *variantView) keep(cache *variantCache, set int, c layout.Digest, rv *layout.Variant) *manifestEntry {
	e := &manifestEntry{
		answer:    newAnswer(rv.Digest.String(), rv.MediaType, rv.Data),
		d:         rv.Digest,
		mediaType: rv.MediaType,
		isList:    rv.MediaType == layout.MediaTypeOCIIndex || rv.MediaType == layout.MediaTypeDockerList,
		of:        c.String(),
		view:      v,
		persist:   v.base != nil,
	}
	cache.add(rv.Digest, e)
	v.mu.Lock()
	v.refs.add(refKey{set, c}, rv.Digest, 1)
	v.mu.Unlock()
	return e
}

// variantByDigest returns the variant with digest d of a manifest of repo, in the client's set:
// from the cache when this generation renders it, else found by scanning the repository's
// manifests once in the client's set (then rendered and kept). client resolves the client's
// region. nil when there is none.
func (s *Server) variantByDigest(g *generation, repo *repoEntry, d layout.Digest, client func() *regionEntry) *manifestEntry {
	if g.variants == nil {
		return nil
	}
	if e := s.variantCache.get(d); e != nil && e.of != "" && repo.manifests[e.of] != nil && (e.persist || g.variants.answers(e.view)) {
		return e
	}
	// The client's set first: where a variant it asks for almost always is.
	sets := make([]int, 0, g.variants.renderer.Sets())
	if reg := client(); reg != nil && reg.variantSet >= 0 {
		sets = append(sets, reg.variantSet)
	}
	for set := range g.variants.renderer.Sets() {
		if len(sets) == 0 || set != sets[0] {
			sets = append(sets, set)
		}
	}
	for _, set := range sets {
		views := []*variantView{g.variants.forSet(set)}
		if b := g.variants.base; b != nil && views[0] != b {
			views = append(views, b) // a client mid-pull that read an index before the mirrors went out
		}
		for _, view := range views {
			if canon := s.scan(view, set, repo, d); canon != nil {
				if e := s.renderVariant(view, set, canon.d); e != nil && e.d == d {
					return e
				}
			}
		}
	}
	return nil
}

// scanned is every variant of a repository's manifests in a set: the first 8 bytes of their
// digests, sorted, with their canonical manifests. A match is checked by rendering it.
type scanned struct {
	keys  []uint64
	canon []*manifestEntry
}

func digestKey(d layout.Digest) uint64 {
	h := d.Hex()
	k, _ := strconv.ParseUint(h[:min(16, len(h))], 16, 64)
	return k
}

func (sc *scanned) find(d layout.Digest) *manifestEntry {
	k := digestKey(d)
	if i, ok := slices.BinarySearch(sc.keys, k); ok {
		return sc.canon[i]
	}
	return nil
}

// scan returns the canonical manifest of repo whose variant in set (rendered by view) has
// digest d, rendering the repository's manifests in set the first time (one scan at a time per
// set and repository).
func (s *Server) scan(view *variantView, set int, repo *repoEntry, d layout.Digest) *manifestEntry {
	key := scanKey{set, repo}
	view.mu.Lock()
	sc, ok := view.scans.get(key)
	view.mu.Unlock()
	if ok {
		return sc.find(d)
	}
	res, _, _ := view.scanning.Do(strconv.Itoa(set)+" "+repo.name, func() (any, error) {
		view.mu.Lock()
		sc, ok := view.scans.get(key)
		view.mu.Unlock()
		if ok {
			return sc, nil
		}
		ds := make([]layout.Digest, 0, len(repo.manifests))
		for _, e := range repo.manifests {
			ds = append(ds, e.d)
		}
		type pair struct {
			key   uint64
			canon *manifestEntry
		}
		var pairs []pair
		n := 0
		view.renderer.Render(set, ds, func(c layout.Digest, v *layout.Variant) {
			n++
			if canon := repo.manifests[c.String()]; canon != nil && repo.manifests[v.Digest.String()] == nil {
				pairs = append(pairs, pair{digestKey(v.Digest), canon})
			}
		})
		s.metrics.variantRenders.WithLabelValues("ok").Add(float64(n))
		slices.SortFunc(pairs, func(a, b pair) int { return cmp.Compare(a.key, b.key) })
		sc = &scanned{keys: make([]uint64, len(pairs)), canon: make([]*manifestEntry, len(pairs))}
		for i, p := range pairs {
			sc.keys[i], sc.canon[i] = p.key, p.canon
		}
		view.mu.Lock()
		view.scans.add(key, sc, min(int64(len(pairs))+1, variantScanned))
		view.mu.Unlock()
		return sc, nil
	})
	return res.(*scanned).find(d)
}

// variantCache keeps rendered variants by digest, least recently used out first, up to a
// number of bytes. Variants are content-addressed, so entries stay valid across generations;
// whether a generation answers one by digest is the entry's view's business.
type variantCache struct {
	mu  sync.Mutex
	lru *lru[layout.Digest, *manifestEntry]
}

func newVariantCache(max int64) *variantCache {
	return &variantCache{lru: newLRU[layout.Digest, *manifestEntry](max)}
}

func (c *variantCache) get(d layout.Digest) *manifestEntry {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, _ := c.lru.get(d)
	return e
}

// add keeps e under d, replacing what was there (the same bytes, perhaps rendered by another
// view).
func (c *variantCache) add(d layout.Digest, e *manifestEntry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lru.add(d, e, int64(len(e.body)))
}

// stats returns the number of cached variants and their bytes.
func (c *variantCache) stats() (n int, size int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.order.Len(), c.lru.size
}

// drop removes the cached variants for which gone is true.
func (c *variantCache) drop(gone func(*manifestEntry) bool) (n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.drop(gone)
}

// lru is a map bounded by the sum of its entries' costs, least recently used out first. It is
// not safe for concurrent use.
type lru[K comparable, V any] struct {
	max   int64 // 0: keep nothing
	size  int64
	order *list.List // of *lruEntry[K, V], most recently used first
	byKey map[K]*list.Element
}

type lruEntry[K comparable, V any] struct {
	key  K
	val  V
	cost int64
}

func newLRU[K comparable, V any](max int64) *lru[K, V] {
	return &lru[K, V]{max: max, order: list.New(), byKey: map[K]*list.Element{}}
}

func (c *lru[K, V]) get(k K) (V, bool) {
	el, ok := c.byKey[k]
	if !ok {
		var zero V
		return zero, false
	}
	c.order.MoveToFront(el)
	return el.Value.(*lruEntry[K, V]).val, true
}

// add keeps v under k, replacing what was there, and drops the least recently used entries
// while over the bound; an entry costing more than the bound is not kept.
func (c *lru[K, V]) add(k K, v V, cost int64) {
	if el, ok := c.byKey[k]; ok {
		c.remove(el)
	}
	if cost > c.max {
		return
	}
	c.byKey[k] = c.order.PushFront(&lruEntry[K, V]{key: k, val: v, cost: cost})
	c.size += cost
	for c.size > c.max {
		c.remove(c.order.Back())
	}
}

func (c *lru[K, V]) remove(el *list.Element) {
	e := el.Value.(*lruEntry[K, V])
	c.order.Remove(el)
	delete(c.byKey, e.key)
	c.size -= e.cost
}

// drop removes the entries for which gone is true.
func (c *lru[K, V]) drop(gone func(V) bool) (n int) {
	for el := c.order.Front(); el != nil; {
		next := el.Next()
		if gone(el.Value.(*lruEntry[K, V]).val) {
			c.remove(el)
			n++
		}
		el = next
	}
	return n
}
