package layout

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseObject(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		keys string
		ok   bool
	}{
		{"members in order", `{"b":1,"a":{"x": [1, 2]}}`, "b a", true},
		{"empty", ` { } `, "", true},
		{"duplicate key", `{"a":1,"a":2}`, "", false},
		{"trailing data", `{"a":1} {}`, "", false},
		{"array", `[1]`, "", false},
		{"truncated", `{"a":1`, "", false},
		{"missing value", `{"a":}`, "", false},
	} {
		obj, err := parseObject([]byte(tc.in))
		if (err == nil) != tc.ok {
			t.Errorf("%s: got err %v, want ok=%v", tc.name, err, tc.ok)
			continue
		}
		var keys []string
		for _, m := range obj {
			keys = append(keys, m.key)
		}
		if got := strings.Join(keys, " "); got != tc.keys {
			t.Errorf("%s: keys %q, want %q", tc.name, got, tc.keys)
		}
	}
}

func sha(b []byte) Digest {
	s := sha256.Sum256(b)
	return MustDigest("sha256:" + hex.EncodeToString(s[:]))
}

// chainMeta is an image manifest under a chain of depth nested indexes, one mirror holding
// everything, and one variant set naming that mirror (nothing recorded yet).
func chainMeta(depth int) (meta *Meta, image Digest, chain []Digest) {
	meta = NewMeta(1)
	layer := sha([]byte("layer"))
	meta.Blobs[layer] = &Blob{Size: 5, Since: 1}
	data := []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"layers":[{"mediaType":"x","digest":%q,"size":5}]}`, MediaTypeOCIManifest, layer))
	image = sha(data)
	meta.Manifests[image] = &Manifest{MediaType: MediaTypeOCIManifest, Data: data}
	child, size := image, len(data)
	for range depth {
		data := []byte(fmt.Sprintf(`{"schemaVersion":2,"manifests":[{"digest":%q,"size":%d}]}`, child, size))
		child, size = sha(data), len(data)
		meta.Manifests[child] = &Manifest{MediaType: MediaTypeOCIIndex, Data: data}
		chain = append(chain, child)
	}
	meta.Mirrors = []*Mirror{{Name: "a", URL: "https://a.example/", Enabled: true, Healthy: true, Generation: 1, Checked: time.Now()}}
	meta.VariantSets = []*VariantSet{{Mirrors: []string{"a"}}}
	return meta, image, chain
}

// TestRecordRendersAsRecorded: whatever the nesting, every recorded variant renders to the
// recorded digest and size, and an index's variant points at its child's recorded variant.
func TestRecordRendersAsRecorded(t *testing.T) {
	for _, tc := range []struct {
		name      string
		depth     int
		wantCount int
	}{
		{"image only", 0, 1},
		{"index", 1, 2},
		{"nested to the limit", MaxVariantDepth, MaxVariantDepth + 1},
		// Recording in digest order reaches the chain from wherever it starts; whatever lies
		// deeper than the limit below that start stays canonical, and every index above it
		// still gets a variant (pointing at a canonical child).
		{"deeper than the limit", MaxVariantDepth + 4, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			meta, image, chain := chainMeta(tc.depth)
			r := NewRenderer(meta)
			if n := r.ParseAll(); n != 0 {
				t.Fatalf("ParseAll: %d unsupported, want 0", n)
			}
			n, size := r.Record(0)
			if tc.wantCount >= 0 && n != tc.wantCount {
				t.Errorf("recorded %d variants, want %d", n, tc.wantCount)
			}
			var total int64
			for d, ref := range meta.VariantSets[0].Variants {
				v, err := NewRenderer(meta).Variant(0, d) // lazily parsed, as a reader renders
				if err != nil {
					t.Fatalf("variant of %s: %v", d, err)
				}
				if got := sha(v.Data); got != ref.Digest || v.Digest != ref.Digest || int64(len(v.Data)) != ref.Size {
					t.Errorf("variant of %s: bytes hash to %s (%d bytes), recorded %s (%d bytes)", d, got, len(v.Data), ref.Digest, ref.Size)
				}
				total += ref.Size
			}
			if total != size {
				t.Errorf("Record reported %d bytes, the refs add up to %d", size, total)
			}
			if _, ok := meta.VariantSets[0].Variants[image]; !ok && tc.depth <= MaxVariantDepth {
				t.Errorf("the image has no variant")
			}
			if tc.depth > 0 {
				top := chain[len(chain)-1]
				v, err := r.Variant(0, top)
				if err != nil {
					t.Fatalf("variant of the top index: %v", err)
				}
				child := image
				if len(chain) > 1 {
					child = chain[len(chain)-2]
				}
				below := meta.VariantSets[0].Variants[child]
				if !below.Digest.IsZero() && !strings.Contains(string(v.Data), below.Digest.String()) {
					t.Errorf("top index variant %s does not point at its child's variant %s", v.Data, below.Digest)
				}
			}
		})
	}
}

func TestVariantErrors(t *testing.T) {
	meta, image, chain := chainMeta(1)
	NewRenderer(meta).Record(0)
	good := meta.VariantSets[0].Variants[image]
	for _, tc := range []struct {
		name      string
		set       int
		d         Digest
		tamper    func(vs *VariantSet)
		noVariant bool // ErrNoVariant; otherwise another error
	}{
		{"negative set", -1, image, nil, true},
		{"set out of range", 1, image, nil, true},
		{"not recorded", 0, sha([]byte("other")), nil, true},
		{"wrong digest recorded", 0, image, func(vs *VariantSet) {
			vs.Variants[image] = VariantRef{Digest: sha([]byte("x")), Size: good.Size}
		}, false},
		{"wrong size recorded", 0, image, func(vs *VariantSet) {
			vs.Variants[image] = VariantRef{Digest: good.Digest, Size: good.Size + 1}
		}, false},
		{"child's record changed", 0, chain[0], func(vs *VariantSet) {
			vs.Variants[image] = VariantRef{Digest: sha([]byte("x")), Size: 1}
		}, false},
		{"variant of a manifest that has none", 0, image, func(vs *VariantSet) {
			vs.Mirrors = nil // nobody holds the layer, and there is no origin
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			meta, _, _ := chainMeta(1)
			NewRenderer(meta).Record(0)
			if tc.tamper != nil {
				tc.tamper(meta.VariantSets[0])
			}
			v, err := NewRenderer(meta).Variant(tc.set, tc.d)
			if err == nil {
				t.Fatalf("got variant %s, want an error", v.Digest)
			}
			if got := errors.Is(err, ErrNoVariant); got != tc.noVariant {
				t.Errorf("got %v, want ErrNoVariant %v", err, tc.noVariant)
			}
		})
	}
}

// TestWithout: a renderer leaving mirrors out renders the recorded variants when it leaves
// none of a set's out, names only the mirrors still in (and the origin) otherwise, points an
// index at its own variant of the child (found again by digest), and renders no variant when
// nothing would change.
func TestWithout(t *testing.T) {
	for _, tc := range []struct {
		name     string
		out      []string
		origin   string
		leaves   bool
		wantURLs string // the image variant's urls, "" for no variant
	}{
		{"nothing out", nil, "", false, `["https://a.example/blobs/sha256/LAYER","https://b.example/blobs/sha256/LAYER"]`},
		{"a mirror out of the set", []string{"a"}, "", true, `["https://b.example/blobs/sha256/LAYER"]`},
		{"a mirror of no set out", []string{"c"}, "", false, `["https://a.example/blobs/sha256/LAYER","https://b.example/blobs/sha256/LAYER"]`},
		{"every mirror out, an origin", []string{"a", "b"}, "https://origin.example/", true, `["https://origin.example/blobs/sha256/LAYER"]`},
		{"every mirror out, no origin", []string{"a", "b"}, "", true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			meta, image, chain := chainMeta(1)
			meta.Origin = tc.origin
			meta.Mirrors = append(meta.Mirrors, &Mirror{Name: "b", URL: "https://b.example/", Enabled: true, Healthy: true, Generation: 1, Checked: time.Now()})
			meta.VariantSets[0].Mirrors = []string{"a", "b"}
			NewRenderer(meta).Record(0)
			index := chain[0]
			r, leaves := NewRenderer(meta).Without(func(name string) bool { return slices.Contains(tc.out, name) })
			if leaves != tc.leaves || r.Leaves(0) != tc.leaves {
				t.Errorf("Without reports leaving a mirror out: %v (set 0: %v), want %v", leaves, r.Leaves(0), tc.leaves)
			}
			top, err := r.Variant(0, index)
			if tc.wantURLs == "" {
				if !errors.Is(err, ErrNoVariant) {
					t.Errorf("index variant %v, err %v; want ErrNoVariant", top, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("index variant: %v", err)
			}
			img, err := r.Variant(0, image)
			if err != nil {
				t.Fatalf("image variant: %v", err)
			}
			layer := sha([]byte("layer")).Hex()
			if want := `"urls":` + strings.ReplaceAll(tc.wantURLs, "LAYER", layer); !strings.Contains(string(img.Data), want) {
				t.Errorf("image variant %s, want %s", img.Data, want)
			}
			if !strings.Contains(string(top.Data), img.Digest.String()) {
				t.Errorf("index variant %s does not point at the image variant %s", top.Data, img.Digest)
			}
			if got, ok := r.Rendered(img.Digest); !ok || got.Canonical != image || got.Set != 0 {
				t.Errorf("Rendered(%s) = %+v, %v; want the variant of %s in set 0", img.Digest, got, ok, image)
			}
			if !tc.leaves {
				for d, ref := range map[Digest]*Variant{index: top, image: img} {
					if rec := meta.VariantSets[0].Variants[d]; rec.Digest != ref.Digest {
						t.Errorf("variant of %s: %s, recorded %s: want the recorded one when no mirror of the set is out", d, ref.Digest, rec.Digest)
					}
				}
			}
		})
	}
}
