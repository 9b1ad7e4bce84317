package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/regmirror/regmirror/internal/mirrormanager"
	"github.com/regmirror/regmirror/internal/testsupport/geoiptest"
	"github.com/regmirror/regmirror/internal/testsupport/mmselect"
	"github.com/regmirror/regmirror/internal/testsupport/mmtest"
	"github.com/regmirror/regmirror/layout"
	"github.com/regmirror/regmirror/redirector"
)

// mmTree publishes a tree of one image (config and layer in blobs/) and returns its
// directory, the tag's manifest digest and the layer's digest.
func mmTree(t *testing.T) (dir string, layer layout.Digest) {
	t.Helper()
	dir = t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "blobs", "sha256"), 0o755); err != nil {
		t.Fatal(err)
	}
	m := layout.NewMeta(1)
	blob := func(data []byte) layout.Digest {
		sum := sha256.Sum256(data)
		d := layout.MustDigest("sha256:" + hex.EncodeToString(sum[:]))
		if err := os.WriteFile(filepath.Join(dir, filepath.FromSlash(layout.BlobPath(d))), data, 0o644); err != nil {
			t.Fatal(err)
		}
		m.Blobs[d] = &layout.Blob{Size: int64(len(data)), Since: 1}
		return d
	}
	config := []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}`)
	layerData := []byte("layer bytes for the MirrorManager routing test")
	cd, ld := blob(config), blob(layerData)
	manifest := []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",`+
		`"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%d},`+
		`"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"%s","size":%d}]}`,
		cd, len(config), ld, len(layerData)))
	md := blob(manifest)
	m.Manifests[md] = &layout.Manifest{MediaType: "application/vnd.oci.image.manifest.v1+json", Data: manifest}
	m.Repositories["demo/app"] = &layout.Repository{
		Tags:      map[string]layout.Digest{"latest": md},
		Manifests: []layout.Digest{md},
		Blobs:     []layout.Digest{cd, ld},
	}
	if _, err := layout.NewTree(dir).Publish(m); err != nil {
		t.Fatal(err)
	}
	return dir, ld
}

