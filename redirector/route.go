package redirector

import (
	"bytes"
	"encoding/json"
	"fmt"
	"html/template"
	"mime"
	"net/http"
	"net/netip"
	"strconv"
	"strings"

	"github.com/regmirror/regmirror/layout"
)

// GET /route explains a decision, as mirrorbits' ?mirrorlist does: for a client (its
// address, &ip=ADDR, or a country, &country=CC) and a blob (&repo=NAME&digest=D), the
// client's region and every mirror, tier by tier, with why it was taken or passed over, and
// where the blob goes; for a manifest (&ref=TAG or DIGEST) what this server answers. HTML, or
// JSON with Accept: application/json. It shows no more than the status page: private mirrors
// by name only.

// maxRouteQuery bounds the query string of /route.
const maxRouteQuery = 1024

var errRouteQuery = errorCode{"PARAM_INVALID", http.StatusBadRequest, "invalid /route query"}

// routeExplanation is the answer of /route.
type routeExplanation struct {
	Client struct {
		IP        string `json:"ip,omitempty"`
		Country   string `json:"country,omitempty"`
		Continent string `json:"continent,omitempty"`
		ASN       uint32 `json:"asn,omitempty"`
		Region    string `json:"region"`
	} `json:"client"`
	Repository string `json:"repository"`
	Generation uint64 `json:"generation"`
	// For a blob:
	Digest string `json:"digest,omitempty"`
	Size   int64  `json:"size,omitempty"`
	Since  uint64 `json:"since,omitempty"` // the generation that first published it
	// For a manifest:
	Ref      string `json:"ref,omitempty"`
	Manifest string `json:"manifest,omitempty"`

	// Decision says where the answer comes from: a mirror of a tier, the origin, the local
	// tree, or this server for a manifest. To lists the URLs a blob may be sent to (one of
	// them is chosen per request), or a regional variant's digest.
	Decision   string           `json:"decision"`
	To         []string         `json:"to,omitempty"`
	Candidates []routeCandidate `json:"candidates"`
}

// routeCandidate is one mirror as the decision saw it.
type routeCandidate struct {
	Mirror string `json:"mirror"`
	Tier   string `json:"tier,omitempty"`
	// Taken: the blob goes to this mirror or another taken one, bandwidth-weighted; Share
	// is this mirror's chance.
	Taken  bool    `json:"taken"`
	Share  float64 `json:"share,omitempty"`
	Reason string  `json:"reason"`
}

func (s *Server) serveRoute(st *reqState, r *http.Request, g *generation) {
	if len(r.URL.RawQuery) > maxRouteQuery {
		writeError(st, r, errRouteQuery, fmt.Sprintf("the query is longer than %d bytes", maxRouteQuery))
		return
	}
	if g == nil {
		writeError(st, r, errUnavailable, "no generation loaded")
		return
	}
	q := r.URL.Query()
	var ex routeExplanation
	ex.Generation = g.number
	repoName := q.Get("repo")
	if err := layout.ValidateName(repoName); err != nil {
		writeError(st, r, errNameInvalid, "repo: "+err.Error())
		return
	}
	ex.Repository = repoName

	// The client: an address given, or a country given, or the asker.
	var addr netip.Addr
	switch {
	case q.Get("ip") != "":
		a, err := netip.ParseAddr(q.Get("ip"))
		if err != nil {
			writeError(st, r, errRouteQuery, "ip: not an IP address")
			return
		}
		addr = a.Unmap()
	case q.Get("country") == "":
		addr, _ = clientAddr(connOf(r), r, s.trusted)
	}
	country, cont := "", ""
	if c := q.Get("country"); c != "" {
		if country = normCode(c); country == "" {
			writeError(st, r, errRouteQuery, "country: want an ISO 3166-1 alpha-2 code, like DE")
			return
		}
		cont, _ = layout.ContinentOf(country)
	} else if addr.IsValid() {
		country, cont = s.geo.Load().lookup(addr)
	}
	var asn uint32
	if addr.IsValid() && len(g.asnMirrors) > 0 {
		asn = s.asn.Load().lookupASN(addr)
	}
	if addr.IsValid() {
		ex.Client.IP = addr.String()
	}
	ex.Client.Country, ex.Client.Continent, ex.Client.ASN = country, cont, asn
	ex.Client.Region = "none"
	if reg := g.regionFor(country, cont); reg != nil {
		ex.Client.Region = reg.key
	}

	switch d, ref := q.Get("digest"), q.Get("ref"); {
	case d != "" && ref == "":
		dg, err := layout.ParseDigest(d)
		if err != nil {
			writeError(st, r, errDigestInvalid, "digest: "+err.Error())
			return
		}
		if !s.explainBlob(&ex, g, addr, asn, dg) {
			writeError(st, r, errBlobUnknown, "blob "+dg.String()+" is not in this generation")
			return
		}
	case ref != "" && d == "":
		if !s.explainManifest(&ex, g, ref) {
			writeError(st, r, errManifestUnknown, "no such manifest in "+repoName)
			return
		}
	default:
		writeError(st, r, errRouteQuery, "give either digest= (a blob) or ref= (a manifest's tag or digest)")
		return
	}
	s.writeRoute(st, r, &ex)
}

