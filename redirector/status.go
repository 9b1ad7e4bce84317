package redirector

import (
	"bytes"
	"cmp"
	"encoding/json"
	"html/template"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/regmirror/regmirror/layout"
)

// The status page: public and read-only, on serve's listener. GET / is HTML (no external
// assets, no JavaScript), GET /status.json the same data as JSON. It shows the generation,
// every mirror with what the last crawl found, and each region's tiers. A private mirror is
// shown by its name only (Options.HidePrivateMirrors leaves it out).

// statusCacheControl lets a shared cache keep the status page for a few seconds.
var statusCacheControl = []string{"public, max-age=5"}

// statusMirror is one mirror as the status page shows it.
type statusMirror struct {
	Name      string `json:"name"`
	Private   bool   `json:"private,omitempty"`
	URL       string `json:"url,omitempty"`
	Country   string `json:"country,omitempty"`
	Continent string `json:"continent,omitempty"`
	Bandwidth int64  `json:"bandwidth,omitempty"` // Mbit/s
	// Content is what the mirror carries: its subsets, "every architecture" without any.
	Content string `json:"content,omitempty"`
	Enabled bool   `json:"enabled"`
	// What the last crawl found.
	Generation uint64    `json:"generation"` // held; 0 unknown
	Behind     bool      `json:"behind"`     // holds an older generation than the tree's
	Healthy    bool      `json:"healthy"`
	Reason     string    `json:"reason,omitempty"`
	Checked    time.Time `json:"checked,omitzero"`
}

// statusRegion is a region and its tiers of mirror names, most preferred first.
type statusRegion struct {
	Region string     `json:"region"`
	Tiers  [][]string `json:"tiers"`
}

// statusInfo is what the status page shows of one generation, built when it is loaded.
type statusInfo struct {
	Generation uint64         `json:"generation"`
	Created    time.Time      `json:"created"`
	Source     string         `json:"source,omitempty"`
	Origin     string         `json:"origin,omitempty"`
	Mirrors    []statusMirror `json:"mirrors"`
	Regions    []statusRegion `json:"regions"`

	// crawl is every mirror's state, private ones included, for the regmirror_mirrors gauge.
	crawl []crawlState
}

// crawlState is what the last crawl found of a mirror.
type crawlState uint8

const (
	crawlHealthy   crawlState = iota // holding the tree's generation
	crawlBehind                      // healthy, holding an older generation
	crawlUnhealthy                   // not answering as a mirror should
	crawlDisabled                    // enabled: false
	numCrawlStates
)

var crawlStateNames = [numCrawlStates]string{"healthy", "behind", "unhealthy", "disabled"}

func crawlStateOf(mi *layout.Mirror, generation uint64) crawlState {
	switch {
	case !mi.Enabled:
		return crawlDisabled
	case !mi.Healthy:
		return crawlUnhealthy
	case mi.Generation < generation:
		return crawlBehind
	}
	return crawlHealthy
}

// newStatusInfo takes from m what the status page shows; a private mirror by its name only.
func newStatusInfo(m *layout.Meta) *statusInfo {
	si := &statusInfo{Generation: m.Generation, Created: m.Created, Source: m.Source, Origin: m.Origin,
		Mirrors: []statusMirror{}, Regions: []statusRegion{}}
	for _, mi := range m.Mirrors {
		if mi == nil {
			continue
		}
		si.crawl = append(si.crawl, crawlStateOf(mi, m.Generation))
		if mi.Private {
			si.Mirrors = append(si.Mirrors, statusMirror{Name: mi.Name, Private: true})
			continue
		}
		si.Mirrors = append(si.Mirrors, statusMirror{
			Name: mi.Name, URL: mi.URL, Country: mi.Country, Continent: mi.Continent, Bandwidth: mi.Bandwidth,
			Content: contentText(mi.Content), Enabled: mi.Enabled, Generation: mi.Generation, Behind: mi.Generation < m.Generation,
			Healthy: mi.Healthy, Reason: mi.Status, Checked: mi.Checked,
		})
	}
	slices.SortFunc(si.Mirrors, func(a, b statusMirror) int { return cmp.Compare(a.Name, b.Name) })
	for key, r := range m.Regions {
		if r == nil {
			continue
		}
		tiers := make([][]string, 0, len(r.Tiers))
		for _, t := range r.Tiers {
			if len(t) > 0 {
				tiers = append(tiers, slices.Clone(t))
			}
		}
		si.Regions = append(si.Regions, statusRegion{Region: key, Tiers: tiers})
	}
	slices.SortFunc(si.Regions, func(a, b statusRegion) int { return cmp.Compare(regionOrder(a.Region), regionOrder(b.Region)) })
	return si
}

