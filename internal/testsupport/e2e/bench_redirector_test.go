package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/regmirror/regmirror/internal/mirrors"
	"github.com/regmirror/regmirror/internal/testsupport/peers"
	"github.com/regmirror/regmirror/internal/testsupport/testimages"
	"github.com/regmirror/regmirror/layout"
)

// The redirector's quality bars (issues 3 and 4, design.md "Quality bars"), measured with wrk
// over loopback against other servers in one run, on one machine, with one wrk setting.
// Nothing is asserted; everything is reported as metrics and as a table to paste into a note.
//
//	BenchmarkWrkManifest      GET /v2/fedora/manifests/42 (the demo's OCI index) with an Accept
//	                          header listing the OCI and Docker manifest types
//	BenchmarkWrkBlobRedirect  GET of a demo layer answered with a 307 to the one healthy mirror
//	BenchmarkTreeLoad         load time, VmRSS and VmHWM of `regmirror serve` on 10,000
//	                          manifests in 10 regions (issue 3) and with 50 mirrors in 30
//	                          countries (issue 4)
//	BenchmarkServeScale       (bench_servescale_test.go) the same, and a switch, at issue 10's
//	                          scale: 90k manifests, 1M with REGMIRROR_SCALE_1M=1
//
// The wrk contenders, each a separate process on loopback:
//
//	regmirror      `regmirror serve --access-log=false` on a tree generated from the demo images
//	regmirror+log  the same with the access log on (text lines into its log file)
//	bare           a net/http server (this test binary, TestWrkBenchBareHelper) writing the
//	               exact status, headers and body regmirror answered, captured beforehand: the
//	               runtime's floor
//	bare+500ns     the same, spending 500 ns of hot-cache work (calibrated at start) in the
//	               handler first: what a given amount of handler work costs in this setting,
//	               measured in the same run (bare+500ns/bare)
//	nginx          one worker; the manifest as a static file (open_file_cache off, sendfile on)
//	               with regmirror's Content-Type and headers by add_header; the 307 by `return
//	               307`; access log off; keepalive_requests raised so that, like Go's server, it
//	               keeps wrk's connections open
//	distribution   Debian's docker-registry (docker-distribution 2.8) holding the demo images,
//	               with Debian's default inmemory blob descriptor cache and no access log; for
//	               the 307, a second one on the same storage with the redirect storage middleware
//
// Each contender gets a 1 s warm-up, then WRKBENCH_ROUNDS rounds (default 5), the order
// rotating each round, of `wrk -t1 -cWRKBENCH_CONNECTIONS -dWRKBENCH_DURATION --latency`
// (defaults 32 and 3s): about 2 minutes a benchmark. The Go servers (regmirror with and
// without its log, bare, bare+500ns) are started afresh before each round, with a warm-up of
// their own: two identical processes differ by up to 4% under wrk (where their memory happens
// to land), consistently across rounds, so one process per contender for all rounds would put
// that in every ratio. req/s, p50 and p99 are the medians over the rounds; a ratio is the
// median of the rounds' ratios (the two contenders ran within seconds of each other), steadier
// than a ratio of medians on a machine whose load changes. Each run
// also counts the CPU time the server's processes used (/proc/<pid>/stat of its process
// group, nginx's worker included): requests per CPU-second is what the server would do on a
// core of its own, and the anchors are also given as ratios of those, which other load on a
// shared machine disturbs far less than req/s.
//
// On a machine with 4 or more CPUs the servers are pinned (taskset) to CPUs 0,1 with
// GOMAXPROCS=2 and wrk to CPU 2; with 2 or 3 CPUs the servers get CPU 0 (GOMAXPROCS=1) and
// wrk CPU 1, so that every server, nginx's one worker included, has one core to itself and
// wrk never competes with it. WRKBENCH_CPUS="SERVERS:CLIENT" (e.g. "0,1:2") chooses the CPUs,
// "off" pins nothing (GOMAXPROCS=2).
//
// WRKBENCH_CONTENDERS (e.g. "regmirror,regmirror+log,bare") runs only the contenders named,
// and only the anchors between them: a quicker look at one ratio.
//
// Every contender's answer is checked before wrk runs: same status, Docker-Content-Digest,
// Content-Type and bytes as regmirror's (docker-distribution's 307 carries no
// Docker-Content-Digest, and nginx's a small HTML body).
//
// Anchors (design.md): regmirror/bare >= 0.8 (both); regmirror/nginx >= 0.7 (manifest) and
// >= 0.45 (307); docker-distribution does about 1/45 of nginx, so regmirror/distribution is
// expected around 30-45.

const wrkBenchAccept = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, " +
	"application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json"

// wrkBenchSettings is how every wrk run of one benchmark is made.
type wrkBenchSettings struct {
	wrk, taskset           string
	serverCPUs, clientCPUs string // empty: not pinned
	procs                  int    // GOMAXPROCS of the Go servers
	duration, conns        string
	rounds                 int
	wrap                   []string // a command every server runs under (BenchmarkInstructions: callgrind)
	env                    []string // more environment for every server
}

