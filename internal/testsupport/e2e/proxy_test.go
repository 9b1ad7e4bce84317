package e2e

import (
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// sourceProxy is a reverse proxy in front of the source registry that counts requests by
// method and kind ("GET blob", "HEAD manifest", "GET tags", …) and can slow response bodies
// down to a byte rate shared by all connections.
type sourceProxy struct {
	URL  string // "http://localhost:PORT"
	Host string // "localhost:PORT"

	mu     sync.Mutex
	counts map[string]int
	lim    *limiter
}

func newSourceProxy(t testing.TB, target string, bytesPerSecond float64) *sourceProxy {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	p := &sourceProxy{counts: map[string]int{}}
	if bytesPerSecond > 0 {
		p.lim = &limiter{rate: bytesPerSecond}
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.ErrorLog = log.New(io.Discard, "", 0) // clients killed mid-body are the point of some tests
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		p.counts[r.Method+" "+requestKind(r.URL.Path)]++
		p.mu.Unlock()
		if p.lim != nil {
			w = &throttledWriter{ResponseWriter: w, lim: p.lim}
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	p.Host = strings.Replace(srv.Listener.Addr().String(), "127.0.0.1", "localhost", 1)
	p.URL = "http://" + p.Host
	return p
}

// requestKind classifies a registry API path.
func requestKind(path string) string {
	switch {
	case path == "/v2/" || path == "/v2":
		return "ping"
	case path == "/v2/_catalog":
		return "catalog"
	case strings.HasSuffix(path, "/tags/list"):
		return "tags"
	case strings.Contains(path, "/manifests/"):
		return "manifest"
	case strings.Contains(path, "/blobs/uploads"):
		return "upload"
	case strings.Contains(path, "/blobs/"):
		return "blob"
	case strings.Contains(path, "/referrers/"):
		return "referrers"
	}
	return "other"
}

// Reset zeroes the counts.
func (p *sourceProxy) Reset() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.counts = map[string]int{}
}

// Count is the number of requests of one "METHOD kind".
func (p *sourceProxy) Count(key string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.counts[key]
}

// Total is the number of requests of every kind.
func (p *sourceProxy) Total() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, c := range p.counts {
		n += c
	}
	return n
}

func (p *sourceProxy) String() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var parts []string
	for k, v := range p.counts {
		parts = append(parts, fmt.Sprintf("%s=%d", k, v))
	}
	sort.Strings(parts)
	return strings.Join(parts, " ")
}

// limiter paces writes to rate bytes per second across all callers.
type limiter struct {
	mu   sync.Mutex
	rate float64
	next time.Time
}

func (l *limiter) wait(n int) {
	l.mu.Lock()
	now := time.Now()
	if l.next.Before(now) {
		l.next = now
	}
	d := l.next.Sub(now)
	l.next = l.next.Add(time.Duration(float64(n) / l.rate * float64(time.Second)))
	l.mu.Unlock()
	if d > 0 {
		time.Sleep(d)
	}
}

type throttledWriter struct {
	http.ResponseWriter
	lim *limiter
}

func (w *throttledWriter) Write(b []byte) (int, error) {
	written := 0
	for len(b) > 0 {
		n := min(len(b), 32<<10)
		w.lim.wait(n)
		m, err := w.ResponseWriter.Write(b[:n])
		written += m
		if err != nil {
			return written, err
		}
		b = b[n:]
	}
	return written, nil
}

func (w *throttledWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