// regionOrder sorts countries first, then continents, then global, each alphabetically.
func regionOrder(key string) string {
	switch {
	case key == "global":
		return "2"
	case layout.IsContinent(key):
		return "1" + key
	}
	return "0" + key
}

// statusView is statusInfo as of one request.
type statusView struct {
	*statusInfo
	AgeSeconds int64  `json:"ageSeconds"`
	Loaded     string `json:"loaded"`
	// Probes is what this server's health probes say; nil when they are off.
	Probes *statusProbes `json:"probes,omitempty"`
}

// statusProbes is this server's Health, as the page shows it: a private mirror by its name
// and state only (a reason may name its host).
type statusProbes struct {
	Interval        string        `json:"interval"`
	ProbesPerMinute float64       `json:"probesPerMinute"`
	Mirrors         []statusProbe `json:"mirrors"`
	Fallbacks       []RegionRoute `json:"fallbacks"` // the regions falling back
}

type statusProbe struct {
	Name       string    `json:"name"`
	Up         bool      `json:"up"`
	Reason     string    `json:"reason,omitempty"`
	LastProbe  time.Time `json:"lastProbe,omitzero"`
	LastResult string    `json:"lastResult,omitempty"`
}

func (s *Server) statusProbes(g *generation) *statusProbes {
	h := s.Health()
	if !h.Probing {
		return nil
	}
	private := map[string]bool{}
	for _, m := range g.status.Mirrors {
		private[m.Name] = m.Private
	}
	sp := &statusProbes{Interval: h.Interval.String(), ProbesPerMinute: h.ProbesPerMinute, Mirrors: []statusProbe{}, Fallbacks: []RegionRoute{}}
	for _, m := range h.Mirrors {
		switch {
		case private[m.Name] && s.opts.HidePrivateMirrors:
		case private[m.Name]:
			sp.Mirrors = append(sp.Mirrors, statusProbe{Name: m.Name, Up: m.Up})
		default:
			sp.Mirrors = append(sp.Mirrors, statusProbe{Name: m.Name, Up: m.Up, Reason: m.Reason, LastProbe: m.LastProbe, LastResult: m.LastResult})
		}
	}
	for _, r := range h.Regions {
		if r.Fallback {
			if slices.ContainsFunc(h.Mirrors, func(m MirrorHealth) bool { return private[m.Name] && strings.Contains(r.Reason, m.Name+":") }) {
				r.Reason = "mirrors out of rotation"
			}
			sp.Fallbacks = append(sp.Fallbacks, r)
		}
	}
	return sp
}

func (s *Server) statusView(g *generation) statusView {
	info := g.status
	if s.opts.HidePrivateMirrors {
		c := *info
		c.Mirrors = slices.DeleteFunc(slices.Clone(info.Mirrors), func(m statusMirror) bool { return m.Private })
		info = &c
	}
	return statusView{statusInfo: info, AgeSeconds: int64(time.Since(g.created) / time.Second), Loaded: g.loaded.UTC().Format(time.RFC3339),
		Probes: s.statusProbes(g)}
}

func (s *Server) serveStatusJSON(st *reqState, r *http.Request, g *generation) {
	body, err := json.Marshal(s.statusView(g))
	if err != nil {
		writeError(st, r, errInternal, "")
		return
	}
	s.writeStatus(st, r, hdrJSON, body)
}

func (s *Server) serveStatusHTML(st *reqState, r *http.Request, g *generation) {
	var buf bytes.Buffer
	if err := statusTemplate.Execute(&buf, s.statusView(g)); err != nil {
		writeError(st, r, errInternal, "")
		return
	}
	s.writeStatus(st, r, hdrHTML, buf.Bytes())
}

var hdrHTML = []string{"text/html; charset=utf-8"}

func (s *Server) writeStatus(st *reqState, r *http.Request, ctype []string, body []byte) {
	h := st.Header()
	h["Content-Type"] = ctype
	h["Content-Length"] = []string{strconv.Itoa(len(body))}
	h["Cache-Control"] = statusCacheControl
	st.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = st.Write(body)
	}
}

