package layout

import (
	"fmt"
	"testing"
	"time"
)

// TestRetiringMetaBytes: the retiring set's cost is 0 without one, grows with it, and
// measuring leaves the metadata as it was.
func TestRetiringMetaBytes(t *testing.T) {
	digest := func(i int) Digest { return MustDigest(fmt.Sprintf("sha256:%064x", i)) }
	build := func(retiring int) *Meta {
		m := NewMeta(7)
		m.Manifests[digest(1)] = &Manifest{MediaType: "application/vnd.oci.image.manifest.v1+json", Data: []byte(`{"tagged":true}`)}
		m.Blobs[digest(1)] = &Blob{Size: 15, Since: 7}
		m.Blobs[digest(2)] = &Blob{Size: 100, Since: 3}
		m.Repositories["app"] = &Repository{Tags: map[string]Digest{"latest": digest(1)}, Manifests: []Digest{digest(1)}, Blobs: []Digest{digest(2)}}
		if retiring > 0 {
			m.Repositories["gone"] = &Repository{}
		}
		for i := range retiring {
			md, ld := digest(100+2*i), digest(101+2*i)
			m.Manifests[md] = &Manifest{MediaType: "application/vnd.oci.image.manifest.v1+json", Data: fmt.Appendf(nil, `{"retiring":%d}`, i)}
			m.Blobs[md] = &Blob{Size: 16, Since: 5, Retired: time.Unix(1_790_000_000, 0)}
			m.Blobs[ld] = &Blob{Size: 1 << 20, Since: 5, Retired: time.Unix(1_790_000_000, 0)}
			r := m.Repositories["app"]
			if i%2 == 1 {
				r = m.Repositories["gone"]
			}
			r.Retiring = append(r.Retiring, md)
			r.RetiringBlobs = append(r.RetiringBlobs, ld)
		}
		return m
	}
	prev := -1
	for _, tc := range []struct {
		name     string
		retiring int
	}{
		{"none", 0},
		{"one manifest", 1},
		{"eight manifests, two repositories", 8},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := build(tc.retiring)
			before, _, err := EncodeMeta(m)
			if err != nil {
				t.Fatal(err)
			}
			got, err := RetiringMetaBytes(m)
			if err != nil {
				t.Fatal(err)
			}
			if tc.retiring == 0 && got != 0 {
				t.Errorf("RetiringMetaBytes without a retiring set: got %d, want 0", got)
			}
			if tc.retiring > 0 && got <= prev {
				t.Errorf("RetiringMetaBytes of %d retiring manifests: got %d, want more than %d", tc.retiring, got, prev)
			}
			prev = got
			after, _, err := EncodeMeta(m)
			if err != nil {
				t.Fatal(err)
			}
			if string(after) != string(before) {
				t.Errorf("RetiringMetaBytes changed the metadata")
			}
		})
	}
}
