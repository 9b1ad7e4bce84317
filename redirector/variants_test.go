package redirector

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/regmirror/regmirror/layout"
)

func renders(t *testing.T, s *Server, result string) float64 {
	t.Helper()
	var m dto.Metric
	if err := s.metrics.variantRenders.WithLabelValues(result).Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
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

// TestVariantNotAsRecorded: a variant whose rendering does not give the recorded digest is
// never served: by digest it is unknown, by tag the client gets the canonical manifest.
func TestVariantNotAsRecorded(t *testing.T) {
	var bogus layout.Digest
	dir, dm := newTestTree(t, func(m *layout.Meta, dm *demo) {
		addMirrors(m, 1)
		addVariants(t, m, 1)
		bogus = digestOf([]byte("not the variant"))
		ref := m.VariantSets[0].Variants[dm.httpd]
		m.VariantSets[0].Variants[dm.httpd] = layout.VariantRef{Digest: bogus, Size: ref.Size}
	})
	s := newServer(t, Options{Tree: dir, RegionalManifests: true, CountryHeader: "CF-IPCountry", TrustedProxies: trustAll})
	de := http.Header{"Cf-Ipcountry": {"DE"}}
	for _, tc := range []struct {
		name       string
		path       string
		wantStatus int
		wantDigest string
	}{
		{"by digest", "/v2/fedora/httpd/manifests/" + bogus.String(), 404, ""},
		{"by tag", "/v2/fedora/httpd/manifests/latest", 200, dm.httpd.String()},
	} {
		w := do(s, "GET", tc.path, "10.0.0.1:1", de)
		if w.Code != tc.wantStatus || w.Header().Get("Docker-Content-Digest") != tc.wantDigest {
			t.Errorf("%s: got %d %q, want %d %q", tc.name, w.Code, w.Header().Get("Docker-Content-Digest"), tc.wantStatus, tc.wantDigest)
		}
		if tc.wantStatus == 404 {
			var e struct{ Errors []struct{ Code string } }
			if json.Unmarshal(w.Body.Bytes(), &e) != nil || len(e.Errors) != 1 || e.Errors[0].Code != "MANIFEST_UNKNOWN" {
				t.Errorf("%s: body %s, want MANIFEST_UNKNOWN", tc.name, w.Body)
			}
		}
	}
	if got := renders(t, s, "failed"); got != 2 {
		t.Errorf("%v failed renderings counted, want 2", got)
	}
	if n, _ := s.variantCache.stats(); n != 0 {
		t.Errorf("%d variants cached, want none", n)
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
		for el := c0.order.Front(); el != nil; el = el.Next() {
			for k, e := range byName {
				if e == el.Value.(*manifestEntry) {
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
