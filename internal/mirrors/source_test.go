package mirrors

import (
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/regmirror/regmirror/internal/mirrormanager"
	"github.com/regmirror/regmirror/internal/testsupport/mmtest"
	"github.com/regmirror/regmirror/layout"
)

func TestParseMirrorManagerFields(t *testing.T) {
	f, err := Parse("m.yaml", []byte(`mirrors:
  - name: campus
    url: https://campus.example/c/
    country: de
    netblocks: [10.0.0.0/8]
    asns: [64501, AS64500, as64501]
    private: true
  - name: ca-only
    url: https://ca.example/c/
    country: CA
    allowed_countries: [us, CA]
`))
	if err != nil {
		t.Fatal(err)
	}
	want := []Mirror{
		{Name: "campus", URL: "https://campus.example/c/", Country: "DE", Continent: "EU", Bandwidth: DefaultBandwidth,
			Netblocks: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, ASNs: []uint32{64500, 64501}, Private: true, Enabled: true, Line: 2},
		{Name: "ca-only", URL: "https://ca.example/c/", Country: "CA", Continent: "NA", Bandwidth: DefaultBandwidth,
			AllowedCountries: []string{"CA", "US"}, Enabled: true, Line: 8},
	}
	if !reflect.DeepEqual(f.Mirrors, want) {
		t.Errorf("got  %+v\nwant %+v", f.Mirrors, want)
	}
	if err := f.Validate(); err != nil {
		t.Error(err)
	}
	for _, tc := range []struct{ entry, want string }{
		{"    asns: [0]\n", `m.yaml:5: mirror "a": asn "0": want an AS number 1..4294967295`},
		{"    asns: [AS4294967296]\n", `m.yaml:5: mirror "a": asn "AS4294967296"`},
		{"    asns: 64500\n", `m.yaml:5: mirror "a": asns: want a list of AS numbers`},
		{"    allowed_countries: [UK]\n", `m.yaml:5: mirror "a": allowed country "UK" is not an ISO 3166-1 alpha-2 code (the United Kingdom is GB)`},
		{"    allowed_countries: []\n", `m.yaml:5: mirror "a": allowed_countries is empty`},
		{"    private: yes please\n", `m.yaml:5: mirror "a": private "yes please": want true or false`},
		{"    private: true\n", `m.yaml:2: mirror "a": private mirror without netblocks or asns: no client could reach it`},
	} {
		_, err := Parse("m.yaml", []byte("mirrors:\n  - name: a\n    url: https://a.example/\n    country: DE\n"+tc.entry))
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%q: got %v, want %s", tc.entry, err, tc.want)
		}
	}
}

func testCache() mmtest.Cache {
	return mmtest.Cache{
		Time:              1767225600,
		ContinentRedirect: []mmtest.KV{{K: "tr", V: "eu"}},
		HCURL: []mmtest.IDString{
			{ID: 11, S: "HTTPS://Tr.Example/pub"}, {ID: 21, S: "rsync://x.example/pub"}, {ID: 22, S: "http://x.example/pub/"},
			{ID: 31, S: "https://p.example/pub"}, {ID: 41, S: "https://nowhere.example/pub"}, {ID: 51, S: "https://r.example/pub"},
		},
		HostCountry:   []mmtest.IDString{{ID: 1, S: "TR"}, {ID: 2, S: "DE"}, {ID: 3, S: "FR"}, {ID: 5, S: "US"}},
		HostBandwidth: []mmtest.IDInt{{ID: 1, V: 100}, {ID: 2, V: 20000}},
		HostAllowed:   []mmtest.IDStrings{{ID: 5, SS: []string{"zz"}}},
		HostASN:       []mmtest.IDInts{{ID: 64500, IDs: []int64{2}}},
		Dirs: []mmtest.Dir{{
			Name: "pub/containers", Subpath: mmtest.Str("containers"),
			Global:    []int64{1, 2, 4, 5},
			ByCountry: []mmtest.StrInts{{S: "TR", IDs: []int64{1}}, {S: "DE", IDs: []int64{2}}},
			ByHostID: []mmtest.IDInts{
				{ID: 1, IDs: []int64{11}}, {ID: 2, IDs: []int64{21, 22}}, {ID: 3, IDs: []int64{31}},
				{ID: 4, IDs: []int64{41}}, {ID: 5, IDs: []int64{51}},
			},
		}},
	}
}