func wrkBenchEnv(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// wrkBenchEnvInt is the positive number the environment variable k holds, def when unset; it
// fails the benchmark on anything else.
func wrkBenchEnvInt(b *testing.B, k string, def int) int {
	b.Helper()
	n, err := strconv.Atoi(wrkBenchEnv(k, strconv.Itoa(def)))
	if err != nil || n < 1 {
		b.Fatalf("%s=%q: want a positive number", k, os.Getenv(k))
	}
	return n
}

// wrkBenchSetup finds wrk and taskset (failing loudly without them) and decides the pinning.
func wrkBenchSetup(b *testing.B) wrkBenchSettings {
	b.Helper()
	needPeers(b)
	s := wrkBenchSettings{
		wrk:      peers.Require(b, "wrk"),
		duration: wrkBenchEnv("WRKBENCH_DURATION", "3s"),
		conns:    wrkBenchEnv("WRKBENCH_CONNECTIONS", "32"),
	}
	s.rounds = wrkBenchEnvInt(b, "WRKBENCH_ROUNDS", 5)
	n := runtime.NumCPU()
	switch pin := os.Getenv("WRKBENCH_CPUS"); {
	case pin == "off":
		s.procs = min(n, 2)
	case pin != "":
		srv, cli, ok := strings.Cut(pin, ":")
		if !ok || srv == "" || cli == "" {
			b.Fatalf("WRKBENCH_CPUS=%q: want SERVERCPUS:CLIENTCPUS, e.g. 0,1:2, or off", pin)
		}
		s.serverCPUs, s.clientCPUs, s.procs = srv, cli, len(strings.Split(srv, ","))
	case n >= 4:
		s.serverCPUs, s.clientCPUs, s.procs = "0,1", "2", 2
	case n >= 2:
		s.serverCPUs, s.clientCPUs, s.procs = "0", "1", 1
	default:
		s.procs = 1
	}
	if s.serverCPUs != "" {
		s.taskset = peers.Require(b, "taskset")
	}
	return s
}

func (s wrkBenchSettings) String() string {
	pin := "not pinned"
	if s.serverCPUs != "" {
		pin = fmt.Sprintf("servers on CPU %s, wrk on CPU %s", s.serverCPUs, s.clientCPUs)
	}
	return fmt.Sprintf("wrk -t1 -c%s -d%s --latency, %d rounds (rotating order, medians), %s, Go servers GOMAXPROCS=%d, %d CPUs",
		s.conns, s.duration, s.rounds, pin, s.procs, runtime.NumCPU())
}

// serverCmd is bin args… pinned to the server CPUs (taskset execs bin: the pid is bin's), with
// GOMAXPROCS set for Go servers, run under s.wrap when set.
func (s wrkBenchSettings) serverCmd(bin string, args ...string) *exec.Cmd {
	var cmd *exec.Cmd
	if len(s.wrap) > 0 {
		args = append([]string{bin}, args...)
		bin, args = s.wrap[0], append(slices.Clone(s.wrap[1:]), args...)
	}
	if s.serverCPUs != "" {
		cmd = exec.Command(s.taskset, append([]string{"-c", s.serverCPUs, bin}, args...)...)
	} else {
		cmd = exec.Command(bin, args...)
	}
	cmd.Env = append(append(os.Environ(), "GOMAXPROCS="+strconv.Itoa(s.procs)), s.env...)
	return cmd
}

// wrkBenchRun is one wrk run against url.
type wrkBenchRun struct {
	rps      float64
	p50, p99 time.Duration
	// perCPU is requests per CPU-second the server's processes used during the run: what it
	// would do on a core of its own, whatever else the machine runs.
	perCPU float64
	// faultsPerK is the server's minor page faults per 1,000 answers during the run.
	faultsPerK float64
}

var (
	wrkBenchRPSRe      = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)
	wrkBenchRequestsRe = regexp.MustCompile(`(\d+) requests in`)
	wrkBenchLatencyRe  = regexp.MustCompile(`(?m)^\s+(50|99)%\s+([0-9.]+)(us|ms|s|m)\s*$`)
)

func (s wrkBenchSettings) run(b *testing.B, c wrkBenchContender, duration string) wrkBenchRun {
	b.Helper()
	url := c.url()
	args := []string{"-t1", "-c" + s.conns, "-d" + duration, "--latency", "-H", "Accept: " + wrkBenchAccept, url}
	bin := s.wrk
	if s.clientCPUs != "" {
		args = append([]string{"-c", s.clientCPUs, s.wrk}, args...)
		bin = s.taskset
	}
	cpu0, faults0 := wrkBenchGroupUsage(b, c.srv.pgid())
	out, err := exec.Command(bin, args...).CombinedOutput()
	cpu, faults := wrkBenchGroupUsage(b, c.srv.pgid())
	cpu, faults = cpu-cpu0, faults-faults0
	if err != nil {
		b.Fatalf("wrk %s: %v\n%s", url, err, out)
	}
	text := string(out)
	if strings.Contains(text, "Non-2xx or 3xx responses") || strings.Contains(text, "Socket errors") {
		b.Fatalf("wrk %s saw errors:\n%s", url, text)
	}
	m := wrkBenchRPSRe.FindStringSubmatch(text)
	if m == nil {
		b.Fatalf("wrk %s: no Requests/sec in its output:\n%s", url, text)
	}
	var r wrkBenchRun
	r.rps, _ = strconv.ParseFloat(m[1], 64)
	units := map[string]time.Duration{"us": time.Microsecond, "ms": time.Millisecond, "s": time.Second, "m": time.Minute}
	for _, l := range wrkBenchLatencyRe.FindAllStringSubmatch(text, -1) {
		v, _ := strconv.ParseFloat(l[2], 64)
		d := time.Duration(v * float64(units[l[3]]))
		if l[1] == "50" {
			r.p50 = d
		} else {
			r.p99 = d
		}
	}
	if r.p50 == 0 || r.p99 == 0 {
		b.Fatalf("wrk %s: no 50%%/99%% latency in its output:\n%s", url, text)
	}
	if m := wrkBenchRequestsRe.FindStringSubmatch(text); m != nil && cpu > 0 {
		n, _ := strconv.ParseFloat(m[1], 64)
		r.perCPU = n / cpu.Seconds()
		r.faultsPerK = float64(faults) * 1000 / n
	}
	return r
}

// wrkBenchGroupCPU is the user and system CPU time used so far by the processes of process
// group pgid (peers.Start gives each server its own; nginx's worker is in its master's).
func wrkBenchGroupCPU(b *testing.B, pgid int) time.Duration {
	b.Helper()
	cpu, _ := wrkBenchGroupUsage(b, pgid)
	return cpu
}

// wrkBenchGroupUsage is wrkBenchGroupCPU and the minor page faults of the same processes so
// far: a fault is the first touch of a page the process had not used (or had given back), which
// costs 12 to 14 µs on the virtual machines these benchmarks ran on (docs/benchmarks.md).
func wrkBenchGroupUsage(b *testing.B, pgid int) (time.Duration, int64) {
	b.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		b.Fatal(err)
	}
	var ticks, faults int64
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		raw, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue // gone meanwhile
		}
		// pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime
		i := bytes.LastIndexByte(raw, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(raw[i+1:]))
		if len(f) < 13 || f[2] != strconv.Itoa(pgid) {
			continue
		}
		u, _ := strconv.ParseInt(f[11], 10, 64)
		sys, _ := strconv.ParseInt(f[12], 10, 64)
		minflt, _ := strconv.ParseInt(f[7], 10, 64)
		ticks += u + sys
		faults += minflt
	}
	return time.Duration(ticks) * time.Second / 100, faults // USER_HZ
}

// wrkBenchServer is a started server: its URL and process (the leader of its process group).
type wrkBenchServer struct {
	url  string
	proc *peers.Process
}

