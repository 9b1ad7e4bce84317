package e2e

import (
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/regmirror/regmirror/internal/testsupport/geoiptest"
	"github.com/regmirror/regmirror/internal/testsupport/mmtest"
	"github.com/regmirror/regmirror/internal/testsupport/peers"
	"github.com/regmirror/regmirror/internal/testsupport/testimages"
	"github.com/regmirror/regmirror/layout"
)

// mmHost is one MirrorManager host of the end-to-end network: nginx serving the category's
// top directory, with the tree rsynced into pub/containers below it.
type mmHost struct {
	id       int64
	name     string // short name for messages
	country  string
	bw       int64
	private  bool
	allowed  []string
	netblock string
	asn      int64
	listed   bool // MirrorManager lists it for pub/containers (up to date there)

	root  string
	nginx *peers.Nginx
}

// mmWorld places the simulated clients (they exist only in X-Forwarded-For) in countries,
// and two of them in a campus netblock and an ISP's autonomous system.
var mmWorld = []geoiptest.Network{
	{CIDR: "127.0.1.0/24", Country: "DE", Continent: "EU"},
	{CIDR: "127.0.3.0/24", Country: "US", Continent: "NA"},
	{CIDR: "127.0.4.0/24", Country: "JP", Continent: "AS"},
	{CIDR: "127.0.6.0/24", Country: "CA", Continent: "NA"},
	{CIDR: "127.0.7.0/24", Country: "MX", Continent: "NA"},
	{CIDR: "127.0.8.0/24", Country: "DE", Continent: "EU"},
	{CIDR: "127.0.9.0/24", Country: "DE", Continent: "EU"},
}

// mmCache is the mirrorlist cache MirrorManager would write for these hosts, for a category
// whose top directory is pub and the tree's directory pub/containers.
func mmCache(hosts []*mmHost) mmtest.Cache {
	var hs []mmtest.Host
	for _, h := range hosts {
		mh := mmtest.Host{ID: h.id, URL: strings.TrimSuffix(h.nginx.URL, "/") + "/pub", Country: h.country, Bandwidth: h.bw,
			Private: h.private, AllowedCountries: h.allowed, Listed: h.listed}
		if h.netblock != "" {
			mh.Netblocks = []string{h.netblock}
		}
		if h.asn != 0 {
			mh.ASNs = []int64{h.asn}
		}
		hs = append(hs, mh)
	}
	return mmtest.Network("pub/containers", "containers", hs)
}

// mmEdge is a CDN edge in front of the redirector for one simulated client: it sets
// X-Forwarded-For to the client's address. Clients address it as localhost:PORT.
func mmEdge(t *testing.T, redirector, client string) peers.Endpoint {
	t.Helper()
	target, err := url.Parse(redirector)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(&httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) {
		r.SetURL(target)
		r.Out.Host = r.In.Host
		r.Out.Header.Set("X-Forwarded-For", client)
	}})
	t.Cleanup(srv.Close)
	return peers.Endpoint{Host: strings.Replace(strings.TrimPrefix(srv.URL, "http://"), "127.0.0.1", "localhost", 1)}
}

// mmBlobGETs counts each host's blob GETs answered 200 or 206.
func mmBlobGETs(hosts []*mmHost) map[string]int {
	got := map[string]int{}
	for _, h := range hosts {
		for _, line := range h.nginx.AccessLog() {
			f := strings.Fields(line)
			if len(f) >= 3 && f[0] == "GET" && strings.HasPrefix(f[1], "/pub/containers/blobs/sha256/") && (f[2] == "200" || f[2] == "206") {
				got[h.name]++
			}
		}
	}
	return got
}

