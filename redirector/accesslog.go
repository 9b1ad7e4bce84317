package redirector

import (
	"encoding/binary"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"strconv"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"
	"unsafe"

	"github.com/regmirror/regmirror/internal/batch"
	"github.com/regmirror/regmirror/internal/trunc"
)

// AccessLog writes one line per request, in the format of log/slog's TextHandler or
// JSONHandler (so the access lines and the server's own log read alike in one journal), at a
// fraction of slog's cost. The request path only appends the line's fields, as a binary
// record, to a batch kept outside the Go heap (no formatting, no allocation, no pointer for
// the collector to scan, one short lock); a goroutine formats the batch, with no reflection,
// no interface values and the date and time to the second formatted once a second, every 50
// ms or as soon as 64 KiB of records wait, and hands the lines to the writer in writes of up
// to 64 KiB. The writer should buffer (cmd/regmirror's line buffer writes every 100 ms or
// 1 MiB, and on shutdown): a crash loses at most the lines of the last 150 ms. Close writes
// the rest.
type AccessLog struct {
	w     io.Writer
	json  bool
	stamp atomic.Pointer[secondStamp] // the last second formatted
	lines *batch.Batcher
	out   []byte // a batch's lines formatted, accessOut bytes reused (flush only: one at a time)
}

const (
	accessBatch    = 64 << 10 // bytes of records that start a batch's formatting
	accessCapacity = 1 << 20  // bytes of records each of the two batch buffers holds
	accessOut      = 64 << 10 // bytes of lines formatted per write (reused: on the heap)
)

// NewAccessLog returns an access log writing to w in format "text" or "json". Close it to
// write the last lines.
func NewAccessLog(w io.Writer, format string) (*AccessLog, error) {
	switch format {
	case "text", "json":
	default:
		return nil, fmt.Errorf("access log format %q: want text or json", format)
	}
	a := &AccessLog{w: w, json: format == "json", out: make([]byte, 0, accessOut)}
	lines, err := batch.New(50*time.Millisecond, accessBatch, accessCapacity, a.flush)
	if err != nil {
		return nil, fmt.Errorf("starting the access log: %w", err)
	}
	a.lines = lines
	return a, nil
}

// flush formats a batch of records and writes it, in writes of up to accessOut bytes.
func (a *AccessLog) flush(recs []byte) error {
	b := a.out[:0]
	var l accessLine
	var at time.Time
	for len(recs) > 0 {
		n := decodeAccessRecord(recs, &at, &l)
		if len(b) > 0 && cap(b)-len(b) < maxLineLen(n) {
			if _, err := a.w.Write(b); err != nil {
				return err
			}
			b = b[:0]
		}
		b = a.appendLine(b, at, &l)
		recs = recs[n:]
	}
	if cap(b) == accessOut {
		a.out = b[:0]
	}
	if len(b) == 0 {
		return nil
	}
	_, err := a.w.Write(b)
	return err
}

// maxLineLen bounds the length of the line formatted from a record of n bytes: JSON writes a
// byte as at most six ("\u00XX"), the keys and the numbers take less than 300.
func maxLineLen(n int) int { return 300 + 6*n }

// Flush writes the lines recorded so far.
func (a *AccessLog) Flush() error { return a.lines.Flush() }

// Close writes the lines left; lines recorded afterwards are written at once.
func (a *AccessLog) Close() error { return a.lines.Close() }

// accessLine is what one access log line says.
type accessLine struct {
	client           netip.Addr
	method, path     string
	status           int
	bytes            int64
	duration         time.Duration
	resolved         bool // country and region are known
	plain            bool // method and path need no quoting or escaping (plainRequest)
	country, region  string
	asn              uint32
	mirror, peer, ua string
}

// logAccess writes one structured line per request: who (client address as used for the
// region, and the TCP peer), what, the answer, and where a blob was sent.
func (s *Server) logAccess(st *reqState, r *http.Request, start time.Time) {
	client := st.client
	if !st.resolved {
		client, _ = clientAddr(st.conn, r, s.trusted)
	}
	// One read of the monotonic clock, not a second time.Now: start carries the wall clock.
	d := time.Since(start)
	now := start.Add(d)
	l := accessLine{
		client:   client,
		method:   trunc.String(r.Method),
		path:     trunc.Middle(r.URL.Path, maxLoggedPath),
		status:   st.status,
		bytes:    st.bytes,
		duration: d,
		resolved: st.resolved,
		plain:    plainRequest(st, r),
		country:  st.country,
		region:   st.region,
		asn:      st.asn,
		mirror:   st.mirror,
	}
	if len(s.trusted) > 0 {
		l.peer = r.RemoteAddr
	}
	if ua := r.Header["User-Agent"]; len(ua) > 0 && ua[0] != "" { // net/http's keys are canonical: no Get
		l.ua = trunc.String(ua[0])
	}
	s.access.write(now, &l)
}

