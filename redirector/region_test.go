package redirector

import (
	"bytes"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/maxmind/mmdbwriter"
	"github.com/maxmind/mmdbwriter/mmdbtype"
	"github.com/regmirror/regmirror/layout"
)

type geoEntry struct {
	cidr string
	rec  mmdbtype.Map
}

// mmdbBytes writes a MaxMind DB with the entries, as the real databases are laid out.
func mmdbBytes(t testing.TB, dbType string, entries []geoEntry) []byte {
	t.Helper()
	w, err := mmdbwriter.New(mmdbwriter.Options{
		DatabaseType:            dbType,
		Description:             map[string]string{"en": "regmirror test database"},
		IncludeReservedNetworks: true,
		RecordSize:              28,
	})
	check(t, err)
	for _, e := range entries {
		_, n, err := net.ParseCIDR(e.cidr)
		check(t, err)
		check(t, w.Insert(n, e.rec))
	}
	var buf bytes.Buffer
	_, err = w.WriteTo(&buf)
	check(t, err)
	return buf.Bytes()
}

func writeFile(t testing.TB, path string, b []byte) {
	t.Helper()
	// Through a rename, as a database update lands; the watcher must notice either way.
	tmp := path + ".tmp"
	check(t, os.WriteFile(tmp, b, 0o644))
	check(t, os.Rename(tmp, path))
}

func names(m map[string]string) mmdbtype.Map {
	out := mmdbtype.Map{}
	for k, v := range m {
		out[mmdbtype.String(k)] = mmdbtype.String(v)
	}
	return out
}

// countryRec is a GeoIP2/GeoLite2 Country (and DB-IP lite) record.
func countryRec(country, continent, registered string) mmdbtype.Map {
	rec := mmdbtype.Map{}
	if country != "" {
		rec["country"] = mmdbtype.Map{"iso_code": mmdbtype.String(country), "geoname_id": mmdbtype.Uint32(1), "names": names(map[string]string{"en": country})}
	}
	if continent != "" {
		rec["continent"] = mmdbtype.Map{"code": mmdbtype.String(continent), "geoname_id": mmdbtype.Uint32(2), "names": names(map[string]string{"en": continent})}
	}
	if registered != "" {
		rec["registered_country"] = mmdbtype.Map{"iso_code": mmdbtype.String(registered), "names": names(map[string]string{"en": registered})}
	}
	return rec
}

// cityRec is a GeoIP2/GeoLite2 City record.
func cityRec(country, continent string) mmdbtype.Map {
	rec := countryRec(country, continent, country)
	rec["city"] = mmdbtype.Map{"geoname_id": mmdbtype.Uint32(3), "names": names(map[string]string{"en": "Somewhere"})}
	rec["location"] = mmdbtype.Map{"latitude": mmdbtype.Float64(50.1), "longitude": mmdbtype.Float64(8.6), "accuracy_radius": mmdbtype.Uint16(100), "time_zone": mmdbtype.String("Europe/Berlin")}
	rec["subdivisions"] = mmdbtype.Slice{mmdbtype.Map{"iso_code": mmdbtype.String("HE")}}
	return rec
}

// flatRec is a flat country_code record (as ipinfo's and some self-made databases are);
// "country" there is a name, not a map.
func flatRec(country, continent string) mmdbtype.Map {
	rec := mmdbtype.Map{"country_code": mmdbtype.String(country), "country": mmdbtype.String("Name of " + country)}
	if continent != "" {
		rec["continent_code"] = mmdbtype.String(continent)
	}
	return rec
}

// The test world: a German, a French, an American, an Austrian (registered country only),
// a Brazilian network, an IPv6 German network, and the netblock of the Japanese mirror.
func testGeoDB(t testing.TB, schema string) []byte {
	type place struct{ cidr, country, continent string }
	places := []place{
		{"81.2.69.0/24", "DE", "EU"},
		{"2.16.0.0/16", "FR", "EU"},
		{"8.8.8.0/24", "US", "NA"},
		{"192.0.2.0/24", "BR", "SA"},
		{"2001:db8:de::/48", "DE", "EU"},
		{"198.51.100.0/24", "JP", "AS"},
	}
	var entries []geoEntry
	for _, p := range places {
		var rec mmdbtype.Map
		switch schema {
		case "country":
			rec = countryRec(p.country, p.continent, p.country)
		case "city":
			rec = cityRec(p.country, p.continent)
		case "flat":
			rec = flatRec(p.country, "")
		case "flat+continent":
			rec = flatRec(p.country, p.continent)
		}
		entries = append(entries, geoEntry{p.cidr, rec})
	}
	if schema == "country" || schema == "city" {
		entries = append(entries, geoEntry{"203.0.113.0/24", countryRec("", "", "AT")})
	}
	dbType := map[string]string{"country": "GeoLite2-Country", "city": "GeoIP2-City", "flat": "ipinfo lite", "flat+continent": "ipinfo lite"}[schema]
	return mmdbBytes(t, dbType, entries)
}

