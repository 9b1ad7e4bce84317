package generator

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/regmirror/regmirror/layout"
)

// PipelineDepth is how many HEADs a pipelined connection is sent before their answers are
// read: a repository's tags go in batches of this many, a request slot each.
const PipelineDepth = 32

// pipeline HEADs manifests by tag for discovery, writing a batch of requests on one HTTP/1.1
// connection before reading their answers, which come back in order (pipelining, RFC 9112
// section 9.3.2): a write and a read or two per batch on both ends, instead of a write and a
// read per request. A no-op is one HEAD per tag; pipelined, those requests cost the client
// and the source together less than half of their CPU time (docs/benchmarks.md).
//
// Its connections are its own, one per request slot in use, so the source serves no more
// requests at once than before (a server answers a connection's requests one after the
// other). It sends the headers the client's direct requests carry (direct). Whatever is not
// a 200 with a digest and a manifest's size, and whatever a connection left unanswered (the
// source closed it, it broke, the run was cancelled), the caller resolves the ordinary way
// (run.resolve), which retries, refreshes credentials and reports errors as before. A source
// that stalls on a pipelined request is sent no more batches in the run.
type pipeline struct {
	addr, host string      // where to dial (host:port), the Host header
	tls        *tls.Config // nil: plain HTTP
	headers    func() *directHeaders
	stall      time.Duration // for each answer, as the transport's ResponseHeaderTimeout
	dialer     net.Dialer

	mu     sync.Mutex
	idle   []*pipeConn
	off    atomic.Bool // a source stalled a pipeline: no more in this run
	warned atomic.Bool // turnedOff reported it
}

// turnedOff reports, once, that the source stalled a pipeline and no more are sent.
func (p *pipeline) turnedOff() bool { return p.off.Load() && p.warned.CompareAndSwap(false, true) }

// newPipeline is the pipeline for source base, over TLS with t's TLS configuration (cloned)
// for https; nil when t sends base's requests through a proxy, which may not pass pipelined
// requests on as they are.
func newPipeline(base *url.URL, t *http.Transport, headers func() *directHeaders, stall time.Duration) *pipeline {
	if t.Proxy != nil {
		if pu, err := t.Proxy(&http.Request{URL: base}); err != nil || pu != nil {
			return nil
		}
	}
	p := &pipeline{addr: base.Host, host: base.Host, headers: headers, stall: stall, dialer: net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}}
	port := "80"
	if base.Scheme == "https" {
		port = "443"
		tc := &tls.Config{}
		if t.TLSClientConfig != nil {
			tc = t.TLSClientConfig.Clone()
		}
		tc.ServerName = base.Hostname()
		tc.NextProtos = []string{"http/1.1"}
		p.tls = tc
	}
	if base.Port() == "" {
		p.addr = net.JoinHostPort(base.Hostname(), port)
	}
	return p
}

// pipeConn is one of the pipeline's connections.
type pipeConn struct {
	c  net.Conn
	br *bufio.Reader
	bw *bufio.Writer
}

// errPipeClosed is an answer that closes its connection (Connection: close).
var errPipeClosed = errors.New("the source closed the connection")

// heads HEADs each path (a manifest by tag, below /v2/) and returns the answers in order
// (readHeadAnswer); an answer's status is 0 when the path went unanswered.
func (p *pipeline) heads(ctx context.Context, paths []string) []headAnswer {
	answers := make([]headAnswer, len(paths))
	h := p.headers()
	if h == nil || p.off.Load() {
		return answers
	}
	tail := p.requestTail(h)
	if tail == nil {
		return answers
	}
	targets := make([]string, len(paths))
	for i, path := range paths {
		if targets[i] = requestTarget(path); targets[i] == "" {
			return answers
		}
	}
	// An attempt that answers nothing ends the batch, unless it was on a connection kept
	// from an earlier batch, which the source may have closed meanwhile.
	for done := 0; done < len(paths) && !p.off.Load() && ctx.Err() == nil; {
		pc, reused, err := p.conn(ctx)
		if err != nil {
			break
		}
		n, err := p.exchange(ctx, pc, targets[done:], tail, answers[done:])
		done += n
		if err != nil {
			pc.c.Close()
			if n == 0 && !reused {
				break
			}
			continue
		}
		p.put(pc)
	}
	return answers
}

// A pipelined request is "HEAD ", its target (requestTarget), then its tail (requestTail):
// the same for every request of a batch.

// requestTarget is path, a manifest's below /v2/, escaped as a request line's target; ""
// when it cannot be one (the ordinary request escapes or refuses it).
func requestTarget(path string) string {
	if !strings.HasPrefix(path, "/v2/") {
		return ""
	}
	u := url.URL{Path: path}
	if ep := u.EscapedPath(); printable(ep) {
		return ep
	}
	return ""
}

