package listen

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/regmirror/regmirror/generator"
	"github.com/regmirror/regmirror/layout"
)

const pushBody = `{"events":[{"id":"1","action":"push","target":{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:aa","repository":"fedora","tag":"42"}}]}`

func newTest(t *testing.T, o Options) *Listener {
	t.Helper()
	if o.Generate.Source == "" {
		o.Generate.Source = "http://localhost:1"
	}
	if o.Generate.Out == "" {
		o.Generate.Out = publishedTree(t)
	}
	l, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// publishedTree is a tree with one (empty) generation, so a listener does not start with a
// first run.
func publishedTree(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if _, err := layout.NewTree(dir).Publish(layout.NewMeta(1)); err != nil {
		t.Fatal(err)
	}
	return dir
}

func post(t *testing.T, h http.Handler, body, ctype, auth string) int {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, "/events", strings.NewReader(body))
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Code
}

func TestEventsEndpoint(t *testing.T) {
	cases := []struct {
		name        string
		repos       []string
		secret      string
		method      string
		body, ctype string
		auth        string
		wantCode    int
		wantPending bool
	}{
		{name: "v1 push", body: pushBody, ctype: EventsMediaTypeV1, wantCode: 200, wantPending: true},
		{name: "v2 push", body: pushBody, ctype: EventsMediaTypeV2, wantCode: 200, wantPending: true},
		{name: "plain json with charset", body: pushBody, ctype: "application/json; charset=utf-8", wantCode: 200, wantPending: true},
		{name: "wrong content type", body: pushBody, ctype: "text/plain", wantCode: 415},
		{name: "not published", repos: []string{"centos/**"}, body: pushBody, ctype: EventsMediaTypeV1, wantCode: 200},
		{name: "published by glob", repos: []string{"fed*"}, body: pushBody, ctype: EventsMediaTypeV1, wantCode: 200, wantPending: true},
		{name: "pull ignored", body: strings.Replace(pushBody, `"push"`, `"pull"`, 1), ctype: EventsMediaTypeV1, wantCode: 200},
		{name: "blob push ignored", body: `{"events":[{"action":"push","target":{"mediaType":"application/octet-stream","repository":"fedora","digest":"sha256:bb"}}]}`, ctype: EventsMediaTypeV1, wantCode: 200},
		{name: "delete", body: `{"events":[{"action":"delete","target":{"repository":"fedora","digest":"sha256:bb"}}]}`, ctype: EventsMediaTypeV1, wantCode: 200, wantPending: true},
		{name: "malformed", body: `{"events":`, ctype: EventsMediaTypeV1, wantCode: 400},
		{name: "no events array", body: `{}`, ctype: EventsMediaTypeV1, wantCode: 400},
		{name: "too large", body: `{"events":[` + strings.Repeat(" ", MaxBody) + `]}`, ctype: EventsMediaTypeV1, wantCode: 413},
		{name: "secret missing", secret: "s3cret", body: pushBody, ctype: EventsMediaTypeV1, wantCode: 401},
		{name: "secret wrong", secret: "s3cret", body: pushBody, ctype: EventsMediaTypeV1, auth: "Bearer nope", wantCode: 401},
		{name: "secret right", secret: "s3cret", body: pushBody, ctype: EventsMediaTypeV1, auth: "Bearer s3cret", wantCode: 200, wantPending: true},
		{name: "GET refused", method: http.MethodGet, wantCode: 405},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			l := newTest(t, Options{Generate: generator.Options{Repos: c.repos}, Secret: c.secret})
			var code int
			if c.method == http.MethodGet {
				rec := httptest.NewRecorder()
				l.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/events", nil))
				code = rec.Code
			} else {
				code = post(t, l.Handler(), c.body, c.ctype, c.auth)
			}
			if code != c.wantCode {
				t.Errorf("status: got %d, want %d", code, c.wantCode)
			}
			if got := l.Status().Pending; got != c.wantPending {
				t.Errorf("pending: got %v, want %v", got, c.wantPending)
			}
		})
	}
}

// fakeRun counts runs and checks they never overlap.
type fakeRun struct {
	mu      sync.Mutex
	running bool
	overlap bool
	runs    atomic.Int32
	delay   time.Duration
	fail    atomic.Int32 // fail this many runs first
	started chan struct{}
}

func (f *fakeRun) run(ctx context.Context, o generator.Options) (*generator.Summary, error) {
	f.mu.Lock()
	if f.running {
		f.overlap = true
	}
	f.running = true
	f.mu.Unlock()
	if f.started != nil {
		select {
		case f.started <- struct{}{}:
		default:
		}
	}
	time.Sleep(f.delay)
	f.mu.Lock()
	f.running = false
	f.mu.Unlock()
	n := f.runs.Add(1)
	if f.fail.Load() > 0 {
		f.fail.Add(-1)
		return nil, errors.New("source unreachable")
	}
	return &generator.Summary{Generation: uint64(n)}, nil
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func start(t *testing.T, l *Listener) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	return func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}
}

func TestDebounceBurstIsOneRun(t *testing.T) {
	f := &fakeRun{}
	l := newTest(t, Options{Run: f.run, Debounce: 100 * time.Millisecond})
	stop := start(t, l)
	defer stop()
	for range 10 {
		l.Request()
		time.Sleep(10 * time.Millisecond)
	}
	waitFor(t, "the run", func() bool { return f.runs.Load() >= 1 && !l.Status().Pending })
	time.Sleep(300 * time.Millisecond)
	if got, want := f.runs.Load(), int32(1); got != want {
		t.Errorf("runs after a burst: got %d, want %d", got, want)
	}
}

