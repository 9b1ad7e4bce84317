package redirector

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// ServeConfig is how [Server.ListenAndServe] listens.
type ServeConfig struct {
	// Listen is the address of the registry API ("host:port", default ":5000").
	Listen string
	// TLSCert and TLSKey are PEM files; both set means HTTPS (with HTTP/2), none means HTTP.
	TLSCert, TLSKey string
	// MetricsListen, when set, serves Prometheus metrics at /metrics (and /healthz) there.
	MetricsListen string
	// ShutdownTimeout bounds the graceful drain once the context is done (default 30s).
	ShutdownTimeout time.Duration
	// ReadHeaderTimeout (default 10s) and IdleTimeout (default 120s) bound slow and idle
	// clients.
	ReadHeaderTimeout, IdleTimeout time.Duration
	// Ready, when set, is called with the bound addresses once listening (for tests and the
	// demo, which listen on port 0). metrics is nil without MetricsListen.
	Ready func(api, metrics net.Addr)
}

// Timeouts and limits against slow or hostile clients. There is no ReadTimeout (a pull
// request has no body, and on HTTP/1 it would cancel the context of a long blob download
// served from the tree) and no WriteTimeout (such a download may take long).
const (
	readHeaderTimeout = 10 * time.Second
	idleTimeout       = 120 * time.Second
	maxHeaderBytes    = 64 << 10
)

// ListenAndServe serves the registry API (and metrics) until ctx is done, then drains: it
// stops accepting, lets requests in flight finish within the shutdown timeout, and returns
// nil. It also runs the tree and GeoIP watcher ([Server.Run]). Errors (listening, loading the
// TLS key pair) are returned as one line.
func (s *Server) ListenAndServe(ctx context.Context, cfg ServeConfig) error {
	if cfg.Listen == "" {
		cfg.Listen = ":5000"
	}
	if cfg.ShutdownTimeout <= 0 {
		cfg.ShutdownTimeout = 30 * time.Second
	}
	if cfg.ReadHeaderTimeout <= 0 {
		cfg.ReadHeaderTimeout = readHeaderTimeout
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = idleTimeout
	}
	if (cfg.TLSCert == "") != (cfg.TLSKey == "") {
		return errors.New("TLS needs both --tls-cert and --tls-key")
	}
	var tlsConf *tls.Config
	if cfg.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
		if err != nil {
			return fmt.Errorf("loading TLS certificate: %w", err)
		}
		tlsConf = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}

	errLog := slog.NewLogLogger(s.log.Handler(), slog.LevelWarn)
	api := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		IdleTimeout:       cfg.IdleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		TLSConfig:         tlsConf,
		ErrorLog:          errLog,
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", cfg.Listen, err)
	}
	servers := []*http.Server{api}
	var mln net.Listener
	if cfg.MetricsListen != "" {
		mln, err = net.Listen("tcp", cfg.MetricsListen)
		if err != nil {
			ln.Close()
			return fmt.Errorf("listening for metrics on %s: %w", cfg.MetricsListen, err)
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", s.MetricsHandler())
		mux.HandleFunc("/healthz", s.serveHealth)
		servers = append(servers, &http.Server{
			Handler:           mux,
			ReadHeaderTimeout: readHeaderTimeout,
			IdleTimeout:       idleTimeout,
			MaxHeaderBytes:    maxHeaderBytes,
			ErrorLog:          errLog,
		})
	}

	scheme := "http"
	if tlsConf != nil {
		scheme = "https"
	}
	s.log.Info("serving", "listen", ln.Addr().String(), "scheme", scheme, "metrics", addrString(mln),
		"generation", s.Generation(), "regional_manifests", s.opts.RegionalManifests)
	if cfg.Ready != nil {
		var ma net.Addr
		if mln != nil {
			ma = mln.Addr()
		}
		cfg.Ready(ln.Addr(), ma)
	}

	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	go s.Run(watchCtx)

	errc := make(chan error, len(servers))
	go func() {
		if tlsConf != nil {
			errc <- api.ServeTLS(ln, "", "")
		} else {
			errc <- api.Serve(ln)
		}
	}()
	if mln != nil {
		go func() { errc <- servers[1].Serve(mln) }()
	}

	var serveErr error
	select {
	case <-ctx.Done():
		s.log.Info("draining: no new connections, waiting for requests in flight", "timeout", cfg.ShutdownTimeout)
	case serveErr = <-errc:
		serveErr = fmt.Errorf("serving: %w", serveErr)
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.ShutdownTimeout)
	defer cancel()
	for _, srv := range servers {
		if err := srv.Shutdown(sctx); err != nil && serveErr == nil {
			serveErr = fmt.Errorf("draining: %w", err)
		}
	}
	if serveErr == nil {
		s.log.Info("stopped")
	}
	return serveErr
}

func addrString(ln net.Listener) string {
	if ln == nil {
		return ""
	}
	return ln.Addr().String()
}
