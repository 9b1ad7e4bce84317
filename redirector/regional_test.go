package redirector

import (
	"bytes"
	"net/http"
	"testing"

	"github.com/regmirror/regmirror/layout"
)

func TestRegionalManifests(t *testing.T) {
	var meta *layout.Meta
	dir, dm := newTestTree(t, func(m *layout.Meta, _ *demo) {
		addMirrors(m, 1)
		addVariants(t, m, 2)
		meta = m
	})
	variant := func(set int, d layout.Digest) *layout.Variant { return renderedVariant(t, meta, set, d) }
	de := http.Header{"Cf-Ipcountry": {"DE"}}
	fr := http.Header{"Cf-Ipcountry": {"FR"}}
	us := http.Header{"Cf-Ipcountry": {"US"}}
	opts := func(regional bool) Options {
		return Options{Tree: dir, RegionalManifests: regional, CountryHeader: "CF-IPCountry", TrustedProxies: trustAll}
	}
	on := newServer(t, opts(true))
	off := newServer(t, opts(false))
	type want struct {
		d    layout.Digest
		body []byte
		cc   string
	}
	canon := func(d layout.Digest) want { return want{d, dm.manifests[d], "public, max-age=60"} }
	regional := func(set int, d layout.Digest) want {
		v := variant(set, d)
		return want{v.Digest, v.Data, "private, max-age=60"}
	}
	immutable := func(w want) want { w.cc = "public, max-age=31536000, immutable"; return w }
	imagesOnly := http.Header{"Accept": {layout.MediaTypeOCIManifest + ", " + layout.MediaTypeDockerManifest}}
	with := func(a, b http.Header) http.Header {
		h := a.Clone()
		for k, v := range b {
			h[k] = v
		}
		return h
	}
	cases := []struct {
		name string
		s    *Server
		path string
		hdr  http.Header
		want want
	}{
		{"off: canonical for Germany", off, "/v2/fedora/manifests/42", de, canon(dm.fedoraIndex)},
		{"on: German variant", on, "/v2/fedora/manifests/42", de, regional(0, dm.fedoraIndex)},
		{"on: European variant", on, "/v2/fedora/manifests/42", fr, regional(1, dm.fedoraIndex)},
		{"on: global has none", on, "/v2/fedora/manifests/42", us, want{dm.fedoraIndex, dm.manifests[dm.fedoraIndex], "private, max-age=60"}},
		{"on: image by tag", on, "/v2/fedora/httpd/manifests/latest", de, regional(0, dm.httpd)},
		{"on: old client gets the variant of the amd64 image", on, "/v2/fedora/manifests/42", with(de, imagesOnly), regional(0, dm.fedoraAMD64)},
		{"on: digest is exact (canonical)", on, "/v2/fedora/manifests/" + dm.fedoraIndex.String(), de, immutable(canon(dm.fedoraIndex))},
		{"on: variant digest from another region", on, "/v2/fedora/manifests/" + variant(0, dm.fedoraIndex).Digest.String(), us, immutable(regional(0, dm.fedoraIndex))},
		{"off: variant digest", off, "/v2/fedora/manifests/" + variant(1, dm.fedoraAMD64).Digest.String(), de, immutable(regional(1, dm.fedoraAMD64))},
		{"off: variant child by digest", off, "/v2/fedora/manifests/" + variant(1, dm.fedoraARM64).Digest.String(), nil, immutable(regional(1, dm.fedoraARM64))},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w := do(c.s, "GET", c.path, "10.0.0.1:1", c.hdr)
			if w.Code != 200 {
				t.Fatalf("status %d %s", w.Code, w.Body)
			}
			if got := w.Header().Get("Docker-Content-Digest"); got != c.want.d.String() {
				t.Errorf("digest %s, want %s", got, c.want.d)
			}
			if !bytes.Equal(w.Body.Bytes(), c.want.body) || digestOf(w.Body.Bytes()) != c.want.d {
				t.Errorf("body is not the bytes of %s", c.want.d)
			}
			if got := w.Header().Get("Cache-Control"); got != c.want.cc {
				t.Errorf("Cache-Control %q, want %q", got, c.want.cc)
			}
		})
	}
	// A variant digest of another repository's manifest is not in this one.
	w := do(off, "GET", "/v2/fedora/manifests/"+variant(0, dm.httpd).Digest.String(), "", nil)
	if w.Code != 404 {
		t.Errorf("variant of another repository: %d", w.Code)
	}
	// The variant of an index points at the variants of its children, which resolve.
	w = do(on, "GET", "/v2/fedora/manifests/42", "10.0.0.1:1", de)
	if !bytes.Contains(w.Body.Bytes(), []byte(variant(0, dm.fedoraAMD64).Digest.String())) {
		t.Error("German index variant does not name the German amd64 variant")
	}
}
