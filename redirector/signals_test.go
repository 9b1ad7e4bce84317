package redirector

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/regmirror/regmirror/layout"
)

// A selector is one series selector of an alert or a dashboard expression:
// name{label="value",label=~"regexp"}, and whether the expression compares it with 0.
type selector struct {
	text     string
	name     string
	matchers [][3]string // label, op (= or =~ or !=), value
	zero     bool        // "== 0": the series moves when some sample is 0
}

var (
	selectorRE = regexp.MustCompile(`(regmirror_[a-z0-9_]+)?(\{[^}]*\})?(\s*==\s*0)?`)
	matcherRE  = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!=|=)\s*"([^"]*)"`)
)

// parseSelectors finds the regmirror series an expression names. A bare {…} (a table cell
// going on from the previous one) applies to the last name seen.
func parseSelectors(expr, lastName string) []selector {
	var out []selector
	for _, m := range selectorRE.FindAllStringSubmatch(expr, -1) {
		name := m[1]
		if name == "" && m[2] == "" {
			continue
		}
		if name == "" {
			name = lastName
		}
		if name == "" {
			continue
		}
		lastName = name
		s := selector{text: strings.TrimSpace(m[0]), name: name, zero: m[3] != ""}
		for _, mm := range matcherRE.FindAllStringSubmatch(m[2], -1) {
			s.matchers = append(s.matchers, [3]string{mm[1], mm[2], mm[3]})
		}
		out = append(out, s)
	}
	return out
}

// docSelectors are the series of docs/release-engineers.md's "What to alert on" table (its
// first column's code spans).
func docSelectors(t *testing.T) []selector {
	t.Helper()
	b, err := os.ReadFile("../docs/release-engineers.md")
	check(t, err)
	_, table, ok := strings.Cut(string(b), "## What to alert on")
	if !ok {
		t.Fatal(`docs/release-engineers.md has no "What to alert on" section`)
	}
	table, _, _ = strings.Cut(table, "\n\nFrom the generator host")
	var out []selector
	for line := range strings.Lines(table) {
		cells := strings.Split(line, " | ")
		if !strings.HasPrefix(line, "| `") || len(cells) < 3 {
			continue
		}
		last := ""
		for _, span := range regexp.MustCompile("`([^`]+)`").FindAllStringSubmatch(cells[0], -1) {
			sels := parseSelectors(span[1], last)
			for _, s := range sels {
				last = s.name
			}
			out = append(out, sels...)
		}
	}
	if len(out) < 10 {
		t.Fatalf("found %d series in the alert table, want at least 10: %+v", len(out), out)
	}
	return out
}

// dashboardSelectors are the series of deploy/grafana/regmirror.json's panels.
func dashboardSelectors(t *testing.T) []selector {
	t.Helper()
	b, err := os.ReadFile("../deploy/grafana/regmirror.json")
	check(t, err)
	var d struct {
		Title  string
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
	}
	check(t, json.Unmarshal(b, &d))
	var out []selector
	for _, p := range d.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("dashboard panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			sels := parseSelectors(tg.Expr, "")
			if len(sels) == 0 {
				t.Errorf("dashboard panel %q: %q names no regmirror series", p.Title, tg.Expr)
			}
			out = append(out, sels...)
		}
	}
	if d.Title == "" || len(d.Panels) < 8 {
		t.Fatalf("dashboard %q has %d panels", d.Title, len(d.Panels))
	}
	return out
}

// sample is one scraped series.
type sample struct {
	name   string
	labels map[string]string
	value  float64
}

func scrapeSamples(t *testing.T, s *Server) []sample {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(scrape(t, s)))
	check(t, err)
	var out []sample
	for name, f := range fams {
		for _, m := range f.Metric {
			sm := sample{name: name, labels: map[string]string{}}
			for _, l := range m.Label {
				sm.labels[l.GetName()] = l.GetValue()
			}
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				sm.value = m.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				sm.value = m.GetGauge().GetValue()
			default:
				continue
			}
			out = append(out, sm)
		}
	}
	return out
}

func (s selector) matches(sm sample) bool {
	if sm.name != s.name {
		return false
	}
	for _, m := range s.matchers {
		v := sm.labels[m[0]]
		switch m[1] {
		case "=":
			if v != m[2] {
				return false
			}
		case "!=":
			if v == m[2] {
				return false
			}
		case "=~":
			if !regexp.MustCompile("^(?:" + m[2] + ")$").MatchString(v) {
				return false
			}
		}
	}
	return true
}