func TestGeoLookupSchemas(t *testing.T) {
	for _, schema := range []string{"country", "city", "flat", "flat+continent"} {
		t.Run(schema, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "geo.mmdb")
			writeFile(t, path, testGeoDB(t, schema))
			db, err := openGeoDB(path)
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range []struct{ addr, country, cont string }{
				{"81.2.69.142", "DE", "EU"},
				{"2.16.5.5", "FR", "EU"},
				{"8.8.8.8", "US", "NA"},
				{"192.0.2.1", "BR", "SA"},
				{"2001:db8:de::1", "DE", "EU"},
				{"::ffff:81.2.69.1", "DE", "EU"},
				{"9.9.9.9", "", ""},
			} {
				country, cont := db.lookup(netip.MustParseAddr(c.addr))
				if country != c.country || cont != c.cont {
					t.Errorf("%s: %s/%s, want %s/%s", c.addr, country, cont, c.country, c.cont)
				}
			}
			if schema == "country" || schema == "city" {
				if country, cont := db.lookup(netip.MustParseAddr("203.0.113.9")); country != "AT" || cont != "EU" {
					t.Errorf("registered country fallback: %s/%s", country, cont)
				}
			}
		})
	}
}

// corruptGeoDBs are damaged databases, like those of libmaxminddb's and MaxMind's test data.
func corruptGeoDBs(t testing.TB) map[string][]byte {
	good := testGeoDB(t, "country")
	marker := []byte("\xab\xcd\xefMaxMind.com")
	mi := bytes.LastIndex(good, marker)
	tree := bytes.Clone(good)
	for i := 0; i < 64; i++ { // the first nodes of the search tree point far outside it
		tree[i] = 0xff
	}
	data := bytes.Clone(good)
	for i := mi - 200; i < mi; i++ { // the data section's end is garbage
		data[i] = 0x5a
	}
	return map[string][]byte{
		"empty":                {},
		"metadata marker only": marker,
		"truncated":            good[:len(good)/2],
		"no metadata":          good[:mi],
		"search tree":          tree,
		"data section":         data,
		"not a database":       []byte(strings.Repeat("GeoIP? no. ", 500)),
	}
}

func TestGeoIPCorruptRefusedAtStart(t *testing.T) {
	dir, _ := newTestTree(t, nil)
	for name, b := range corruptGeoDBs(t) {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "bad.mmdb")
			writeFile(t, path, b)
			_, err := New(Options{Tree: dir, GeoIP: path})
			if err == nil {
				t.Fatal("corrupt GeoIP database accepted")
			}
			if !strings.Contains(err.Error(), path) || strings.Contains(err.Error(), "\n") {
				t.Errorf("error %q should be one line naming the file", err)
			}
		})
	}
	_, err := New(Options{Tree: dir, GeoIP: filepath.Join(t.TempDir(), "missing.mmdb")})
	if err == nil {
		t.Error("missing GeoIP database accepted")
	}
}

func TestGeoIPReload(t *testing.T) {
	dir, dm := newTestTree(t, func(m *layout.Meta, _ *demo) { addMirrors(m, 1) })
	path := filepath.Join(t.TempDir(), "geo.mmdb")
	writeFile(t, path, testGeoDB(t, "country"))
	s := newServer(t, Options{Tree: dir, GeoIP: path})
	blob := "/v2/fedora/blobs/" + dm.baseLayer.String()
	regionOf := func() string {
		w := do(s, "GET", blob, "81.2.69.142:1000", nil)
		if w.Code != http.StatusTemporaryRedirect {
			t.Fatalf("status %d", w.Code)
		}
		return w.Header().Get("Location")
	}
	if loc := regionOf(); !strings.HasPrefix(loc, "https://de") {
		t.Fatalf("German client sent to %s", loc)
	}
	for name, b := range corruptGeoDBs(t) {
		writeFile(t, path, b)
		if err := s.Check(); err == nil {
			t.Fatalf("%s: corrupt database accepted on reload", name)
		}
		if loc := regionOf(); !strings.HasPrefix(loc, "https://de") {
			t.Fatalf("%s: after a refused reload, German client sent to %s", name, loc)
		}
	}
	// A good new database that moves 81.2.69.0/24 to Japan's netblock... no: to Brazil.
	writeFile(t, path, mmdbBytes(t, "GeoLite2-Country", []geoEntry{{"81.2.69.0/24", countryRec("BR", "SA", "BR")}}))
	if err := s.Check(); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for range 200 {
		loc := regionOf()
		seen[loc[:strings.Index(loc, "/pub/")]] = true
	}
	if len(seen) < 4 { // global: every mirror
		t.Errorf("after reload, the client should be global; sent to %v", seen)
	}
}