// requestTail is the rest of a HEAD request after its target, with h's headers; nil when a
// header is not what a header may hold.
func (p *pipeline) requestTail(h *directHeaders) []byte {
	b := make([]byte, 0, 256+len(manifestAccept))
	b = append(b, " HTTP/1.1\r\nHost: "...)
	b = append(b, p.host...)
	b = append(b, "\r\nAccept: "...)
	b = append(b, manifestAccept...)
	header := func(name string, values []string) bool {
		for _, v := range values {
			if v == "" {
				continue
			}
			if !printable(v) {
				return false
			}
			b = append(b, "\r\n"...)
			b = append(b, name...)
			b = append(b, ": "...)
			b = append(b, v...)
		}
		return true
	}
	ua := h.userAgent
	if ua == nil {
		ua = []string{"Go-http-client/1.1"}
	}
	if !header("User-Agent", ua) || !header("Authorization", h.authorization) {
		return nil
	}
	return append(b, "\r\n\r\n"...)
}

// printable reports whether s is visible ASCII and spaces only (no line break can end a
// header early).
func printable(s string) bool {
	for i := range len(s) {
		if s[i] < ' ' || s[i] > '~' {
			return false
		}
	}
	return s != ""
}

// conn returns an idle connection (reused) or a new one.
func (p *pipeline) conn(ctx context.Context) (pc *pipeConn, reused bool, err error) {
	p.mu.Lock()
	if n := len(p.idle); n > 0 {
		pc = p.idle[n-1]
		p.idle = p.idle[:n-1]
	}
	p.mu.Unlock()
	if pc != nil {
		return pc, true, nil
	}
	c, err := p.dialer.DialContext(ctx, "tcp", p.addr)
	if err != nil {
		return nil, false, err
	}
	if p.tls != nil {
		tc := tls.Client(c, p.tls)
		if err := tc.HandshakeContext(ctx); err != nil {
			c.Close()
			return nil, false, err
		}
		c = tc
	}
	// The writer holds a batch of PipelineDepth HEADs (about 480 bytes each without
	// credentials), so that a batch goes out in one write.
	return &pipeConn{c: c, br: bufio.NewReaderSize(c, 16<<10), bw: bufio.NewWriterSize(c, 16<<10)}, false, nil
}

// put keeps pc for a later batch.
func (p *pipeline) put(pc *pipeConn) {
	p.mu.Lock()
	p.idle = append(p.idle, pc)
	p.mu.Unlock()
}

// close closes the idle connections.
func (p *pipeline) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, pc := range p.idle {
		pc.c.Close()
	}
	p.idle = nil
}

// exchange writes a HEAD of each target on pc, then reads their answers into answers, in
// order. It returns how many it read, and an error when pc is not to be used again.
func (p *pipeline) exchange(ctx context.Context, pc *pipeConn, targets []string, tail []byte, answers []headAnswer) (int, error) {
	stop := context.AfterFunc(ctx, func() { pc.c.SetDeadline(time.Now()) })
	defer stop()
	pc.c.SetDeadline(time.Now().Add(p.stall))
	for _, t := range targets {
		pc.bw.WriteString("HEAD ")
		pc.bw.WriteString(t)
		pc.bw.Write(tail)
	}
	if err := pc.bw.Flush(); err != nil { // a write's error stays in bw
		return 0, err
	}
	for i := range targets {
		pc.c.SetReadDeadline(time.Now().Add(p.stall))
		a, err := readHeadAnswer(pc.br)
		if err != nil {
			var ne net.Error
			if i > 0 && errors.As(err, &ne) && ne.Timeout() && ctx.Err() == nil {
				// It answered the batch's first request, not the next within the stall
				// timeout: it may not read pipelined requests at all.
				p.off.Store(true)
			}
			return i, err
		}
		if a.status < 200 {
			return i, fmt.Errorf("HEAD: interim answer %d", a.status)
		}
		answers[i] = a
		if a.close {
			return i + 1, errPipeClosed
		}
	}
	return len(targets), nil
}

// pipelinedDigest is the digest a pipelined HEAD's answer gives, when it is one resolve
// takes as it is: a 200 with a Docker-Content-Digest, for a manifest within the size limit.
func pipelinedDigest(a headAnswer) (layout.Digest, bool) {
	if a.status != http.StatusOK || a.contentLength > MaxManifestSize {
		return layout.Digest{}, false
	}
	d, err := layout.ParseDigest(a.digest)
	return d, err == nil
}
