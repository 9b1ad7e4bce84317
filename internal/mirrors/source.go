package mirrors

import (
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"unicode/utf8"

	"github.com/regmirror/regmirror/internal/mirrormanager"
	"github.com/regmirror/regmirror/layout"
)

// Source is where the mirror network comes from: `--mirrors PATH [--mm-directory DIR]`.
type Source struct {
	// Path is a mirrors file (YAML or JSON) or MirrorManager's mirrorlist cache (the
	// protobuf file generate-mirrorlist-cache writes); LoadSource tells them apart by content.
	Path string
	// MMDirectory is the tree's directory in MirrorManager (pub/containers): required with a
	// mirrorlist cache, refused with a mirrors file.
	MMDirectory string
	// MinMirrors, when positive, is recorded as the tree's layout.Meta.MinMirrors.
	MinMirrors int
}

// IsMirrorListCache reports whether a file at path with content data is a MirrorManager
// mirrorlist cache rather than a mirrors file: its name ends in .proto or .bin, or its
// content is not text (a mirrors file is UTF-8 text without control characters other than
// tab, newline and carriage return; a protobuf message starts with a field tag byte, 0x08
// for MirrorList.Time, and holds length bytes below 0x20).
func IsMirrorListCache(path string, data []byte) bool {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".proto", ".bin":
		return true
	}
	if !utf8.Valid(data) {
		return true
	}
	for _, c := range data {
		if c < 0x20 && c != '\t' && c != '\n' && c != '\r' || c == 0x7f {
			return true
		}
	}
	return false
}

// LoadSource reads src: a mirrors file (Load's rules) or, with src.MMDirectory, the hosts
// MirrorManager's mirrorlist cache lists for that directory (FromMirrorManager). A file that
// does not parse is refused with one line naming the file and the problem.
func LoadSource(src Source) (*File, error) {
	f, err := os.Open(src.Path)
	if err != nil {
		return nil, fmt.Errorf("reading mirrors file: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, mirrormanager.MaxSnapshotSize+1))
	if err != nil {
		return nil, fmt.Errorf("reading mirrors file: %w", err)
	}
	if !IsMirrorListCache(src.Path, data) {
		if src.MMDirectory != "" {
			return nil, fmt.Errorf("%s is a mirrors file (YAML), not a MirrorManager mirrorlist cache: Source.MMDirectory applies to a cache only; drop it", src.Path)
		}
		if len(data) > MaxFileSize {
			return nil, &Error{File: src.Path, Msg: fmt.Sprintf("larger than %d bytes", MaxFileSize)}
		}
		return Parse(src.Path, data)
	}
	if len(data) > mirrormanager.MaxSnapshotSize {
		return nil, fmt.Errorf("mirrorlist cache %s: larger than %d bytes", src.Path, mirrormanager.MaxSnapshotSize)
	}
	snap, err := mirrormanager.Decode(data)
	if err != nil {
		return nil, fmt.Errorf("mirrorlist cache %s does not parse (refused): %w", src.Path, err)
	}
	if src.MMDirectory == "" {
		return nil, fmt.Errorf("%s is a MirrorManager mirrorlist cache: name the tree's directory in it with Source.MMDirectory (it has %s)", src.Path, someDirectories(snap.Directories()))
	}
	hosts, err := snap.Hosts(src.MMDirectory)
	if err != nil {
		return nil, fmt.Errorf("mirrorlist cache %s: %w", src.Path, err)
	}
	return FromMirrorManager(hosts, snap.ContinentRedirect), nil
}

func someDirectories(names []string) string {
	const few = 5
	switch {
	case len(names) == 0:
		return "no directories"
	case len(names) > few:
		return fmt.Sprintf("%s, … (%d in all)", strings.Join(names[:few], ", "), len(names))
	}
	return strings.Join(names, ", ")
}

// FromMirrorManager turns the hosts MirrorManager lists for the tree's directory into a
// mirrors file: each host becomes a mirror named as the host (mm-host-<id>), at its first
// http(s) URL for the directory (https first; the URL ends in "/", built from MirrorManager's
// URL + "/" + Subpath), with its country, bandwidth, netblocks, ASNs, allowed client
// countries and private flag. The continent is continentRedirect's (MirrorManager's
// CountryContinentRedirectCache; nil for none), else the country's. A host without any URL a
// mirror file would accept, and a private host without netblocks or ASNs (no client could
// reach it), is left out; so are netblocks and country codes that are not valid. There is no
// origin.
func FromMirrorManager(hosts []mirrormanager.Host, continentRedirect func(string) (string, bool)) *File {
	f := &File{}
	for _, h := range hosts {
		m := Mirror{Name: h.Name, Enabled: true, Private: h.Private}
		for _, u := range h.URLs {
			if s, ok := canonicalURL(u); ok {
				m.URL = s
				break
			}
		}
		if m.URL == "" || checkName(m.Name) != nil {
			continue
		}
		// MirrorManager's data is taken as far as it is valid: what a mirrors file would refuse
		// is left out here, and the mirror then goes through the same normaliser and rules.
		if c := strings.ToUpper(h.Country); c != "" {
			if _, ok := layout.ContinentOf(c); ok {
				m.Country = c
				if continentRedirect != nil {
					if r, ok := continentRedirect(c); ok && layout.IsContinent(strings.ToUpper(r)) {
						m.Continent = r
					}
				}
			}
		}
		m.Bandwidth = min(max(h.Bandwidth, 1), MaxBandwidth)
		for _, nb := range h.Netblocks {
			if p, err := parseNetblock(nb.String()); err == nil {
				m.Netblocks = append(m.Netblocks, p)
			}
		}
		for _, a := range h.ASNs {
			if a != 0 {
				m.ASNs = append(m.ASNs, a)
			}
		}
		for _, c := range h.AllowedCountries {
			if _, ok := layout.ContinentOf(strings.ToUpper(c)); ok {
				m.AllowedCountries = append(m.AllowedCountries, c)
			}
		}
		if len(h.AllowedCountries) > 0 && len(m.AllowedCountries) == 0 {
			continue // restricted to countries none of which is valid: serves nobody
		}
		m.normalize()
		if m.Validate() != nil {
			continue // a private host no client could reach, or another rule broken
		}
		f.Mirrors = append(f.Mirrors, m)
	}
	return f
}

// canonicalURL returns u in the form checkURL accepts (scheme and host in lower case), if
// it can be.
func canonicalURL(s string) (string, bool) {
	u, err := url.Parse(s)
	if err != nil {
		return "", false
	}
	u.Scheme = strings.ToLower(u.Scheme)
	u.Host = strings.ToLower(u.Host)
	c := u.String()
	if checkURL(c) != nil {
		return "", false
	}
	return c, true
}