func (srv wrkBenchServer) pgid() int { return srv.proc.Cmd.Process.Pid }

// wrkBenchContender is one server under wrk.
type wrkBenchContender struct {
	name, path string
	srv        *wrkBenchServer                 // the process running (replaced each round when fresh is set)
	fresh      func(*testing.B) wrkBenchServer // starts another process of this server; nil: one for every round
}

func (c wrkBenchContender) url() string { return c.srv.url + c.path }

func (srv wrkBenchServer) contender(name, path string) wrkBenchContender {
	return wrkBenchContender{name: name, path: path, srv: &srv}
}

// wrkBenchFresh is a contender started by start, and started afresh before each round.
func wrkBenchFresh(b *testing.B, name, path string, start func(*testing.B) wrkBenchServer) wrkBenchContender {
	c := start(b).contender(name, path)
	c.fresh = start
	return c
}

// wrkBenchStats are a contender's medians over the rounds.
type wrkBenchStats struct {
	rps      float64
	p50, p99 time.Duration
	all      []float64 // req/s of every round, in round order (not the order within a round)
	perCPU   float64   // median requests per server CPU-second
	allCPU   []float64 // requests per CPU-second of every round
	faults   float64   // median minor page faults per 1,000 answers
}

func wrkBenchMedian[T float64 | time.Duration](xs []T) T {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// sideBySide warms every contender up, then runs the rounds, the order rotating, and returns
// each contender's medians.
func (s wrkBenchSettings) sideBySide(b *testing.B, cs []wrkBenchContender) map[string]wrkBenchStats {
	b.Helper()
	cs = wrkBenchChosen(cs)
	for _, c := range cs {
		s.run(b, c, "1s")
	}
	runs := map[string][]wrkBenchRun{}
	for round := range s.rounds {
		for _, c := range cs {
			if c.fresh != nil && round > 0 {
				c.srv.proc.Stop()
				*c.srv = c.fresh(b)
				s.run(b, c, "1s")
			}
		}
		for k := range cs {
			c := cs[(round+k)%len(cs)]
			runs[c.name] = append(runs[c.name], s.run(b, c, s.duration))
		}
	}
	stats := map[string]wrkBenchStats{}
	for name, rs := range runs {
		var rps, perCPU, faults []float64
		var p50, p99 []time.Duration
		for _, r := range rs {
			rps, p50, p99, perCPU = append(rps, r.rps), append(p50, r.p50), append(p99, r.p99), append(perCPU, r.perCPU)
			faults = append(faults, r.faultsPerK)
		}
		stats[name] = wrkBenchStats{rps: wrkBenchMedian(rps), p50: wrkBenchMedian(p50), p99: wrkBenchMedian(p99), all: rps,
			perCPU: wrkBenchMedian(perCPU), allCPU: perCPU, faults: wrkBenchMedian(faults)}
	}
	return stats
}

// wrkBenchChosen is the contenders WRKBENCH_CONTENDERS names (all when it is unset).
func wrkBenchChosen(cs []wrkBenchContender) []wrkBenchContender {
	only := os.Getenv("WRKBENCH_CONTENDERS")
	if only == "" {
		return cs
	}
	names := strings.Split(only, ",")
	return slices.DeleteFunc(slices.Clone(cs), func(c wrkBenchContender) bool { return !slices.Contains(names, c.name) })
}

// wrkBenchAnchor is one ratio the issues name: regmirror's req/s over a contender's. It is
// also given per server CPU-second (the ratio of the median requests per CPU-second), which
// other load on the machine disturbs far less than req/s.
type wrkBenchAnchor struct {
	of, over, want string
}

// report reports every contender's medians and the anchors' ratios as metrics, and prints a
// table.
func (s wrkBenchSettings) report(b *testing.B, title string, cs []wrkBenchContender, stats map[string]wrkBenchStats, anchors []wrkBenchAnchor) {
	b.Helper()
	var t strings.Builder
	fmt.Fprintf(&t, "%s\n%s\n", title, s)
	fmt.Fprintf(&t, "  %-14s %8s %9s %9s %10s %12s   %s\n", "contender", "req/s", "p50", "p99", "req/CPU-s", "faults/1k req", "req/s per round")
	cs = wrkBenchChosen(cs)
	for _, c := range cs {
		st := stats[c.name]
		var rounds []string
		for _, r := range st.all {
			rounds = append(rounds, strconv.FormatFloat(r, 'f', 0, 64))
		}
		fmt.Fprintf(&t, "  %-14s %8.0f %9v %9v %10.0f %12.2f   %s\n", c.name, st.rps, st.p50.Round(time.Microsecond), st.p99.Round(time.Microsecond), st.perCPU, st.faults, strings.Join(rounds, " "))
		b.ReportMetric(st.rps, c.name+"-req/s")
		b.ReportMetric(st.perCPU, c.name+"-req/CPU-s")
		b.ReportMetric(st.faults, c.name+"-faults/1k-req")
		b.ReportMetric(float64(st.p50.Microseconds()), c.name+"-p50-µs")
		b.ReportMetric(float64(st.p99.Microseconds()), c.name+"-p99-µs")
	}
	for _, a := range anchors {
		if _, ok := stats[a.of]; !ok {
			continue
		}
		if _, ok := stats[a.over]; !ok {
			continue
		}
		// The ratio of each round (the two ran within seconds of each other), then the median:
		// steadier than a ratio of medians when the machine's load changes between rounds.
		of, over := stats[a.of].all, stats[a.over].all
		var ratios []float64
		var each []string
		for i := range of {
			ratios = append(ratios, of[i]/over[i])
			each = append(each, strconv.FormatFloat(of[i]/over[i], 'f', 2, 64))
		}
		r := wrkBenchMedian(ratios)
		perCPU := stats[a.of].perCPU / stats[a.over].perCPU
		b.ReportMetric(r, a.of+"/"+a.over)
		b.ReportMetric(perCPU, a.of+"/"+a.over+"-per-CPU")
		fmt.Fprintf(&t, "  %-26s %6.2f   per round %-24s  per CPU-s %6.2f   target %s\n", a.of+"/"+a.over, r, strings.Join(each, " "), perCPU, a.want)
	}
	wrkBenchPrint(t.String())
}

// wrkBenchPrint writes a table to stdout, where `make bench` keeps it whole (the testing
// package cuts a benchmark's log to 10 lines).
func wrkBenchPrint(table string) {
	fmt.Print("\n" + table + "\n")
}

// wrkBenchSource starts a docker-registry holding the demo images and generates a tree from
// it. It returns the registry's storage root and URL and the tree.
func wrkBenchSource(b *testing.B, s wrkBenchSettings) (root string, reg wrkBenchServer, tree string) {
	b.Helper()
	root = filepath.Join(b.TempDir(), "storage")
	reg = wrkBenchRegistry(b, s, root, "")
	regURL := reg.url
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := testimages.Push(ctx, strings.TrimPrefix(regURL, "http://"), demo(b)); err != nil {
		b.Fatalf("pushing the demo images into docker-registry: %v", err)
	}
	tree = filepath.Join(b.TempDir(), "tree")
	generate(b, regURL, tree)
	return root, reg, tree
}

// wrkBenchRegistry starts a docker-registry on the storage root, pinned like every server:
// Debian's default configuration (inmemory blob descriptor cache, nosniff header), no access
// log, and with redirectBase the redirect storage middleware sending blob GETs there.
func wrkBenchRegistry(b *testing.B, s wrkBenchSettings, root, redirectBase string) wrkBenchServer {
	b.Helper()
	reg := peers.StartRegistry(b, peers.WithStorage(root), peers.WithRedirect(redirectBase),
		peers.WithDebianDefaults(), peers.WithCommand(s.serverCmd))
	return wrkBenchServer{reg.URL, reg.Proc}
}

// wrkBenchServe starts `regmirror serve` on tree.
func wrkBenchServe(b *testing.B, s wrkBenchSettings, tree string, accessLog bool) wrkBenchServer {
	b.Helper()
	port := peers.FreePort(b)
	url := "http://127.0.0.1:" + strconv.Itoa(port)
	// --probe-interval 0: the 307 benchmark's mirror is a name with no server behind it, which
	// the health probes would take out of rotation (and the blob would be served from the
	// tree). Probes run beside the request path, never on it.
	cmd := s.serverCmd(peers.Regmirror(b), "serve", "--tree", tree, "--listen", "127.0.0.1:"+strconv.Itoa(port),
		"--access-log="+strconv.FormatBool(accessLog), "--probe-interval", "0")
	name := "regmirror-serve"
	if accessLog {
		name += "-accesslog"
	}
	p := peers.Start(b, name, cmd, peers.HTTPReady(url+"/v2/"))
	return wrkBenchServer{url, p}
}

// wrkBenchReady succeeds once url gives any HTTP answer, a redirect included (not followed).
func wrkBenchReady(url string) func() error {
	client := &http.Client{Timeout: 2 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return func() error {
		resp, err := client.Get(url)
		if err != nil {
			return err
		}
		return resp.Body.Close()
	}
}

// wrkBenchAnswer is one HTTP answer: what the bare contender replays, and what every
// contender is checked against before wrk runs.
type wrkBenchAnswer struct {
	Listen string              `json:"listen,omitempty"`
	Work   time.Duration       `json:"work,omitempty"` // the bare contender's work per request
	Status int                 `json:"status"`
	Header map[string][]string `json:"header"`
	Body   []byte              `json:"body"`
}

// wrkBenchGet does GET url with wrk's Accept header, not following redirects.
func wrkBenchGet(b *testing.B, url string) wrkBenchAnswer {
	b.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		b.Fatal(err)
	}
	req.Header.Set("Accept", wrkBenchAccept)
	client := &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		b.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		b.Fatalf("GET %s: %v", url, err)
	}
	h := resp.Header.Clone()
	h.Del("Date")
	return wrkBenchAnswer{Status: resp.StatusCode, Header: h, Body: body}
}