// TestFromMirrorManager: every field of a host reaches the mirror, URLs are built from
// MirrorManager's URL + "/" + Subpath and made canonical, and hosts no client could reach are
// left out.
func TestFromMirrorManager(t *testing.T) {
	snap, err := mirrormanager.Decode(testCache().Bytes())
	if err != nil {
		t.Fatal(err)
	}
	hosts, err := snap.Hosts("pub/containers")
	if err != nil {
		t.Fatal(err)
	}
	f := FromMirrorManager(hosts, snap.ContinentRedirect)
	want := []Mirror{
		// TR's continent is AS in the country table; the cache redirects it to EU.
		{Name: "mm-host-1", URL: "https://tr.example/pub/containers/", Country: "TR", Continent: "EU", Bandwidth: 100, Enabled: true},
		// rsync URL skipped, trailing slash tolerated; bandwidth as the cache says.
		{Name: "mm-host-2", URL: "http://x.example/pub/containers/", Country: "DE", Continent: "EU", Bandwidth: 20000, ASNs: []uint32{64500}, Enabled: true},
		// Host 3: private (not in Global) without netblocks or ASNs: left out.
		// Host 4: no country: global only.
		{Name: "mm-host-4", URL: "https://nowhere.example/pub/containers/", Bandwidth: 1, Enabled: true},
		// Host 5: restricted to a country code that is not one: it serves nobody; left out.
	}
	if !reflect.DeepEqual(f.Mirrors, want) {
		t.Errorf("got  %+v\nwant %+v", f.Mirrors, want)
	}
	if err := f.Validate(); err != nil {
		t.Error(err)
	}
}

// TestFromMirrorManagerRefusesImpossibleURLs: a MirrorManager URL with an impossible port or
// a ".." segment is never taken; the host's next valid URL is, else the host is left out.
func TestFromMirrorManagerRefusesImpossibleURLs(t *testing.T) {
	tests := []struct {
		name string
		urls []string
		want string // "" for left out
	}{
		{"port too large", []string{"https://a.example:70000/c/"}, ""},
		{"port zero", []string{"http://a.example:0/c/"}, ""},
		{"dotdot", []string{"https://a.example/pub/../../etc/"}, ""},
		{"encoded dotdot", []string{"https://a.example/pub/%2E%2E/"}, ""},
		{"next URL taken", []string{"https://a.example:99999/c/", "http://a.example/c/"}, "http://a.example/c/"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := FromMirrorManager([]mirrormanager.Host{{ID: 1, Name: "mm-host-1", Country: "DE", Bandwidth: 10, URLs: tc.urls}}, nil)
			var got string
			if len(f.Mirrors) == 1 {
				got = f.Mirrors[0].URL
			}
			if got != tc.want {
				t.Errorf("got %q (%d mirrors), want %q", got, len(f.Mirrors), tc.want)
			}
		})
	}
}

