// Package mmtest writes MirrorManager mirrorlist caches for tests: the MirrorList message of
// MirrorManager's protos/mirrormanager.proto (adrianreber/mirrorlist-server, identical in
// fedora-infra/mirrormanager2), built with the code generated from it (package mmpb) and
// encoded the way generate-mirrorlist-cache writes it: proto2, repeated int64 unpacked, one
// MirrorList with no length prefix.
package mmtest

import (
	"fmt"
	"os"

	"github.com/regmirror/regmirror/internal/mirrormanager/mmpb"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"
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

// The map-like messages of the schema, from the entries tests write.

func stringString(e KV) *mmpb.StringStringMap {
	return &mmpb.StringStringMap{Key: proto.String(e.K), Value: proto.String(e.V)}
}

func intString(e IDString) *mmpb.IntStringMap {
	return &mmpb.IntStringMap{Key: proto.Int64(e.ID), Value: proto.String(e.S)}
}

func intInt(e IDInt) *mmpb.IntIntMap {
	return &mmpb.IntIntMap{Key: proto.Int64(e.ID), Value: proto.Int64(e.V)}
}

func intInts(e IDInts) *mmpb.IntRepeatedIntMap {
	return &mmpb.IntRepeatedIntMap{Key: proto.Int64(e.ID), Value: e.IDs}
}

func stringInts(e StrInts) *mmpb.StringRepeatedIntMap {
	return &mmpb.StringRepeatedIntMap{Key: proto.String(e.S), Value: e.IDs}
}

func each[S any, M any](in []S, f func(S) M) []M {
	var out []M
	for _, e := range in {
		out = append(out, f(e))
	}
	return out
}

// Message returns the cache as the generated MirrorList message.
func (c Cache) Message() *mmpb.MirrorList {
	m := &mmpb.MirrorList{
		NetblockCountryCache:          each(c.NetblockCountry, stringString),
		HCUrlCache:                    each(c.HCURL, intString),
		CountryContinentRedirectCache: each(c.ContinentRedirect, stringString),
		HostAsnCache:                  each(c.HostASN, intInts),
		HostMaxConnectionCache:        each(c.HostMaxConn, intInt),
		HostCountryCache:              each(c.HostCountry, intString),
		HostBandwidthCache:            each(c.HostBandwidth, intInt),
		HostNetblockCache:             each(c.HostNetblock, stringInts),
		HostCountryAllowedCache: each(c.HostAllowed, func(e IDStrings) *mmpb.IntRepeatedStringMap {
			return &mmpb.IntRepeatedStringMap{Key: proto.Int64(e.ID), Value: e.SS}
		}),
	}
	if !c.NoTime {
		m.Time = proto.Uint64(c.Time)
	}
	for _, d := range c.Dirs {
		md := &mmpb.MirrorListCacheType{
			Global:             d.Global,
			Subpath:            d.Subpath,
			ByCountry:          each(d.ByCountry, stringInts),
			ByCountryInternet2: each(d.Internet2, stringInts),
			ByHostId:           each(d.ByHostID, intInts),
			OrderedMirrorList:  d.Ordered,
		}
		if !d.NoDirField {
			md.Directory = proto.String(d.Name)
		}
		m.MirrorListCache = append(m.MirrorListCache, md)
	}
	if c.Skipped {
		m.LocationCache = []*mmpb.StringRepeatedIntMap{stringInts(StrInts{"somewhere", []int64{1}})}
		m.FileDetailsCache = []*mmpb.FileDetailsCacheDirectoryType{{
			Directory: proto.String("pub/fedora/linux"),
			FileDetailsCacheFiles: []*mmpb.FileDetailsCacheFilesType{{
				Filename: proto.String("repomd.xml"),
				FileDetails: []*mmpb.FileDetailsType{{
					TimeStamp: proto.Uint64(1700000000), Size: proto.Uint64(4096), SHA256: proto.String("0123abcd"),
				}},
			}},
		}}
		m.DisabledRepositoryCache = []*mmpb.StringBoolMap{{Key: proto.String("old-repo"), Value: proto.Bool(true)}}
		m.RepositoryRedirectCache = []*mmpb.StringStringMap{stringString(KV{"from", "to"})}
		m.RepoArchToDirectoryName = []*mmpb.StringStringMap{stringString(KV{"fedora-42+x86_64", "pub/fedora/linux"})}
	}
	return m
}

// Encode returns the cache file (proto.Marshal of Message; missing required fields
// allowed, for invalid files) and the offsets at which each top-level field ends (a prefix
// ending there is itself a well-formed message).
func (c Cache) Encode() (b []byte, boundaries []int) {
	opts := proto.MarshalOptions{AllowPartial: true, Deterministic: true}
	b, err := opts.Marshal(c.Message())
	if err == nil && c.Packed {
		packed := dynamicpb.NewMessage(packedMirrorList())
		err = proto.UnmarshalOptions{AllowPartial: true}.Unmarshal(b, packed)
		if err == nil {
			b, err = opts.Marshal(packed)
		}
	}
	if err != nil {
		panic(fmt.Sprintf("mmtest: encoding a cache: %v", err)) // the generated code refused its own message
	}
	for i := 0; i < len(b); {
		_, _, n := protowire.ConsumeField(b[i:])
		if n < 0 {
			panic(fmt.Sprintf("mmtest: the encoded cache does not parse at byte %d", i))
		}
		i += n
		boundaries = append(boundaries, i)
	}
	return b, boundaries
}

// packedMirrorList is MirrorList's descriptor with every repeated int64 declared packed
// (valid proto2; MirrorManager does not write it), for Cache.Packed.
func packedMirrorList() protoreflect.MessageDescriptor {
	fdp := protodesc.ToFileDescriptorProto(mmpb.File_mirrormanager_proto)
	for _, m := range fdp.MessageType {
		for _, f := range m.Field {
			if f.GetLabel() == descriptorpb.FieldDescriptorProto_LABEL_REPEATED && f.GetType() == descriptorpb.FieldDescriptorProto_TYPE_INT64 {
				f.Options = &descriptorpb.FieldOptions{Packed: proto.Bool(true)}
			}
		}
	}
	fd, err := protodesc.NewFile(fdp, nil)
	if err != nil {
		panic(fmt.Sprintf("mmtest: the packed schema: %v", err))
	}
	return fd.Messages().ByName("MirrorList")
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
