// Package mmtest writes MirrorManager mirrorlist caches for tests: the MirrorList message of
// MirrorManager's protos/mirrormanager.proto (adrianreber/mirrorlist-server, identical in
// fedora-infra/mirrormanager2), encoded the way generate-mirrorlist-cache writes it: proto2,
// repeated int64 unpacked, one MirrorList with no length prefix. Field numbers are written
// here from the schema, independently of the decoder in package mirrormanager, so that tests
// of the decoder check it against a second reading of the schema.
package mmtest

import (
	"fmt"
	"os"

	"google.golang.org/protobuf/encoding/protowire"
)

// Field numbers of protos/mirrormanager.proto.
const (
	// message MirrorList
	fieldTime                          protowire.Number = 1  // required uint64, Unix seconds
	fieldNetblockCountryCache          protowire.Number = 2  // repeated StringStringMap: netblock → country
	fieldLocationCache                 protowire.Number = 3  // repeated StringRepeatedIntMap (unused by MirrorManager; skipped)
	fieldHCUrlCache                    protowire.Number = 4  // repeated IntStringMap: host_category_url.id → url
	fieldFileDetailsCache              protowire.Number = 5  // repeated FileDetailsCacheDirectoryType (metalink; skipped)
	fieldDisabledRepositoryCache       protowire.Number = 6  // repeated StringBoolMap (repo= queries; skipped)
	fieldCountryContinentRedirectCache protowire.Number = 7  // repeated StringStringMap: country → continent
	fieldRepositoryRedirectCache       protowire.Number = 8  // repeated StringStringMap (repo= queries; skipped)
	fieldRepoArchToDirectoryName       protowire.Number = 9  // repeated StringStringMap (repo= queries; skipped)
	fieldHostAsnCache                  protowire.Number = 10 // repeated IntRepeatedIntMap: asn → [host.id]
	fieldHostMaxConnectionCache        protowire.Number = 11 // repeated IntIntMap (unused by MirrorManager; skipped)
	fieldHostCountryCache              protowire.Number = 12 // repeated IntStringMap: host.id → country
	fieldHostBandwidthCache            protowire.Number = 13 // repeated IntIntMap: host.id → bandwidth_int
	fieldHostCountryAllowedCache       protowire.Number = 14 // repeated IntRepeatedStringMap: host.id → [country]
	fieldHostNetblockCache             protowire.Number = 15 // repeated StringRepeatedIntMap: netblock → [host.id]
	fieldMirrorListCache               protowire.Number = 16 // repeated MirrorListCacheType, one per directory

	// message MirrorListCacheType
	fieldDirectory          protowire.Number = 1 // required string
	fieldGlobal             protowire.Number = 2 // repeated int64: public hosts
	fieldSubpath            protowire.Number = 3 // optional string
	fieldByCountry          protowire.Number = 4 // repeated StringRepeatedIntMap: country → [host.id]
	fieldByCountryInternet2 protowire.Number = 5 // repeated StringRepeatedIntMap: country → [host.id]
	fieldByHostID           protowire.Number = 6 // repeated IntRepeatedIntMap: host.id → [host_category_url.id]
	fieldOrderedMirrorList  protowire.Number = 7 // optional bool (obsolete; skipped)

	// messages StringStringMap, StringRepeatedIntMap, IntRepeatedStringMap, IntStringMap,
	// IntIntMap, IntRepeatedIntMap, StringBoolMap: all are {key = 1; value = 2}.
	fieldKey   protowire.Number = 1
	fieldValue protowire.Number = 2
)

// KV is a string → string map entry.
type KV struct{ K, V string }

// IDString is an int64 → string map entry.
type IDString struct {
	ID int64
	S  string
}

// IDInt is an int64 → int64 map entry.
type IDInt struct{ ID, V int64 }

// IDInts is an int64 → [int64] map entry.
type IDInts struct {
	ID  int64
	IDs []int64
}

// IDStrings is an int64 → [string] map entry.
type IDStrings struct {
	ID int64
	SS []string
}

// StrInts is a string → [int64] map entry.
type StrInts struct {
	S   string
	IDs []int64
}

// Dir is one MirrorListCacheType: a directory's mirror lists.
type Dir struct {
	Name       string    // directory (1)
	Subpath    *string   // Subpath (3): the directory below its category's top directory
	Global     []int64   // Global (2): public hosts
	ByCountry  []StrInts // ByCountry (4): country → public hosts
	Internet2  []StrInts // ByCountryInternet2 (5)
	ByHostID   []IDInts  // ByHostId (6): every listed host → its host_category_url ids
	Ordered    *bool     // OrderedMirrorList (7), obsolete
	NoDirField bool      // omit the required directory field (an invalid file)
}

