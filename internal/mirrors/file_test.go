package mirrors

import (
	"errors"
	"github.com/regmirror/regmirror/internal/mirrormanager"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

const goodFile = `# the network
origin: https://origin.example.org/containers/
mirrors:
  - name: mirror.example.de
    url: https://mirror.example.de/pub/containers/
    country: DE
    bandwidth: 1000
    netblocks: [192.0.2.1/24, "2001:db8::/32", "::ffff:198.51.100.0/120", 192.0.2.0/24]
  - name: ru-east
    url: http://ru.example.net/c/
    country: ru
    continent: as
  - name: off
    url: http://off.example/
    country: US
    enabled: false
`

func TestParseGood(t *testing.T) {
	f, err := Parse("mirrors.yaml", []byte(goodFile))
	if err != nil {
		t.Fatal(err)
	}
	want := &File{
		Origin: "https://origin.example.org/containers/",
		Mirrors: []Mirror{
			{Name: "mirror.example.de", URL: "https://mirror.example.de/pub/containers/", Country: "DE", Continent: "EU", Bandwidth: 1000,
				Netblocks: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("198.51.100.0/24"), netip.MustParsePrefix("2001:db8::/32")},
				Enabled:   true, Line: 4},
			{Name: "ru-east", URL: "http://ru.example.net/c/", Country: "RU", Continent: "AS", Bandwidth: DefaultBandwidth, Enabled: true, Line: 9},
			{Name: "off", URL: "http://off.example/", Country: "US", Continent: "NA", Bandwidth: DefaultBandwidth, Enabled: false, Line: 13},
		},
	}
	if !reflect.DeepEqual(f, want) {
		t.Errorf("got  %+v\nwant %+v", f, want)
	}
	if err := f.Validate(); err != nil {
		t.Error(err)
	}
}

