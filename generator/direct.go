package generator

import (
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
)

// direct sends the client's requests to the source straight to the base transport, with the
// headers go-containerregistry's transport chain (auth, user agent) last sent to the source,
// instead of through the chain: the chain costs allocations and host comparisons on every
// request, most of the client's own time in a no-op (a HEAD per tag). The chain still
// decides what is sent:
//   - until it has sent a request of the client to the source, and for any request to
//     another host or scheme (a redirect to a CDN: the chain adds credentials only for the
//     source), requests go through it;
//   - a 401 answered to a direct request (an expired token, a bearer token lacking the
//     repository's scope, credentials refused) goes to the chain as its first answer when
//     the chain sends the same credentials (chainEnd): it refreshes the token and sends the
//     request once more, as many requests as the chain alone would send; what it sends then
//     is what direct requests carry from then on.
type direct struct {
	host, scheme string
	base         http.RoundTripper // the transport under the chain (its scheme guard apart)
	chain        http.RoundTripper // go-containerregistry's, over chainEnd
	headers      atomic.Pointer[directHeaders]
	// calls are the client's requests the chain is sending (by request: the chain passes
	// the client's request down, setting its headers), for chainEnd.
	calls sync.Map // *http.Request → *chainCall
}

// directHeaders are the headers the chain set on the last request it sent to the source.
type directHeaders struct {
	authorization, userAgent []string // nil: not set
}

// chainCall is one request the chain is sending for the client.
type chainCall struct {
	mu sync.Mutex
	// answer is the 401 a direct attempt got, sent with authorization: the chain's first
	// answer when it sends the same credentials.
	answer        *http.Response
	authorization string
}

func (d *direct) onSource(r *http.Request) bool {
	return r.URL.Host == d.host && r.URL.Scheme == d.scheme && (r.Host == "" || r.Host == d.host)
}

func (d *direct) RoundTrip(r *http.Request) (*http.Response, error) {
	h := d.headers.Load()
	if h == nil || !d.onSource(r) {
		return d.viaChain(r, &chainCall{})
	}
	// The request is the client's own (client.do): set what the chain would.
	if h.authorization != nil {
		r.Header["Authorization"] = h.authorization
	}
	if h.userAgent != nil {
		r.Header["User-Agent"] = h.userAgent
	}
	resp, err := d.base.RoundTrip(r)
	if err != nil || resp.StatusCode != http.StatusUnauthorized {
		return resp, err
	}
	var auth string
	if h.authorization != nil {
		auth = h.authorization[0]
	}
	return d.viaChain(r, &chainCall{answer: resp, authorization: auth})
}

// viaChain sends r through the chain, which answers c's 401 from chainEnd when it sends the
// same credentials.
func (d *direct) viaChain(r *http.Request, c *chainCall) (*http.Response, error) {
	d.calls.Store(r, c)
	resp, err := d.chain.RoundTrip(r)
	d.calls.Delete(r)
	c.mu.Lock()
	if c.answer != nil { // the chain sent other credentials
		c.answer.Body.Close()
		c.answer = nil
	}
	c.mu.Unlock()
	return resp, err
}

// chainEnd is the transport under the chain: it answers a client's request (direct.calls)
// with the 401 its direct attempt got when the chain sends the same credentials, and
// records the headers the chain sends to the source. The chain's own requests (its ping,
// token exchanges) pass through.
type chainEnd struct {
	d    *direct
	next http.RoundTripper
}

func (e chainEnd) RoundTrip(r *http.Request) (*http.Response, error) {
	v, ok := e.d.calls.Load(r)
	if !ok {
		return e.next.RoundTrip(r)
	}
	c := v.(*chainCall)
	c.mu.Lock()
	answer := c.answer
	c.answer = nil
	c.mu.Unlock()
	if answer != nil {
		if r.Header.Get("Authorization") == c.authorization {
			return answer, nil
		}
		answer.Body.Close()
	}
	if e.d.onSource(r) {
		e.d.record(r.Header)
	}
	return e.next.RoundTrip(r)
}

// record keeps the chain's headers for direct requests.
func (d *direct) record(h http.Header) {
	auth, ua := h["Authorization"], h["User-Agent"]
	if cur := d.headers.Load(); cur != nil && slices.Equal(cur.authorization, auth) && slices.Equal(cur.userAgent, ua) {
		return
	}
	// Copies, full to capacity: direct requests share them, and appending to them copies.
	d.headers.Store(&directHeaders{authorization: slices.Clip(slices.Clone(auth)), userAgent: slices.Clip(slices.Clone(ua))})
}
