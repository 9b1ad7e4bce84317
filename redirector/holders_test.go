package redirector

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/regmirror/regmirror/layout"
)

// TestBlobHeadAgreesWithGet: a blob new in generation 3 (no crawl has seen it on a mirror
// yet, or only some mirrors) goes to a mirror of the client's tiers holding it, else to any
// mirror holding it that every client may use, else the origin, else the tree; HEAD answers
// 200 exactly when that GET finds it.
func TestBlobHeadAgreesWithGet(t *testing.T) {
	cases := []struct {
		name    string
		holders map[string]uint64 // mirror → generation held (others hold 2)
		origin  string
		noFile  bool   // the tree lacks the blob's file (a redirector-only host)
		want    int    // GET status
		mirror  string // GET's 307 target ("origin" for the origin)
		mod     func(m *layout.Meta)
		out     []string // mirrors the health probes took out of rotation
	}{
		{name: "a mirror of the region holds it", holders: map[string]uint64{"de1.example": 3}, want: 307, mirror: "de1.example"},
		{name: "only a mirror outside every region tier holds it", holders: map[string]uint64{"us.example": 3}, want: 307, mirror: "us.example",
			mod: func(m *layout.Meta) {
				m.Regions = map[string]*layout.Region{"DE": {Tiers: [][]string{{"de1.example", "de2.example"}}, VariantSet: -1}}
			}},
		{name: "only a mirror outside every region tier holds it, out of rotation", holders: map[string]uint64{"us.example": 3}, noFile: true, want: 404,
			out: []string{"us.example"},
			mod: func(m *layout.Meta) {
				m.Regions = map[string]*layout.Region{"DE": {Tiers: [][]string{{"de1.example", "de2.example"}}, VariantSet: -1}}
			}},
		{name: "only a private mirror holds it", holders: map[string]uint64{"us.example": 3}, noFile: true, want: 404,
			mod: func(m *layout.Meta) {
				m.Regions = map[string]*layout.Region{"DE": {Tiers: [][]string{{"de1.example", "de2.example"}}, VariantSet: -1}}
				for _, mi := range m.Mirrors {
					if mi.Name == "us.example" {
						mi.Private = true
					}
				}
			}},
		{name: "only a mirror restricted to other countries holds it", holders: map[string]uint64{"us.example": 3}, noFile: true, want: 404,
			mod: func(m *layout.Meta) {
				m.Regions = map[string]*layout.Region{"DE": {Tiers: [][]string{{"de1.example", "de2.example"}}, VariantSet: -1}}
				for _, mi := range m.Mirrors {
					if mi.Name == "us.example" {
						mi.AllowedCountries = []string{"US"}
					}
				}
			}},
		{name: "no mirror holds it: origin", origin: "https://origin.example/tree/", noFile: true, want: 307, mirror: "origin"},
		{name: "no mirror, no origin: the tree", want: 200},
		{name: "no mirror, no origin, no file", noFile: true, want: 404},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir, dm := newTestTree(t, func(m *layout.Meta, dm *demo) {
				m.Generation = 3
				addMirrors(m, 2)
				for _, mi := range m.Mirrors {
					if g, ok := c.holders[mi.Name]; ok {
						mi.Generation = g
					}
				}
				for _, b := range m.Blobs {
					b.Since = 1
				}
				m.Blobs[dm.toolboxLayer].Since = 3
				m.Origin = c.origin
				if c.mod != nil {
					c.mod(m)
				}
			})
			if c.noFile {
				check(t, os.Remove(filepath.Join(dir, filepath.FromSlash(layout.BlobPath(dm.toolboxLayer)))))
			}
			s := newServer(t, Options{Tree: dir, TrustedProxies: trustAll, CountryHeader: "Cf-Ipcountry"})
			if len(c.out) > 0 {
				takeOut(s, fakeProbes(t, s), c.out...)
			}
			path := "/v2/fedora/toolbox/blobs/" + dm.toolboxLayer.String()
			de := http.Header{"Cf-Ipcountry": {"DE"}}
			for range 50 {
				get := do(s, "GET", path, "192.0.2.1:1", de)
				if get.Code != c.want {
					t.Fatalf("GET: %d, want %d", get.Code, c.want)
				}
				if c.want == 307 {
					loc := get.Header().Get("Location")
					if c.mirror == "origin" && !strings.HasPrefix(loc, c.origin) || c.mirror != "origin" && mirrorOf(t, get, dm.toolboxLayer) != c.mirror {
						t.Fatalf("GET: sent to %q, want %s", loc, c.mirror)
					}
				}
				head := do(s, "HEAD", path, "192.0.2.1:1", de)
				if wantHead := map[bool]int{true: 200, false: 404}[c.want != 404]; head.Code != wantHead {
					t.Fatalf("HEAD: %d, want %d (GET answers %d)", head.Code, wantHead, get.Code)
				}
			}
		})
	}
}

// FuzzManifestDocument: whatever bytes a tree file or the origin holds, the check never
// panics, and what it accepts hashes to the digest and has a manifest media type.
func FuzzManifestDocument(f *testing.F) {
	f.Add([]byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}`))
	f.Add([]byte(`{"schemaVersion":2,"config":{},"layers":[]}`))
	f.Add([]byte(`{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{},"layers":null}`))
	f.Add([]byte(`{"architecture":"amd64","rootfs":{}}`))
	f.Add([]byte("\x1f\x8b\x08\x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		d := digestOf(data)
		e, err := manifestDocument(d, data)
		if err != nil {
			return
		}
		switch e.mediaType {
		case layout.MediaTypeOCIIndex, layout.MediaTypeDockerList, layout.MediaTypeOCIManifest, layout.MediaTypeDockerManifest:
		default:
			t.Fatalf("accepted with media type %q", e.mediaType)
		}
		if e.d != d || string(e.body) != string(data) {
			t.Fatalf("accepted %s as %s", d, e.d)
		}
		if _, err := manifestDocument(layout.MustDigest("sha256:"+strings.Repeat("0", 64)), data); err == nil {
			t.Fatalf("accepted under another digest")
		}
	})
}
