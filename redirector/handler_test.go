package redirector

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/regmirror/regmirror/layout"
)

type hcase struct {
	name    string
	method  string
	path    string
	hdr     http.Header
	status  int
	headers map[string]string // exact values; "" means the header must be absent
	body    []byte            // exact body, if set
	code    string            // distribution error code, if an error
	check   func(t *testing.T, body []byte, h http.Header)
}

func runCases(t *testing.T, h http.Handler, cases []hcase) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			method := c.method
			if method == "" {
				method = http.MethodGet
			}
			w := do(h, method, c.path, "192.0.2.10:4444", c.hdr)
			res := w.Result()
			body := w.Body.Bytes()
			if res.StatusCode != c.status {
				t.Fatalf("%s %s: status %d, want %d; body %s", method, c.path, res.StatusCode, c.status, body)
			}
			// On every answer.
			if got := res.Header.Get("Docker-Distribution-API-Version"); got != "registry/2.0" {
				t.Errorf("Docker-Distribution-API-Version = %q", got)
			}
			if got := res.Header.Get("X-Content-Type-Options"); got != "nosniff" {
				t.Errorf("X-Content-Type-Options = %q", got)
			}
			for k, want := range c.headers {
				got := res.Header.Get(k)
				if k == "Content-Length" && got == "" && method == http.MethodGet && len(body) <= autoLength {
					got = strconv.Itoa(len(body)) // left to net/http, which writes it on the wire (TestAutoLength)
				}
				if got != want {
					t.Errorf("%s = %q, want %q", k, got, want)
				}
			}
			if c.body != nil && !bytes.Equal(body, c.body) {
				t.Errorf("body = %.300q, want %.300q", body, c.body)
			}
			if method == http.MethodHead && len(body) != 0 {
				t.Errorf("HEAD answered with a body of %d bytes", len(body))
			}
			if c.code != "" {
				var e errorBody
				if err := json.Unmarshal(body, &e); method != http.MethodHead && (err != nil || len(e.Errors) != 1 || e.Errors[0].Code != c.code) {
					t.Errorf("error body %s, want code %s (%v)", body, c.code, err)
				}
				if ct := res.Header.Get("Content-Type"); ct != "application/json" {
					t.Errorf("error Content-Type %q", ct)
				}
				if cc := res.Header.Get("Cache-Control"); cc != "no-store" {
					t.Errorf("error Cache-Control %q", cc)
				}
			}
			if c.check != nil {
				c.check(t, body, res.Header)
			}
		})
	}
}

func accept(types ...string) http.Header { return http.Header{"Accept": types} }