// wrkBenchCheck fails unless the contender answers with want's status and
// Docker-Content-Digest, for a 200 with its Content-Type and body, and with a Location that
// location (when non-nil) accepts.
func wrkBenchCheck(b *testing.B, c wrkBenchContender, want wrkBenchAnswer, location func(string) bool) {
	b.Helper()
	got := wrkBenchGet(b, c.url())
	h, wh := http.Header(got.Header), http.Header(want.Header)
	switch {
	case got.Status != want.Status:
		b.Fatalf("%s: GET %s answered %d, regmirror %d\n%s", c.name, c.url(), got.Status, want.Status, got.Body)
	case h.Get("Docker-Content-Digest") != wh.Get("Docker-Content-Digest") && !(c.name == "distribution" && got.Status == http.StatusTemporaryRedirect):
		// docker-distribution's 307 (http.Redirect) has no Docker-Content-Digest.
		b.Fatalf("%s: GET %s: Docker-Content-Digest %q, regmirror %q", c.name, c.url(), h.Get("Docker-Content-Digest"), wh.Get("Docker-Content-Digest"))
	case want.Status == http.StatusOK && h.Get("Content-Type") != wh.Get("Content-Type"):
		b.Fatalf("%s: GET %s: Content-Type %q, regmirror %q", c.name, c.url(), h.Get("Content-Type"), wh.Get("Content-Type"))
	case want.Status == http.StatusOK && !bytes.Equal(got.Body, want.Body):
		b.Fatalf("%s: GET %s: %d bytes differing from regmirror's %d", c.name, c.url(), len(got.Body), len(want.Body))
	case location != nil && !location(h.Get("Location")):
		b.Fatalf("%s: GET %s: Location %q, regmirror's is %q", c.name, c.url(), h.Get("Location"), wh.Get("Location"))
	}
}

