package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/regmirror/regmirror/internal/testsupport/geoiptest"
	"github.com/regmirror/regmirror/internal/testsupport/peers"
	"github.com/regmirror/regmirror/internal/testsupport/testimages"
	"github.com/regmirror/regmirror/layout"
)

// The simulated world: a network per client country, the client at .10 of it. The clients
// exist only in the X-Forwarded-For header the CDN edges set.
var netWorld = []geoiptest.Network{
	{CIDR: "127.0.1.0/24", Country: "DE", Continent: "EU"},
	{CIDR: "127.0.2.0/24", Country: "FR", Continent: "EU"},
	{CIDR: "127.0.3.0/24", Country: "US", Continent: "NA"},
	{CIDR: "127.0.4.0/24", Country: "JP", Continent: "AS"}, // no mirror in JP nor in Asia: global
	{CIDR: "127.0.5.0/24", Country: "AT", Continent: "EU"}, // no mirror in AT: continent EU
}

// netClientAddr is the address of the simulated client in a country of netWorld.
func netClientAddr(t testing.TB, country string) string {
	t.Helper()
	for _, n := range netWorld {
		if n.Country == country {
			return strings.TrimSuffix(n.CIDR, "0/24") + "10"
		}
	}
	t.Fatalf("no test network for country %s", country)
	return ""
}

// netMirror is one mirror of the network: nginx serving an rsync copy of the tree, or, when
// nginx is nil, a mirror configured at a port where nothing listens.
type netMirror struct {
	name, country string
	bandwidth     int
	// root is the mirror's directory: a fresh one when empty.
	root, url string
	nginx     *peers.Nginx
	// directives are extra lines in the mirror's nginx server block.
	directives string
	// content is the mirror's content in the mirrors file (none: every architecture).
	content []string
}

// mirrorNetwork is a whole mirror network on loopback: the source registry (kept running for
// later generations), the tree, the mirrors, an origin (nginx serving the tree itself), two
// redirectors with the GeoIP test database behind a trusted proxy (canonical and
// --regional-manifests), a CDN edge per client country in front of each, and the clients.
type mirrorNetwork struct {
	*clientFixture
	src         *peers.Registry
	mirrors     []*netMirror
	mirrorsFile string
	origin      *peers.Nginx

	canonical, regional *clientServer
	// edges[country] and regionalEdges[country] are the edges in front of each redirector.
	edges, regionalEdges map[string]peers.Endpoint
}

func (n *mirrorNetwork) mirror(name string) *netMirror {
	for _, m := range n.mirrors {
		if m.name == name {
			return m
		}
	}
	panic("no mirror " + name)
}

