package redirector

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/regmirror/regmirror/layout"
)

var errProbe = errors.New("down: connection refused")

// testTracker is a tracker of one mirror, "m", with opts (defaults applied), at time zero.
func testTracker(t *testing.T, opts HealthOptions, rnd func() uint64) (*tracker, time.Time) {
	t.Helper()
	opts.Client = http.DefaultClient // never used: the tests record results themselves
	if err := opts.defaults(); err != nil {
		t.Fatal(err)
	}
	tr := newTracker(opts, rnd)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tr.setTargets([]probeTarget{{name: "m", url: "http://m.example/"}}, t0)
	return tr, t0
}

// The state machine: out after Failures failures in a row, back after Successes successes in
// a row, and a mirror whose probes alternate stays where it is.
func TestHealthStateMachine(t *testing.T) {
	for _, tc := range []struct {
		name      string
		probes    string // o: probe ok, x: probe failed
		want      string // after each probe: U up, D down
		wantTrans int
	}{
		{"healthy", "oooooo", "UUUUUU", 0},
		{"two failures are not enough", "xxoxxo", "UUUUUU", 0},
		{"three failures take it out", "xxx", "UUD", 1},
		{"out stays out on a failure", "xxxxxx", "UUDDDD", 1},
		{"back after five successes", "xxxooooo", "UUDDDDDU", 2},
		{"four successes are not enough", "xxxooooxoooo", "UUDDDDDDDDDD", 1},
		{"flapping stays in", "xoxoxoxoxoxo", "UUUUUUUUUUUU", 0},
		{"flapping stays out", "xxxoxoxoxoxo", "UUDDDDDDDDDD", 1},
		{"out, back, out again", "xxxoooooxxx", "UUDDDDDUUUD", 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr, now := testTracker(t, HealthOptions{}, seeded(1))
			trans := 0
			var got strings.Builder
			for _, p := range tc.probes {
				next := tr.nextDue(now)
				if d := next.Sub(now); d > time.Duration(1.2*float64(DefaultProbeInterval)) {
					t.Fatalf("next probe %v after the previous one, want at most 1.2 × %v", d, DefaultProbeInterval)
				}
				now = next
				ms := tr.due(now)
				if len(ms) != 1 {
					t.Fatalf("%d mirrors due, want 1", len(ms))
				}
				var err error
				if p == 'x' {
					err = errProbe
				}
				if tr.record(ms[0], err, now) != nil {
					trans++
				}
				if _, out := tr.down()["m"]; out {
					got.WriteByte('D')
				} else {
					got.WriteByte('U')
				}
			}
			if got.String() != tc.want || trans != tc.wantTrans {
				t.Errorf("states %s with %d transitions, want %s with %d", got.String(), trans, tc.want, tc.wantTrans)
			}
			if down := tr.down(); len(down) > 0 && !strings.Contains(down["m"], "connection refused") {
				t.Errorf("reason %q, want the last failure", down["m"])
			}
		})
	}
}

// simulateDeath drives a tracker with the default options through its probe schedule, with
// every probe of a live mirror taking no time and every probe after death taking the whole
// timeout (a mirror that hangs: the worst case), and returns how long after death the mirror
// was taken out.
func simulateDeath(t *testing.T, rnd func() uint64, deathAfterProbe int, offset time.Duration) time.Duration {
	t.Helper()
	tr, _ := testTracker(t, HealthOptions{}, rnd)
	var now, death time.Time
	probes := 0
	type inflight struct {
		m   *mirrorHealth
		end time.Time
		err error
	}
	var pending []inflight
	for range 1000 {
		// The next event: a probe ending, or the next one due.
		next := tr.nextDue(now)
		if len(pending) > 0 && (next.IsZero() || pending[0].end.Before(next)) {
			now = pending[0].end
			p := pending[0]
			pending = pending[1:]
			if tr.record(p.m, p.err, now) != nil {
				return now.Sub(death)
			}
			continue
		}
		now = next
		for _, m := range tr.due(now) {
			probes++
			if probes == deathAfterProbe {
				death = now.Add(offset)
			}
			if !death.IsZero() && !now.Before(death) {
				pending = append(pending, inflight{m, now.Add(tr.opts.Timeout), errProbe})
			} else {
				pending = append(pending, inflight{m, now, nil})
			}
		}
	}
	t.Fatal("the mirror was never taken out")
	return 0
}