// explainBlob walks the tiers as serveBlob and chooseMirror do, on the generation as routed
// (the mirrors the probes took out are not in it), naming every mirror of the generation as
// loaded with its verdict.
func (s *Server) explainBlob(ex *routeExplanation, g *generation, addr netip.Addr, asn uint32, d layout.Digest) bool {
	key := d.String()
	var b *blobEntry
	repo := g.repos[ex.Repository]
	if repo != nil {
		if e := repo.manifests[key]; e != nil {
			ex.Digest, ex.Size = key, int64(len(e.body))
			ex.Decision = "local: a manifest, answered by this server"
			ex.Candidates = []routeCandidate{}
			return true
		}
		b = repo.blobs[key]
	}
	if b == nil {
		b = g.blobs[key]
	}
	if b == nil {
		return false
	}
	ex.Digest, ex.Size, ex.Since = key, b.size, b.since
	if g.lapsed(repo, b, s.now) { // as serveBlob: serveAheadBlob's answer
		ex.Candidates = []routeCandidate{}
		switch {
		case s.aheadFile(b.digest) != nil:
			ex.Decision = "local: a retiring blob whose grace is over, which mirrors of a newer generation may have deleted; served from this server's tree"
		case g.origin != "":
			ex.Decision = "origin: a retiring blob whose grace is over, which mirrors of a newer generation may have deleted"
			ex.To = []string{g.origin + b.path}
		default:
			ex.Decision = "unavailable: a retiring blob whose grace is over, which mirrors of a newer generation may have deleted; there is no origin, and the tree lacks its file"
		}
		return true
	}
	base := s.base.Load()
	if base == nil {
		base = g
	}
	w := &tierWalk{ex: ex, b: b, down: map[string]string{}, mentioned: map[string]bool{}, cands: []routeCandidate{}}
	for _, m := range s.Health().Mirrors {
		if !m.Up {
			w.down[m.Name] = m.Reason
		}
	}
	// 1–3. The tiers of chooseMirror's walk: netblocks (the most specific match among the
	// mirrors holding the blob), the client's autonomous system, the region's tiers, then the
	// global region's.
	base.walkTiers(addr, asn, base.regionFor(ex.Client.Country, ex.Client.Continent), func(t tierVisit) bool {
		if t.kind == tierNetblock {
			w.netblocks(t.mirrors, addr)
		} else {
			w.consider(t.name(), t.mirrors, nil)
		}
		return false // every tier is shown; the first that takes the blob decides
	})
	// 4. Any mirror every client may use.
	w.consider("any mirror", base.anyMirrors, nil)
	w.unlisted(g)
	ex.Candidates = w.cands
	switch {
	case w.decided != "":
	case g.origin != "":
		ex.Decision = "origin: no mirror can take the blob for this client"
		ex.To = []string{g.origin + b.path}
	case s.blobReachable(g, b):
		ex.Decision = "local: served from this server's tree"
	default:
		ex.Decision = "unavailable: no mirror holds the blob yet, there is no origin, and the tree lacks its file"
	}
	return true
}

