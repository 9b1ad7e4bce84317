package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/regmirror/regmirror/generator"
	"github.com/regmirror/regmirror/internal/listen"
	"github.com/spf13/pflag"
)

const listenSynopsis = "listen --source URL --out DIR [--listen ADDR] [--debounce D] [--secret-file FILE] [--state-dir DIR] [generate's flags]"

// listenRegistrySnippet is what to paste into docker-distribution's config.yml.
const listenRegistrySnippet = `
Point the source registry's notifications at this listener (docker-distribution config.yml;
the Authorization line only with --secret-file, holding the same token):

  notifications:
    endpoints:
      - name: regmirror
        url: http://HOST:PORT/events
        headers:
          Authorization: [Bearer TOKEN]
        timeout: 5s
        threshold: 5
        backoff: 10s
        ignore:
          mediatypes:
            - application/octet-stream
          actions:
            - pull

A push of a manifest (or a delete) in a published repository schedules a full regeneration
once no further event arrived for --debounce; runs never overlap, and a request not yet served
is kept in the state file (--state-dir) across restarts. GET /healthz reports the state.
`

func runListen(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("listen", listenSynopsis, stderr)
	var (
		o          generator.Options
		addr       string
		debounce   time.Duration
		secretFile string
		stateDir   string
	)
	fs.StringVar(&addr, "listen", "127.0.0.1:8090", "address to receive notifications on (POST /events, GET /healthz)")
	fs.DurationVar(&debounce, "debounce", listen.DefaultDebounce, "quiet window: regenerate once no event arrived for this long")
	fs.StringVar(&secretFile, "secret-file", "", "`FILE` holding a token the registry must send as 'Authorization: Bearer TOKEN'")
	fs.StringVar(&stateDir, "state-dir", "", "`DIR` for the state file (default $STATE_DIRECTORY, else the tree's regmirror/ directory)")
	fs.StringVar(&o.Source, "source", "", "source registry base `URL`, http:// or https://")
	fs.StringVar(&o.Out, "out", "", "the tree's root `DIR` (created if missing)")
	fs.StringArrayVar(&o.Repos, "repo", nil, "publish repositories matching `GLOB` ('*' within a path segment, '**' across); repeatable; default all")
	fs.StringVar(&o.MirrorsFile, "mirrors", "", "mirrors `FILE` describing the mirror network: YAML, or MirrorManager's mirrorlist cache with --mm-directory")
	fs.StringVar(&o.MMDirectory, "mm-directory", "", "the tree's directory in MirrorManager (`PATH`, like pub/containers) when --mirrors is its mirrorlist cache")
	fs.IntVar(&o.MinMirrors, "min-mirrors", 0, "widen regional mirror lists tier by tier to at least `N` mirrors (default: the previous generation's, else 5)")
	fs.IntVar(&o.Jobs, "jobs", generator.DefaultJobs, "concurrent blob transfers (small requests run 4x as many)")
	fs.DurationVar(&o.GCGrace, "gc-grace", generator.DefaultGCGrace, "delete a blob only once unreferenced for this long")
	fs.BoolVar(&o.Verify, "verify", false, "re-hash blobs already in the tree instead of trusting their size")
	fs.BoolVar(&o.VerifyLayers, "verify-layers", false, "decompress each new layer and check it against the image config's diff_ids")
	fs.BoolVar(&o.InsecureSkipTLSVerify, "insecure-skip-tls-verify", false, "accept any TLS certificate from the source")
	fs.StringVar(&o.CAFile, "ca-file", "", "trust the PEM certificates in `FILE` for the source, besides the system's")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: regmirror %s\n\n%s%s", listenSynopsis, fs.FlagUsages(), listenRegistrySnippet)
		fmt.Fprintln(stderr, "\nRegistry credentials come from REGISTRY_AUTH_FILE or the docker config, as for generate.")
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return err
		}
		return fmt.Errorf("listen: %w (see 'regmirror listen --help')", err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("listen: unexpected argument %q (see 'regmirror listen --help')", fs.Arg(0))
	}
	if o.Source == "" {
		return errors.New("listen: --source is required, e.g. --source http://localhost:5000")
	}
	if o.Out == "" {
		return errors.New("listen: --out is required: the tree's root directory")
	}
	if o.Jobs < 1 {
		return fmt.Errorf("listen: --jobs %d: want at least 1", o.Jobs)
	}
	if o.GCGrace <= 0 {
		return fmt.Errorf("listen: --gc-grace %s: want a positive duration such as 168h", o.GCGrace)
	}
	if debounce <= 0 {
		return fmt.Errorf("listen: --debounce %s: want a positive duration such as 5s", debounce)
	}
	if stateDir == "" {
		stateDir = os.Getenv("STATE_DIRECTORY")
		// systemd may list several directories, colon-separated.
		stateDir, _, _ = strings.Cut(stateDir, ":")
	}
	var secret string
	if secretFile != "" {
		b, err := os.ReadFile(secretFile)
		if err != nil {
			return fmt.Errorf("listen: reading --secret-file: %w", err)
		}
		secret = strings.TrimSpace(string(b))
		secret = strings.TrimPrefix(secret, "Bearer ")
		if secret == "" {
			return fmt.Errorf("listen: --secret-file %s is empty: put a random token in it (e.g. openssl rand -hex 32)", secretFile)
		}
	}
	o.Log = stderr
	l, err := listen.New(listen.Options{
		Generate: o,
		Debounce: debounce,
		StateDir: stateDir,
		Secret:   secret,
		Log:      stderr,
	})
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen: %w (is another listener running? choose another --listen)", err)
	}
	srv := &http.Server{
		Handler:           l.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
	}
	fmt.Fprintf(stderr, "listen: notifications at http://%s/events; tree %s; state %s\n", ln.Addr(), o.Out, l.StatePath())
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	loopCtx, stopLoop := context.WithCancel(ctx)
	defer stopLoop()
	loopErr := make(chan error, 1)
	go func() { loopErr <- l.Run(loopCtx) }()

	var firstErr error
	select {
	case <-ctx.Done():
		fmt.Fprintln(stderr, "listen: stopping (a run in progress finishes first)")
	case err := <-serveErr:
		firstErr = fmt.Errorf("listen: serving: %w", err)
	case err := <-loopErr:
		firstErr = fmt.Errorf("listen: %w", err)
		loopErr <- nil
	}
	shutCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	_ = srv.Shutdown(shutCtx)
	stopLoop()
	if err := <-loopErr; err != nil && firstErr == nil {
		firstErr = fmt.Errorf("listen: %w", err)
	}
	return firstErr
}