// With the default settings a mirror that dies is out within 15 s, whatever the jitter and
// wherever between two probes it dies, even when it hangs (each probe takes the whole
// timeout).
func TestHealthDownWithin15sByDefault(t *testing.T) {
	maxRnd := func() uint64 { return ^uint64(0) } // every wait the longest: 1.2 × interval
	var worst time.Duration
	for _, tc := range []struct {
		name string
		rnd  func() uint64
	}{
		{"longest jitter", maxRnd},
		{"shortest jitter", func() uint64 { return 0 }},
		{"random jitter", seeded(7)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, offset := range []time.Duration{time.Millisecond, time.Second, 2 * time.Second, 3*time.Second + 500*time.Millisecond} {
				got := simulateDeath(t, tc.rnd, 4, offset)
				worst = max(worst, got)
				if got > 15*time.Second {
					t.Errorf("died %v after a probe started: out after %v, want at most 15 s", offset, got)
				}
			}
		})
	}
	// The bound documented in health.go: Failures × 1.2 × Interval + Timeout.
	bound := time.Duration(DefaultProbeFailures)*time.Duration(1.2*float64(DefaultProbeInterval)) + DefaultProbeTimeout
	if worst > bound {
		t.Errorf("worst case %v, above the documented bound %v", worst, bound)
	}
	t.Logf("default settings (interval %v ±20%%, timeout %v, %d failures): out at most %v after death (bound %v); %.0f probes per minute per mirror",
		DefaultProbeInterval, DefaultProbeTimeout, DefaultProbeFailures, worst, bound, HealthOptions{}.ProbeLoad())
}

func TestHealthOptionsRefused(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts HealthOptions
	}{
		{"timeout longer than the interval", HealthOptions{Interval: time.Second, Timeout: 2 * time.Second}},
		{"timeout above 0.8 × the interval", HealthOptions{Interval: time.Second, Timeout: 900 * time.Millisecond}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.opts.defaults(); err == nil {
				t.Errorf("options %+v accepted", tc.opts)
			}
		})
	}
}

// The probe blob is the smallest the mirror's generation holds.
func TestProbeTargets(t *testing.T) {
	d := func(c byte) layout.Digest { return layout.MustDigest("sha256:" + strings.Repeat(string(c), 64)) }
	m := layout.NewMeta(3)
	m.Blobs[d('a')] = &layout.Blob{Size: 100, Since: 1}
	m.Blobs[d('b')] = &layout.Blob{Size: 50, Since: 2}
	m.Blobs[d('c')] = &layout.Blob{Size: 50, Since: 3}
	m.Blobs[d('d')] = &layout.Blob{Size: 10, Since: 3}
	m.Blobs[d('e')] = &layout.Blob{Size: 50, Since: 1}
	// Retiring blobs, the smallest: a mirror a generation ahead may have deleted them.
	m.Blobs[d('f')] = &layout.Blob{Size: 1, Since: 1, Retired: time.Now()}
	m.Blobs[d('0')] = &layout.Blob{Size: 1, Since: 3, Retired: time.Now()}
	usable := map[string]*mirrorEntry{
		"g1": {name: "g1", url: "http://g1/", generation: 1},
		"g2": {name: "g2", url: "http://g2/", generation: 2},
		"g3": {name: "g3", url: "http://g3/", generation: 3},
		"g9": {name: "g9", url: "http://g9/", generation: 9}, // ahead of the tree: held at 3
	}
	got := map[string]layout.Digest{}
	for _, p := range probeTargets(m, usable) {
		got[p.name] = p.blob
	}
	want := map[string]layout.Digest{"g1": d('e'), "g2": d('b'), "g3": d('d'), "g9": d('d')}
	for name, w := range want {
		if got[name] != w {
			t.Errorf("mirror %s probed with %s, want %s", name, got[name], w)
		}
	}
}

