package redirector

import (
	"fmt"
	"net/netip"
	"os"
	"syscall"
	"time"

	"github.com/oschwald/maxminddb-golang/v2"
	"github.com/regmirror/regmirror/layout"
)

// geoDB is an opened, verified GeoIP database. It is read into memory (not mapped), so that a
// database file replaced or rewritten in place never changes under a lookup; a reload builds a
// new geoDB and swaps it in.
type geoDB struct {
	path   string
	reader *maxminddb.Reader
	dbType string
	built  time.Time
	fileID fileID
}

// fileID notices a changed file: inode (a file replaced by rename), size and modification
// time (a file rewritten in place).
type fileID struct {
	ino   uint64
	size  int64
	mtime time.Time
}

func statID(path string) (fileID, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileID{}, err
	}
	id := fileID{size: fi.Size(), mtime: fi.ModTime()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		id.ino = uint64(st.Ino)
	}
	return id, nil
}

// maxGeoIPSize bounds what is read into memory (GeoIP2 City is about 130 MB).
const maxGeoIPSize = 1 << 30

// openGeoDB reads, opens and verifies a MaxMind DB file. A corrupt file (bad metadata, a broken
// search tree, bad data pointers) is refused with an error that names the file.
func openGeoDB(path string) (*geoDB, error) {
	id, err := statID(path)
	if err != nil {
		return nil, fmt.Errorf("opening GeoIP database: %w", err)
	}
	if id.size > maxGeoIPSize {
		return nil, fmt.Errorf("opening GeoIP database %s: %d bytes is more than a GeoIP database holds", path, id.size)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("opening GeoIP database: %w", err)
	}
	r, err := openGeoBytes(b)
	if err != nil {
		return nil, fmt.Errorf("GeoIP database %s is not a valid MaxMind DB file: %w", path, err)
	}
	return &geoDB{path: path, reader: r, dbType: r.Metadata.DatabaseType, built: r.Metadata.BuildTime(), fileID: id}, nil
}

func openGeoBytes(b []byte) (r *maxminddb.Reader, err error) {
	defer func() { // the reader is not known to panic on hostile input; be sure
		if p := recover(); p != nil {
			r, err = nil, fmt.Errorf("reading it failed: %v", p)
		}
	}()
	r, err = maxminddb.OpenBytes(b)
	if err != nil {
		return nil, err
	}
	if err := r.Verify(); err != nil {
		return nil, fmt.Errorf("verifying: %w", err)
	}
	return r, nil
}

// geoRecord is the part of a record the redirector reads. It covers MaxMind's GeoIP2/GeoLite2
// Country and City schema and DB-IP's lite databases (country.iso_code, continent.code,
// registered_country.iso_code) and flat databases (top-level country_code, continent_code).
type geoRecord struct {
	Country struct {
		ISOCode string `maxminddb:"iso_code"`
	} `maxminddb:"country"`
	RegisteredCountry struct {
		ISOCode string `maxminddb:"iso_code"`
	} `maxminddb:"registered_country"`
	Continent struct {
		Code string `maxminddb:"code"`
	} `maxminddb:"continent"`
	CountryCode   string `maxminddb:"country_code"`
	ContinentCode string `maxminddb:"continent_code"`
}

// flatRecord is read when a database's "country" is not a map (some flat databases use
// "country" for a name).
type flatRecord struct {
	CountryCode   string `maxminddb:"country_code"`
	ContinentCode string `maxminddb:"continent_code"`
}

// lookup returns the country and continent codes of addr; empty when unknown.
func (db *geoDB) lookup(addr netip.Addr) (country, continent string) {
	if db == nil || !addr.IsValid() {
		return "", ""
	}
	res := db.reader.Lookup(addr.Unmap())
	if !res.Found() {
		return "", ""
	}
	var rec geoRecord
	if err := res.Decode(&rec); err != nil {
		var flat flatRecord
		if res.Decode(&flat) != nil {
			return "", ""
		}
		rec.CountryCode, rec.ContinentCode = flat.CountryCode, flat.ContinentCode
	}
	country = normCode(rec.Country.ISOCode)
	if country == "" {
		country = normCode(rec.CountryCode)
	}
	if country == "" {
		country = normCode(rec.RegisteredCountry.ISOCode)
	}
	continent = normCode(rec.Continent.Code)
	if continent == "" {
		continent = normCode(rec.ContinentCode)
	}
	if continent == "" { // a flat database that gives only a country
		continent, _ = layout.ContinentOf(country)
	}
	return country, continent
}

// normCode returns an upper-case two-letter code, or "" if s is not two ASCII letters. CDN
// placeholders for "unknown" (XX, T1 for Tor, A1/A2 anonymous) are not countries.
func normCode(s string) string {
	if len(s) != 2 {
		return ""
	}
	b := [2]byte{s[0], s[1]}
	for i, c := range b {
		switch {
		case c >= 'a' && c <= 'z':
			b[i] = c - 'a' + 'A'
		case c >= 'A' && c <= 'Z':
		default:
			return ""
		}
	}
	code := string(b[:])
	switch code {
	case "XX", "ZZ", "T1", "A1", "A2", "O1":
		return ""
	}
	return code
}

// asnRecord is the part of a GeoLite2-ASN record the redirector reads.
type asnRecord struct {
	ASN uint32 `maxminddb:"autonomous_system_number"`
}

// lookupASN returns the autonomous system number of addr; 0 when unknown.
func (db *geoDB) lookupASN(addr netip.Addr) uint32 {
	if db == nil || !addr.IsValid() {
		return 0
	}
	res := db.reader.Lookup(addr.Unmap())
	if !res.Found() {
		return 0
	}
	var rec asnRecord
	if res.Decode(&rec) != nil {
		return 0
	}
	return rec.ASN
}