// maxLoggedPath is the length past which a path is cut in the middle in the log.
const maxLoggedPath = 300

// plainRequest reports whether the request's method and path are written as they are in
// both formats: a GET or HEAD answered below 400 on a known endpoint. Its path is then a
// fixed one, or made of a name, tag or digest the handler checked against its grammar (or
// found in the generation, which checked it on loading), and none of those grammars allows
// a byte that a log line quotes or escapes. FuzzHandler checks it on hostile paths.
func plainRequest(st *reqState, r *http.Request) bool {
	return st.status < 400 && st.ep != epUnknown && len(r.URL.Path) <= maxLoggedPath &&
		(r.Method == http.MethodGet || r.Method == http.MethodHead)
}

// write records l at now, to be formatted with its batch.
func (a *AccessLog) write(now time.Time, l *accessLine) {
	rec := a.lines.Begin(maxAccessRecord(l))
	_ = a.lines.End(appendAccessRecord(rec, now, l)) // a write error is the batch's: it is not the request's
}

// An access record is a line's fields in binary, little-endian, in a head of fixed size:
// its length (uint32), the time (Unix seconds int64, nanoseconds uint32), status (uint32),
// bytes (int64), duration (int64), asn (uint32), flags (one byte: 1 resolved, 2 plain), the
// lengths of the client address (uint16, netip.Addr's binary form) and of the strings
// method, path, country, region, mirror, peer and user agent (uint16 each; a string is cut
// in the middle to maxRecordString bytes); then the address and the strings, back to back.
const (
	recordLens       = 41 // where the head's lengths start
	recordHead       = recordLens + 2*(1+numRecordStrings)
	numRecordStrings = 7
	maxRecordString  = 4 << 10
)

// recordStrings are l's strings in the order of its record.
func (l *accessLine) recordStrings() [numRecordStrings]*string {
	return [...]*string{&l.method, &l.path, &l.country, &l.region, &l.mirror, &l.peer, &l.ua}
}

func maxAccessRecord(l *accessLine) int {
	n := recordHead + 16 + len(l.client.Zone())
	for _, s := range l.recordStrings() {
		n += min(len(*s), maxRecordString)
	}
	return n
}

// appendAccessRecord appends l's record at at to b, which must have room for
// maxAccessRecord(l) bytes more.
func appendAccessRecord(b []byte, at time.Time, l *accessLine) []byte {
	start := len(b)
	b = b[:start+recordHead]
	h := (*[recordHead]byte)(b[start:]) // fixed offsets: no bounds checks
	binary.LittleEndian.PutUint64(h[4:], uint64(at.Unix()))
	binary.LittleEndian.PutUint32(h[12:], uint32(at.Nanosecond()))
	binary.LittleEndian.PutUint32(h[16:], uint32(l.status))
	binary.LittleEndian.PutUint64(h[20:], uint64(l.bytes))
	binary.LittleEndian.PutUint64(h[28:], uint64(l.duration))
	binary.LittleEndian.PutUint32(h[36:], l.asn)
	flags := byte(0)
	if l.resolved {
		flags |= 1
	}
	if l.plain {
		flags |= 2
	}
	h[40] = flags
	b, _ = l.client.AppendBinary(b) // never fails
	binary.LittleEndian.PutUint16(h[recordLens:], uint16(len(b)-start-recordHead))
	for i, p := range l.recordStrings() {
		v := *p
		if len(v) > maxRecordString {
			v = trunc.Middle(v, maxRecordString)
		}
		binary.LittleEndian.PutUint16(h[recordLens+2+2*i:], uint16(len(v)))
		b = append(b, v...)
	}
	binary.LittleEndian.PutUint32(h[:], uint32(len(b)-start))
	return b
}

