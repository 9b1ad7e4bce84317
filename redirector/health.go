package redirector

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/regmirror/regmirror/layout"
)

// Fast health: each server probes every mirror it may send clients to (the mirrors the last
// crawl found usable), every Interval with ±20% jitter, and takes a mirror out of rotation
// after Failures consecutive failed probes, back after Successes consecutive good ones. A
// probe is the crawl's blob check (layout.BlobCheck: HEAD, or a 1-byte ranged GET where HEAD
// is refused) of one small blob the mirror holds per the crawl: the smallest blob of the
// generation it holds, the lowest digest among equals. A connection error, a timeout, a 5xx,
// a 404, a wrong size or a compressed answer is a failure.
//
// The crawl stays the authority on which mirrors are candidates and which generation each
// holds: probes only take candidates out and bring them back. A mirror that comes back keeps
// the generation the crawl recorded.
//
// Down within 15 s: a probe starts every Interval×[0.8, 1.2] after the previous one started
// (the timeout is shorter than 0.8×Interval, so probes of one mirror never overlap). A mirror
// that dies just after a good probe fails its next Failures probes; the last of them ends at
// most Failures×1.2×Interval + Timeout after its death: 3×3.6 s + 2 s = 12.8 s with the
// defaults, as long as the probes of all mirrors fit in the concurrency (mirrors ÷
// Concurrency × Timeout below Interval). The load on a mirror is 60 s ÷ Interval probes per
// minute per replica: 20 with the defaults, each a HEAD of a small file.

// Defaults of HealthOptions.
const (
	DefaultProbeInterval    = 3 * time.Second
	DefaultProbeTimeout     = 2 * time.Second
	DefaultProbeFailures    = 3
	DefaultProbeSuccesses   = 5
	DefaultProbeConcurrency = 16
	// probeJitter spreads probes: each waits Interval × [1-probeJitter, 1+probeJitter].
	probeJitter = 0.2
)

// HealthOptions configure the health probes.
type HealthOptions struct {
	// Off turns probing off: mirrors are in rotation exactly as the last crawl found them.
	Off bool
	// Interval between two probes of a mirror, ±20% (DefaultProbeInterval when 0).
	Interval time.Duration
	// Timeout bounds one probe (DefaultProbeTimeout when 0); shorter than 0.8 × Interval.
	Timeout time.Duration
	// Failures is how many consecutive failed probes take a mirror out (DefaultProbeFailures
	// when 0); Successes how many consecutive good ones bring it back (DefaultProbeSuccesses).
	Failures, Successes int
	// Concurrency bounds the probes in flight (DefaultProbeConcurrency when 0).
	Concurrency int
	// UserAgent of the probes; it should name regmirror and the replica.
	UserAgent string
	// Client makes the probes; nil for a client of the prober's own.
	Client *http.Client
	// Now is the prober's clock (time.Now when nil); tests inject theirs.
	Now func() time.Time
}

func (o *HealthOptions) defaults() error {
	if o.Interval <= 0 {
		o.Interval = DefaultProbeInterval
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultProbeTimeout
	}
	if o.Failures <= 0 {
		o.Failures = DefaultProbeFailures
	}
	if o.Successes <= 0 {
		o.Successes = DefaultProbeSuccesses
	}
	if o.Concurrency <= 0 {
		o.Concurrency = DefaultProbeConcurrency
	}
	if o.UserAgent == "" {
		o.UserAgent = "regmirror-serve-probe"
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Off {
		return nil
	}
	if float64(o.Timeout) > (1-probeJitter)*float64(o.Interval) {
		return fmt.Errorf("probe timeout %v must be shorter than 0.8 × the probe interval %v", o.Timeout, o.Interval)
	}
	if o.Client == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.Proxy = nil // a mirror is probed directly, as clients reach it
		tr.MaxIdleConnsPerHost = 1
		tr.IdleConnTimeout = 2 * o.Interval
		tr.ResponseHeaderTimeout = o.Timeout
		o.Client = &http.Client{Transport: tr}
	}
	return nil
}

