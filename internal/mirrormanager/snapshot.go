package mirrormanager

import (
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"slices"
	"sort"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
)

// MaxSnapshotSize bounds the cache file Load reads. Fedora's cache, for every directory
// of every category, is far smaller; a file beyond this is refused, not read.
const MaxSnapshotSize = 1 << 30

// Host is one mirror that MirrorManager lists for a directory.
type Host struct {
	// ID is MirrorManager's host.id.
	ID int64
	// Name is "mm-host-<id>": the cache carries no host names.
	Name string
	// Country is the host's upper-case ISO 3166-1 alpha-2 code, "" when MirrorManager has none
	// (such a host is reachable through netblock, ASN and global only).
	Country string
	// Bandwidth is MirrorManager's bandwidth_int (Mbit/s), at least 1.
	Bandwidth int64
	// Netblocks are the networks whose clients MirrorManager sends to this host first.
	Netblocks []netip.Prefix
	// ASNs are the autonomous systems whose clients MirrorManager sends to this host
	// (the host's ASN and its peer ASNs, when the host enabled asn_clients).
	ASNs []uint32
	// AllowedCountries, when not empty, are the only client countries this host serves
	// (upper-case).
	AllowedCountries []string
	// Private hosts (the host or its site is private) are reached through Netblocks and
	// ASNs only: MirrorManager keeps them out of Global and ByCountry.
	Private bool
	// Internet2 reports that MirrorManager lists the host in ByCountryInternet2 for the
	// directory (informational: the Rust mirrorlist-server no longer uses it).
	Internet2 bool
	// URLs are the host's http(s) URLs for the directory, https first, each ending in "/"
	// so that URL + "blobs/sha256/<hex>" names a blob.
	URLs []string
}

// Snapshot is the part of a decoded mirrorlist cache that mirror choice needs.
type Snapshot struct {
	// Time is when generate-mirrorlist-cache wrote the cache.
	Time time.Time

	netblockCountry   []netblockCountry
	continentRedirect map[string]string
	hcURL             map[int64]string
	hostASNs          map[int64][]uint32
	hostCountry       map[int64]string
	hostBandwidth     map[int64]int64
	hostAllowed       map[int64][]string
	hostNetblocks     map[int64][]netip.Prefix
	// dirs holds each directory's encoded MirrorListCacheType, checked by Decode and
	// decoded again by Hosts: a cache has a list per directory of every category, and a
	// caller wants one or a few, so the decoded lists are not kept.
	dirs     map[string]field
	dirNames []string // in file order
}

type netblockCountry struct {
	prefix  netip.Prefix
	country string
}

// directory is one MirrorListCacheType.
type directory struct {
	name      string
	subpath   string
	global    map[int64]bool
	byCountry map[int64]string
	internet2 map[int64]bool
	byHostID  []intInts // host.id → [host_category_url.id], in file order
}

// Load reads the mirrorlist cache at path and returns the hosts MirrorManager lists for
// directory (see Snapshot.Hosts).
func Load(path, directory string) ([]Host, error) {
	s, err := LoadSnapshot(path)
	if err != nil {
		return nil, err
	}
	hosts, err := s.Hosts(directory)
	if err != nil {
		return nil, fmt.Errorf("mirrorlist cache %s: %w", path, err)
	}
	return hosts, nil
}

