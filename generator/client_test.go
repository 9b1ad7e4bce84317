package generator

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
)

// countingTransport counts the requests through it.
type countingTransport struct {
	n     atomic.Int64
	inner http.RoundTripper
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return c.inner.RoundTrip(r)
}

// testClient is the client a run of o talks to its source with.
func testClient(tb testing.TB, o Options) *client {
	tb.Helper()
	if err := o.setDefaults(); err != nil {
		tb.Fatal(err)
	}
	base, err := parseSource(o.Source)
	if err != nil {
		tb.Fatal(err)
	}
	c, err := newClient(context.Background(), &o, base)
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

// sentRequest is a request the registry got: its path, Authorization and answer.
type sentRequest struct {
	path, auth string
	status     int
}

// TestDirectRequests: once go-containerregistry's chain has sent a request the source
// accepted, the client's requests to the source skip the chain with the same credentials; a
// 401 to one (a token lacking the repository's scope, an expired token, revoked
// credentials) is the chain's first answer: it refreshes the token and sends the request
// once more, as many requests as the chain alone would send, and the refreshed token is the
// one sent directly after.
func TestDirectRequests(t *testing.T) {
	for _, bearer := range []bool{false, true} {
		t.Run(fmt.Sprintf("bearer %v", bearer), func(t *testing.T) {
			src := newSource(t)
			var repo, tag string
			for ref := range src.demo() {
				repo, tag, _ = strings.Cut(ref, ":")
				break
			}
			ta := &tokenAuth{user: "u", pass: "p", tokens: map[string]map[string]bool{}}
			check := basicAuth("u", "p")
			if bearer {
				check = ta.check
			}
			var (
				mu   sync.Mutex
				sent []sentRequest // to the registry (not /token)
				deny bool          // refuse every credential (basic) or token (bearer)
			)
			src.auth = func(w http.ResponseWriter, r *http.Request) bool {
				if r.URL.Path == "/token" {
					return check(w, r)
				}
				mu.Lock()
				refuse := deny
				mu.Unlock()
				var ok bool
				if refuse {
					ch := `Basic realm="test"`
					if bearer {
						ch = fmt.Sprintf(`Bearer realm="http://%s/token",service="test"`, r.Host)
					}
					w.Header().Set("WWW-Authenticate", ch)
					http.Error(w, "refused", http.StatusUnauthorized)
				} else {
					ok = check(w, r)
				}
				status := http.StatusOK
				if !ok {
					status = http.StatusUnauthorized
				}
				mu.Lock()
				sent = append(sent, sentRequest{r.URL.Path, r.Header.Get("Authorization"), status})
				mu.Unlock()
				return ok
			}
			o := src.opts(t.TempDir())
			o.Auth = &authn.Basic{Username: "u", Password: "p"}
			ctx := context.Background()
			c := testClient(t, o)
			d := c.hc.Transport.(*direct)
			chain := &countingTransport{inner: d.chain}
			d.chain = chain
			manifest := "/v2/" + repo + "/manifests/" + tag
			// step sends a request and returns what reached the registry, and whether
			// the request went through the chain.
			step := func(method, path string, wantStatus int) ([]sentRequest, bool) {
				t.Helper()
				mu.Lock()
				sent = nil
				mu.Unlock()
				before := chain.n.Load()
				resp, err := c.do(ctx, method, path, manifestAccept)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != wantStatus {
					t.Fatalf("%s %s: got HTTP %d, want %d", method, path, resp.StatusCode, wantStatus)
				}
				mu.Lock()
				defer mu.Unlock()
				return slices.Clone(sent), chain.n.Load() > before
			}
			got, viaChain := step(http.MethodGet, "/v2/_catalog", 200)
			if len(got) != 1 || !viaChain {
				t.Fatalf("first request: got %+v (through the chain: %v), want one request through the chain", got, viaChain)
			}
			first := got[0].auth
			got, _ = step(http.MethodHead, manifest, 200)
			wantN := 1
			if bearer { // the catalog's token lacks the repository's scope: one 401, then the new token
				wantN = 2
			}
			if len(got) != wantN {
				t.Fatalf("HEAD with the first credentials: the registry got %+v, want %d requests", got, wantN)
			}
			second := got[len(got)-1].auth
			if bearer && (second == first || got[0].status != http.StatusUnauthorized) {
				t.Errorf("HEAD with the catalog's token: the registry got %+v, want a 401 then a new token", got)
			}
			got, viaChain = step(http.MethodHead, manifest, 200)
			if len(got) != 1 || viaChain || got[0].auth != second {
				t.Fatalf("HEAD again: got %+v (through the chain: %v), want one request, directly, with %q", got, viaChain, second)
			}
			if second == "" {
				t.Fatalf("no credentials sent: %+v", got)
			}
			if bearer {
				// Tokens expire: one 401, a new token, the request again; then the new one
				// directly.
				ta.mu.Lock()
				ta.tokens = map[string]map[string]bool{}
				ta.mu.Unlock()
				got, _ = step(http.MethodHead, manifest, 200)
				if len(got) != 2 || got[0] != (sentRequest{manifest, second, http.StatusUnauthorized}) || got[1].auth == second {
					t.Fatalf("HEAD after the tokens expired: the registry got %+v, want a 401 with %q then a new token", got, second)
				}
				third := got[1].auth
				got, viaChain = step(http.MethodHead, manifest, 200)
				if len(got) != 1 || viaChain || got[0].auth != third {
					t.Fatalf("HEAD after the refresh: got %+v (through the chain: %v), want one request, directly, with %q", got, viaChain, third)
				}
			}
			// Credentials refused for good: one 401 each time, answered as it is.
			mu.Lock()
			deny = true
			mu.Unlock()
			wantN = 1
			if bearer { // the chain gets a new token and tries once more
				wantN = 2
			}
			for range 2 {
				if got, _ = step(http.MethodHead, manifest, 401); len(got) != wantN {
					t.Fatalf("HEAD with the credentials refused: the registry got %+v, want %d requests", got, wantN)
				}
			}
		})
	}
}

// TestHeadHasNoStallTimer: a HEAD's answer (no body) is returned as the transport gives it,
// with no stall timer or context of its own; a GET's body is watched for stalls.
func TestHeadHasNoStallTimer(t *testing.T) {
	src := newSource(t)
	src.demo()
	c := testClient(t, src.opts(t.TempDir()))
	for _, tc := range []struct {
		method    string
		wantStall bool
	}{{http.MethodHead, false}, {http.MethodGet, true}} {
		resp, err := c.do(context.Background(), tc.method, "/v2/_catalog", "")
		if err != nil {
			t.Fatal(err)
		}
		_, stall := resp.Body.(*stallReader)
		resp.Body.Close()
		if stall != tc.wantStall {
			t.Errorf("%s: body watched for stalls: got %v, want %v", tc.method, stall, tc.wantStall)
		}
	}
}

// processCPU is the CPU time (user and system) this process used so far.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkHead is a manifest HEAD through the client (what a no-op sends for every tag), 32
// in flight, against a source answering at once (its cost, in this process, is counted too).
func BenchmarkHead(b *testing.B) {
	digest := sha256Digest([]byte("index"))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h["Content-Type"] = []string{"application/vnd.oci.image.index.v1+json"}
		h["Docker-Content-Digest"] = []string{digest}
		h["Content-Length"] = []string{"500"}
	}))
	defer srv.Close()
	o := Options{Source: srv.URL, Out: b.TempDir(), Keychain: emptyKeychain()}
	ctx := context.Background()
	c := testClient(b, o)
	b.ReportAllocs()
	b.SetParallelism(32 / runtime.GOMAXPROCS(0))
	cpu := processCPU(b)
	defer func() { b.ReportMetric(float64(processCPU(b)-cpu)/float64(b.N), "cpu-ns/op") }()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := c.do(ctx, http.MethodHead, "/v2/bench/r00001/manifests/t000001", manifestAccept)
			if err != nil {
				b.Error(err)
				return
			}
			resp.Body.Close()
			if got := resp.Header.Get("Docker-Content-Digest"); got != digest {
				b.Errorf("got %q, want %q", got, digest)
				return
			}
		}
	})
}