// ProbeLoad is the number of probes a mirror receives per minute from one server.
func (o HealthOptions) ProbeLoad() float64 {
	if o.Off {
		return 0
	}
	if o.Interval <= 0 {
		o.Interval = DefaultProbeInterval
	}
	return float64(time.Minute) / float64(o.Interval)
}

// probeTarget is what a server probes on one usable mirror.
type probeTarget struct {
	name, url string
	blob      layout.Digest
	size      int64
}

// probeTargets chooses the blob each usable mirror is probed with: the smallest blob of the
// generation the mirror holds (lowest digest among equals) among the referenced (not
// retiring) blobs of its subsets (its content); a mirror holding none is not probed. It costs one pass over the blobs per
// distinct content, whatever the number of mirrors.
func probeTargets(m *layout.Meta, usable map[string]*mirrorEntry) []probeTarget {
	if len(usable) == 0 {
		return nil
	}
	type best struct {
		d    layout.Digest
		size int64
		ok   bool
	}
	better := func(a best, d layout.Digest, size int64) bool {
		return !a.ok || size < a.size || size == a.size && d.String() < a.d.String()
	}
	type choice struct {
		sinces []uint64
		prefix []best // prefix[i]: the best blob with Since <= sinces[i]
	}
	byContent := map[uint64]*choice{}
	choose := func(content uint64) *choice {
		if c := byContent[content]; c != nil {
			return c
		}
		bySince := map[uint64]best{}
		for d, b := range m.Blobs {
			// A retiring blob may already be gone from a mirror that synced a newer
			// generation, where its grace ended: probe only what the generation references.
			if b == nil || !b.Retired.IsZero() || !layout.Carries(content, b) {
				continue
			}
			if cur := bySince[b.Since]; better(cur, d, b.Size) {
				bySince[b.Since] = best{d, b.Size, true}
			}
		}
		c := &choice{sinces: make([]uint64, 0, len(bySince))}
		for s := range bySince {
			c.sinces = append(c.sinces, s)
		}
		slices.Sort(c.sinces)
		c.prefix = make([]best, len(c.sinces))
		for i, s := range c.sinces {
			b := bySince[s]
			if i > 0 && !better(c.prefix[i-1], b.d, b.size) {
				b = c.prefix[i-1]
			}
			c.prefix[i] = b
		}
		byContent[content] = c
		return c
	}
	var out []probeTarget
	for _, me := range usable {
		c := choose(me.content)
		gen := min(me.generation, m.Generation)
		i, found := slices.BinarySearch(c.sinces, gen)
		if !found {
			i--
		}
		if i < 0 {
			continue
		}
		b := c.prefix[i]
		out = append(out, probeTarget{name: me.name, url: me.url, blob: b.d, size: b.size})
	}
	slices.SortFunc(out, func(a, b probeTarget) int { return cmp.Compare(a.name, b.name) })
	return out
}

// MirrorHealth is what a server's probes say about one mirror.
type MirrorHealth struct {
	Name string `json:"name"`
	URL  string `json:"url"`
	// Probe is the URL probed.
	Probe string `json:"probe"`
	// Up: in rotation. A mirror is out after Failures consecutive failed probes, back after
	// Successes consecutive good ones.
	Up bool `json:"up"`
	// Reason says why the mirror is out ("3 probes failed: down: … connection refused"), or
	// is empty.
	Reason string `json:"reason,omitempty"`
	// Since is when the mirror last went out or came back (or was first probed).
	Since time.Time `json:"since"`
	// Failures and Successes are the current run of failed and good probes.
	Failures  int `json:"failures"`
	Successes int `json:"successes"`
	// LastProbe is when the last probe ended, LastResult "ok" or what failed.
	LastProbe  time.Time `json:"lastProbe,omitzero"`
	LastResult string    `json:"lastResult,omitempty"`
}