// wrkBenchBare starts the bare net/http contender (this test binary running
// TestWrkBenchBareHelper) answering every request with a.
func wrkBenchBare(b *testing.B, s wrkBenchSettings, a wrkBenchAnswer) wrkBenchServer {
	b.Helper()
	port := peers.FreePort(b)
	a.Listen = "127.0.0.1:" + strconv.Itoa(port)
	a.Header = http.Header(a.Header).Clone()
	http.Header(a.Header).Del("Date")
	spec, err := json.Marshal(a)
	if err != nil {
		b.Fatal(err)
	}
	path := filepath.Join(b.TempDir(), "bare.json")
	if err := os.WriteFile(path, spec, 0o644); err != nil {
		b.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	cmd := s.serverCmd(self, "-test.run=^TestWrkBenchBareHelper$", "-test.count=1")
	cmd.Env = append(cmd.Env, "WRKBENCH_BARE_SPEC="+path)
	url := "http://" + a.Listen
	p := peers.Start(b, "bare-http", cmd, wrkBenchReady(url+"/"))
	return wrkBenchServer{url, p}
}

// wrkBenchWork is a with the bare contender's handler spending work per request first.
func wrkBenchWork(a wrkBenchAnswer, work time.Duration) wrkBenchAnswer {
	a.Work = work
	return a
}

// TestWrkBenchBareHelper is the bare net/http contender of the wrk benchmarks, run by them as
// a child process (WRKBENCH_BARE_SPEC names its answer): it spends the answer's Work, then writes the prepared status,
// headers and body for every request, with regmirror's server limits, until SIGTERM.
func TestWrkBenchBareHelper(t *testing.T) {
	path := os.Getenv("WRKBENCH_BARE_SPEC")
	if path == "" {
		t.Skip("the bare net/http contender of the wrk benchmarks (BenchmarkWrk*), started by them")
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var a wrkBenchAnswer
	if err := json.Unmarshal(raw, &a); err != nil {
		t.Fatal(err)
	}
	type kv struct {
		k string
		v []string
	}
	// The answer's Date (deleted by wrkBenchGet) and, for a body net/http holds whole in its
	// buffer (2 KiB) when the handler returns, its Content-Length are left to net/http,
	// which writes them itself: the cheapest handler writing the same answer, as regmirror's
	// handlers do (redirector's autoLength). A header in the map costs about 1.5k
	// instructions (BenchmarkInstructions).
	var hdr []kv
	for k, v := range a.Header {
		if k = http.CanonicalHeaderKey(k); k == "Content-Length" && len(a.Body) <= 2048 {
			continue
		}
		hdr = append(hdr, kv{k, v})
	}
	body := a.Body
	spins := wrkBenchSpinsFor(a.Work)
	h := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		wrkBenchSpin(spins)
		wh := w.Header()
		for _, p := range hdr {
			wh[p.k] = p.v
		}
		w.WriteHeader(a.Status)
		if len(body) > 0 {
			_, _ = w.Write(body)
		}
	})
	ln, err := net.Listen("tcp", a.Listen)
	if err != nil {
		t.Fatal(err)
	}
	// regmirror serve's limits (redirector/server.go).
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 120 * time.Second, MaxHeaderBytes: 64 << 10}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	go func() { _ = srv.Serve(ln) }()
	<-ctx.Done()
	_ = srv.Close()
}

// wrkBenchSpinSink keeps wrkBenchSpin's result alive.
var wrkBenchSpinSink uint64

// wrkBenchSpin does n rounds of FNV-1a over a small buffer: work that stays in the CPU's
// caches, standing for a handler's own work.
func wrkBenchSpin(n int) {
	h := uint64(14695981039346656037)
	for i := range n {
		h ^= uint64(i & 0xff)
		h *= 1099511628211
	}
	wrkBenchSpinSink += h
}

// wrkBenchSpinsFor is the number of wrkBenchSpin rounds that take d on this machine: the
// fastest of five timings of a million rounds.
func wrkBenchSpinsFor(d time.Duration) int {
	if d <= 0 {
		return 0
	}
	const n = 1 << 20
	best := time.Duration(1<<63 - 1)
	for range 5 {
		start := time.Now()
		wrkBenchSpin(n)
		best = min(best, time.Since(start))
	}
	return int(float64(n) * float64(d) / float64(best))
}

// wrkBenchNginx starts nginx with one worker, pinned like every server, with location as the
// server's directives (access log off, connections kept open) and docroot as its root.
func wrkBenchNginx(b *testing.B, s wrkBenchSettings, docroot, location string) wrkBenchServer {
	b.Helper()
	bin := peers.Require(b, "nginx")
	cfg := &peers.NginxConfig{Dir: b.TempDir(), Servers: []peers.NginxServer{{
		Root:       docroot,
		Directives: "access_log off;\nkeepalive_requests 1000000;\n" + location,
	}}}
	cfg.Write(b)
	url := "http://127.0.0.1:" + strconv.Itoa(cfg.Servers[0].Port)
	args := []string{"-e", cfg.ErrorLogPath(), "-p", cfg.Dir, "-c", cfg.ConfPath()}
	cmd := exec.Command(bin, args...)
	if s.serverCPUs != "" {
		cmd = exec.Command(s.taskset, append([]string{"-c", s.serverCPUs, bin}, args...)...)
	}
	p := peers.Start(b, "nginx", cmd, wrkBenchReady(url+"/"))
	return wrkBenchServer{url, p}
}

