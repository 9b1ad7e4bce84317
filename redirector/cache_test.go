package redirector

import (
	"net/http"
	"testing"
	"time"

	"github.com/regmirror/regmirror/layout"
)

func TestTagMaxAge(t *testing.T) {
	dir, dm := newTestTree(t, func(m *layout.Meta, _ *demo) { addMirrors(m, 1); addVariants(t, m, 1) })
	for _, c := range []struct {
		maxAge           time.Duration
		regional         bool
		tag, list, blob  string
		digest, blobHead string
	}{
		{0, false, "public, max-age=60", "public, max-age=60", "private, no-store", "public, max-age=31536000, immutable", "public, max-age=31536000, immutable"},
		{5 * time.Minute, false, "public, max-age=300", "public, max-age=300", "private, no-store", "public, max-age=31536000, immutable", "public, max-age=31536000, immutable"},
		{5 * time.Minute, true, "private, max-age=300", "public, max-age=300", "private, no-store", "public, max-age=31536000, immutable", "public, max-age=31536000, immutable"},
		{-1, false, "no-cache", "no-cache", "private, no-store", "public, max-age=31536000, immutable", "public, max-age=31536000, immutable"},
		{-1, true, "private, no-store", "no-cache", "private, no-store", "public, max-age=31536000, immutable", "public, max-age=31536000, immutable"},
	} {
		s := newServer(t, Options{Tree: dir, TagMaxAge: c.maxAge, RegionalManifests: c.regional})
		for _, r := range []struct{ method, path, want string }{
			{"GET", "/v2/fedora/manifests/42", c.tag},
			{"HEAD", "/v2/fedora/manifests/42", c.tag},
			{"GET", "/v2/fedora/tags/list", c.list},
			{"GET", "/v2/_catalog", c.list},
			{"GET", "/v2/fedora/referrers/" + dm.fedoraAMD64.String(), c.list},
			{"GET", "/v2/", c.list},
			{"GET", "/v2/fedora/blobs/" + dm.baseLayer.String(), c.blob},
			{"GET", "/v2/fedora/manifests/" + dm.fedoraIndex.String(), c.digest},
			{"HEAD", "/v2/fedora/blobs/" + dm.baseLayer.String(), c.blobHead},
			{"GET", "/v2/fedora/manifests/nope", "no-store"},
		} {
			w := do(s, r.method, r.path, "81.2.69.1:1", http.Header{})
			if got := w.Header().Get("Cache-Control"); got != r.want {
				t.Errorf("max-age %v regional %v: %s %s: Cache-Control %q, want %q", c.maxAge, c.regional, r.method, r.path, got, r.want)
			}
		}
	}
}
