package redirector

import (
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/regmirror/regmirror/internal/trunc"
)

// AccessLog writes one line per request, in the format of log/slog's TextHandler or
// JSONHandler (so the access lines and the server's own log read alike in one journal), at a
// fraction of slog's cost: a line is appended to a pooled buffer with no reflection, no
// interface values and no allocation, and handed to the writer in one Write. The writer must
// be safe for concurrent use and should buffer (cmd/regmirror's line buffer flushes every
// 100 ms and on shutdown).
type AccessLog struct {
	w    io.Writer
	json bool
	bufs sync.Pool
}

// NewAccessLog returns an access log writing to w in format "text" or "json".
func NewAccessLog(w io.Writer, format string) (*AccessLog, error) {
	switch format {
	case "text", "json":
	default:
		return nil, fmt.Errorf("access log format %q: want text or json", format)
	}
	return &AccessLog{w: w, json: format == "json", bufs: sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}}, nil
}

// accessLine is what one access log line says.
type accessLine struct {
	client, method, path string
	status               int
	bytes                int64
	duration             time.Duration
	resolved             bool // country and region are known
	country, region      string
	asn                  uint32
	mirror, peer, ua     string
}

// logAccess writes one structured line per request: who (client address as used for the
// region, and the TCP peer), what, the answer, and where a blob was sent.
func (s *Server) logAccess(st *reqState, r *http.Request, start time.Time) {
	client := st.client
	if !st.resolved {
		client, _ = clientAddr(r, s.trusted)
	}
	now := time.Now()
	l := accessLine{
		client:   client.String(),
		method:   r.Method,
		path:     trunc.Middle(r.URL.Path, 300),
		status:   st.status,
		bytes:    st.bytes,
		duration: now.Sub(start),
		resolved: st.resolved,
		country:  st.country,
		region:   st.region,
		asn:      st.asn,
		mirror:   st.mirror,
	}
	if len(s.trusted) > 0 {
		l.peer = r.RemoteAddr
	}
	if ua := r.UserAgent(); ua != "" {
		l.ua = trunc.String(ua)
	}
	s.access.write(now, &l)
}

func (a *AccessLog) write(now time.Time, l *accessLine) {
	bp := a.bufs.Get().(*[]byte)
	b := a.appendLine((*bp)[:0], now, l)
	_, _ = a.w.Write(b)
	if cap(b) <= 4<<10 {
		*bp = b
		a.bufs.Put(bp)
	}
}

// appendLine appends l as slog's handler would format a record at now with level INFO,
// message "request" and l's fields as attributes, in this order: client, method, path,
// status, bytes, duration, then country, region and asn when resolved (asn when not 0),
// mirror, peer and user_agent when not empty.
func (a *AccessLog) appendLine(b []byte, now time.Time, l *accessLine) []byte {
	if a.json {
		b = append(b, `{"time":"`...)
		b = appendJSONTime(b, now)
		b = append(b, `","level":"INFO","msg":"request"`...)
	} else {
		b = append(b, "time="...)
		b = appendRFC3339Millis(b, now)
		b = append(b, " level=INFO msg=request"...)
	}
	b = a.str(b, "client", l.client)
	b = a.str(b, "method", l.method)
	b = a.str(b, "path", l.path)
	b = a.int(b, "status", int64(l.status))
	b = a.int(b, "bytes", l.bytes)
	if a.json {
		b = a.int(b, "duration", int64(l.duration))
	} else {
		b = a.key(b, "duration")
		b = append(b, l.duration.String()...)
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
	if needsQuoting(v) {
		return strconv.AppendQuote(b, v)
	}
	return append(b, v...)
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
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c != '\\' && (c == ' ' || c == '=' || c == '"' || c < 0x20) {
				return true
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError || unicode.IsSpace(r) || !unicode.IsPrint(r) {
			return true
		}
		i += size
	}
	return false
}

// appendJSONEscaped appends s escaped as slog's JSONHandler escapes strings: '"', '\' and
// control characters escaped, invalid UTF-8 as U+FFFD, U+2028 and U+2029 escaped.
func appendJSONEscaped(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	start := 0
	for i := 0; i < len(s); {
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