// tierWalk gives the mirrors their verdicts for one blob, tier by tier (explainBlob).
type tierWalk struct {
	ex        *routeExplanation
	b         *blobEntry
	down      map[string]string // mirror → why the probes took it out of rotation
	mentioned map[string]bool
	cands     []routeCandidate
	decided   string // the tier that takes the blob
}

// consider gives one tier's mirrors their verdicts and says whether the tier takes the
// blob; refuse may pass a mirror over for a reason of the tier's own.
func (w *tierWalk) consider(tier string, ms []*mirrorEntry, refuse func(*mirrorEntry) string) {
	var taken []*mirrorEntry
	var total uint64
	for _, m := range ms {
		if w.mentioned[m.name] {
			continue
		}
		w.mentioned[m.name] = true
		c := routeCandidate{Mirror: m.name, Tier: tier}
		switch {
		case w.decided != "":
			c.Reason = "not needed: an earlier tier takes the blob (" + w.decided + ")"
		case w.down[m.name] != "":
			c.Reason = "out of rotation: " + w.down[m.name]
		case !layout.HeldAt(m.generation, w.b.since):
			c.Reason = fmt.Sprintf("behind: holds generation %d, the blob is from generation %d", m.generation, w.b.since)
		case !wantOf(w.b).has(m):
			c.Reason = "not carrying the blob: its content (subsets) has none of the blob's"
		case refuse != nil && refuse(m) != "":
			c.Reason = refuse(m)
		default:
			c.Taken = true
			taken = append(taken, m)
			total += m.weight
		}
		w.cands = append(w.cands, c)
	}
	if len(taken) == 0 {
		return
	}
	for i := range w.cands {
		for _, m := range taken {
			if w.cands[i].Taken && w.cands[i].Mirror == m.name && w.cands[i].Tier == tier {
				w.cands[i].Share = float64(m.weight) / float64(total)
				w.cands[i].Reason = fmt.Sprintf("holds the blob: chosen with weight %d of %d (bandwidth)", m.weight, total)
				w.ex.To = append(w.ex.To, m.url+w.b.path)
			}
		}
	}
	w.decided = tier
	w.ex.Decision = "a mirror of " + tier
}

// netblocks considers the mirrors of ms whose netblocks hold addr: the most specific match
// among those that can take the blob wins.
func (w *tierWalk) netblocks(ms []*mirrorEntry, addr netip.Addr) {
	var nb []*mirrorEntry
	best := -1
	for _, m := range ms {
		if bits := netblockBits(m, addr); bits >= 0 {
			nb = append(nb, m)
			if w.down[m.name] == "" && wantOf(w.b).has(m) {
				best = max(best, bits)
			}
		}
	}
	w.consider("netblock", nb, func(m *mirrorEntry) string {
		if bits := netblockBits(m, addr); bits < best {
			return fmt.Sprintf("a less specific netblock (/%d) than another mirror's (/%d)", bits, best)
		}
		return ""
	})
}

// unlisted says why the mirrors no tier mentioned are no candidates at all.
func (w *tierWalk) unlisted(g *generation) {
	for _, m := range g.status.Mirrors {
		if w.mentioned[m.Name] {
			continue
		}
		c := routeCandidate{Mirror: m.Name}
		switch {
		case m.Private:
			c.Reason = "private: reached through its netblocks and autonomous systems only"
		case !m.Enabled:
			c.Reason = "disabled"
		case !m.Healthy:
			c.Reason = "unhealthy at the last crawl"
			if m.Reason != "" {
				c.Reason += ": " + m.Reason
			}
		default:
			c.Reason = "not among the tiers of region " + w.ex.Client.Region + " (restricted to other client countries)"
		}
		w.cands = append(w.cands, c)
	}
}

