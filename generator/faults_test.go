package generator

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/regmirror/regmirror/layout"
)

// Fault actions.
func status(code int) func(http.ResponseWriter, *http.Request, http.Handler) {
	return func(w http.ResponseWriter, r *http.Request, _ http.Handler) {
		if code == http.StatusUnauthorized {
			w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
		}
		http.Error(w, `{"errors":[{"code":"INJECTED","message":"injected fault"}]}`, code)
	}
}

// rewrite lets the registry answer, then changes the body: truncate to half (keeping the
// Content-Length), or flip bytes.
func rewrite(change string) func(http.ResponseWriter, *http.Request, http.Handler) {
	return func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		rec := &recorder{header: http.Header{}}
		next.ServeHTTP(rec, r)
		body := rec.body
		for k, v := range rec.header {
			w.Header()[k] = v
		}
		w.Header().Set("Content-Length", fmt.Sprint(len(body)))
		w.WriteHeader(rec.code)
		switch change {
		case "truncate":
			w.Write(body[:len(body)/2])
		case "flip":
			b := append([]byte(nil), body...)
			for i := range b {
				b[i] ^= 0xff
			}
			w.Write(b)
		}
	}
}

// stall sends the headers and half the body, then nothing for d.
func stall(d time.Duration) func(http.ResponseWriter, *http.Request, http.Handler) {
	return func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		rec := &recorder{header: http.Header{}}
		next.ServeHTTP(rec, r)
		w.Header().Set("Content-Length", fmt.Sprint(len(rec.body)))
		w.WriteHeader(rec.code)
		w.Write(rec.body[:len(rec.body)/2])
		w.(http.Flusher).Flush()
		select {
		case <-time.After(d):
		case <-r.Context().Done():
		}
	}
}

type recorder struct {
	header http.Header
	code   int
	body   []byte
}

func (r *recorder) Header() http.Header { return r.header }
func (r *recorder) WriteHeader(c int)   { r.code = c }
func (r *recorder) Write(b []byte) (int, error) {
	if r.code == 0 {
		r.code = 200
	}
	r.body = append(r.body, b...)
	return len(b), nil
}

func pathHas(s string) func(string) bool {
	return func(p string) bool { return strings.Contains(p, s) }
}