// Cache is a MirrorList message: what generate-mirrorlist-cache writes.
type Cache struct {
	Time              uint64      // Time (1), Unix seconds
	NoTime            bool        // omit the required Time field (an invalid file)
	NetblockCountry   []KV        // NetblockCountryCache (2): netblock → country
	HCURL             []IDString  // HCUrlCache (4): host_category_url.id → URL
	ContinentRedirect []KV        // CountryContinentRedirectCache (7): country → continent
	HostASN           []IDInts    // HostAsnCache (10): asn → hosts
	HostMaxConn       []IDInt     // HostMaxConnectionCache (11)
	HostCountry       []IDString  // HostCountryCache (12)
	HostBandwidth     []IDInt     // HostBandwidthCache (13)
	HostAllowed       []IDStrings // HostCountryAllowedCache (14): host → allowed client countries
	HostNetblock      []StrInts   // HostNetblockCache (15): netblock → hosts
	Dirs              []Dir       // MirrorListCache (16)
	Packed            bool        // write repeated int64 packed (valid; MirrorManager does not)
	Skipped           bool        // also write the fields the decoder skips (3, 5, 6, 8, 9, 11)
}

// AppendMsg appends field num holding the message msg, for hand-built (or broken) files.
func AppendMsg(b []byte, num protowire.Number, msg []byte) []byte { return appendMsg(b, num, msg) }

// AppendStr appends field num holding the string s.
func AppendStr(b []byte, num protowire.Number, s string) []byte { return appendStr(b, num, s) }

// AppendInt appends field num holding the varint v.
func AppendInt(b []byte, num protowire.Number, v int64) []byte { return appendInt(b, num, v) }

func appendMsg(b []byte, num protowire.Number, msg []byte) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, msg)
}

func appendStr(b []byte, num protowire.Number, s string) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, s)
}

func appendInt(b []byte, num protowire.Number, v int64) []byte {
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, uint64(v))
}

func appendInts(b []byte, num protowire.Number, vs []int64, packed bool) []byte {
	if !packed {
		for _, v := range vs {
			b = appendInt(b, num, v)
		}
		return b
	}
	if len(vs) == 0 {
		return b
	}
	var run []byte
	for _, v := range vs {
		run = protowire.AppendVarint(run, uint64(v))
	}
	return appendMsg(b, num, run)
}

func encStringString(e KV) []byte {
	return appendStr(appendStr(nil, fieldKey, e.K), fieldValue, e.V)
}

func encIntString(e IDString) []byte {
	return appendStr(appendInt(nil, fieldKey, e.ID), fieldValue, e.S)
}

func encIntInt(e IDInt) []byte {
	return appendInt(appendInt(nil, fieldKey, e.ID), fieldValue, e.V)
}

func encIntInts(e IDInts, packed bool) []byte {
	return appendInts(appendInt(nil, fieldKey, e.ID), fieldValue, e.IDs, packed)
}

func encStringInts(e StrInts, packed bool) []byte {
	return appendInts(appendStr(nil, fieldKey, e.S), fieldValue, e.IDs, packed)
}

func encIntStrings(e IDStrings) []byte {
	b := appendInt(nil, fieldKey, e.ID)
	for _, s := range e.SS {
		b = appendStr(b, fieldValue, s)
	}
	return b
}

func encDir(d Dir, packed bool) []byte {
	var b []byte
	if !d.NoDirField {
		b = appendStr(b, fieldDirectory, d.Name)
	}
	b = appendInts(b, fieldGlobal, d.Global, packed)
	if d.Subpath != nil {
		b = appendStr(b, fieldSubpath, *d.Subpath)
	}
	for _, e := range d.ByCountry {
		b = appendMsg(b, fieldByCountry, encStringInts(e, packed))
	}
	for _, e := range d.Internet2 {
		b = appendMsg(b, fieldByCountryInternet2, encStringInts(e, packed))
	}
	for _, e := range d.ByHostID {
		b = appendMsg(b, fieldByHostID, encIntInts(e, packed))
	}
	if d.Ordered != nil {
		v := int64(0)
		if *d.Ordered {
			v = 1
		}
		b = appendInt(b, fieldOrderedMirrorList, v)
	}
	return b
}