// decodeAccessRecord reads the record at the start of rec into at and l and returns its
// length. l's strings are rec's bytes (no copy): they are valid until rec is reused.
func decodeAccessRecord(rec []byte, at *time.Time, l *accessLine) int {
	h := rec[:recordHead]
	n := int(binary.LittleEndian.Uint32(h))
	*at = time.Unix(int64(binary.LittleEndian.Uint64(h[4:])), int64(binary.LittleEndian.Uint32(h[12:])))
	l.status = int(int32(binary.LittleEndian.Uint32(h[16:])))
	l.bytes = int64(binary.LittleEndian.Uint64(h[20:]))
	l.duration = time.Duration(binary.LittleEndian.Uint64(h[28:]))
	l.asn = binary.LittleEndian.Uint32(h[36:])
	l.resolved, l.plain = h[40]&1 != 0, h[40]&2 != 0
	r := rec[recordHead:n]
	k := int(binary.LittleEndian.Uint16(h[recordLens:]))
	l.client = netip.Addr{}
	_ = l.client.UnmarshalBinary(r[:k]) // written by AppendBinary
	r = r[k:]
	for i, p := range l.recordStrings() {
		k := int(binary.LittleEndian.Uint16(h[recordLens+2+2*i:]))
		*p = unsafe.String(unsafe.SliceData(r), k)
		r = r[k:]
	}
	return n
}

// appendLine appends l as slog's handler would format a record at now with level INFO,
// message "request" and l's fields as attributes, in this order: client, method, path,
// status, bytes, duration, then country, region and asn when resolved (asn when not 0),
// mirror, peer and user_agent when not empty.
func (a *AccessLog) appendLine(b []byte, now time.Time, l *accessLine) []byte {
	if a.json {
		b = append(b, `{"time":"`...)
		b = a.appendTime(b, now)
		b = append(b, `","level":"INFO","msg":"request"`...)
	} else {
		b = append(b, "time="...)
		b = a.appendTime(b, now)
		b = append(b, " level=INFO msg=request"...)
	}
	b = a.addr(b, "client", l.client)
	if l.plain {
		b = a.plainStr(b, "method", l.method)
		b = a.plainStr(b, "path", l.path)
	} else {
		b = a.str(b, "method", l.method)
		b = a.str(b, "path", l.path)
	}
	b = a.int(b, "status", int64(l.status))
	b = a.int(b, "bytes", l.bytes)
	if a.json {
		b = a.int(b, "duration", int64(l.duration))
	} else {
		b = a.key(b, "duration")
		b = appendDuration(b, l.duration)
	}
	if l.resolved {
		b = a.str(b, "country", l.country)
		b = a.str(b, "region", l.region)
		if l.asn != 0 {
			b = a.int(b, "asn", int64(l.asn))
		}
	}
	if l.mirror != "" {
		b = a.str(b, "mirror", l.mirror)
	}
	if l.peer != "" {
		b = a.str(b, "peer", l.peer)
	}
	if l.ua != "" {
		b = a.str(b, "user_agent", l.ua)
	}
	if a.json {
		b = append(b, '}')
	}
	return append(b, '\n')
}

func (a *AccessLog) key(b []byte, k string) []byte {
	if a.json {
		b = append(b, ',', '"')
		b = append(b, k...)
		return append(b, '"', ':')
	}
	b = append(b, ' ')
	b = append(b, k...)
	return append(b, '=')
}

func (a *AccessLog) int(b []byte, k string, v int64) []byte {
	return strconv.AppendInt(a.key(b, k), v, 10)
}

func (a *AccessLog) str(b []byte, k, v string) []byte {
	b = a.key(b, k)
	if a.json {
		b = append(b, '"')
		b = appendJSONEscaped(b, v)
		return append(b, '"')
	}
	if v == "" { // an unknown country: strconv's quoting for nothing
		return append(b, '"', '"')
	}
	if needsQuoting(v) {
		return strconv.AppendQuote(b, v)
	}
	return append(b, v...)
}

// plainStr appends a value known to need no quoting (text) or escaping (JSON): no space,
// '=', quote, backslash, control byte or non-ASCII byte, and not empty.
func (a *AccessLog) plainStr(b []byte, k, v string) []byte {
	b = a.key(b, k)
	if a.json {
		b = append(b, '"')
		b = append(b, v...)
		return append(b, '"')
	}
	return append(b, v...)
}