// explainManifest says what a manifest request gets: manifests are answered by this server,
// never sent to mirrors; with regional manifests on, a tag gets its region's variant.
func (s *Server) explainManifest(ex *routeExplanation, g *generation, ref string) bool {
	repo := g.repos[ex.Repository]
	if repo == nil {
		return false
	}
	var e *manifestEntry
	byTag := strings.IndexByte(ref, ':') < 0
	if byTag {
		if layout.ValidateTag(ref) != nil {
			return false
		}
		e = repo.tags[ref]
	} else {
		if _, err := layout.ParseDigest(ref); err != nil {
			return false
		}
		e = repo.manifests[ref]
	}
	if e == nil {
		return false
	}
	ex.Ref, ex.Manifest = ref, e.digest
	ex.Candidates = []routeCandidate{}
	ex.Decision = "this server answers the manifest " + e.digest + " (" + e.mediaType + "); manifests never go to mirrors"
	if s.opts.RegionalManifests && byTag && g.variants != nil {
		if reg := g.regions[ex.Client.Region]; reg != nil && reg.variantSet >= 0 {
			if v := s.variantOf(g, reg, e); v != nil {
				ex.Decision = fmt.Sprintf("this server answers region %s's variant of %s: its layers' urls name the region's mirrors, then the origin", reg.key, e.digest)
				ex.To = []string{v.digest}
			}
		}
	}
	return true
}

// netblockBits is the length of m's most specific netblock holding addr, -1 for none.
func netblockBits(m *mirrorEntry, addr netip.Addr) int {
	addr = addr.Unmap()
	b := -1
	for _, p := range m.netblocks {
		if p.Bits() > b && p.Contains(addr) {
			b = p.Bits()
		}
	}
	return b
}

func (s *Server) writeRoute(st *reqState, r *http.Request, ex *routeExplanation) {
	h := st.Header()
	h["Cache-Control"] = routeCacheControl
	h["Vary"] = hdrVaryAccept
	var body []byte
	if wantsJSON(r) {
		b, err := json.Marshal(ex)
		if err != nil {
			writeError(st, r, errInternal, "")
			return
		}
		body = b
		h["Content-Type"] = hdrJSON
	} else {
		var buf bytes.Buffer
		if err := routeTemplate.Execute(&buf, ex); err != nil {
			writeError(st, r, errInternal, "")
			return
		}
		body = buf.Bytes()
		h["Content-Type"] = hdrHTML
	}
	h["Content-Length"] = []string{strconv.Itoa(len(body))}
	st.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = st.Write(body)
	}
}

// routeCacheControl: an explanation depends on the asker's address and on the probes.
var routeCacheControl = []string{"private, max-age=5"}

// wantsJSON reports whether the Accept header names application/json.
func wantsJSON(r *http.Request) bool {
	for _, v := range r.Header.Values("Accept") {
		for part := range strings.SplitSeq(v, ",") {
			if mt, _, err := mime.ParseMediaType(strings.TrimSpace(part)); err == nil && mt == "application/json" {
				return true
			}
		}
	}
	return false
}

var routeTemplate = template.Must(template.New("route").Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>regmirror: why this route</title>
<style>
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left;vertical-align:top}
th{background:#f2f2f2}.taken{color:#075e07;font-weight:bold}
code{font-size:.95em}
</style></head><body>
<h1>Why this route</h1>
<table id="client">
<tr><th>client</th><td>{{with .Client.IP}}{{.}} {{end}}{{with .Client.Country}}country {{.}} {{end}}{{with .Client.Continent}}({{.}}) {{end}}{{with .Client.ASN}}AS{{.}}{{end}}</td></tr>
<tr><th>region</th><td id="region">{{.Client.Region}}</td></tr>
<tr><th>repository</th><td><code>{{.Repository}}</code> (generation {{.Generation}})</td></tr>
{{with .Digest}}<tr><th>blob</th><td><code>{{.}}</code></td></tr>{{end}}
{{with .Ref}}<tr><th>manifest</th><td><code>{{.}}</code></td></tr>{{end}}
<tr><th>decision</th><td id="decision">{{.Decision}}</td></tr>
{{range .To}}<tr><th>to</th><td><code>{{.}}</code></td></tr>{{end}}
</table>
{{if .Candidates}}<h2>Mirrors</h2>
<table id="candidates"><tr><th>mirror</th><th>tier</th><th>verdict</th></tr>
{{range .Candidates}}<tr class="candidate" data-name="{{.Mirror}}"><td>{{.Mirror}}</td><td>{{.Tier}}</td><td>{{if .Taken}}<span class="taken">taken</span>: {{end}}{{.Reason}}</td></tr>
{{end}}</table>{{end}}
<p><a href="/">Status page</a></p>
</body></html>
`))
