package mirrors

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/regmirror/regmirror/layout"
)

// Media types that get variants.
const (
	mediaOCIManifest    = "application/vnd.oci.image.manifest.v1+json"
	mediaOCIIndex       = "application/vnd.oci.image.index.v1+json"
	mediaDockerManifest = "application/vnd.docker.distribution.manifest.v2+json"
	mediaDockerList     = "application/vnd.docker.distribution.manifest.list.v2+json"
)

// maxIndexDepth bounds nested indexes when building variants.
const maxIndexDepth = 8

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
	digest  layout.Digest // zero when the descriptor's digest is not one the tree can hold
	path    string        // layout.BlobPath(digest)
	hasURLs bool
}

// tmpl is a manifest parsed once, rendered once per variant set.
type tmpl struct {
	index bool
	top   object
	// descs maps a member index of top to its descriptors: "config" (one) and "layers" for
	// an image manifest, "manifests" for an index.
	single map[int]*descriptor
	lists  map[int][]*descriptor
}

func parseManifests(ms map[layout.Digest]*layout.Manifest) (map[layout.Digest]*tmpl, int) {
	out := make(map[layout.Digest]*tmpl, len(ms))
	unsupported := 0
	for d, m := range ms {
		t, err := parseManifest(m)
		if err != nil {
			unsupported++
			continue
		}
		out[d] = t
	}
	return out, unsupported
}

func parseManifest(m *layout.Manifest) (*tmpl, error) {
	var index bool
	switch m.MediaType {
	case mediaOCIManifest, mediaDockerManifest:
	case mediaOCIIndex, mediaDockerList:
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
				if dg, err := layout.ParseDigest(s); err == nil {
					d.digest, d.path = dg, layout.BlobPath(dg)
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

// setBuilder builds the variants of one variant set.
type setBuilder struct {
	meta  *layout.Meta
	tmpls map[layout.Digest]*tmpl
	pref  []*layout.Mirror
	// holders is scratch storage for holdersOf.
	holders []*layout.Mirror
	done    map[layout.Digest]bool
	set     *layout.VariantSet
	// scratch buffers, one per nesting depth, reused from variant to variant.
	scratch [maxIndexDepth + 1]bytes.Buffer
}

func buildSet(meta *layout.Meta, tmpls map[layout.Digest]*tmpl, pref []*layout.Mirror) *layout.VariantSet {
	b := &setBuilder{
		meta:  meta,
		tmpls: tmpls,
		pref:  pref,
		done:  map[layout.Digest]bool{},
		set:   &layout.VariantSet{Variants: make(map[layout.Digest]*layout.Variant, len(tmpls))},
	}
	for d := range tmpls {
		b.variant(d, 0)
	}
	return b.set
}

// variant returns the variant of manifest d in this set, building it when needed; nil when d
// has none (unsupported, or nothing to change).
func (b *setBuilder) variant(d layout.Digest, depth int) *layout.Variant {
	if b.done[d] {
		return b.set.Variants[d]
	}
	t := b.tmpls[d]
	if t == nil || depth > maxIndexDepth {
		return nil
	}
	b.done[d] = true
	buf := &b.scratch[depth]
	buf.Reset()
	changed := false
	buf.WriteByte('{')
	for i, mem := range t.top {
		if i > 0 {
			buf.WriteByte(',')
		}
		writeKey(buf, mem.key)
		if desc, ok := t.single[i]; ok {
			changed = b.writeDescriptor(buf, desc, false, depth) || changed
			continue
		}
		if list, ok := t.lists[i]; ok {
			buf.WriteByte('[')
			for j, desc := range list {
				if j > 0 {
					buf.WriteByte(',')
				}
				changed = b.writeDescriptor(buf, desc, t.index, depth) || changed
			}
			buf.WriteByte(']')
			continue
		}
		buf.Write(mem.val)
	}
	buf.WriteByte('}')
	if !changed {
		return nil
	}
	data := bytes.Clone(buf.Bytes())
	sum := sha256.Sum256(data)
	v := &layout.Variant{
		Digest:    layout.MustDigest("sha256:" + hex.EncodeToString(sum[:])),
		MediaType: b.meta.Manifests[d].MediaType,
		Data:      data,
	}
	b.set.Variants[d] = v
	return v
}

// writeDescriptor writes one descriptor of the manifest being built and reports whether it
// differs from the canonical one. A blob's descriptor (in an image manifest) gains urls; a
// child's (in an index) points at the child's variant.
func (b *setBuilder) writeDescriptor(buf *bytes.Buffer, desc *descriptor, child bool, depth int) bool {
	if desc.digest.IsZero() {
		writeObject(buf, desc.obj)
		return false
	}
	if child {
		v := b.variant(desc.digest, depth+1)
		if v == nil {
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
	blob := b.meta.Blobs[desc.digest]
	var holders []*layout.Mirror
	if blob != nil {
		holders = b.holdersOf(blob)
	}
	if blob == nil || len(holders) == 0 && b.meta.Origin == "" {
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
			b.writeURLs(buf, holders, desc.path)
			inserted = true
		}
	}
	if !inserted {
		if len(desc.obj) > 0 {
			buf.WriteByte(',')
		}
		buf.WriteString(`"urls":`)
		b.writeURLs(buf, holders, desc.path)
	}
	buf.WriteByte('}')
	return true
}

// holders returns up to MaxURLs preferred mirrors that hold blob d, in b.holders' storage.
func (b *setBuilder) holdersOf(blob *layout.Blob) []*layout.Mirror {
	h := b.holders[:0]
	for _, m := range b.pref {
		if len(h) == MaxURLs {
			break
		}
		if layout.HeldAt(min(m.Generation, b.meta.Generation), blob.Since) {
			h = append(h, m)
		}
	}
	b.holders = h
	return h
}

// writeURLs writes the JSON array of urls of a blob: its holders, then the origin.
func (b *setBuilder) writeURLs(buf *bytes.Buffer, holders []*layout.Mirror, path string) {
	buf.WriteByte('[')
	for i, m := range holders {
		if i > 0 {
			buf.WriteByte(',')
		}
		writeJoined(buf, m.URL, path)
	}
	if b.meta.Origin != "" {
		if len(holders) > 0 {
			buf.WriteByte(',')
		}
		writeJoined(buf, b.meta.Origin, path)
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