func TestParseJSON(t *testing.T) {
	f, err := Parse("m.json", []byte(`{"mirrors": [{"name": "a", "url": "https://a.example/", "country": "FR", "bandwidth": 10, "enabled": true}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Mirrors) != 1 || f.Mirrors[0].Continent != "EU" || f.Mirrors[0].Bandwidth != 10 {
		t.Errorf("got %+v", f.Mirrors)
	}
}

func TestParseNoMirrors(t *testing.T) {
	for _, in := range []string{"mirrors: []\n", "mirrors:\n", "origin: http://o.example/\n"} {
		f, err := Parse("m.yaml", []byte(in))
		if err != nil || len(f.Mirrors) != 0 {
			t.Errorf("%q: %+v, %v", in, f, err)
		}
	}
}

func TestParseErrors(t *testing.T) {
	const head = "mirrors:\n  - name: x\n    url: https://x.example/\n    country: DE\n"
	for _, tc := range []struct{ name, in, want string }{
		{"empty file", "", "m.yaml: empty file"},
		{"comments only", "# nothing\n", "m.yaml: empty file"},
		{"not yaml", "mirrors: [\n", "m.yaml:1: not valid YAML"},
		{"top level list", "- a\n", "m.yaml:1: the file: want a mapping"},
		{"two documents", "mirrors: []\n---\nmirrors: []\n", "m.yaml:2: more than one YAML document"},
		{"unknown top field", "mirors: []\n", `m.yaml:1: unknown field "mirors"`},
		{"duplicate top field", "mirrors: []\nmirrors: []\n", `m.yaml:2: duplicate field "mirrors" (first at line 1)`},
		{"mirrors not a list", "mirrors: {}\n", "m.yaml:1: mirrors: want a list of mirrors"},
		{"mirror not a mapping", "mirrors:\n  - x\n", "m.yaml:2: mirrors[0]: want a mapping"},
		{"unknown mirror field", head + "    bandwith: 10\n", `m.yaml:5: mirror "x": unknown field "bandwith"`},
		{"duplicate mirror field", head + "    country: FR\n", `m.yaml:5: mirror "x": duplicate field "country" (first at line 4)`},
		{"missing name", "mirrors:\n  - url: https://x.example/\n    country: DE\n", "m.yaml:2: mirrors[0]: missing name"},
		{"bad name", "mirrors:\n  - name: 'a b'\n    url: https://x.example/\n    country: DE\n", `m.yaml:2: mirrors[0]: name "a b": want letters`},
		{"null name", "mirrors:\n  - name:\n    url: https://x.example/\n    country: DE\n", "m.yaml:2: mirrors[0]: name: want a string"},
		{"duplicate name", head + "  - name: x\n    url: https://y.example/\n    country: FR\n", `m.yaml:5: mirror "x": duplicate name (first at line 2)`},
		{"missing url", "mirrors:\n  - name: x\n    country: DE\n", `m.yaml:2: mirror "x": missing url`},
		{"url not http", "mirrors:\n  - name: x\n    url: ftp://x.example/\n    country: DE\n", `m.yaml:3: mirror "x": url "ftp://x.example/": want an http:// or https:// URL`},
		{"url without slash", "mirrors:\n  - name: x\n    url: https://x.example/pub\n    country: DE\n", `m.yaml:3: mirror "x": url "https://x.example/pub": must end in "/"`},
		{"url with user", "mirrors:\n  - name: x\n    url: https://u:p@x.example/\n    country: DE\n", `m.yaml:3: mirror "x": url "https://u:p@x.example/": user info`},
		{"url with query", "mirrors:\n  - name: x\n    url: https://x.example/?a=/\n    country: DE\n", `m.yaml:3: mirror "x": url "https://x.example/?a=/": want no query`},
		{"url without host", "mirrors:\n  - name: x\n    url: https:///pub/\n    country: DE\n", `m.yaml:3: mirror "x": url "https:///pub/": no host`},
		{"url port too large", "mirrors:\n  - name: x\n    url: https://x.example:99999/\n    country: DE\n", `m.yaml:3: mirror "x": url "https://x.example:99999/": port 99999: want 1 to 65535`},
		{"url port zero", "mirrors:\n  - name: x\n    url: http://x.example:0/c/\n    country: DE\n", `m.yaml:3: mirror "x": url "http://x.example:0/c/": port 0: want 1 to 65535`},
		{"url port of 80 digits", "mirrors:\n  - name: x\n    url: http://x.example:" + strings.Repeat("9", 200) + "/\n    country: DE\n", `port 999999999999999999999999999999999999999…99999999999999999999999999999999999999: want 1 to 65535`},
		{"url dotdot", "mirrors:\n  - name: x\n    url: https://x.example/pub/../etc/\n    country: DE\n", `m.yaml:3: mirror "x": url "https://x.example/pub/../etc/": path has a ".." segment: give the tree root itself`},
		{"url encoded dotdot", "mirrors:\n  - name: x\n    url: https://x.example/pub/%2e%2e/\n    country: DE\n", `path has a ".." segment`},
		{"url dot", "mirrors:\n  - name: x\n    url: https://x.example/./\n    country: DE\n", `path has a "." segment`},
		{"url a list", "mirrors:\n  - name: x\n    url: [a]\n    country: DE\n", `m.yaml:3: mirror "x": url: want a string`},
		{"missing country", "mirrors:\n  - name: x\n    url: https://x.example/\n", `m.yaml:2: mirror "x": missing country`},
		{"unknown country", "mirrors:\n  - name: x\n    url: https://x.example/\n    country: XX\n", `m.yaml:4: mirror "x": country "XX" is not an ISO 3166-1 alpha-2 code`},
		{"country UK", "mirrors:\n  - name: x\n    url: https://x.example/\n    country: UK\n", `country "UK" is not an ISO 3166-1 alpha-2 code (the United Kingdom is GB)`},
		{"country alpha-3", "mirrors:\n  - name: x\n    url: https://x.example/\n    country: DEU\n", `m.yaml:4: mirror "x": country "DEU" is not an ISO 3166-1 alpha-2 code`},
		{"bad continent", head + "    continent: XX\n", `m.yaml:5: mirror "x": continent "XX" is not one of AF AN AS EU NA OC SA`},
		{"negative bandwidth", head + "    bandwidth: -5\n", `m.yaml:5: mirror "x": bandwidth -5: must be positive`},
		{"zero bandwidth", head + "    bandwidth: 0\n", `m.yaml:5: mirror "x": bandwidth 0: must be positive`},
		{"float bandwidth", head + "    bandwidth: 1.5\n", `m.yaml:5: mirror "x": bandwidth "1.5": want a whole number`},
		{"string bandwidth", head + "    bandwidth: fast\n", `m.yaml:5: mirror "x": bandwidth "fast": want a whole number`},
		{"huge bandwidth", head + "    bandwidth: 99999999999\n", `m.yaml:5: mirror "x": bandwidth 99999999999: more than`},
		{"bad cidr", head + "    netblocks: [10.0.0.0/33]\n", `m.yaml:5: mirror "x": netblock "10.0.0.0/33": not a CIDR`},
		{"address not cidr", head + "    netblocks:\n      - 10.0.0.1\n", `m.yaml:6: mirror "x": netblock "10.0.0.1": not a CIDR`},
		{"cidr everything", head + "    netblocks: [0.0.0.0/0]\n", `m.yaml:5: mirror "x": netblock "0.0.0.0/0": covers every address`},
		{"netblocks not a list", head + "    netblocks: 10.0.0.0/8\n", `m.yaml:5: mirror "x": netblocks: want a list of CIDRs`},
		{"enabled not bool", head + "    enabled: yes\n", `m.yaml:5: mirror "x": enabled "yes": want true or false`},
		{"alias", "base: &b\n  country: DE\nmirrors: []\n", `m.yaml:1: unknown field "base"`},
		{"alias value", "mirrors:\n  - &m\n    name: x\n    url: https://x.example/\n    country: DE\n  - *m\n", "m.yaml:6: mirrors[1]: aliases (*name) are not supported"},
		{"merge key", "mirrors:\n  - <<: {country: DE}\n    name: x\n    url: https://x.example/\n", "m.yaml:2: mirror \"x\": unsupported key"},
		{"bad origin", "origin: https://o.example\n", `m.yaml:1: origin "https://o.example": must end in "/"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := Parse("m.yaml", []byte(tc.in))
			if err == nil {
				t.Fatalf("accepted: %+v", f)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got  %v\nwant %s", err, tc.want)
			}
			var es Errors
			if !errors.As(err, &es) || len(es) == 0 {
				t.Errorf("error %T is not Errors", err)
			}
		})
	}
}

func TestParseReportsEveryProblem(t *testing.T) {
	_, err := Parse("m.yaml", []byte("mirrors:\n  - name: a\n    url: x\n    country: XX\n  - name: b\n    bandwidth: -1\n"))
	var es Errors
	if !errors.As(err, &es) {
		t.Fatalf("got %v", err)
	}
	if len(es) != 5 {
		t.Errorf("got %d problems, want 5: %v", len(es), []*Error(es))
	}
	if !strings.HasSuffix(err.Error(), "(and 4 more problems)") {
		t.Errorf("message %q", err)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "mirrors.yaml")
	if err := os.WriteFile(path, []byte("mirrors:\n  - name: x\n    url: https://x.example/\n    country: XX\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Load(path)
	if want := path + `:4: mirror "x": country "XX" is not an ISO 3166-1 alpha-2 code`; err == nil || err.Error() != want {
		t.Errorf("got  %v\nwant %s", err, want)
	}
	if _, err := Load(filepath.Join(dir, "none.yaml")); err == nil || !strings.Contains(err.Error(), "reading mirrors file") {
		t.Errorf("missing file: %v", err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(goodFile))
	f.Add([]byte(`{"mirrors":[{"name":"a","url":"https://a.example/","country":"FR"}]}`))
	f.Add([]byte("mirrors:\n  - &m {name: x}\n  - *m\n"))
	f.Add([]byte("origin: http://[::1]:80/\nmirrors: []\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := Parse("fuzz.yaml", data)
		if err != nil {
			var es Errors
			if !errors.As(err, &es) || len(es) == 0 {
				t.Fatalf("error %T %v is not Errors", err, err)
			}
			return
		}
		if err := file.Validate(); err != nil {
			t.Fatalf("accepted an invalid file: %v\n%q", err, data)
		}
	})
}

func TestExampleFile(t *testing.T) {
	f, err := Load(filepath.Join("testdata", "mirrors.example.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Mirrors) != 4 || f.Origin == "" || f.Mirrors[2].Continent != "AS" || f.Mirrors[1].Continent != "EU" || f.Mirrors[3].Enabled {
		t.Errorf("%+v", f)
	}
}

func TestParseContent(t *testing.T) {
	tests := []struct {
		name, content string
		want          []string
		err           string
	}{
		{"absent", "", nil, ""},
		{"architectures", "content: [arm64, amd64]", []string{"arm64", "amd64"}, ""},
		{"duplicates dropped", "content: [archive, archive]", []string{"archive"}, ""},
		{"empty", "content: []", nil, `m.yaml:5: mirror "m1": content is empty: leave it out to carry every architecture`},
		{"not a list", "content: amd64", nil, `m.yaml:5: mirror "m1": content: want a list of subsets (architectures like amd64, or archive)`},
		{"unknown", "content: [aarch64]", nil, `m.yaml:5: mirror "m1": content: "aarch64" is not a subset: want an OCI architecture (386 amd64 arm arm64 loong64 mips mips64 mips64le mipsle ppc64 ppc64le riscv64 s390x wasm) or archive (aarch64 is arm64)`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, err := Parse("m.yaml", []byte("mirrors:\n  - name: m1\n    url: https://m1.example/c/\n    country: DE\n    "+tc.content+"\n"))
			if tc.err != "" {
				if err == nil || err.Error() != tc.err {
					t.Fatalf("got %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := f.Mirrors[0].Content; !slices.Equal(got, tc.want) {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

// TestOneNormaliser: a mirror read from a mirrors file and the same host read from
// MirrorManager's cache come out identical: one normaliser and one set of rules for both.
func TestOneNormaliser(t *testing.T) {
	f, err := Parse("m.yaml", []byte(`mirrors:
  - name: mm-host-7
    url: https://m.example/pub/containers/
    country: de
    bandwidth: 500
    netblocks: [192.0.2.0/24, 10.0.0.0/8, 192.0.2.0/24]
    asns: [64501, 64500, 64500]
    allowed_countries: [at, DE, at]
`))
	if err != nil {
		t.Fatal(err)
	}
	mm := FromMirrorManager([]mirrormanager.Host{{
		Name: "mm-host-7", URLs: []string{"HTTPS://M.example/pub/containers/"}, Country: "De", Bandwidth: 500,
		Netblocks: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.0.2.0/24")},
		ASNs:      []uint32{64501, 64500, 64500}, AllowedCountries: []string{"at", "DE", "at"},
	}}, nil)
	got, want := mm.Mirrors, f.Mirrors
	want[0].Line = 0
	if !reflect.DeepEqual(got, want) {
		t.Errorf("from MirrorManager:\n%+v\nfrom the mirrors file:\n%+v", got, want)
	}
	if w := want[0]; w.Continent != "EU" || len(w.Netblocks) != 2 || len(w.ASNs) != 2 || strings.Join(w.AllowedCountries, ",") != "AT,DE" {
		t.Errorf("not normalised: %+v", w)
	}
}
