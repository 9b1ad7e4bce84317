package mirrormanager

import (
	"errors"
	"fmt"
	"io"
	"math"
	"net/netip"
	"os"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/regmirror/regmirror/internal/mirrormanager/mmpb"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
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
	// decoded by Hosts: a cache has a list per directory of every category, and a caller
	// wants one or a few, so the decoded lists are not kept.
	dirs     map[string][]byte
	dirNames []string // in file order
}

type netblockCountry struct {
	prefix  netip.Prefix
	country string
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

// MaxRecords bounds the field records (and packed values) Decode accepts in the cache's
// tables (every field but the directories' lists), and in each directory's lists: what
// decoding allocates grows with them, so a hostile file cannot make it allocate many times
// its size. Fedora's cache needs a few thousand of each.
const MaxRecords = 1 << 22

var (
	mirrorListDesc = (&mmpb.MirrorList{}).ProtoReflect().Descriptor()
	// dirsField is MirrorList.MirrorListCache: one MirrorListCacheType per directory.
	dirsField = mirrorListDesc.Fields().ByName("MirrorListCache")
	// dirNameField is MirrorListCacheType.directory.
	dirNameField = dirsField.Message().Fields().ByName("directory").Number()
)

// unused are the fields of MirrorList this package does not read (they serve repo=
// queries and metalinks, or nothing): checked against the schema, never decoded.
var unused = map[protoreflect.Name]bool{
	"LocationCache": true, "FileDetailsCache": true, "DisabledRepositoryCache": true,
	"RepositoryRedirectCache": true, "RepoArchToDirectoryName": true, "HostMaxConnectionCache": true,
}

// Decode decodes a mirrorlist cache: one protobuf MirrorList message, no length prefix.
// Truncated or malformed input, a field with the wrong wire type, a missing required
// field and more than MaxRecords records in the tables or a directory are errors; Decode
// never panics. The input is first checked against the schema's descriptor (for errors
// naming the field and byte), then decoded by the generated code: the tables at once,
// each directory's lists when Hosts asks for them. The Snapshot keeps references into b.
func Decode(b []byte) (*Snapshot, error) {
	if len(b) == 0 {
		return nil, errors.New("empty file (no MirrorList.Time)")
	}
	s := &Snapshot{
		continentRedirect: map[string]string{},
		hcURL:             map[int64]string{},
		hostASNs:          map[int64][]uint32{},
		hostCountry:       map[int64]string{},
		hostBandwidth:     map[int64]int64{},
		hostAllowed:       map[int64][]string{},
		hostNetblocks:     map[int64][]netip.Prefix{},
		dirs:              map[string][]byte{},
	}
	tables := checker{limit: MaxRecords, what: "the cache's tables"}
	var kept []byte // the tables' records, decoded at once below
	var seen uint64
	err := records(b, 0, "MirrorList", func(r record) error {
		fd := mirrorListDesc.Fields().ByNumber(r.num)
		if fd == nil {
			return nil // a field the schema does not have
		}
		if r.num < 64 {
			seen |= 1 << r.num
		}
		name := "MirrorList." + string(fd.Name())
		switch {
		case fd == dirsField:
			dir := checker{limit: MaxRecords, what: "a directory's lists"}
			if err := dir.field(fd, r, name); err != nil {
				return err
			}
			var dirName string
			_ = records(r.val, r.at, name, func(g record) error {
				if g.num == dirNameField {
					dirName = string(g.val) // the last one counts, as in any protobuf parser
				}
				return nil
			})
			// mirrorlist-server uses the first entry of a directory.
			if _, dup := s.dirs[dirName]; !dup {
				s.dirs[dirName] = r.val
				s.dirNames = append(s.dirNames, dirName)
			}
			return nil
		case unused[fd.Name()]:
			c := checker{limit: math.MaxInt}
			return c.field(fd, r, name)
		}
		if err := tables.field(fd, r, name); err != nil {
			return err
		}
		kept = append(kept, r.rec...)
		return nil
	})
	if err != nil {
		return nil, err
	}
	for i := range mirrorListDesc.Fields().Len() {
		fd := mirrorListDesc.Fields().Get(i)
		if fd.Cardinality() == protoreflect.Required && seen&(1<<fd.Number()) == 0 {
			return nil, fmt.Errorf("required field MirrorList.%s (%d) missing: not a mirrorlist cache", fd.Name(), fd.Number())
		}
	}
	var ml mmpb.MirrorList
	if err := proto.Unmarshal(kept, &ml); err != nil {
		return nil, fmt.Errorf("decoding MirrorList: %w", err) // not reached: checked above
	}
	if err := s.fill(&ml); err != nil {
		return nil, err
	}
	return s, nil
}

// fill copies the tables of ml into s.
func (s *Snapshot) fill(ml *mmpb.MirrorList) error {
	if ml.GetTime() > 1<<62 {
		return fmt.Errorf("field MirrorList.Time (1): %d is not a time", ml.GetTime())
	}
	s.Time = time.Unix(int64(ml.GetTime()), 0).UTC()
	for _, e := range ml.GetNetblockCountryCache() {
		if p, ok := parseNetblock(e.GetKey()); ok {
			s.netblockCountry = append(s.netblockCountry, netblockCountry{p, strings.ToUpper(e.GetValue())})
		}
	}
	for _, e := range ml.GetHCUrlCache() {
		s.hcURL[e.GetKey()] = e.GetValue()
	}
	for _, e := range ml.GetCountryContinentRedirectCache() {
		s.continentRedirect[strings.ToUpper(e.GetKey())] = strings.ToUpper(e.GetValue())
	}
	for _, e := range ml.GetHostAsnCache() {
		if e.GetKey() < 0 || e.GetKey() > 1<<32-1 {
			return fmt.Errorf("field MirrorList.HostAsnCache (10): ASN %d out of range", e.GetKey())
		}
		for _, id := range e.GetValue() {
			if !slices.Contains(s.hostASNs[id], uint32(e.GetKey())) {
				s.hostASNs[id] = append(s.hostASNs[id], uint32(e.GetKey()))
			}
		}
	}
	for _, e := range ml.GetHostCountryCache() {
		s.hostCountry[e.GetKey()] = strings.ToUpper(e.GetValue())
	}
	for _, e := range ml.GetHostBandwidthCache() {
		s.hostBandwidth[e.GetKey()] = e.GetValue()
	}
	for _, e := range ml.GetHostCountryAllowedCache() {
		for _, c := range e.GetValue() {
			c = strings.ToUpper(c)
			if !slices.Contains(s.hostAllowed[e.GetKey()], c) {
				s.hostAllowed[e.GetKey()] = append(s.hostAllowed[e.GetKey()], c)
			}
		}
	}
	for _, e := range ml.GetHostNetblockCache() {
		// mirrorlist-server skips a key that is neither a CIDR nor an address.
		p, ok := parseNetblock(e.GetKey())
		if !ok {
			continue
		}
		for _, id := range e.GetValue() {
			if !slices.Contains(s.hostNetblocks[id], p) {
				s.hostNetblocks[id] = append(s.hostNetblocks[id], p)
			}
		}
	}
	return nil
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
	var d mmpb.MirrorListCacheType
	if err := proto.Unmarshal(f, &d); err != nil {
		return nil, fmt.Errorf("directory %s: %w", dir, err) // not reached: Decode checked it
	}
	global := map[int64]bool{}
	for _, id := range d.GetGlobal() {
		global[id] = true
	}
	byCountry := map[int64]string{}
	for _, e := range d.GetByCountry() {
		for _, id := range e.GetValue() {
			if _, ok := byCountry[id]; !ok {
				byCountry[id] = strings.ToUpper(e.GetKey())
			}
		}
	}
	internet2 := map[int64]bool{}
	for _, e := range d.GetByCountryInternet2() {
		for _, id := range e.GetValue() {
			internet2[id] = true
		}
	}
	var hosts []Host
	seen := map[int64]bool{}
	for _, e := range d.GetByHostId() {
		id := e.GetKey()
		if seen[id] {
			continue // a repeated ByHostId entry: the first one counts, as in mirrorlist-server
		}
		seen[id] = true
		urls := s.urls(e.GetValue(), d.GetSubpath())
		if len(urls) == 0 {
			continue
		}
		country := byCountry[id]
		if country == "" {
			country = s.hostCountry[id]
		}
		hosts = append(hosts, Host{
			ID:               id,
			Name:             fmt.Sprintf("mm-host-%d", id),
			Country:          country,
			Bandwidth:        max(s.hostBandwidth[id], 1),
			Netblocks:        slices.Clone(s.hostNetblocks[id]),
			ASNs:             slices.Clone(s.hostASNs[id]),
			AllowedCountries: slices.Clone(s.hostAllowed[id]),
			Private:          !global[id],
			Internet2:        internet2[id],
			URLs:             urls,
		})
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
