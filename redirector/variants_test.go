package redirector

import (
	"bytes"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/regmirror/regmirror/layout"
)

// renders is the count of the variant renders with result.
func renders(t *testing.T, s *Server, result string) float64 {
	t.Helper()
	return counterValue(t, s.metrics.variantRenders.WithLabelValues(result))
}

// TestVariantsRenderOnRequest: loading renders nothing; the first request for a variant renders
// it, later ones are answered from the cache, by tag and by digest alike.
func TestVariantsRenderOnRequest(t *testing.T) {
	var meta *layout.Meta
	dir, dm := newTestTree(t, func(m *layout.Meta, _ *demo) { addMirrors(m, 1); addVariants(t, m, 2); meta = m })
	s := newServer(t, Options{Tree: dir, RegionalManifests: true, CountryHeader: "CF-IPCountry", TrustedProxies: trustAll})
	if n, size := s.variantCache.stats(); n != 0 || size != 0 || renders(t, s, "ok") != 0 {
		t.Fatalf("after loading: %d variants cached (%d bytes), %v rendered; want none", n, size, renders(t, s, "ok"))
	}
	de := http.Header{"Cf-Ipcountry": {"DE"}}
	v := renderedVariant(t, meta, 0, dm.httpd)
	for _, tc := range []struct {
		name        string
		path        string
		hdr         http.Header
		wantRenders float64
	}{
		{"first tag request renders", "/v2/fedora/httpd/manifests/latest", de, 1},
		{"second tag request is cached", "/v2/fedora/httpd/manifests/latest", de, 1},
		{"by digest is cached", "/v2/fedora/httpd/manifests/" + v.Digest.String(), nil, 1},
	} {
		w := do(s, "GET", tc.path, "10.0.0.1:1", tc.hdr)
		if w.Code != 200 || !bytes.Equal(w.Body.Bytes(), v.Data) || w.Header().Get("Docker-Content-Digest") != v.Digest.String() {
			t.Errorf("%s: got %d %s, want 200 and the variant %s", tc.name, w.Code, w.Header().Get("Docker-Content-Digest"), v.Digest)
		}
		if got := renders(t, s, "ok"); got != tc.wantRenders {
			t.Errorf("%s: %v renderings, want %v", tc.name, got, tc.wantRenders)
		}
	}
	if n, size := s.variantCache.stats(); n != 1 || size != int64(len(v.Data)) {
		t.Errorf("cache holds %d variants (%d bytes), want 1 (%d bytes)", n, size, len(v.Data))
	}
}

// TestVariantByDigestUnknown: a digest that is no variant of the repository's manifests in the
// client's set is unknown; the repository is scanned once, not at every such request; a
// variant of another repository's manifest is unknown too.
func TestVariantByDigestUnknown(t *testing.T) {
	var meta *layout.Meta
	dir, dm := newTestTree(t, func(m *layout.Meta, _ *demo) { addMirrors(m, 1); addVariants(t, m, 1); meta = m })
	s := newServer(t, Options{Tree: dir, RegionalManifests: true, CountryHeader: "CF-IPCountry", TrustedProxies: trustAll})
	de := http.Header{"Cf-Ipcountry": {"DE"}}
	httpd := renderedVariant(t, meta, 0, dm.httpd)
	var scanned float64
	for _, tc := range []struct {
		name string
		path string
	}{
		{"not a variant", "/v2/fedora/httpd/manifests/" + digestOf([]byte("not a variant")).String()},
		{"not a variant, again", "/v2/fedora/httpd/manifests/" + digestOf([]byte("not one either")).String()},
		{"another repository's variant", "/v2/fedora/manifests/" + httpd.Digest.String()},
	} {
		w := do(s, "GET", tc.path, "10.0.0.1:1", de)
		var e struct{ Errors []struct{ Code string } }
		if w.Code != 404 || json.Unmarshal(w.Body.Bytes(), &e) != nil || len(e.Errors) != 1 || e.Errors[0].Code != "MANIFEST_UNKNOWN" {
			t.Errorf("%s: got %d %s, want 404 MANIFEST_UNKNOWN", tc.name, w.Code, w.Body)
		}
		switch got := renders(t, s, "ok"); tc.name {
		case "not a variant":
			if got == 0 {
				t.Errorf("%s: nothing rendered, want the repository's variants", tc.name)
			}
			scanned = got
		case "not a variant, again":
			if got != scanned {
				t.Errorf("%s: %v renderings, want %v: the repository is scanned once", tc.name, got, scanned)
			}
		}
	}
	if n, _ := s.variantCache.stats(); n != 0 {
		t.Errorf("%d variants cached, want none: a scan keeps digests, not bytes", n)
	}
}

