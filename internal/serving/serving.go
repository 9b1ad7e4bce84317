// Package serving is the serve-and-drain lifecycle of regmirror's long-running commands
// (serve, demo and listen): HTTP servers and background jobs run until the context is done or
// one of them fails; then the servers stop accepting and let the requests in flight finish
// within a bound, and the jobs are stopped and waited for.
package serving

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"
)

// Server is one HTTP server on its listener.
type Server struct {
	HTTP     *http.Server
	Listener net.Listener
	// TLS serves HTTPS with HTTP.TLSConfig's certificates.
	TLS bool
}

// Config is what Run runs.
type Config struct {
	Servers []Server
	// Jobs run beside the servers with a context that ends with ctx, or after the drain when
	// a server or job failed; Run waits for them. A job's error ends the serving as a failed
	// server's does.
	Jobs []func(context.Context) error
	// DrainTimeout bounds the drain (default 30s).
	DrainTimeout time.Duration
	// OnDrain, when set, is called once ctx is done, before the drain (to log it).
	OnDrain func()
}

// Run serves until ctx is done or a server or job fails, then drains. It returns nil after a
// clean stop, else the first error: a server's ("serving: ..."), a job's (as it is) or the
// drain's ("draining: ...").
func Run(ctx context.Context, c Config) error {
	if c.DrainTimeout <= 0 {
		c.DrainTimeout = 30 * time.Second
	}
	failed := make(chan error, len(c.Servers))
	for _, s := range c.Servers {
		go func() {
			var err error
			if s.TLS {
				err = s.HTTP.ServeTLS(s.Listener, "", "")
			} else {
				err = s.HTTP.Serve(s.Listener)
			}
			failed <- fmt.Errorf("serving: %w", err)
		}()
	}
	jobCtx, stopJobs := context.WithCancel(ctx)
	defer stopJobs()
	jobErrs := make(chan error, len(c.Jobs))
	var jobs sync.WaitGroup
	for _, job := range c.Jobs {
		jobs.Go(func() {
			if err := job(jobCtx); err != nil {
				jobErrs <- err
			}
		})
	}

	var first error
	select {
	case <-ctx.Done():
		if c.OnDrain != nil {
			c.OnDrain()
		}
	case first = <-failed:
	case first = <-jobErrs:
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.DrainTimeout)
	defer cancel()
	for _, s := range c.Servers {
		if err := s.HTTP.Shutdown(sctx); err != nil && first == nil {
			first = fmt.Errorf("draining: %w", err)
		}
	}
	stopJobs()
	jobs.Wait()
	if first == nil {
		select {
		case first = <-jobErrs:
		default:
		}
	}
	return first
}
