package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/regmirror/regmirror/internal/testsupport/peers"
)

// BenchmarkInstructions counts the instructions a server runs per request (user space,
// callgrind), for the wrk benchmarks' two requests and contenders: regmirror serve with the
// access log off and on, and the bare net/http server writing regmirror's answer. Unlike
// requests per second on a shared 2-core machine, an instruction count does not move with
// other load: it is the steady figure beside wrk's (it does not see the kernel's work, the
// log file's writes included, nor cache misses). Each contender runs under
// `valgrind --tool=callgrind` (GOMAXPROCS=1; GODEBUG=asyncpreemptoff=1, as callgrind does not
// follow the runtime's preemption signal, and cpu.rdtscp=off), takes INSTRBENCH_WARMUP
// requests (default 500) on one kept connection with wrk's Accept header, then its counters
// are zeroed, it answers INSTRBENCH_REQUESTS (default 2000) more, and they are dumped:
// instructions ÷ requests.
// INSTRBENCH_KEEP names a directory to keep the dumps in (for callgrind_annotate), named
// by request and contender.
func BenchmarkInstructions(b *testing.B) {
	needPeers(b)
	valgrind := peers.Require(b, "valgrind")
	control := peers.Require(b, "callgrind_control")
	warmup := wrkBenchEnvInt(b, "INSTRBENCH_WARMUP", 500)
	requests := wrkBenchEnvInt(b, "INSTRBENCH_REQUESTS", 2000)

	native := wrkBenchSettings{procs: 1}
	_, _, tree := wrkBenchSource(b, native)
	manifest := "/v2/fedora/manifests/42"
	blob, _ := wrkBenchRedirectTree(b, tree)

	dir := b.TempDir()
	keep := os.Getenv("INSTRBENCH_KEEP")
	cg := native
	cg.wrap = []string{valgrind, "--tool=callgrind", "--callgrind-out-file=" + filepath.Join(dir, "callgrind.%p")}
	// cpu.rdtscp=off: valgrind may report RDTSCP in its CPUID and then refuse the instruction
	// (SIGILL in runtime.cputicks, valgrind 3.19 on a virtual AMD Zen host); the runtime's
	// fallback is RDTSC, which it handles.
	cg.env = []string{"GODEBUG=asyncpreemptoff=1,cpu.rdtscp=off"}

	type row struct {
		name, path string
		ir         map[string]float64
	}
	rows := []*row{{name: "manifest GET by tag", path: manifest}, {name: "blob GET answered 307", path: blob}}
	for _, r := range rows {
		r.ir = map[string]float64{}
		want := wrkBenchGet(b, wrkBenchServe(b, native, tree, false).url+r.path)
		for _, c := range []struct {
			name  string
			start func() wrkBenchServer
		}{
			{"bare", func() wrkBenchServer { return wrkBenchBare(b, cg, want) }},
			{"regmirror", func() wrkBenchServer { return wrkBenchServe(b, cg, tree, false) }},
			{"regmirror+log", func() wrkBenchServer { return wrkBenchServe(b, cg, tree, true) }},
		} {
			srv := c.start()
			r.ir[c.name] = instrBenchCount(b, control, dir, srv, r.path, want.Status, warmup, requests)
			if keep != "" {
				dump := filepath.Join(dir, "callgrind."+strconv.Itoa(srv.pgid())+".1")
				name := strings.NewReplacer(" ", "-").Replace(r.name) + "." + c.name + ".callgrind"
				if err := os.Rename(dump, filepath.Join(keep, name)); err != nil {
					b.Fatal(err)
				}
			}
		}
	}

	var t strings.Builder
	fmt.Fprintf(&t, "instructions per request (callgrind, user space; %d requests after %d, one kept connection, GOMAXPROCS=1)\n", requests, warmup)
	fmt.Fprintf(&t, "  %-24s %10s %10s %14s   %-22s %-22s %s\n", "request", "bare", "regmirror", "regmirror+log", "bare/regmirror (>=0.8)", "bare/regmirror+log (>=0.9)", "log cost (>=0.95)")
	for _, r := range rows {
		fmt.Fprintf(&t, "  %-24s %10.0f %10.0f %14.0f   %-22.3f %-22.3f %.3f\n", r.name, r.ir["bare"], r.ir["regmirror"], r.ir["regmirror+log"],
			r.ir["bare"]/r.ir["regmirror"], r.ir["bare"]/r.ir["regmirror+log"], r.ir["regmirror"]/r.ir["regmirror+log"])
		key := strings.NewReplacer(" ", "-").Replace(r.name)
		b.ReportMetric(r.ir["bare"]/r.ir["regmirror+log"], key+"-bare/regmirror+log")
	}
	wrkBenchPrint(t.String())
}

// instrBenchCount sends srv warmup requests for path, zeroes its callgrind counters, sends n
// more, dumps the counters, and returns the instructions per request.
func instrBenchCount(b *testing.B, control, dir string, srv wrkBenchServer, path string, status, warmup, n int) float64 {
	b.Helper()
	client := &http.Client{Timeout: time.Minute, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	send := func(k int) {
		for range k {
			req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, srv.url+path, nil)
			if err != nil {
				b.Fatal(err)
			}
			req.Header.Set("Accept", wrkBenchAccept)
			resp, err := client.Do(req)
			if err != nil {
				b.Fatalf("GET %s: %v", srv.url+path, err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != status {
				b.Fatalf("GET %s: status %d, want %d", srv.url+path, resp.StatusCode, status)
			}
		}
	}
	pid := strconv.Itoa(srv.pgid()) // the process itself: valgrind runs the program in its own process
	callgrind := func(arg string) {
		if out, err := exec.Command(control, arg, pid).CombinedOutput(); err != nil {
			b.Fatalf("callgrind_control %s %s: %v\n%s", arg, pid, err, out)
		}
	}
	send(warmup)
	callgrind("-z")
	send(n)
	callgrind("-d")
	ir, err := instrBenchTotal(filepath.Join(dir, "callgrind."+pid+".1"))
	if err != nil {
		b.Fatal(err)
	}
	return float64(ir) / float64(n)
}

// instrBenchTotal reads the instruction total of a callgrind dump ("totals:", or "summary:"
// in older versions).
func instrBenchTotal(path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, fmt.Errorf("reading callgrind's dump: %w", err)
	}
	defer f.Close()
	var total int64 = -1
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		for _, k := range []string{"totals:", "summary:"} {
			if v, ok := strings.CutPrefix(sc.Text(), k); ok {
				if n, err := strconv.ParseInt(strings.Fields(v)[0], 10, 64); err == nil && n > total {
					total = n
				}
			}
		}
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("reading %s: %w", path, err)
	}
	if total < 0 {
		return 0, fmt.Errorf("%s: no totals line: not a callgrind dump", path)
	}
	return total, nil
}