func TestHandlerNoMirrors(t *testing.T) {
	dir, dm := newTestTree(t, nil)
	s := newServer(t, Options{Tree: dir})
	idx := dm.manifests[dm.fedoraIndex]
	amd := dm.manifests[dm.fedoraAMD64]
	ql := func(b []byte) string { return itoa(len(b)) }
	layer := dm.blobs[dm.baseLayer]
	tagHeaders := func(d layout.Digest, b []byte, mt string) map[string]string {
		return map[string]string{
			"Content-Type": mt, "Docker-Content-Digest": d.String(), "Etag": `"` + d.String() + `"`,
			"Content-Length": ql(b), "Cache-Control": "public, max-age=60", "Vary": "Accept",
		}
	}
	digestHeaders := func(d layout.Digest, b []byte, mt string) map[string]string {
		return map[string]string{
			"Content-Type": mt, "Docker-Content-Digest": d.String(), "Etag": `"` + d.String() + `"`,
			"Content-Length": ql(b), "Cache-Control": "public, max-age=31536000, immutable", "Vary": "",
		}
	}
	listBody := func(key string, want []string) func(t *testing.T, body []byte, h http.Header) {
		return func(t *testing.T, body []byte, h http.Header) {
			var v map[string]any
			if err := json.Unmarshal(body, &v); err != nil {
				t.Fatal(err)
			}
			got, _ := json.Marshal(v[key])
			w, _ := json.Marshal(want)
			if !bytes.Equal(got, w) {
				t.Errorf("%s = %s, want %s", key, got, w)
			}
		}
	}
	referrers := func(want ...layout.Digest) func(t *testing.T, body []byte, h http.Header) {
		return func(t *testing.T, body []byte, h http.Header) {
			var idx struct {
				SchemaVersion int    `json:"schemaVersion"`
				MediaType     string `json:"mediaType"`
				Manifests     []struct {
					Digest       string `json:"digest"`
					ArtifactType string `json:"artifactType"`
				} `json:"manifests"`
			}
			if err := json.Unmarshal(body, &idx); err != nil {
				t.Fatal(err)
			}
			if idx.SchemaVersion != 2 || idx.MediaType != layout.MediaTypeOCIIndex || idx.Manifests == nil {
				t.Errorf("referrers answer %s", body)
			}
			var got []string
			for _, m := range idx.Manifests {
				got = append(got, m.Digest)
			}
			var w []string
			for _, d := range want {
				w = append(w, d.String())
			}
			if strings.Join(got, ",") != strings.Join(w, ",") {
				t.Errorf("referrers %v, want %v", got, w)
			}
		}
	}
	fedoraAMDPath := "/v2/fedora/manifests/" + dm.fedoraAMD64.String()
	bad := "sha256:baddigeststring"

	cases := []hcase{
		{name: "base", path: "/v2/", status: 200, body: []byte("{}"), headers: map[string]string{"Content-Type": "application/json", "Content-Length": "2"}},
		{name: "base head", method: "HEAD", path: "/v2/", status: 200, headers: map[string]string{"Content-Length": "2"}},
		{name: "base no slash", path: "/v2", status: 200},
		{name: "healthz", path: "/healthz", status: 200, body: []byte("ok generation 1\n")},

		// Manifests by tag.
		{name: "tag index", path: "/v2/fedora/manifests/42", hdr: accept(layout.MediaTypeOCIIndex, layout.MediaTypeOCIManifest), status: 200, body: idx, headers: tagHeaders(dm.fedoraIndex, idx, layout.MediaTypeOCIIndex)},
		{name: "tag no accept", path: "/v2/fedora/manifests/latest", status: 200, body: idx},
		{name: "tag accept wildcard", path: "/v2/fedora/manifests/42", hdr: accept("*/*"), status: 200, body: idx},
		{name: "tag accept docker list", path: "/v2/fedora/manifests/42", hdr: accept(layout.MediaTypeDockerManifest + ", " + layout.MediaTypeDockerList + ";q=0.5"), status: 200, body: idx},
		{name: "tag accept images only", path: "/v2/fedora/manifests/42", hdr: accept(layout.MediaTypeDockerManifest+", "+layout.MediaTypeOCIManifest, "application/vnd.docker.distribution.manifest.v1+prettyjws"), status: 200, body: amd, headers: tagHeaders(dm.fedoraAMD64, amd, layout.MediaTypeOCIManifest)},
		{name: "tag head", method: "HEAD", path: "/v2/fedora/manifests/42", status: 200, headers: tagHeaders(dm.fedoraIndex, idx, layout.MediaTypeOCIIndex)},
		{name: "tag docker schema2", path: "/v2/fedora/httpd/manifests/2.4", status: 200, body: dm.manifests[dm.httpd], headers: tagHeaders(dm.httpd, dm.manifests[dm.httpd], layout.MediaTypeDockerManifest)},
		{name: "nested name", path: "/v2/fedora/toolbox/manifests/42", status: 200, body: dm.manifests[dm.toolbox]},
		{name: "tag if-none-match", path: "/v2/fedora/manifests/42", hdr: http.Header{"If-None-Match": {`"` + dm.fedoraIndex.String() + `"`}}, status: 304, body: []byte{}},
		{name: "tag if-none-match other", path: "/v2/fedora/manifests/42", hdr: http.Header{"If-None-Match": {`"sha256:0000"`}}, status: 200, body: idx},
		{name: "tag unknown", path: "/v2/fedora/manifests/41", status: 404, code: "MANIFEST_UNKNOWN"},
		{name: "tag invalid", path: "/v2/fedora/manifests/-41", status: 400, code: "MANIFEST_INVALID"},
		{name: "tag too long", path: "/v2/fedora/manifests/" + strings.Repeat("a", 129), status: 400, code: "MANIFEST_INVALID"},

		// Manifests by digest.
		{name: "digest", path: fedoraAMDPath, hdr: accept(layout.MediaTypeDockerManifest), status: 200, body: amd, headers: digestHeaders(dm.fedoraAMD64, amd, layout.MediaTypeOCIManifest)},
		{name: "digest index ignores accept", path: "/v2/fedora/manifests/" + dm.fedoraIndex.String(), hdr: accept(layout.MediaTypeDockerManifest), status: 200, body: idx},
		{name: "digest head", method: "HEAD", path: fedoraAMDPath, status: 200, headers: digestHeaders(dm.fedoraAMD64, amd, layout.MediaTypeOCIManifest)},
		{name: "digest if-none-match", path: fedoraAMDPath, hdr: http.Header{"If-None-Match": {`W/"x", "` + dm.fedoraAMD64.String() + `"`}}, status: 304},
		// Content of another repository is served as if it were in this one: a replica a
		// generation behind cannot tell it from content a newer generation put here.
		{name: "digest of another repository", path: "/v2/fedora/manifests/" + dm.toolbox.String(), status: 200, body: dm.manifests[dm.toolbox]},
		{name: "digest in an unknown repository", path: "/v2/fedora/new/manifests/" + dm.toolbox.String(), status: 200, body: dm.manifests[dm.toolbox]},
		{name: "digest unknown", path: "/v2/fedora/manifests/sha256:" + strings.Repeat("0", 64), status: 404, code: "MANIFEST_UNKNOWN"},
		{name: "digest invalid", path: "/v2/fedora/manifests/" + bad, status: 400, code: "DIGEST_INVALID"},
		{name: "digest uppercase", path: "/v2/fedora/manifests/sha256:" + strings.Repeat("A", 64), status: 400, code: "DIGEST_INVALID"},
		{name: "digest other algorithm", path: "/v2/fedora/manifests/sha384:" + strings.Repeat("0", 96), status: 404, code: "MANIFEST_UNKNOWN"},
		{name: "referrer by digest", path: "/v2/fedora/manifests/" + dm.signature.String(), status: 200, body: dm.manifests[dm.signature]},
		{name: "digest of 60 KB", path: "/v2/fedora/manifests/sha256:" + strings.Repeat("z", 60000), status: 400, code: "DIGEST_INVALID", check: shortError},
		{name: "blob digest of 60 KB", path: "/v2/fedora/blobs/sha256:" + strings.Repeat("z", 60000) + "end", status: 400, code: "DIGEST_INVALID", check: shortError},
		{name: "referrers digest of 60 KB", path: "/v2/fedora/referrers/sha256:" + strings.Repeat("x", 60000), status: 400, code: "DIGEST_INVALID", check: shortError},

		// Names.
		{name: "unknown repository", path: "/v2/fedora/nope/manifests/42", status: 404, code: "NAME_UNKNOWN"},
		{name: "invalid name upper", path: "/v2/Fedora/manifests/42", status: 400, code: "NAME_INVALID"},
		{name: "invalid name dotdot", path: "/v2/fedora/../x/manifests/42", status: 400, code: "NAME_INVALID"},
		{name: "invalid name double slash", path: "/v2/fedora//x/manifests/42", status: 400, code: "NAME_INVALID"},
		{name: "empty name", path: "/v2//manifests/42", status: 400, code: "NAME_INVALID"},
		{name: "invalid name blob", path: "/v2/a_-b/blobs/" + dm.baseLayer.String(), status: 400, code: "NAME_INVALID"},

		// Blobs, served from the tree (no mirrors, no origin).
		{name: "blob local", path: "/v2/fedora/blobs/" + dm.baseLayer.String(), status: 200, body: layer, headers: map[string]string{
			"Content-Type": "application/octet-stream", "Docker-Content-Digest": dm.baseLayer.String(), "Content-Length": ql(layer),
			"Cache-Control": "public, max-age=31536000, immutable", "Etag": `"` + dm.baseLayer.String() + `"`, "Location": ""}},
		{name: "blob range", path: "/v2/fedora/blobs/" + dm.baseLayer.String(), hdr: http.Header{"Range": {"bytes=0-9"}}, status: 206, body: layer[:10], headers: map[string]string{
			"Content-Range": "bytes 0-9/" + ql(layer), "Content-Length": "10"}},
		{name: "blob range unsatisfiable", path: "/v2/fedora/blobs/" + dm.baseLayer.String(), hdr: http.Header{"Range": {"bytes=999999999-"}}, status: 416},
		{name: "blob if-none-match", path: "/v2/fedora/blobs/" + dm.baseLayer.String(), hdr: http.Header{"If-None-Match": {`"` + dm.baseLayer.String() + `"`}}, status: 304},
		{name: "blob head", method: "HEAD", path: "/v2/fedora/blobs/" + dm.baseLayer.String(), status: 200, headers: map[string]string{
			"Content-Length": ql(layer), "Docker-Content-Digest": dm.baseLayer.String(), "Cache-Control": "public, max-age=31536000, immutable", "Location": ""}},
		{name: "blob config", path: "/v2/fedora/httpd/blobs/" + dm.httpdConfig.String(), status: 200, body: dm.blobs[dm.httpdConfig]},
		{name: "blob is manifest", path: "/v2/fedora/blobs/" + dm.fedoraAMD64.String(), status: 200, body: amd, headers: map[string]string{"Docker-Content-Digest": dm.fedoraAMD64.String()}},
		{name: "blob of another repository", path: "/v2/fedora/httpd/blobs/" + dm.toolboxLayer.String(), status: 200, body: dm.blobs[dm.toolboxLayer]},
		{name: "blob head of another repository", method: "HEAD", path: "/v2/fedora/httpd/blobs/" + dm.toolboxLayer.String(), status: 200, headers: map[string]string{"Content-Length": ql(dm.blobs[dm.toolboxLayer])}},
		{name: "blob unknown", path: "/v2/fedora/blobs/sha256:" + strings.Repeat("1", 64), status: 404, code: "BLOB_UNKNOWN"},
		{name: "blob invalid digest", path: "/v2/fedora/blobs/" + bad, status: 400, code: "DIGEST_INVALID"},
		{name: "blob invalid digest head", method: "HEAD", path: "/v2/fedora/blobs/sha256:xyz", status: 400, code: "DIGEST_INVALID"},
		{name: "blob path traversal", path: "/v2/fedora/blobs/sha256:..%2F..%2Fetc%2Fpasswd", status: 404, code: "NOT_FOUND"},
		{name: "blob path traversal in digest", path: "/v2/fedora/blobs/sha256:..%5C..%5Cetc", status: 400, code: "DIGEST_INVALID"},
		{name: "blob other algorithm", path: "/v2/fedora/blobs/md5:" + strings.Repeat("0", 32), status: 404, code: "BLOB_UNKNOWN"},
		{name: "blob in an unknown repository", path: "/v2/nope/blobs/" + dm.baseLayer.String(), status: 200, body: layer},

		// Tags and catalog.
		{name: "tags", path: "/v2/fedora/tags/list", status: 200, body: []byte(`{"name":"fedora","tags":["42","latest"]}`), headers: map[string]string{"Content-Type": "application/json", "Cache-Control": "public, max-age=60", "Link": ""}},
		{name: "tags nested", path: "/v2/fedora/httpd/tags/list", status: 200, body: []byte(`{"name":"fedora/httpd","tags":["2.4","latest"]}`)},
		{name: "tags n=1", path: "/v2/fedora/tags/list?n=1", status: 200, body: []byte(`{"name":"fedora","tags":["42"]}`), headers: map[string]string{"Link": `</v2/fedora/tags/list?last=42&n=1>; rel="next"`}},
		{name: "tags n=1 last=42", path: "/v2/fedora/tags/list?n=1&last=42", status: 200, body: []byte(`{"name":"fedora","tags":["latest"]}`), headers: map[string]string{"Link": ""}},
		{name: "tags n=2", path: "/v2/fedora/tags/list?n=2", status: 200, body: []byte(`{"name":"fedora","tags":["42","latest"]}`), headers: map[string]string{"Link": ""}},
		{name: "tags n=0", path: "/v2/fedora/tags/list?n=0", status: 200, body: []byte(`{"name":"fedora","tags":[]}`), headers: map[string]string{"Link": ""}},
		{name: "tags last absent", path: "/v2/fedora/tags/list?last=5", status: 200, body: []byte(`{"name":"fedora","tags":["latest"]}`)},
		{name: "tags last past end", path: "/v2/fedora/tags/list?last=zzz", status: 200, body: []byte(`{"name":"fedora","tags":[]}`)},
		{name: "tags n negative", path: "/v2/fedora/tags/list?n=-1", status: 400, code: "PAGINATION_NUMBER_INVALID"},
		{name: "tags n junk", path: "/v2/fedora/tags/list?n=ten", status: 400, code: "PAGINATION_NUMBER_INVALID"},
		{name: "tags unknown repository", path: "/v2/nope/tags/list", status: 404, code: "NAME_UNKNOWN"},
		{name: "tags invalid name", path: "/v2/NOPE/tags/list", status: 400, code: "NAME_INVALID"},
		{name: "catalog", path: "/v2/_catalog", status: 200, check: listBody("repositories", []string{"fedora", "fedora/httpd", "fedora/minimal", "fedora/toolbox"})},
		{name: "catalog n=2", path: "/v2/_catalog?n=2", status: 200, check: listBody("repositories", []string{"fedora", "fedora/httpd"}), headers: map[string]string{"Link": `</v2/_catalog?last=fedora%2Fhttpd&n=2>; rel="next"`}},
		{name: "catalog next page", path: "/v2/_catalog?n=2&last=fedora%2Fhttpd", status: 200, check: listBody("repositories", []string{"fedora/minimal", "fedora/toolbox"}), headers: map[string]string{"Link": ""}},

		// Referrers.
		{name: "referrers", path: "/v2/fedora/referrers/" + dm.fedoraAMD64.String(), status: 200, check: referrers(dm.signature, dm.sbom), headers: map[string]string{"Content-Type": layout.MediaTypeOCIIndex, "OCI-Filters-Applied": ""}},
		{name: "referrers filtered", path: "/v2/fedora/referrers/" + dm.fedoraAMD64.String() + "?artifactType=" + sigType, status: 200, check: referrers(dm.signature), headers: map[string]string{"OCI-Filters-Applied": "artifactType"}},
		{name: "referrers filtered none", path: "/v2/fedora/referrers/" + dm.fedoraAMD64.String() + "?artifactType=x%2Fy", status: 200, check: referrers(), headers: map[string]string{"OCI-Filters-Applied": "artifactType"}},
		{name: "referrers unknown subject", path: "/v2/fedora/referrers/sha256:" + strings.Repeat("2", 64), status: 200, check: referrers()},
		{name: "referrers unknown repository", path: "/v2/nope/referrers/" + dm.fedoraAMD64.String(), status: 404, code: "NAME_UNKNOWN"},
		{name: "referrers invalid digest", path: "/v2/fedora/referrers/" + bad, status: 400, code: "DIGEST_INVALID"},

		// Other endpoints.
		{name: "unknown path", path: "/index.html", status: 404, code: "NOT_FOUND"},
		{name: "repository without endpoint", path: "/v2/fedora", status: 404, code: "NOT_FOUND"},
		{name: "unknown kind", path: "/v2/fedora/things/x", status: 404, code: "NOT_FOUND"},
		{name: "upload get", path: "/v2/fedora/blobs/uploads/abc", status: 405, code: "UNSUPPORTED"},
	}
	// Every write method on every kind of path.
	for _, m := range []string{"POST", "PUT", "PATCH", "DELETE", "OPTIONS"} {
		for _, p := range []string{"/v2/", "/v2/fedora/manifests/42", "/v2/fedora/manifests/" + dm.fedoraIndex.String(), "/v2/fedora/blobs/uploads/",
			"/v2/fedora/blobs/uploads/123", "/v2/fedora/blobs/" + dm.baseLayer.String(), "/v2/new/repo/blobs/uploads/?mount=x", "/v2/_catalog", "/v2/fedora/tags/list"} {
			cases = append(cases, hcase{name: m + " " + p, method: m, path: p, status: 405, code: "UNSUPPORTED", headers: map[string]string{"Allow": "GET, HEAD"}})
		}
	}
	runCases(t, s, cases)
}

// shortError checks that an error answer echoes at most maxDetail bytes of the request, cut in
// the middle so that both ends show.
func shortError(t *testing.T, body []byte, _ http.Header) {
	var e errorBody
	if err := json.Unmarshal(body, &e); err != nil || len(e.Errors) != 1 {
		t.Fatalf("error body %.300s: %v", body, err)
	}
	d, _ := e.Errors[0].Detail.(string)
	if len(d) > maxDetail || len(body) > 2*maxDetail {
		t.Errorf("detail of %d bytes (body %d), want at most %d: %.300q", len(d), len(body), maxDetail, d)
	}
	if !strings.Contains(d, "…") {
		t.Errorf("detail %q: want the digest cut in the middle", d)
	}
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}