// wrkBenchAddHeaders turns an answer's headers into nginx add_header lines, leaving out those
// nginx writes itself.
func wrkBenchAddHeaders(h map[string][]string) string {
	var keys []string
	for k := range h {
		switch http.CanonicalHeaderKey(k) {
		case "Content-Type", "Content-Length", "Date", "Etag", "Last-Modified", "Location", "Server", "Connection", "Accept-Ranges":
			continue
		}
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	for _, k := range keys {
		for _, v := range h[k] {
			fmt.Fprintf(&b, "add_header %s %s;\n", k, wrkBenchNginxQuote(v))
		}
	}
	return b.String()
}

// wrkBenchNginxQuote quotes s for nginx. A "$" would start a variable: none of the values
// quoted here (URLs and header values made from digests) has one.
func wrkBenchNginxQuote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

// BenchmarkWrkManifest: GET /v2/fedora/manifests/42 (the demo's OCI index, by tag) from
// regmirror serve (access log off, then on), a bare net/http server writing regmirror's
// answer, nginx serving the bytes as a static file, and docker-distribution.
func BenchmarkWrkManifest(b *testing.B) {
	s := wrkBenchSetup(b)
	_, reg, tree := wrkBenchSource(b, s)
	const path = "/v2/fedora/manifests/42"

	red := wrkBenchFresh(b, "regmirror", path, func(b *testing.B) wrkBenchServer { return wrkBenchServe(b, s, tree, false) })
	want := wrkBenchGet(b, red.url())
	if want.Status != http.StatusOK || len(want.Body) == 0 {
		b.Fatalf("regmirror: GET %s answered %d\n%s", path, want.Status, want.Body)
	}
	docroot := b.TempDir()
	file := filepath.Join(docroot, filepath.FromSlash(path))
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(file, want.Body, 0o644); err != nil {
		b.Fatal(err)
	}
	ctype := http.Header(want.Header).Get("Content-Type")
	location := fmt.Sprintf("location = %s {\n    default_type %s;\n%s}\n", path, wrkBenchNginxQuote(ctype),
		indentLines(wrkBenchAddHeaders(want.Header), "    "))
	cs := []wrkBenchContender{
		red,
		wrkBenchFresh(b, "regmirror+log", path, func(b *testing.B) wrkBenchServer { return wrkBenchServe(b, s, tree, true) }),
		wrkBenchFresh(b, "bare", path, func(b *testing.B) wrkBenchServer { return wrkBenchBare(b, s, want) }),
		wrkBenchFresh(b, "bare+500ns", path, func(b *testing.B) wrkBenchServer { return wrkBenchBare(b, s, wrkBenchWork(want, 500*time.Nanosecond)) }),
		wrkBenchNginx(b, s, docroot, location).contender("nginx", path),
		reg.contender("distribution", path),
	}
	for _, c := range cs {
		wrkBenchCheck(b, c, want, nil)
	}
	b.Run("fedora-42", func(b *testing.B) {
		for range b.N {
			stats := s.sideBySide(b, cs)
			for _, c := range cs { // still the same answer after the load (a mirror taken out would not be)
				wrkBenchCheck(b, c, want, nil)
			}
			s.report(b, fmt.Sprintf("manifest GET by tag: %s (%s, %d bytes)", path, ctype, len(want.Body)), cs, stats, []wrkBenchAnchor{
				{"regmirror", "bare", ">= 0.8"},
				{"regmirror", "nginx", ">= 0.7"},
				{"regmirror", "distribution", "~45 expected (distribution ~1/45 of nginx)"},
				{"regmirror+log", "bare", ">= 0.9 (as deployed, access log on)"},
				{"bare+500ns", "bare", "calibration: what 500 ns of handler work costs here"},
				{"regmirror+log", "regmirror", "access log cost (<= 5%: >= 0.95)"},
				{"bare", "nginx", "0.7-0.9 measured in design.md"},
				{"distribution", "nginx", "~1/45 = 0.022 measured in design.md"},
			})
		}
	})
}

// indentLines prefixes every line of s.
func indentLines(s, prefix string) string {
	var b strings.Builder
	for line := range strings.Lines(s) {
		b.WriteString(prefix + line)
	}
	return b.String()
}

// BenchmarkWrkBlobRedirect: GET of a demo layer answered with a 307 to the one healthy mirror
// covering everything, from regmirror serve (access log off, then on), a bare net/http server
// writing regmirror's 307, nginx's `return 307`, and docker-distribution with its redirect
// storage middleware.
func BenchmarkWrkBlobRedirect(b *testing.B) {
	s := wrkBenchSetup(b)
	root, _, tree := wrkBenchSource(b, s)

	path, layer := wrkBenchRedirectTree(b, tree)
	red := wrkBenchFresh(b, "regmirror", path, func(b *testing.B) wrkBenchServer { return wrkBenchServe(b, s, tree, false) })
	want := wrkBenchGet(b, red.url())
	loc := http.Header(want.Header).Get("Location")
	if want.Status != http.StatusTemporaryRedirect || loc != "http://mirror.example.org/pub/containers/"+layout.BlobPath(layer) {
		b.Fatalf("regmirror: GET %s answered %d to %q, want 307 to the mirror", path, want.Status, loc)
	}
	redirectBase := "http://localhost:" + strconv.Itoa(peers.FreePort(b)) + "/"
	location := fmt.Sprintf("location = %s {\n%s    return 307 %s;\n}\n", path, indentLines(wrkBenchAddHeaders(want.Header), "    "), wrkBenchNginxQuote(loc))
	cs := []wrkBenchContender{
		red,
		wrkBenchFresh(b, "regmirror+log", path, func(b *testing.B) wrkBenchServer { return wrkBenchServe(b, s, tree, true) }),
		wrkBenchFresh(b, "bare", path, func(b *testing.B) wrkBenchServer { return wrkBenchBare(b, s, want) }),
		wrkBenchFresh(b, "bare+500ns", path, func(b *testing.B) wrkBenchServer { return wrkBenchBare(b, s, wrkBenchWork(want, 500*time.Nanosecond)) }),
		wrkBenchNginx(b, s, b.TempDir(), location).contender("nginx", path),
		wrkBenchRegistry(b, s, root, redirectBase).contender("distribution", path),
	}
	checkOf := func(c wrkBenchContender) func(string) bool {
		if c.name == "distribution" {
			return func(l string) bool {
				return strings.HasPrefix(l, redirectBase) && strings.HasSuffix(l, "/blobs/sha256/"+layer.Hex()[:2]+"/"+layer.Hex()+"/data")
			}
		}
		return func(l string) bool { return l == loc }
	}
	for _, c := range cs {
		wrkBenchCheck(b, c, want, checkOf(c))
	}
	b.Run("307", func(b *testing.B) {
		for range b.N {
			stats := s.sideBySide(b, cs)
			for _, c := range cs { // still the same answer after the load (a mirror taken out would not be)
				wrkBenchCheck(b, c, want, checkOf(c))
			}
			s.report(b, fmt.Sprintf("blob GET answered 307: %s -> %s", path, loc), cs, stats, []wrkBenchAnchor{
				{"regmirror", "bare", ">= 0.8"},
				{"regmirror", "nginx", ">= 0.45"},
				{"regmirror", "distribution", "(redirect middleware)"},
				{"regmirror+log", "bare", ">= 0.9 (as deployed, access log on)"},
				{"bare+500ns", "bare", "calibration: what 500 ns of handler work costs here"},
				{"regmirror+log", "regmirror", "access log cost (<= 5%: >= 0.95)"},
				{"bare", "nginx", "0.4-0.6 measured in design.md"},
			})
		}
	})
}

// wrkBenchRedirectTree publishes tree again with one healthy mirror holding the current
// generation, the only candidate of region global (every loopback client is there without a
// GeoIP database), and returns the path of the fedora repository's largest layer (its amd64
// base layer), which regmirror answers with a 307 to that mirror, and the layer.
func wrkBenchRedirectTree(b *testing.B, tree string) (string, layout.Digest) {
	b.Helper()
	t := layout.NewTree(tree)
	meta, _, err := t.Load()
	if err != nil {
		b.Fatal(err)
	}
	const mirror = "mirror.example"
	meta.Mirrors = []*layout.Mirror{{Name: mirror, URL: "http://mirror.example.org/pub/containers/", Country: "DE", Continent: "EU",
		Bandwidth: 1000, Enabled: true, Generation: meta.Generation, Healthy: true, Status: "up to date", Checked: time.Now().UTC()}}
	meta.Regions = map[string]*layout.Region{"global": {Tiers: [][]string{{mirror}}, VariantSet: -1}}
	meta.VariantSets = nil
	if _, err := t.Publish(meta); err != nil {
		b.Fatal(err)
	}
	var layer layout.Digest
	for _, d := range meta.Repositories["fedora"].Blobs {
		if _, isManifest := meta.Manifests[d]; !isManifest && (layer.IsZero() || meta.Blobs[d].Size > meta.Blobs[layer].Size) {
			layer = d
		}
	}
	if layer.IsZero() {
		b.Fatal("the demo's fedora repository has no layer")
	}
	return "/v2/fedora/blobs/" + layer.String(), layer
}

// wrkBenchCountries are 30 countries on six continents (as internal/mirrors' benchmark).
var wrkBenchCountries = []string{
	"DE", "FR", "NL", "GB", "SE", "PL", "IT", "ES", "CZ", "AT", "FI", "CH",
	"US", "CA", "MX",
	"BR", "AR", "CL",
	"JP", "CN", "IN", "KR", "SG", "TW", "ID",
	"AU", "NZ",
	"ZA", "KE", "EG",
}

func wrkBenchDigest(b []byte) layout.Digest {
	sum := sha256.Sum256(b)
	return layout.MustDigest("sha256:" + hex.EncodeToString(sum[:]))
}

// wrkBenchTreeMeta builds metadata shaped like internal/mirrors' BenchmarkPrecompute: n
// manifests (a fifth of them indexes of two images) in 100 repositories, each image a config
// and 2 to 5 layers on a shared base layer, blobs over 10 generations; mirrorCount mirrors
// over the first countries countries, one in ten a generation behind, all crawled healthy.
// Regions and variants are left to mirrors.Precompute.
func wrkBenchTreeMeta(n, mirrorCount, countries int) *layout.Meta {
	meta := layout.NewMeta(10)
	blob := func(seed string, since uint64, size int64) layout.Digest {
		d := wrkBenchDigest([]byte(seed))
		meta.Blobs[d] = &layout.Blob{Size: size, Since: since}
		return d
	}
	base := blob("base", 1, 80<<20)
	const repoCount = 100
	repos := make([]*layout.Repository, repoCount)
	for i := range repos {
		repos[i] = &layout.Repository{Tags: map[string]layout.Digest{}}
		meta.Repositories[fmt.Sprintf("bench/repo%03d", i)] = repos[i]
	}
	image := func(repo *layout.Repository, i int) (layout.Digest, int) {
		since := uint64(i%10 + 1)
		cfg := blob(fmt.Sprint("config", i), since, 1500)
		repo.Blobs = append(repo.Blobs, cfg, base)
		data := fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":1500},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"%s","size":%d}`, cfg, base, 80<<20)
		for j := 0; j < 1+i%4; j++ {
			l := blob(fmt.Sprint("layer", i, j), since, 1<<20)
			repo.Blobs = append(repo.Blobs, l)
			data += fmt.Sprintf(`,{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"%s","size":%d}`, l, 1<<20)
		}
		data += `],"annotations":{"org.opencontainers.image.created":"2026-01-01T00:00:00Z"}}`
		d := wrkBenchDigest([]byte(data))
		meta.Manifests[d] = &layout.Manifest{MediaType: "application/vnd.oci.image.manifest.v1+json", Data: []byte(data)}
		meta.Blobs[d] = &layout.Blob{Size: int64(len(data)), Since: since}
		repo.Manifests = append(repo.Manifests, d)
		return d, len(data)
	}
	for i := 0; len(meta.Manifests) < n; i++ {
		repo := repos[i%repoCount]
		tag := fmt.Sprintf("v%d", i/repoCount)
		if i%4 == 0 && n-len(meta.Manifests) >= 3 {
			a, as := image(repo, 2*i)
			c, cs := image(repo, 2*i+1)
			data := fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"%s","size":%d,"platform":{"architecture":"amd64","os":"linux"}},{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"%s","size":%d,"platform":{"architecture":"arm64","os":"linux"}}]}`, a, as, c, cs)
			d := wrkBenchDigest([]byte(data))
			meta.Manifests[d] = &layout.Manifest{MediaType: "application/vnd.oci.image.index.v1+json", Data: []byte(data)}
			meta.Blobs[d] = &layout.Blob{Size: int64(len(data)), Since: 1}
			repo.Manifests = append(repo.Manifests, d)
			repo.Tags[tag] = d
			continue
		}
		d, _ := image(repo, 2*i)
		repo.Tags[tag] = d
	}
	for _, r := range repos {
		less := func(a, b layout.Digest) int { return strings.Compare(a.String(), b.String()) }
		slices.SortFunc(r.Manifests, less)
		r.Manifests = slices.Compact(r.Manifests)
		slices.SortFunc(r.Blobs, less)
		r.Blobs = slices.Compact(r.Blobs)
	}
	meta.Mirrors = wrkBenchMirrors(mirrorCount, countries, func(i int) uint64 {
		if i%10 == 9 {
			return 9
		}
		return 10
	})
	meta.Origin = "https://origin.example.org/containers/"
	return meta
}

// wrkBenchMirrors are n mirrors over the first countries countries (wrkBenchCountries), with
// bandwidths 100 to 1000, all crawled healthy just now, mirror i holding generation gen(i).
func wrkBenchMirrors(n, countries int, gen func(i int) uint64) []*layout.Mirror {
	checked := time.Now().UTC()
	var ms []*layout.Mirror
	for i := range n {
		c := wrkBenchCountries[i%countries]
		cont, _ := layout.ContinentOf(c)
		ms = append(ms, &layout.Mirror{
			Name: fmt.Sprintf("m%02d.%s", i, c), URL: fmt.Sprintf("https://mirror%02d.example.%s/pub/containers/", i, strings.ToLower(c)),
			Country: c, Continent: cont, Bandwidth: int64(100 * (1 + i%10)), Enabled: true,
			Generation: gen(i), Healthy: true, Checked: checked, Status: "up to date",
		})
	}
	return ms
}

// wrkBenchProcStatus reads VmRSS and VmHWM (bytes) from /proc/<pid>/status.
func wrkBenchProcStatus(b *testing.B, pid int) (rss, hwm int64) {
	b.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatalf("reading the redirector's memory: %v", err)
	}
	for line := range strings.Lines(string(raw)) {
		k, v, ok := strings.Cut(line, ":")
		if !ok || (k != "VmRSS" && k != "VmHWM") {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
		if err != nil {
			b.Fatalf("/proc/%d/status: %q: %v", pid, line, err)
		}
		if k == "VmRSS" {
			rss = kb << 10
		} else {
			hwm = kb << 10
		}
	}
	if rss == 0 || hwm == 0 {
		b.Fatalf("/proc/%d/status has no VmRSS or VmHWM", pid)
	}
	return rss, hwm
}

var wrkBenchTookRe = regexp.MustCompile(`msg="generation loaded".* took=(\S+)`)

// BenchmarkTreeLoad: `regmirror serve --access-log=false` on a tree of 10,000 manifests with
// 10 regions (issue 3: 10 mirrors in 2 countries, so 2 country regions, 7 continents and
// global) and with 50 mirrors in 30 countries (issue 4: 38 regions), regions and variant sets
// computed by mirrors.Precompute. Each round starts a fresh process (not pinned, GOMAXPROCS=2
// at most: nothing else runs) and times it until /v2/ answers 200 (it listens only once the
// generation is loaded), then reads VmRSS and VmHWM; also the load time the redirector logs.
// Medians over WRKBENCH_ROUNDS rounds (default 3).
func BenchmarkTreeLoad(b *testing.B) {
	needPeers(b)
	rounds := wrkBenchEnvInt(b, "WRKBENCH_ROUNDS", 3)
	bin := peers.Regmirror(b)
	procs := min(runtime.NumCPU(), 2)
	for _, c := range []struct {
		name                          string
		manifests, mirrors, countries int
		anchor                        string
	}{
		{"10k-manifests-10-regions", 10000, 10, 2, "issue 3: RSS and load time for 10,000 manifests in 10 regions"},
		{"10k-manifests-50-mirrors-30-countries", 10000, 50, 30, "issue 4: variant sets, bytes and RSS for 10,000 manifests, 50 mirrors in 30 countries"},
	} {
		b.Run(c.name, func(b *testing.B) {
			tree := b.TempDir()
			meta := wrkBenchTreeMeta(c.manifests, c.mirrors, c.countries)
			start := time.Now()
			st, err := mirrors.Precompute(meta)
			if err != nil {
				b.Fatal(err)
			}
			precompute := time.Since(start)
			stamp, err := layout.NewTree(tree).Publish(meta)
			if err != nil {
				b.Fatal(err)
			}
			nManifests := len(meta.Manifests)
			meta = nil
			runtime.GC()
			fi, err := os.Stat(layout.NewTree(tree).Path(layout.MetaDir + "/" + stamp.Meta))
			if err != nil {
				b.Fatal(err)
			}
			for range b.N {
				var ready, took []time.Duration
				var rss, hwm []float64
				for range rounds {
					port := peers.FreePort(b)
					url := "http://127.0.0.1:" + strconv.Itoa(port) + "/v2/"
					cmd := exec.Command(bin, "serve", "--tree", tree, "--listen", "127.0.0.1:"+strconv.Itoa(port), "--access-log=false")
					cmd.Env = append(os.Environ(), "GOMAXPROCS="+strconv.Itoa(procs))
					t0 := time.Now()
					p := peers.Start(b, "regmirror-serve", cmd, nil)
					client := &http.Client{Timeout: 2 * time.Second}
					for {
						resp, err := client.Get(url)
						if err == nil {
							resp.Body.Close()
							if resp.StatusCode == http.StatusOK {
								break
							}
						}
						select {
						case <-p.Done():
							b.Fatalf("regmirror serve exited: %v\n%s", p.Err(), peers.Tail(p.Log, 30))
						default:
						}
						if time.Since(t0) > time.Minute {
							b.Fatalf("regmirror serve not ready after a minute\n%s", peers.Tail(p.Log, 30))
						}
						time.Sleep(2 * time.Millisecond)
					}
					ready = append(ready, time.Since(t0))
					r, h := wrkBenchProcStatus(b, cmd.Process.Pid)
					rss, hwm = append(rss, float64(r)/(1<<20)), append(hwm, float64(h)/(1<<20))
					p.Stop() // flushes the log
					m := wrkBenchTookRe.FindStringSubmatch(peers.Tail(p.Log, 1000))
					if m == nil {
						b.Fatalf("regmirror serve logged no load time\n%s", peers.Tail(p.Log, 30))
					}
					d, err := time.ParseDuration(m[1])
					if err != nil {
						b.Fatalf("regmirror serve's load time %q: %v", m[1], err)
					}
					took = append(took, d)
				}
				mr, mh := wrkBenchMedian(rss), wrkBenchMedian(hwm)
				b.ReportMetric(wrkBenchMedian(ready).Seconds()*1000, "ready-ms")
				b.ReportMetric(wrkBenchMedian(took).Seconds()*1000, "load-ms")
				b.ReportMetric(mr, "VmRSS-MiB")
				b.ReportMetric(mh, "VmHWM-MiB")
				b.ReportMetric(precompute.Seconds()*1000, "precompute-ms")
				b.ReportMetric(float64(st.Regions), "regions")
				b.ReportMetric(float64(st.VariantSets), "variant-sets")
				b.ReportMetric(float64(fi.Size())/(1<<20), "meta-zst-MiB")
				wrkBenchPrint(fmt.Sprintf("%s\n  tree: %d manifests, %d mirrors in %d countries: %d regions, %d variant sets (rendered on request, not recorded), metadata %.2f MiB zstd, precompute %v\n"+
					"  regmirror serve (GOMAXPROCS=%d, %d rounds, medians): ready (/v2/ 200) after %v, load logged %v, VmRSS %.1f MiB, VmHWM %.1f MiB\n"+
					"  per round: ready %v, load %v, VmRSS %.1f MiB, VmHWM %.1f MiB",
					c.anchor, nManifests, c.mirrors, c.countries, st.Regions, st.VariantSets, float64(fi.Size())/(1<<20), precompute.Round(time.Millisecond),
					procs, rounds, wrkBenchMedian(ready).Round(time.Millisecond), wrkBenchMedian(took), mr, mh,
					wrkBenchRound(ready), took, rss, hwm))
			}
		})
	}
}

func wrkBenchRound(ds []time.Duration) []time.Duration {
	out := make([]time.Duration, len(ds))
	for i, d := range ds {
		out[i] = d.Round(time.Millisecond)
	}
	return out
}
