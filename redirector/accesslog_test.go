package redirector

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/regmirror/regmirror/internal/trunc"
	"github.com/regmirror/regmirror/layout"
)

func TestAccessLog(t *testing.T) {
	dir, dm := newTestTree(t, func(m *layout.Meta, _ *demo) { addMirrors(m, 1) })
	var buf bytes.Buffer
	s := newServer(t, Options{
		Tree:           dir,
		AccessLog:      mustAccessLog(t, &buf, "json"),
		TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")},
		CountryHeader:  "CF-IPCountry",
	})
	do(s, "GET", "/v2/fedora/blobs/"+dm.baseLayer.String(), "10.0.0.1:1", http.Header{"X-Forwarded-For": {"192.0.2.44"}, "Cf-Ipcountry": {"DE"}, "User-Agent": {"containers/5.30"}})
	do(s, "GET", "/v2/fedora/manifests/42", "192.0.2.9:1", nil)
	check(t, s.access.Flush())
	lines := bytes.Split(bytes.TrimSpace(buf.Bytes()), []byte("\n"))
	if len(lines) != 2 {
		t.Fatalf("%d lines: %s", len(lines), buf.Bytes())
	}
	var blob, man map[string]any
	check(t, json.Unmarshal(lines[0], &blob))
	check(t, json.Unmarshal(lines[1], &man))
	for k, want := range map[string]any{"client": "192.0.2.44", "peer": "10.0.0.1:1", "status": 307.0, "region": "DE", "country": "DE", "method": "GET", "user_agent": "containers/5.30"} {
		if blob[k] != want {
			t.Errorf("blob line %s = %v, want %v (%s)", k, blob[k], want, lines[0])
		}
	}
	if m, _ := blob["mirror"].(string); m != "de1.example" && m != "de2.example" {
		t.Errorf("blob line mirror %v", blob["mirror"])
	}
	if man["client"] != "192.0.2.9" || man["status"] != 200.0 || man["bytes"] != float64(len(dm.manifests[dm.fedoraIndex])) {
		t.Errorf("manifest line %s", lines[1])
	}
}

func mustAccessLog(t testing.TB, w io.Writer, format string) *AccessLog {
	t.Helper()
	a, err := NewAccessLog(w, format)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { check(t, a.Close()) })
	return a
}

// slogLine is what slog's own handler writes for l at now: the reference AccessLog matches.
func slogLine(format string, now time.Time, l *accessLine) []byte {
	var buf bytes.Buffer
	var h slog.Handler = slog.NewTextHandler(&buf, nil)
	if format == "json" {
		h = slog.NewJSONHandler(&buf, nil)
	}
	rec := slog.NewRecord(now, slog.LevelInfo, "request", 0)
	rec.AddAttrs(slog.String("client", l.client.String()), slog.String("method", l.method), slog.String("path", l.path),
		slog.Int("status", l.status), slog.Int64("bytes", l.bytes), slog.Duration("duration", l.duration))
	if l.resolved {
		rec.AddAttrs(slog.String("country", l.country), slog.String("region", l.region))
		if l.asn != 0 {
			rec.AddAttrs(slog.Uint64("asn", uint64(l.asn)))
		}
	}
	for _, a := range [][2]string{{"mirror", l.mirror}, {"peer", l.peer}, {"user_agent", l.ua}} {
		if a[1] != "" {
			rec.AddAttrs(slog.String(a[0], a[1]))
		}
	}
	_ = h.Handle(context.Background(), rec)
	return buf.Bytes()
}