// addr appends an address as its String method writes it, without allocating when it has no
// zone (a zone, from a forwarded address, may hold anything: it is quoted as any string).
func (a *AccessLog) addr(b []byte, k string, v netip.Addr) []byte {
	if !v.IsValid() || v.Zone() != "" {
		return a.str(b, k, v.String())
	}
	b = a.key(b, k)
	if !a.json {
		return v.AppendTo(b) // digits, hex digits, '.' and ':': never quoted
	}
	b = append(b, '"')
	b = v.AppendTo(b)
	return append(b, '"')
}

// secondStamp is one second of the clock formatted as RFC 3339: the date and time, and the
// zone after the fraction.
type secondStamp struct {
	unix       int64
	loc        *time.Location
	date, zone []byte // "2006-01-02T15:04:05", "Z" or "-07:00"
}

// appendTime formats t as slog's handlers do: RFC 3339 with exactly three digits of
// milliseconds for text, and RFC 3339 with nanoseconds, trailing zeros removed, for JSON. The
// date, time and zone are formatted once a second (a zone's offset changes on a second).
func (a *AccessLog) appendTime(b []byte, t time.Time) []byte {
	st := a.stamp.Load()
	if st == nil || st.unix != t.Unix() || st.loc != t.Location() {
		st = newSecondStamp(t)
		if st == nil {
			if a.json {
				return appendJSONTime(b, t)
			}
			return appendRFC3339Millis(b, t)
		}
		a.stamp.Store(st)
	}
	b = append(b, st.date...)
	ns := t.Nanosecond()
	if !a.json {
		ms := ns / 1e6
		b = append(b, '.', byte('0'+ms/100), byte('0'+ms/10%10), byte('0'+ms%10))
	} else if ns != 0 {
		var frac [10]byte
		frac[0] = '.'
		for i := 9; i > 0; i-- {
			frac[i] = byte('0' + ns%10)
			ns /= 10
		}
		n := 10
		for frac[n-1] == '0' {
			n--
		}
		b = append(b, frac[:n]...)
	}
	return append(b, st.zone...)
}

// newSecondStamp formats t's second, or returns nil for a year RFC 3339 cannot write in four
// digits.
func newSecondStamp(t time.Time) *secondStamp {
	const dateLen = len("2006-01-02T15:04:05")
	f := t.Truncate(time.Second).AppendFormat(make([]byte, 0, 32), time.RFC3339)
	if len(f) <= dateLen || (f[dateLen] != 'Z' && f[dateLen] != '+' && f[dateLen] != '-') || f[0] == '-' {
		return nil
	}
	return &secondStamp{unix: t.Unix(), loc: t.Location(), date: f[:dateLen], zone: f[dateLen:]}
}

// appendDuration appends d as d.String() writes it, without allocating (the algorithm of
// package time's Duration.format).
func appendDuration(b []byte, d time.Duration) []byte {
	var buf [32]byte
	w := len(buf)
	u := uint64(d)
	neg := d < 0
	if neg {
		u = -u
	}
	if u < uint64(time.Second) {
		// Smaller units, like 1.2ms.
		var prec int
		w--
		buf[w] = 's'
		w--
		switch {
		case u == 0:
			buf[w] = '0'
			return append(b, buf[w:]...)
		case u < uint64(time.Microsecond):
			prec = 0
			buf[w] = 'n'
		case u < uint64(time.Millisecond):
			prec = 3
			w-- // 'µ' is two bytes
			copy(buf[w:], "µ")
		default:
			prec = 6
			buf[w] = 'm'
		}
		w, u = durationFrac(buf[:w], u, prec)
		w = durationInt(buf[:w], u)
	} else {
		w--
		buf[w] = 's'
		w, u = durationFrac(buf[:w], u, 9)
		w = durationInt(buf[:w], u%60) // seconds
		u /= 60
		if u > 0 { // minutes
			w--
			buf[w] = 'm'
			w = durationInt(buf[:w], u%60)
			u /= 60
			if u > 0 { // hours
				w--
				buf[w] = 'h'
				w = durationInt(buf[:w], u)
			}
		}
	}
	if neg {
		w--
		buf[w] = '-'
	}
	return append(b, buf[w:]...)
}