// RegionRoute is where a region's blob downloads go while mirrors are out.
type RegionRoute struct {
	Region string `json:"region"`
	// Route: "tier N" (N from 1, the region's own tiers in order), "global" (the global
	// region's mirrors), "origin" or "local" (the server's own tree).
	Route string `json:"route"`
	// Fallback: the route is not the one the crawl's data gives (mirrors are out).
	Fallback bool `json:"fallback"`
	// Reason names the mirrors out that the route passes over, with their reasons.
	Reason string `json:"reason,omitempty"`
}

// HealthStatus is a server's view of its mirrors' health, for a status page.
type HealthStatus struct {
	// Probing is false when the probes are off (--probe-interval 0).
	Probing   bool          `json:"probing"`
	Interval  time.Duration `json:"interval"`
	Timeout   time.Duration `json:"timeout"`
	Failures  int           `json:"failures"`
	Successes int           `json:"successes"`
	// ProbesPerMinute is the load on each mirror from this server.
	ProbesPerMinute float64        `json:"probesPerMinute"`
	Mirrors         []MirrorHealth `json:"mirrors"`
	// Regions are every region's route, by region key.
	Regions []RegionRoute `json:"regions"`
}

// Health returns the server's view of its mirrors' health and where each region's blob
// downloads go.
func (s *Server) Health() HealthStatus {
	o := s.opts.Health
	st := HealthStatus{Probing: !o.Off, Interval: o.Interval, Timeout: o.Timeout, Failures: o.Failures,
		Successes: o.Successes, ProbesPerMinute: o.ProbeLoad()}
	st.Mirrors = s.health.snapshot()
	s.routeMu.Lock()
	st.Regions = slices.Clone(s.routes)
	s.routeMu.Unlock()
	return st
}

// mirrorHealth is the state machine of one mirror.
type mirrorHealth struct {
	target     probeTarget
	check      layout.BlobCheck
	up         bool
	fails, oks int
	reason     string
	since      time.Time
	lastProbe  time.Time
	lastResult string
	next       time.Time // when the next probe is due
	busy       bool      // a probe is in flight
}

// transition is a mirror going out of rotation or back.
type transition struct {
	name, url string
	up        bool
	reason    string // why it went out
	runs      int    // the failures or successes that decided
	was       time.Duration
}

// tracker holds every probed mirror's state machine. Its methods take the time, so that
// tests drive it with a clock of their own.
type tracker struct {
	opts HealthOptions
	rnd  func() uint64

	mu sync.Mutex
	ms map[string]*mirrorHealth
}

func newTracker(opts HealthOptions, rnd func() uint64) *tracker {
	return &tracker{opts: opts, rnd: rnd, ms: map[string]*mirrorHealth{}}
}

// jitter returns d × [1-probeJitter, 1+probeJitter].
func (t *tracker) jitter(d time.Duration) time.Duration {
	u := float64(t.rnd()>>11) / (1 << 53)
	return time.Duration(float64(d) * (1 - probeJitter + 2*probeJitter*u))
}

// setTargets makes targets the probed mirrors: a mirror with the same name and URL keeps its
// state (a mirror out stays out until its probes bring it back, whatever a crawl says),
// a new one starts in rotation with its first probe within one interval, a mirror no longer
// a target is forgotten. It reports whether a mirror out was forgotten.
func (t *tracker) setTargets(targets []probeTarget, now time.Time) (forgotDown bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	keep := make(map[string]*mirrorHealth, len(targets))
	for _, tg := range targets {
		if m, ok := t.ms[tg.name]; ok && m.target.url == tg.url {
			m.target = tg
			keep[tg.name] = m
			continue
		}
		u := float64(t.rnd()>>11) / (1 << 53)
		keep[tg.name] = &mirrorHealth{
			target: tg,
			check:  layout.BlobCheck{Client: t.opts.Client, UserAgent: t.opts.UserAgent},
			up:     true,
			since:  now,
			next:   now.Add(time.Duration(u * float64(t.opts.Interval))),
		}
	}
	for name, m := range t.ms {
		if _, ok := keep[name]; !ok && !m.up {
			forgotDown = true
		}
	}
	t.ms = keep
	return forgotDown
}