func TestRunsNeverOverlap(t *testing.T) {
	f := &fakeRun{delay: 150 * time.Millisecond, started: make(chan struct{}, 1)}
	l := newTest(t, Options{Run: f.run, Debounce: 10 * time.Millisecond})
	stop := start(t, l)
	defer stop()
	l.Request()
	<-f.started
	// Requests during the run: one more run afterwards, not a concurrent one.
	l.Request()
	l.Request()
	waitFor(t, "the second run", func() bool { return f.runs.Load() >= 2 && !l.Status().Pending })
	time.Sleep(100 * time.Millisecond)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.overlap {
		t.Errorf("two runs overlapped")
	}
	if got, want := f.runs.Load(), int32(2); got != want {
		t.Errorf("runs: got %d, want %d", got, want)
	}
}

func TestFailedRunRetries(t *testing.T) {
	f := &fakeRun{}
	f.fail.Store(2)
	l := newTest(t, Options{Run: f.run, Debounce: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond})
	stop := start(t, l)
	defer stop()
	l.Request()
	waitFor(t, "a successful run", func() bool { return f.runs.Load() == 3 && !l.Status().Pending })
	if got := l.Status(); got.LastError != "" || got.Failures != 0 {
		t.Errorf("status after recovery: got error %q, %d failures, want none", got.LastError, got.Failures)
	}
}

func TestFirstRunOnAnEmptyTree(t *testing.T) {
	f := &fakeRun{}
	l := newTest(t, Options{Generate: generator.Options{Out: t.TempDir()}, Run: f.run, Debounce: time.Hour})
	stop := start(t, l)
	defer stop()
	waitFor(t, "the first run", func() bool { return f.runs.Load() == 1 && !l.Status().Pending })
}

func TestPendingSurvivesRestart(t *testing.T) {
	dir := publishedTree(t)
	// First listener: a request arrives, then it dies before the quiet window ends.
	f1 := &fakeRun{}
	l1 := newTest(t, Options{Generate: generator.Options{Out: dir}, Run: f1.run, Debounce: time.Hour})
	stop := start(t, l1)
	if code := post(t, l1.Handler(), pushBody, EventsMediaTypeV1, ""); code != 200 {
		t.Fatalf("POST: got %d, want 200", code)
	}
	waitFor(t, "the state file", func() bool {
		b, err := os.ReadFile(l1.StatePath())
		return err == nil && strings.Contains(string(b), `"pending":true`)
	})
	stop()
	if got := f1.runs.Load(); got != 0 {
		t.Fatalf("runs before the quiet window: got %d, want 0", got)
	}

	// Second listener on the same tree: it runs at once and clears the state.
	f2 := &fakeRun{}
	l2 := newTest(t, Options{Generate: generator.Options{Out: dir}, Run: f2.run, Debounce: time.Hour})
	stop = start(t, l2)
	defer stop()
	waitFor(t, "the run after the restart", func() bool { return f2.runs.Load() == 1 })
	waitFor(t, "the state file cleared", func() bool {
		b, err := os.ReadFile(l2.StatePath())
		return err == nil && strings.Contains(string(b), `"pending":false`)
	})
}

func TestShutdownFinishesCurrentRun(t *testing.T) {
	f := &fakeRun{delay: 200 * time.Millisecond, started: make(chan struct{}, 1)}
	l := newTest(t, Options{Run: f.run, Debounce: time.Millisecond})
	stop := start(t, l)
	l.Request()
	<-f.started
	stop() // returns only after the run
	if got, want := f.runs.Load(), int32(1); got != want {
		t.Errorf("finished runs at shutdown: got %d, want %d", got, want)
	}
}

func TestNewErrors(t *testing.T) {
	cases := []struct {
		name string
		o    Options
		want string
	}{
		{"no out", Options{Generate: generator.Options{Source: "http://x"}}, "Options.Generate.Out"},
		{"no source", Options{Generate: generator.Options{Out: "/tmp/x"}}, "Options.Generate.Source"},
		{"dry run", Options{Generate: generator.Options{Source: "http://x", Out: "/tmp/x", DryRun: true}}, "Options.Generate.DryRun"},
		{"bad glob", Options{Generate: generator.Options{Source: "http://x", Out: "/tmp/x", Repos: []string{""}}}, "empty"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := New(c.o)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("got %v, want an error mentioning %q", err, c.want)
			}
		})
	}
}

func FuzzEvents(f *testing.F) {
	f.Add([]byte(pushBody))
	f.Add([]byte(`{"events":[]}`))
	f.Add([]byte(`{"events":[{"action":"delete","target":{"repository":"a/b"}}]}`))
	f.Add([]byte(`{"events":null}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		events, err := ParseEvents(body)
		if err != nil {
			if events != nil {
				t.Errorf("events %v with error %v", events, err)
			}
			return
		}
		for _, e := range events {
			_ = e.Changes()
		}
		// The handler never panics and answers 200 or 400 to any body.
		l, nerr := New(Options{Generate: generator.Options{Source: "http://x", Out: t.TempDir()}})
		if nerr != nil {
			t.Fatal(nerr)
		}
		code := post(t, l.Handler(), string(body), EventsMediaTypeV1, "")
		if code != 200 && code != 400 {
			t.Errorf("status: got %d, want 200 or 400", code)
		}
	})
}