// Encode returns the cache file and the offsets at which each top-level field ends
// (a prefix ending there is itself a well-formed message).
func (c Cache) Encode() (b []byte, boundaries []int) {
	mark := func() { boundaries = append(boundaries, len(b)) }
	if !c.NoTime {
		b = protowire.AppendTag(b, fieldTime, protowire.VarintType)
		b = protowire.AppendVarint(b, c.Time)
		mark()
	}
	for _, e := range c.NetblockCountry {
		b = appendMsg(b, fieldNetblockCountryCache, encStringString(e))
		mark()
	}
	if c.Skipped {
		// LocationCache, FileDetailsCache (with a nested FileDetailsType),
		// DisabledRepositoryCache, RepositoryRedirectCache, RepoArchToDirectoryName.
		b = appendMsg(b, fieldLocationCache, encStringInts(StrInts{"somewhere", []int64{1}}, false))
		mark()
		details := appendInt(appendInt(nil, 1, 1700000000), 2, 4096)
		details = appendStr(details, 5, "0123abcd")
		files := appendMsg(appendStr(nil, 1, "repomd.xml"), 2, details)
		b = appendMsg(b, fieldFileDetailsCache, appendMsg(appendStr(nil, 1, "pub/fedora/linux"), 2, files))
		mark()
		b = appendMsg(b, fieldDisabledRepositoryCache, appendInt(appendStr(nil, fieldKey, "old-repo"), fieldValue, 1))
		mark()
		b = appendMsg(b, fieldRepositoryRedirectCache, encStringString(KV{"from", "to"}))
		mark()
		b = appendMsg(b, fieldRepoArchToDirectoryName, encStringString(KV{"fedora-42+x86_64", "pub/fedora/linux"}))
		mark()
	}
	for _, e := range c.HCURL {
		b = appendMsg(b, fieldHCUrlCache, encIntString(e))
		mark()
	}
	for _, e := range c.ContinentRedirect {
		b = appendMsg(b, fieldCountryContinentRedirectCache, encStringString(e))
		mark()
	}
	for _, e := range c.HostASN {
		b = appendMsg(b, fieldHostAsnCache, encIntInts(e, c.Packed))
		mark()
	}
	for _, e := range c.HostMaxConn {
		b = appendMsg(b, fieldHostMaxConnectionCache, encIntInt(e))
		mark()
	}
	for _, e := range c.HostCountry {
		b = appendMsg(b, fieldHostCountryCache, encIntString(e))
		mark()
	}
	for _, e := range c.HostBandwidth {
		b = appendMsg(b, fieldHostBandwidthCache, encIntInt(e))
		mark()
	}
	for _, e := range c.HostAllowed {
		b = appendMsg(b, fieldHostCountryAllowedCache, encIntStrings(e))
		mark()
	}
	for _, e := range c.HostNetblock {
		b = appendMsg(b, fieldHostNetblockCache, encStringInts(e, c.Packed))
		mark()
	}
	for _, d := range c.Dirs {
		b = appendMsg(b, fieldMirrorListCache, encDir(d, c.Packed))
		mark()
	}
	return b, boundaries
}

// Str returns a pointer to s (for Dir.Subpath).
func Str(s string) *string { return &s }

// Bool returns a pointer to v (for Dir.Ordered).
func Bool(v bool) *bool { return &v }

// Bytes returns the encoded cache.
func (c Cache) Bytes() []byte {
	b, _ := c.Encode()
	return b
}

// Write writes the encoded cache to path.
func (c Cache) Write(path string) error {
	if err := os.WriteFile(path, c.Bytes(), 0o644); err != nil {
		return fmt.Errorf("writing mirrorlist cache: %w", err)
	}
	return nil
}

// Host is one MirrorManager host as a test describes it.
type Host struct {
	ID int64
	// URL is the host's URL for the category's top directory, as MirrorManager keeps it
	// (no trailing slash).
	URL              string
	Country          string
	Bandwidth        int64
	Private          bool     // host or site private: in ByHostId, not in Global or ByCountry
	AllowedCountries []string // HostCountryAllowedCache
	Netblocks        []string // HostNetblockCache
	ASNs             []int64  // HostAsnCache
	// Listed: MirrorManager lists the host for the directory (active and up to date there);
	// otherwise for OtherDirectory only.
	Listed bool
}

// OtherDirectory is the directory Network lists the hosts that are not Listed for.
const OtherDirectory = "pub/other"

// Network returns the cache MirrorManager would write for hosts carrying one category: the
// directory dir (Subpath subpath below the category's top directory) lists the Listed hosts,
// OtherDirectory the others; every host has one URL (id 100 × host id), its country and
// bandwidth.
func Network(dir, subpath string, hosts []Host) Cache {
	c := Cache{Time: 1767225600}
	d := Dir{Name: dir, Subpath: Str(subpath)}
	other := Dir{Name: OtherDirectory, Subpath: Str("other")}
	for _, h := range hosts {
		urlID := 100 * h.ID
		c.HCURL = append(c.HCURL, IDString{ID: urlID, S: h.URL})
		c.HostCountry = append(c.HostCountry, IDString{ID: h.ID, S: h.Country})
		c.HostBandwidth = append(c.HostBandwidth, IDInt{ID: h.ID, V: h.Bandwidth})
		for _, nb := range h.Netblocks {
			c.HostNetblock = append(c.HostNetblock, StrInts{S: nb, IDs: []int64{h.ID}})
		}
		for _, a := range h.ASNs {
			c.HostASN = append(c.HostASN, IDInts{ID: a, IDs: []int64{h.ID}})
		}
		if len(h.AllowedCountries) > 0 {
			c.HostAllowed = append(c.HostAllowed, IDStrings{ID: h.ID, SS: h.AllowedCountries})
		}
		target := &d
		if !h.Listed {
			target = &other
		}
		target.ByHostID = append(target.ByHostID, IDInts{ID: h.ID, IDs: []int64{urlID}})
		if !h.Private {
			target.Global = append(target.Global, h.ID)
			target.ByCountry = append(target.ByCountry, StrInts{S: h.Country, IDs: []int64{h.ID}})
		}
	}
	c.Dirs = []Dir{other, d}
	return c
}
