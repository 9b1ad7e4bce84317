package listen

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/regmirror/regmirror/generator"
	"github.com/regmirror/regmirror/internal/trunc"
	"github.com/regmirror/regmirror/layout"
)

// Defaults for Options fields left zero.
const (
	DefaultDebounce   = 5 * time.Second
	DefaultMaxBackoff = 5 * time.Minute
	// StateFile is the state file's name inside the state directory.
	StateFile = "listen-state.json"
)

// RunFunc runs one generation; generator.Run by default.
type RunFunc func(ctx context.Context, o generator.Options) (*generator.Summary, error)

// Options configure a Listener.
type Options struct {
	// Generate is the template of every run. It is always a full run over Generate.Repos:
	// narrowing Repos to the pushed repository would publish a generation without the
	// others (the generator publishes exactly what Repos select). A run with nothing new
	// costs about one request per tag, so a full run after a push is cheap.
	Generate generator.Options
	// Run runs a generation; default generator.Run.
	Run RunFunc
	// Debounce is the quiet window: a run starts once no relevant event arrived for this long.
	Debounce time.Duration
	// StateDir holds the state file (a pending request that must survive a restart); default
	// the tree's regmirror/ directory.
	StateDir string
	// Secret, when non-empty, is required in the Authorization header of every notification
	// as "Bearer <Secret>" (distribution's endpoint "headers" setting sends it).
	Secret string
	// MaxBackoff bounds the wait before retrying a failed run (doubling from Debounce).
	MaxBackoff time.Duration
	// Logger receives one record per decision (nil discards).
	Logger *slog.Logger
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Status is what /healthz reports.
type Status struct {
	Pending    bool      `json:"pending"`
	Running    bool      `json:"running"`
	Runs       int       `json:"runs"`
	LastRun    time.Time `json:"lastRun,omitzero"`
	LastOK     time.Time `json:"lastOK,omitzero"`
	LastError  string    `json:"lastError,omitempty"`
	Generation uint64    `json:"generation,omitempty"`
	Failures   int       `json:"consecutiveFailures,omitempty"`
}

// state is the on-disk state file.
type state struct {
	Pending bool      `json:"pending"`
	Since   time.Time `json:"since,omitzero"`
}

// Listener is the notification endpoint and the loop that runs the generator.
type Listener struct {
	o     Options
	globs []*generator.Glob
	wake  chan struct{}

	mu        sync.Mutex
	seq, done uint64    // requests accepted; requests served by a finished run
	last      time.Time // last relevant event
	since     time.Time // first unserved request
	persisted bool      // the state file says pending
	retryAt   time.Time
	status    Status
}

// New checks o and returns a Listener. Nothing is started.
func New(o Options) (*Listener, error) {
	if o.Generate.Out == "" {
		return nil, errors.New("no tree: give Options.Generate.Out DIR")
	}
	if o.Generate.Source == "" {
		return nil, errors.New("no source registry: give Options.Generate.Source http://HOST:PORT or https://HOST")
	}
	if o.Generate.DryRun {
		return nil, errors.New("Options.Generate.DryRun makes no sense for a service")
	}
	if o.Run == nil {
		o.Run = generator.Run
	}
	if o.Debounce <= 0 {
		o.Debounce = DefaultDebounce
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = DefaultMaxBackoff
	}
	if o.StateDir == "" {
		o.StateDir = layout.NewTree(o.Generate.Out).Path(layout.MetaDir)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	l := &Listener{o: o, wake: make(chan struct{}, 1)}
	for _, p := range o.Generate.Repos {
		g, err := generator.CompileGlob(p)
		if err != nil {
			return nil, err
		}
		l.globs = append(l.globs, g)
	}
	return l, nil
}

// StatePath is the state file's path.
func (l *Listener) StatePath() string { return filepath.Join(l.o.StateDir, StateFile) }

// published reports whether repo is selected by the --repo globs.
func (l *Listener) published(repo string) bool {
	if len(l.globs) == 0 {
		return true
	}
	for _, g := range l.globs {
		if g.Match(repo) {
			return true
		}
	}
	return false
}

// Request schedules a run (after the quiet window), as a relevant event does.
func (l *Listener) Request() {
	l.mu.Lock()
	now := l.o.Now()
	l.seq++
	l.last = now
	if l.since.IsZero() {
		l.since = now
	}
	l.mu.Unlock()
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// Status returns the current status.
func (l *Listener) Status() Status {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.status
	s.Pending = l.seq > l.done
	return s
}

// Handler serves POST /events (notifications) and GET /healthz.
func (l *Listener) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/events", l.serveEvents)
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(l.Status())
	})
	return mux
}

func (l *Listener) serveEvents(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "POST notifications here", http.StatusMethodNotAllowed)
		return
	}
	if l.o.Secret != "" {
		want := "Bearer " + l.o.Secret
		if subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), []byte(want)) != 1 {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
	}
	if !acceptedContentType(r.Header.Get("Content-Type")) {
		http.Error(w, "want Content-Type "+EventsMediaTypeV1+", "+EventsMediaTypeV2+" or application/json", http.StatusUnsupportedMediaType)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			http.Error(w, "notification too large", http.StatusRequestEntityTooLarge)
			return
		}
		http.Error(w, "reading the notification failed", http.StatusBadRequest)
		return
	}
	events, err := ParseEvents(body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	relevant := 0
	for _, e := range events {
		if e.Changes() && l.published(e.Target.Repository) {
			relevant++
			l.o.Logger.Info("regeneration scheduled", "action", trunc.String(e.Action), "repository", trunc.String(e.Target.Repository),
				"tag", trunc.String(e.Target.Tag), "digest", trunc.String(e.Target.Digest))
		}
	}
	if relevant > 0 {
		l.Request()
	}
	w.WriteHeader(http.StatusOK)
}

