// Package geoiptest writes small GeoIP databases for tests: MaxMind DB files in the GeoIP2 /
// GeoLite2 Country schema (country.iso_code, continent.code, registered_country.iso_code, with
// geoname ids and English names as the real ones carry), written with
// github.com/maxmind/mmdbwriter. Reserved networks (loopback, documentation prefixes, private
// ranges) are allowed, so tests can place clients that exist only in X-Forwarded-For headers.
package geoiptest

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/maxmind/mmdbwriter"
	"github.com/maxmind/mmdbwriter/mmdbtype"
)

// DatabaseType is the metadata database_type of the files written here, as MaxMind's.
const DatabaseType = "GeoIP2-Country"

// Network places the clients of one network in a country.
type Network struct {
	// CIDR is the network, IPv4 or IPv6 ("127.0.1.0/24", "2001:db8:1::/48").
	CIDR string
	// Country is an ISO 3166-1 alpha-2 code, Continent a continent code (EU, NA, AS, …).
	Country, Continent string
}

// Bytes returns a MaxMind DB holding the networks.
func Bytes(nets []Network) ([]byte, error) {
	for _, n := range nets {
		if len(n.Country) != 2 || len(n.Continent) != 2 {
			return nil, fmt.Errorf("network %s: country %q and continent %q must be two-letter codes", n.CIDR, n.Country, n.Continent)
		}
	}
	return build(mmdbwriter.Options{
		DatabaseType: DatabaseType,
		Description:  map[string]string{"en": "regmirror test database"},
		Languages:    []string{"en"},
		RecordSize:   28,
	}, len(nets), func(i int) (string, mmdbtype.Map) { return nets[i].CIDR, record(nets[i]) })
}

// build writes a database of n networks, network i being rec(i), reserved ranges included
// (tests place clients in loopback and documentation prefixes).
func build(o mmdbwriter.Options, n int, rec func(i int) (cidr string, data mmdbtype.Map)) ([]byte, error) {
	o.IncludeReservedNetworks = true
	w, err := mmdbwriter.New(o)
	if err != nil {
		return nil, err
	}
	for i := range n {
		cidr, data := rec(i)
		_, ipnet, err := net.ParseCIDR(cidr)
		if err != nil {
			return nil, fmt.Errorf("network %d: %w", i, err)
		}
		if err := w.Insert(ipnet, data); err != nil {
			return nil, fmt.Errorf("network %s: %w", cidr, err)
		}
	}
	var buf bytes.Buffer
	if _, err := w.WriteTo(&buf); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Write writes a MaxMind DB holding the networks to path, through a temporary file and a
// rename, as a database update lands.
func Write(path string, nets []Network) error {
	b, err := Bytes(nets)
	if err == nil {
		err = writeFile(path, b)
	}
	if err != nil {
		return fmt.Errorf("writing GeoIP test database: %w", err)
	}
	return nil
}

// writeFile writes b to path (mode 0644) through a temporary file in the same directory and
// a rename, so a reader watching path sees the old database or the new one, whole.
func writeFile(path string, b []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".geoip-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// record is a GeoIP2 Country record: the registered country is the country.
func record(n Network) mmdbtype.Map {
	country, continent := strings.ToUpper(n.Country), strings.ToUpper(n.Continent)
	name := func(s string) mmdbtype.Map { return mmdbtype.Map{"en": mmdbtype.String(s)} }
	place := func(id uint32, key, code string) mmdbtype.Map {
		return mmdbtype.Map{
			mmdbtype.String(key): mmdbtype.String(code),
			"geoname_id":         mmdbtype.Uint32(id),
			"names":              name(code),
		}
	}
	return mmdbtype.Map{
		"country":            place(geonameID(country), "iso_code", country),
		"registered_country": place(geonameID(country), "iso_code", country),
		"continent":          place(geonameID(continent)+1_000_000, "code", continent),
	}
}

// geonameID is a stable made-up id for a code (the real ids are not needed by anyone).
func geonameID(code string) uint32 {
	var id uint32
	for _, c := range code {
		id = id*31 + uint32(c)
	}
	return id
}