// TestMirrorManagerNetwork: the redirector takes its mirrors from a MirrorManager mirrorlist
// cache (generate --mirrors CACHE --mm-directory pub/containers, the documented rsync to each
// host's nginx, crawl, serve), and real pulls (crane) from clients of every kind download their
// blobs from the mirror MirrorManager's rules pick, as the mirrors' access logs show.
func TestMirrorManagerNetwork(t *testing.T) {
	needPeers(t)
	peers.CleanHostResidue(t)
	hosts := []*mmHost{
		{id: 1, name: "de", country: "DE", bw: 100, listed: true},
		{id: 2, name: "campus", country: "DE", bw: 100, private: true, netblock: "127.0.9.0/24", listed: true},
		{id: 3, name: "isp", country: "DE", bw: 100, private: true, asn: 64501, listed: true},
		{id: 4, name: "us", country: "US", bw: 100, listed: true},
		{id: 5, name: "ca", country: "CA", bw: 100, allowed: []string{"CA"}, listed: true},
		// Up to date for another directory only, with the most bandwidth: never a candidate.
		{id: 6, name: "stale", country: "DE", bw: 10000, listed: false},
	}
	for _, h := range hosts {
		h.root = filepath.Join(t.TempDir(), h.name)
		if err := os.MkdirAll(filepath.Join(h.root, "pub", "containers"), 0o755); err != nil {
			t.Fatal(err)
		}
		h.nginx = peers.StartNginx(t, h.root)
	}
	cache := filepath.Join(t.TempDir(), "mirrorlist_cache.proto")
	if err := mmCache(hosts).Write(cache); err != nil {
		t.Fatal(err)
	}

	refs := demo(t)
	i := slices.IndexFunc(refs, func(r testimages.Ref) bool { return r.Repo == "fedora/toolbox" })
	if i < 0 {
		t.Fatal("no fedora/toolbox in the demo set")
	}
	d, err := refs[i].Image.Digest()
	if err != nil {
		t.Fatal(err)
	}
	src := peers.StartRegistry(t)
	src.Push(t, refs)
	tree := filepath.Join(t.TempDir(), "tree")
	generate(t, src.URL, tree, "--mirrors", cache, "--mm-directory", "pub/containers")
	sync := func() {
		for _, h := range hosts {
			peers.SyncMirror(t, tree, filepath.Join(h.root, "pub", "containers"))
		}
	}
	sync()
	r := regmirror(t, nil, "crawl", "--tree", tree)
	if r.err != nil {
		t.Fatalf("%v", r)
	}
	t.Logf("regmirror crawl:\n%s", r.stdout)
	if !strings.Contains(r.stdout, "5 of 5 mirrors healthy") {
		t.Fatalf("crawl: want the 5 hosts MirrorManager lists healthy:\n%s", r.stdout)
	}
	sync()
	m, _, err := layout.NewTree(tree).Load()
	if err != nil {
		t.Fatal(err)
	}
	for _, mi := range m.Mirrors {
		if !strings.HasSuffix(mi.URL, "/pub/containers/") {
			t.Errorf("mirror %s: URL %s, want MirrorManager's URL + /containers/", mi.Name, mi.URL)
		}
	}

	dir := t.TempDir()
	geo, asn := filepath.Join(dir, "country.mmdb"), filepath.Join(dir, "asn.mmdb")
	if err := geoiptest.Write(geo, mmWorld); err != nil {
		t.Fatal(err)
	}
	if err := geoiptest.WriteASN(asn, []geoiptest.ASNNetwork{{CIDR: "127.0.8.0/24", ASN: 64501}}); err != nil {
		t.Fatal(err)
	}
	srv := clientServe(t, tree, nil, "--geoip", geo, "--asn-db", asn, "--trusted-proxy", "127.0.0.1/32")
	crane := peers.NewCrane(t)
	upstream := strings.Replace(srv.URL(), "localhost", "127.0.0.1", 1)
	for _, tc := range []struct {
		name, client string
		want         []string // hosts that may serve the blobs (all of them when several)
	}{
		{"country", "127.0.1.10", []string{"de"}},
		{"netblock reaches a private host", "127.0.9.10", []string{"campus"}},
		{"ASN reaches a private host", "127.0.8.10", []string{"isp"}},
		{"restricted host for its own country", "127.0.6.10", []string{"ca"}},
		{"continent without the restricted host", "127.0.7.10", []string{"us"}},
		{"country US", "127.0.3.10", []string{"us"}},
		{"global: public, unrestricted hosts only", "127.0.4.10", []string{"de", "us"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := mmBlobGETs(hosts)
			ep := mmEdge(t, upstream, tc.client)
			crane.Pull(t, ep, "fedora/toolbox:42", d.String())
			after := mmBlobGETs(hosts)
			total := 0
			for _, h := range hosts {
				n := after[h.name] - before[h.name]
				total += n
				if n > 0 && !slices.Contains(tc.want, h.name) {
					t.Errorf("client %s: %d blob downloads from %s, want only from %v", tc.client, n, h.name, tc.want)
				}
			}
			if total == 0 {
				t.Errorf("client %s: no blob downloaded from any mirror (%v)", tc.client, after)
			}
		})
	}
	if n := mmBlobGETs(hosts)["stale"]; n != 0 {
		t.Errorf("the host MirrorManager does not list served %d blobs", n)
	}

	// MirrorManager finds the DE host out of date: the next cache does not list it. crawl
	// --mirrors re-reads the cache and republishes; the running redirector reloads the tree
	// and sends the DE client elsewhere (no public DE or EU host is left: the world's US
	// host, never the CA-only one), without a restart.
	hosts[0].listed = false
	if err := mmCache(hosts).Write(cache); err != nil {
		t.Fatal(err)
	}
	if r := regmirror(t, nil, "crawl", "--tree", tree, "--mirrors", cache, "--mm-directory", "pub/containers"); r.err != nil {
		t.Fatalf("%v", r)
	}
	de := mmEdge(t, upstream, "127.0.1.10")
	layer, err := refs[i].Image.Layers()
	if err != nil || len(layer) == 0 {
		t.Fatalf("layers: %v", err)
	}
	ld, err := layer[0].Digest()
	if err != nil {
		t.Fatal(err)
	}
	client := clientHTTP(de, false)
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := client.Get(de.URL() + "/v2/fedora/toolbox/blobs/" + ld.String())
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		loc := resp.Header.Get("Location")
		if strings.HasPrefix(loc, hosts[3].nginx.URL+"pub/containers/") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the new cache, the DE client is still sent to %s (%s), want the US host", loc, resp.Status)
		}
		time.Sleep(200 * time.Millisecond)
	}

	// Broken caches are refused with one line, and change nothing.
	stamp, err := os.ReadFile(filepath.Join(tree, filepath.FromSlash(layout.CurrentFile)))
	if err != nil {
		t.Fatal(err)
	}
	good := mmCache(hosts).Bytes()
	// A cut inside a field does not parse. (A cut exactly between two fields leaves a shorter
	// valid message: MirrorManager writes the directories last, so the tree's directory is
	// then either whole or missing, which is refused as an unknown directory.)
	for name, b := range map[string][]byte{"truncated": good[:len(good)-3], "garbage": []byte("\x01\x02\x03 not a cache \xff")} {
		bad := filepath.Join(t.TempDir(), name+".bin")
		if err := os.WriteFile(bad, b, 0o644); err != nil {
			t.Fatal(err)
		}
		for _, args := range [][]string{
			{"crawl", "--tree", tree, "--mirrors", bad, "--mm-directory", "pub/containers"},
			{"generate", "--source", src.URL, "--out", tree, "--mirrors", bad, "--mm-directory", "pub/containers"},
		} {
			r := regmirror(t, nil, args...)
			msg := strings.TrimSpace(r.stderr)
			if r.err == nil || strings.Count(msg, "\n") != 0 || !strings.Contains(msg, "mirrorlist cache "+bad+" does not parse (refused)") {
				t.Errorf("%s cache: %v", name, r)
			}
		}
	}
	if now, err := os.ReadFile(filepath.Join(tree, filepath.FromSlash(layout.CurrentFile))); err != nil || string(now) != string(stamp) {
		t.Error("a refused cache changed the tree")
	}
}
