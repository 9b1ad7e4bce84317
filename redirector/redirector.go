package redirector

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"net/textproto"
	"os"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/regmirror/regmirror/internal/trunc"
	"github.com/regmirror/regmirror/layout"
)

// DefaultTagMaxAge is how long a shared cache may keep an answer about a tag.
const DefaultTagMaxAge = 60 * time.Second

// Options configure a [Server].
type Options struct {
	// Tree is the tree's root directory (required).
	Tree string
	// GeoIP is a MaxMind DB file (GeoIP2/GeoLite2 Country or City, DB-IP lite, or a flat
	// country_code database). Empty: every client is in region "global".
	GeoIP string
	// ASNDB is a MaxMind DB file giving autonomous_system_number (GeoLite2-ASN): clients of
	// an AS that a mirror lists (layout.Mirror.ASNs) go to it before their country's mirrors.
	// Empty: no ASN tier.
	ASNDB string
	// TrustedProxies are the peers whose X-Forwarded-For (and country header) are believed.
	TrustedProxies []netip.Prefix
	// CountryHeader names a header holding the client's ISO country code, set by a CDN. It is
	// honoured only on requests from trusted proxies, and takes precedence over GeoIP.
	CountryHeader string
	// RegionalManifests serves tag requests the client's region's manifest variant.
	RegionalManifests bool
	// TagMaxAge is the Cache-Control max-age of answers about tags: 0 means
	// DefaultTagMaxAge, negative means "no-cache".
	TagMaxAge time.Duration
	// PollInterval is how often the tree's stamp and the GeoIP file are checked (default
	// DefaultPollInterval).
	PollInterval time.Duration
	// Logger receives operational messages; nil discards them.
	Logger *slog.Logger
	// AccessLog receives one line per request (see NewAccessLog); nil logs none.
	AccessLog *AccessLog
	// HidePrivateMirrors leaves private mirrors off the status page, which otherwise shows
	// them by name only.
	HidePrivateMirrors bool
	// VariantCacheBytes bounds the regional variants kept once rendered: 0 means
	// DefaultVariantCacheBytes, negative keeps none (every request renders).
	VariantCacheBytes int64
	// Health configures the probes that take failing mirrors out of rotation between crawls.
	Health HealthOptions
	// OriginClient fetches, from the metadata's origin, manifests of a newer generation than
	// the one loaded (replicas a generation apart). Nil: a client with a 5 s timeout.
	OriginClient *http.Client
	// Random returns uniform random numbers for the weighted mirror choice; it must be safe
	// for concurrent use. Nil uses math/rand/v2. Tests pass a seeded source.
	Random func() uint64
	// Now is the clock that tells whether a retiring blob's grace is over (see
	// layout.GraceOver); nil uses time.Now. Tests pass a generator's clock.
	Now func() time.Time
}

// Server answers registry pulls from a tree. It is an [http.Handler].
type Server struct {
	opts    Options
	log     *slog.Logger
	access  *AccessLog
	tree    *layout.Tree
	loader  *layout.Loader // reads the tree\'s generations, sharing what the next one does not change
	root    *os.Root
	trusted proxies
	rnd     func() uint64
	now     func() time.Time

	countryHeader string // canonical header key, or ""
	tagCC         []string
	tagPrivateCC  []string

	// base is the generation loaded; gen the one served: base without the mirrors out of
	// rotation (see health.go).
	base atomic.Pointer[generation]
	gen  atomic.Pointer[generation]
	geo  atomic.Pointer[geoDB]
	asn  atomic.Pointer[geoDB]

	metrics      *metrics
	variantCache *variantCache
	ahead        *aheadFetcher
	watchMu      sync.Mutex
	watch        watchState

	health    *tracker // nil when the probes are off
	probeWake chan struct{}
	routeMu   sync.Mutex
	routes    []RegionRoute // guarded by routeMu
}

