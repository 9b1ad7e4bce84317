package mirrormanager

import (
	"google.golang.org/protobuf/encoding/protowire"
)

// This file is a test-only encoder for the MirrorList message of protos/mirrormanager.proto,
// written from the schema (field numbers as in wire.go), so that tests build snapshots the
// way generate-mirrorlist-cache writes them: proto2, repeated int64 unpacked, one
// MirrorList with no length prefix.

type kv struct{ k, v string }

type idString struct {
	id int64
	s  string
}

type idInt struct{ id, v int64 }

type idInts struct {
	id  int64
	ids []int64
}

type idStrings struct {
	id int64
	ss []string
}

type strInts struct {
	s   string
	ids []int64
}

type dirSpec struct {
	name       string
	subpath    *string
	global     []int64
	byCountry  []strInts
	internet2  []strInts
	byHostID   []idInts
	ordered    *bool
	noDirField bool // omit the required directory field (an invalid file)
}

type cacheSpec struct {
	time              uint64
	noTime            bool // omit the required Time field (an invalid file)
	netblockCountry   []kv
	hcURL             []idString
	continentRedirect []kv
	hostASN           []idInts // asn → hosts
	hostMaxConn       []idInt
	hostCountry       []idString
	hostBandwidth     []idInt
	hostAllowed       []idStrings
	hostNetblock      []strInts // netblock → hosts
	dirs              []dirSpec
	packed            bool // write repeated int64 packed (valid; MirrorManager does not)
	skipped           bool // also write the fields the decoder skips (3, 5, 6, 8, 9, 11)
}

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

func encStringString(e kv) []byte {
	return appendStr(appendStr(nil, fieldKey, e.k), fieldValue, e.v)
}

func encIntString(e idString) []byte {
	return appendStr(appendInt(nil, fieldKey, e.id), fieldValue, e.s)
}

func encIntInt(e idInt) []byte {
	return appendInt(appendInt(nil, fieldKey, e.id), fieldValue, e.v)
}

func encIntInts(e idInts, packed bool) []byte {
	return appendInts(appendInt(nil, fieldKey, e.id), fieldValue, e.ids, packed)
}

func encStringInts(e strInts, packed bool) []byte {
	return appendInts(appendStr(nil, fieldKey, e.s), fieldValue, e.ids, packed)
}

func encIntStrings(e idStrings) []byte {
	b := appendInt(nil, fieldKey, e.id)
	for _, s := range e.ss {
		b = appendStr(b, fieldValue, s)
	}
	return b
}

func encDir(d dirSpec, packed bool) []byte {
	var b []byte
	if !d.noDirField {
		b = appendStr(b, fieldDirectory, d.name)
	}
	b = appendInts(b, fieldGlobal, d.global, packed)
	if d.subpath != nil {
		b = appendStr(b, fieldSubpath, *d.subpath)
	}
	for _, e := range d.byCountry {
		b = appendMsg(b, fieldByCountry, encStringInts(e, packed))
	}
	for _, e := range d.internet2 {
		b = appendMsg(b, fieldByCountryInternet2, encStringInts(e, packed))
	}
	for _, e := range d.byHostID {
		b = appendMsg(b, fieldByHostID, encIntInts(e, packed))
	}
	if d.ordered != nil {
		v := int64(0)
		if *d.ordered {
			v = 1
		}
		b = appendInt(b, fieldOrderedMirrorList, v)
	}
	return b
}

// encode returns the cache file and the offsets at which each top-level field ends
// (a prefix ending there is itself a well-formed message).
func (c cacheSpec) encode() (b []byte, boundaries []int) {
	mark := func() { boundaries = append(boundaries, len(b)) }
	if !c.noTime {
		b = protowire.AppendTag(b, fieldTime, protowire.VarintType)
		b = protowire.AppendVarint(b, c.time)
		mark()
	}
	for _, e := range c.netblockCountry {
		b = appendMsg(b, fieldNetblockCountryCache, encStringString(e))
		mark()
	}
	if c.skipped {
		// LocationCache, FileDetailsCache (with a nested FileDetailsType),
		// DisabledRepositoryCache, RepositoryRedirectCache, RepoArchToDirectoryName.
		b = appendMsg(b, fieldLocationCache, encStringInts(strInts{"somewhere", []int64{1}}, false))
		mark()
		details := appendInt(appendInt(nil, 1, 1700000000), 2, 4096)
		details = appendStr(details, 5, "0123abcd")
		files := appendMsg(appendStr(nil, 1, "repomd.xml"), 2, details)
		b = appendMsg(b, fieldFileDetailsCache, appendMsg(appendStr(nil, 1, "pub/fedora/linux"), 2, files))
		mark()
		b = appendMsg(b, fieldDisabledRepositoryCache, appendInt(appendStr(nil, fieldKey, "old-repo"), fieldValue, 1))
		mark()
		b = appendMsg(b, fieldRepositoryRedirectCache, encStringString(kv{"from", "to"}))
		mark()
		b = appendMsg(b, fieldRepoArchToDirectoryName, encStringString(kv{"fedora-42+x86_64", "pub/fedora/linux"}))
		mark()
	}
	for _, e := range c.hcURL {
		b = appendMsg(b, fieldHCUrlCache, encIntString(e))
		mark()
	}
	for _, e := range c.continentRedirect {
		b = appendMsg(b, fieldCountryContinentRedirectCache, encStringString(e))
		mark()
	}
	for _, e := range c.hostASN {
		b = appendMsg(b, fieldHostAsnCache, encIntInts(e, c.packed))
		mark()
	}
	for _, e := range c.hostMaxConn {
		b = appendMsg(b, fieldHostMaxConnectionCache, encIntInt(e))
		mark()
	}
	for _, e := range c.hostCountry {
		b = appendMsg(b, fieldHostCountryCache, encIntString(e))
		mark()
	}
	for _, e := range c.hostBandwidth {
		b = appendMsg(b, fieldHostBandwidthCache, encIntInt(e))
		mark()
	}
	for _, e := range c.hostAllowed {
		b = appendMsg(b, fieldHostCountryAllowedCache, encIntStrings(e))
		mark()
	}
	for _, e := range c.hostNetblock {
		b = appendMsg(b, fieldHostNetblockCache, encStringInts(e, c.packed))
		mark()
	}
	for _, d := range c.dirs {
		b = appendMsg(b, fieldMirrorListCache, encDir(d, c.packed))
		mark()
	}
	return b, boundaries
}

func strp(s string) *string { return &s }
func boolp(v bool) *bool    { return &v }