// mmMirrors serves the tree at /h<id>/pub/containers/ for every host id: one web server
// standing in for every mirror. It answers 404 for the hosts in down.
func mmMirrors(t *testing.T, tree string) *httptest.Server {
	t.Helper()
	files := http.FileServer(http.Dir(tree))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		parts := strings.SplitN(strings.TrimPrefix(r.URL.Path, "/"), "/", 4)
		if len(parts) < 4 || parts[1] != "pub" || parts[2] != "containers" {
			http.NotFound(w, r)
			return
		}
		r2 := r.Clone(r.Context())
		r2.URL.Path = "/" + parts[3]
		files.ServeHTTP(w, r2)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// mmCache is a mirrorlist cache as generate-mirrorlist-cache writes it, for a category whose
// top directory is "pub" and the tree's directory pub/containers (Subpath "containers"):
//
//	1 de       DE, 1000 Mbit/s, public
//	2 fr       FR, 1000
//	3 us       US, 1000
//	4 campus   DE, private, netblock 10.1.0.0/16
//	5 isp      JP, private, ASN 64501 (and its peer ASN 64502)
//	6 ca-only  CA, restricted to clients from CA
//	7 jp       JP, netblock 10.1.2.0/24 (more specific than campus's)
//	8 br       BR, not up to date: listed for pub/other only
//	9 at       AT, 10 Mbit/s
//
// Hosts in drop are left out of pub/containers (MirrorManager found them out of date).
func mmCache(base string, drop ...int64) mmtest.Cache {
	hosts := []mmtest.Host{
		{ID: 1, Country: "DE", Bandwidth: 1000},
		{ID: 2, Country: "FR", Bandwidth: 1000},
		{ID: 3, Country: "US", Bandwidth: 1000},
		{ID: 4, Country: "DE", Bandwidth: 1000, Private: true, Netblocks: []string{"10.1.0.0/16"}},
		{ID: 5, Country: "JP", Bandwidth: 1000, Private: true, ASNs: []int64{64501, 64502}},
		{ID: 6, Country: "CA", Bandwidth: 1000, AllowedCountries: []string{"ca"}},
		{ID: 7, Country: "JP", Bandwidth: 1000, Netblocks: []string{"10.1.2.0/24"}},
		{ID: 8, Country: "BR", Bandwidth: 1000}, // listed for pub/other only
		{ID: 9, Country: "AT", Bandwidth: 10},
	}
	for i := range hosts {
		h := &hosts[i]
		// MirrorManager's URLs: the host's copy of the category's top directory, no
		// trailing slash.
		h.URL = fmt.Sprintf("%s/h%d/pub", base, h.ID)
		h.Listed = h.ID != 8 && !slices.Contains(drop, h.ID)
	}
	c := mmtest.Network("pub/containers", "containers", hosts)
	c.ContinentRedirect = []mmtest.KV{{K: "ru", V: "eu"}}
	return c
}

// mmGeo writes the GeoIP and ASN test databases of the routing table.
func mmGeo(t *testing.T) (geo, asn string) {
	t.Helper()
	d := t.TempDir()
	geo, asn = filepath.Join(d, "country.mmdb"), filepath.Join(d, "asn.mmdb")
	err := geoiptest.Write(geo, []geoiptest.Network{
		{CIDR: "10.1.0.0/16", Country: "DE", Continent: "EU"},
		{CIDR: "10.5.0.0/16", Country: "DE", Continent: "EU"},
		{CIDR: "81.0.0.0/8", Country: "DE", Continent: "EU"},
		{CIDR: "82.0.0.0/8", Country: "IT", Continent: "EU"},
		{CIDR: "83.0.0.0/8", Country: "CA", Continent: "NA"},
		{CIDR: "84.0.0.0/8", Country: "MX", Continent: "NA"},
		{CIDR: "85.0.0.0/8", Country: "US", Continent: "NA"},
		{CIDR: "87.0.0.0/8", Country: "JP", Continent: "AS"},
		{CIDR: "88.0.0.0/8", Country: "BR", Continent: "SA"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := geoiptest.WriteASN(asn, []geoiptest.ASNNetwork{
		{CIDR: "10.5.0.0/16", ASN: 64501},
		{CIDR: "10.1.0.0/16", ASN: 64500}, // no host serves it
		{CIDR: "87.1.0.0/16", ASN: 64502},
	}); err != nil {
		t.Fatal(err)
	}
	return geo, asn
}

// mmServer is the redirector over tree, behind a trusted proxy at 127.0.0.1.
func mmServer(t *testing.T, tree, geo, asn string, regional bool) *redirector.Server {
	t.Helper()
	srv, err := redirector.New(redirector.Options{
		Tree:              tree,
		GeoIP:             geo,
		ASNDB:             asn,
		TrustedProxies:    []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")},
		RegionalManifests: regional,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv
}

// mmChoose asks srv for the layer as a client at addr (through the trusted proxy) n times
// and returns the hosts (h<id>) the 307s went to.
func mmChoose(t *testing.T, srv http.Handler, base string, layer layout.Digest, addr string, n int) map[string]int {
	t.Helper()
	got := map[string]int{}
	for range n {
		req := httptest.NewRequest(http.MethodGet, "/v2/demo/app/blobs/"+layer.String(), nil)
		req.RemoteAddr = "127.0.0.1:40000"
		req.Header.Set("X-Forwarded-For", addr)
		rec := httptest.NewRecorder()
		srv.ServeHTTP(rec, req)
		loc := rec.Header().Get("Location")
		switch {
		case rec.Code == http.StatusOK:
			got["local"]++
		case rec.Code != http.StatusTemporaryRedirect:
			t.Fatalf("client %s: status %d", addr, rec.Code)
		case !strings.HasPrefix(loc, base+"/h"):
			t.Fatalf("client %s: redirected to %s", addr, loc)
		default:
			host, rest, _ := strings.Cut(strings.TrimPrefix(loc, base+"/"), "/")
			// The URL is MirrorManager's URL + "/" + Subpath + "/" + the blob's path.
			if want := "pub/containers/" + layout.BlobPath(layer); rest != want {
				t.Fatalf("client %s: redirected to %s, want .../%s/%s", addr, loc, host, want)
			}
			got[host]++
		}
	}
	return got
}

func keys(m map[string]int) string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return strings.Join(ks, ",")
}

func runCmd(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := run(context.Background(), args, &out, &errOut)
	return out.String() + errOut.String(), err
}

// TestMirrorManagerRouting takes the mirror network from a MirrorManager mirrorlist cache
// (crawl --mirrors CACHE --mm-directory pub/containers, which republishes the tree) and checks
// where the real redirector handler sends clients of every kind, as MirrorManager's rules
// say: netblock (most specific first, private hosts included), ASN (private included),
// country, continent, global, restricted hosts only for their countries, hosts MirrorManager
// does not list for the directory never.
func TestMirrorManagerRouting(t *testing.T) {
	tree, layer := mmTree(t)
	mirrors := mmMirrors(t, tree)
	cache := filepath.Join(t.TempDir(), "mirrorlist_cache.proto")
	if err := mmCache(mirrors.URL).Write(cache); err != nil {
		t.Fatal(err)
	}
	if out, err := runCmd(t, "crawl", "--tree", tree, "--mirrors", cache, "--mm-directory", "pub/containers", "--sample", "2"); err != nil {
		t.Fatalf("crawl: %v\n%s", err, out)
	} else if !strings.Contains(out, "8 of 8 mirrors healthy") {
		t.Fatalf("crawl output:\n%s", out)
	}
	meta, _, err := layout.NewTree(tree).Load()
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]*layout.Mirror{}
	for _, m := range meta.Mirrors {
		byName[m.Name] = m
	}
	if m := byName["mm-host-4"]; m == nil || !m.Private || m.URL != mirrors.URL+"/h4/pub/containers/" || !slices.Equal(m.Netblocks, []string{"10.1.0.0/16"}) {
		t.Fatalf("campus mirror: %+v", m)
	}
	if m := byName["mm-host-5"]; m == nil || !m.Private || !slices.Equal(m.ASNs, []uint32{64501, 64502}) || m.Country != "JP" || m.Continent != "AS" {
		t.Fatalf("ISP mirror: %+v", m)
	}
	if m := byName["mm-host-6"]; m == nil || !slices.Equal(m.AllowedCountries, []string{"CA"}) || m.Private {
		t.Fatalf("restricted mirror: %+v", m)
	}
	if m := byName["mm-host-9"]; m == nil || m.Bandwidth != 10 || m.Country != "AT" {
		t.Fatalf("AT mirror: %+v", m)
	}
	if byName["mm-host-8"] != nil {
		t.Fatal("a host MirrorManager does not list for the directory became a mirror")
	}

	geo, asn := mmGeo(t)
	srv := mmServer(t, tree, geo, asn, false)
	snap, err := mirrormanager.LoadSnapshot(cache)
	if err != nil {
		t.Fatal(err)
	}
	hosts, err := snap.Hosts("pub/containers")
	if err != nil {
		t.Fatal(err)
	}
	continent := func(c string) string { cont, _ := layout.ContinentOf(c); return cont }
	for _, tc := range []struct {
		name, addr string
		country    string // what the test GeoIP and ASN databases say of addr
		asn        uint32
		want       string
	}{
		{"netblock, most specific first", "10.1.2.3", "DE", 64500, "h7"},
		{"netblock reaches a private host", "10.1.9.9", "DE", 64500, "h4"},
		{"ASN reaches a private host", "10.5.0.1", "DE", 64501, "h5"},
		{"peer ASN", "87.1.2.3", "JP", 64502, "h5"},
		{"country", "81.2.3.4", "DE", 0, "h1"},
		{"continent (no mirror in IT)", "82.2.3.4", "IT", 0, "h1,h2,h9"},
		{"restricted host serves its country", "83.2.3.4", "CA", 0, "h6"},
		{"restricted host serves no other country of its continent", "84.2.3.4", "MX", 0, "h3"},
		{"country with a private host: only the public one", "87.2.3.4", "JP", 0, "h7"},
		{"host not up to date for the directory: never (BR goes to the world)", "88.2.3.4", "BR", 0, "h1,h2,h3,h7,h9"},
		{"unknown country: global, without private or restricted hosts", "99.2.3.4", "", 0, "h1,h2,h3,h7,h9"},
		{"IPv6 client without any match: global", "2001:db8::1", "", 0, "h1,h2,h3,h7,h9"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := mmChoose(t, srv, mirrors.URL, layer, tc.addr, 400)
			if keys(got) != tc.want && !(strings.Contains(tc.want, ",") && subset(got, tc.want)) {
				t.Errorf("client %s went to %v, want %s", tc.addr, got, tc.want)
			}
			// MirrorManager's own rules (mmselect.Select, written from its code) put
			// the same hosts first.
			tiers := mmselect.Select(hosts, mmselect.Client{Addr: netip.MustParseAddr(tc.addr), Country: tc.country, ASN: tc.asn},
				mmselect.Policy{Continent: continent})
			var first []string
			if len(tiers) > 0 {
				for _, h := range tiers[0].Hosts {
					first = append(first, fmt.Sprintf("h%d", h.ID))
				}
			}
			if strings.Join(first, ",") != tc.want {
				t.Errorf("MirrorManager's first tier for %s: %v, want %s", tc.addr, first, tc.want)
			}
		})
	}
	// Weighted by bandwidth within a tier: AT's 10 Mbit/s host gets about 1/201 of the EU
	// continent's downloads, FR and DE about half each.
	got := mmChoose(t, srv, mirrors.URL, layer, "82.2.3.4", 2000)
	if got["h9"] > 60 || got["h1"] < 800 || got["h2"] < 800 {
		t.Errorf("EU continent shares: %v", got)
	}
	// An untrusted peer cannot pick a netblock with X-Forwarded-For.
	req := httptest.NewRequest(http.MethodGet, "/v2/demo/app/blobs/"+layer.String(), nil)
	req.RemoteAddr = "192.0.2.9:5000"
	req.Header.Set("X-Forwarded-For", "10.1.9.9")
	rec := httptest.NewRecorder()
	srv.ServeHTTP(rec, req)
	if loc := rec.Header().Get("Location"); strings.Contains(loc, "/h4/") {
		t.Errorf("untrusted peer reached the private host: %s", loc)
	}
}

// subset reports whether every host in got is one of want (comma-separated): random
// choices within a tier may miss one in a few hundred draws only if its weight is tiny.
func subset(got map[string]int, want string) bool {
	ws := strings.Split(want, ",")
	for k := range got {
		if !slices.Contains(ws, k) {
			return false
		}
	}
	return len(got) > 0
}

// TestMirrorManagerWidening checks the regional candidate lists (the urls of regional
// manifest variants, through the handler) widened tier by tier to --min-mirrors.
func TestMirrorManagerWidening(t *testing.T) {
	tree, layer := mmTree(t)
	mirrors := mmMirrors(t, tree)
	cache := filepath.Join(t.TempDir(), "cache.bin")
	if err := mmCache(mirrors.URL).Write(cache); err != nil {
		t.Fatal(err)
	}
	geo, asn := mmGeo(t)
	for _, tc := range []struct {
		min                string
		addr, region, want string // want: the region's widened list, in order
	}{
		// DE: its own host (1), then EU (FR 1000, AT 10), then the world (US, JP by name),
		// never the private or restricted hosts; default minimum 5.
		{"", "81.2.3.4", "DE", "h1 h2 h9 h3 h7"},
		{"1", "81.2.3.4", "DE", "h1"},
		{"2", "81.2.3.4", "DE", "h1 h2 h9"},
		// CA: its restricted host, then NA (US), then the world.
		{"2", "83.2.3.4", "CA", "h6 h3"},
		{"3", "83.2.3.4", "CA", "h6 h3 h1 h2 h7 h9"},
		// IT has no region: EU's.
		{"3", "82.2.3.4", "EU", "h1 h2 h9"},
	} {
		t.Run(tc.addr+" min "+tc.min, func(t *testing.T) {
			args := []string{"crawl", "--tree", tree, "--mirrors", cache, "--mm-directory", "pub/containers", "--sample", "1"}
			if tc.min != "" {
				args = append(args, "--min-mirrors", tc.min)
			}
			if out, err := runCmd(t, args...); err != nil {
				t.Fatalf("crawl: %v\n%s", err, out)
			}
			meta, _, err := layout.NewTree(tree).Load()
			if err != nil {
				t.Fatal(err)
			}
			reg := meta.Regions[tc.region]
			if reg == nil || reg.VariantSet < 0 {
				t.Fatalf("region %s: %+v", tc.region, reg)
			}
			list := strings.ReplaceAll(strings.Join(meta.VariantSets[reg.VariantSet].Mirrors, " "), "mm-host-", "h")
			if list != tc.want {
				t.Errorf("region %s lists %s, want %s", tc.region, list, tc.want)
			}
			// The variant's urls: the list's first layout.MaxVariantURLs, in order.
			want := strings.Fields(tc.want)
			want = want[:min(len(want), layout.MaxVariantURLs)]
			srv := mmServer(t, tree, geo, asn, true)
			req := httptest.NewRequest(http.MethodGet, "/v2/demo/app/manifests/latest", nil)
			req.Header.Set("Accept", "application/vnd.oci.image.manifest.v1+json")
			req.RemoteAddr = "127.0.0.1:40000"
			req.Header.Set("X-Forwarded-For", tc.addr)
			rec := httptest.NewRecorder()
			srv.ServeHTTP(rec, req)
			var man struct {
				Layers []struct {
					URLs []string `json:"urls"`
				} `json:"layers"`
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &man); err != nil || len(man.Layers) != 1 {
				t.Fatalf("manifest: %v %s", err, rec.Body.String())
			}
			var hosts []string
			for _, u := range man.Layers[0].URLs {
				host, rest, _ := strings.Cut(strings.TrimPrefix(u, mirrors.URL+"/"), "/")
				if rest != "pub/containers/"+layout.BlobPath(layer) {
					t.Fatalf("url %s", u)
				}
				hosts = append(hosts, host)
			}
			if got := strings.Join(hosts, " "); got != strings.Join(want, " ") {
				t.Errorf("urls at %s, want %s", got, tc.want)
			}
		})
	}
}

// TestMirrorManagerReload: a new cache is picked up by crawl and, through the republished
// tree, by a running redirector without a restart; a cache that does not parse is refused
// with one line while the tree keeps the last good network.
func TestMirrorManagerReload(t *testing.T) {
	tree, layer := mmTree(t)
	mirrors := mmMirrors(t, tree)
	cache := filepath.Join(t.TempDir(), "mirrorlist_cache.proto")
	if err := mmCache(mirrors.URL).Write(cache); err != nil {
		t.Fatal(err)
	}
	crawlArgs := []string{"crawl", "--tree", tree, "--mirrors", cache, "--mm-directory", "pub/containers", "--sample", "1"}
	if out, err := runCmd(t, crawlArgs...); err != nil {
		t.Fatalf("crawl: %v\n%s", err, out)
	}
	geo, asn := mmGeo(t)
	srv := mmServer(t, tree, geo, asn, false)
	if got := keys(mmChoose(t, srv, mirrors.URL, layer, "81.2.3.4", 50)); got != "h1" {
		t.Fatalf("DE client before the reload: %s", got)
	}

	// MirrorManager finds host 1 out of date: the next cache does not list it.
	if err := mmCache(mirrors.URL, 1).Write(cache); err != nil {
		t.Fatal(err)
	}
	if out, err := runCmd(t, crawlArgs...); err != nil {
		t.Fatalf("crawl: %v\n%s", err, out)
	}
	if err := srv.Check(); err != nil {
		t.Fatal(err)
	}
	if got := keys(mmChoose(t, srv, mirrors.URL, layer, "81.2.3.4", 200)); got != "h2,h9" && got != "h2" {
		t.Fatalf("DE client after the reload: %s, want the EU continent's h2,h9", got)
	}

	// Broken caches: refused, one line, nothing published.
	stamp, err := os.ReadFile(filepath.Join(tree, filepath.FromSlash(layout.CurrentFile)))
	if err != nil {
		t.Fatal(err)
	}
	good := mmCache(mirrors.URL).Bytes()
	for name, b := range map[string][]byte{
		"truncated": good[:len(good)-7],
		"garbage":   []byte("\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01garbage"),
		"empty":     {},
	} {
		t.Run(name, func(t *testing.T) {
			bad := filepath.Join(t.TempDir(), "bad.proto")
			if err := os.WriteFile(bad, b, 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := runCmd(t, "crawl", "--tree", tree, "--mirrors", bad, "--mm-directory", "pub/containers")
			if err == nil || !strings.Contains(err.Error(), "crawl: mirrorlist cache "+bad) || !strings.Contains(err.Error(), "the tree keeps its current mirrors") || strings.Contains(err.Error(), "\n") {
				t.Fatalf("got %v", err)
			}
			now, err := os.ReadFile(filepath.Join(tree, filepath.FromSlash(layout.CurrentFile)))
			if err != nil || !bytes.Equal(now, stamp) {
				t.Fatal("the tree changed")
			}
		})
	}
	if err := srv.Check(); err != nil {
		t.Fatal(err)
	}
	if got := keys(mmChoose(t, srv, mirrors.URL, layer, "81.2.3.4", 100)); got != "h2,h9" && got != "h2" {
		t.Fatalf("DE client after refused caches: %s", got)
	}
}

func TestMirrorManagerCommandErrors(t *testing.T) {
	tree, _ := mmTree(t)
	d := t.TempDir()
	cache := filepath.Join(d, "cache.bin")
	if err := mmCache("http://mirror.example").Write(cache); err != nil {
		t.Fatal(err)
	}
	yamlFile := filepath.Join(d, "mirrors.yaml")
	if err := os.WriteFile(yamlFile, []byte("mirrors:\n  - name: a\n    url: http://a.example/\n    country: DE\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	garbage := filepath.Join(d, "garbage")
	if err := os.WriteFile(garbage, []byte{0x12, 0x80, 0x80, 0x01, 0x00}, 0o644); err != nil {
		t.Fatal(err)
	}
	badYAML := filepath.Join(d, "bad.yaml")
	if err := os.WriteFile(badYAML, []byte("mirrors:\n  - name: a\n    url: http://a.example/\n    country: DE\n    asns: [AS0]\n    private: true\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"cache without --mm-directory", []string{"crawl", "--tree", tree, "--mirrors", cache}, "is a MirrorManager mirrorlist cache: name the tree's directory in it with --mm-directory (it has pub/containers, pub/other)"},
		{"unknown directory", []string{"crawl", "--tree", tree, "--mirrors", cache, "--mm-directory", "pub/nope"}, `no directory "pub/nope" in the cache; it has pub/containers, pub/other`},
		{"--mm-directory with a mirrors file", []string{"crawl", "--tree", tree, "--mirrors", yamlFile, "--mm-directory", "pub/containers"}, "is a mirrors file (YAML), not a MirrorManager mirrorlist cache"},
		{"--mm-directory without --mirrors", []string{"crawl", "--tree", tree, "--mm-directory", "pub/containers"}, "--mm-directory needs --mirrors"},
		{"garbage by content", []string{"crawl", "--tree", tree, "--mirrors", garbage, "--mm-directory", "x"}, "mirrorlist cache " + garbage + " does not parse (refused)"},
		{"bad min-mirrors", []string{"crawl", "--tree", tree, "--min-mirrors", "0"}, "--min-mirrors 0: want at least 1"},
		{"bad YAML fields", []string{"crawl", "--tree", tree, "--mirrors", badYAML}, badYAML + ":5: mirror \"a\": asn \"AS0\""},
		{"generate: garbage cache", []string{"generate", "--source", "http://127.0.0.1:1", "--out", d, "--mirrors", garbage, "--mm-directory", "pub/containers"}, "generate: mirrorlist cache " + garbage + " does not parse"},
		{"generate: --mm-directory alone", []string{"generate", "--source", "http://127.0.0.1:1", "--out", d, "--mm-directory", "pub/containers"}, "--mm-directory needs --mirrors"},
		{"serve: bad ASN database", []string{"serve", "--tree", tree, "--asn-db", garbage}, "ASN database"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := runCmd(t, tc.args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v\nwant %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("not one line: %q", err)
			}
		})
	}
}