// New loads the tree's current generation (and the GeoIP database) and returns a server ready
// to answer. It fails if the tree has no loadable generation or the GeoIP database is corrupt.
func New(opts Options) (*Server, error) {
	if opts.Tree == "" {
		return nil, errors.New("no tree given")
	}
	s := &Server{
		opts:    opts,
		log:     opts.Logger,
		access:  opts.AccessLog,
		tree:    layout.NewTree(opts.Tree),
		trusted: make(proxies, len(opts.TrustedProxies)),
		rnd:     opts.Random,
		now:     opts.Now,
	}
	s.loader = s.tree.NewLoader()
	if s.log == nil {
		s.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if s.rnd == nil {
		s.rnd = rand.Uint64
	}
	if s.now == nil {
		s.now = time.Now
	}
	for i, p := range opts.TrustedProxies {
		s.trusted[i] = p.Masked()
	}
	if opts.CountryHeader != "" {
		s.countryHeader = textproto.CanonicalMIMEHeaderKey(opts.CountryHeader)
	}
	opts.TagMaxAge = zeroDefault(opts.TagMaxAge, DefaultTagMaxAge)
	s.tagCC = tagCacheControl(opts.TagMaxAge)
	s.tagPrivateCC = []string{"private, no-store"}
	if secs := int64(opts.TagMaxAge / time.Second); secs > 0 {
		s.tagPrivateCC = []string{fmt.Sprintf("private, max-age=%d", secs)}
	}
	if err := opts.Health.defaults(); err != nil {
		return nil, err
	}
	if !opts.Health.Off {
		s.health = newTracker(opts.Health, s.rnd)
		s.probeWake = make(chan struct{}, 1)
	}
	opts.VariantCacheBytes = zeroDefault(opts.VariantCacheBytes, DefaultVariantCacheBytes)
	s.variantCache = newVariantCache(opts.VariantCacheBytes)
	s.ahead = newAheadFetcher(opts.OriginClient)
	s.opts = opts
	s.metrics = newMetrics(s)

	root, err := os.OpenRoot(opts.Tree)
	if err != nil {
		return nil, fmt.Errorf("opening tree: %w", err)
	}
	s.root = root
	if err := s.loadInitial(); err != nil {
		root.Close()
		return nil, err
	}
	if opts.GeoIP != "" {
		db, err := openGeoDB(opts.GeoIP)
		if err != nil {
			root.Close()
			return nil, err
		}
		s.geo.Store(db)
		s.watch.geo.id = db.fileID
		s.log.Info("GeoIP database loaded", "path", opts.GeoIP, "type", db.dbType, "built", db.built.Format(time.DateOnly))
	} else if opts.CountryHeader != "" {
		s.log.Warn("no GeoIP database (Options.GeoIP): clients whose proxy sends no " + opts.CountryHeader + " header are in region global")
	} else {
		s.log.Warn("no GeoIP database (Options.GeoIP): every client is in region global")
	}
	if opts.ASNDB != "" {
		db, err := openGeoDB(opts.ASNDB)
		if err != nil {
			root.Close()
			return nil, fmt.Errorf("ASN database: %w", err)
		}
		s.asn.Store(db)
		s.watch.asn.id = db.fileID
		s.log.Info("ASN database loaded", "path", opts.ASNDB, "type", db.dbType, "built", db.built.Format(time.DateOnly))
	}
	return s, nil
}

// zeroDefault resolves an option where 0 means the default and a negative value means none.
func zeroDefault[T time.Duration | int64](v, def T) T {
	switch {
	case v == 0:
		return def
	case v < 0:
		return 0
	}
	return v
}

// Close releases the tree directory. The server must not serve afterwards.
func (s *Server) Close() error { return s.root.Close() }

// Generation is the number of the generation being served.
func (s *Server) Generation() uint64 {
	if g := s.gen.Load(); g != nil {
		return g.number
	}
	return 0
}

// reqState is what one request carries from its handler to the access log and metrics.
type reqState struct {
	http.ResponseWriter
	conn     *connInfo // nil without Server.ConnContext
	status   int
	bytes    int64
	ep       endpoint
	client   netip.Addr
	resolved bool // client, country, continent and region are set
	country  string
	cont     string
	asn      uint32
	region   string
	mirror   string
}

func (st *reqState) WriteHeader(code int) {
	if st.status == 0 {
		st.status = code
	}
	st.ResponseWriter.WriteHeader(code)
}

func (st *reqState) Write(b []byte) (int, error) {
	if st.status == 0 {
		st.status = http.StatusOK
	}
	n, err := st.ResponseWriter.Write(b)
	st.bytes += int64(n)
	return n, err
}

// ReadFrom keeps sendfile for blobs served from the tree.
func (st *reqState) ReadFrom(r io.Reader) (int64, error) {
	if st.status == 0 {
		st.status = http.StatusOK
	}
	n, err := io.Copy(st.ResponseWriter, r)
	st.bytes += n
	return n, err
}

// Unwrap lets http.ResponseController reach the connection.
func (st *reqState) Unwrap() http.ResponseWriter { return st.ResponseWriter }

// resolveClient finds the client's address, country, continent and region, once per request
// and only for the answers that depend on it.
func (s *Server) resolveClient(st *reqState, r *http.Request, g *generation) *regionEntry {
	addr, viaProxy := clientAddr(st.conn, r, s.trusted)
	st.client = addr
	st.resolved = true
	if viaProxy && s.countryHeader != "" {
		if vals := r.Header[s.countryHeader]; len(vals) > 0 {
			if c := normCode(vals[0]); c != "" {
				st.country = c
				st.cont, _ = layout.ContinentOf(c)
			}
		}
	}
	if st.country == "" {
		st.country, st.cont = s.geo.Load().lookup(addr)
	}
	if len(g.asnMirrors) > 0 {
		st.asn = s.asn.Load().lookupASN(addr)
	}
	reg := g.regionFor(st.country, st.cont)
	if reg != nil {
		st.region = reg.key
	} else {
		st.region = "none"
	}
	return reg
}

// ServeHTTP answers one request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var start time.Time
	if s.access != nil { // reading the clock is a tenth of a cached answer's cost
		start = time.Now()
	}
	st := statePool.Get().(*reqState)
	st.ResponseWriter = w
	st.conn = connOf(r)
	defer s.finish(st, r, start)

	h := w.Header()
	h["Docker-Distribution-Api-Version"] = hdrAPIVersion
	h["X-Content-Type-Options"] = hdrNoSniff

	rt := parseRoute(r.URL.Path)
	st.ep = rt.ep
	if r.ContentLength != 0 { // a body announced (-1: chunked), which no pull request has
		refuseBody(st, r)
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			writeError(st, r, errUnsupported, "")
		} else {
			writeError(st, r, errBodyRefused, "")
		}
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		writeError(st, r, errUnsupported, "")
		return
	}
	g := s.gen.Load()
	switch rt.ep {
	case epBase:
		s.serveBase(st, r)
	case epHealth:
		s.serveHealth(st, r)
	case epStatus:
		s.serveStatusHTML(st, r, g)
	case epStatusJSON:
		s.serveStatusJSON(st, r, g)
	case epRoute:
		s.serveRoute(st, r, g)
	case epManifest:
		s.serveManifest(st, r, g, rt)
	case epBlob:
		s.serveBlob(st, r, g, rt)
	case epTags:
		s.serveTags(st, r, g, rt)
	case epCatalog:
		s.serveCatalog(st, r, g)
	case epReferrers:
		s.serveReferrers(st, r, g, rt)
	case epUpload:
		writeError(st, r, errUnsupported, "")
	default:
		writeError(st, r, errNotFound, "")
	}
}