// TestAccessLogFormat: every line is byte for byte what slog's handlers write for the same
// record, so the access log and the server's log read alike.
func TestAccessLogFormat(t *testing.T) {
	now := time.Date(2026, 11, 30, 1, 2, 3, 4_500_600, time.UTC)
	cases := []struct {
		name string
		line accessLine
	}{
		{"manifest", accessLine{client: netip.MustParseAddr("192.0.2.9"), method: "GET", path: "/v2/fedora/manifests/42", status: 200, bytes: 1234, duration: 1500 * time.Microsecond}},
		{"plain manifest", accessLine{client: netip.MustParseAddr("192.0.2.9"), method: "HEAD", path: "/v2/fedora/toolbox/manifests/4.2-x_y", status: 200, plain: true}},
		{"blob 307", accessLine{client: netip.MustParseAddr("2001:db8::1"), method: "GET", path: "/v2/fedora/blobs/sha256:0123", status: 307, duration: 3 * time.Second,
			plain: true, resolved: true, country: "DE", region: "EU", asn: 64500, mirror: "de1.example", peer: "10.0.0.1:4444", ua: "containers/5.30 (github.com/containers/image)"}},
		{"empty strings", accessLine{client: netip.Addr{}, method: "", path: "", resolved: true}},
		{"quotes and equals", accessLine{client: netip.MustParseAddr("fe80::1").WithZone(`a"b= c\`), method: "GET", path: `/v2/a"b=c\d`, ua: "ua=\"q\" \\"}},
		{"control characters", accessLine{method: "GET", path: "/v2/\x00\x01\t\n\r\x1f\x7f", ua: "a\u2028b\u2029c"}},
		{"invalid UTF-8", accessLine{method: "GET", path: "/v2/\xff\xfe/é/ü\u00a0", ua: "\xc3"}},
		{"negative duration", accessLine{duration: -time.Millisecond, bytes: -1, status: 599}},
		{"zero time", accessLine{method: "HEAD"}},
		{"v4-mapped and zoned", accessLine{client: netip.MustParseAddr("::ffff:192.0.2.1"), peer: "[fe80::1%eth0]:5"}},
		{"long duration", accessLine{client: netip.MustParseAddr("fe80::1%eth0"), duration: 2540400*time.Hour + 10*time.Minute + 10*time.Second + 7}},
	}
	for _, format := range []string{"text", "json"} {
		for _, c := range cases {
			t.Run(format+"/"+c.name, func(t *testing.T) {
				a := mustAccessLog(t, io.Discard, format)
				// One AccessLog for every time: its formatted second must follow the clock and zone.
				for _, at := range []time.Time{now, now.Truncate(time.Second), now.In(time.FixedZone("X", 3600)), now.Add(time.Second),
					now.Add(time.Second + 990*time.Millisecond), now.In(time.FixedZone("Y", -(9*3600 + 30*60))), now.AddDate(-60, 0, 0), now.Add(time.Nanosecond)} {
					got := a.appendLine(nil, at, &c.line)
					if want := slogLine(format, at, &c.line); !bytes.Equal(got, want) {
						t.Errorf("got  %q\nwant %q", got, want)
					}
				}
			})
		}
	}
	if _, err := NewAccessLog(io.Discard, "xml"); err == nil {
		t.Error("NewAccessLog(xml): no error")
	}
}

// FuzzAccessLogFormat compares AccessLog with slog's handlers on hostile paths and user agents.
func FuzzAccessLogFormat(f *testing.F) {
	f.Add("/v2/fedora/manifests/42", "containers/5.30", "de1", int64(1234))
	f.Add("/v2/\x00=\"", "\xff\u2028 x=y", "", int64(-5))
	f.Fuzz(func(t *testing.T, path, ua, mirror string, n int64) {
		client := netip.MustParseAddr("192.0.2.1")
		if n%3 == 0 {
			client = netip.MustParseAddr("2001:db8::1").WithZone(mirror)
		}
		l := accessLine{client: client, method: "GET", path: path, ua: ua, mirror: mirror, bytes: n, duration: time.Duration(n), resolved: n%2 == 0, country: ua, region: path}
		now := time.Unix(0, n).UTC()
		if y := now.Year(); y < 0 || y >= 10000 {
			return // slog itself errors out on such years; a real clock never has them
		}
		for _, format := range []string{"text", "json"} {
			got := mustAccessLog(t, io.Discard, format).appendLine(nil, now, &l)
			if want := slogLine(format, now, &l); !bytes.Equal(got, want) {
				t.Fatalf("%s: got  %q\nwant %q", format, got, want)
			}
		}
	})
}

// TestAppendDuration: a duration is written as its String method writes it.
func TestAppendDuration(t *testing.T) {
	for _, d := range []time.Duration{0, 1, -1, 999, 1000, 1001, 1500 * time.Microsecond, time.Millisecond, 999_999_999, time.Second,
		time.Second + 1, 59 * time.Second, time.Minute, time.Hour + 2*time.Second, 2540400*time.Hour + 10*time.Minute + 10*time.Second,
		-1500 * time.Millisecond, math.MaxInt64, math.MinInt64} {
		if got, want := string(appendDuration([]byte("x"), d)), "x"+d.String(); got != want {
			t.Errorf("appendDuration(%d) = %q, want %q", int64(d), got, want)
		}
	}
}

func FuzzAppendDuration(f *testing.F) {
	f.Add(int64(1500))
	f.Add(int64(math.MinInt64))
	f.Fuzz(func(t *testing.T, n int64) {
		if got, want := string(appendDuration(nil, time.Duration(n))), time.Duration(n).String(); got != want {
			t.Fatalf("appendDuration(%d) = %q, want %q", n, got, want)
		}
	})
}

// TestAccessLogAllocs: recording a line costs no allocation, nor does formatting it once the
// second is formatted.
func TestAccessLogAllocs(t *testing.T) {
	l := accessLine{client: netip.MustParseAddr("2001:db8::1"), method: "GET", path: "/v2/fedora/blobs/sha256:0123", status: 307,
		duration: 1500 * time.Nanosecond, resolved: true, country: "DE", region: "EU", mirror: "de1.example", ua: "containers/5.30"}
	now := time.Now()
	for _, format := range []string{"text", "json"} {
		a := mustAccessLog(t, io.Discard, format)
		if got := testing.AllocsPerRun(100, func() { a.write(now, &l) }); got != 0 {
			t.Errorf("%s: %v allocations recording a line, want 0", format, got)
		}
		check(t, a.Flush())
		if got := testing.AllocsPerRun(100, func() { a.write(now, &l); check(t, a.Flush()) }); got != 0 {
			t.Errorf("%s: %v allocations formatting a line, want 0", format, got)
		}
	}
}

func TestRecoverFromBug(t *testing.T) {
	dir, dm := newTestTree(t, nil)
	s := newServer(t, Options{Tree: dir})
	// A generation no loader builds: a tier whose weights name no mirror.
	g := *s.gen.Load()
	g.regions = map[string]*regionEntry{}
	g.setRegion("global", &regionEntry{key: "global", tiers: []tierEntry{{total: 5, cum: []uint64{5}, minGen: 5}}})
	s.gen.Store(&g)
	w := do(s, "GET", "/v2/fedora/blobs/"+dm.baseLayer.String(), "", nil)
	if w.Code != 500 {
		t.Fatalf("status %d", w.Code)
	}
	if !bytes.Contains(w.Body.Bytes(), []byte(`"code":"UNKNOWN"`)) || w.Header().Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("%s %v", w.Body, w.Header())
	}
}

