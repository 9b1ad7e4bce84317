package redirector

import (
	"bufio"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/regmirror/regmirror/layout"
)

// BenchmarkWrk measures over loopback with wrk, side by side in one run and alternating, the
// redirector and a bare net/http handler writing the same prepared answer: manifest GET by tag
// and blob 307. It reports requests per second, the ratio (target ≥ 0.8) and p50/p99 latency.
// It is skipped without wrk. WRK_DURATION (default 3s) and WRK_CONNECTIONS (default 32) tune it;
// WRK_ACCESSLOG=1 turns the access log on (JSON, into a buffer, as regmirror serve writes it).
func BenchmarkWrk(b *testing.B) {
	wrk, err := exec.LookPath("wrk")
	if err != nil {
		b.Skip("wrk not installed")
	}
	dur := envOr("WRK_DURATION", "3s")
	conns := envOr("WRK_CONNECTIONS", "32")
	opts := Options{}
	if os.Getenv("WRK_ACCESSLOG") != "" { // as regmirror serve logs: JSON lines into a buffer
		opts.AccessLog = slog.New(slog.NewJSONHandler(bufio.NewWriterSize(io.Discard, 64<<10), nil))
	}
	s, dm := benchServer(b, func(m *layout.Meta, _ *demo) { addMirrors(m, 1) }, opts)
	body := dm.manifests[dm.httpd]
	d := dm.httpd.String()
	bareManifest := bareAnswer(200, map[string][]string{
		"Docker-Distribution-Api-Version": {"registry/2.0"}, "X-Content-Type-Options": {"nosniff"},
		"Content-Type": {mtDockerImage}, "Docker-Content-Digest": {d}, "Etag": {`"` + d + `"`},
		"Content-Length": {strconv.Itoa(len(body))}, "Cache-Control": {"public, max-age=60"}, "Vary": {"Accept"},
	}, body)
	bareRedirect := bareAnswer(307, map[string][]string{
		"Docker-Distribution-Api-Version": {"registry/2.0"}, "X-Content-Type-Options": {"nosniff"},
		"Location": {"https://de2.example/pub/" + layout.BlobPath(dm.baseLayer)}, "Docker-Content-Digest": {dm.baseLayer.String()},
		"Cache-Control": {"private, no-store"}, "Content-Length": {"0"},
	}, nil)
	serve := func(h http.Handler) string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		srv := &http.Server{Handler: h, ReadHeaderTimeout: readHeaderTimeout, IdleTimeout: idleTimeout, MaxHeaderBytes: maxHeaderBytes}
		go srv.Serve(ln)
		b.Cleanup(func() { srv.Close() })
		return "http://" + ln.Addr().String()
	}
	red, bare1, bare2 := serve(s), serve(bareManifest), serve(bareRedirect)
	type target struct{ name, url string }
	cases := []struct {
		name       string
		full, bare target
	}{
		{"manifest", target{"redirector", red + "/v2/fedora/httpd/manifests/latest"}, target{"bare", bare1 + "/v2/fedora/httpd/manifests/latest"}},
		{"redirect", target{"redirector", red + "/v2/fedora/blobs/" + dm.baseLayer.String()}, target{"bare", bare2 + "/v2/fedora/blobs/" + dm.baseLayer.String()}},
	}
	for _, c := range cases {
		var rps [2][]float64
		var p50, p99 [2]time.Duration
		for round := range 2 {
			for i, t := range []target{c.full, c.bare} {
				if round == 1 {
					i = 1 - i // alternate the order
					t = []target{c.full, c.bare}[i]
				}
				r, l50, l99, err := runWrk(wrk, t.url, dur, conns)
				if err != nil {
					b.Fatal(err)
				}
				rps[i] = append(rps[i], r)
				p50[i], p99[i] = max(p50[i], l50), max(p99[i], l99)
			}
		}
		full, bare := mean(rps[0]), mean(rps[1])
		b.ReportMetric(full, c.name+"-rps")
		b.ReportMetric(bare, c.name+"-bare-rps")
		b.ReportMetric(full/bare, c.name+"-ratio")
		b.ReportMetric(float64(p50[0].Microseconds()), c.name+"-p50-µs")
		b.ReportMetric(float64(p99[0].Microseconds()), c.name+"-p99-µs")
		b.ReportMetric(float64(p99[1].Microseconds()), c.name+"-bare-p99-µs")
		b.Logf("%s: redirector %.0f req/s (p50 %v, p99 %v), bare %.0f req/s (p50 %v, p99 %v): ratio %.2f",
			c.name, full, p50[0], p99[0], bare, p50[1], p99[1], full/bare)
	}
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func mean(xs []float64) float64 {
	var s float64
	for _, x := range xs {
		s += x
	}
	return s / float64(len(xs))
}

var (
	wrkRPS     = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)
	wrkLatency = regexp.MustCompile(`(?m)^\s+(50|99)%\s+([0-9.]+)(us|ms|s)`)
)

func runWrk(wrk, url, dur, conns string) (rps float64, p50, p99 time.Duration, err error) {
	out, err := exec.Command(wrk, "-t1", "-c"+conns, "-d"+dur, "--latency", url).CombinedOutput()
	if err != nil {
		return 0, 0, 0, fmt.Errorf("wrk: %v: %s", err, out)
	}
	m := wrkRPS.FindSubmatch(out)
	if m == nil {
		return 0, 0, 0, fmt.Errorf("wrk output without Requests/sec: %s", out)
	}
	rps, _ = strconv.ParseFloat(string(m[1]), 64)
	if strings.Contains(string(out), "Non-2xx or 3xx responses") {
		return 0, 0, 0, fmt.Errorf("wrk saw errors: %s", out)
	}
	for _, l := range wrkLatency.FindAllSubmatch(out, -1) {
		v, _ := strconv.ParseFloat(string(l[2]), 64)
		unit := map[string]time.Duration{"us": time.Microsecond, "ms": time.Millisecond, "s": time.Second}[string(l[3])]
		d := time.Duration(v * float64(unit))
		if string(l[1]) == "50" {
			p50 = d
		} else {
			p99 = d
		}
	}
	return rps, p50, p99, nil
}
