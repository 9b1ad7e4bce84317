package layout

import (
	"bytes"
	"encoding/json"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Metadata written while the stored referrers were go-containerregistry's v1.Descriptor
// loads into Descriptor and encodes again to the same bytes.
func TestDescriptorReadsOldReferrers(t *testing.T) {
	h, err := v1.NewHash(digestOfTest([]byte("referrer")).String())
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		old  v1.Descriptor
	}{
		{"minimal", v1.Descriptor{MediaType: types.OCIManifestSchema1, Size: 42, Digest: h}},
		{"every field", v1.Descriptor{
			MediaType: types.OCIManifestSchema1, Size: 42, Digest: h,
			Data:         []byte(`{"x":"<&>"}`),
			URLs:         []string{"https://example.com/a?b&c"},
			Annotations:  map[string]string{"org.opencontainers.image.created": "2026-01-01", "a": "<b>"},
			Platform:     &v1.Platform{Architecture: "arm64", OS: "linux", OSVersion: "1", OSFeatures: []string{"f"}, Variant: "v8", Features: []string{"g"}},
			ArtifactType: "application/vnd.example.sbom",
		}},
		{"empty platform", v1.Descriptor{MediaType: "application/vnd.example", Size: 0, Digest: h, Platform: &v1.Platform{}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			subject := digestOfTest([]byte("subject"))
			old, err := json.Marshal(map[Digest][]v1.Descriptor{subject: {c.old}})
			if err != nil {
				t.Fatal(err)
			}
			var got map[Digest][]Descriptor
			if err := json.Unmarshal(old, &got); err != nil {
				t.Fatalf("loading old referrers: %v", err)
			}
			again, err := json.Marshal(got)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(again, old) {
				t.Errorf("re-encoded referrers differ:\ngot  %s\nwant %s", again, old)
			}
			if d := got[subject][0].Digest; d.String() != h.String() {
				t.Errorf("digest: got %s, want %s", d, h)
			}
		})
	}
}

// A whole metadata file with referrers, encoded with the stored format's types, decodes to
// the same metadata and encodes to the same bytes.
func TestMetaWithReferrersRoundTrips(t *testing.T) {
	m := NewMeta(3)
	sub, ref := digestOfTest([]byte("subject")), digestOfTest([]byte("referrer"))
	m.Repositories["demo"] = &Repository{Referrers: map[Digest][]Descriptor{sub: {{
		MediaType: MediaTypeOCIManifest, Size: 8, Digest: ref, ArtifactType: "application/vnd.example.sig",
		Annotations: map[string]string{"k": "v"}, Platform: &Platform{OS: "linux", Architecture: "amd64"},
	}}}}
	raw, d, err := EncodeMeta(m)
	if err != nil {
		t.Fatal(err)
	}
	back, err := DecodeMeta(raw)
	if err != nil {
		t.Fatal(err)
	}
	raw2, d2, err := EncodeMeta(back)
	if err != nil {
		t.Fatal(err)
	}
	if d2 != d || !bytes.Equal(raw, raw2) {
		t.Errorf("metadata changed on a round trip: got %s, want %s", d2, d)
	}
}

func TestIsForeignLayer(t *testing.T) {
	cases := []struct {
		name string
		mt   string
		urls []string
		want bool
	}{
		{"docker foreign", MediaTypeDockerForeignLayer, nil, true},
		{"oci nondistributable", "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip", nil, true},
		{"urls", "application/vnd.oci.image.layer.v1.tar+gzip", []string{"https://example.com/l"}, true},
		{"ordinary layer", "application/vnd.oci.image.layer.v1.tar+gzip", nil, false},
		{"docker layer", "application/vnd.docker.image.rootfs.diff.tar.gzip", nil, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := IsForeignLayer(c.mt, c.urls); got != c.want {
				t.Errorf("IsForeignLayer(%q, %v): got %v, want %v", c.mt, c.urls, got, c.want)
			}
		})
	}
}
