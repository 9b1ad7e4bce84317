package mirrormanager

import (
	"github.com/regmirror/regmirror/internal/testsupport/mmtest"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// The package's tests build caches with package mmtest (the generated code's proto.Marshal),
// under shorter names.
type (
	cacheSpec = mmtest.Cache
	dirSpec   = mmtest.Dir
	idInts    = mmtest.IDInts
)

// Field numbers, from the schema's descriptor, for hand-built (broken) files.
var (
	fieldTime               = number(mirrorListDesc, "Time")
	fieldHCUrlCache         = number(mirrorListDesc, "HCUrlCache")
	fieldHostCountryCache   = number(mirrorListDesc, "HostCountryCache")
	fieldHostBandwidthCache = number(mirrorListDesc, "HostBandwidthCache")
	fieldMirrorListCache    = number(mirrorListDesc, "MirrorListCache")
	fieldDirectory          = number(dirsField.Message(), "directory")
	fieldGlobal             = number(dirsField.Message(), "Global")
	fieldByHostID           = number(dirsField.Message(), "ByHostId")
	fieldKey                = protowire.Number(1) // key and value of every map-like message
	fieldValue              = protowire.Number(2)
)

func number(md protoreflect.MessageDescriptor, name protoreflect.Name) protowire.Number {
	return md.Fields().ByName(name).Number()
}

// appendMsg appends field num holding the message msg.
func appendMsg(b []byte, num protowire.Number, msg []byte) []byte {
	return protowire.AppendBytes(protowire.AppendTag(b, num, protowire.BytesType), msg)
}

// appendStr appends field num holding the string s.
func appendStr(b []byte, num protowire.Number, s string) []byte {
	return protowire.AppendString(protowire.AppendTag(b, num, protowire.BytesType), s)
}

// appendInt appends field num holding the varint v.
func appendInt(b []byte, num protowire.Number, v int64) []byte {
	return protowire.AppendVarint(protowire.AppendTag(b, num, protowire.VarintType), uint64(v))
}
