package generator

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/regmirror/regmirror/internal/testsupport/rawtcp"
	"github.com/regmirror/regmirror/internal/testsupport/testimages"
	"github.com/regmirror/regmirror/layout"
)

// rawSource is a source whose connections serve runs on (rawtcp), to answer pipelined
// requests in ways net/http's server does not.
type rawSource struct {
	url *url.URL
	srv *rawtcp.Server
}

func newRawSource(t *testing.T, serve func(c net.Conn, br *bufio.Reader)) *rawSource {
	t.Helper()
	srv := rawtcp.Serve(t, func(c net.Conn) { serve(c, bufio.NewReader(c)) })
	return &rawSource{url: &url.URL{Scheme: "http", Host: srv.Addr}, srv: srv}
}

// digestOfPath is the digest the raw sources answer for a path.
func digestOfPath(p string) layout.Digest { return layout.DigestOf("sha256", []byte(p)) }

// answerHead writes the answer to a HEAD of req's path: status, with the path's digest when
// digest, and closing the connection when last.
func answerHead(w io.Writer, req *http.Request, status int, digest bool, size int64, last bool) {
	fmt.Fprintf(w, "HTTP/1.1 %d %s\r\nContent-Length: %d\r\nContent-Type: application/vnd.oci.image.index.v1+json\r\n", status, http.StatusText(status), size)
	if digest {
		fmt.Fprintf(w, "Docker-Content-Digest: %s\r\n", digestOfPath(req.URL.Path))
	}
	if last {
		io.WriteString(w, "Connection: close\r\n")
	}
	io.WriteString(w, "\r\n")
}

func TestPipelineHeads(t *testing.T) {
	paths := make([]string, 8)
	for i := range paths {
		paths[i] = "/v2/fedora/manifests/" + strconv.Itoa(40+i)
	}
	// answerAll answers every request of a connection with status, up to n (0: no limit),
	// the nth with Connection: close (closing says so) or not.
	answerAll := func(status int, digest bool, size int64, n int, closing bool) func(net.Conn, *bufio.Reader) {
		return func(c net.Conn, br *bufio.Reader) {
			w := bufio.NewWriter(c)
			for i := 1; ; i++ {
				req, err := http.ReadRequest(br)
				if err != nil {
					return
				}
				last := n > 0 && i == n
				answerHead(w, req, status, digest, size, last && closing)
				if br.Buffered() == 0 || last {
					w.Flush()
				}
				if last {
					return
				}
			}
		}
	}
	tests := []struct {
		name  string
		serve func(net.Conn, *bufio.Reader)
		// answered is how many paths get an answer; taken how many of those resolve
		// takes as they are; conns how many connections the source sees, at most.
		answered, taken int
		conns           int
		off             bool
	}{
		{name: "answers in order on one connection", serve: answerAll(200, true, 500, 0, false), answered: 8, taken: 8, conns: 1},
		{name: "closes after every third, saying so", serve: answerAll(200, true, 500, 3, true), answered: 8, taken: 8, conns: 3},
		{name: "closes after every third, abruptly", serve: answerAll(200, true, 500, 3, false), answered: 8, taken: 8, conns: 4},
		{name: "refuses credentials", serve: answerAll(401, false, 0, 0, false), answered: 8, taken: 0, conns: 1},
		{name: "sends no digest", serve: answerAll(200, false, 500, 0, false), answered: 8, taken: 0, conns: 1},
		{name: "manifest over the limit", serve: answerAll(200, true, MaxManifestSize+1, 0, false), answered: 8, taken: 0, conns: 1},
		{name: "answers the first request only", serve: func(c net.Conn, br *bufio.Reader) {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			answerHead(c, req, 200, true, 500, false)
			io.Copy(io.Discard, c) // reads the rest, never answers
		}, answered: 1, taken: 1, conns: 1, off: true},
		{name: "closes before answering", serve: func(c net.Conn, br *bufio.Reader) {
			http.ReadRequest(br)
		}, answered: 0, taken: 0, conns: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := newRawSource(t, tt.serve)
			p := newPipeline(src.url, &http.Transport{}, func() *directHeaders { return &directHeaders{} }, 300*time.Millisecond)
			defer p.close()
			answers := p.heads(context.Background(), paths)
			answered, taken := 0, 0
			for i, a := range answers {
				if a.status == 0 {
					continue
				}
				answered++
				if d, ok := pipelinedDigest(a); ok {
					taken++
					if want := digestOfPath(paths[i]); d != want {
						t.Errorf("answer %d: got %s, want %s (%s's): answers out of order", i, d, want, paths[i])
					}
				}
			}
			if answered != tt.answered || taken != tt.taken {
				t.Errorf("got %d answered, %d taken; want %d, %d", answered, taken, tt.answered, tt.taken)
			}
			if got := src.srv.Accepted(); got > tt.conns {
				t.Errorf("got %d connections, want at most %d", got, tt.conns)
			}
			if got := p.turnedOff(); got != tt.off {
				t.Errorf("got pipelining turned off %v, want %v", got, tt.off)
			}
			if p.turnedOff() {
				t.Errorf("turned off reported twice, want once")
			}
			if tt.off {
				// Turned off, it sends nothing more.
				before := src.srv.Accepted()
				for i, a := range p.heads(context.Background(), paths) {
					if a.status != 0 {
						t.Errorf("answer %d after pipelining was turned off: got %d, want none", i, a.status)
					}
				}
				if got := src.srv.Accepted(); got != before {
					t.Errorf("got %d connections after pipelining was turned off, want %d", got, before)
				}
			}
		})
	}
}