// TestVariantByDigestOnAnotherServer: two servers on the same tree; a client reads an index's
// variant by tag from one, then its children's variants by digest from the other, which never
// rendered the index, and the index's too.
func TestVariantByDigestOnAnotherServer(t *testing.T) {
	var meta *layout.Meta
	dir, dm := newTestTree(t, func(m *layout.Meta, _ *demo) { addMirrors(m, 1); addVariants(t, m, 2); meta = m })
	opts := Options{Tree: dir, RegionalManifests: true, CountryHeader: "CF-IPCountry", TrustedProxies: trustAll}
	a, b := newServer(t, opts), newServer(t, opts)
	for _, country := range []string{"DE", "FR"} {
		hdr := http.Header{"Cf-Ipcountry": {country}}
		w := do(a, "GET", "/v2/fedora/manifests/42", "10.0.0.1:1", hdr)
		var idx struct {
			Manifests []struct {
				Digest string `json:"digest"`
				Size   int    `json:"size"`
			} `json:"manifests"`
		}
		if w.Code != 200 || json.Unmarshal(w.Body.Bytes(), &idx) != nil || len(idx.Manifests) != 2 {
			t.Fatalf("%s: index by tag from A: %d %s", country, w.Code, w.Body)
		}
		if got := w.Header().Get("Docker-Content-Digest"); got == dm.fedoraIndex.String() {
			t.Fatalf("%s: A answered the canonical index, want the region's variant", country)
		}
		want := []string{w.Header().Get("Docker-Content-Digest")}
		for _, c := range idx.Manifests {
			if c.Digest == dm.fedoraAMD64.String() || c.Digest == dm.fedoraARM64.String() {
				t.Errorf("%s: the index variant points at the canonical child %s", country, c.Digest)
			}
			want = append(want, c.Digest)
		}
		for _, d := range slices.Backward(want) { // children first, as a client pulls
			w := do(b, "GET", "/v2/fedora/manifests/"+d, "10.0.0.1:1", hdr)
			if w.Code != 200 || digestOf(w.Body.Bytes()).String() != d || w.Header().Get("Docker-Content-Digest") != d {
				t.Errorf("%s: %s by digest from B: %d %s", country, d, w.Code, w.Header().Get("Docker-Content-Digest"))
			}
		}
	}
	if n, _ := b.variantCache.stats(); n == 0 {
		t.Errorf("B cached nothing; want the variants it answered")
	}
	// What both answered is what the metadata renders.
	if v := renderedVariant(t, meta, 0, dm.fedoraAMD64); b.variantCache.get(v.Digest) == nil {
		t.Errorf("B did not keep the German amd64 variant %s", v.Digest)
	}
}

// TestVariantByDigestAcrossCrawls: replicas a crawl apart (the French mirror holds the
// generation in one and not yet in the other). A variant that renders the same in both is
// answered by either; one that differs is known only to the replica whose crawl rendered it.
func TestVariantByDigestAcrossCrawls(t *testing.T) {
	trees := make([]string, 2)
	metas := make([]*layout.Meta, 2)
	var dm *demo
	for i := range trees {
		trees[i], dm = newTestTree(t, func(m *layout.Meta, _ *demo) {
			addMirrors(m, 1)
			for _, mr := range m.Mirrors {
				if mr.Name == "fr.example" && i == 0 {
					mr.Generation = 0 // crawl N: fr does not hold generation 1 yet
				}
			}
			addVariants(t, m, 2)
			metas[i] = m
		})
	}
	older := newServer(t, Options{Tree: trees[0], RegionalManifests: true, CountryHeader: "CF-IPCountry", TrustedProxies: trustAll})
	de, fr := http.Header{"Cf-Ipcountry": {"DE"}}, http.Header{"Cf-Ipcountry": {"FR"}}
	same := renderedVariant(t, metas[1], 0, dm.httpd)  // set 0 names no French mirror
	newer := renderedVariant(t, metas[1], 1, dm.httpd) // set 1 does
	if old := renderedVariant(t, metas[0], 1, dm.httpd); old.Digest == newer.Digest || renderedVariant(t, metas[0], 0, dm.httpd).Digest != same.Digest {
		t.Fatalf("fixture: set 1's variants should differ between the crawls, set 0's not")
	}
	for _, tc := range []struct {
		name       string
		d          layout.Digest
		hdr        http.Header
		wantStatus int
	}{
		{"the same in both crawls", same.Digest, de, 200},
		{"rendered by the newer crawl only", newer.Digest, fr, 404},
	} {
		w := do(older, "GET", "/v2/fedora/httpd/manifests/"+tc.d.String(), "10.0.0.1:1", tc.hdr)
		if w.Code != tc.wantStatus {
			t.Errorf("%s: got %d, want %d", tc.name, w.Code, tc.wantStatus)
		}
	}
}

