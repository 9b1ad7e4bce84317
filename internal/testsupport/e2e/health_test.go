package e2e

import (
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/regmirror/regmirror/internal/testsupport/geoiptest"
	"github.com/regmirror/regmirror/internal/testsupport/peers"
	"github.com/regmirror/regmirror/layout"
)

// hit is one blob GET's answer: where its 307 pointed (a mirror's name, "origin") or what
// went wrong, and when it came back.
type hit struct {
	at time.Time
	to string
}

// poller sends blob GETs to a redirector without pause, in the background, and keeps where
// each 307 pointed.
type poller struct {
	mu   sync.Mutex
	hits []hit
	stop chan struct{}
	done chan struct{}
}

// poll starts a poller of GET /v2/<repo>/blobs/<d> at base (X-Forwarded-For: xff unless
// empty). It stops when the test ends.
func (n *mirrorNetwork) poll(t *testing.T, client *http.Client, base, xff, repo, d string) *poller {
	p := &poller{stop: make(chan struct{}), done: make(chan struct{})}
	url := base + "/v2/" + repo + "/blobs/" + d
	go func() {
		defer close(p.done)
		for {
			select {
			case <-p.stop:
				return
			default:
			}
			to := ""
			req, _ := http.NewRequest(http.MethodGet, url, nil)
			if xff != "" {
				req.Header.Set("X-Forwarded-For", xff)
			}
			resp, err := client.Do(req)
			if err != nil {
				to = "error: " + err.Error()
			} else {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusTemporaryRedirect {
					to = n.whose(resp.Header.Get("Location"))
				} else {
					to = "status " + resp.Status
				}
			}
			p.mu.Lock()
			p.hits = append(p.hits, hit{time.Now(), to})
			p.mu.Unlock()
			time.Sleep(5 * time.Millisecond)
		}
	}()
	t.Cleanup(p.close)
	return p
}

func (p *poller) close() {
	select {
	case <-p.stop:
	default:
		close(p.stop)
	}
	<-p.done
}

// last is when the last 307 to name came back; zero if none did.
func (p *poller) last(name string) time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := len(p.hits) - 1; i >= 0; i-- {
		if p.hits[i].to == name {
			return p.hits[i].at
		}
	}
	return time.Time{}
}

// since counts the answers that came back after at, by where they pointed.
func (p *poller) since(at time.Time) map[string]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	got := map[string]int{}
	for _, h := range p.hits {
		if h.at.After(at) {
			got[h.to]++
		}
	}
	return got
}

// probedServer is a redirector with its health probes, and a poller of a blob through it.
type probedServer struct {
	name string
	srv  *clientServer
	p    *poller
}

func outLine(mirror string) string {
	return `msg="mirror out of rotation: its probes fail" mirror=` + mirror + " "
}

func backLine(mirror string) string {
	return `msg="mirror back in rotation: its probes pass again" mirror=` + mirror + " "
}

// takenOut breaks mirror with kill and checks that each server takes it out of rotation:
// it logs so, and no 307 names the mirror from then on; the time from kill to the last 307
// to the mirror is at most 15 s. It returns that time per server.
func takenOut(t *testing.T, mirror string, kill func(), servers ...*probedServer) map[string]time.Duration {
	t.Helper()
	before := map[string]int{}
	for _, s := range servers {
		before[s.name] = countLines(s.srv.proc.Log, outLine(mirror))
	}
	death := time.Now()
	kill()
	took := map[string]time.Duration{}
	for _, s := range servers {
		waitUntil(t, 60*time.Second, s.name+" logging "+mirror+" out of rotation", func() bool {
			return countLines(s.srv.proc.Log, outLine(mirror)) > before[s.name]
		}, s.srv.proc.Log)
	}
	logged := time.Now()
	time.Sleep(time.Second) // 307s after the log line would show now
	for _, s := range servers {
		last := s.p.last(mirror)
		took[s.name] = max(last.Sub(death), 0)
		t.Logf("%s: last 307 to %s %v after it broke (answers since, by where they pointed: %v)",
			s.name, mirror, took[s.name].Round(time.Millisecond), s.p.since(death))
		if took[s.name] > 15*time.Second {
			t.Errorf("%s: a 307 went to %s %v after it broke, want none after 15 s", s.name, mirror, took[s.name])
		}
		if n := s.p.since(logged.Add(200 * time.Millisecond))[mirror]; n > 0 {
			t.Errorf("%s: %d 307s to %s after it logged the mirror out of rotation", s.name, n, mirror)
		}
	}
	return took
}

