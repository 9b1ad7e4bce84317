package redirector

import (
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// statuses are the status codes counted under their own label; others count as "other".
var statuses = [...]int{200, 206, 304, 307, 400, 404, 405, 416, 500, 503}

// metrics are one server's Prometheus metrics, in a registry of its own (so that tests and
// the demo can run several servers in one process).
type metrics struct {
	reg *prometheus.Registry
	// requests by endpoint and status, resolved once so that counting costs an atomic add.
	requests  [numEndpoints][len(statuses) + 1]prometheus.Counter
	downloads *prometheus.CounterVec
	// downloadCounters caches downloads' children by label pair: an immutable map, replaced
	// (copy on write, under downloadMu) when a pair is first seen, so the hot path is one
	// atomic load and one map lookup, with no allocation.
	downloadCounters atomic.Pointer[map[downloadKey]prometheus.Counter]
	downloadMu       sync.Mutex
	reloads          *prometheus.CounterVec
	geoReloads       *prometheus.CounterVec
	asnReloads       *prometheus.CounterVec
	variantRenders   *prometheus.CounterVec
	probes           *prometheus.CounterVec
	transitions      *prometheus.CounterVec
	mirrorUp         *prometheus.GaugeVec
	fallbacks        *prometheus.CounterVec
}

func newMetrics(s *Server) *metrics {
	m := &metrics{reg: prometheus.NewRegistry()}
	reqs := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "regmirror_requests_total",
		Help: "Requests answered, by endpoint and HTTP status.",
	}, []string{"endpoint", "code"})
	for e := range numEndpoints {
		for i, c := range statuses {
			m.requests[e][i] = reqs.WithLabelValues(e.String(), strconv.Itoa(c))
		}
		m.requests[e][len(statuses)] = reqs.WithLabelValues(e.String(), "other")
	}
	m.downloads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "regmirror_blob_downloads_total",
		Help: "Blob GETs by the client's region (\"none\" when the tree has no regions) and where they went: a mirror's name, \"origin\" (the origin URL), \"local\" (served from this server's tree or memory), or \"unavailable\" (answered with an error).",
	}, []string{"region", "to"})
	m.reloads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "regmirror_generation_loads_total",
		Help: "Generations loaded (result=ok) and refused (result=failed).",
	}, []string{"result"})
	m.geoReloads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "regmirror_geoip_loads_total",
		Help: "GeoIP database reloads, by result.",
	}, []string{"result"})
	m.asnReloads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "regmirror_asn_db_loads_total",
		Help: "ASN database (--asn-db) reloads, by result.",
	}, []string{"result"})
	m.variantRenders = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "regmirror_variant_renders_total",
		Help: "Regional variants rendered on request (result=ok): by tag, with an index's children, and when scanning a repository for a variant asked for by digest.",
	}, []string{"result"})
	m.probes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "regmirror_mirror_probes_total",
		Help: "Health probes of mirrors, by mirror and result (ok, failed).",
	}, []string{"mirror", "result"})
	m.transitions = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "regmirror_mirror_transitions_total",
		Help: "Mirrors taken out of rotation by their probes (to=down) and brought back (to=up).",
	}, []string{"mirror", "to"})
	m.mirrorUp = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "regmirror_mirror_up",
		Help: "1 for a mirror the last crawl found usable and the probes keep in rotation, 0 for one the probes took out.",
	}, []string{"mirror"})
	m.fallbacks = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "regmirror_region_fallbacks_total",
		Help: "Regions whose blob downloads moved elsewhere because mirrors went out of rotation, by where they went (tier: a later tier of the region, global, origin, local), counted once per change.",
	}, []string{"to"})
	falling := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "regmirror_regions_falling_back",
		Help: "Regions whose blob downloads go elsewhere than the crawl's data says because mirrors are out of rotation.",
	}, func() float64 {
		s.routeMu.Lock()
		defer s.routeMu.Unlock()
		n := 0
		for _, r := range s.routes {
			if r.Fallback {
				n++
			}
		}
		return float64(n)
	})
	cached := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "regmirror_variant_cache_bytes",
		Help: "Bytes of rendered regional variants kept.",
	}, func() float64 { _, n := s.variantCache.stats(); return float64(n) })
	gen := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "regmirror_generation",
		Help: "The generation being served.",
	}, func() float64 { return float64(s.Generation()) })
	age := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "regmirror_generation_age_seconds",
		Help: "Seconds since the generation being served was created.",
	}, func() float64 {
		if g := s.gen.Load(); g != nil && !g.created.IsZero() {
			return time.Since(g.created).Seconds()
		}
		return 0
	})
	m.reg.MustRegister(reqs, m.downloads, m.reloads, m.geoReloads, m.asnReloads, m.variantRenders, m.probes, m.transitions, m.mirrorUp, m.fallbacks, falling, cached, gen, age,
		mirrorStates{s},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// mirrorStates is the regmirror_mirrors gauge: the served generation's mirrors by what the
// last crawl found.
type mirrorStates struct{ s *Server }

var mirrorStatesDesc = prometheus.NewDesc("regmirror_mirrors",
	"Mirrors of the served generation by what the last crawl found: healthy (holding the generation), behind (healthy, holding an older one: chosen only for blobs it holds), unhealthy, disabled. Private mirrors count too.",
	[]string{"state"}, nil)

func (c mirrorStates) Describe(ch chan<- *prometheus.Desc) { ch <- mirrorStatesDesc }

func (c mirrorStates) Collect(ch chan<- prometheus.Metric) {
	var n [numCrawlStates]int
	if g := c.s.gen.Load(); g != nil {
		for _, st := range g.status.crawl {
			n[st]++
		}
	}
	for i, name := range crawlStateNames {
		ch <- prometheus.MustNewConstMetric(mirrorStatesDesc, prometheus.GaugeValue, float64(n[i]), name)
	}
}

type downloadKey struct{ region, to string }

// blobDownload counts one blob GET: to is where it went (st.mirror), empty when it was
// answered with an error; region is empty when the client's region was not needed.
func (m *metrics) blobDownload(region, to string) {
	if to == "" {
		to = "unavailable"
	}
	if region == "" {
		region = "none"
	}
	k := downloadKey{region, to}
	if cs := m.downloadCounters.Load(); cs != nil {
		if c, ok := (*cs)[k]; ok {
			c.Inc()
			return
		}
	}
	m.downloadMu.Lock()
	old := m.downloadCounters.Load()
	next := make(map[downloadKey]prometheus.Counter, 1)
	if old != nil {
		for kk, c := range *old {
			next[kk] = c
		}
	}
	c, ok := next[k]
	if !ok {
		c = m.downloads.WithLabelValues(region, to)
		next[k] = c
		m.downloadCounters.Store(&next)
	}
	m.downloadMu.Unlock()
	c.Inc()
}

func (m *metrics) request(ep endpoint, status int) {
	i := len(statuses)
	for j, c := range statuses {
		if c == status {
			i = j
			break
		}
	}
	if ep >= numEndpoints {
		ep = epUnknown
	}
	m.requests[ep][i].Inc()
}

// MetricsHandler serves the server's Prometheus metrics.
func (s *Server) MetricsHandler() http.Handler {
	return promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{})
}