// due returns the mirrors whose probe is due at now, marking them busy and scheduling their
// next probe one jittered interval after now.
func (t *tracker) due(now time.Time) []*mirrorHealth {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []*mirrorHealth
	for _, m := range t.ms {
		if m.busy || now.Before(m.next) {
			continue
		}
		m.busy = true
		m.next = now.Add(t.jitter(t.opts.Interval))
		out = append(out, m)
	}
	slices.SortFunc(out, func(a, b *mirrorHealth) int { return cmp.Compare(a.target.name, b.target.name) })
	return out
}

// nextDue is when the next probe is due at the earliest, as seen at now; zero when none is.
// A mirror whose probe is still in flight when its next one is due (waiting for the
// concurrency bound) is left out: its probe's end wakes the loop.
func (t *tracker) nextDue(now time.Time) time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	var next time.Time
	for _, m := range t.ms {
		if m.busy && !m.next.After(now) {
			continue
		}
		if next.IsZero() || m.next.Before(next) {
			next = m.next
		}
	}
	return next
}

// record records the result of m's probe, ended at now, and returns the transition it
// caused, if any. A probe of a mirror no longer tracked is ignored.
func (t *tracker) record(m *mirrorHealth, err error, now time.Time) *transition {
	t.mu.Lock()
	defer t.mu.Unlock()
	m.busy = false
	if t.ms[m.target.name] != m {
		return nil
	}
	m.lastProbe = now
	if err == nil {
		m.lastResult = "ok"
		m.fails = 0
		m.oks++
		if !m.up && m.oks >= t.opts.Successes {
			tr := &transition{name: m.target.name, url: m.target.url, up: true, runs: m.oks, was: now.Sub(m.since)}
			m.up, m.reason, m.since = true, "", now
			return tr
		}
		return nil
	}
	m.lastResult = err.Error()
	m.oks = 0
	m.fails++
	if m.up && m.fails >= t.opts.Failures {
		m.up, m.since = false, now
		m.reason = fmt.Sprintf("%d probes failed: %s", m.fails, m.lastResult)
		return &transition{name: m.target.name, url: m.target.url, reason: m.reason, runs: m.fails}
	}
	if !m.up {
		m.reason = fmt.Sprintf("out since %d probes failed; last: %s", t.opts.Failures, m.lastResult)
	}
	return nil
}

// down returns the mirrors out of rotation, with their reasons.
func (t *tracker) down() map[string]string {
	if t == nil {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	var out map[string]string
	for name, m := range t.ms {
		if !m.up {
			if out == nil {
				out = map[string]string{}
			}
			out[name] = m.reason
		}
	}
	return out
}

func (t *tracker) snapshot() []MirrorHealth {
	if t == nil {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]MirrorHealth, 0, len(t.ms))
	for _, m := range t.ms {
		out = append(out, MirrorHealth{
			Name: m.target.name, URL: m.target.url, Probe: m.target.url + layout.BlobPath(m.target.blob),
			Up: m.up, Reason: m.reason, Since: m.since, Failures: m.fails, Successes: m.oks,
			LastProbe: m.lastProbe, LastResult: m.lastResult,
		})
	}
	slices.SortFunc(out, func(a, b MirrorHealth) int { return cmp.Compare(a.Name, b.Name) })
	return out
}

// runProbes probes the mirrors until ctx is done. ListenAndServe runs it.
func (s *Server) runProbes(ctx context.Context) {
	t := s.health
	if t == nil {
		return
	}
	sem := make(chan struct{}, t.opts.Concurrency)
	var wg sync.WaitGroup
	defer wg.Wait()
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		case <-s.probeWake:
		}
		now := t.opts.Now()
		for _, m := range t.due(now) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				select {
				case sem <- struct{}{}:
				case <-ctx.Done():
					return // shutting down: no result, and none recorded
				}
				defer func() { <-sem }()
				pctx, cancel := context.WithTimeout(ctx, t.opts.Timeout)
				err := m.check.Check(pctx, m.target.url, m.target.blob, m.target.size)
				cancel()
				if ctx.Err() != nil {
					return
				}
				s.probed(m, err)
			}()
		}
		wait := time.Second
		now = t.opts.Now()
		if next := t.nextDue(now); !next.IsZero() {
			wait = min(wait, max(next.Sub(now), time.Millisecond))
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(wait)
	}
}