func TestLoadSource(t *testing.T) {
	d := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(d, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cache := testCache().Bytes()
	yamlFile := write("mirrors.yaml", []byte("mirrors:\n  - name: a\n    url: https://a.example/\n    country: DE\n"))
	for _, path := range []string{write("cache", cache), write("mirrorlist_cache.proto", cache), write("x.bin", cache)} {
		f, err := LoadSource(Source{Path: path, MMDirectory: "/pub/containers/"})
		if err != nil || len(f.Mirrors) != 3 {
			t.Errorf("%s: %v %+v", path, err, f)
		}
	}
	if f, err := LoadSource(Source{Path: yamlFile}); err != nil || len(f.Mirrors) != 1 {
		t.Errorf("YAML: %v", err)
	}
	for _, tc := range []struct {
		src  Source
		want string
	}{
		{Source{Path: write("c2", cache)}, "is a MirrorManager mirrorlist cache: name the tree's directory in it with Source.MMDirectory (it has pub/containers)"},
		{Source{Path: yamlFile, MMDirectory: "pub/containers"}, "is a mirrors file (YAML), not a MirrorManager mirrorlist cache"},
		{Source{Path: write("t.proto", cache[:len(cache)-3]), MMDirectory: "pub/containers"}, "does not parse (refused): "},
		{Source{Path: write("g", []byte("\x00\x01garbage")), MMDirectory: "pub/containers"}, "does not parse (refused): "},
		{Source{Path: write("e.bin", nil), MMDirectory: "pub/containers"}, "does not parse (refused): empty file"},
		{Source{Path: write("c3", cache), MMDirectory: "pub/nope"}, `no directory "pub/nope" in the cache`},
		{Source{Path: filepath.Join(d, "missing")}, "reading mirrors file: open "},
	} {
		_, err := LoadSource(tc.src)
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%+v: got %v, want %q", tc.src, err, tc.want)
		}
	}
}

// TestPrecomputeMirrorManagerRules: private mirrors are in no region, a restricted mirror only
// in its countries' regions (which exist for it), and each region's candidate list is widened
// tier by tier to MinMirrors while its tiers stay whole.
func TestPrecomputeMirrorManagerRules(t *testing.T) {
	f := newFixture(t)
	campus := mirror("campus", "DE", "EU", 5000, 2, true)
	campus.Private, campus.Netblocks = true, []string{"10.0.0.0/8"}
	caOnly := mirror("ca-only", "CA", "NA", 5000, 2, true)
	caOnly.AllowedCountries = []string{"CA"}
	f.meta.Mirrors = append(network(), campus, caOnly)
	f.meta.MinMirrors = 2
	if _, err := Precompute(f.meta); err != nil {
		t.Fatal(err)
	}
	tiers := func(r string) [][]string {
		if reg := f.meta.Regions[r]; reg != nil {
			return reg.Tiers
		}
		return nil
	}
	list := func(r string) []string {
		reg := f.meta.Regions[r]
		if reg == nil || reg.VariantSet < 0 {
			return nil
		}
		return f.meta.VariantSets[reg.VariantSet].Mirrors
	}
	for r, want := range map[string][][]string{
		"DE":     {{"de1", "de2"}, {"fr1"}, {"us1"}},
		"US":     {{"us1"}, {"de1", "fr1", "de2"}},
		"CA":     {{"ca-only"}, {"us1"}, {"de1", "fr1", "de2"}},
		"NA":     {{"us1"}, {"de1", "fr1", "de2"}},
		"global": {{"de1", "fr1", "de2", "us1"}},
	} {
		if got := tiers(r); !reflect.DeepEqual(got, want) {
			t.Errorf("%s tiers %v, want %v", r, got, want)
		}
	}
	for r, want := range map[string][]string{
		"DE": {"de1", "de2"},               // two of its own: enough
		"FR": {"fr1", "de1", "de2"},        // one: its continent's too
		"US": {"us1", "de1", "fr1", "de2"}, // one, none else in NA: the world
		"CA": {"ca-only", "us1"},
	} {
		if got := list(r); !reflect.DeepEqual(got, want) {
			t.Errorf("%s list %v, want %v", r, got, want)
		}
	}
	f.meta.MinMirrors = 0 // layout.DefaultMinMirrors: 5
	if _, err := Precompute(f.meta); err != nil {
		t.Fatal(err)
	}
	if got := list("DE"); !reflect.DeepEqual(got, []string{"de1", "de2", "fr1", "us1"}) || layout.DefaultMinMirrors != 5 {
		t.Errorf("DE list with the default minimum: %v", got)
	}
}