// TestFaults runs against a source with one fault injected, after a clean first generation
// and a new image pushed to "changing:1", and checks the outcome and that the tree stays
// whole.
func TestFaults(t *testing.T) {
	tests := []struct {
		name string
		// fault gets the new image's layer digest.
		fault func(layer string) *fault
		// wantErr: "" for success; else substrings of the error.
		wantErr    []string
		wantFatal  bool // no new generation at all
		stallAfter time.Duration
	}{
		{name: "5xx then success on blobs", fault: func(l string) *fault {
			return &fault{method: "GET", match: pathHas("/blobs/"), times: 2, do: status(503)}
		}},
		{name: "5xx then success on HEAD", fault: func(l string) *fault {
			return &fault{method: "HEAD", match: pathHas("/manifests/"), times: 2, do: status(502)}
		}},
		{name: "5xx forever", fault: func(l string) *fault {
			return &fault{method: "GET", match: pathHas(l), do: status(500)}
		}, wantErr: []string{"changing:1", l0, "HTTP 500"}},
		{name: "truncated body once", fault: func(l string) *fault {
			return &fault{method: "GET", match: pathHas(l), times: 1, do: rewrite("truncate")}
		}},
		{name: "truncated body always", fault: func(l string) *fault {
			return &fault{method: "GET", match: pathHas(l), do: rewrite("truncate")}
		}, wantErr: []string{"changing:1", l0, "truncated body"}},
		{name: "wrong bytes", fault: func(l string) *fault {
			return &fault{method: "GET", match: pathHas(l), do: rewrite("flip")}
		}, wantErr: []string{"changing:1", l0, "does not match its digest"}},
		{name: "wrong manifest bytes", fault: func(l string) *fault {
			return &fault{method: "GET", match: pathHas("/changing/manifests/sha256:"), do: rewrite("flip")}
		}, wantErr: []string{"changing:1", "does not match its digest"}},
		{name: "manifest over 4 MiB", fault: func(l string) *fault {
			return &fault{method: "HEAD", match: pathHas("/changing/manifests/"), do: func(w http.ResponseWriter, r *http.Request, _ http.Handler) {
				w.Header().Set("Content-Length", fmt.Sprint(MaxManifestSize+1))
				w.Header().Set("Docker-Content-Digest", sha256Digest([]byte("x")))
				w.WriteHeader(200)
			}}
		}, wantErr: []string{"changing:1", fmt.Sprintf("over the %d-byte limit", MaxManifestSize)}},
		{name: "stalled body once", fault: func(l string) *fault {
			return &fault{method: "GET", match: pathHas(l), times: 1, do: stall(time.Minute)}
		}, stallAfter: 200 * time.Millisecond},
		{name: "401 on everything", fault: func(l string) *fault {
			return &fault{match: pathHas("/v2/"), do: status(401)}
		}, wantErr: []string{"401"}, wantFatal: true},
		{name: "401 on one repository", fault: func(l string) *fault {
			return &fault{match: pathHas("/changing/"), do: status(401)}
		}, wantErr: []string{"changing", "401", "Options.Auth"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src := newSource(t)
			src.demo()
			old, err := random.Image(1000, 1)
			if err != nil {
				t.Fatal(err)
			}
			src.pushImage("changing", "1", old)
			out := t.TempDir()
			o := src.opts(out)
			if tc.stallAfter > 0 {
				o.StallTimeout = tc.stallAfter
			}
			mustRun(t, o)
			before := checkTree(t, out)
			oldD := before.Repositories["changing"].Tags["1"]

			img, err := random.Image(4000, 1)
			if err != nil {
				t.Fatal(err)
			}
			src.pushImage("changing", "1", img)
			ls, _ := img.Layers()
			ld, _ := ls[0].Digest()
			newD, _ := img.Digest()
			f := tc.fault(ld.String())
			for i, w := range tc.wantErr {
				if w == l0 {
					tc.wantErr[i] = ld.String()
				}
			}
			src.addFault(f)

			sum, err := Run(context.Background(), o)
			m := checkTree(t, out)
			if len(tc.wantErr) == 0 {
				if err != nil {
					t.Fatalf("got %v, want success", err)
				}
				if got := m.Repositories["changing"].Tags["1"].String(); got != newD.String() {
					t.Errorf("changing:1: got %s, want the new %s", got, newD)
				}
				return
			}
			if err == nil {
				t.Fatalf("got success, want an error mentioning %q", tc.wantErr)
			}
			t.Logf("error: %v", err)
			for _, w := range tc.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error is not one line: %q", err)
			}
			if tc.wantFatal {
				if sum != nil || m.Generation != before.Generation {
					t.Errorf("a fatal error published generation %d (summary %v)", m.Generation, sum)
				}
				return
			}
			var pe *PartialError
			if !errors.As(err, &pe) {
				t.Fatalf("got %T, want *PartialError", err)
			}
			if m.Generation != before.Generation+1 {
				t.Errorf("generation: got %d, want %d published despite the failure", m.Generation, before.Generation+1)
			}
			if got := m.Repositories["changing"].Tags["1"]; got != oldD {
				t.Errorf("changing:1: got %s, want the previous %s kept", got, oldD)
			}
			if m.Repositories["fedora"] == nil {
				t.Errorf("the other repositories were not published")
			}
		})
	}
}

// l0 stands for the new layer's digest in wantErr.
const l0 = "<layer>"

// failingFile fails every write with err.
type failingFile struct {
	BlobFile
	err error
}

func (f failingFile) Write(p []byte) (int, error) { return 0, f.err }

