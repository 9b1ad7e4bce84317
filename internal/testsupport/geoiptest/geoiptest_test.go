package geoiptest

import (
	"net/netip"
	"path/filepath"
	"testing"

	"github.com/oschwald/maxminddb-golang/v2"
)

func TestWriteAndLookup(t *testing.T) {
	path := filepath.Join(t.TempDir(), "GeoIP2-Country.mmdb")
	nets := []Network{
		{"127.0.1.0/24", "DE", "EU"},
		{"127.0.4.0/24", "jp", "as"},
		{"192.0.2.0/24", "US", "NA"},
		{"2001:db8:1::/48", "FR", "EU"},
	}
	if err := Write(path, nets); err != nil {
		t.Fatal(err)
	}
	r, err := maxminddb.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if err := r.Verify(); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if got := r.Metadata.DatabaseType; got != DatabaseType {
		t.Errorf("database type: got %q, want %q", got, DatabaseType)
	}
	type rec struct {
		Country struct {
			ISOCode string `maxminddb:"iso_code"`
		} `maxminddb:"country"`
		Registered struct {
			ISOCode string `maxminddb:"iso_code"`
		} `maxminddb:"registered_country"`
		Continent struct {
			Code string `maxminddb:"code"`
		} `maxminddb:"continent"`
	}
	for _, tc := range []struct {
		addr               string
		country, continent string // empty: not found
	}{
		{"127.0.1.10", "DE", "EU"},
		{"127.0.1.255", "DE", "EU"},
		{"127.0.4.1", "JP", "AS"},
		{"192.0.2.7", "US", "NA"},
		{"2001:db8:1::5", "FR", "EU"},
		{"127.0.2.10", "", ""},
		{"8.8.8.8", "", ""},
	} {
		res := r.Lookup(netip.MustParseAddr(tc.addr))
		if tc.country == "" {
			if res.Found() {
				t.Errorf("%s: found, want not found", tc.addr)
			}
			continue
		}
		var got rec
		if err := res.Decode(&got); err != nil {
			t.Fatalf("%s: %v", tc.addr, err)
		}
		if got.Country.ISOCode != tc.country || got.Registered.ISOCode != tc.country || got.Continent.Code != tc.continent {
			t.Errorf("%s: got country %q registered %q continent %q, want %s, %s, %s", tc.addr,
				got.Country.ISOCode, got.Registered.ISOCode, got.Continent.Code, tc.country, tc.country, tc.continent)
		}
	}
	if _, err := Bytes([]Network{{"127.0.0.0/8", "Germany", "EU"}}); err == nil {
		t.Error("Bytes with a country name instead of a code: no error, want one")
	}
	if _, err := Bytes([]Network{{"not a cidr", "DE", "EU"}}); err == nil {
		t.Error("Bytes with a bad CIDR: no error, want one")
	}
}