// finish recovers from a bug (answering 500 if nothing was written yet), then counts and logs
// the request.
func (s *Server) finish(st *reqState, r *http.Request, start time.Time) {
	if p := recover(); p != nil {
		if p == http.ErrAbortHandler {
			panic(p)
		}
		s.log.Error("panic serving request: this is a bug", "method", r.Method, "path", trunc.String(r.URL.Path), "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
		if st.status == 0 {
			writeError(st, r, errInternal, "")
		}
	}
	if st.status == 0 {
		st.status = http.StatusOK
	}
	s.metrics.request(st.ep, st.status)
	if st.ep == epBlob && r.Method == http.MethodGet {
		s.metrics.blobDownload(st.region, st.mirror)
	}
	if s.access != nil && st.ep != epHealth { // health checks would drown the log
		s.logAccess(st, r, start)
	}
	*st = reqState{}
	statePool.Put(st)
}

// statePool recycles request states: a handler's ResponseWriter is dead once it returns.
var statePool = sync.Pool{New: func() any { return new(reqState) }}

var (
	bodyBase = []byte("{}")
	lenBase  = []string{"2"}
)

func (s *Server) serveBase(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h["Content-Type"] = hdrJSON
	h["Content-Length"] = lenBase
	h["Cache-Control"] = s.tagCC
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		_, _ = w.Write(bodyBase)
	}
}

// serveHealth answers 200 while a generation is loaded.
func (s *Server) serveHealth(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h["Content-Type"] = []string{"text/plain; charset=utf-8"}
	h["Cache-Control"] = hdrNoStore
	g := s.gen.Load()
	if g == nil {
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = io.WriteString(w, "no generation\n")
		return
	}
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = fmt.Fprintf(w, "ok generation %d\n", g.number)
	}
}
