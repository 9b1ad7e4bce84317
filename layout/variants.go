package layout

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// Regional variants are rendered, never stored: the metadata records, per variant set, the
// mirrors in preference order, and a reader renders a variant when it needs it
// (Renderer.Variant, Renderer.Render). Two readers of the same metadata that leave out the same
// mirrors (Renderer.Without) render the same bytes, so a client may read an index from one and
// its children from another. The rendering rules below are therefore part of the format: a
// change to them bumps FormatVersion.
//
// For every image manifest (OCI or Docker schema 2) the variant's config and layer descriptors
// carry urls: up to MaxVariantURLs of the set's mirrors that hold the blob (Mirror.Holds, with
// the mirror's generation capped at the metadata's), in the set's order, as
// <mirror url>blobs/sha256/<hex>, then the origin's URL (Meta.Origin) when there is one. Every
// index and manifest list gets a variant whose children's digests and sizes are those of the
// children's variants in the same set (a child without a variant stays as it is). All other
// members (annotations, subject, artifactType, platform, unknown ones) are kept in document
// order; the variant is compact JSON with the canonical media type, and its digest is the
// sha256 of its bytes.
//
// A descriptor that already has urls (a foreign or non-distributable layer) is left as it is. A
// descriptor whose blob the tree does not hold gets no urls. A manifest for which nothing would
// change has no variant. Docker schema 1 manifests, unknown media types and manifests that are
// not one JSON object without duplicate keys get no variants. An index with more than
// MaxVariantDepth levels of indexes below it (counting itself) has no variant, nor has any
// index above it: a manifest's variant depends on the manifest and the set only.

// MaxVariantURLs is how many mirrors a variant's descriptor names at most, before the origin.
const MaxVariantURLs = 3

// MaxVariantDepth bounds the nesting of indexes that get variants.
const MaxVariantDepth = 8

// ErrNoVariant is returned for a manifest that has no variant in a set.
var ErrNoVariant = errors.New("no regional variant")

// Variant is a rendered regional variant of a manifest.
type Variant struct {
	Digest    Digest
	MediaType string
	Data      []byte
}

// Renderer renders the regional variants of a Meta's manifests. It reads meta, which must not
// change meanwhile, and keeps no state of its own: it is safe for concurrent use.
type Renderer struct {
	meta  *Meta
	sets  [][]*Mirror        // each set's mirrors, in its order
	masks map[*Mirror]uint64 // each mirror's content mask (Meta.ContentMask)
	// left is set on a renderer made by Without: per set, a mirror of the set is left out.
	left []bool
}

// NewRenderer returns a renderer for meta's variant sets. Nothing is parsed or rendered yet.
// A set's mirror that meta.Mirrors does not have is skipped.
func NewRenderer(meta *Meta) *Renderer {
	byName := make(map[string]*Mirror, len(meta.Mirrors))
	for _, m := range meta.Mirrors {
		if m != nil {
			byName[m.Name] = m
		}
	}
	r := &Renderer{meta: meta, sets: make([][]*Mirror, len(meta.VariantSets)), masks: make(map[*Mirror]uint64, len(byName))}
	for _, m := range byName {
		r.masks[m] = meta.ContentMask(m.Content)
	}
	for i, vs := range meta.VariantSets {
		if vs == nil {
			continue
		}
		pref := make([]*Mirror, 0, len(vs.Mirrors))
		for _, n := range vs.Mirrors {
			if m := byName[n]; m != nil {
				pref = append(pref, m)
			}
		}
		r.sets[i] = pref
	}
	return r
}

// Sets is the number of variant sets the renderer renders.
func (r *Renderer) Sets() int { return len(r.sets) }

// Variant renders the variant of canonical manifest d in variant set set (an index's children
// first). It returns an error wrapping ErrNoVariant when d has none in set.
func (r *Renderer) Variant(set int, d Digest) (*Variant, error) {
	var v *Variant
	r.Render(set, []Digest{d}, func(canon Digest, cv *Variant) {
		if canon == d {
			v = cv
		}
	})
	if v == nil {
		return nil, fmt.Errorf("%s in variant set %d: %w", d, set, ErrNoVariant)
	}
	return v, nil
}

