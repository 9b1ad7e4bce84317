package mirrormanager

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"google.golang.org/protobuf/encoding/protowire"
)

// Field numbers, from protos/mirrormanager.proto in adrianreber/mirrorlist-server
// (commit f199d1f), byte-identical to mirrormanager.proto in fedora-infra/mirrormanager2
// (commit 49f0cf26). The file is proto2; the cache is one MirrorList message written
// with no length prefix (generate-mirrorlist-cache: mirrorlist.write_to(CodedOutputStream);
// mirrorlist-server: protobuf::Message::parse_from_reader).
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

// fname names a field in errors (e.g. MirrorList.MirrorListCache.ByHostId.value), built
// without allocating: the string is only joined when an error is reported.
type fname struct{ a, b, c, d string }

func (n fname) String() string { return n.a + n.b + n.c + n.d }

// sub names a field of n's message.
func (n fname) sub(s string) fname {
	switch {
	case n.b == "":
		n.b = s
	case n.c == "":
		n.c = s
	default:
		n.d += s
	}
	return n
}

// field is one decoded field record of a message.
type field struct {
	num protowire.Number
	typ protowire.Type
	u   uint64 // varint, fixed32 and fixed64 values
	b   []byte // bytes value
	off int    // absolute offset of the field's tag in the input
	val int    // absolute offset of the field's value (of a bytes value's content) in the input
}

// walk calls fn for each field record of the message encoded in b, which starts at
// absolute offset base of the input. Malformed or truncated records are errors naming
// the message (what) and the absolute byte offset.
func walk(b []byte, base int, what fname, fn func(f field) error) error {
	for i := 0; i < len(b); {
		num, typ, n := protowire.ConsumeTag(b[i:])
		if n < 0 {
			return wireError(base+i, what, n)
		}
		f := field{num: num, typ: typ, off: base + i, val: base + i + n}
		rest := b[i+n:]
		var m int
		switch typ {
		case protowire.VarintType:
			f.u, m = protowire.ConsumeVarint(rest)
		case protowire.Fixed32Type:
			var v uint32
			v, m = protowire.ConsumeFixed32(rest)
			f.u = uint64(v)
		case protowire.Fixed64Type:
			f.u, m = protowire.ConsumeFixed64(rest)
		case protowire.BytesType:
			f.b, m = protowire.ConsumeBytes(rest)
			if m >= 0 {
				f.val += m - len(f.b) // skip the length prefix: val is where the bytes start
			}
		default:
			// Groups (deprecated) and reserved wire types: no field of the schema is a
			// group, so these are only ever skipped (protowire bounds the nesting).
			m = protowire.ConsumeFieldValue(num, typ, rest)
		}
		if m < 0 {
			return wireError(base+i, what, m)
		}
		if err := fn(f); err != nil {
			return err
		}
		i += n + m
	}
	return nil
}

func wireError(off int, what fname, code int) error {
	err := protowire.ParseError(code)
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("truncated at byte %d (in %s)", off, what)
	}
	// The protobuf module words its errors with a randomly chosen space or no-break space
	// after "proto:" (to discourage matching them); print a stable text.
	msg := strings.ReplaceAll(err.Error(), "\u00a0", " ")
	msg = strings.TrimPrefix(msg, "proto: ")
	return fmt.Errorf("malformed protobuf at byte %d (in %s): %s", off, what, msg)
}

func typeName(t protowire.Type) string {
	switch t {
	case protowire.VarintType:
		return "varint"
	case protowire.Fixed32Type:
		return "fixed32"
	case protowire.Fixed64Type:
		return "fixed64"
	case protowire.BytesType:
		return "length-delimited"
	case protowire.StartGroupType:
		return "start-group"
	case protowire.EndGroupType:
		return "end-group"
	}
	return fmt.Sprintf("reserved(%d)", t)
}

func wrongType(f field, name fname, want protowire.Type) error {
	return fmt.Errorf("field %s (%d) at byte %d: wrong wire type %s, want %s",
		name, f.num, f.off, typeName(f.typ), typeName(want))
}

func wantType(f field, name fname, want protowire.Type) error {
	if f.typ != want {
		return wrongType(f, name, want)
	}
	return nil
}