// BenchmarkAccessLogLine: the cost of one line: recording it on the request path, and its share
// of formatting a batch into a writer that keeps nothing.
func BenchmarkAccessLogLine(b *testing.B) {
	l := accessLine{client: netip.MustParseAddr("127.0.0.1"), method: "GET", path: "/v2/fedora/blobs/sha256:c0acb2ad94befe23e6ab26ac50b13edcc88c3a2b04d68077829cf8b7ed7696d8",
		status: 307, duration: 1077 * time.Nanosecond, mirror: "mirror.example"}
	for _, format := range []string{"text", "json"} {
		b.Run(format, func(b *testing.B) {
			a := mustAccessLog(b, io.Discard, format)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				a.write(time.Now(), &l)
				if i++; i%512 == 0 { // a batch
					_ = a.Flush()
				}
			}
		})
	}
}

// TestQuotingEveryByte: every byte value at every place of a 17-byte value (the word-at-a-time
// scan and the bytes after it) is quoted or escaped as slog does.
func TestQuotingEveryByte(t *testing.T) {
	for _, format := range []string{"text", "json"} {
		a := mustAccessLog(t, io.Discard, format)
		now := time.Date(2026, 11, 30, 1, 2, 3, 0, time.UTC)
		for c := range 256 {
			for at := range 17 {
				v := []byte("abcdefghijklmnopq")
				v[at] = byte(c)
				l := accessLine{method: "GET", path: string(v)}
				if got, want := a.appendLine(nil, now, &l), slogLine(format, now, &l); !bytes.Equal(got, want) {
					t.Fatalf("%s: byte %#x at %d: got %q, want %q", format, c, at, got, want)
				}
			}
		}
	}
}

