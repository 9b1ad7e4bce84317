package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/regmirror/regmirror/internal/batch"
	"github.com/regmirror/regmirror/redirector"
)

const serveSynopsis = "serve --tree DIR [--listen ADDR] [--geoip FILE] [--asn-db FILE] [--trusted-proxy CIDR]... [flags]"

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("serve", serveSynopsis, stderr)
	tree := fs.String("tree", "", "the tree to serve (required)")
	listen := fs.String("listen", ":5000", "address to serve the registry API on")
	geoip := fs.String("geoip", "", "GeoIP database (MaxMind GeoIP2/GeoLite2 Country or City, DB-IP lite, or a flat country_code MMDB); reloaded when it changes")
	asnDB := fs.String("asn-db", "", "ASN database (GeoLite2-ASN MMDB: autonomous_system_number): clients of an AS a mirror lists go to it before their country's mirrors; reloaded when it changes")
	trusted := fs.StringArray("trusted-proxy", nil, "CIDR of a proxy or CDN whose X-Forwarded-For is believed (repeatable)")
	countryHeader := fs.String("country-header", "", "header holding the client's ISO country code, set by a CDN (honoured from trusted proxies only)")
	regional := fs.Bool("regional-manifests", false, "serve tag requests the client's region's manifest variant (descriptor urls at the region's mirrors)")
	tagMaxAge := fs.Duration("tag-max-age", redirector.DefaultTagMaxAge, "how long shared caches may keep answers about tags (0: no caching)")
	tlsCert := fs.String("tls-cert", "", "TLS certificate (PEM); with --tls-key serves HTTPS and HTTP/2")
	tlsKey := fs.String("tls-key", "", "TLS private key (PEM)")
	metricsListen := fs.String("metrics-listen", "", "address to serve Prometheus metrics (/metrics) and /healthz on")
	logFormat := addLogFormatFlag(fs)
	accessLog := fs.Bool("access-log", true, "log one line per request")
	hidePrivate := fs.Bool("status-hide-private", false, "leave private mirrors off the status page (GET /, /status.json), which otherwise shows them by name only")
	probeInterval := fs.Duration("probe-interval", redirector.DefaultProbeInterval, "how often each mirror is probed (±20%), to take a failing one out of rotation between crawls; 0 turns the probes off")
	probeTimeout := fs.Duration("probe-timeout", redirector.DefaultProbeTimeout, "time limit of one probe (shorter than 0.8 × --probe-interval)")
	probeFailures := fs.Int("probe-failures", redirector.DefaultProbeFailures, "consecutive failed probes that take a mirror out of rotation")
	probeSuccesses := fs.Int("probe-successes", redirector.DefaultProbeSuccesses, "consecutive good probes that bring it back")
	probeJobs := fs.Int("probe-concurrency", redirector.DefaultProbeConcurrency, "probes in flight at most")
	replica := fs.String("replica", "", "this server's name in the probes' User-Agent (default: the host name)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("serve: unexpected argument %q (flags only; see --help)", fs.Arg(0))
	}
	if *tree == "" {
		return errors.New("serve: --tree is required")
	}
	prefixes, err := parseTrustedProxies(*trusted)
	if err != nil {
		return fmt.Errorf("serve: --trusted-proxy: %w", err)
	}
	if *tagMaxAge < 0 {
		return errors.New("serve: --tag-max-age must not be negative")
	}
	headroom, stopHeadroom := context.WithCancel(ctx)
	defer stopHeadroom() // GOGC as it was once serve returns, an early error included
	keepHeapHeadroom(headroom, serveHeadroom)
	maxAge := *tagMaxAge
	if maxAge == 0 {
		maxAge = -1 // Options: negative means no caching
	}

	health, err := probeOptions(*probeInterval, *probeTimeout, *probeFailures, *probeSuccesses, *probeJobs, *replica)
	if err != nil {
		return err
	}

	logOut, err := newLineBuffer(stderr)
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	defer logOut.Close()
	logger, err := newLogger("serve", *logFormat, logOut)
	if err != nil {
		return err
	}
	opts := redirector.Options{
		Tree:               *tree,
		GeoIP:              *geoip,
		ASNDB:              *asnDB,
		TrustedProxies:     prefixes,
		CountryHeader:      *countryHeader,
		RegionalManifests:  *regional,
		TagMaxAge:          maxAge,
		Logger:             logger,
		HidePrivateMirrors: *hidePrivate,
		Health:             health,
	}
	if *accessLog {
		opts.AccessLog, err = redirector.NewAccessLog(logOut, *logFormat)
		if err != nil {
			return fmt.Errorf("serve: %w", err)
		}
		defer opts.AccessLog.Close() // before logOut's: the last lines go through it
	}
	srv, err := redirector.New(opts)
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	defer srv.Close()
	err = srv.ListenAndServe(ctx, redirector.ServeConfig{
		Listen:        *listen,
		TLSCert:       *tlsCert,
		TLSKey:        *tlsKey,
		MetricsListen: *metricsListen,
	})
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	return nil
}