// appendInt64s appends a repeated int64 field's values: one varint per record (proto2's
// default, what MirrorManager writes) or a packed run (which parsers must accept too).
// With keep false the values are only checked.
func appendInt64s(dst []int64, f field, name fname, keep bool) ([]int64, error) {
	switch f.typ {
	case protowire.VarintType:
		if keep {
			dst = append(dst, int64(f.u))
		}
		return dst, nil
	case protowire.BytesType:
		for i := 0; i < len(f.b); {
			v, n := protowire.ConsumeVarint(f.b[i:])
			if n < 0 {
				return dst, wireError(f.val+i, name.sub(" (packed)"), n)
			}
			if keep {
				dst = append(dst, int64(v))
			}
			i += n
		}
		return dst, nil
	}
	return dst, wrongType(f, name, protowire.VarintType)
}

// The map-like messages. Required fields (proto2 `required`) that are missing make the
// input invalid, as they do for the Rust parser MirrorManager's mirrorlist-server uses.

type stringString struct{ key, value string }

func decodeStringString(f field, name fname) (e stringString, err error) {
	err = decodePair(f, name, true,
		func(g field, n fname) error { e.key = string(g.b); return wantType(g, n, protowire.BytesType) },
		func(g field, n fname) error { e.value = string(g.b); return wantType(g, n, protowire.BytesType) })
	return e, err
}

type intString struct {
	key   int64
	value string
}

func decodeIntString(f field, name fname) (e intString, err error) {
	err = decodePair(f, name, true,
		func(g field, n fname) error { e.key = int64(g.u); return wantType(g, n, protowire.VarintType) },
		func(g field, n fname) error { e.value = string(g.b); return wantType(g, n, protowire.BytesType) })
	return e, err
}

type intInt struct{ key, value int64 }

func decodeIntInt(f field, name fname) (e intInt, err error) {
	err = decodePair(f, name, true,
		func(g field, n fname) error { e.key = int64(g.u); return wantType(g, n, protowire.VarintType) },
		func(g field, n fname) error { e.value = int64(g.u); return wantType(g, n, protowire.VarintType) })
	return e, err
}

type intInts struct {
	key    int64
	values []int64
}

func decodeIntInts(f field, name fname, keep bool) (e intInts, err error) {
	err = decodePair(f, name, false,
		func(g field, n fname) error { e.key = int64(g.u); return wantType(g, n, protowire.VarintType) },
		func(g field, n fname) (err error) { e.values, err = appendInt64s(e.values, g, n, keep); return err })
	return e, err
}

type stringInts struct {
	key    string
	values []int64
}

func decodeStringInts(f field, name fname, keep bool) (e stringInts, err error) {
	err = decodePair(f, name, false,
		func(g field, n fname) error { e.key = string(g.b); return wantType(g, n, protowire.BytesType) },
		func(g field, n fname) (err error) { e.values, err = appendInt64s(e.values, g, n, keep); return err })
	return e, err
}

type intStrings struct {
	key    int64
	values []string
}

func decodeIntStrings(f field, name fname) (e intStrings, err error) {
	err = decodePair(f, name, false,
		func(g field, n fname) error { e.key = int64(g.u); return wantType(g, n, protowire.VarintType) },
		func(g field, n fname) error {
			e.values = append(e.values, string(g.b))
			return wantType(g, n, protowire.BytesType)
		})
	return e, err
}

// decodePair walks one map-entry message (key = field 1, value = field 2): key and value
// decode each occurrence of their field, under the names <name>.key and <name>.value. The key
// is required, and the value too when valueRequired (repeated values may be absent).
func decodePair(f field, name fname, valueRequired bool, key, value func(g field, n fname) error) error {
	if err := wantType(f, name, protowire.BytesType); err != nil {
		return err
	}
	var haveKey, haveValue bool
	err := walk(f.b, f.val, name, func(g field) error {
		switch g.num {
		case fieldKey:
			haveKey = true
			return key(g, name.sub(".key"))
		case fieldValue:
			haveValue = true
			return value(g, name.sub(".value"))
		}
		return nil
	})
	if err == nil {
		err = required(f, name, haveKey, haveValue || !valueRequired)
	}
	return err
}

func required(f field, name fname, haveKey, haveValue bool) error {
	switch {
	case !haveKey:
		return fmt.Errorf("field %s (%d) at byte %d: required key missing", name, f.num, f.off)
	case !haveValue:
		return fmt.Errorf("field %s (%d) at byte %d: required value missing", name, f.num, f.off)
	}
	return nil
}
