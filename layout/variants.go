package layout

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"sync"
)

// Regional variants are rendered, not stored: the metadata records, per variant set, the
// mirrors in preference order and, per canonical manifest, the variant's digest and size. The
// generator side renders every variant once to record those (Renderer.Record); a reader renders
// a variant when it needs its bytes (Renderer.Variant) and gets exactly the recorded digest.
// The rendering rules below are therefore part of the format: a change to them bumps
// FormatVersion.
//
// For every image manifest (OCI or Docker schema 2) the variant's config and layer descriptors
// carry urls: up to MaxVariantURLs of the set's mirrors that hold the blob (Mirror.Holds, with
// the mirror's generation capped at the metadata's), in the set's order, as
// <mirror url>blobs/sha256/<hex>, then the origin's URL (Meta.Origin) when there is one. Every
// index and manifest list gets a variant whose children's digests and sizes are those recorded
// for the children's variants in the same set. All other members (annotations, subject,
// artifactType, platform, unknown ones) are kept in document order; the variant is compact
// JSON with the canonical media type, and its digest is the sha256 of its bytes.
//
// A descriptor that already has urls (a foreign or non-distributable layer) is left as it is. A
// descriptor whose blob the tree does not hold gets no urls. A manifest for which nothing would
// change has no variant. Docker schema 1 manifests, unknown media types and manifests that are
// not one JSON object without duplicate keys get no variants. Indexes nested deeper than
// MaxVariantDepth below the manifest the recording started from point at their children's
// canonical manifests.

// MaxVariantURLs is how many mirrors a variant's descriptor names at most, before the origin.
const MaxVariantURLs = 3