// probed records one probe's result, and reroutes when it took a mirror out or brought one
// back.
func (s *Server) probed(m *mirrorHealth, err error) {
	result := "ok"
	if err != nil {
		result = "failed"
	}
	s.metrics.probes.WithLabelValues(m.target.name, result).Inc()
	tr := s.health.record(m, err, s.health.opts.Now())
	select { // a probe due while this one was in flight can start now
	case s.probeWake <- struct{}{}:
	default:
	}
	if tr == nil {
		return
	}
	if tr.up {
		s.log.Info("mirror back in rotation: its probes pass again", "mirror", tr.name, "url", tr.url,
			"successes", tr.runs, "was_out", tr.was.Round(time.Millisecond))
		s.metrics.transitions.WithLabelValues(tr.name, "up").Inc()
		s.metrics.mirrorUp.WithLabelValues(tr.name).Set(1)
	} else {
		s.log.Warn("mirror out of rotation: its probes fail", "mirror", tr.name, "url", tr.url, "reason", tr.reason)
		s.metrics.transitions.WithLabelValues(tr.name, "down").Inc()
		s.metrics.mirrorUp.WithLabelValues(tr.name).Set(0)
	}
	s.reroute()
}

// install makes g the loaded generation: its usable mirrors become the probe targets, and
// the generation served is g without the mirrors out.
func (s *Server) install(g *generation) (old *generation) {
	old = s.base.Swap(g)
	if s.health != nil {
		s.health.setTargets(g.probes, s.health.opts.Now())
		s.metrics.mirrorUp.Reset()
		for _, m := range s.health.snapshot() {
			up := 0.0
			if m.Up {
				up = 1
			}
			s.metrics.mirrorUp.WithLabelValues(m.Name).Set(up)
		}
		select {
		case s.probeWake <- struct{}{}:
		default:
		}
	}
	s.reroute()
	return old
}

// reroute serves the loaded generation without the mirrors out, and logs and counts every
// region whose route changed.
func (s *Server) reroute() {
	s.routeMu.Lock()
	defer s.routeMu.Unlock()
	base := s.base.Load()
	if base == nil {
		return
	}
	down := s.health.down()
	g := base.without(down)
	s.gen.Store(g)
	// Cached variants whose urls name a mirror out are dropped (tag requests get variants
	// rendered without it: variantOf).
	var outURLs [][]byte
	for _, p := range base.probes {
		if _, ok := down[p.name]; ok {
			outURLs = append(outURLs, []byte(p.url+"blobs/"))
		}
	}
	// Then the indexes pointing at a dropped variant, level by level.
	for len(outURLs) > 0 {
		var dropped [][]byte
		s.variantCache.drop(func(e *manifestEntry) bool {
			if slices.ContainsFunc(outURLs, func(u []byte) bool { return bytes.Contains(e.body, u) }) {
				dropped = append(dropped, []byte(`"`+e.digest+`"`))
				return true
			}
			return false
		})
		outURLs = dropped
	}
	routes := regionRoutes(base, g, down)
	prev := map[string]RegionRoute{}
	for _, r := range s.routes {
		prev[r.Region] = r
	}
	for _, r := range routes {
		p, seen := prev[r.Region]
		if !seen && !r.Fallback || seen && p.Route == r.Route {
			continue
		}
		if r.Fallback {
			s.metrics.fallbacks.WithLabelValues(routeKind(r.Route)).Inc()
			s.log.Warn("region falls back: its mirrors are out", "region", r.Region, "route", r.Route, "reason", r.Reason)
		} else {
			s.log.Info("region back on its mirrors", "region", r.Region, "route", r.Route)
		}
	}
	s.routes = routes
}

