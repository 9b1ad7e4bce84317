package generator

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/regmirror/regmirror/internal/trunc"
	"github.com/regmirror/regmirror/layout"
)

// manifestAccept is every manifest media type the generator reads, schema 1 included so that
// it can be recognised and skipped.
var manifestAccept = strings.Join([]string{
	layout.MediaTypeOCIIndex, layout.MediaTypeOCIManifest, layout.MediaTypeDockerList, layout.MediaTypeDockerManifest, layout.MediaTypeOCIArtifact,
	layout.MediaTypeDockerSchema1Signed, layout.MediaTypeDockerSchema1,
}, ", ")

// client talks to the source registry: auth (via go-containerregistry's transport, its
// headers then sent directly: direct), retries with backoff, and stall detection on bodies.
type client struct {
	base    *url.URL
	hc      *http.Client
	retries int
	backoff time.Duration
	stall   time.Duration
	pipe    *pipeline // HEADs by tag, pipelined; nil: none (a transport given, a proxy)
}

// statusError is an unexpected HTTP status from the source.
type statusError struct {
	Method, Path string
	Status       int
	Detail       string // the registry's error code and message, if any
}

func (e *statusError) Error() string {
	s := fmt.Sprintf("%s %s: HTTP %d %s", e.Method, e.Path, e.Status, http.StatusText(e.Status))
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	switch e.Status {
	case http.StatusUnauthorized:
		s += " (check Options.Auth, REGISTRY_AUTH_FILE or ~/.docker/config.json)"
	case http.StatusForbidden:
		s += " (the credentials lack pull access)"
	}
	return s
}

func statusOf(err error) int {
	var se *statusError
	if errors.As(err, &se) {
		return se.Status
	}
	return 0
}

// errStall is a body that sent nothing for StallTimeout.
var errStall = errors.New("connection stalled")

func newClient(ctx context.Context, o *Options, base *url.URL) (*client, error) {
	rt := o.Transport
	var own *http.Transport // the transport made here, when none was given
	if rt == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConns = 4 * o.Jobs
		t.MaxIdleConnsPerHost = 4 * o.Jobs
		t.ResponseHeaderTimeout = o.StallTimeout
		if base.Scheme == "https" && (o.InsecureSkipTLSVerify || o.CAFile != "") {
			tc := &tls.Config{MinVersion: tls.VersionTLS12}
			if o.InsecureSkipTLSVerify {
				tc.InsecureSkipVerify = true
			}
			if o.CAFile != "" {
				pem, err := os.ReadFile(o.CAFile)
				if err != nil {
					return nil, fmt.Errorf("reading Options.CAFile: %w", err)
				}
				pool, err := x509.SystemCertPool()
				if err != nil || pool == nil {
					pool = x509.NewCertPool()
				}
				if !pool.AppendCertsFromPEM(pem) {
					return nil, fmt.Errorf("Options.CAFile %s holds no PEM certificate", o.CAFile)
				}
				tc.RootCAs = pool
			}
			t.TLSClientConfig = tc
		}
		rt, own = t, t
	}
	// go-containerregistry's ping tries https and http for hosts it deems local; hold it to
	// the scheme the operator gave, so https never silently becomes http.
	guarded := schemeGuard{host: base.Host, scheme: base.Scheme, inner: rt}
	d := &direct{host: base.Host, scheme: base.Scheme, base: rt}

	opts := []name.Option{name.StrictValidation}
	if base.Scheme == "http" {
		opts = append(opts, name.Insecure)
	}
	reg, err := name.NewRegistry(base.Host, opts...)
	if err != nil {
		return nil, fmt.Errorf("Options.Source host %q: %w", base.Host, err)
	}
	auth := o.Auth
	if auth == nil {
		kc := o.Keychain
		if kc == nil {
			kc = DefaultKeychain()
		}
		auth, err = kc.Resolve(reg)
		if err != nil {
			return nil, fmt.Errorf("finding credentials for %s: %w", base.Host, err)
		}
	}
	c := &client{base: base, retries: o.Retries, backoff: o.RetryBackoff, stall: o.StallTimeout}
	// Reach the source first with the scheme given, for a plain error when it is down
	// (go-containerregistry's handshake below tries https and http and reports both).
	err = c.retry(ctx, "connecting", func() error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, base.String()+"/v2/", nil)
		if err != nil {
			return err
		}
		resp, err := guarded.RoundTrip(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusUnauthorized {
			return &statusError{Method: "GET", Path: "/v2/", Status: resp.StatusCode, Detail: "not a registry (want 200 or 401)"}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("connecting to %s: %w", base, err)
	}
	var authed http.RoundTripper
	err = c.retry(ctx, "connecting", func() error {
		var err error
		authed, err = transport.NewWithContext(ctx, reg, auth, chainEnd{d: d, next: guarded}, []string{"registry:catalog:*"})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("connecting to %s: %w", base, explainConnect(err))
	}
	d.chain = authed
	c.hc = &http.Client{Transport: d}
	if own != nil {
		c.pipe = newPipeline(base, own, d.headers.Load, o.StallTimeout)
	}
	return c, nil
}

// close closes the client's idle pipelined connections.
func (c *client) close() {
	if c.pipe != nil {
		c.pipe.close()
	}
}

// explainConnect turns go-containerregistry's handshake errors into something an operator can
// act on.
func explainConnect(err error) error {
	var te *transport.Error
	if errors.As(err, &te) && te.StatusCode == http.StatusUnauthorized {
		return fmt.Errorf("%w (check Options.Auth, REGISTRY_AUTH_FILE or ~/.docker/config.json)", err)
	}
	return err
}

type schemeGuard struct {
	host, scheme string
	inner        http.RoundTripper
}

func (g schemeGuard) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Host == g.host && r.URL.Scheme != g.scheme {
		return nil, fmt.Errorf("refusing %s for %s: Options.Source says %s", r.URL.Scheme, g.host, g.scheme)
	}
	return g.inner.RoundTrip(r)
}

