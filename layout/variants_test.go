package layout

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
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
// everything, and one variant set naming that mirror.
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

// TestRenderNesting: whatever the nesting, an index's variant points at its child's variant,
// an index more than MaxVariantDepth levels tall (and every index above it) has none, and a
// manifest's variant is the same whether it is rendered alone, from the top, or with all.
func TestRenderNesting(t *testing.T) {
	for _, tc := range []struct {
		name  string
		depth int
	}{
		{"image only", 0},
		{"index", 1},
		{"nested to the limit", MaxVariantDepth},
		{"deeper than the limit", MaxVariantDepth + 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			meta, image, chain := chainMeta(tc.depth)
			all := append([]Digest{image}, chain...)
			r := NewRenderer(meta)
			got := map[Digest]*Variant{}
			top := slices.Clone(all)
			slices.Reverse(top) // from the top: children are reached through their parents first
			r.Render(0, top, func(d Digest, v *Variant) {
				if got[d] != nil {
					t.Errorf("%s visited twice", d)
				}
				if sha(v.Data) != v.Digest || v.MediaType != meta.Manifests[d].MediaType {
					t.Errorf("variant of %s: digest %s, media type %s; bytes hash to %s, want %s", d, v.Digest, v.MediaType, sha(v.Data), meta.Manifests[d].MediaType)
				}
				got[d] = v
			})
			if want := 1 + min(tc.depth, MaxVariantDepth); len(got) != want {
				t.Errorf("rendered %d variants, want %d", len(got), want)
			}
			for level, d := range all { // level: the index's height; 0 for the image
				v, err := NewRenderer(meta).Variant(0, d)
				if level > MaxVariantDepth {
					if !errors.Is(err, ErrNoVariant) || got[d] != nil {
						t.Errorf("level %d: variant %v, err %v; want ErrNoVariant", level, v, err)
					}
					continue
				}
				if err != nil {
					t.Fatalf("level %d: %v", level, err)
				}
				if got[d] == nil || v.Digest != got[d].Digest || !bytes.Equal(v.Data, got[d].Data) {
					t.Errorf("level %d: rendered alone %s, with all %v", level, v.Digest, got[d])
				}
				if level > 0 && !strings.Contains(string(v.Data), `"digest":"`+got[all[level-1]].Digest.String()+`","size":`+strconv.Itoa(len(got[all[level-1]].Data))) {
					t.Errorf("level %d: variant %s does not point at its child's variant %s", level, v.Data, got[all[level-1]].Digest)
				}
			}
		})
	}
}

func TestVariantErrors(t *testing.T) {
	for _, tc := range []struct {
		name   string
		set    int
		d      func(image Digest) Digest
		tamper func(meta *Meta)
	}{
		{"negative set", -1, nil, nil},
		{"set out of range", 1, nil, nil},
		{"unknown manifest", 0, func(Digest) Digest { return sha([]byte("other")) }, nil},
		{"nothing would change", 0, nil, func(meta *Meta) {
			meta.VariantSets[0].Mirrors = nil // nobody holds the layer, and there is no origin
		}},
		{"schema 1", 0, nil, func(meta *Meta) {
			for _, m := range meta.Manifests {
				m.MediaType = MediaTypeDockerSchema1Signed
			}
		}},
		{"duplicate keys", 0, nil, func(meta *Meta) {
			for _, m := range meta.Manifests {
				m.Data = append([]byte(`{"schemaVersion":1,`), m.Data[1:]...)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			meta, image, _ := chainMeta(1)
			if tc.tamper != nil {
				tc.tamper(meta)
			}
			d := image
			if tc.d != nil {
				d = tc.d(image)
			}
			v, err := NewRenderer(meta).Variant(tc.set, d)
			if !errors.Is(err, ErrNoVariant) {
				t.Errorf("got variant %v, err %v; want ErrNoVariant", v, err)
			}
		})
	}
}

// TestWithout: a renderer leaving mirrors out renders what the full renderer renders when it
// leaves none of a set's out, names only the mirrors still in (and the origin) otherwise,
// points an index at its own variant of the child, and renders no variant when nothing would
// change.
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
			if !tc.leaves {
				for d, v := range map[Digest]*Variant{index: top, image: img} {
					if full, err := NewRenderer(meta).Variant(0, d); err != nil || full.Digest != v.Digest {
						t.Errorf("variant of %s: %s, the full renderer's %v (%v): want the same when no mirror of the set is out", d, v.Digest, full, err)
					}
				}
			}
		})
	}
}