// LoadSnapshot reads and decodes the mirrorlist cache at path. Errors name the file.
func LoadSnapshot(path string) (*Snapshot, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("mirrorlist cache: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxSnapshotSize+1))
	if err != nil {
		return nil, fmt.Errorf("mirrorlist cache %s: %w", path, err)
	}
	if len(b) > MaxSnapshotSize {
		return nil, fmt.Errorf("mirrorlist cache %s: larger than %d bytes", path, MaxSnapshotSize)
	}
	s, err := Decode(b)
	if err != nil {
		return nil, fmt.Errorf("mirrorlist cache %s: %w", path, err)
	}
	return s, nil
}

// Decode decodes a mirrorlist cache: one protobuf MirrorList message, no length prefix.
// Truncated or malformed input, a field with the wrong wire type, and a missing required
// field are errors; Decode never panics. The Snapshot keeps references into b.
func Decode(b []byte) (*Snapshot, error) {
	s := &Snapshot{
		continentRedirect: map[string]string{},
		hcURL:             map[int64]string{},
		hostASNs:          map[int64][]uint32{},
		hostCountry:       map[int64]string{},
		hostBandwidth:     map[int64]int64{},
		hostAllowed:       map[int64][]string{},
		hostNetblocks:     map[int64][]netip.Prefix{},
		dirs:              map[string]field{},
	}
	if len(b) == 0 {
		return nil, errors.New("empty file (no MirrorList.Time)")
	}
	haveTime := false
	err := walk(b, 0, fname{a: "MirrorList"}, func(f field) error {
		switch f.num {
		case fieldTime:
			if err := wantType(f, fname{a: "MirrorList.Time"}, protowire.VarintType); err != nil {
				return err
			}
			haveTime = true
			sec := int64(f.u)
			if f.u > 1<<62 {
				return fmt.Errorf("field MirrorList.Time (1) at byte %d: %d is not a time", f.off, f.u)
			}
			s.Time = time.Unix(sec, 0).UTC()
		case fieldNetblockCountryCache:
			e, err := decodeStringString(f, fname{a: "MirrorList.NetblockCountryCache"})
			if err != nil {
				return err
			}
			if p, ok := parseNetblock(e.key); ok {
				s.netblockCountry = append(s.netblockCountry, netblockCountry{p, strings.ToUpper(e.value)})
			}
		case fieldHCUrlCache:
			e, err := decodeIntString(f, fname{a: "MirrorList.HCUrlCache"})
			if err != nil {
				return err
			}
			s.hcURL[e.key] = e.value
		case fieldCountryContinentRedirectCache:
			e, err := decodeStringString(f, fname{a: "MirrorList.CountryContinentRedirectCache"})
			if err != nil {
				return err
			}
			s.continentRedirect[strings.ToUpper(e.key)] = strings.ToUpper(e.value)
		case fieldHostAsnCache:
			e, err := decodeIntInts(f, fname{a: "MirrorList.HostAsnCache"}, true)
			if err != nil {
				return err
			}
			if e.key < 0 || e.key > 1<<32-1 {
				return fmt.Errorf("field MirrorList.HostAsnCache (10) at byte %d: ASN %d out of range", f.off, e.key)
			}
			for _, id := range e.values {
				if !slices.Contains(s.hostASNs[id], uint32(e.key)) {
					s.hostASNs[id] = append(s.hostASNs[id], uint32(e.key))
				}
			}
		case fieldHostCountryCache:
			e, err := decodeIntString(f, fname{a: "MirrorList.HostCountryCache"})
			if err != nil {
				return err
			}
			s.hostCountry[e.key] = strings.ToUpper(e.value)
		case fieldHostBandwidthCache:
			e, err := decodeIntInt(f, fname{a: "MirrorList.HostBandwidthCache"})
			if err != nil {
				return err
			}
			s.hostBandwidth[e.key] = e.value
		case fieldHostCountryAllowedCache:
			e, err := decodeIntStrings(f, fname{a: "MirrorList.HostCountryAllowedCache"})
			if err != nil {
				return err
			}
			for _, c := range e.values {
				c = strings.ToUpper(c)
				if !slices.Contains(s.hostAllowed[e.key], c) {
					s.hostAllowed[e.key] = append(s.hostAllowed[e.key], c)
				}
			}
		case fieldHostNetblockCache:
			e, err := decodeStringInts(f, fname{a: "MirrorList.HostNetblockCache"}, true)
			if err != nil {
				return err
			}
			// mirrorlist-server skips a key that is neither a CIDR nor an address.
			p, ok := parseNetblock(e.key)
			if !ok {
				return nil
			}
			for _, id := range e.values {
				if !slices.Contains(s.hostNetblocks[id], p) {
					s.hostNetblocks[id] = append(s.hostNetblocks[id], p)
				}
			}
		case fieldMirrorListCache:
			d, err := decodeDirectory(f, false)
			if err != nil {
				return err
			}
			// mirrorlist-server uses the first entry of a directory.
			if _, dup := s.dirs[d.name]; !dup {
				s.dirs[d.name] = f
				s.dirNames = append(s.dirNames, d.name)
			}
		default:
			// Fields 3, 5, 6, 8, 9, 11 (and any later addition) serve repo=/metalink
			// queries or nothing; they were checked to be well-formed by walk.
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if !haveTime {
		return nil, errors.New("required field MirrorList.Time (1) missing: not a mirrorlist cache")
	}
	return s, nil
}

// decodeDirectory decodes one MirrorListCacheType. With keep false it only checks the
// encoding and returns the directory's name (Decode does that for every directory).
func decodeDirectory(f field, keep bool) (*directory, error) {
	name := fname{a: "MirrorList.MirrorListCache"}
	if err := wantType(f, name, protowire.BytesType); err != nil {
		return nil, err
	}
	d := &directory{}
	if keep {
		d.global, d.byCountry, d.internet2 = map[int64]bool{}, map[int64]string{}, map[int64]bool{}
	}
	haveDir := false
	err := walk(f.b, f.val, name, func(g field) error {
		switch g.num {
		case fieldDirectory:
			haveDir = true
			d.name = string(g.b)
			return wantType(g, name.sub(".directory"), protowire.BytesType)
		case fieldGlobal:
			ids, err := appendInt64s(nil, g, name.sub(".Global"), keep)
			for _, id := range ids {
				d.global[id] = true
			}
			return err
		case fieldSubpath:
			d.subpath = string(g.b)
			return wantType(g, name.sub(".Subpath"), protowire.BytesType)
		case fieldByCountry:
			e, err := decodeStringInts(g, name.sub(".ByCountry"), keep)
			for _, id := range e.values {
				if _, ok := d.byCountry[id]; !ok {
					d.byCountry[id] = strings.ToUpper(e.key)
				}
			}
			return err
		case fieldByCountryInternet2:
			e, err := decodeStringInts(g, name.sub(".ByCountryInternet2"), keep)
			for _, id := range e.values {
				d.internet2[id] = true
			}
			return err
		case fieldByHostID:
			e, err := decodeIntInts(g, name.sub(".ByHostId"), keep)
			if err == nil && keep {
				d.byHostID = append(d.byHostID, e)
			}
			return err
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if !haveDir {
		return nil, fmt.Errorf("field %s (%d) at byte %d: required directory missing", name, f.num, f.off)
	}
	return d, nil
}

// parseNetblock reads a netblock key the way mirrorlist-server does: a CIDR, or a bare
// address meaning /32 or /128. Host bits are cleared.
func parseNetblock(s string) (netip.Prefix, bool) {
	s = strings.TrimSpace(s)
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), true
	}
	if a, err := netip.ParseAddr(s); err == nil {
		a = a.WithZone("")
		return netip.PrefixFrom(a, a.BitLen()), true
	}
	return netip.Prefix{}, false
}

// Directories returns the directory names the cache has mirror lists for, sorted.
func (s *Snapshot) Directories() []string {
	names := slices.Clone(s.dirNames)
	sort.Strings(names)
	return names
}

// normalizeDirectory is mirrorlist-server's treatment of path=: surrounding slashes
// trimmed and runs of slashes collapsed.
func normalizeDirectory(d string) string {
	d = strings.Trim(d, "/")
	for strings.Contains(d, "//") {
		d = strings.ReplaceAll(d, "//", "/")
	}
	return d
}

// Hosts returns the hosts MirrorManager lists for directory: the hosts of its ByHostId
// (active hosts whose copy is up to date, or that are always_up2date), each with its
// http(s) URLs for the directory. A listed host without any http or https URL (rsync or
// ftp only) cannot take a redirect and is left out. Hosts come sorted by ID.
// dir is looked up as given, then with surrounding slashes trimmed and doubled ones
// collapsed (as mirrorlist-server treats path=). An unknown directory is an error naming
// some directories that exist.
func (s *Snapshot) Hosts(dir string) ([]Host, error) {
	f, ok := s.dirs[dir]
	if !ok {
		f, ok = s.dirs[normalizeDirectory(dir)]
	}
	if !ok {
		return nil, s.unknownDirectory(dir)
	}
	d, err := decodeDirectory(f, true)
	if err != nil {
		return nil, err // not reached: Decode decoded it once already
	}
	var hosts []Host
	seen := map[int64]bool{}
	for _, e := range d.byHostID {
		if seen[e.key] {
			continue // a repeated ByHostId entry: the first one counts, as in mirrorlist-server
		}
		seen[e.key] = true
		urls := s.urls(e.values, d.subpath)
		if len(urls) == 0 {
			continue
		}
		country := d.byCountry[e.key]
		if country == "" {
			country = s.hostCountry[e.key]
		}
		bw := s.hostBandwidth[e.key]
		if bw < 1 {
			bw = 1
		}
		h := Host{
			ID:               e.key,
			Name:             fmt.Sprintf("mm-host-%d", e.key),
			Country:          country,
			Bandwidth:        bw,
			Netblocks:        slices.Clone(s.hostNetblocks[e.key]),
			ASNs:             slices.Clone(s.hostASNs[e.key]),
			AllowedCountries: slices.Clone(s.hostAllowed[e.key]),
			Private:          !d.global[e.key],
			Internet2:        d.internet2[e.key],
			URLs:             urls,
		}
		hosts = append(hosts, h)
	}
	sort.Slice(hosts, func(i, j int) bool { return hosts[i].ID < hosts[j].ID })
	return hosts, nil
}

func (s *Snapshot) unknownDirectory(dir string) error {
	names := s.Directories()
	if len(names) == 0 {
		return fmt.Errorf("no directory %q: the cache lists no directories", dir)
	}
	const few = 5
	shown := names
	more := ""
	if len(shown) > few {
		shown = shown[:few]
		more = fmt.Sprintf(", … (%d in all)", len(names))
	}
	return fmt.Errorf("no directory %q in the cache; it has %s%s", dir, strings.Join(shown, ", "), more)
}

// urls resolves host_category_url ids to the directory's URLs: MirrorManager's URL (the
// host's copy of the category's top directory, no trailing slash) + "/" + subpath + "/".
// Only http and https are kept, https first; ids missing from HCUrlCache are skipped.
func (s *Snapshot) urls(ids []int64, subpath string) []string {
	var https, http []string
	for _, id := range ids {
		u, ok := s.hcURL[id]
		if !ok {
			continue
		}
		lower := strings.ToLower(u)
		var list *[]string
		switch {
		case strings.HasPrefix(lower, "https://"):
			list = &https
		case strings.HasPrefix(lower, "http://"):
			list = &http
		default:
			continue
		}
		u = JoinURL(u, subpath)
		if !slices.Contains(https, u) && !slices.Contains(http, u) {
			*list = append(*list, u)
		}
	}
	return append(https, http...)
}

// JoinURL builds a directory URL from a MirrorManager host category URL and a Subpath:
// base + "/" + subpath + "/", without doubled slashes (MirrorManager's URLs have no
// trailing slash, but an admin-entered one is tolerated).
func JoinURL(base, subpath string) string {
	u := strings.TrimRight(base, "/")
	if sp := strings.Trim(subpath, "/"); sp != "" {
		u += "/" + sp
	}
	return u + "/"
}

// ClientCountry returns the country MirrorManager's NetblockCountryCache assigns to addr
// (an override applied before GeoIP), most specific netblock first.
func (s *Snapshot) ClientCountry(addr netip.Addr) (string, bool) {
	addr = addr.Unmap()
	best := -1
	country := ""
	for _, nc := range s.netblockCountry {
		if nc.prefix.Contains(addr) && nc.prefix.Bits() > best {
			best, country = nc.prefix.Bits(), nc.country
		}
	}
	return country, best >= 0
}

// ContinentRedirect returns the continent MirrorManager's CountryContinentRedirectCache
// assigns to country, overriding the country → continent table.
func (s *Snapshot) ContinentRedirect(country string) (string, bool) {
	c, ok := s.continentRedirect[strings.ToUpper(country)]
	return c, ok
}