var statusTemplate = template.Must(template.New("status").Funcs(template.FuncMap{
	"ago": func(t time.Time) string {
		if t.IsZero() {
			return "never"
		}
		return time.Since(t).Truncate(time.Second).String() + " ago"
	},
	"utc": func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
}).Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>regmirror status: generation {{.Generation}}</title>
<style>
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left;vertical-align:top}
th{background:#f2f2f2}
.ok{color:#075e07}.bad{color:#a40000}.warn{color:#8a5a00}
code{font-size:.95em}
</style></head><body>
<h1>regmirror status</h1>
<h2>Generation</h2>
<table id="generation">
<tr><th>number</th><td id="gen-number">{{.Generation}}</td></tr>
<tr><th>created</th><td>{{utc .Created}} ({{ago .Created}})</td></tr>
{{with .Source}}<tr><th>source</th><td><code>{{.}}</code></td></tr>{{end}}
{{with .Origin}}<tr><th>origin</th><td><code>{{.}}</code></td></tr>{{end}}
<tr><th>loaded by this server</th><td>{{.Loaded}}</td></tr>
</table>
<h2>Mirrors</h2>
{{if .Mirrors}}<table id="mirrors">
<tr><th>name</th><th>country</th><th>continent</th><th>bandwidth</th><th>content</th><th>generation held</th><th>state</th><th>last checked</th><th>url</th></tr>
{{range .Mirrors}}<tr class="mirror" data-name="{{.Name}}">
<td>{{.Name}}{{if .Private}} (private){{end}}</td>
<td>{{.Country}}</td><td>{{.Continent}}</td>
<td>{{if .Bandwidth}}{{.Bandwidth}} Mbit/s{{end}}</td>
<td class="content">{{.Content}}</td>
<td>{{if .Private}}{{else if .Generation}}{{.Generation}}{{if .Behind}} <span class="warn">(behind)</span>{{end}}{{else}}unknown{{end}}</td>
<td>{{if .Private}}—{{else if not .Enabled}}<span class="warn">disabled</span>{{else if .Healthy}}<span class="ok">healthy</span>{{else}}<span class="bad">unhealthy</span>{{end}}{{with .Reason}}: {{.}}{{end}}</td>
<td>{{if .Private}}{{else}}{{ago .Checked}}{{end}}</td>
<td>{{with .URL}}<code>{{.}}</code>{{end}}</td>
</tr>
{{end}}</table>
{{else}}<p>No mirrors: this server sends every blob to {{if .Origin}}the origin{{else}}its own tree{{end}}.</p>
{{end}}
{{with .Probes}}<h2>Health probes (this server)</h2>
<p>Every mirror probed every {{.Interval}} (±20%): {{printf "%.0f" .ProbesPerMinute}} probes a minute per mirror.</p>
{{if .Mirrors}}<table id="probes">
<tr><th>mirror</th><th>rotation</th><th>last probe</th></tr>
{{range .Mirrors}}<tr class="probe" data-name="{{.Name}}"><td>{{.Name}}</td><td>{{if .Up}}<span class="ok">in</span>{{else}}<span class="bad">out</span>{{end}}{{with .Reason}}: {{.}}{{end}}</td><td>{{if .LastProbe.IsZero}}{{else}}{{ago .LastProbe}}: {{.LastResult}}{{end}}</td></tr>
{{end}}</table>{{end}}
{{if .Fallbacks}}<table id="fallbacks">
<tr><th>region</th><th>blob downloads go to</th><th>because</th></tr>
{{range .Fallbacks}}<tr><td>{{.Region}}</td><td class="warn">{{.Route}}</td><td>{{.Reason}}</td></tr>
{{end}}</table>{{else}}<p>Every region on its own mirrors.</p>{{end}}
{{end}}
<h2>Regions</h2>
{{if .Regions}}<table id="regions">
<tr><th>region</th><th>tiers, most preferred first</th></tr>
{{range .Regions}}<tr><td>{{.Region}}</td><td>{{range $i, $t := .Tiers}}{{if $i}} → {{end}}{{range $j, $m := $t}}{{if $j}}, {{end}}{{$m}}{{end}}{{end}}</td></tr>
{{end}}</table>
{{else}}<p>No regions.</p>{{end}}
<p>The same data as JSON: <a href="/status.json">/status.json</a>. Why a client is sent where: <code>/route?country=CC&amp;repo=NAME&amp;digest=DIGEST</code>.</p>
</body></html>
`))

// contentText shows a mirror's content: its subsets, or "every architecture" without any.
func contentText(content []string) string {
	if len(content) == 0 {
		return "every architecture"
	}
	return strings.Join(content, ", ")
}