// TestOperatorSignals drives servers through what the alert table and the dashboard watch
// (blobs to mirrors, to the origin and from the local tree; every mirror taken out by the
// probes; a broken generation and a broken GeoIP database refused), then checks that every
// series they name exists, and moved: a counter above 0, a gauge not 0 (or 0 where the
// expression asks "== 0"). Server faults (500, 503) cannot be driven: those need only exist.
func TestOperatorSignals(t *testing.T) {
	mirrored := func(origin string) func(*layout.Meta, *demo) {
		return func(m *layout.Meta, _ *demo) {
			addMirrors(m, 1)
			m.Generation = 2
			for _, mi := range m.Mirrors[:4] {
				mi.Generation = 2 // jp.example stays behind
			}
			m.Origin = origin
		}
	}
	geo := filepath.Join(t.TempDir(), "geo.mmdb")
	writeFile(t, geo, testGeoDB(t, "country"))
	german := "81.2.69.142:5555"

	// A: mirrors and an origin.
	dirA, dm := newTestTree(t, mirrored("https://origin.example/"))
	a := newServer(t, Options{Tree: dirA, GeoIP: geo})
	blob := "/v2/fedora/toolbox/blobs/" + dm.toolboxLayer.String()
	for range 50 { // both German mirrors get their share
		if w := do(a, "GET", blob, german, nil); w.Code != http.StatusTemporaryRedirect || mirrorOf(t, w, dm.toolboxLayer) == "origin.example" {
			t.Fatalf("A, all mirrors up: %d %v", w.Code, w.Header())
		}
	}
	msA := fakeProbes(t, a)
	takeOut(a, msA, "de1.example", "de2.example", "fr.example", "us.example", "jp.example")
	if w := do(a, "GET", blob, german, nil); w.Code != http.StatusTemporaryRedirect || mirrorOf(t, w, dm.toolboxLayer) != "origin.example" {
		t.Fatalf("A, all mirrors out: %d %v", w.Code, w.Header())
	}
	check(t, layout.WriteFile(filepath.Join(dirA, layout.CurrentFile), []byte("{not json")))
	writeFile(t, geo, []byte("not a MaxMind database"))
	if err := a.Check(); err == nil {
		t.Fatal("A: a broken stamp and GeoIP database accepted")
	}

	// B: mirrors, no origin: the local tree.
	dirB, _ := newTestTree(t, mirrored(""))
	b := newServer(t, Options{Tree: dirB})
	takeOut(b, fakeProbes(t, b), "de1.example", "de2.example", "fr.example", "us.example", "jp.example")
	if w := do(b, "GET", blob, german, nil); w.Code != http.StatusOK {
		t.Fatalf("B, all mirrors out: %d, want 200 from the tree", w.Code)
	}

	samples := append(scrapeSamples(t, a), scrapeSamples(t, b)...)
	faults := map[string]bool{
		`regmirror_requests_total{code="500"}`: true, `{code="503"}`: true, `regmirror_requests_total{code=~"500|503"}`: true,
	}
	for _, src := range []struct {
		what string
		sels []selector
	}{{"docs/release-engineers.md", docSelectors(t)}, {"deploy/grafana/regmirror.json", dashboardSelectors(t)}} {
		for _, sel := range src.sels {
			var found, moved bool
			for _, sm := range samples {
				if !sel.matches(sm) {
					continue
				}
				found = true
				if sel.zero && sm.value == 0 || !sel.zero && sm.value != 0 {
					moved = true
				}
			}
			switch {
			case !found:
				t.Errorf("%s names %s: no such series on a running server", src.what, sel.text)
			case !moved && !faults[sel.text]:
				t.Errorf("%s names %s: it exists but did not move", src.what, sel.text)
			}
		}
	}
	for _, want := range []string{"origin", "local", "de1.example", "de2.example"} {
		if !slices.ContainsFunc(samples, func(sm sample) bool {
			return sm.name == "regmirror_blob_downloads_total" && sm.labels["to"] == want && sm.value > 0
		}) {
			t.Errorf("no blob download counted to %s", want)
		}
	}
}

// The selector parser reads what the docs write.
func TestParseSelectors(t *testing.T) {
	cases := []struct {
		name, expr, last string
		want             []string // name and matchers, one string each
	}{
		{"bare name", "regmirror_generation", "", []string{"regmirror_generation"}},
		{"labels", `regmirror_mirrors{state="behind"}`, "", []string{`regmirror_mirrors state=behind`}},
		{"regexp", `sum(rate(regmirror_blob_downloads_total{to=~"origin|local"}[5m]))`, "", []string{`regmirror_blob_downloads_total to=~origin|local`}},
		{"continued cell", `{code="503"}`, "regmirror_requests_total", []string{`regmirror_requests_total code=503`}},
		{"compared with zero", `count(regmirror_mirror_up == 0)`, "", []string{`regmirror_mirror_up ==0`}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var got []string
			for _, s := range parseSelectors(c.expr, c.last) {
				x := s.name
				for _, m := range s.matchers {
					x += " " + m[0] + m[1] + m[2]
				}
				if s.zero {
					x += " ==0"
				}
				got = append(got, x)
			}
			if strings.Join(got, ";") != strings.Join(c.want, ";") {
				t.Errorf("got %q, want %q", got, c.want)
			}
		})
	}
}
