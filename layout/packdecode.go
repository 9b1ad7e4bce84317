package layout

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
)

// decodePack decodes a format 3 content pack from r as decodeMetaDoc would (format and kind
// first, then json.Unmarshal's rules), reading it through a window (packReader) so that its
// JSON is never whole in memory. Record maps are walked an entry at a time; a manifest, blob
// or repository record of the usual shape is decoded directly (fastManifest, fastBlob,
// fastRepository), any other value with json.Unmarshal.
func decodePack(r io.Reader, p *metaPack) error {
	fail := func(err error) error { return fmt.Errorf("decoding metadata %s: %w", metaKindPack, err) }
	notPack := func() error {
		return fmt.Errorf("not a format 3 metadata %s (format %d, kind %q)", metaKindPack, p.Format, p.Kind)
	}
	pr := &packReader{r: r}
	if c, err := pr.next(); err != nil {
		return fail(err)
	} else if c != '{' {
		return fail(errors.New("not an object"))
	}
	more, err := pr.open('}')
	for i := 0; more && err == nil; i++ {
		var k string
		if k, err = pr.key(1); err != nil {
			break
		}
		if i < 2 && k != "format" && k != "kind" { // as peekHeader
			return notPack()
		}
		switch strings.ToLower(k) {
		case "format":
			err = pr.decode(1, &p.Format)
		case "kind":
			err = pr.decode(1, &p.Kind)
		case "dropmanifests":
			err = pr.decode(1, &p.DropManifests)
		case "dropblobs":
			err = pr.decode(1, &p.DropBlobs)
		case "droporphans":
			err = pr.decode(1, &p.DropOrphans)
		case "droprepositories":
			err = pr.decode(1, &p.DropRepositories)
		case "manifests":
			err = decodeRecords(pr, &p.Manifests, fastManifest)
		case "blobs":
			err = decodeRecords(pr, &p.Blobs, fastBlob)
		case "orphans":
			err = decodeRecords(pr, &p.Orphans, nil)
		case "repositories":
			err = decodeRecords(pr, &p.Repositories, fastRepository)
		case "repositorychanges":
			err = decodeRecords(pr, &p.RepositoryChanges, nil)
		default:
			_, err = pr.value(1)
		}
		if err != nil {
			break
		}
		if i == 1 && (p.Format != 3 || p.Kind != metaKindPack) {
			return notPack()
		}
		more, err = pr.close('}')
	}
	if err != nil {
		return fail(err)
	}
	if p.Format != 3 || p.Kind != metaKindPack { // fewer than two members
		return notPack()
	}
	if _, err := pr.next(); err != io.EOF {
		return fail(errors.New("data after the pack"))
	}
	return nil
}

// decodeRecords decodes a JSON object (or null) into *m an entry at a time, as json.Unmarshal
// would: entries are added to the map there is, null sets it to nil. fast, if not nil,
// decodes a value of the usual shape, reporting false for any other.
func decodeRecords[K Digest | string, V any](pr *packReader, m *map[K]V, fast func([]byte) (V, bool)) error {
	c, err := pr.peek()
	if err != nil {
		return err
	}
	if c != '{' {
		raw, err := pr.value(1)
		if err != nil {
			return err
		}
		if string(raw) != "null" {
			return fmt.Errorf("want an object, got %.20s", raw)
		}
		*m = nil
		return nil
	}
	pr.off++
	if *m == nil {
		*m = map[K]V{}
	}
	more, err := pr.open('}')
	for more && err == nil {
		var s string
		if s, err = pr.key(2); err != nil {
			return err
		}
		var k K
		switch p := any(&k).(type) {
		case *Digest: // as its UnmarshalText
			if *p, err = ParseDigest(s); err != nil {
				return err
			}
		case *string:
			*p = s
		}
		var raw []byte
		if raw, err = pr.value(2); err != nil {
			return err
		}
		var v V
		ok := false
		if fast != nil {
			v, ok = fast(raw)
		}
		if !ok {
			if err := json.Unmarshal(raw, &v); err != nil {
				return err
			}
		}
		(*m)[k] = v
		more, err = pr.close('}')
	}
	return err
}

