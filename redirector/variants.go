package redirector

import (
	"container/list"
	"sync"

	"github.com/regmirror/regmirror/layout"
)

// DefaultVariantCacheBytes bounds the rendered regional variants a server keeps.
const DefaultVariantCacheBytes = 64 << 20

// variantRef is a regional variant the generation knows by digest, rendered on first request.
type variantRef struct {
	set   int            // index in the metadata's variant sets
	canon *manifestEntry // the canonical manifest it is a variant of
}

// variantSets are the generation's variant sets as the metadata records them (canonical
// digest → variant digest and size), with the renderer that renders them.
type variantSets struct {
	sets     []map[layout.Digest]layout.VariantRef
	renderer *layout.Renderer
	// byDigest maps each variant's digest to the set and canonical manifest it renders from.
	byDigest map[layout.Digest]variantRef
	// without, while mirrors are out of rotation, renders variants that name only the mirrors
	// still in (layout.Renderer.Without); nil when no set lists a mirror out.
	without *layout.Renderer
	// scanned records the repositories whose manifests without has rendered in every set it
	// changes, to find a variant asked for by a digest it has not rendered yet.
	scanned *sync.Map
}

// variantOf returns the variant of canonical manifest e in region reg, rendered (or cached),
// or nil when the region has none for it or it does not render as recorded (logged): the
// caller then serves the canonical manifest, a correct answer for a tag.
func (s *Server) variantOf(g *generation, reg *regionEntry, e *manifestEntry) *manifestEntry {
	if reg.variantSet < 0 || g.variants == nil {
		return nil
	}
	if w := g.variants.without; w != nil && w.Leaves(reg.variantSet) {
		return s.variantWithout(w, reg.variantSet, e)
	}
	ref, ok := g.variants.sets[reg.variantSet][e.d]
	if !ok {
		return nil
	}
	return s.renderVariant(g, ref.Digest, variantRef{set: reg.variantSet, canon: e})
}

// variantWithout returns the variant of canonical manifest e in set, rendered without the
// mirrors out of rotation (or cached); nil when it has none.
func (s *Server) variantWithout(w *layout.Renderer, set int, e *manifestEntry) *manifestEntry {
	v, err := w.Variant(set, e.d)
	if err != nil {
		return nil // ErrNoVariant: nothing would change; the canonical manifest is right
	}
	return s.cachedWithout(v, e)
}

// cachedWithout returns the cache's entry of v, a variant of canonical manifest canon
// rendered without the mirrors out, adding it.
func (s *Server) cachedWithout(v *layout.Variant, canon *manifestEntry) *manifestEntry {
	if e := s.variantCache.get(v.Digest); e != nil {
		return e
	}
	e := &manifestEntry{
		answer:    newAnswer(v.Digest.String(), canon.mediaType, v.Data),
		d:         v.Digest,
		mediaType: canon.mediaType,
		isList:    canon.isList,
		of:        canon.digest,
	}
	s.variantCache.add(v.Digest, e)
	return e
}

// variantByDigest returns the variant with digest d if it is a variant of a manifest of repo,
// rendered (or cached); nil when there is none or it does not render as recorded (logged).
func (s *Server) variantByDigest(g *generation, repo *repoEntry, d layout.Digest) *manifestEntry {
	if g.variants == nil {
		return nil
	}
	vr, ok := g.variants.byDigest[d]
	if !ok {
		return s.variantByDigestWithout(g, repo, d)
	}
	if repo.manifests[vr.canon.digest] != vr.canon {
		return nil
	}
	return s.renderVariant(g, d, vr)
}