// broughtBack waits until s logs mirror back in rotation after the configured number of
// good probes, and sends 307s there again.
func broughtBack(t *testing.T, s *probedServer, mirror string, successes int) {
	t.Helper()
	before := countLines(s.srv.proc.Log, backLine(mirror))
	waitUntil(t, 60*time.Second, s.name+" bringing "+mirror+" back", func() bool {
		return countLines(s.srv.proc.Log, backLine(mirror)) > before
	}, s.srv.proc.Log)
	b, _ := os.ReadFile(s.srv.proc.Log)
	var line string
	for l := range strings.SplitSeq(string(b), "\n") {
		if strings.Contains(l, backLine(mirror)) {
			line = l
		}
	}
	if !strings.Contains(line, fmt.Sprintf(" successes=%d ", successes)) {
		t.Errorf("%s brought %s back: %q, want after %d good probes", s.name, mirror, line, successes)
	}
	back := time.Now()
	waitUntil(t, 10*time.Second, "a 307 to "+mirror, func() bool { return s.p.since(back)[mirror] > 0 }, s.srv.proc.Log)
}

// TestMirrorHealth: a region (DE) with two nginx mirrors and an origin; redirectors probing
// the mirrors (one with short probe intervals, one with the defaults), polled without pause
// through a CDN edge for a DE client. A mirror whose nginx stops, one answering 503 and one
// answering 404 for its probe blob are each out of rotation within 15 s (the time from its
// death to its last 307 is logged), and real clients' pulls started afterwards succeed from
// the other mirror; a mirror restarted comes back after the configured good probes; with
// every mirror down the origin serves.
func TestMirrorHealth(t *testing.T) {
	needPeers(t)
	peers.CleanHostResidue(t)
	refs := demo(t)
	n := &mirrorNetwork{clientFixture: &clientFixture{d: clientDigestsOf(t, refs), tree: filepath.Join(t.TempDir(), "tree")}}
	if err := os.MkdirAll(n.tree, 0o755); err != nil {
		t.Fatal(err)
	}
	n.origin = peers.StartNginx(t, n.tree)
	flag503 := filepath.Join(t.TempDir(), "answer-503")
	n.startMirrors(t, []*netMirror{
		{name: "de-a", country: "DE", bandwidth: 100, directives: "if (-f " + flag503 + ") {\n    return 503;\n}\n"},
		{name: "de-b", country: "DE", bandwidth: 100},
	}, []string{"de-a", "de-b"})
	src := peers.StartRegistry(t)
	src.Push(t, refs)
	generate(t, src.URL, n.tree, "--mirrors", n.mirrorsFile)
	src.Proc.Stop()
	n.sync(t, "de-a", "de-b")
	meta := n.crawl(t)
	for _, m := range meta.Mirrors {
		if !m.Healthy {
			t.Fatalf("mirror %s unhealthy after the crawl: %s", m.Name, m.Status)
		}
	}

	db := filepath.Join(t.TempDir(), "GeoIP2-Country.mmdb")
	if err := geoiptest.Write(db, netWorld); err != nil {
		t.Fatal(err)
	}
	const interval, successes = "500ms", 3
	geo := []string{"--geoip", db, "--trusted-proxy", "127.0.0.1/32"}
	fastSrv := clientServe(t, n.tree, nil, append(geo, "--probe-interval", interval, "--probe-timeout", "300ms",
		"--probe-failures", "3", "--probe-successes", fmt.Sprint(successes), "--replica", "e2e-fast")...)
	defaultSrv := clientServe(t, n.tree, nil, append(geo, "--replica", "e2e-default")...)
	regionalSrv := clientServe(t, n.tree, nil, append(geo, "--regional-manifests", "--probe-interval", interval, "--probe-timeout", "300ms",
		"--probe-failures", "3", "--probe-successes", fmt.Sprint(successes), "--replica", "e2e-regional")...)
	edge := &peers.Edge{Upstream: strings.Replace(fastSrv.Host, "localhost", "127.0.0.1", 1), ClientAddr: netClientAddr(t, "DE")}
	regionalEdge := &peers.Edge{Upstream: strings.Replace(regionalSrv.Host, "localhost", "127.0.0.1", 1), ClientAddr: netClientAddr(t, "DE")}
	peers.StartEdges(t, []*peers.Edge{edge, regionalEdge})
	n.startClients(t)

	blob := n.d.fedoraAMD64Blobs[len(n.d.fedoraAMD64Blobs)-1]
	fast := &probedServer{"fast probes (interval " + interval + ", 3 failures)", fastSrv, n.poll(t, clientHTTP(edge.Endpoint, false), edge.Endpoint.URL(), "", "fedora", blob)}
	dflt := &probedServer{"default probes", defaultSrv, n.poll(t, clientHTTP(defaultSrv.Endpoint, false), defaultSrv.URL(), netClientAddr(t, "DE"), "fedora", blob)}
	regional := &probedServer{"regional manifests, fast probes", regionalSrv, n.poll(t, clientHTTP(regionalEdge.Endpoint, false), regionalEdge.Endpoint.URL(), "", "fedora", blob)}
	named := func(urls map[string][]string) []string { // the mirrors the urls name
		var names []string
		for _, us := range urls {
			for _, u := range us {
				if name := n.whose(u); !slices.Contains(names, name) {
					names = append(names, name)
				}
			}
		}
		slices.Sort(names)
		return names
	}
	if _, _, urls := n.variant(t, regionalEdge.Endpoint, "fedora/toolbox", "42"); !slices.Equal(named(urls), []string{"de-a", "de-b", "origin"}) {
		t.Fatalf("the DE variant's urls name %v, want de-a, de-b and the origin", named(urls))
	}
	time.Sleep(time.Second)
	for _, s := range []*probedServer{fast, dflt} {
		if got := slices.Sorted(maps.Keys(s.p.since(time.Time{}))); !slices.Equal(got, []string{"de-a", "de-b"}) {
			t.Fatalf("%s: 307s to %v with both mirrors up, want to de-a and de-b", s.name, got)
		}
	}

	t.Run("nginx-stopped", func(t *testing.T) {
		// Wait for the default prober's first probes (within one interval of its start).
		waitUntil(t, 10*time.Second, "the default prober's first probes", func() bool {
			return len(n.mirror("de-a").nginx.AccessLog()) > 0
		}, defaultSrv.proc.Log)
		took := takenOut(t, "de-a", n.mirror("de-a").nginx.Stop, fast, dflt, regional)
		t.Logf("MEASURED: death of de-a's nginx to its last 307: %v with --probe-interval %s, %v with the defaults",
			took[fast.name].Round(time.Millisecond), interval, took[dflt.name].Round(time.Millisecond))
		dflt.p.close()
		defaultSrv.proc.Stop()

		ep := edge.Endpoint
		d := n.d
		for _, p := range []struct {
			name string
			pull func(t *testing.T)
		}{
			{"podman", func(t *testing.T) { n.podman.Pull(t, ep, "fedora:42", d.fedora) }},
			{"docker", func(t *testing.T) { n.docker.Pull(t, ep, "fedora:42", d.fedora) }},
			{"skopeo", func(t *testing.T) { n.skopeo.CopyDir(t, ep, "fedora:42", d.fedoraAMD64) }},
			{"crane", func(t *testing.T) { n.crane.Pull(t, ep, "fedora:42", d.fedora) }},
		} {
			t.Run(p.name, func(t *testing.T) { n.fromMirrors(t, []string{"de-b"}, d.fedoraAMD64Blobs, p.pull) })
		}
		// Regional mode: the variant names de-b and the origin only; podman takes the blobs
		// from its urls.
		t.Run("regional-variant", func(t *testing.T) {
			vd, _, urls := n.variant(t, regionalEdge.Endpoint, "fedora/toolbox", "42")
			if !slices.Equal(named(urls), []string{"de-b", "origin"}) {
				t.Errorf("with de-a out, the DE variant's urls name %v, want de-b and the origin", named(urls))
			}
			var blobs []string // those podman does not hold yet
			for b := range urls {
				if !slices.Contains(d.fedoraAMD64Blobs, b) {
					blobs = append(blobs, b)
				}
			}
			n.fromMirrors(t, []string{"de-b"}, blobs, func(t *testing.T) {
				n.podman.Pull(t, regionalEdge.Endpoint, "fedora/toolbox:42", vd)
			})
		})
	})

	t.Run("restarted", func(t *testing.T) {
		n.mirror("de-a").nginx.Start()
		broughtBack(t, fast, "de-a", successes)
	})

	t.Run("answers-503", func(t *testing.T) {
		took := takenOut(t, "de-a", func() {
			if err := os.WriteFile(flag503, nil, 0o644); err != nil {
				t.Fatal(err)
			}
		}, fast)
		t.Logf("MEASURED: de-a answering 503 to its last 307: %v", took[fast.name].Round(time.Millisecond))
		if countLines(fastSrv.proc.Log, outLine("de-a")+`url=`+n.mirror("de-a").url+` reason="3 probes failed: HTTP 503 for `) == 0 {
			t.Errorf("the reason logged does not name HTTP 503:\n%s", peers.Tail(fastSrv.proc.Log, 20))
		}
		n.crane.Pull(t, edge.Endpoint, "fedora:42", n.d.fedora)
		if err := os.Remove(flag503); err != nil {
			t.Fatal(err)
		}
		broughtBack(t, fast, "de-a", successes)
	})

	t.Run("probe-blob-404", func(t *testing.T) {
		// The probe blob: the smallest blob of the generation the mirror holds.
		var probe layout.Digest
		for d, b := range meta.Blobs {
			if probe.IsZero() || b.Size < meta.Blobs[probe].Size || b.Size == meta.Blobs[probe].Size && d.String() < probe.String() {
				probe = d
			}
		}
		p := filepath.Join(n.mirror("de-b").root, filepath.FromSlash(layout.BlobPath(probe)))
		aside := filepath.Join(t.TempDir(), "lost-blob")
		took := takenOut(t, "de-b", func() {
			if err := os.Rename(p, aside); err != nil {
				t.Fatal(err)
			}
		}, fast)
		t.Logf("MEASURED: de-b answering 404 for %s to its last 307: %v", probe, took[fast.name].Round(time.Millisecond))
		if want := "missing " + probe.String() + ": HTTP 404"; countLines(fastSrv.proc.Log, want) == 0 {
			t.Errorf("the reason logged does not say %q:\n%s", want, peers.Tail(fastSrv.proc.Log, 20))
		}
		if err := os.Rename(aside, p); err != nil {
			t.Fatal(err)
		}
		broughtBack(t, fast, "de-b", successes)
	})

	t.Run("all-down-origin", func(t *testing.T) {
		beforeA := countLines(fastSrv.proc.Log, outLine("de-a"))
		takenOut(t, "de-b", func() {
			n.mirror("de-a").nginx.Stop()
			n.mirror("de-b").nginx.Stop()
		}, fast)
		waitUntil(t, 30*time.Second, "de-a out of rotation", func() bool { return countLines(fastSrv.proc.Log, outLine("de-a")) > beforeA }, fastSrv.proc.Log)
		after := time.Now()
		time.Sleep(500 * time.Millisecond)
		if got := fast.p.since(after); len(got) != 1 || got["origin"] == 0 {
			t.Errorf("every mirror down: answers %v, want 307s to the origin only", got)
		}
		if countLines(fastSrv.proc.Log, `msg="region falls back: its mirrors are out" region=DE route=origin `) != 1 {
			t.Errorf("the fall back to the origin is not logged once:\n%s", peers.Tail(fastSrv.proc.Log, 20))
		}
		path := "/" + layout.BlobPath(layout.MustDigest(blob))
		before := n.origin.Requests(path)
		n.crane.Pull(t, edge.Endpoint, "fedora:42", n.d.fedora)
		if n.origin.Requests(path) <= before {
			t.Errorf("crane's pull with every mirror down did not fetch %s from the origin (its access log)", blob)
		}
	})
}