// startMirrors starts nginx for each mirror named in live (the others get a URL where nothing
// listens) and writes the mirrors file, with the origin when there is one.
func (n *mirrorNetwork) startMirrors(t *testing.T, mirrors []*netMirror, live []string) {
	t.Helper()
	var b strings.Builder
	if n.origin != nil {
		fmt.Fprintf(&b, "origin: %s\n", n.origin.URL)
	}
	b.WriteString("mirrors:\n")
	for _, m := range mirrors {
		if m.root == "" {
			m.root = filepath.Join(t.TempDir(), m.name)
		}
		if err := os.MkdirAll(m.root, 0o755); err != nil {
			t.Fatal(err)
		}
		if slices.Contains(live, m.name) {
			m.nginx = peers.StartNginxConfig(t, &peers.NginxConfig{Dir: t.TempDir(), Servers: []peers.NginxServer{{Root: m.root, Directives: m.directives}}})
			m.url = m.nginx.URL
		} else {
			m.url = fmt.Sprintf("http://localhost:%d/", peers.FreePort(t))
		}
		fmt.Fprintf(&b, "  - name: %s\n    url: %s\n    country: %s\n    bandwidth: %d\n", m.name, m.url, m.country, m.bandwidth)
		if len(m.content) > 0 {
			fmt.Fprintf(&b, "    content: [%s]\n", strings.Join(m.content, ", "))
		}
	}
	n.mirrors = mirrors
	n.mirrorsFile = filepath.Join(t.TempDir(), "mirrors.yaml")
	if err := os.WriteFile(n.mirrorsFile, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("mirrors file:\n%s", b.String())
}

// sync runs the documented two-phase rsync from the tree to the named mirrors.
func (n *mirrorNetwork) sync(t *testing.T, names ...string) {
	t.Helper()
	for _, name := range names {
		peers.SyncMirror(t, n.tree, n.mirror(name).root)
	}
}

// crawl runs "regmirror crawl --tree TREE" and returns the crawled metadata.
func (n *mirrorNetwork) crawl(t *testing.T) *layout.Meta {
	t.Helper()
	r := regmirror(t, nil, "crawl", "--tree", n.tree)
	if r.err != nil {
		t.Fatalf("%v", r)
	}
	t.Logf("regmirror crawl (%v):\n%s", r.took.Round(time.Millisecond), r.stdout)
	m, _, err := layout.NewTree(n.tree).Load()
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// whose names the mirror (or "origin") a URL points into; the URL itself when none.
func (n *mirrorNetwork) whose(url string) string {
	for _, m := range n.mirrors {
		if strings.HasPrefix(url, m.url) {
			return m.name
		}
	}
	if n.origin != nil && strings.HasPrefix(url, n.origin.URL) {
		return "origin"
	}
	return url
}

// locations sends count blob GETs for digest d through ep without following redirects and
// counts where the 307s point (by mirror name); any other answer fails the test.
func (n *mirrorNetwork) locations(t *testing.T, ep peers.Endpoint, repo, d string, count int) map[string]int {
	t.Helper()
	return n.locationsVia(t, clientHTTP(ep, false), ep.URL(), "", repo, d, count)
}

// locationsVia is locations with a client of the caller's (which must not follow
// redirects) at base, sending X-Forwarded-For: xff when xff is not empty.
func (n *mirrorNetwork) locationsVia(t *testing.T, client *http.Client, base, xff, repo, d string, count int) map[string]int {
	t.Helper()
	got := map[string]int{}
	url := base + "/v2/" + repo + "/blobs/" + d
	for range count {
		req, err := http.NewRequest(http.MethodGet, url, nil)
		if err != nil {
			t.Fatal(err)
		}
		if xff != "" {
			req.Header.Set("X-Forwarded-For", xff)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		loc := resp.Header.Get("Location")
		if resp.StatusCode != http.StatusTemporaryRedirect {
			t.Fatalf("GET %s: %s (Location %q), want 307", url, resp.Status, loc)
		}
		if want := "blobs/sha256/" + strings.TrimPrefix(d, "sha256:"); !strings.HasSuffix(loc, want) {
			t.Fatalf("GET %s: Location %q, want a URL ending in %s", url, loc, want)
		}
		got[n.whose(loc)]++
	}
	return got
}

// blobGETs counts, per mirror and blob path, the GETs in the mirrors' access logs answered
// 200 or 206.
func (n *mirrorNetwork) blobGETs() map[string]map[string]int {
	counts := map[string]map[string]int{}
	for _, m := range n.mirrors {
		if m.nginx == nil {
			continue
		}
		c := map[string]int{}
		for _, line := range m.nginx.AccessLog() {
			f := strings.Fields(line)
			if len(f) >= 3 && f[0] == "GET" && strings.HasPrefix(f[1], "/blobs/") && (f[2] == "200" || f[2] == "206") {
				c[f[1]]++
			}
		}
		counts[m.name] = c
	}
	return counts
}

// fromMirrors runs pull and checks in the mirrors' access logs that each of blobs was
// fetched during it from one of the mirrors in want, and that no other mirror served a blob
// meanwhile.
func (n *mirrorNetwork) fromMirrors(t *testing.T, want []string, blobs []string, pull func(t *testing.T)) {
	t.Helper()
	before := n.blobGETs()
	pull(t)
	if t.Failed() {
		return
	}
	after := n.blobGETs()
	for name, c := range after {
		if slices.Contains(want, name) {
			continue
		}
		for p, k := range c {
			if k > before[name][p] {
				t.Errorf("mirror %s (not one of %v) served %s %d times during the pull", name, want, p, k-before[name][p])
			}
		}
	}
	for _, b := range blobs {
		p := "/" + layout.BlobPath(layout.MustDigest(b))
		got := 0
		for _, name := range want {
			got += after[name][p] - before[name][p]
		}
		if got == 0 {
			t.Errorf("none of the mirrors %v served %s during the pull (their access logs)", want, b)
		}
	}
}

// badBlobAnswers returns the mirrors' access log lines of blob requests answered with
// anything but 200 or 206, as "mirror: line".
func (n *mirrorNetwork) badBlobAnswers() []string {
	var bad []string
	for _, m := range n.mirrors {
		if m.nginx == nil {
			continue
		}
		for _, line := range m.nginx.AccessLog() {
			f := strings.Fields(line)
			if len(f) >= 3 && strings.HasPrefix(f[1], "/blobs/") && f[2] != "200" && f[2] != "206" {
				bad = append(bad, m.name+": "+line)
			}
		}
	}
	return bad
}

// redirected counts the access log lines of a redirector that sent a blob to mirror name
// (to any mirror or the origin when name is empty).
func (s *clientServer) redirected(name string) int {
	b, _ := os.ReadFile(s.proc.Log)
	if name == "" {
		return strings.Count(string(b), " mirror=")
	}
	return strings.Count(string(b), " mirror="+name+" ") + strings.Count(string(b), " mirror="+name+"\n")
}

// newMirrorNetwork builds the network design.md's issue 4 describes: the demo set
// published (generation 1) and rsynced to every live mirror; then a new image pushed and
// generation 2 published and synced to every live mirror but de-stale; a crawl; the
// redirectors and edges. It returns the network and the new image's reference.
func newMirrorNetwork(t *testing.T) (*mirrorNetwork, testimages.Ref) {
	t.Helper()
	needPeers(t)
	peers.CleanHostResidue(t)
	refs := demo(t)
	n := &mirrorNetwork{clientFixture: &clientFixture{d: clientDigestsOf(t, refs), tree: filepath.Join(t.TempDir(), "tree")}}
	if err := os.MkdirAll(n.tree, 0o755); err != nil {
		t.Fatal(err)
	}
	n.origin = peers.StartNginx(t, n.tree)
	n.startMirrors(t, []*netMirror{
		{name: "de-big", country: "DE", bandwidth: 300},
		{name: "de-stale", country: "DE", bandwidth: 100},
		{name: "fr", country: "FR", bandwidth: 100},
		{name: "us", country: "US", bandwidth: 100},
		// Configured but not running, with the most bandwidth: it would win FR if chosen.
		{name: "dead", country: "FR", bandwidth: 1000},
	}, []string{"de-big", "de-stale", "fr", "us"})

	n.src = peers.StartRegistry(t)
	n.src.Push(t, refs)
	generate(t, n.src.URL, n.tree, "--mirrors", n.mirrorsFile)
	n.sync(t, "de-big", "de-stale", "fr", "us")

	// Generation 2: fedora/new:1, fedora:42's base layer (generation 1) and a new layer.
	added := randomImages(t, 42, []string{"fedora/new"}, 1, 1, 256<<10, netBaseLayer(t, refs))
	added[0].Tags = []string{"1"}
	n.src.Push(t, added)
	generate(t, n.src.URL, n.tree, "--mirrors", n.mirrorsFile)
	n.sync(t, "de-big", "fr", "us") // de-stale stays at generation 1
	m := n.crawl(t)
	if m.Generation != 2 {
		t.Fatalf("tree generation %d after two generates, want 2", m.Generation)
	}
	t.Run("crawl", func(t *testing.T) {
		for _, tc := range []struct {
			mirror     string
			healthy    bool
			generation uint64
			status     string // prefix
		}{
			{"de-big", true, 2, "up to date"},
			{"de-stale", true, 1, "behind by 1 generation"},
			{"fr", true, 2, "up to date"},
			{"us", true, 2, "up to date"},
			{"dead", false, 0, "down: "},
		} {
			i := slices.IndexFunc(m.Mirrors, func(mm *layout.Mirror) bool { return mm.Name == tc.mirror })
			if i < 0 {
				t.Errorf("mirror %s: not in the crawled metadata", tc.mirror)
				continue
			}
			got := m.Mirrors[i]
			if got.Healthy != tc.healthy || (tc.healthy && got.Generation != tc.generation) || !strings.HasPrefix(got.Status, tc.status) {
				t.Errorf("mirror %s after crawl: healthy %v, generation %d, status %q; want %v, %d, %q…",
					tc.mirror, got.Healthy, got.Generation, got.Status, tc.healthy, tc.generation, tc.status)
			}
		}
	})

	db := filepath.Join(t.TempDir(), "GeoIP2-Country.mmdb")
	if err := geoiptest.Write(db, netWorld); err != nil {
		t.Fatal(err)
	}
	geo := []string{"--geoip", db, "--trusted-proxy", "127.0.0.1/32"}
	n.canonical = clientServe(t, n.tree, nil, geo...)
	n.regional = clientServe(t, n.tree, nil, append(geo, "--regional-manifests")...)
	var edges []*peers.Edge
	for _, srv := range []*clientServer{n.canonical, n.regional} {
		upstream := strings.Replace(srv.Host, "localhost", "127.0.0.1", 1)
		for _, w := range netWorld {
			edges = append(edges, &peers.Edge{Upstream: upstream, ClientAddr: netClientAddr(t, w.Country)})
		}
	}
	peers.StartEdges(t, edges)
	n.edges, n.regionalEdges = map[string]peers.Endpoint{}, map[string]peers.Endpoint{}
	for i, w := range netWorld {
		n.edges[w.Country] = edges[i].Endpoint
		n.regionalEdges[w.Country] = edges[len(netWorld)+i].Endpoint
	}
	n.startClients(t)
	return n, added[0]
}

// netBaseLayer is fedora:42's linux/amd64 layer, to share with a later image.
func netBaseLayer(t testing.TB, refs []testimages.Ref) v1.Layer {
	t.Helper()
	idx, err := refs[0].Index.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range idx.Manifests {
		if m.Platform != nil && m.Platform.Architecture == "amd64" {
			img, err := refs[0].Index.Image(m.Digest)
			if err != nil {
				t.Fatal(err)
			}
			ls, err := img.Layers()
			if err != nil {
				t.Fatal(err)
			}
			return ls[0]
		}
	}
	t.Fatalf("%s has no linux/amd64 image", refs[0].Repo)
	return nil
}

// imageBlobs returns the config and layer digests of an image, and those first published in
// generation gen (per the tree's metadata).
func imageBlobs(t testing.TB, img v1.Image, m *layout.Meta, gen uint64) (all, since []string) {
	t.Helper()
	mf, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range append([]v1.Descriptor{mf.Config}, mf.Layers...) {
		all = append(all, d.Digest.String())
		b := m.Blobs[layout.MustDigest(d.Digest.String())]
		if b == nil {
			t.Fatalf("blob %s is not in the tree's metadata", d.Digest)
		}
		if b.Since == gen {
			since = append(since, d.Digest.String())
		}
	}
	return all, since
}

// TestMirrorNetwork: the mirror network end to end. Four live mirrors (two in DE, one of them
// a generation behind; one in FR; one in US), one configured but not running, an origin;
// the redirector with a GeoIP test database behind CDN edges that set X-Forwarded-For for a
// client in DE, FR, US, AT (no mirror: its continent) and JP (no mirror in Asia: global).
// Every blob download goes to the client's region's mirrors holding the blob, never to the
// dead mirror, never to the stale one for a blob it lacks; real clients' pulls fetch every
// blob from there (the mirrors' access logs); regional variants name the region's mirrors
// first and the origin last, and podman, containerd and skopeo pull from them; a mirror
// stopped and crawled is out once the redirectors reload.
func TestMirrorNetwork(t *testing.T) {
	n, added := newMirrorNetwork(t)
	m, _, err := layout.NewTree(n.tree).Load()
	if err != nil {
		t.Fatal(err)
	}
	d := n.d
	oldLayer := d.fedoraAMD64Blobs[len(d.fedoraAMD64Blobs)-1]
	newAll, newBlobs := imageBlobs(t, added.Image, m, 2)
	if len(newBlobs) != 2 || !slices.Contains(newAll, oldLayer) {
		t.Fatalf("fedora/new:1's blobs %v, of which %v new in generation 2: want a config and a layer new, and fedora's base layer %s", newAll, newBlobs, oldLayer)
	}
	newLayer := newAll[len(newAll)-1]
	newDigest, err := added.Digest()
	if err != nil {
		t.Fatal(err)
	}
	region := map[string][]string{ // where a client's downloads of generation 1's blobs go
		"DE": {"de-big", "de-stale"},
		"FR": {"fr"},
		"US": {"us"},
		"AT": {"de-big", "de-stale", "fr"},
		"JP": {"de-big", "de-stale", "fr", "us"}, // global
	}

	// 200 blob GETs per client and blob through the edges: the 307s point at exactly the
	// mirrors of the client's region holding the blob (each of them chosen at times).
	t.Run("locations", func(t *testing.T) {
		for _, tc := range []struct {
			client, repo, blob string
			want               []string
		}{
			{"DE", "fedora", oldLayer, region["DE"]},
			{"DE", "fedora/new", newLayer, []string{"de-big"}},
			{"FR", "fedora", oldLayer, region["FR"]},
			{"FR", "fedora/new", newLayer, []string{"fr"}},
			{"US", "fedora", oldLayer, region["US"]},
			{"US", "fedora/new", newLayer, []string{"us"}},
			{"AT", "fedora", oldLayer, region["AT"]},
			{"AT", "fedora/new", newLayer, []string{"de-big", "fr"}},
			{"JP", "fedora", oldLayer, region["JP"]},
			{"JP", "fedora/new", newLayer, []string{"de-big", "fr", "us"}},
		} {
			got := n.locations(t, n.edges[tc.client], tc.repo, tc.blob, 200)
			if names := slices.Sorted(maps.Keys(got)); !slices.Equal(names, tc.want) {
				t.Errorf("client in %s, %s blob %s: 307s to %v, want to each of %v and nowhere else", tc.client, tc.repo, tc.blob, got, tc.want)
			}
		}
	})

	// A client that is not a trusted proxy (its connections come from 127.0.0.2) cannot
	// choose its region with X-Forwarded-For: its own address, unknown to the GeoIP
	// database, puts it in the global region.
	t.Run("untrusted-x-forwarded-for", func(t *testing.T) {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.DialContext = (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}, Timeout: 10 * time.Second}).DialContext
		client := &http.Client{Transport: tr, Timeout: 30 * time.Second,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		got := n.locationsVia(t, client, n.canonical.URL(), netClientAddr(t, "US"), "fedora", oldLayer, 200)
		if names := slices.Sorted(maps.Keys(got)); !slices.Equal(names, region["JP"]) {
			t.Errorf("untrusted peer claiming a US address: 307s to %v, want to each of %v (global)", got, region["JP"])
		}
	})

	t.Run("docker-pull-latest", func(t *testing.T) {
		// The proposal's own test: no tag, bytes from a mirror of the client's region.
		n.fromMirrors(t, region["DE"], d.fedoraAMD64Blobs, func(t *testing.T) {
			n.docker.Pull(t, n.edges["DE"], "fedora", d.fedora)
		})
	})

	for _, c := range []string{"DE", "FR", "US"} {
		t.Run("pulls-"+c, func(t *testing.T) {
			ep := n.edges[c]
			for _, p := range []struct {
				name string
				pull func(t *testing.T)
			}{
				{"podman", func(t *testing.T) { n.podman.Pull(t, ep, "fedora:42", d.fedora) }},
				{"skopeo", func(t *testing.T) { n.skopeo.CopyDir(t, ep, "fedora:42", d.fedoraAMD64) }},
				{"crane", func(t *testing.T) { n.crane.Pull(t, ep, "fedora:42", d.fedora) }},
			} {
				t.Run(p.name, func(t *testing.T) { n.fromMirrors(t, region[c], d.fedoraAMD64Blobs, p.pull) })
			}
			// The new image: its new blobs only from mirrors holding generation 2.
			t.Run("podman-new-image", func(t *testing.T) {
				n.fromMirrors(t, region[c], newAll, func(t *testing.T) { n.podman.Pull(t, ep, "fedora/new:1", newDigest.String()) })
			})
		})
	}

	t.Run("regional", func(t *testing.T) {
		for _, c := range []string{"DE", "US"} {
			t.Run(c, func(t *testing.T) { n.checkRegional(t, c, region[c], newBlobs) })
		}
	})

	// de-stale was never asked for a blob it lacks (while old ones went to it); nothing was
	// ever sent to the dead mirror; no mirror answered a blob GET with anything but 200/206.
	t.Run("stale-and-dead", func(t *testing.T) {
		// Downloads (following the 307s) of an old blob by the DE client: de-stale serves
		// its share of them.
		client := clientHTTP(n.edges["DE"], true)
		before := n.blobGETs()["de-stale"]
		for range 50 {
			resp, err := client.Get(n.edges["DE"].URL() + "/v2/fedora/blobs/" + oldLayer)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("download of %s by the DE client from %s: %s", oldLayer, resp.Request.URL, resp.Status)
			}
		}
		counts := n.blobGETs()
		if p := "/" + layout.BlobPath(layout.MustDigest(oldLayer)); counts["de-stale"][p] <= before[p] {
			t.Errorf("de-stale served none of 50 downloads of %s by the DE client: want it still chosen for generation 1's blobs", oldLayer)
		}
		for _, b := range newBlobs {
			if k := counts["de-stale"]["/"+layout.BlobPath(layout.MustDigest(b))]; k > 0 {
				t.Errorf("de-stale (generation 1) was asked %d times for %s, a blob of generation 2", k, b)
			}
		}
		// (The regional redirector may have redirected nothing: clients took the urls.)
		if k := n.canonical.redirected("de-big"); k == 0 {
			t.Errorf("the redirector's log names de-big in no redirect: cannot count redirects to the dead mirror\n%s", peers.Tail(n.canonical.proc.Log, 5))
		}
		for _, srv := range []*clientServer{n.canonical, n.regional} {
			if k := srv.redirected("dead"); k != 0 {
				t.Errorf("the redirector sent %d blob GETs to the dead mirror", k)
			}
		}
		for _, line := range n.badBlobAnswers() {
			t.Errorf("%s: want every blob request answered 200 or 206", line)
		}
	})

	// fr stops; a crawl finds it down; once the redirectors reload, the FR client goes to
	// the rest of EU and FR's variants no longer name fr.
	t.Run("mirror-stopped", func(t *testing.T) {
		n.mirror("fr").nginx.Stop()
		m := n.crawl(t)
		for _, mm := range m.Mirrors {
			if mm.Name == "fr" && (mm.Healthy || !strings.HasPrefix(mm.Status, "down: ")) {
				t.Errorf("fr after it stopped: healthy %v, status %q, want unhealthy, down", mm.Healthy, mm.Status)
			}
		}
		deadline := time.Now().Add(20 * time.Second)
		for n.locations(t, n.edges["FR"], "fedora", oldLayer, 1)["fr"] > 0 {
			if time.Now().After(deadline) {
				t.Fatalf("20 s after the crawl found fr down, the redirector still sends the FR client there\n%s", peers.Tail(n.canonical.proc.Log, 10))
			}
			time.Sleep(100 * time.Millisecond)
		}
		got := n.locations(t, n.edges["FR"], "fedora", oldLayer, 200)
		if names := slices.Sorted(maps.Keys(got)); !slices.Equal(names, []string{"de-big", "de-stale"}) {
			t.Errorf("FR client with fr stopped: 307s to %v, want to de-big and de-stale (EU) only", got)
		}
		deadline = time.Now().Add(20 * time.Second)
		for {
			_, _, urls := n.variant(t, n.regionalEdges["FR"], "fedora/toolbox", "42")
			named := false
			for _, us := range urls {
				for _, u := range us {
					named = named || n.whose(u) == "fr"
				}
			}
			if !named {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("20 s after the crawl found fr down, FR's variant still names it: %v", urls)
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
}

// variant GETs repo:tag through ep (a regional edge) and returns the manifest's digest, its
// bytes and each config and layer descriptor's urls, by blob digest.
func (n *mirrorNetwork) variant(t *testing.T, ep peers.Endpoint, repo, tag string) (string, []byte, map[string][]string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, ep.URL()+"/v2/"+repo+"/manifests/"+tag, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json")
	resp, err := clientHTTP(ep, false).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s/v2/%s/manifests/%s: %s %v", ep.URL(), repo, tag, resp.Status, err)
	}
	var mf struct {
		Config v1.Descriptor
		Layers []v1.Descriptor
	}
	if err := json.Unmarshal(body, &mf); err != nil {
		t.Fatal(err)
	}
	urls := map[string][]string{}
	for _, d := range append([]v1.Descriptor{mf.Config}, mf.Layers...) {
		urls[d.Digest.String()] = d.URLs
	}
	return "sha256:" + sha256Hex(body), body, urls
}

// checkRegional checks the regional variants a client in country c gets through the
// --regional-manifests redirector: every config and layer descriptor's urls name the
// region's mirrors holding the blob first (want, in preference order: bandwidth, then name)
// and the origin last, never the dead mirror; then podman, containerd and skopeo (to dir:)
// pull the variant and get every blob from the region's mirrors.
func (n *mirrorNetwork) checkRegional(t *testing.T, c string, want, newBlobs []string) {
	ep := n.regionalEdges[c]
	vd, body, toolbox := n.variant(t, ep, "fedora/toolbox", "42")
	if vd == n.d.toolbox {
		t.Fatalf("client in %s: fedora/toolbox:42 through the regional redirector is the canonical manifest, want a variant", c)
	}
	_, _, urls := n.variant(t, ep, "fedora/new", "1")
	maps.Copy(urls, toolbox)
	for b, us := range urls {
		var names []string
		for _, u := range us {
			names = append(names, n.whose(u))
			if want := n.origin.URL + layout.BlobPath(layout.MustDigest(b)); n.whose(u) == "origin" && u != want {
				t.Errorf("client in %s, blob %s: origin url %s, want %s", c, b, u, want)
			}
		}
		region, lacking := want, []string{"dead"}
		if slices.Contains(newBlobs, b) { // generation 2: de-stale lacks it
			region = slices.DeleteFunc(slices.Clone(want), func(s string) bool { return s == "de-stale" })
			lacking = append(lacking, "de-stale")
		}
		if len(names) < len(region)+1 || !slices.Equal(names[:len(region)], region) || names[len(names)-1] != "origin" ||
			slices.ContainsFunc(names, func(s string) bool { return slices.Contains(lacking, s) }) {
			t.Errorf("client in %s, blob %s: urls at %v, want %v first, the origin last, none at %v\n%s", c, b, names, region, lacking, body)
		}
	}
	toolboxBlobs := slices.Sorted(maps.Keys(toolbox))
	for _, p := range []struct {
		name string
		pull func(t *testing.T)
	}{
		{"podman", func(t *testing.T) { n.podman.Pull(t, ep, "fedora/toolbox:42", vd) }},
		{"containerd", func(t *testing.T) { n.ctd.Pull(t, ep, "fedora/toolbox:42", vd) }},
		{"skopeo", func(t *testing.T) { n.skopeo.CopyDir(t, ep, "fedora/toolbox:42", vd) }},
	} {
		t.Run(p.name, func(t *testing.T) {
			before := n.regional.redirected("")
			n.fromMirrors(t, want, toolboxBlobs, p.pull)
			time.Sleep(200 * time.Millisecond) // the redirector flushes its log every 100 ms
			t.Logf("client in %s, %s: %d of %d blobs through the redirector's 307, the others through the variant's urls",
				c, p.name, n.regional.redirected("")-before, len(toolboxBlobs))
		})
	}
}

// loadPuller pulls random tags from the redirector in a loop, the way a client does: tags
// list, manifest by tag, then config and layers following the 307s, each verified (size and
// sha256). A 404 for the manifest or a blob of a tag the test removed on purpose is
// tolerated when it comes from the redirector (the tag may go between the list and the
// GET); every other failure, and any answer but 200 from a mirror, is an error.
type loadPuller struct {
	base    string // the redirector, "http://localhost:PORT"
	repos   []string
	removed func(repoTag string) bool
	client  *http.Client

	mu        sync.Mutex
	errs      []string
	pulls     int
	tolerated int
	viaMirror int // blobs fetched from a mirror (after a 307)
	viaServer int // blobs the redirector served itself
}

var errNotFound = errors.New("404 Not Found")

func (p *loadPuller) count() (pulls, tolerated, viaMirror, viaServer int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.pulls, p.tolerated, p.viaMirror, p.viaServer
}

func (p *loadPuller) errorf(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.errs) < 20 {
		p.errs = append(p.errs, fmt.Sprintf(format, args...))
	}
}

// run pulls until stop is closed.
func (p *loadPuller) run(stop <-chan struct{}, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, seed))
	for {
		select {
		case <-stop:
			return
		default:
		}
		repo := p.repos[rng.IntN(len(p.repos))]
		var list struct{ Tags []string }
		// A repository not published (yet, or any more) answers 404: nothing to pull.
		if err := p.getJSON(p.base+"/v2/"+repo+"/tags/list", &list); err != nil && !errors.Is(err, errNotFound) {
			p.errorf("tags list of %s: %v", repo, err)
			continue
		}
		if len(list.Tags) == 0 {
			continue
		}
		tag := list.Tags[rng.IntN(len(list.Tags))]
		status, err := p.pull(repo, tag)
		p.mu.Lock()
		switch {
		case err == nil:
			p.pulls++
		case status == http.StatusNotFound && p.removed(repo+":"+tag):
			p.tolerated++
		default:
			if len(p.errs) < 20 {
				p.errs = append(p.errs, fmt.Sprintf("pull %s:%s: %v", repo, tag, err))
			}
		}
		p.mu.Unlock()
	}
}

func (p *loadPuller) getJSON(url string, v any) error {
	resp, err := p.client.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotFound:
		return fmt.Errorf("GET %s: %w", url, errNotFound)
	default:
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(v)
}

// pull fetches repo:tag's manifest and blobs; on failure it returns the status of the failed
// request when the redirector answered it (0 otherwise).
func (p *loadPuller) pull(repo, tag string) (int, error) {
	req, err := http.NewRequest(http.MethodGet, p.base+"/v2/"+repo+"/manifests/"+tag, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Accept", "application/vnd.oci.image.manifest.v1+json")
	resp, err := p.client.Do(req)
	if err != nil {
		return 0, err
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	if err != nil {
		return 0, err
	}
	if resp.StatusCode != http.StatusOK {
		return resp.StatusCode, fmt.Errorf("manifest: %s", resp.Status)
	}
	var mf v1.Manifest
	if err := json.Unmarshal(body, &mf); err != nil {
		return 0, fmt.Errorf("manifest: %w", err)
	}
	for _, d := range append([]v1.Descriptor{mf.Config}, mf.Layers...) {
		resp, err := p.client.Get(p.base + "/v2/" + repo + "/blobs/" + d.Digest.String())
		if err != nil {
			return 0, fmt.Errorf("blob %s: %w", d.Digest, err)
		}
		h := sha256.New()
		size, err := io.Copy(h, resp.Body)
		resp.Body.Close()
		final := resp.Request.URL
		fromServer := final.Host == strings.TrimPrefix(p.base, "http://")
		switch {
		case err != nil:
			return 0, fmt.Errorf("blob %s from %s: %w", d.Digest, final, err)
		case resp.StatusCode != http.StatusOK && fromServer:
			return resp.StatusCode, fmt.Errorf("blob %s from the redirector: %s", d.Digest, resp.Status)
		case resp.StatusCode != http.StatusOK:
			return 0, fmt.Errorf("blob %s: the redirector sent the client to %s, which answered %s", d.Digest, final, resp.Status)
		case size != d.Size || "sha256:"+hex.EncodeToString(h.Sum(nil)) != d.Digest.String():
			return 0, fmt.Errorf("blob %s from %s: %d bytes hashing to sha256:%x, want %d", d.Digest, final, size, h.Sum(nil), d.Size)
		}
		p.mu.Lock()
		if fromServer {
			p.viaServer++
		} else {
			p.viaMirror++
		}
		p.mu.Unlock()
	}
	return 0, nil
}

// backgroundCrawls runs "regmirror crawl --tree TREE" over and over until the returned
// function is called, which waits for the crawl under way and returns how many ran. Each
// crawl must succeed.
func backgroundCrawls(t *testing.T, tree string) func() int {
	stop, done := make(chan struct{}), make(chan int)
	var failed []result
	go func() {
		n := 0
		for {
			r := regmirror(t, nil, "crawl", "--tree", tree)
			if r.err != nil {
				failed = append(failed, r)
			}
			n++
			select {
			case <-stop:
				done <- n
				return
			default:
			}
		}
	}()
	return func() int {
		close(stop)
		n := <-done
		for _, r := range failed {
			t.Errorf("crawl while the mirrors synced: %v", r)
		}
		return n
	}
}

// TestMirrorSyncUnderLoad: the rsync workflow while clients pull. Generations follow each
// other (new images with new blobs, a tag removed, --gc-grace 1ns so blobs are deleted from
// the tree and then from the mirrors); between generations the documented two-phase rsync
// fills the mirrors (one of them only every other time, so it lags a generation behind)
// while crawls run over and over, and a last crawl publishes what they hold. Pullers go on all along: every pull of a tag still
// published succeeds, no mirror is ever asked for a blob it lacks (no answer but 200 or 206
// in the mirrors' access logs), a new blob is served by the redirector itself until a crawl
// found a mirror holding it, and by the mirrors afterwards.
func TestMirrorSyncUnderLoad(t *testing.T) {
	needPeers(t)
	n := &mirrorNetwork{clientFixture: &clientFixture{tree: filepath.Join(t.TempDir(), "tree")}}
	n.startMirrors(t, []*netMirror{
		{name: "m1", country: "DE", bandwidth: 100},
		{name: "m2", country: "FR", bandwidth: 100},
		{name: "lagging", country: "US", bandwidth: 100},
	}, []string{"m1", "m2", "lagging"})
	synced := func(round int) []string {
		if round%2 == 1 {
			return []string{"m1", "m2"}
		}
		return []string{"m1", "m2", "lagging"}
	}
	n.src = peers.StartRegistry(t)
	const layerSize = 64 << 10
	n.src.Push(t, randomImages(t, 1, []string{"load/stable"}, 3, 2, layerSize))
	const rounds = 3
	doomed := randomImages(t, 2, []string{"load/doomed"}, rounds, 2, layerSize)
	n.src.Push(t, doomed)
	generate(t, n.src.URL, n.tree, "--mirrors", n.mirrorsFile, "--gc-grace", "1ns")
	n.sync(t, synced(0)...)
	n.crawl(t)
	srv := clientServe(t, n.tree, nil)

	var removedMu sync.Mutex
	removed := map[string]bool{}
	p := &loadPuller{
		base:  srv.URL(),
		repos: []string{"load/stable", "load/doomed", "load/new"},
		removed: func(rt string) bool {
			removedMu.Lock()
			defer removedMu.Unlock()
			return removed[rt]
		},
		client: &http.Client{Timeout: 30 * time.Second},
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.run(stop, uint64(i+1))
		}()
	}
	stopped := false
	stopPullers := func() {
		if !stopped {
			stopped = true
			close(stop)
			wg.Wait()
		}
	}
	defer stopPullers()
	// waitPulls waits until the pullers have done some more pulls (they run all along).
	waitPulls := func(what string) {
		t.Helper()
		before, _, _, _ := p.count()
		deadline := time.Now().Add(20 * time.Second)
		for {
			if now, _, _, _ := p.count(); now >= before+5 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: the pullers did no pull in 20 s: %v", what, p.errs)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	noFollow := clientHTTP(srv.Endpoint, false)
	// blobAnswer is where the redirector sends a GET of blob d of repo: a mirror's name, or
	// "redirector" when it serves the blob itself.
	blobAnswer := func(repo, d string) string {
		resp, err := noFollow.Get(srv.URL() + "/v2/" + repo + "/blobs/" + d)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		switch resp.StatusCode {
		case http.StatusOK:
			return "redirector"
		case http.StatusTemporaryRedirect:
			return n.whose(resp.Header.Get("Location"))
		}
		t.Fatalf("GET blob %s of %s: %s, want 200 or 307", d, repo, resp.Status)
		return ""
	}
	waitPulls("generation 1")

	for round := 1; round <= rounds; round++ {
		gen := uint64(round + 1)
		added := randomImages(t, uint64(100+round), []string{"load/new"}, 1, 2, layerSize)
		added[0].Tags = []string{fmt.Sprintf("r%d", round)}
		n.src.Push(t, added)
		gone := fmt.Sprintf("load/doomed:t%d", round-1)
		removedMu.Lock()
		removed[gone] = true
		removedMu.Unlock()
		n.src.DeleteTag(t, "load/doomed", fmt.Sprintf("t%d", round-1))
		generate(t, n.src.URL, n.tree, "--mirrors", n.mirrorsFile, "--gc-grace", "1ns")
		m, _, err := layout.NewTree(n.tree).Load()
		if err != nil {
			t.Fatal(err)
		}
		_, fresh := imageBlobs(t, added[0].Image, m, gen)
		if len(fresh) != 3 {
			t.Fatalf("round %d: %d blobs of generation %d in the new image, want 3 (config and two layers)", round, len(fresh), gen)
		}
		// Once the redirector has the new generation, no mirror holds the new blobs yet:
		// the redirector serves them itself.
		deadline := time.Now().Add(20 * time.Second)
		for {
			resp, err := noFollow.Head(srv.URL() + "/v2/load/new/manifests/" + added[0].Tags[0])
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("round %d: the redirector did not load generation %d in 20 s", round, gen)
			}
			time.Sleep(20 * time.Millisecond)
		}
		for _, b := range fresh {
			if got := blobAnswer("load/new", b); got != "redirector" {
				t.Errorf("round %d, before any mirror has generation %d: blob %s sent to %s, want served by the redirector", round, gen, b, got)
			}
		}
		waitPulls(fmt.Sprintf("round %d, after generate", round))
		// Crawls go on while the mirrors sync: a mirror is taken at a generation only once
		// all of it is there.
		crawls := backgroundCrawls(t, n.tree)
		for _, name := range synced(round) {
			// A crawl prunes metadata files it superseded: rsync may find them vanished.
			for _, v := range peers.SyncMirrorChanging(t, n.tree, n.mirror(name).root) {
				t.Logf("round %d, syncing %s: rsync: %s", round, name, v)
			}
			waitPulls(fmt.Sprintf("round %d, after syncing %s", round, name))
		}
		k := crawls()
		if k == 0 {
			t.Errorf("round %d: no crawl ran while the mirrors synced", round)
		}
		t.Logf("round %d: %d crawls while the mirrors synced", round, k)
		n.crawl(t)
		// Once the redirector has the crawl's findings, the new blobs go to the mirrors
		// just synced, and never to the lagging one when it was not.
		// The redirector may first load a background crawl's findings (one that ran before the
		// last sync): wait until it sends the blob to every mirror synced, which only the last
		// crawl's findings allow.
		want := slices.Sorted(slices.Values(synced(round)))
		deadline = time.Now().Add(20 * time.Second)
		for {
			seen := map[string]bool{}
			for range 20 {
				seen[blobAnswer("load/new", fresh[0])] = true
			}
			if !seen["redirector"] && len(seen) >= len(want) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("round %d: 20 s after the crawl, the redirector sends generation %d's blobs to %v, want each of %v", round, gen, slices.Sorted(maps.Keys(seen)), want)
			}
			time.Sleep(20 * time.Millisecond)
		}
		got := map[string]int{}
		for range 100 {
			got[blobAnswer("load/new", fresh[len(fresh)-1])]++
		}
		if names := slices.Sorted(maps.Keys(got)); !slices.Equal(names, want) {
			t.Errorf("round %d: blob of generation %d sent to %v, want to each of %v and nowhere else", round, gen, got, want)
		}
		waitPulls(fmt.Sprintf("round %d, after the crawl", round))
	}
	stopPullers()

	pulls, tolerated, viaMirror, viaServer := p.count()
	t.Logf("%d pulls (%d of a tag removed meanwhile); blobs: %d from mirrors, %d from the redirector", pulls, tolerated, viaMirror, viaServer)
	for _, e := range p.errs {
		t.Errorf("puller: %s", e)
	}
	if viaMirror == 0 || viaServer == 0 {
		t.Errorf("pullers fetched %d blobs from mirrors and %d from the redirector, want both", viaMirror, viaServer)
	}
	bad := n.badBlobAnswers()
	for i, line := range bad {
		if i == 10 {
			t.Errorf("… and %d more", len(bad)-i)
			break
		}
		t.Errorf("%s: want every blob request answered 200 or 206", line)
	}
	for name, c := range n.blobGETs() {
		sum := 0
		for _, k := range c {
			sum += k
		}
		t.Logf("mirror %s: %d blob downloads", name, sum)
	}
	// The tree dropped the blobs of the tag removed first (unreferenced from generation 2,
	// deleted by generation 3's generate: grace 1ns), and so did every mirror since synced.
	ls, err := doomed[0].Image.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range ls {
		d, err := l.Digest()
		if err != nil {
			t.Fatal(err)
		}
		for _, root := range []string{n.tree, n.mirror("m1").root, n.mirror("m2").root, n.mirror("lagging").root} {
			if _, err := os.Stat(filepath.Join(root, layout.BlobPath(layout.MustDigest(d.String())))); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("%s still has blob %s of load/doomed:t0 (removed in round 1): %v", root, d, err)
			}
		}
	}
	checkTree(t, n.mirror("m1").root)
}
