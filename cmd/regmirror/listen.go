package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/regmirror/regmirror/generator"
	"github.com/regmirror/regmirror/internal/listen"
	"github.com/regmirror/regmirror/internal/serving"
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
	addGeneratorFlags(fs, &o)
	logFormat := addLogFormatFlag(fs)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: regmirror %s\n\n%s%s", listenSynopsis, fs.FlagUsages(), listenRegistrySnippet)
		fmt.Fprintln(stderr, "\nRegistry credentials come from REGISTRY_AUTH_FILE or the docker config, as for generate.")
	}
	if err := parseFlags("listen", fs, args); err != nil {
		return err
	}
	if err := checkGeneratorFlags("listen", fs, &o); err != nil {
		return err
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
	logger, err := newLogger("listen", *logFormat, stderr)
	if err != nil {
		return err
	}
	o.Logger = logger.With("run", "generate")
	l, err := listen.New(listen.Options{
		Generate: o,
		Debounce: debounce,
		StateDir: stateDir,
		Secret:   secret,
		Logger:   logger,
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
	logger.Info("listening", "events", "http://"+ln.Addr().String()+"/events", "tree", o.Out, "state", l.StatePath())
	err = serving.Run(ctx, serving.Config{
		Servers:      []serving.Server{{HTTP: srv, Listener: ln}},
		Jobs:         []func(context.Context) error{l.Run},
		DrainTimeout: 10 * time.Second,
		OnDrain:      func() { logger.Info("stopping (a run in progress finishes first)") },
	})
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	return nil
}