// retriable reports whether err is worth another attempt.
func retriable(ctx context.Context, err error) bool {
	if err == nil || ctx.Err() != nil {
		return false
	}
	var we *writeError
	if errors.As(err, &we) {
		return false
	}
	if s := statusOf(err); s != 0 {
		return s >= 500 || s == http.StatusTooManyRequests || s == http.StatusRequestTimeout
	}
	var te *transport.Error
	if errors.As(err, &te) {
		return te.StatusCode >= 500 || te.StatusCode == http.StatusTooManyRequests
	}
	if errors.Is(err, errRetryable) || errors.Is(err, errStall) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne)
}

// retry runs f until it succeeds, fails for good, or the attempts run out, sleeping with
// exponential backoff and jitter in between.
func (c *client) retry(ctx context.Context, what string, f func() error) error {
	var err error
	for attempt := 0; ; attempt++ {
		err = f()
		if err == nil || !retriable(ctx, err) || attempt >= c.retries {
			return err
		}
		d := c.backoff << attempt
		if d > 10*time.Second {
			d = 10 * time.Second
		}
		d = d/2 + rand.N(d/2+1)
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%s: %w (after %v)", what, ctx.Err(), err)
		case <-t.C:
		}
	}
}

// do sends one request (no retry) and returns the response for any status; the caller closes
// the body. The body is wrapped to fail with errStall when it sends nothing for the stall
// timeout; a HEAD's answer has no body (a stalled HEAD is the transport's
// ResponseHeaderTimeout), and no context and timer of its own.
func (c *client) do(ctx context.Context, method, path string, accept string) (*http.Response, error) {
	u := *c.base
	if p, q, ok := strings.Cut(path, "?"); ok {
		u.Path, u.RawQuery = p, q
	} else {
		u.Path = path
	}
	if method == http.MethodHead {
		return c.hc.Do(newRequest(ctx, method, &u, accept))
	}
	ctx, cancel := context.WithCancelCause(ctx)
	resp, err := c.hc.Do(newRequest(ctx, method, &u, accept))
	if err != nil {
		cancel(nil)
		return nil, err
	}
	resp.Body = newStallReader(resp.Body, c.stall, cancel)
	return resp, nil
}

// newRequest is http.NewRequestWithContext for a URL already parsed (u, on the source: its
// host, scheme and path are the client's own), without a body.
func newRequest(ctx context.Context, method string, u *url.URL, accept string) *http.Request {
	r := &http.Request{Method: method, URL: u, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, Header: make(http.Header, 4), Host: u.Host}
	if accept != "" {
		r.Header["Accept"] = []string{accept}
	}
	return r.WithContext(ctx)
}