func TestPipelineRequest(t *testing.T) {
	p := newPipeline(&url.URL{Scheme: "https", Host: "registry.example"}, &http.Transport{}, nil, time.Second)
	if p.addr != "registry.example:443" || p.tls == nil || p.tls.ServerName != "registry.example" {
		t.Errorf("got addr %q, TLS %v; want registry.example:443 over TLS to registry.example", p.addr, p.tls != nil)
	}
	tests := []struct {
		name    string
		path    string
		headers directHeaders
		want    string // "": refused
	}{
		{name: "plain", path: "/v2/fedora/manifests/42", headers: directHeaders{userAgent: []string{"regmirror"}, authorization: []string{"Bearer t"}},
			want: "HEAD /v2/fedora/manifests/42 HTTP/1.1\r\nHost: registry.example\r\nAccept: " + manifestAccept + "\r\nUser-Agent: regmirror\r\nAuthorization: Bearer t\r\n\r\n"},
		{name: "default user agent, no credentials", path: "/v2/a/manifests/b",
			want: "HEAD /v2/a/manifests/b HTTP/1.1\r\nHost: registry.example\r\nAccept: " + manifestAccept + "\r\nUser-Agent: Go-http-client/1.1\r\n\r\n"},
		{name: "escaped path", path: "/v2/a b/manifests/c\r\nX: y",
			want: "HEAD /v2/a%20b/manifests/c%0D%0AX:%20y HTTP/1.1\r\nHost: registry.example\r\nAccept: " + manifestAccept + "\r\nUser-Agent: Go-http-client/1.1\r\n\r\n"},
		{name: "line break in a header", path: "/v2/a/manifests/b", headers: directHeaders{authorization: []string{"Bearer t\r\nX: y"}}},
		{name: "non-ASCII header", path: "/v2/a/manifests/b", headers: directHeaders{userAgent: []string{"régmirror"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := request(p, tt.path, &tt.headers); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

// request is the pipelined HEAD of path with h's headers, as exchange writes it; "" when
// the pipeline does not send it.
func request(p *pipeline, path string, h *directHeaders) string {
	target, tail := requestTarget(path), p.requestTail(h)
	if target == "" || tail == nil {
		return ""
	}
	return "HEAD " + target + string(tail)
}

func TestPipelineOffBehindProxy(t *testing.T) {
	proxy, _ := url.Parse("http://proxy.example:3128")
	tr := &http.Transport{Proxy: http.ProxyURL(proxy)}
	if p := newPipeline(&url.URL{Scheme: "http", Host: "registry.example"}, tr, nil, time.Second); p != nil {
		t.Errorf("got a pipeline through a proxy, want none")
	}
}

// TestPipelinedDiscovery runs generate on sources that answer pipelined HEADs in various
// ways: whatever they leave unanswered or answer unusably is resolved the ordinary way, and
// the generation is the same.
func TestPipelinedDiscovery(t *testing.T) {
	img, err := testimages.Image(types.OCIManifestSchema1, types.OCIConfigJSON, "amd64")
	if err != nil {
		t.Fatal(err)
	}
	refs := []testimages.Ref{{Repo: "fedora", Tags: []string{"40", "41", "42", "43", "44", "45", "46", "47", "48", "49", "50"}, Image: img}}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		// front serves the source's connections through (nil: the source's own server);
		// next answers one request.
		front func(next http.RoundTripper) func(net.Conn, *bufio.Reader)
		// heads is how many HEADs of a manifest the source sees, at most.
		heads int
	}{
		{name: "pipelining source", heads: 11},
		{name: "one answer per connection, then closed", heads: 11, front: func(next http.RoundTripper) func(net.Conn, *bufio.Reader) {
			return func(c net.Conn, br *bufio.Reader) {
				req, err := http.ReadRequest(br)
				if err != nil {
					return
				}
				forward(c, req, next, true)
			}
		}},
		{name: "ignores pipelined requests", heads: 11, front: func(next http.RoundTripper) func(net.Conn, *bufio.Reader) {
			return func(c net.Conn, br *bufio.Reader) {
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					pipelined := br.Buffered() > 0 // requests came with it
					forward(c, req, next, false)
					if pipelined {
						io.Copy(io.Discard, c) // never answered
						return
					}
				}
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSource(t)
			s.push(refs...)
			o := s.opts(t.TempDir())
			if tt.front != nil {
				u, _ := url.Parse(s.url)
				next := &http.Transport{}
				t.Cleanup(next.CloseIdleConnections)
				fr := newRawSource(t, tt.front(roundTripTo(u, next)))
				o.Source = fr.url.String()
				o.StallTimeout = 500 * time.Millisecond
			}
			s.resetCounts()
			mustRun(t, o)
			if got := s.resetCounts()["HEAD manifest"]; got < len(refs[0].Tags) || got > tt.heads {
				t.Errorf("got %d HEADs of a manifest, want %d to %d", got, len(refs[0].Tags), tt.heads)
			}
			got := indexRefs(t, o.Out)
			for _, tag := range refs[0].Tags {
				if got["fedora:"+tag] != d.String() {
					t.Errorf("fedora:%s: got %q, want %s", tag, got["fedora:"+tag], d)
				}
			}
		})
	}
}

// roundTripTo sends a request read by a server to the source at u through next.
func roundTripTo(u *url.URL, next http.RoundTripper) http.RoundTripper {
	return roundTripFunc(func(req *http.Request) (*http.Response, error) {
		req.URL.Scheme, req.URL.Host, req.RequestURI = u.Scheme, u.Host, ""
		return next.RoundTrip(req)
	})
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// forward answers req on c with next's answer, saying the connection closes after it when
// closing.
func forward(c net.Conn, req *http.Request, next http.RoundTripper, closing bool) {
	resp, err := next.RoundTrip(req)
	if err != nil {
		fmt.Fprintf(c, "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
		return
	}
	defer resp.Body.Close()
	resp.Close = closing
	resp.Write(c)
}

func TestPipelineTLS(t *testing.T) {
	var conns atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Docker-Content-Digest", digestOfPath(r.URL.Path).String())
		w.Header().Set("Content-Length", "500")
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	defer srv.Close()
	u, _ := url.Parse(srv.URL)
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	paths := []string{"/v2/a/manifests/1", "/v2/a/manifests/2", "/v2/a/manifests/3"}
	tests := []struct {
		name      string
		tls       *tls.Config
		wantTaken int
	}{
		{name: "trusted", tls: &tls.Config{RootCAs: pool}, wantTaken: 3},
		{name: "unknown CA", tls: nil, wantTaken: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conns.Store(0)
			p := newPipeline(u, &http.Transport{TLSClientConfig: tt.tls}, func() *directHeaders { return &directHeaders{} }, 5*time.Second)
			defer p.close()
			taken := 0
			for i, a := range p.heads(context.Background(), paths) {
				if d, ok := pipelinedDigest(a); ok {
					taken++
					if want := digestOfPath(paths[i]); d != want {
						t.Errorf("answer %d: got %s, want %s", i, d, want)
					}
				}
			}
			if taken != tt.wantTaken {
				t.Errorf("got %d taken, want %d", taken, tt.wantTaken)
			}
			if got := conns.Load(); got != 1 {
				t.Errorf("got %d connections, want 1", got)
			}
		})
	}
}

// FuzzPipelineRequest checks that a pipelined request, whatever the path (a tag from the
// source) and the headers, is one request for that path or none.
func FuzzPipelineRequest(f *testing.F) {
	f.Add("/v2/fedora/manifests/42", "Bearer t", "regmirror")
	f.Add("/v2/a b/manifests/c\r\nX: y", "", "")
	f.Add("/v2/a/manifests/%2e%2e", "Basic \x00", "ua\n")
	p := newPipeline(&url.URL{Scheme: "http", Host: "registry.example:5000"}, &http.Transport{}, nil, time.Second)
	f.Fuzz(func(t *testing.T, path, auth, ua string) {
		h := &directHeaders{authorization: []string{auth}, userAgent: []string{ua}}
		b := []byte(request(p, path, h))
		if len(b) == 0 {
			return
		}
		br := bufio.NewReader(bytes.NewReader(b))
		req, err := http.ReadRequest(br)
		if err != nil {
			t.Fatalf("request %q: %v", b, err)
		}
		if br.Buffered() != 0 {
			t.Fatalf("request %q: %d bytes after the request", b, br.Buffered())
		}
		if req.Method != http.MethodHead || req.URL.Path != path || req.Host != "registry.example:5000" {
			t.Errorf("got %s %q for %q, want HEAD of it at registry.example:5000", req.Method, req.URL.Path, path)
		}
		if got := req.Header.Get("Authorization"); got != strings.TrimSpace(auth) {
			t.Errorf("got Authorization %q, want %q", got, auth)
		}
	})
}