// Render renders the variants in set of the canonical manifests ds, and of their children
// (indexes first render their children), each manifest once, and calls visit with every
// variant it rendered (children before the indexes pointing at them), each once. A manifest
// without a variant is not visited. visit must not modify v.
func (r *Renderer) Render(set int, ds []Digest, visit func(canonical Digest, v *Variant)) {
	if set < 0 || set >= len(r.sets) || r.meta.VariantSets[set] == nil {
		return
	}
	rs := &renderState{r: r, set: set, visit: visit, done: make(map[Digest]*rendered, len(ds))}
	for _, d := range ds {
		rs.render(d)
	}
}

// rendered is one manifest's outcome in a Render call.
type rendered struct {
	busy   bool     // being rendered: a child pointing back at it ends a cycle
	height int      // levels of indexes from here down (0 for an image manifest)
	v      *Variant // nil: no variant
}

type renderState struct {
	r     *Renderer
	set   int
	visit func(Digest, *Variant)
	done  map[Digest]*rendered
	buf   bytes.Buffer
}

// render renders d's variant, its children's first.
func (rs *renderState) render(d Digest) *rendered {
	if out, ok := rs.done[d]; ok {
		if out.busy { // only a manifest pointing at itself through its children: never valid
			return &rendered{height: MaxVariantDepth + 1}
		}
		return out
	}
	out := &rendered{busy: true}
	rs.done[d] = out
	defer func() { out.busy = false }()
	m := rs.r.meta.Manifests[d]
	if m == nil {
		return out
	}
	t, err := parseManifest(m)
	if err != nil {
		return out
	}
	var refs map[Digest]*Variant
	if t.index {
		out.height = 1
		for _, list := range t.lists {
			for _, desc := range list {
				if desc.digest.IsZero() {
					continue
				}
				c := rs.render(desc.digest)
				out.height = max(out.height, min(c.height, MaxVariantDepth+1)+1)
				if c.v != nil {
					if refs == nil {
						refs = map[Digest]*Variant{}
					}
					refs[desc.digest] = c.v
				}
			}
		}
		if out.height > MaxVariantDepth {
			return out
		}
	}
	rs.buf.Reset()
	if !rs.r.render(&rs.buf, t, rs.set, refs) {
		return out
	}
	out.v = &Variant{Digest: DigestOf("sha256", rs.buf.Bytes()), MediaType: m.MediaType, Data: bytes.Clone(rs.buf.Bytes())}
	if rs.visit != nil {
		rs.visit(d, out.v)
	}
	return out
}

// member is one member of a JSON object, in document order; val is compact JSON.
type member struct {
	key string
	val []byte
}

// object is a JSON object with its members in document order.
type object []member

// descriptor is a parsed descriptor inside a manifest.
type descriptor struct {
	obj     object
	digest  Digest // zero when the descriptor's digest is not one the tree can hold
	path    string // BlobPath(digest)
	hasURLs bool
}

// tmpl is a manifest parsed once, rendered once per variant set.
type tmpl struct {
	index bool
	top   object
	// single maps a member index of top to its descriptor ("config" of an image manifest);
	// lists to its descriptors ("layers" of an image manifest, "manifests" of an index).
	single map[int]*descriptor
	lists  map[int][]*descriptor
}

func parseManifest(m *Manifest) (*tmpl, error) {
	if m == nil {
		return nil, errors.New("no manifest")
	}
	var index bool
	switch m.MediaType {
	case MediaTypeOCIManifest, MediaTypeDockerManifest:
	case MediaTypeOCIIndex, MediaTypeDockerList:
		index = true
	default:
		return nil, fmt.Errorf("media type %q has no variants", m.MediaType)
	}
	top, err := parseObject(m.Data)
	if err != nil {
		return nil, err
	}
	t := &tmpl{index: index, top: top, single: map[int]*descriptor{}, lists: map[int][]*descriptor{}}
	for i, mem := range top {
		switch {
		case !index && mem.key == "config":
			d, err := parseDescriptor(mem.val)
			if err != nil {
				return nil, err
			}
			t.single[i] = d
		case !index && mem.key == "layers", index && mem.key == "manifests":
			var raws []json.RawMessage
			if err := json.Unmarshal(mem.val, &raws); err != nil {
				return nil, fmt.Errorf("%s: %w", mem.key, err)
			}
			ds := make([]*descriptor, len(raws))
			for j, r := range raws {
				if ds[j], err = parseDescriptor(r); err != nil {
					return nil, err
				}
			}
			t.lists[i] = ds
		}
	}
	return t, nil
}