// variantByDigestWithout finds a variant rendered without mirrors out of rotation by its
// digest: one this generation renders while they are out (the first such request for a
// repository renders its manifests' variants once), or one still cached from an earlier
// outage (a client mid-pull that read an index before the mirrors came back).
func (s *Server) variantByDigestWithout(g *generation, repo *repoEntry, d layout.Digest) *manifestEntry {
	if w := g.variants.without; w != nil {
		find := func() *manifestEntry {
			if v, ok := w.Rendered(d); ok {
				if canon := repo.manifests[v.Canonical.String()]; canon != nil {
					return s.cachedWithout(v.Variant, canon)
				}
			}
			return nil
		}
		if e := find(); e != nil {
			return e
		}
		if _, done := g.variants.scanned.LoadOrStore(repo.name, true); !done {
			for _, canon := range repo.manifests {
				for set := range g.variants.sets {
					if w.Leaves(set) {
						_, _ = w.Variant(set, canon.d)
					}
				}
			}
			if e := find(); e != nil {
				return e
			}
		}
	}
	if e := s.variantCache.get(d); e != nil && e.of != "" && repo.manifests[e.of] != nil {
		return e
	}
	return nil
}

// renderVariant returns the variant with digest d, from the cache or rendered from vr. A
// rendering that does not give d (metadata from a generator whose rendering differs from this
// redirector's, or corrupt) is logged as an error and gives nil: a client that asked for d
// must get exactly d's bytes or MANIFEST_UNKNOWN.
func (s *Server) renderVariant(g *generation, d layout.Digest, vr variantRef) *manifestEntry {
	if e := s.variantCache.get(d); e != nil {
		return e
	}
	v, err := g.variants.renderer.Variant(vr.set, vr.canon.d)
	if err == nil && v.Digest != d {
		err = errVariantDigest
	}
	if err != nil {
		s.metrics.variantRenders.WithLabelValues("failed").Inc()
		s.log.Error("regional variant does not render as the metadata records it; answering without it",
			"variant", d.String(), "of", vr.canon.digest, "set", vr.set, "generation", g.number, "err", err)
		return nil
	}
	s.metrics.variantRenders.WithLabelValues("ok").Inc()
	e := &manifestEntry{
		answer:    newAnswer(d.String(), vr.canon.mediaType, v.Data),
		d:         d,
		mediaType: vr.canon.mediaType,
		isList:    vr.canon.isList,
	}
	s.variantCache.add(d, e)
	return e
}

type constError string

func (e constError) Error() string { return string(e) }

const errVariantDigest = constError("rendered variant has another digest")

// variantCache keeps rendered variants, least recently used out first, up to a number of
// bytes. Variants are content-addressed, so entries stay valid across generations.
type variantCache struct {
	max int64 // 0: keep nothing

	mu    sync.Mutex
	size  int64
	order *list.List // of *manifestEntry, most recently used first
	byKey map[layout.Digest]*list.Element
}

func newVariantCache(max int64) *variantCache {
	return &variantCache{max: max, order: list.New(), byKey: map[layout.Digest]*list.Element{}}
}

func (c *variantCache) get(d layout.Digest) *manifestEntry {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.byKey[d]
	if !ok {
		return nil
	}
	c.order.MoveToFront(el)
	return el.Value.(*manifestEntry)
}

func (c *variantCache) add(d layout.Digest, e *manifestEntry) {
	n := int64(len(e.body))
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.byKey[d]; ok || n > c.max {
		return
	}
	c.byKey[d] = c.order.PushFront(e)
	c.size += n
	for c.size > c.max {
		el := c.order.Back()
		old := el.Value.(*manifestEntry)
		c.order.Remove(el)
		delete(c.byKey, old.d)
		c.size -= int64(len(old.body))
	}
}

// stats returns the number of cached variants and their bytes.
func (c *variantCache) stats() (n int, size int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.order.Len(), c.size
}

// drop removes the cached variants for which gone is true.
func (c *variantCache) drop(gone func(*manifestEntry) bool) (n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for el := c.order.Front(); el != nil; {
		next := el.Next()
		if e := el.Value.(*manifestEntry); gone(e) {
			c.order.Remove(el)
			delete(c.byKey, e.d)
			c.size -= int64(len(e.body))
			n++
		}
		el = next
	}
	return n
}
