package generator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/regmirror/regmirror/layout"
)

// indexDoc is an OCI index, optionally with a subject.
type indexDoc struct {
	SchemaVersion int    `json:"schemaVersion"`
	MediaType     string `json:"mediaType"`
	Manifests     []desc `json:"manifests"`
	Subject       *desc  `json:"subject,omitempty"`
}

// referrersAPI answers GET /v2/<repo>/referrers/<digest> from lists: subject → referrers.
type referrersAPI struct {
	mu    sync.Mutex
	lists map[string][]desc
}

func (a *referrersAPI) fault() *fault {
	return &fault{method: "GET", match: pathHas("/referrers/"), do: func(w http.ResponseWriter, r *http.Request, _ http.Handler) {
		d := r.URL.Path[strings.LastIndex(r.URL.Path, "/")+1:]
		a.mu.Lock()
		refs := a.lists[d]
		a.mu.Unlock()
		if refs == nil {
			refs = []desc{}
		}
		w.Header().Set("Content-Type", layout.MediaTypeOCIIndex)
		json.NewEncoder(w).Encode(indexDoc{SchemaVersion: 2, MediaType: layout.MediaTypeOCIIndex, Manifests: refs})
	}}
}

// TestReferrerAmplification: sources listing manifests as referrers of each other, or
// referrers that are indexes of their subject's siblings (work K^8 before), are published
// with work bounded by the distinct manifests: each manifest fetched once, each subject's
// referrers asked once, and only referrers naming their subject published.
func TestReferrerAmplification(t *testing.T) {
	const k = 8
	tests := []struct {
		name string
		// build pushes the manifests into repo "h", tags one "t", and returns the referrer
		// lists and the accepted referrers of each subject.
		build func(src *source) (lists map[string][]desc, want map[string][]string)
	}{
		{"mutual referrers without subjects", func(src *source) (map[string][]desc, map[string][]string) {
			ms := images(t, src, k, nil)
			lists := map[string][]desc{}
			for i, m := range ms {
				for j, o := range ms {
					if i != j {
						lists[m.Digest] = append(lists[m.Digest], o)
					}
				}
			}
			src.putManifest("h", "t", layout.MediaTypeOCIManifest, mustGet(t, src, ms[0]))
			return lists, map[string][]string{}
		}},
		{"mutual referrers, all but the first naming it", func(src *source) (map[string][]desc, map[string][]string) {
			first := images(t, src, 1, nil)[0]
			rest := images(t, src, k-1, &first)
			ms := append([]desc{first}, rest...)
			lists := map[string][]desc{}
			for i, m := range ms {
				for j, o := range ms {
					if i != j {
						lists[m.Digest] = append(lists[m.Digest], o)
					}
				}
			}
			src.putManifest("h", "t", layout.MediaTypeOCIManifest, mustGet(t, src, first))
			want := map[string][]string{}
			for _, r := range rest {
				want[first.Digest] = append(want[first.Digest], r.Digest)
			}
			return lists, want
		}},
		{"index referrers listing every sibling", func(src *source) (map[string][]desc, map[string][]string) {
			cs := images(t, src, k, nil)
			top := mustJSON(t, indexDoc{SchemaVersion: 2, MediaType: layout.MediaTypeOCIIndex, Manifests: cs})
			src.putManifest("h", "t", layout.MediaTypeOCIIndex, top)
			lists, want := map[string][]desc{}, map[string][]string{}
			for _, c := range cs {
				subj := c
				b := mustJSON(t, indexDoc{SchemaVersion: 2, MediaType: layout.MediaTypeOCIIndex, Manifests: cs, Subject: &subj})
				d := src.putManifest("h", sha256Digest(b), layout.MediaTypeOCIIndex, b)
				lists[c.Digest] = []desc{{MediaType: layout.MediaTypeOCIIndex, Digest: d, Size: len(b)}}
				want[c.Digest] = []string{d}
			}
			return lists, want
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src := newSource(t)
			lists, want := tc.build(src)
			api := &referrersAPI{lists: lists}
			src.addFault(api.fault())
			src.resetCounts()
			out := t.TempDir()
			var log syncBuffer
			o := src.opts(out)
			o.Log = &log
			start := time.Now()
			mustRun(t, o)
			took := time.Since(start)
			c := src.resetCounts()
			distinct := len(lists) + 2*k + 1 // every manifest listed or pushed
			if c["GET referrers"] > distinct || c["GET manifest"] > distinct {
				t.Errorf("requests: got %d referrers queries and %d manifest GETs, want at most %d each (one per manifest)", c["GET referrers"], c["GET manifest"], distinct)
			}
			m := checkTree(t, out)
			got := map[string][]string{}
			for subj, descs := range m.Repositories["h"].Referrers {
				for _, d := range descs {
					got[subj.String()] = append(got[subj.String()], d.Digest.String())
				}
			}
			if fmt.Sprint(sortedMap(got)) != fmt.Sprint(sortedMap(want)) {
				t.Errorf("referrers published: got %v, want %v", got, want)
			}
			t.Logf("K=%d: %v, %d referrers queries, %d manifest GETs", k, took.Round(time.Millisecond), c["GET referrers"], c["GET manifest"])
		})
	}
}