// getOK is do that turns a status other than 200 into a statusError (draining the body).
func (c *client) getOK(ctx context.Context, method, path, accept string) (*http.Response, error) {
	resp, err := c.do(ctx, method, path, accept)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, responseError(resp)
	}
	return resp, nil
}

// responseError reads the registry's error body (bounded) and closes it.
func responseError(resp *http.Response) error {
	defer resp.Body.Close()
	e := &statusError{Method: resp.Request.Method, Path: resp.Request.URL.Path, Status: resp.StatusCode}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	var body struct {
		Errors []struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"errors"`
	}
	if json.Unmarshal(b, &body) == nil && len(body.Errors) > 0 {
		e.Detail = oneLine(body.Errors[0].Code + " " + body.Errors[0].Message)
	}
	return e
}

// getJSON GETs path with retries and decodes a JSON body of at most limit bytes; it returns
// the response's Link header for pagination.
func (c *client) getJSON(ctx context.Context, path string, limit int64, v any) (link string, err error) {
	err = c.retry(ctx, "GET "+path, func() error {
		resp, err := c.getOK(ctx, http.MethodGet, path, "application/json")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, err := readLimited(resp.Body, limit)
		if err != nil {
			return fmt.Errorf("GET %s: %w", path, err)
		}
		if err := json.Unmarshal(b, v); err != nil {
			return fmt.Errorf("GET %s: decoding: %w", path, err)
		}
		link = resp.Header.Get("Link")
		return nil
	})
	return link, err
}

// readLimited reads all of r, refusing more than limit bytes.
func readLimited(r io.Reader, limit int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("body over the %d-byte limit", limit)
	}
	return b, nil
}

// nextLink parses a Link header's rel="next" target and returns it as a path with query, on
// the source itself and under /v2/; "" when there is no next page.
func nextLink(header string) (string, error) {
	if header == "" {
		return "", nil
	}
	for part := range strings.SplitSeq(header, ",") {
		part = strings.TrimSpace(part)
		target, params, ok := strings.Cut(part, ";")
		if !ok || !strings.Contains(strings.ReplaceAll(params, " ", ""), `rel="next"`) && !strings.Contains(params, "rel=next") {
			continue
		}
		target = strings.TrimSpace(target)
		if !strings.HasPrefix(target, "<") || !strings.HasSuffix(target, ">") {
			return "", fmt.Errorf("malformed Link header %q", oneLine(header))
		}
		u, err := url.Parse(target[1 : len(target)-1])
		if err != nil {
			return "", fmt.Errorf("malformed Link header %q: %w", oneLine(header), err)
		}
		if !strings.HasPrefix(u.Path, "/v2/") || strings.Contains(u.Path, "..") {
			return "", fmt.Errorf("link header points outside /v2/: %q", oneLine(header))
		}
		p := u.EscapedPath()
		if u.RawQuery != "" {
			p += "?" + u.RawQuery
		}
		return p, nil
	}
	return "", nil
}

// maxMessage is the length to which an error or warning is cut, in the middle: the cause
// comes first and the end of a chain of digests stays visible.
const maxMessage = 600

// oneLine keeps an untrusted string short and on one line for messages.
func oneLine(s string) string { return trunc.Line(s, maxMessage) }

// stallReader fails a body that sends nothing for d, cancelling its request.
type stallReader struct {
	rc     io.ReadCloser
	d      time.Duration
	cancel context.CancelCauseFunc
	mu     sync.Mutex
	timer  *time.Timer
	fired  bool
}

func newStallReader(rc io.ReadCloser, d time.Duration, cancel context.CancelCauseFunc) *stallReader {
	s := &stallReader{rc: rc, d: d, cancel: cancel}
	s.timer = time.AfterFunc(d, func() {
		s.mu.Lock()
		s.fired = true
		s.mu.Unlock()
		cancel(errStall)
	})
	return s
}

func (s *stallReader) Read(p []byte) (int, error) {
	n, err := s.rc.Read(p)
	if n > 0 {
		s.timer.Reset(s.d)
	}
	if err != nil && err != io.EOF {
		s.mu.Lock()
		fired := s.fired
		s.mu.Unlock()
		if fired {
			return n, fmt.Errorf("%w: nothing received for %v", errStall, s.d)
		}
	}
	return n, err
}

func (s *stallReader) Close() error {
	s.timer.Stop()
	err := s.rc.Close()
	s.cancel(nil)
	return err
}