// fastManifest decodes {"mediaType":"…","data":"<base64>"} (either member optional, in any
// order, plain ASCII without escapes) as json.Unmarshal would; false for anything else.
func fastManifest(raw []byte) (*Manifest, bool) {
	var m Manifest
	seen := 0
	ok := fastObject(raw, func(key, val []byte) bool {
		switch string(key) {
		case "mediaType":
			s, ok := plainString(val)
			if !ok || !first(&seen, 1) {
				return false
			}
			m.MediaType = string(s)
		case "data": // base64 refuses any byte a plain string would not have
			if val[0] != '"' || !first(&seen, 2) {
				return false
			}
			s := val[1 : len(val)-1]
			b := make([]byte, base64.StdEncoding.DecodedLen(len(s)))
			n, err := base64.StdEncoding.Decode(b, s)
			if err != nil {
				return false
			}
			m.Data = b[:n]
		default:
			return false
		}
		return true
	})
	return &m, ok
}

// fastBlob decodes a blob record of size, since, subsets and former (each optional, once,
// a plain non-negative integer) as json.Unmarshal would; false for anything else.
func fastBlob(raw []byte) (*Blob, bool) {
	var b Blob
	seen := 0
	ok := fastObject(raw, func(key, val []byte) bool {
		var dst *uint64
		var bit int
		var size uint64
		switch string(key) {
		case "size":
			dst, bit = &size, 1
		case "since":
			dst, bit = &b.Since, 2
		case "subsets":
			dst, bit = &b.Subsets, 4
		case "former":
			dst, bit = &b.Former, 8
		default:
			return false
		}
		n, ok := plainUint(val)
		if !ok || !first(&seen, bit) {
			return false
		}
		if *dst = n; bit == 1 {
			b.Size = int64(n)
		}
		return true
	})
	return &b, ok
}

// fastObject calls member for each member of raw, a JSON object scanValue accepted, while
// it returns true; false if raw is not an object, a key has an escape or member said false.
// A string value with an escape may reach member cut short: member must refuse backslashes.
func fastObject(raw []byte, member func(key, val []byte) bool) bool {
	i := skipSpace(raw, 0)
	if i == len(raw) || raw[i] != '{' {
		return false
	}
	i = skipSpace(raw, i+1)
	if i < len(raw) && raw[i] == '}' {
		return true
	}
	for i < len(raw) && raw[i] == '"' {
		j := bytes.IndexByte(raw[i+1:], '"')
		if j < 0 {
			return false
		}
		key := raw[i+1 : i+1+j]
		if bytes.IndexByte(key, '\\') >= 0 {
			return false
		}
		i = skipSpace(raw, i+j+2)
		if i == len(raw) || raw[i] != ':' {
			return false
		}
		i = skipSpace(raw, i+1)
		n := 0 // the value's length; 0 for none
		if i < len(raw) && raw[i] == '"' {
			if j := bytes.IndexByte(raw[i+1:], '"'); j >= 0 { // the end, or a quote after a backslash
				n = j + 2
			}
		} else if m, st := scanValue(raw[i:], 0); st == scanDone {
			n = m
		}
		if n == 0 || !member(key, raw[i:i+n]) {
			return false
		}
		i = skipSpace(raw, i+n)
		if i < len(raw) && raw[i] == '}' {
			return true
		}
		if i == len(raw) || raw[i] != ',' {
			return false
		}
		i = skipSpace(raw, i+1)
	}
	return false
}

// first reports whether bit is not yet in *seen, adding it: a member met for the first time.
func first(seen *int, bit int) bool {
	if *seen&bit != 0 {
		return false
	}
	*seen |= bit
	return true
}