// routeKind is the metric label of a route: "tier" for any of the region's own tiers.
func routeKind(route string) string {
	if strings.HasPrefix(route, "tier ") {
		return "tier"
	}
	return route
}

// without returns g serving no blob from the mirrors in down: a copy sharing everything but
// the mirror lists, where a tier whose mirrors are all out is gone (the next tier takes
// over; with none left, the global region's, then the origin or the local tree).
func (g *generation) without(down map[string]string) *generation {
	if len(down) == 0 {
		return g
	}
	out := func(m *mirrorEntry) bool { _, ok := down[m.name]; return ok }
	cp := *g
	cp.netblockMirrors = slices.DeleteFunc(slices.Clone(g.netblockMirrors), out)
	cp.anyMirrors = slices.DeleteFunc(slices.Clone(g.anyMirrors), out)
	cp.asnMirrors = nil
	for asn, ms := range g.asnMirrors {
		if ms = slices.DeleteFunc(slices.Clone(ms), out); len(ms) > 0 {
			if cp.asnMirrors == nil {
				cp.asnMirrors = map[uint32][]*mirrorEntry{}
			}
			cp.asnMirrors[asn] = ms
		}
	}
	if g.variants != nil {
		cp.variants = g.variants.without(down)
	}
	cp.regions, cp.global = make(map[string]*regionEntry, len(g.regions)), nil
	for key, r := range g.regions {
		nr := &regionEntry{key: r.key, variantSet: r.variantSet}
		for _, t := range r.tiers {
			var nt tierEntry
			for _, m := range t.mirrors {
				if !out(m) {
					nt.add(m)
				}
			}
			if len(nt.mirrors) > 0 {
				nr.tiers = append(nr.tiers, nt)
			}
		}
		cp.setRegion(key, nr)
	}
	return &cp
}

// regionRoutes says, for every region of base, where its blob downloads go in routed (base
// without the mirrors in down), and why when that is not where base sends them.
func regionRoutes(base, routed *generation, down map[string]string) []RegionRoute {
	keys := make([]string, 0, len(base.regions))
	for k := range base.regions {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	out := make([]RegionRoute, 0, len(keys))
	for _, k := range keys {
		want, _ := routeOf(base, base, k)
		got, tier := routeOf(base, routed, k)
		r := RegionRoute{Region: k, Route: got, Fallback: got != want}
		if r.Fallback {
			// The mirrors out that the route passes over: the region's tiers before the one
			// taken, and the global region's when neither has a mirror left.
			var passed []*mirrorEntry
			reg := base.regions[k]
			for _, t := range reg.tiers[:min(tier, len(reg.tiers))] {
				passed = append(passed, t.mirrors...)
			}
			if gl := base.regions["global"]; (got == "origin" || got == "local") && gl != nil && k != "global" {
				for _, t := range gl.tiers {
					passed = append(passed, t.mirrors...)
				}
			}
			var why []string
			for _, m := range passed {
				if reason, ok := down[m.name]; ok && !slices.Contains(why, m.name+": "+reason) {
					why = append(why, m.name+": "+reason)
				}
			}
			r.Reason = "out of rotation: " + strings.Join(why, "; ")
		}
		out = append(out, r)
	}
	return out
}

// routeOf names where g (base, or base without some mirrors) sends region key's blob
// downloads: "tier N" (a tier of the region in base, from 1), "global", "origin" or "local";
// tier is N-1, or the number of the region's tiers when none of them is taken.
func routeOf(base, g *generation, key string) (route string, tier int) {
	reg := base.regions[key]
	if r := g.regions[key]; r != nil && len(r.tiers) > 0 {
		first := r.tiers[0].mirrors[0]
		for i, t := range reg.tiers {
			if slices.Contains(t.mirrors, first) {
				return fmt.Sprintf("tier %d", i+1), i
			}
		}
	}
	tier = len(reg.tiers)
	if gl := g.regions["global"]; key != "global" && gl != nil && len(gl.tiers) > 0 {
		return "global", tier
	}
	if g.origin != "" {
		return "origin", tier
	}
	return "local", tier
}