func TestFullDiskStopsTheRun(t *testing.T) {
	src := newSource(t)
	src.demo()
	out := t.TempDir()
	o := src.opts(out)
	mustRun(t, o)
	before := checkTree(t, out)

	img, err := random.Image(4000, 2)
	if err != nil {
		t.Fatal(err)
	}
	src.pushImage("fedora/new", "1", img)
	o.CreateFile = func(path string) (BlobFile, error) {
		f, err := layout.CreateFile(path)
		if err != nil {
			return nil, err
		}
		return failingFile{f, &os.PathError{Op: "write", Path: f.Name(), Err: syscall.ENOSPC}}, nil
	}
	sum, err := Run(context.Background(), o)
	if err == nil || !errors.Is(err, syscall.ENOSPC) || !strings.Contains(err.Error(), "writing blob sha256:") {
		t.Fatalf("got %v, want an ENOSPC error naming the blob", err)
	}
	var pe *PartialError
	if errors.As(err, &pe) || sum != nil {
		t.Errorf("a full disk must stop the run, got a published generation (%v)", err)
	}
	m := checkTree(t, out)
	if m.Generation != before.Generation {
		t.Errorf("generation: got %d, want %d unchanged", m.Generation, before.Generation)
	}
	if tmp := listTemps(t, out); len(tmp) != 0 {
		t.Errorf("temporary files left: %v", tmp)
	}
	// The next run, with space, completes.
	o.CreateFile = nil
	mustRun(t, o)
	if m := checkTree(t, out); m.Repositories["fedora/new"] == nil {
		t.Errorf("the next run did not publish fedora/new")
	}
}

func TestInterruptedRunLeavesPreviousTree(t *testing.T) {
	src := newSource(t)
	src.demo()
	out := t.TempDir()
	o := src.opts(out)
	mustRun(t, o)
	before := checkTree(t, out)

	img, err := random.Image(100000, 3)
	if err != nil {
		t.Fatal(err)
	}
	src.pushImage("fedora/new", "1", img)
	ctx, cancel := context.WithCancel(context.Background())
	src.addFault(&fault{method: "GET", match: pathHas("/blobs/"), do: func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		cancel()
		<-r.Context().Done()
	}})
	_, err = Run(ctx, o)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
	if m := checkTree(t, out); m.Generation != before.Generation {
		t.Errorf("generation: got %d, want %d", m.Generation, before.Generation)
	}
	src.clearFaults()
	mustRun(t, o)
	if m := checkTree(t, out); m.Repositories["fedora/new"] == nil {
		t.Errorf("the next run did not publish fedora/new")
	}
}

// hostile serves a catalog and tag lists with names outside the grammar in front of the
// registry.
func TestHostileNamesSkipped(t *testing.T) {
	src := newSource(t)
	src.demo()
	src.addFault(&fault{method: "GET", match: pathHas("/_catalog"), do: func(w http.ResponseWriter, r *http.Request, _ http.Handler) {
		fmt.Fprint(w, `{"repositories":["fedora","../../etc","UPPER/case","a//b","/abs","fedora"]}`)
	}})
	src.addFault(&fault{method: "GET", match: pathHas("/fedora/tags/list"), do: func(w http.ResponseWriter, r *http.Request, _ http.Handler) {
		fmt.Fprint(w, `{"name":"fedora","tags":["42","../../../x",".hidden","a/b","42"]}`)
	}})
	parent := t.TempDir()
	out := filepath.Join(parent, "tree")
	var log syncBuffer
	o := src.opts(out)
	o.Log = &log
	sum := mustRun(t, o)
	m := checkTree(t, out)
	if len(m.Repositories) != 1 || len(m.Repositories["fedora"].Tags) != 1 || sum.Tags != 1 {
		t.Errorf("published: got %v, want only fedora:42", m.Repositories)
	}
	for _, bad := range []string{"../../etc", "UPPER/case", "a//b", "../../../x", ".hidden", "a/b"} {
		if !strings.Contains(log.String(), strings.Trim(strconv.Quote(strconv.Quote(bad)), `"`)) {
			t.Errorf("no warning naming %q in %q", bad, log.String())
		}
	}
	ents, _ := os.ReadDir(parent)
	if len(ents) != 1 {
		t.Errorf("files outside the tree: %v", ents)
	}
}

func TestUnreachableSource(t *testing.T) {
	src := newSource(t)
	url := src.url
	src.srv.Close()
	out := t.TempDir()
	o := src.opts(out)
	o.Source = url
	o.Retries = 1
	_, err := Run(context.Background(), o)
	if err == nil || !strings.Contains(err.Error(), "connecting to "+url) || !strings.Contains(err.Error(), "refused") {
		t.Errorf("got %v, want a connection error naming %s", err, url)
	}
}