func TestVariantCacheBound(t *testing.T) {
	entry := func(name string, size int) *manifestEntry {
		d := digestOf([]byte(name))
		return &manifestEntry{answer: answer{body: []byte(strings.Repeat("x", size))}, d: d}
	}
	a, b, c, big := entry("a", 40), entry("b", 40), entry("c", 40), entry("big", 101)
	for _, tc := range []struct {
		name     string
		max      int64
		ops      string // a letter adds, an upper-case letter gets
		want     string // the entries kept, most recent first
		wantSize int64
	}{
		{"fits", 100, "ab", "ba", 80},
		{"least recently added goes", 100, "abc", "cb", 80},
		{"a get keeps an entry", 100, "abAc", "ca", 80},
		{"larger than the bound is not kept", 100, "aX", "a", 40},
		{"no cache", 0, "abA", "", 0},
	} {
		c0 := newVariantCache(tc.max)
		byName := map[byte]*manifestEntry{'a': a, 'b': b, 'c': c, 'x': big}
		for i := range len(tc.ops) {
			op := tc.ops[i]
			if op >= 'A' && op <= 'Z' {
				c0.get(byName[op-'A'+'a'].d)
				continue
			}
			if op == 'X' {
				op = 'x'
			}
			c0.add(byName[op].d, byName[op])
		}
		var got []byte
		for el := c0.lru.order.Front(); el != nil; el = el.Next() {
			for k, e := range byName {
				if e == el.Value.(*lruEntry[layout.Digest, *manifestEntry]).val {
					got = append(got, k)
				}
			}
		}
		if _, size := c0.stats(); string(got) != tc.want || size != tc.wantSize {
			t.Errorf("%s: kept %q (%d bytes), want %q (%d bytes)", tc.name, got, size, tc.want, tc.wantSize)
		}
	}
}

// TestVariantsConcurrent: clients of two regions asking at once all get their region's variant,
// with a cache too small to hold them all (race detector: go test -race).
func TestVariantsConcurrent(t *testing.T) {
	var meta *layout.Meta
	dir, dm := newTestTree(t, func(m *layout.Meta, _ *demo) { addMirrors(m, 1); addVariants(t, m, 2); meta = m })
	want := map[string]*layout.Variant{
		"DE": renderedVariant(t, meta, 0, dm.httpd),
		"FR": renderedVariant(t, meta, 1, dm.httpd),
	}
	s := newServer(t, Options{Tree: dir, RegionalManifests: true, CountryHeader: "CF-IPCountry", TrustedProxies: trustAll,
		VariantCacheBytes: int64(len(want["DE"].Data))})
	var wg sync.WaitGroup
	errs := make(chan string, 64)
	for i := range 16 {
		country := []string{"DE", "FR"}[i%2]
		wg.Go(func() {
			for range 20 {
				w := do(s, "GET", "/v2/fedora/httpd/manifests/latest", "10.0.0.1:1", http.Header{"Cf-Ipcountry": {country}})
				if got := w.Header().Get("Docker-Content-Digest"); w.Code != 200 || got != want[country].Digest.String() || !bytes.Equal(w.Body.Bytes(), want[country].Data) {
					errs <- country + ": got " + got + ", want " + want[country].Digest.String()
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}

// TestVariantsByDigestConcurrent: clients of two regions asking a fresh server at once for an
// index's variant and its children's by digest (each found by a scan, the cache too small to
// keep them) all get exactly those bytes (race detector: go test -race).
func TestVariantsByDigestConcurrent(t *testing.T) {
	var meta *layout.Meta
	dir, dm := newTestTree(t, func(m *layout.Meta, _ *demo) { addMirrors(m, 1); addVariants(t, m, 2); meta = m })
	var want []*layout.Variant
	for set := range 2 {
		for _, d := range []layout.Digest{dm.fedoraIndex, dm.fedoraAMD64, dm.fedoraARM64} {
			want = append(want, renderedVariant(t, meta, set, d))
		}
	}
	s := newServer(t, Options{Tree: dir, CountryHeader: "CF-IPCountry", TrustedProxies: trustAll, VariantCacheBytes: int64(len(want[1].Data))})
	var wg sync.WaitGroup
	errs := make(chan string, 64)
	for i := range 16 {
		country := []string{"DE", "FR", "US"}[i%3]
		wg.Go(func() {
			for j := range 12 {
				v := want[(i+j)%len(want)]
				w := do(s, "GET", "/v2/fedora/manifests/"+v.Digest.String(), "10.0.0.1:1", http.Header{"Cf-Ipcountry": {country}})
				if got := w.Header().Get("Docker-Content-Digest"); w.Code != 200 || got != v.Digest.String() || !bytes.Equal(w.Body.Bytes(), v.Data) {
					errs <- country + ": got " + got + ", want " + v.Digest.String()
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}