// durationFrac writes the fraction of v/10**prec (".12345") at the tail of buf, without
// trailing zeros and without the point when the fraction is 0, and returns where it begins and
// v/10**prec.
func durationFrac(buf []byte, v uint64, prec int) (int, uint64) {
	w := len(buf)
	print := false
	for range prec {
		digit := v % 10
		print = print || digit != 0
		if print {
			w--
			buf[w] = byte(digit) + '0'
		}
		v /= 10
	}
	if print {
		w--
		buf[w] = '.'
	}
	return w, v
}

// durationInt writes v at the tail of buf and returns where it begins.
func durationInt(buf []byte, v uint64) int {
	w := len(buf)
	if v == 0 {
		w--
		buf[w] = '0'
		return w
	}
	for v > 0 {
		w--
		buf[w] = byte(v%10) + '0'
		v /= 10
	}
	return w
}

// appendJSONTime formats t as slog's JSONHandler does: RFC 3339 with nanoseconds, trailing
// zeros removed.
func appendJSONTime(b []byte, t time.Time) []byte { return t.AppendFormat(b, time.RFC3339Nano) }

// appendRFC3339Millis formats t as slog's TextHandler does: RFC 3339 with exactly three
// digits of milliseconds (RFC3339Nano is the fast path; a tenth of a millisecond added keeps
// four digits, and the fourth is dropped).
func appendRFC3339Millis(b []byte, t time.Time) []byte {
	const prefixLen = len("2006-01-02T15:04:05.000")
	n := len(b)
	t = t.Truncate(time.Millisecond).Add(time.Millisecond / 10)
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b[:n+prefixLen], b[n+prefixLen+1:]...)
}

// needsQuoting reports whether slog's TextHandler quotes s: empty, or with a space, '=', a
// character JSON would escape (other than '\'), or a rune that is not printable.
func needsQuoting(s string) bool {
	if s == "" {
		return true
	}
	i := 0
	for ; i+8 <= len(s); i += 8 { // eight plain bytes at a time, the common case
		if !plainWord(binary.LittleEndian.Uint64([]byte(s[i : i+8]))) {
			break
		}
	}
	for i < len(s) {
		c := s[i]
		if textByte[c] == textPlain {
			i++
			continue
		}
		if textByte[c] == textQuote {
			return true
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError || unicode.IsSpace(r) || !unicode.IsPrint(r) {
			return true
		}
		i += size
	}
	return false
}

// plainWord reports whether none of the eight bytes of x is below 0x21 (a control or space),
// '=', '"' or a byte of a multi-byte rune. (x - 0x0101…) & ^x & 0x8080… is non-zero exactly
// when a byte of x is zero; (x - n·0x0101…) & ^x & 0x8080… when one is below n (n <= 128).
func plainWord(x uint64) bool {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	eq, quote := x^(ones*'='), x^(ones*'"')
	return (x-ones*0x21)&^x&highs == 0 && (eq-ones)&^eq&highs == 0 && (quote-ones)&^quote&highs == 0 && x&highs == 0
}

// jsonPlainWord reports whether none of the eight bytes of x is a control character, '"',
// '\\' or a byte of a multi-byte rune (the tricks of plainWord).
func jsonPlainWord(x uint64) bool {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	bs, quote := x^(ones*'\\'), x^(ones*'"')
	return (x-ones*0x20)&^x&highs == 0 && (bs-ones)&^bs&highs == 0 && (quote-ones)&^quote&highs == 0 && x&highs == 0
}

// textByte classifies the bytes of a text value: a byte table, one load a byte on the path
// every line has.
var textByte = func() (t [256]uint8) {
	for c := range 256 {
		switch {
		case c >= utf8.RuneSelf:
			t[c] = textRune
		case c < 0x20 || c == ' ' || c == '=' || c == '"':
			t[c] = textQuote
		}
	}
	return t
}()

const (
	textPlain = iota // printed as is
	textQuote        // the value must be quoted
	textRune         // starts a multi-byte rune: decode it
)

// appendJSONEscaped appends s escaped as slog's JSONHandler escapes strings: '"', '\' and
// control characters escaped, invalid UTF-8 as U+FFFD, U+2028 and U+2029 escaped.
func appendJSONEscaped(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	start, i := 0, 0
	for ; i+8 <= len(s); i += 8 { // eight plain bytes at a time, the common case
		if !jsonPlainWord(binary.LittleEndian.Uint64([]byte(s[i : i+8]))) {
			break
		}
	}
	for i < len(s) {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '\\', '"':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	return append(b, s[start:]...)
}