// fakeProbes gives the test the tracker's mirrors by name, to record results as if probed.
func fakeProbes(t *testing.T, s *Server) map[string]*mirrorHealth {
	t.Helper()
	ms := map[string]*mirrorHealth{}
	for _, m := range s.health.due(time.Now().Add(time.Hour)) {
		ms[m.target.name] = m
	}
	return ms
}

// Mirrors out of rotation get no 307; a region whose own mirrors are all out falls back to
// its next tier, then the global region, then the origin; each decision is logged once and
// shown by Health; mirrors back take their share again.
func TestHealthReroutes(t *testing.T) {
	dir, dm := newTestTree(t, func(m *layout.Meta, _ *demo) {
		addMirrors(m, 1)
		m.Origin = "https://origin.example/"
	})
	geo := filepath.Join(t.TempDir(), "geo.mmdb")
	writeFile(t, geo, testGeoDB(t, "country"))
	var logs syncBuffer
	s := newServer(t, Options{Tree: dir, GeoIP: geo, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	blob := "/v2/fedora/toolbox/blobs/" + dm.toolboxLayer.String()
	german := "81.2.69.142:5555"
	ms := fakeProbes(t, s)
	fail := func(names ...string) { takeOut(s, ms, names...) }
	pass := func(names ...string) { bringBack(s, ms, names...) }
	where := func() map[string]int {
		seen := map[string]int{}
		for range 200 {
			w := do(s, "GET", blob, german, nil)
			if w.Code != http.StatusTemporaryRedirect {
				t.Fatalf("status %d: %s", w.Code, w.Body)
			}
			seen[mirrorOf(t, w, dm.toolboxLayer)]++
		}
		return seen
	}
	route := func(region string) RegionRoute {
		for _, r := range s.Health().Regions {
			if r.Region == region {
				return r
			}
		}
		t.Fatalf("no route for region %s in %+v", region, s.Health().Regions)
		return RegionRoute{}
	}
	steps := []struct {
		name      string
		do        func()
		want      []string
		route     string
		fallback  bool
		reasonHas string
	}{
		{"all up", func() {}, []string{"de1.example", "de2.example"}, "tier 1", false, ""},
		{"de1 out", func() { fail("de1.example") }, []string{"de2.example"}, "tier 1", false, ""},
		{"both German mirrors out: France", func() { fail("de2.example") }, []string{"fr.example"}, "tier 2", true, "de2.example: 3 probes failed"},
		{"Europe out: the rest of the world", func() { fail("fr.example") }, []string{"us.example", "jp.example"}, "tier 3", true, "fr.example"},
		{"every mirror out: the origin", func() { fail("us.example", "jp.example") }, []string{"origin.example"}, "origin", true, "jp.example"},
		{"de2 back", func() { pass("de2.example") }, []string{"de2.example"}, "tier 1", false, ""},
		{"all back", func() { pass("de1.example", "fr.example", "us.example", "jp.example") }, []string{"de1.example", "de2.example"}, "tier 1", false, ""},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			st.do()
			seen := where()
			for m := range seen {
				if !slices.Contains(st.want, m) {
					t.Errorf("sent to %s, want one of %v (seen %v)", m, st.want, seen)
				}
			}
			if len(seen) != len(st.want) {
				t.Errorf("seen %v, want every one of %v", seen, st.want)
			}
			r := route("DE")
			if r.Route != st.route || r.Fallback != st.fallback || !strings.Contains(r.Reason, st.reasonHas) {
				t.Errorf("route of DE %+v, want %s (fallback %v) with a reason naming %q", r, st.route, st.fallback, st.reasonHas)
			}
		})
	}
	// Each region's change is logged once: DE fell back to tiers 2, 3, the origin, then came
	// back.
	got := strings.Count(logs.String(), "region falls back: its mirrors are out\" region=DE ")
	if got != 3 {
		t.Errorf("%d log lines of DE falling back, want 3:\n%s", got, logs.String())
	}
	if got := strings.Count(logs.String(), "mirror out of rotation"); got != 5 {
		t.Errorf("%d log lines of a mirror going out, want 5", got)
	}
	if got := strings.Count(logs.String(), "region back on its mirrors\" region=DE "); got != 1 {
		t.Errorf("%d log lines of DE coming back, want 1", got)
	}
	metrics := scrape(t, s)
	for _, want := range []string{
		`regmirror_mirror_transitions_total{mirror="de1.example",to="down"} 1`,
		`regmirror_mirror_transitions_total{mirror="de1.example",to="up"} 1`,
		`regmirror_mirror_up{mirror="de1.example"} 1`,
		`regmirror_mirror_probes_total{mirror="de1.example",result="failed"} 3`,
		`regmirror_region_fallbacks_total{to="origin"} `,
		`regmirror_region_fallbacks_total{to="tier"} `,
		`regmirror_regions_falling_back 0`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	h := s.Health()
	if !h.Probing || len(h.Mirrors) != 5 || h.ProbesPerMinute != 20 {
		t.Errorf("Health: probing %v, %d mirrors, %v probes per minute; want true, 5 (the usable ones), 20", h.Probing, len(h.Mirrors), h.ProbesPerMinute)
	}
}

// Without an origin, every mirror out means the blob is served from the local tree.
func TestHealthAllOutLocal(t *testing.T) {
	dir, dm := newTestTree(t, func(m *layout.Meta, _ *demo) { addMirrors(m, 1) })
	s := newServer(t, Options{Tree: dir})
	ms := fakeProbes(t, s)
	takeOut(s, ms, slices.Collect(maps.Keys(ms))...)
	w := do(s, "GET", "/v2/fedora/toolbox/blobs/"+dm.toolboxLayer.String(), "81.2.69.142:5555", nil)
	if w.Code != http.StatusOK || w.Header().Get("Location") != "" {
		t.Errorf("every mirror out, no origin: %d, Location %q; want 200 from the tree", w.Code, w.Header().Get("Location"))
	}
	for _, r := range s.Health().Regions {
		if r.Route != "local" || !r.Fallback {
			t.Errorf("region %s: %+v, want local (fallback)", r.Region, r)
		}
	}
}

// The real prober against mirrors on loopback: one answering, one answering 503, one 404 for
// the probe blob, one refusing HEAD (probed with a ranged GET), one gone. Each request names
// regmirror and the replica.
func TestHealthProber(t *testing.T) {
	var mu sync.Mutex
	agents := map[string]bool{}
	serve := func(h http.HandlerFunc) *httptest.Server {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			agents[r.UserAgent()] = true
			mu.Unlock()
			h(w, r)
		}))
		t.Cleanup(srv.Close)
		return srv
	}
	var probeBlob layout.Digest
	var probeBody []byte
	ok := func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasSuffix(r.URL.Path, layout.BlobPath(probeBlob)) {
			http.NotFound(w, r)
			return
		}
		http.ServeContent(w, r, "", time.Time{}, strings.NewReader(string(probeBody)))
	}
	mirrors := map[string]*httptest.Server{
		"good":  serve(ok),
		"error": serve(func(w http.ResponseWriter, r *http.Request) { http.Error(w, "busy", http.StatusServiceUnavailable) }),
		"lost":  serve(http.NotFound),
		"nohead": serve(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodHead {
				w.WriteHeader(http.StatusMethodNotAllowed)
				return
			}
			ok(w, r)
		}),
	}
	gone := httptest.NewServer(http.NotFoundHandler())
	gone.Close()
	dir, _ := newTestTree(t, func(m *layout.Meta, dm *demo) {
		m.Mirrors = nil
		for name, srv := range mirrors {
			m.Mirrors = append(m.Mirrors, &layout.Mirror{Name: name, URL: srv.URL + "/", Country: "DE", Enabled: true, Healthy: true, Generation: 1, Checked: time.Now()})
		}
		m.Mirrors = append(m.Mirrors, &layout.Mirror{Name: "gone", URL: gone.URL + "/", Country: "DE", Enabled: true, Healthy: true, Generation: 1, Checked: time.Now()})
		m.Regions = map[string]*layout.Region{"global": {Tiers: [][]string{{"good", "error", "lost", "nohead", "gone"}}, VariantSet: -1}}
		// the probe blob: the smallest
		for d, b := range m.Blobs {
			if probeBlob.IsZero() || b.Size < m.Blobs[probeBlob].Size || b.Size == m.Blobs[probeBlob].Size && d.String() < probeBlob.String() {
				probeBlob = d
			}
		}
		probeBody = dm.blobs[probeBlob]
	})
	s := newServer(t, Options{Tree: dir, Health: HealthOptions{Interval: 50 * time.Millisecond, Timeout: 30 * time.Millisecond,
		Failures: 2, Successes: 2, UserAgent: "regmirror-serve-probe/test (replica r1)"}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.runProbes(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	want := map[string]bool{"good": true, "nohead": true, "error": false, "lost": false, "gone": false}
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := map[string]bool{}
		probed := true
		for _, m := range s.Health().Mirrors {
			got[m.Name] = m.Up
			probed = probed && m.LastResult != ""
		}
		if probed && fmt.Sprint(got) == fmt.Sprint(want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("mirrors up %v, want %v\n%+v", got, want, s.Health().Mirrors)
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, m := range s.Health().Mirrors {
		t.Logf("%s: up %v, %s", m.Name, m.Up, m.Reason)
		for name, has := range map[string]string{"error": "HTTP 503", "lost": "missing " + probeBlob.String() + ": HTTP 404", "gone": "down: "} {
			if m.Name == name && !strings.Contains(m.Reason, has) {
				t.Errorf("%s: reason %q, want it to contain %q", name, m.Reason, has)
			}
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(agents) != 1 || !agents["regmirror-serve-probe/test (replica r1)"] {
		t.Errorf("User-Agents %v, want only the configured one", agents)
	}
}

// syncBuffer is a strings.Builder safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func scrape(t *testing.T, s *Server) string {
	t.Helper()
	w := do(s.MetricsHandler(), "GET", "/metrics", "", nil)
	b, err := io.ReadAll(w.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// takeOut records failed probes of the named mirrors until they are out of rotation.
func takeOut(s *Server, ms map[string]*mirrorHealth, names ...string) {
	for _, n := range names {
		for range s.opts.Health.Failures {
			s.probed(ms[n], errProbe)
			ms[n].busy = true // as due would
		}
	}
}

func bringBack(s *Server, ms map[string]*mirrorHealth, names ...string) {
	for _, n := range names {
		for range s.opts.Health.Successes {
			s.probed(ms[n], nil)
			ms[n].busy = true
		}
	}
}

// Regional mode with a mirror out: a variant by tag names only the mirrors in (its index
// points at children rendered the same way, which resolve by digest, on this replica and on
// another with the same mirrors out that never served the index); cached variants naming the
// mirror are dropped; once it is back the recorded variants are served again, and a variant
// rendered during the outage still resolves by digest for a client mid-pull.
func TestHealthRegionalVariants(t *testing.T) {
	var meta *layout.Meta
	dir, dm := newTestTree(t, func(m *layout.Meta, _ *demo) {
		addMirrors(m, 1)
		addVariants(t, m, 2)
		meta = m
	})
	de := http.Header{"Cf-Ipcountry": {"DE"}}
	opts := Options{Tree: dir, RegionalManifests: true, CountryHeader: "CF-IPCountry", TrustedProxies: trustAll}
	s, other := newServer(t, opts), newServer(t, opts)
	get := func(s *Server, path string) *httptest.ResponseRecorder {
		t.Helper()
		w := do(s, "GET", path, "10.0.0.1:1", de)
		if w.Code != http.StatusOK {
			t.Fatalf("GET %s: %d %s", path, w.Code, w.Body)
		}
		if got, want := w.Header().Get("Docker-Content-Digest"), digestOf(w.Body.Bytes()).String(); got != want {
			t.Fatalf("GET %s: Docker-Content-Digest %s, body hashes to %s", path, got, want)
		}
		return w
	}
	recorded := renderedVariant(t, meta, 0, dm.fedoraIndex)
	recordedChild := renderedVariant(t, meta, 0, dm.fedoraAMD64)
	if w := get(s, "/v2/fedora/manifests/42"); !bytes.Equal(w.Body.Bytes(), recorded.Data) {
		t.Fatalf("all mirrors in: the German variant is not the recorded one")
	}
	get(s, "/v2/fedora/manifests/"+recordedChild.Digest.String()) // cached too

	probes := fakeProbes(t, s)
	takeOut(s, probes, "de2.example")
	takeOut(other, fakeProbes(t, other), "de2.example")
	if s.variantCache.get(recorded.Digest) != nil || s.variantCache.get(recordedChild.Digest) != nil {
		t.Error("cached variants naming de2.example were not dropped when it went out")
	}
	index := get(s, "/v2/fedora/manifests/42").Body.Bytes()
	if bytes.Contains(index, []byte("de2.example")) || bytes.Equal(index, recorded.Data) {
		t.Fatalf("German index variant with de2 out is the recorded one or names it: %s", index)
	}
	var idx struct {
		Manifests []struct {
			Digest string `json:"digest"`
		} `json:"manifests"`
	}
	check(t, json.Unmarshal(index, &idx))
	for _, c := range idx.Manifests {
		for name, srv := range map[string]*Server{"this replica": s, "another replica": other} {
			child := get(srv, "/v2/fedora/manifests/"+c.Digest).Body.Bytes()
			if bytes.Contains(child, []byte("de2.example")) || !bytes.Contains(child, []byte("https://de1.example/pub/blobs/")) {
				t.Errorf("%s: child %s names de2 or not de1: %s", name, c.Digest, child)
			}
		}
	}
	if w := do(s, "GET", "/v2/fedora/httpd/manifests/"+idx.Manifests[0].Digest, "10.0.0.1:1", de); w.Code != http.StatusNotFound {
		t.Errorf("a variant of fedora's by digest in fedora/httpd: %d, want 404", w.Code)
	}

	bringBack(s, probes, "de2.example")
	if w := get(s, "/v2/fedora/manifests/42"); !bytes.Equal(w.Body.Bytes(), recorded.Data) {
		t.Errorf("de2 back: the German variant is not the recorded one")
	}
	get(s, "/v2/fedora/manifests/"+idx.Manifests[0].Digest) // mid-pull: still there
}

// The status page shows the probes' view: each mirror in or out with the reason, and the
// regions falling back.
func TestHealthOnStatusPage(t *testing.T) {
	dir, _ := newTestTree(t, func(m *layout.Meta, _ *demo) { addMirrors(m, 1) })
	s := newServer(t, Options{Tree: dir})
	takeOut(s, fakeProbes(t, s), "de1.example", "de2.example")
	w := do(s, "GET", "/status.json", "192.0.2.9:1", nil)
	var got struct {
		Probes statusProbes `json:"probes"`
	}
	check(t, json.Unmarshal(w.Body.Bytes(), &got))
	up := map[string]bool{}
	for _, m := range got.Probes.Mirrors {
		up[m.Name] = m.Up
		if !m.Up && !strings.Contains(m.Reason, "3 probes failed: down: connection refused") {
			t.Errorf("mirror %s out with reason %q", m.Name, m.Reason)
		}
	}
	if want := map[string]bool{"de1.example": false, "de2.example": false, "fr.example": true, "us.example": true, "jp.example": true}; fmt.Sprint(up) != fmt.Sprint(want) {
		t.Errorf("status.json probes: %v, want %v", up, want)
	}
	if i := slices.IndexFunc(got.Probes.Fallbacks, func(r RegionRoute) bool { return r.Region == "DE" }); i < 0 || got.Probes.Fallbacks[i].Route != "tier 2" {
		t.Errorf("status.json fallbacks %+v, want DE on tier 2", got.Probes.Fallbacks)
	}
	page := do(s, "GET", "/", "192.0.2.9:1", nil).Body.String()
	for _, want := range []string{`<tr class="probe" data-name="de1.example"><td>de1.example</td><td><span class="bad">out</span>: 3 probes failed`, `<td>DE</td><td class="warn">tier 2</td>`} {
		if !strings.Contains(page, want) {
			t.Errorf("status page lacks %q", want)
		}
	}
}
