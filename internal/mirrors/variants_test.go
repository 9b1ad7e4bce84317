package mirrors

import (
	"encoding/json"
	"testing"

	"github.com/regmirror/regmirror/layout"
)

func TestVariantEscapesOddURLs(t *testing.T) {
	f := newFixture(t)
	f.meta.Mirrors = []*layout.Mirror{mirror("a", "DE", "EU", 1, 2, true)}
	f.meta.Origin = "https://o.example/\"quoted\"/ä/"
	if _, err := Precompute(f.meta); err != nil {
		t.Fatal(err)
	}
	v := variant(t, f.meta, 0, f.m1)
	got := urlsOf(t, v.Data)[f.l1.String()]
	if len(got) != 2 || got[1] != f.meta.Origin+layout.BlobPath(f.l1) {
		t.Errorf("urls %q", got)
	}
}

// Media types, as the fixtures write them.
const (
	mediaOCIManifest    = "application/vnd.oci.image.manifest.v1+json"
	mediaOCIIndex       = "application/vnd.oci.image.index.v1+json"
	mediaDockerManifest = "application/vnd.docker.distribution.manifest.v2+json"
)

// FuzzVariant records and renders variants of arbitrary manifests: no panic, and every variant
// renders as recorded and is one valid JSON object.
func FuzzVariant(f *testing.F) {
	fx := newFixture(f)
	f.Add(fx.m1Data, false)
	f.Add(fx.m3Data, false)
	f.Add(fx.meta.Manifests[fx.idx].Data, true)
	f.Add([]byte(`{"layers":[{"digest":"`+fx.l1.String()+`","size":1,"urls":null}],"config":{}}`), false)
	f.Add([]byte(`{"manifests":[{"digest":"`+fx.m1.String()+`"}],"manifests":[]}`), true)
	f.Fuzz(func(t *testing.T, data []byte, index bool) {
		meta := newFixture(t).meta
		mt := mediaOCIManifest
		if index {
			mt = mediaOCIIndex
		}
		d := digestOf(data)
		meta.Manifests[d] = &layout.Manifest{MediaType: mt, Data: data}
		meta.Mirrors = []*layout.Mirror{mirror("a", "DE", "EU", 1, 2, true)}
		meta.Origin = "https://o.example/"
		if _, err := Precompute(meta); err != nil {
			t.Fatal(err)
		}
		v := variant(t, meta, 0, d)
		if v == nil {
			return
		}
		if v.Digest != digestOf(v.Data) || v.MediaType != mt {
			t.Fatalf("variant digest or media type wrong")
		}
		if !json.Valid(v.Data) {
			t.Fatalf("invalid JSON variant %s", v.Data)
		}
		if !index {
			var c, w any
			if json.Unmarshal(data, &c) != nil || json.Unmarshal(v.Data, &w) != nil {
				t.Fatalf("variant of a manifest that does not decode")
			}
		}
	})
}
