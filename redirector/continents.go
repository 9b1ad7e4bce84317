package redirector

import "github.com/regmirror/regmirror/internal/mirrors"

// continentOf returns the continent code of a country code, or "": for a flat GeoIP database
// that gives only a country, and for a CDN's country header. The table is the mirrors file's.
func continentOf(country string) string {
	c, _ := mirrors.ContinentOf(country)
	return c
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