// parseTrustedProxies reads the --trusted-proxy values: CIDRs or addresses, comma-separated
// or repeated.
func parseTrustedProxies(values []string) ([]netip.Prefix, error) {
	var prefixes []netip.Prefix
	for _, t := range values {
		for _, c := range strings.Split(t, ",") {
			c = strings.TrimSpace(c)
			if c == "" {
				continue
			}
			p, err := parseCIDR(c)
			if err != nil {
				return nil, err
			}
			prefixes = append(prefixes, p)
		}
	}
	return prefixes, nil
}

// probeOptions checks the --probe-* flags and returns the health probes' options; replica ""
// is the host name.
func probeOptions(interval, timeout time.Duration, failures, successes, jobs int, replica string) (redirector.HealthOptions, error) {
	if interval < 0 || timeout <= 0 || failures < 1 || successes < 1 || jobs < 1 {
		return redirector.HealthOptions{}, errors.New("serve: --probe-interval must not be negative; --probe-timeout, --probe-failures, --probe-successes and --probe-concurrency must be positive")
	}
	if interval > 0 && float64(timeout) > 0.8*float64(interval) {
		return redirector.HealthOptions{}, fmt.Errorf("serve: --probe-timeout %v must be shorter than 0.8 × --probe-interval %v (probes of a mirror must not overlap)", timeout, interval)
	}
	if replica == "" {
		replica, _ = os.Hostname()
	}
	return redirector.HealthOptions{
		Off:         interval == 0,
		Interval:    interval,
		Timeout:     timeout,
		Failures:    failures,
		Successes:   successes,
		Concurrency: jobs,
		UserAgent:   probeUserAgent(replica),
	}, nil
}

// probeUserAgent names regmirror, the probe and the replica, so that a mirror's admin can
// tell the probes apart in the access log.
func probeUserAgent(replica string) string {
	ua := "regmirror-serve-probe/" + moduleVersion()
	if replica = strings.Map(func(r rune) rune {
		if r < 0x21 || r > 0x7e || r == '(' || r == ')' {
			return -1
		}
		return r
	}, replica); replica != "" {
		ua += " (replica " + replica + ")"
	}
	return ua
}

// parseCIDR accepts a CIDR or a single address.
func parseCIDR(s string) (netip.Prefix, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is neither a CIDR nor an address", s)
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// lineBuffer batches log lines to w, so that a log line costs a copy under a lock, not a
// write system call: the lines gathered are written every 100 ms, or as soon as 1 MiB waits,
// in one write, outside the lock the request path takes. A write is a system call that takes
// the goroutine's processor away for a while, whatever its size: a few large ones cost a busy
// server least. A write larger than 64 KiB goes to w as it is, after the lines waiting. At
// most 100 ms of lines (and the write in progress) are lost on a crash; Close writes the rest.
type lineBuffer struct {
	b *batch.Batcher
}

func newLineBuffer(w io.Writer) (*lineBuffer, error) {
	b, err := batch.New(100*time.Millisecond, 1<<20, 4<<20, func(p []byte) error {
		_, err := w.Write(p)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("starting the log: %w", err)
	}
	return &lineBuffer{b}, nil
}

func (b *lineBuffer) Write(p []byte) (int, error) {
	write := b.b.Append
	if len(p) > 64<<10 {
		write = b.b.Pass
	}
	if err := write(p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Close stops the flusher and writes what is left.
func (b *lineBuffer) Close() error { return b.b.Close() }