// plainString returns the contents of a JSON string of printable ASCII without escapes:
// what json.Unmarshal gives for it.
func plainString(val []byte) ([]byte, bool) {
	if len(val) < 2 || val[0] != '"' || val[len(val)-1] != '"' {
		return nil, false
	}
	s := val[1 : len(val)-1]
	return s, isPlain(s)
}

// isPlain reports whether s is printable ASCII without quotes or backslashes.
func isPlain(s []byte) bool {
	for _, c := range s {
		if c < 0x20 || c >= 0x7f || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// fastRepository decodes a repository record of tags, manifests, blobs, retiring and
// retiringBlobs (each once, null or of plain strings) as json.Unmarshal would; false for
// anything else.
func fastRepository(raw []byte) (*Repository, bool) {
	var r Repository
	seen := 0
	ok := fastObject(raw, func(key, val []byte) bool {
		var dst *[]Digest
		var bit int
		switch string(key) {
		case "tags":
			if !first(&seen, 1) {
				return false
			}
			if string(val) == "null" {
				return true
			}
			r.Tags = map[string]Digest{}
			return fastObject(val, func(tag, v []byte) bool {
				d, ok := plainString(v)
				if !ok || !isPlain(tag) {
					return false
				}
				p, err := ParseDigest(string(d))
				r.Tags[string(tag)] = p
				return err == nil
			})
		case "manifests":
			dst, bit = &r.Manifests, 2
		case "blobs":
			dst, bit = &r.Blobs, 4
		case "retiring":
			dst, bit = &r.Retiring, 8
		case "retiringBlobs":
			dst, bit = &r.RetiringBlobs, 16
		default:
			return false
		}
		if !first(&seen, bit) {
			return false
		}
		if string(val) == "null" {
			return true
		}
		ds, ok := fastDigests(val)
		*dst = ds
		return ok
	})
	return &r, ok
}

// fastDigests decodes a JSON array of plain digest strings, scanValue accepted, as
// json.Unmarshal would; false for anything else.
func fastDigests(val []byte) ([]Digest, bool) {
	if val[0] != '[' {
		return nil, false
	}
	ds := []Digest{}
	i := skipSpace(val, 1)
	if i < len(val) && val[i] == ']' {
		return ds, true
	}
	for i < len(val) && val[i] == '"' {
		j := bytes.IndexByte(val[i+1:], '"')
		if j < 0 {
			return nil, false
		}
		s := val[i+1 : i+1+j]
		if !isPlain(s) {
			return nil, false
		}
		d, err := ParseDigest(string(s))
		if err != nil {
			return nil, false
		}
		ds = append(ds, d)
		i = skipSpace(val, i+j+2)
		if i < len(val) && val[i] == ']' {
			return ds, true
		}
		if i == len(val) || val[i] != ',' {
			return nil, false
		}
		i = skipSpace(val, i+1)
	}
	return nil, false
}

// plainUint parses a JSON number of at most 18 digits (no sign, fraction or exponent).
func plainUint(val []byte) (uint64, bool) {
	if len(val) == 0 || len(val) > 18 || (val[0] == '0' && len(val) > 1) {
		return 0, false
	}
	var n uint64
	for _, c := range val {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + uint64(c-'0')
	}
	return n, true
}

// packReader reads JSON from r through a window that grows to hold the value being read.
type packReader struct {
	r   io.Reader
	buf []byte // buf[off:] is read and not yet consumed
	off int
	eof error // io.EOF or the read error, once met
}

// packWindow is the least size of packReader's window.
const packWindow = 64 << 10

// fill moves buf[off:] to the start of buf and reads until buf is full (growing it when
// more than half full) or the input ends; false if it read nothing.
func (p *packReader) fill() bool {
	if p.eof != nil {
		return false
	}
	n := copy(p.buf, p.buf[p.off:])
	p.buf, p.off = p.buf[:n], 0
	if cap(p.buf)-n < max(packWindow, cap(p.buf))/2 {
		p.buf = append(make([]byte, 0, 2*cap(p.buf)+packWindow), p.buf...)
	}
	for len(p.buf) < cap(p.buf) && p.eof == nil {
		m, err := p.r.Read(p.buf[len(p.buf):cap(p.buf)])
		p.buf = p.buf[:len(p.buf)+m]
		if err != nil {
			p.eof = err
		}
	}
	return len(p.buf) > n
}

// end is the error for input that ended: the read error, or io.ErrUnexpectedEOF.
func (p *packReader) end() error {
	if p.eof != nil && p.eof != io.EOF {
		return p.eof
	}
	return io.ErrUnexpectedEOF
}

// peek skips whitespace and returns the next byte; io.EOF (or the read error) at the end.
func (p *packReader) peek() (byte, error) {
	for {
		p.off = skipSpace(p.buf, p.off)
		if p.off < len(p.buf) {
			return p.buf[p.off], nil
		}
		if !p.fill() {
			if p.eof == io.EOF {
				return 0, io.EOF
			}
			return 0, p.end()
		}
	}
}

// next is peek, consuming the byte.
func (p *packReader) next() (byte, error) {
	c, err := p.peek()
	if err == nil {
		p.off++
	}
	return c, err
}

// open is called after an object's opening brace: whether a member follows (else it
// consumes the closing brace).
func (p *packReader) open(closing byte) (bool, error) {
	c, err := p.peek()
	if err != nil {
		return false, p.end()
	}
	if c == closing {
		p.off++
		return false, nil
	}
	return true, nil
}

// close is called after a member: whether another follows (a comma) or the object ends.
func (p *packReader) close(closing byte) (bool, error) {
	c, err := p.next()
	switch {
	case err != nil:
		return false, p.end()
	case c == ',':
		return true, nil
	case c == closing:
		return false, nil
	}
	return false, fmt.Errorf("invalid character %q after an object member", c)
}

// value returns the next JSON value, checked as encoding/json's scanner would at depth
// (the number of objects and arrays around it); valid until the next read.
func (p *packReader) value(depth int) ([]byte, error) {
	if _, err := p.peek(); err != nil {
		return nil, p.end()
	}
	for {
		n, st := scanValue(p.buf[p.off:], depth)
		switch st {
		case scanDone:
			v := p.buf[p.off : p.off+n]
			p.off += n
			return v, nil
		case scanBad:
			return nil, errors.New("invalid JSON")
		}
		if !p.fill() {
			return nil, p.end()
		}
	}
}

// key reads an object member's key and its colon.
func (p *packReader) key(depth int) (string, error) {
	raw, err := p.value(depth)
	if err != nil {
		return "", err
	}
	if raw[0] != '"' {
		return "", fmt.Errorf("invalid character %q looking for a key", raw[0])
	}
	var k string
	if s, ok := plainString(raw); ok {
		k = string(s)
	} else if err := json.Unmarshal(raw, &k); err != nil {
		return "", err
	}
	if c, err := p.next(); err != nil {
		return "", p.end()
	} else if c != ':' {
		return "", fmt.Errorf("invalid character %q after a key", c)
	}
	return k, nil
}

// decode decodes the next value into v with json.Unmarshal.
func (p *packReader) decode(depth int, v any) error {
	raw, err := p.value(depth)
	if err != nil {
		return err
	}
	return json.Unmarshal(raw, v)
}

// scanValue's results.
const (
	scanDone = iota
	scanMore // b ends within the value (or a number)
	scanBad
)

// maxJSONDepth is encoding/json's limit on nested objects and arrays.
const maxJSONDepth = 10000

// scanValue returns the length of the JSON value at the start of b, checked as
// encoding/json's scanner checks it when depth objects and arrays enclose it.
func scanValue(b []byte, depth int) (int, int) {
	const (
		stValue = iota
		stKey
		stAfter
	)
	var stackArr [64]byte
	stack := stackArr[:0]
	i, state := 0, stValue
	for {
		if state == stAfter && len(stack) == 0 {
			return i, scanDone
		}
		i = skipSpace(b, i)
		if i == len(b) {
			return 0, scanMore
		}
		c := b[i]
		switch state {
		case stKey:
			if c != '"' {
				return 0, scanBad
			}
			n, st := scanString(b[i:])
			if st != scanDone {
				return 0, st
			}
			if i = skipSpace(b, i+n); i == len(b) {
				return 0, scanMore
			}
			if b[i] != ':' {
				return 0, scanBad
			}
			i, state = i+1, stValue
		case stValue:
			switch {
			case c == '{' || c == '[':
				if depth+len(stack)+1 > maxJSONDepth {
					return 0, scanBad
				}
				stack = append(stack, c)
				if i = skipSpace(b, i+1); i == len(b) {
					return 0, scanMore
				}
				switch {
				case b[i] == c+2: // '}' or ']'
					i, stack, state = i+1, stack[:len(stack)-1], stAfter
				case c == '{':
					state = stKey
				}
			case c == '"':
				n, st := scanString(b[i:])
				if st != scanDone {
					return 0, st
				}
				i, state = i+n, stAfter
			case c == '-' || c >= '0' && c <= '9':
				n, st := scanNumber(b[i:])
				if st != scanDone {
					return 0, st
				}
				i, state = i+n, stAfter
			default:
				var lit string
				switch c {
				case 't':
					lit = "true"
				case 'f':
					lit = "false"
				case 'n':
					lit = "null"
				default:
					return 0, scanBad
				}
				rest := b[i:min(len(b), i+len(lit))]
				if !strings.HasPrefix(lit, string(rest)) {
					return 0, scanBad
				}
				if len(rest) < len(lit) {
					return 0, scanMore
				}
				i, state = i+len(lit), stAfter
			}
		case stAfter:
			top := stack[len(stack)-1]
			switch {
			case c == ',' && top == '{':
				i, state = i+1, stKey
			case c == ',':
				i, state = i+1, stValue
			case c == top+2:
				i, stack = i+1, stack[:len(stack)-1]
			default:
				return 0, scanBad
			}
		}
	}
}

// scanString returns the length of the JSON string at the start of b.
func scanString(b []byte) (int, int) {
	for i := 1; i < len(b); {
		if inString[b[i]] {
			i++
			continue
		}
		switch c := b[i]; {
		case c == '"':
			return i + 1, scanDone
		case c < 0x20:
			return 0, scanBad
		case c != '\\':
			i++
			continue
		}
		if i++; i == len(b) {
			break
		}
		switch b[i] {
		case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			i++
		case 'u':
			for range 4 {
				if i++; i == len(b) {
					return 0, scanMore
				}
				if !isHex(b[i]) {
					return 0, scanBad
				}
			}
			i++
		default:
			return 0, scanBad
		}
	}
	return 0, scanMore
}

// inString[c] is whether c stands for itself in a JSON string.
var inString = func() (t [256]bool) {
	for c := range t {
		t[c] = c >= 0x20 && c != '"' && c != '\\'
	}
	return t
}()

func isHex(c byte) bool { return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' }

// scanNumber returns the length of the JSON number at the start of b; scanMore if b ends
// before anything follows it.
func scanNumber(b []byte) (int, int) {
	digits := func(i int) int {
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		return i
	}
	i := 0
	if b[i] == '-' {
		i++
	}
	switch {
	case i == len(b):
		return 0, scanMore
	case b[i] == '0':
		i++
	case b[i] >= '1' && b[i] <= '9':
		i = digits(i + 1)
	default:
		return 0, scanBad
	}
	if i < len(b) && b[i] == '.' {
		if i++; i == len(b) {
			return 0, scanMore
		}
		if b[i] < '0' || b[i] > '9' {
			return 0, scanBad
		}
		i = digits(i)
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		if i++; i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i == len(b) {
			return 0, scanMore
		}
		if b[i] < '0' || b[i] > '9' {
			return 0, scanBad
		}
		i = digits(i)
	}
	if i == len(b) {
		return 0, scanMore
	}
	return i, scanDone
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}