// images pushes n distinct image manifests (sharing one config and one layer) to repo "h",
// naming subject when it is set, and returns their descriptors.
func images(t *testing.T, src *source, n int, subject *desc) []desc {
	cfg := []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}`)
	cfgD := src.putBlob("h", cfg)
	var out []desc
	for i := range n {
		b := mustJSON(t, manifestDoc{SchemaVersion: 2, MediaType: layout.MediaTypeOCIManifest,
			Config: desc{MediaType: layout.MediaTypeOCIConfig, Digest: cfgD, Size: len(cfg)}, Layers: []desc{}, Subject: subject,
			Annotations: map[string]string{"n": fmt.Sprint(i), "subject": fmt.Sprint(subject != nil)}})
		d := src.putManifest("h", sha256Digest(b), layout.MediaTypeOCIManifest, b)
		out = append(out, desc{MediaType: layout.MediaTypeOCIManifest, Digest: d, Size: len(b)})
	}
	return out
}

func mustGet(t *testing.T, src *source, d desc) []byte {
	req, _ := http.NewRequest("GET", src.url+"/v2/h/manifests/"+d.Digest, nil)
	req.Header.Set("Accept", d.MediaType)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func sortedMap(m map[string][]string) []string {
	var out []string
	for k, v := range m {
		vs := slices.Sorted(slices.Values(v))
		out = append(out, k+"="+strings.Join(vs, ","))
	}
	slices.Sort(out)
	return out
}

// endless answers a list endpoint with n fresh entries per page, forever, each page linking
// to the next.
func endless(field string, n int) func(http.ResponseWriter, *http.Request, http.Handler) {
	return func(w http.ResponseWriter, r *http.Request, _ http.Handler) {
		page := 0
		fmt.Sscan(r.URL.Query().Get("page"), &page)
		var items []string
		for i := range n {
			items = append(items, fmt.Sprintf("x%d-%d", page, i))
		}
		w.Header().Set("Link", fmt.Sprintf(`<%s?page=%d>; rel="next"`, r.URL.Path, page+1))
		json.NewEncoder(w).Encode(map[string][]string{field: items})
	}
}

// endlessReferrers answers the referrers API with n fresh referrer descriptors per page,
// forever.
func endlessReferrers(n int) func(http.ResponseWriter, *http.Request, http.Handler) {
	return func(w http.ResponseWriter, r *http.Request, _ http.Handler) {
		page := 0
		fmt.Sscan(r.URL.Query().Get("page"), &page)
		var refs []desc
		for i := range n {
			refs = append(refs, desc{MediaType: layout.MediaTypeOCIManifest, Digest: sha256Digest(fmt.Appendf(nil, "%d-%d", page, i)), Size: 100})
		}
		w.Header().Set("Link", fmt.Sprintf(`<%s?page=%d>; rel="next"`, r.URL.Path, page+1))
		w.Header().Set("Content-Type", layout.MediaTypeOCIIndex)
		json.NewEncoder(w).Encode(indexDoc{SchemaVersion: 2, MediaType: layout.MediaTypeOCIIndex, Manifests: refs})
	}
}

// TestListingLimits: a source whose catalog, tag list or referrers never end is cut off at
// the limit, with a one-line error naming the source and the limit; the rest of the run
// goes on where only one repository or tag is concerned.
func TestListingLimits(t *testing.T) {
	tests := []struct {
		name  string
		fault *fault
		set   func(o *Options)
		fatal bool
		want  string // the limit's flag and value
	}{
		{"endless catalog", &fault{method: "GET", match: pathHas("/_catalog"), do: endless("repositories", 100)},
			func(o *Options) { o.MaxEntries = 1000 }, true, "more than 1000 repositories (limit: Options.MaxEntries 1000"},
		{"catalog trickling one name a page", &fault{method: "GET", match: pathHas("/_catalog"), do: endless("repositories", 1)},
			func(o *Options) { o.MaxPages = 50 }, true, "more than 50 pages of repositories (limit: Options.MaxPages 50"},
		{"endless tag list", &fault{method: "GET", match: pathHas("/fedora/tags/list"), do: endless("tags", 100)},
			func(o *Options) { o.MaxEntries = 500 }, false, "fedora: listing tags at %s: more than 500 tags (limit: Options.MaxEntries 500"},
		{"endless referrers", &fault{method: "GET", match: pathHas("/fedora/referrers/"), do: endlessReferrers(7)},
			func(o *Options) { o.MaxReferrers = 20 }, false, "at %s: more than 20 referrers (limit: Options.MaxReferrers 20"},
		{"endless empty referrer pages", &fault{method: "GET", match: pathHas("/fedora/referrers/"), do: endlessReferrers(0)},
			func(o *Options) { o.MaxPages = 30 }, false, "at %s: more than 30 pages of referrers (limit: Options.MaxPages 30"},
		// Every repository's: the first query, which tells whether the source has the API,
		// runs past the limit too (the API is there: that is a failure, not "no API").
		{"endless referrers from the first query", &fault{method: "GET", match: pathHas("/referrers/"), do: endlessReferrers(7)},
			func(o *Options) { o.MaxReferrers = 20 }, false, "at %s: more than 20 referrers (limit: Options.MaxReferrers 20"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src := newSource(t)
			src.demo()
			src.addFault(tc.fault)
			out := t.TempDir()
			o := src.opts(out)
			tc.set(&o)
			_, err := Run(context.Background(), o)
			if err == nil {
				t.Fatal("got success, want an error naming the limit")
			}
			var pe *PartialError
			if partial := errors.As(err, &pe); partial == tc.fatal {
				t.Errorf("got %v (partial %v), want fatal %v", err, partial, tc.fatal)
			}
			want := tc.want
			if strings.Contains(want, "%s") {
				want = fmt.Sprintf(want, src.url)
			}
			msg := err.Error()
			t.Logf("error: %s", msg)
			if !strings.Contains(msg, want) || !strings.Contains(msg, src.url) || strings.Contains(msg, "\n") {
				t.Errorf("error: got %q, want one line naming %s and %q", msg, src.url, want)
			}
			if !tc.fatal {
				checkTree(t, out)
			}
		})
	}
}

// TestNestedTooDeep: the cause of a failure deep in nested indexes comes first and survives
// the truncation of long messages, with both ends of the chain of digests.
func TestNestedTooDeep(t *testing.T) {
	src := newSource(t)
	leaf := images(t, src, 1, nil)[0]
	d := leaf
	var chain []string
	for range MaxDepth + 2 {
		b := mustJSON(t, indexDoc{SchemaVersion: 2, MediaType: layout.MediaTypeOCIIndex, Manifests: []desc{d}})
		dg := src.putManifest("h", sha256Digest(b), layout.MediaTypeOCIIndex, b)
		d = desc{MediaType: layout.MediaTypeOCIIndex, Digest: dg, Size: len(b)}
		chain = append([]string{dg}, chain...)
	}
	src.putManifest("h", "deep", layout.MediaTypeOCIIndex, mustGet(t, src, d))
	out := t.TempDir()
	_, err := Run(context.Background(), src.opts(out))
	var pe *PartialError
	if !errors.As(err, &pe) {
		t.Fatalf("got %v, want a partial failure of h:deep", err)
	}
	msg := err.Error()
	t.Logf("error: %s", msg)
	cause := fmt.Sprintf("h:deep: manifests nested deeper than %d (in index %s → ", MaxDepth, chain[0])
	if !strings.Contains(msg, cause) || !strings.Contains(msg, "…") || !strings.HasSuffix(msg, ")") {
		t.Errorf("error: got %q, want the cause first, %q, and the chain cut in the middle", msg, cause)
	}
	if len(msg) > 2*maxMessage {
		t.Errorf("error of %d bytes, want it cut near %d", len(msg), maxMessage)
	}
}

// TestCredentialsStayOnTheSource: a source that sends blob downloads to another host (a CDN,
// as registries with a redirect storage middleware do) gets its credentials, basic or
// bearer; the other host never sees them, whether it differs by name or only by port.
func TestCredentialsStayOnTheSource(t *testing.T) {
	for _, bearer := range []bool{false, true} {
		for _, cdnHost := range []string{"localhost", "127.0.0.1"} {
			name := fmt.Sprintf("bearer %v, CDN at %s", bearer, cdnHost)
			t.Run(name, func(t *testing.T) {
				src := newSource(t)
				src.demo()
				var (
					mu         sync.Mutex
					seen       []string // credentials-bearing headers the CDN received
					hits       int      // blob downloads through the CDN
					authedGETs int      // blob GETs that reached the source with credentials
				)
				// The CDN serves blobs by asking the source over a path that needs no
				// credentials (as a CDN pulls from its origin).
				cdn := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					mu.Lock()
					hits++
					for _, h := range []string{"Authorization", "Cookie", "Proxy-Authorization"} {
						if v := r.Header.Get(h); v != "" {
							seen = append(seen, h+": "+v)
						}
					}
					mu.Unlock()
					resp, err := http.Get(src.url + "/origin" + strings.TrimPrefix(r.URL.Path, "/cdn"))
					if err != nil {
						http.Error(w, err.Error(), http.StatusBadGateway)
						return
					}
					defer resp.Body.Close()
					w.WriteHeader(resp.StatusCode)
					io.Copy(w, resp.Body)
				}))
				defer cdn.Close()
				_, cdnPort, _ := net.SplitHostPort(strings.TrimPrefix(cdn.URL, "http://"))
				cdnURL := "http://" + cdnHost + ":" + cdnPort
				check := basicAuth("u", "p")
				if bearer {
					ta := &tokenAuth{user: "u", pass: "p", tokens: map[string]map[string]bool{}}
					check = ta.check
				}
				src.auth = func(w http.ResponseWriter, r *http.Request) bool {
					if strings.HasPrefix(r.URL.Path, "/origin/") {
						return true
					}
					if strings.Contains(r.URL.Path, "/blobs/") && r.Header.Get("Authorization") != "" {
						mu.Lock()
						authedGETs++
						mu.Unlock()
					}
					return check(w, r)
				}
				src.addFault(&fault{method: "GET", match: pathHas("/blobs/"), do: func(w http.ResponseWriter, r *http.Request, registry http.Handler) {
					if p, ok := strings.CutPrefix(r.URL.Path, "/origin"); ok {
						r.URL.Path = p
						registry.ServeHTTP(w, r)
						return
					}
					http.Redirect(w, r, cdnURL+"/cdn"+r.URL.Path, http.StatusTemporaryRedirect)
				}})
				out := t.TempDir()
				o := src.opts(out)
				o.Auth = &authn.Basic{Username: "u", Password: "p"}
				mustRun(t, o)
				checkTree(t, out)
				mu.Lock()
				defer mu.Unlock()
				if hits == 0 || authedGETs == 0 {
					t.Fatalf("blob downloads: %d through the CDN, %d with credentials at the source; want both", hits, authedGETs)
				}
				if len(seen) > 0 {
					t.Errorf("the CDN at %s received credentials: %q", cdnURL, seen)
				}
				t.Logf("%d blobs through the CDN, none with credentials", hits)
			})
		}
	}
}