// MaxVariantDepth bounds the nesting of indexes whose children get variants.
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
// change meanwhile, except that Record fills the variant set it is given. Variant is safe for
// concurrent use, and so is Record on distinct sets.
type Renderer struct {
	meta  *Meta
	sets  [][]*Mirror        // each set's mirrors, in its order
	masks map[*Mirror]uint64 // each mirror's content mask (Meta.ContentMask)
	tmpls map[Digest]*tmpl   // every manifest parsed, after ParseAll; nil before
	bad   map[Digest]bool    // manifests ParseAll found without variants
	// without is set on a renderer made by Without: it renders its own variants.
	without *withoutState
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

// ParseAll parses every manifest once, for a caller about to render many variants of each
// (Record); without it, each rendering parses its manifest. It returns how many manifests get
// no variants at all (unsupported media types, or not one JSON object without duplicate keys).
func (r *Renderer) ParseAll() (unsupported int) {
	r.tmpls = make(map[Digest]*tmpl, len(r.meta.Manifests))
	r.bad = map[Digest]bool{}
	for d, m := range r.meta.Manifests {
		t, err := parseManifest(m)
		if err != nil {
			r.bad[d] = true
			continue
		}
		r.tmpls[d] = t
	}
	return len(r.bad)
}

func (r *Renderer) tmpl(d Digest) *tmpl {
	if r.tmpls != nil {
		return r.tmpls[d]
	}
	m := r.meta.Manifests[d]
	if m == nil {
		return nil
	}
	t, _ := parseManifest(m)
	return t
}

// Variant renders the variant of canonical manifest d in variant set set. It returns
// ErrNoVariant when the set records none, and an error when the rendering does not give the
// recorded digest and size (metadata that another renderer recorded, or inconsistent). On a
// renderer made by Without it renders its own variant (remembered, and shared: not to be
// modified), or returns ErrNoVariant when nothing would change.
func (r *Renderer) Variant(set int, d Digest) (*Variant, error) {
	if set < 0 || set >= len(r.sets) || r.meta.VariantSets[set] == nil {
		return nil, fmt.Errorf("variant set %d: %w", set, ErrNoVariant)
	}
	if r.without != nil {
		r.without.mu.Lock()
		defer r.without.mu.Unlock()
		if v := r.renderWithout(set, d, 0); v != nil {
			return v, nil
		}
		return nil, fmt.Errorf("%s in variant set %d without the mirrors out: %w", d, set, ErrNoVariant)
	}
	ref, ok := r.meta.VariantSets[set].Variants[d]
	if !ok {
		return nil, fmt.Errorf("%s in variant set %d: %w", d, set, ErrNoVariant)
	}
	t := r.tmpl(d)
	if t == nil {
		return nil, fmt.Errorf("variant set %d records a variant of %s, which has none", set, d)
	}
	var buf bytes.Buffer
	if !r.render(&buf, t, set) {
		return nil, fmt.Errorf("variant set %d records a variant of %s, which renders none", set, d)
	}
	v := r.newVariant(d, buf.Bytes())
	if v.Digest != ref.Digest || int64(len(v.Data)) != ref.Size {
		return nil, fmt.Errorf("variant of %s in set %d renders as %s (%d bytes), recorded %s (%d bytes)", d, set, v.Digest, len(v.Data), ref.Digest, ref.Size)
	}
	return v, nil
}

func (r *Renderer) newVariant(canonical Digest, data []byte) *Variant {
	return &Variant{
		Digest:    DigestOf("sha256", data),
		MediaType: r.meta.Manifests[canonical].MediaType,
		Data:      bytes.Clone(data),
	}
}

// Record renders every manifest's variant in variant set set and records its digest and size
// in meta.VariantSets[set].Variants (replacing what was there), children before the indexes
// that point at them. It returns how many variants it recorded and their bytes. Call ParseAll
// first when recording several sets.
func (r *Renderer) Record(set int) (n int, size int64) {
	vs := r.meta.VariantSets[set]
	vs.Variants = make(map[Digest]VariantRef, len(r.meta.Manifests))
	rec := &recorder{r: r, set: set, vs: vs, done: make(map[Digest]bool, len(r.meta.Manifests))}
	ds := make([]Digest, 0, len(r.meta.Manifests))
	for d := range r.meta.Manifests {
		ds = append(ds, d)
	}
	// A fixed order makes the depth limit's effect the same on every run.
	slices.SortFunc(ds, func(a, b Digest) int { return cmp.Compare(a.s, b.s) })
	for _, d := range ds {
		rec.record(d, 0)
	}
	return len(vs.Variants), rec.size
}

type recorder struct {
	r    *Renderer
	set  int
	vs   *VariantSet
	done map[Digest]bool
	size int64
	buf  bytes.Buffer
}

// record records the variant of d, after those of its children when d is an index. A manifest
// is recorded once, and never after an index has been rendered without it: so that rendering
// an index later, from the recorded children, gives the recorded bytes.
func (rec *recorder) record(d Digest, depth int) {
	if rec.done[d] {
		return
	}
	rec.done[d] = true
	t := rec.r.tmpl(d)
	if t == nil {
		return
	}
	if t.index {
		for _, list := range t.lists {
			for _, desc := range list {
				switch {
				case desc.digest.IsZero():
				case depth < MaxVariantDepth:
					rec.record(desc.digest, depth+1)
				default:
					rec.done[desc.digest] = true // too deep: stays canonical
				}
			}
		}
	}
	rec.buf.Reset()
	if !rec.r.render(&rec.buf, t, rec.set) {
		return
	}
	rec.vs.Variants[d] = VariantRef{Digest: DigestOf("sha256", rec.buf.Bytes()), Size: int64(rec.buf.Len())}
	rec.size += int64(rec.buf.Len())
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
func (r *Renderer) render(buf *bytes.Buffer, t *tmpl, set int) bool {
	changed := false
	buf.WriteByte('{')
	for i, mem := range t.top {
		if i > 0 {
			buf.WriteByte(',')
		}
		writeKey(buf, mem.key)
		if desc, ok := t.single[i]; ok {
			changed = r.writeDescriptor(buf, desc, false, set) || changed
			continue
		}
		if list, ok := t.lists[i]; ok {
			buf.WriteByte('[')
			for j, desc := range list {
				if j > 0 {
					buf.WriteByte(',')
				}
				changed = r.writeDescriptor(buf, desc, t.index, set) || changed
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
// child's (in an index) points at the child's recorded variant.
func (r *Renderer) writeDescriptor(buf *bytes.Buffer, desc *descriptor, child bool, set int) bool {
	if desc.digest.IsZero() {
		writeObject(buf, desc.obj)
		return false
	}
	if child {
		v, ok := r.childRef(set, desc.digest)
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
				buf.WriteString(strconv.FormatInt(v.Size, 10))
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
// them out of every set. Its variants are rendered by the rules above (an index's children
// are its own variants of them), so two readers leaving out the same mirrors render the same
// bytes; they are not the recorded ones, and nothing checks them against the metadata.

// withoutState is what a renderer made by Without remembers: every variant it rendered.
type withoutState struct {
	mu       sync.Mutex
	left     []bool                // per set: a mirror of the set is left out
	refs     []map[Digest]*Variant // per set: canonical digest → variant (nil: none)
	byDigest map[Digest]WithoutVariant
}

// WithoutVariant is a variant rendered by a renderer made by Without.
type WithoutVariant struct {
	*Variant
	Set       int
	Canonical Digest
}

// Without returns a renderer of the same metadata whose sets leave out the mirrors for which
// out is true, and reports whether any set lists such a mirror (when none does, its variants
// are the recorded ones: use r). The new renderer's Variant renders (children first) and
// remembers what it rendered; Rendered finds it again by the variant's digest.
func (r *Renderer) Without(out func(name string) bool) (*Renderer, bool) {
	nr := &Renderer{meta: r.meta, sets: make([][]*Mirror, len(r.sets)), masks: r.masks, tmpls: r.tmpls, bad: r.bad,
		without: &withoutState{refs: make([]map[Digest]*Variant, len(r.sets)), byDigest: map[Digest]WithoutVariant{}}}
	nr.without.left = make([]bool, len(r.sets))
	leaves := false
	for i, ms := range r.sets {
		for _, m := range ms {
			if out(m.Name) {
				nr.without.left[i], leaves = true, true
				continue
			}
			nr.sets[i] = append(nr.sets[i], m)
		}
		nr.without.refs[i] = map[Digest]*Variant{}
	}
	return nr, leaves
}

// Leaves reports whether this renderer (made by Without) leaves a mirror out of set: when it
// does not, its variants in set are the recorded ones.
func (r *Renderer) Leaves(set int) bool {
	return r.without != nil && set >= 0 && set < len(r.without.left) && r.without.left[set]
}

// childRef is the variant an index's child descriptor points at in set: the recorded one, or
// for a renderer made by Without, its own (rendered before the index).
func (r *Renderer) childRef(set int, d Digest) (VariantRef, bool) {
	if r.without == nil {
		v, ok := r.meta.VariantSets[set].Variants[d]
		return v, ok
	}
	v := r.without.refs[set][d]
	if v == nil {
		return VariantRef{}, false
	}
	return VariantRef{Digest: v.Digest, Size: int64(len(v.Data))}, true
}

// Rendered returns the variant with digest d that this renderer (made by Without) rendered.
func (r *Renderer) Rendered(d Digest) (WithoutVariant, bool) {
	if r.without == nil {
		return WithoutVariant{}, false
	}
	r.without.mu.Lock()
	defer r.without.mu.Unlock()
	v, ok := r.without.byDigest[d]
	return v, ok
}

// renderWithout renders the variant of canonical manifest d in set on a renderer made by
// Without, its children first; nil when it has none. The caller holds r.without.mu.
func (r *Renderer) renderWithout(set int, d Digest, depth int) *Variant {
	refs := r.without.refs[set]
	if v, ok := refs[d]; ok {
		return v
	}
	refs[d] = nil // no variant, unless rendered below; also ends a cycle
	t := r.tmpl(d)
	if t == nil || r.meta.VariantSets[set] == nil {
		return nil
	}
	if t.index && depth < MaxVariantDepth {
		for _, list := range t.lists {
			for _, desc := range list {
				if !desc.digest.IsZero() {
					r.renderWithout(set, desc.digest, depth+1)
				}
			}
		}
	}
	var buf bytes.Buffer
	if !r.render(&buf, t, set) {
		return nil
	}
	v := r.newVariant(d, buf.Bytes())
	refs[d] = v
	r.without.byDigest[v.Digest] = WithoutVariant{Variant: v, Set: set, Canonical: d}
	return v
}