func parseDescriptor(b []byte) (*descriptor, error) {
	obj, err := parseObject(b)
	if err != nil {
		return nil, err
	}
	d := &descriptor{obj: obj}
	for _, mem := range obj {
		switch mem.key {
		case "digest":
			var s string
			if json.Unmarshal(mem.val, &s) == nil {
				if dg, err := ParseDigest(s); err == nil {
					d.digest, d.path = dg, BlobPath(dg)
				}
			}
		case "urls":
			d.hasURLs = true
		}
	}
	return d, nil
}

// parseObject parses one JSON object, keeping its members in order. Duplicate keys are an
// error: clients disagree on which one wins.
func parseObject(b []byte) (object, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil, errors.New("not a JSON object")
	}
	var obj object
	seen := map[string]bool{}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, err
		}
		key, ok := t.(string)
		if !ok {
			return nil, errors.New("not a JSON object")
		}
		if seen[key] {
			return nil, fmt.Errorf("duplicate key %q", key)
		}
		seen[key] = true
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, err
		}
		var buf bytes.Buffer
		if err := json.Compact(&buf, raw); err != nil {
			return nil, err
		}
		obj = append(obj, member{key: key, val: buf.Bytes()})
	}
	if _, err := dec.Token(); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("data after the JSON object")
	}
	return obj, nil
}

// render writes t's variant in set to buf and reports whether it differs from the canonical
// manifest (when it does not, there is no variant).
func (r *Renderer) render(buf *bytes.Buffer, t *tmpl, set int, refs map[Digest]*Variant) bool {
	changed := false
	buf.WriteByte('{')
	for i, mem := range t.top {
		if i > 0 {
			buf.WriteByte(',')
		}
		writeKey(buf, mem.key)
		if desc, ok := t.single[i]; ok {
			changed = r.writeDescriptor(buf, desc, false, set, refs) || changed
			continue
		}
		if list, ok := t.lists[i]; ok {
			buf.WriteByte('[')
			for j, desc := range list {
				if j > 0 {
					buf.WriteByte(',')
				}
				changed = r.writeDescriptor(buf, desc, t.index, set, refs) || changed
			}
			buf.WriteByte(']')
			continue
		}
		buf.Write(mem.val)
	}
	buf.WriteByte('}')
	return changed
}

// writeDescriptor writes one descriptor of the manifest being rendered and reports whether it
// differs from the canonical one. A blob's descriptor (in an image manifest) gains urls; a
// child's (in an index) points at the child's variant in refs.
func (r *Renderer) writeDescriptor(buf *bytes.Buffer, desc *descriptor, child bool, set int, refs map[Digest]*Variant) bool {
	if desc.digest.IsZero() {
		writeObject(buf, desc.obj)
		return false
	}
	if child {
		v, ok := refs[desc.digest]
		if !ok {
			writeObject(buf, desc.obj)
			return false
		}
		buf.WriteByte('{')
		for i, mem := range desc.obj {
			if i > 0 {
				buf.WriteByte(',')
			}
			writeKey(buf, mem.key)
			switch mem.key {
			case "digest":
				writeString(buf, v.Digest.String())
			case "size":
				buf.WriteString(strconv.Itoa(len(v.Data)))
			default:
				buf.Write(mem.val)
			}
		}
		buf.WriteByte('}')
		return true
	}
	if desc.hasURLs {
		writeObject(buf, desc.obj)
		return false
	}
	blob := r.meta.Blobs[desc.digest]
	var holders [MaxVariantURLs]*Mirror
	n := 0
	if blob != nil {
		for _, m := range r.sets[set] {
			if n == MaxVariantURLs {
				break
			}
			if HeldAt(min(m.Generation, r.meta.Generation), blob.Since) && Carries(r.masks[m], blob) {
				holders[n] = m
				n++
			}
		}
	}
	if blob == nil || n == 0 && r.meta.Origin == "" {
		writeObject(buf, desc.obj)
		return false
	}
	buf.WriteByte('{')
	inserted := false
	for i, mem := range desc.obj {
		if i > 0 {
			buf.WriteByte(',')
		}
		writeKey(buf, mem.key)
		buf.Write(mem.val)
		if mem.key == "size" {
			buf.WriteString(`,"urls":`)
			r.writeURLs(buf, holders[:n], desc.path)
			inserted = true
		}
	}
	if !inserted {
		if len(desc.obj) > 0 {
			buf.WriteByte(',')
		}
		buf.WriteString(`"urls":`)
		r.writeURLs(buf, holders[:n], desc.path)
	}
	buf.WriteByte('}')
	return true
}

