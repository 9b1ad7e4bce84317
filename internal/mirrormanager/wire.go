package mirrormanager

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// The cache is decoded by the code generated from MirrorManager's schema (package mmpb),
// after check has walked the input against the schema's descriptor. check gives what
// proto.Unmarshal does not: errors naming the field and the byte offset ("truncated at
// byte 1234 (in MirrorList.MirrorListCache)"), a field of the schema with the wrong wire
// type refused (proto.Unmarshal would keep it as an unknown field and drop its value), and
// a count of the records a message holds, which bounds what decoding it allocates.

// record is one field record of a message.
type record struct {
	num protowire.Number
	typ protowire.Type
	rec []byte // the whole record, tag included
	val []byte // the value: a bytes value's content, without its length
	off int    // absolute offset of the record's tag in the input
	at  int    // absolute offset of val in the input
}

// records calls fn for each field record of the message encoded in b, which starts at
// absolute offset base of the input; what names the message in errors.
func records(b []byte, base int, what string, fn func(r record) error) error {
	for i := 0; i < len(b); {
		num, typ, n := protowire.ConsumeTag(b[i:])
		if n < 0 {
			return wireError(base+i, what, n)
		}
		if num > protowire.MaxValidNumber {
			// protowire reads tags up to 2^31-1; protobuf parsers (the generated code's too) refuse them.
			return fmt.Errorf("malformed protobuf at byte %d (in %s): invalid field number %d", base+i, what, num)
		}
		m := protowire.ConsumeFieldValue(num, typ, b[i+n:])
		if m < 0 {
			return wireError(base+i, what, m)
		}
		r := record{num: num, typ: typ, rec: b[i : i+n+m], val: b[i+n : i+n+m], off: base + i, at: base + i + n}
		if typ == protowire.BytesType {
			v, k := protowire.ConsumeBytes(r.val)
			r.val, r.at = v, r.at+k-len(v)
		}
		if err := fn(r); err != nil {
			return err
		}
		i += n + m
	}
	return nil
}

// checker checks messages against their descriptors and counts their records (and packed
// values) against limit.
type checker struct {
	count, limit int
	what         string // what the limit bounds, for its error
}

// message checks the message md encoded in b (at base; path names it) and returns the
// first required field it lacks, if any.
func (c *checker) message(b []byte, base int, md protoreflect.MessageDescriptor, path string) (protoreflect.FieldDescriptor, error) {
	var seen uint64 // field numbers below 64 seen; the schema's are 1 to 16
	err := records(b, base, path, func(r record) error {
		fd := md.Fields().ByNumber(r.num)
		if fd == nil {
			return nil // unknown to the schema: skipped, as every protobuf parser does
		}
		if r.num < 64 {
			seen |= 1 << r.num
		}
		return c.field(fd, r, path+"."+string(fd.Name()))
	})
	if err != nil {
		return nil, err
	}
	fields := md.Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		if fd.Cardinality() == protoreflect.Required && seen&(1<<fd.Number()) == 0 {
			return fd, nil
		}
	}
	return nil, nil
}

// field checks one record r of the field fd, named name.
func (c *checker) field(fd protoreflect.FieldDescriptor, r record, name string) error {
	if c.count++; c.count > c.limit {
		return fmt.Errorf("field %s (%d) at byte %d: more than %d records in %s", name, r.num, r.off, c.limit, c.what)
	}
	want := wireType(fd.Kind())
	switch {
	case r.typ == want && fd.Message() != nil:
		missing, err := c.message(r.val, r.at, fd.Message(), name)
		if err == nil && missing != nil {
			err = fmt.Errorf("field %s (%d) at byte %d: required %s missing", name, r.num, r.off, missing.Name())
		}
		return err
	case r.typ == want:
		return nil
	case r.typ == protowire.BytesType && fd.IsList() && want == protowire.VarintType:
		// A packed run of varints, which parsers must accept for any repeated scalar.
		for i := 0; i < len(r.val); {
			_, n := protowire.ConsumeVarint(r.val[i:])
			if n < 0 {
				return wireError(r.at+i, name+" (packed)", n)
			}
			if c.count++; c.count > c.limit {
				return fmt.Errorf("field %s (%d) at byte %d: more than %d records in %s", name, r.num, r.off, c.limit, c.what)
			}
			i += n
		}
		return nil
	}
	return fmt.Errorf("field %s (%d) at byte %d: wrong wire type %s, want %s", name, r.num, r.off, typeName(r.typ), typeName(want))
}

// wireType is the wire type of a (non-packed) value of kind k.
func wireType(k protoreflect.Kind) protowire.Type {
	switch k {
	case protoreflect.StringKind, protoreflect.BytesKind, protoreflect.MessageKind:
		return protowire.BytesType
	case protoreflect.GroupKind:
		return protowire.StartGroupType
	case protoreflect.Fixed32Kind, protoreflect.Sfixed32Kind, protoreflect.FloatKind:
		return protowire.Fixed32Type
	case protoreflect.Fixed64Kind, protoreflect.Sfixed64Kind, protoreflect.DoubleKind:
		return protowire.Fixed64Type
	}
	return protowire.VarintType
}

func wireError(off int, what string, code int) error {
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