// loadState reads the state file; a pending request from before a restart is scheduled.
func (l *Listener) loadState() error {
	b, err := os.ReadFile(l.StatePath())
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading the state file: %w", err)
	}
	var s state
	if err := json.Unmarshal(b, &s); err != nil {
		// A damaged state file must not stop the service: run once to be safe.
		l.o.Logger.Warn("state file unreadable: regenerating to be safe", "state", l.StatePath(), "err", err)
		s.Pending = true
	}
	if s.Pending {
		l.mu.Lock()
		l.seq++
		l.persisted = true
		l.since = s.Since
		// Run at once: the quiet window passed long ago.
		l.last = l.o.Now().Add(-l.o.Debounce)
		l.mu.Unlock()
		l.o.Logger.Info("a request queued before the restart: regenerating", "since", s.Since.Format(time.RFC3339))
	}
	return nil
}

func (l *Listener) writeState(s state) error {
	b, err := json.Marshal(s)
	if err != nil {
		return err
	}
	if err := layout.WriteFile(l.StatePath(), append(b, '\n')); err != nil {
		return fmt.Errorf("saving the state file: %w", err)
	}
	return nil
}

// Run is the scheduling loop: it persists requests, waits for the quiet window, runs the
// generator (never two at once) and retries failed runs with backoff. It returns when ctx is
// done, after letting a run in progress finish (a run is not interrupted by ctx: stopping the
// service must not waste a long transfer; the state file covers a kill).
func (l *Listener) Run(ctx context.Context) error {
	if err := os.MkdirAll(l.o.StateDir, 0o755); err != nil {
		return fmt.Errorf("creating the state directory: %w", err)
	}
	if err := l.loadState(); err != nil {
		return err
	}
	if _, err := layout.NewTree(l.o.Generate.Out).ReadStamp(); errors.Is(err, layout.ErrNoGeneration) && !l.Status().Pending {
		// A fresh deployment: publish what the source has now rather than wait for a push.
		l.o.Logger.Info("no generation yet: generating", "tree", l.o.Generate.Out)
		l.mu.Lock()
		l.seq++
		l.since = l.o.Now()
		l.last = l.o.Now().Add(-l.o.Debounce)
		l.mu.Unlock()
	}
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		l.mu.Lock()
		pending := l.seq > l.done
		persist := pending && !l.persisted
		since := l.since
		due := l.last.Add(l.o.Debounce)
		if l.retryAt.After(due) {
			due = l.retryAt
		}
		l.mu.Unlock()

		if persist {
			if err := l.writeState(state{Pending: true, Since: since}); err != nil {
				l.o.Logger.Warn("the request is served all the same, but would not survive a restart", "err", err)
			} else {
				l.mu.Lock()
				l.persisted = true
				l.mu.Unlock()
			}
		}
		if ctx.Err() != nil {
			return nil
		}
		if !pending {
			select {
			case <-ctx.Done():
				return nil
			case <-l.wake:
			}
			continue
		}
		if wait := due.Sub(l.o.Now()); wait > 0 {
			timer.Reset(wait)
			select {
			case <-ctx.Done():
				return nil
			case <-l.wake:
				if !timer.Stop() {
					<-timer.C
				}
			case <-timer.C:
			}
			continue
		}
		l.runOnce(ctx)
	}
}

// runOnce runs one generation for every request accepted so far.
func (l *Listener) runOnce(ctx context.Context) {
	l.mu.Lock()
	target := l.seq
	l.status.Running = true
	l.status.Runs++
	l.status.LastRun = l.o.Now()
	l.mu.Unlock()

	l.o.Logger.Info("regenerating", "tree", l.o.Generate.Out, "source", l.o.Generate.Source)
	sum, err := l.o.Run(context.WithoutCancel(ctx), l.o.Generate)
	var partial *generator.PartialError
	ok := err == nil || (errors.As(err, &partial) && partial.Published)

	l.mu.Lock()
	l.status.Running = false
	if sum != nil {
		l.status.Generation = sum.Generation
	}
	if ok {
		l.done = target
		l.retryAt = time.Time{}
		l.status.Failures = 0
		l.status.LastOK = l.o.Now()
		l.status.LastError = ""
		if err != nil {
			l.status.LastError = err.Error()
		}
	} else {
		l.status.Failures++
		l.status.LastError = err.Error()
		backoff := l.o.Debounce << min(l.status.Failures, 20)
		if backoff > l.o.MaxBackoff || backoff <= 0 {
			backoff = l.o.MaxBackoff
		}
		l.retryAt = l.o.Now().Add(backoff)
	}
	served := l.seq == l.done
	if served {
		l.since = time.Time{}
	}
	clear := served && l.persisted
	failures := l.status.Failures
	retryAt := l.retryAt
	l.mu.Unlock()

	switch {
	case err == nil:
		l.o.Logger.Info("published", "summary", sum.String())
	case ok:
		l.o.Logger.Warn("published with failures", "err", err)
	default:
		l.o.Logger.Error("run failed", "failures_in_a_row", failures, "retry_at", retryAt.Format(time.RFC3339), "err", err)
	}
	if clear {
		if err := l.writeState(state{Pending: false}); err != nil {
			l.o.Logger.Warn("a restart will regenerate once more", "err", err)
			return
		}
		l.mu.Lock()
		// The file now says nothing is pending; a request that arrived meanwhile is
		// persisted again by the loop.
		l.persisted = false
		l.mu.Unlock()
	}
}
