package redirector

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/regmirror/regmirror/internal/serving"
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
// served from the tree) and no WriteTimeout (such a download may take long). A request that
// announces a body is answered at once without reading it and its connection closed
// (refuseBody): nothing waits for bytes a client never sends.
const (
	readHeaderTimeout = 10 * time.Second
	idleTimeout       = 120 * time.Second
	maxHeaderBytes    = 64 << 10
)

// HTTP/2 limits (with --tls-cert), set explicitly rather than left to net/http's defaults.
// Requests carry no body, so the receive windows and frames are the protocol's minimum.
// MaxHeaderBytes bounds a request's header list on HTTP/2 too.
const (
	// H2MaxConcurrentStreams is the number of requests one connection may have in flight.
	H2MaxConcurrentStreams = 100
	// H2MaxReadFrameSize is the largest frame the server reads (the protocol's minimum).
	H2MaxReadFrameSize = 16 << 10
	// H2HeaderTableSize bounds the HPACK tables both ways (the protocol's default).
	H2HeaderTableSize = 4 << 10
	// H2ReceiveBufferPerConnection and H2ReceiveBufferPerStream are the flow-control
	// windows for request bodies, which this API refuses (the smallest net/http accepts).
	H2ReceiveBufferPerConnection = 64 << 10
	H2ReceiveBufferPerStream     = 16 << 10
	// H2WriteByteTimeout closes a connection on which nothing could be written for this long
	// (a client that stopped reading).
	H2WriteByteTimeout = idleTimeout
)

// http2Config is the HTTP/2 side of the API server.
func http2Config() *http.HTTP2Config {
	return &http.HTTP2Config{
		MaxConcurrentStreams:          H2MaxConcurrentStreams,
		MaxReadFrameSize:              H2MaxReadFrameSize,
		MaxDecoderHeaderTableSize:     H2HeaderTableSize,
		MaxEncoderHeaderTableSize:     H2HeaderTableSize,
		MaxReceiveBufferPerConnection: H2ReceiveBufferPerConnection,
		MaxReceiveBufferPerStream:     H2ReceiveBufferPerStream,
		WriteByteTimeout:              H2WriteByteTimeout,
	}
}

// hdrClose asks an HTTP/1 client to expect the connection to close after the answer.
var hdrClose = []string{"close"}

// aLongTimeAgo is a read deadline that has passed: reads fail at once.
var aLongTimeAgo = time.Unix(1, 0)

// refuseBody prepares the answer to a request that announces a body (Content-Length above 0,
// or chunked): none of this read-only API's requests has one, and net/http would otherwise
// wait, without a deadline, for up to 256 KiB of it after the handler. The body is not read:
// its read deadline is put in the past, and an HTTP/1 connection is closed after the answer
// (on HTTP/2 only the stream ends).
func refuseBody(w http.ResponseWriter, r *http.Request) {
	if r.ProtoMajor == 1 {
		w.Header()["Connection"] = hdrClose
	}
	_ = http.NewResponseController(w).SetReadDeadline(aLongTimeAgo)
}

// noBodies wraps the metrics handler with the API's refusal of request bodies.
func noBodies(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength != 0 {
			refuseBody(w, r)
			writeError(w, r, errBodyRefused, "")
			return
		}
		h.ServeHTTP(w, r)
	})
}

// ListenAndServe serves the registry API (and metrics) until ctx is done, then drains: it
// stops accepting, lets requests in flight finish within the shutdown timeout, and returns
// nil. It also runs the tree and GeoIP watcher ([Server.Run]). Errors (listening, loading the
// TLS key pair) are returned as one line.
func (s *Server) ListenAndServe(ctx context.Context, cfg ServeConfig) error {
	cfg.setDefaults()
	tlsConf, err := cfg.tlsConfig()
	if err != nil {
		return err
	}
	errLog := slog.NewLogLogger(s.log.Handler(), slog.LevelWarn)
	api := &http.Server{
		Handler:           s,
		ConnContext:       s.ConnContext,
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		IdleTimeout:       cfg.IdleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		TLSConfig:         tlsConf,
		HTTP2:             http2Config(),
		ErrorLog:          errLog,
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", cfg.Listen, err)
	}
	servers := []serving.Server{{HTTP: api, Listener: ln, TLS: tlsConf != nil}}
	var mln net.Listener
	if cfg.MetricsListen != "" {
		mln, err = net.Listen("tcp", cfg.MetricsListen)
		if err != nil {
			ln.Close()
			return fmt.Errorf("listening for metrics on %s: %w", cfg.MetricsListen, err)
		}
		servers = append(servers, serving.Server{HTTP: s.metricsServer(errLog), Listener: mln})
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

	err = serving.Run(ctx, serving.Config{
		Servers: servers,
		Jobs: []func(context.Context) error{func(ctx context.Context) error {
			s.Run(ctx) // the tree and GeoIP watcher
			return nil
		}},
		DrainTimeout: cfg.ShutdownTimeout,
		OnDrain: func() {
			s.log.Info("draining: no new connections, waiting for requests in flight", "timeout", cfg.ShutdownTimeout)
		},
	})
	if err == nil {
		s.log.Info("stopped")
	}
	return err
}

func (cfg *ServeConfig) setDefaults() {
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
}

// tlsConfig loads the key pair; nil without TLS.
func (cfg *ServeConfig) tlsConfig() (*tls.Config, error) {
	if (cfg.TLSCert == "") != (cfg.TLSKey == "") {
		return nil, errors.New("TLS needs both ServeConfig.TLSCert and ServeConfig.TLSKey")
	}
	if cfg.TLSCert == "" {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
	if err != nil {
		return nil, fmt.Errorf("loading TLS certificate: %w", err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

// metricsServer serves /metrics and /healthz.
func (s *Server) metricsServer(errLog *log.Logger) *http.Server {
	mux := http.NewServeMux()
	mux.Handle("/metrics", s.MetricsHandler())
	mux.HandleFunc("/healthz", s.serveHealth)
	return &http.Server{
		Handler:           noBodies(mux),
		ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          errLog,
	}
}

func addrString(ln net.Listener) string {
	if ln == nil {
		return ""
	}
	return ln.Addr().String()
}