// FuzzAccessRecord: a line's fields come back from their binary record as they went in (a
// string longer than maxRecordString cut in the middle), in no more room than
// maxAccessRecord says.
func FuzzAccessRecord(f *testing.F) {
	f.Add("GET", "/v2/fedora/blobs/sha256:0123", "containers/5.30", "fe80::1%eth0", "DE", int64(1234), int64(-5), 307, true)
	f.Add("", "", "", "", "", int64(0), int64(0), 0, false)
	f.Add(string(bytes.Repeat([]byte("é"), 3000)), "\x00\xff", "a\u2028", "192.0.2.1", "", int64(math.MaxInt64), int64(math.MinInt64), -1, true)
	f.Fuzz(func(t *testing.T, method, path, ua, client, country string, n, sec int64, status int, resolved bool) {
		addr, _ := netip.ParseAddr(client)
		l := accessLine{client: addr, method: method, path: path, status: int(int32(status)), bytes: n, duration: time.Duration(n),
			resolved: resolved, plain: n%2 == 0, country: country, region: path, asn: uint32(n), mirror: ua, peer: client, ua: ua}
		at := time.Unix(sec%(1<<40), n&0x3fffffff%1e9)
		room := maxAccessRecord(&l)
		rec := appendAccessRecord(make([]byte, 0, room), at, &l)
		if len(rec) > room {
			t.Fatalf("record of %d bytes, room said %d", len(rec), room)
		}
		var got accessLine
		var gotAt time.Time
		if k := decodeAccessRecord(rec, &gotAt, &got); k != len(rec) {
			t.Fatalf("decoded %d bytes of %d", k, len(rec))
		}
		want := l
		for _, s := range []*string{&want.method, &want.path, &want.country, &want.region, &want.mirror, &want.peer, &want.ua} {
			if len(*s) > maxRecordString {
				*s = trunc.Middle(*s, maxRecordString)
			}
		}
		if got != want || !gotAt.Equal(at) {
			t.Errorf("got %+v at %v, want %+v at %v", got, gotAt, want, at)
		}
	})
}

// TestAccessLogEveryPlace puts each kind of byte that changes a value's writing at every place
// of values of 0 to 24 bytes: the checks eight bytes at a time, the overlapping last word and
// the padded short value must each see it, in both formats, as slog's handlers do.
func TestAccessLogEveryPlace(t *testing.T) {
	now := time.Date(2026, 12, 1, 5, 30, 0, 123456789, time.UTC)
	for _, format := range []string{"text", "json"} {
		a := mustAccessLog(t, io.Discard, format)
		for n := range 25 {
			for _, special := range []string{"", " ", "=", "\"", "\\", "\x00", "\x1f", "\x7f", "\xff", "é", "\u2028", "\u00a0"} {
				for at := range max(n, 1) {
					if special == "" && at > 0 {
						break
					}
					v := []byte(strings.Repeat("a", n))
					if special != "" && n > 0 {
						v = append(append(v[:at:at], special...), v[at+1:]...)
					}
					l := accessLine{method: "GET", path: string(v), ua: string(v), mirror: string(v)}
					if got, want := a.appendLine(nil, now, &l), slogLine(format, now, &l); !bytes.Equal(got, want) {
						t.Fatalf("%s, %q: got  %q\nwant %q", format, v, got, want)
					}
				}
			}
		}
	}
}
