package layout

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"

	"github.com/regmirror/regmirror/internal/trunc"
)

// The candidate rules, shared by the precompute (regions and variants), the crawl and the
// redirector (the choice of a mirror for one blob).

// Usable reports whether m is a candidate at all: enabled, and found healthy by the last crawl
// (a mirror never crawled is not). Per blob, it is a candidate only if it holds the blob (see
// Holds).
func (m *Mirror) Usable() bool {
	return m != nil && m.Enabled && m.Healthy && m.Generation > 0 && !m.Checked.IsZero()
}

// Holds reports whether m holds blob b: the generation the last crawl found on m is at least
// the one b first appeared in.
func (m *Mirror) Holds(b *Blob) bool { return b != nil && HeldAt(m.Generation, b.Since) }

// HeldAt reports whether a mirror holding generation g holds a blob that first appeared in
// generation since: Holds on bare numbers, for readers that keep their own copies of both.
func HeldAt(g, since uint64) bool { return since <= g }

// DefaultMinMirrors is the number of mirrors a regional candidate list is widened to when
// Meta.MinMirrors is 0: MirrorManager's default minimum.
const DefaultMinMirrors = 5

// MinMirrorsOf returns m.MinMirrors, or DefaultMinMirrors when it is not set.
func (m *Meta) MinMirrorsOf() int {
	if m.MinMirrors > 0 {
		return m.MinMirrors
	}
	return DefaultMinMirrors
}

// ServesRegion reports whether a region's tiers may list m for clients of country (upper
// case; "" for a continent's or the global region, whose clients' countries have no region
// of their own): m is not private, and either serves every country or lists this one.
func (m *Mirror) ServesRegion(country string) bool {
	if m.Private {
		return false
	}
	if len(m.AllowedCountries) == 0 {
		return true
	}
	for _, c := range m.AllowedCountries {
		if c == country {
			return true
		}
	}
	return false
}

// ServesASN reports whether m takes the clients of autonomous system asn (0: unknown).
func (m *Mirror) ServesASN(asn uint32) bool {
	if asn == 0 {
		return false
	}
	for _, a := range m.ASNs {
		if a == asn {
			return true
		}
	}
	return false
}

// CheckMirrorURL is the one rule for the URL of a mirror or an origin, where blobs are at
// URL + BlobPath(d): an absolute http or https URL with a host and a valid port, in canonical
// form, ending in "/", without user info (it would reach every client in redirects), query,
// fragment, or "." and ".." path segments. The mirrors file refuses others; the redirector
// ignores them in metadata and only ever builds a Location from URLs that passed here.
func CheckMirrorURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return errors.New("not a URL")
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return errors.New("want an http:// or https:// URL")
	case u.Host == "" || u.Hostname() == "":
		return errors.New("no host")
	case u.User != nil:
		return errors.New("user info in a mirror URL would reach every client: remove it")
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.ContainsAny(s, "?#"):
		return errors.New("want no query or fragment")
	case u.Opaque != "":
		return errors.New("not a URL")
	case !strings.HasSuffix(s, "/"):
		return errors.New(`must end in "/" (the tree root, where blobs/ is)`)
	case strings.ContainsAny(s, " \t\r\n\"\\<>"):
		return errors.New("contains spaces, quotes or backslashes")
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("port %s: want 1 to 65535", trunc.String(p))
		}
	}
	for seg := range strings.SplitSeq(u.Path, "/") {
		if seg == "." || seg == ".." {
			return fmt.Errorf(`path has a %q segment: give the tree root itself`, seg)
		}
	}
	if u.String() != s {
		return fmt.Errorf("not in canonical form (want %q)", trunc.String(u.String()))
	}
	return nil
}