// writeURLs writes the JSON array of urls of a blob: its holders, then the origin.
func (r *Renderer) writeURLs(buf *bytes.Buffer, holders []*Mirror, path string) {
	buf.WriteByte('[')
	for i, m := range holders {
		if i > 0 {
			buf.WriteByte(',')
		}
		writeJoined(buf, m.URL, path)
	}
	if r.meta.Origin != "" {
		if len(holders) > 0 {
			buf.WriteByte(',')
		}
		writeJoined(buf, r.meta.Origin, path)
	}
	buf.WriteByte(']')
}

func writeObject(buf *bytes.Buffer, obj object) {
	buf.WriteByte('{')
	for i, mem := range obj {
		if i > 0 {
			buf.WriteByte(',')
		}
		writeKey(buf, mem.key)
		buf.Write(mem.val)
	}
	buf.WriteByte('}')
}

func writeKey(buf *bytes.Buffer, k string) {
	writeString(buf, k)
	buf.WriteByte(':')
}

// writeJoined writes a+b as a JSON string.
func writeJoined(buf *bytes.Buffer, a, b string) {
	if !plain(a) || !plain(b) {
		writeString(buf, a+b)
		return
	}
	buf.WriteByte('"')
	buf.WriteString(a)
	buf.WriteString(b)
	buf.WriteByte('"')
}

// plain reports whether s is printable ASCII that needs no escaping in a JSON string.
func plain(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] >= 0x7f || s[i] == '"' || s[i] == '\\' {
			return false
		}
	}
	return true
}

// writeString writes s as a JSON string, without HTML escaping.
func writeString(buf *bytes.Buffer, s string) {
	if plain(s) {
		buf.WriteByte('"')
		buf.WriteString(s)
		buf.WriteByte('"')
		return
	}
	enc := json.NewEncoder(buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s)           // a string always encodes
	buf.Truncate(buf.Len() - 1) // Encode's newline
}

// Rendering without some mirrors.
//
// A redirector whose health probes take mirrors out of rotation serves variants whose urls
// name only the mirrors still in: Without gives a renderer of the same metadata that leaves
// them out of every set. Its variants are rendered by the rules above, so two readers leaving
// out the same mirrors render the same bytes.

// Without returns a renderer of the same metadata whose sets leave out the mirrors for which
// out is true, and reports whether any set lists such a mirror (when none does, it renders
// what r renders: use r).
func (r *Renderer) Without(out func(name string) bool) (*Renderer, bool) {
	nr := &Renderer{meta: r.meta, sets: make([][]*Mirror, len(r.sets)), masks: r.masks, left: make([]bool, len(r.sets))}
	leaves := false
	for i, ms := range r.sets {
		for _, m := range ms {
			if out(m.Name) {
				nr.left[i], leaves = true, true
				continue
			}
			nr.sets[i] = append(nr.sets[i], m)
		}
	}
	return nr, leaves
}

// Leaves reports whether this renderer (made by Without) leaves a mirror out of set: when it
// does not, its variants in set are those of the renderer it was made from.
func (r *Renderer) Leaves(set int) bool {
	return set >= 0 && set < len(r.left) && r.left[set]
}
