package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/regmirror/regmirror/generator"
	"github.com/regmirror/regmirror/internal/testsupport/peers"
	"github.com/regmirror/regmirror/internal/testsupport/testimages"
)

// BenchmarkScale is issue 10's scale benchmark: what a generation, a crawl and a switch cost
// as the tree grows, against the synthetic source (scaleSource, every tag a two-arch index:
// 3 manifests a tag) with 50 healthy mirrors in 30 countries, all served by one nginx on 50
// ports from one copy of the tree kept by deploy/mirror-sync. It uses the binaries and the
// documented commands only (generate, crawl, serve, mirror-sync), never the tree's format,
// so that it measures today's format and the next one alike.
//
// Sizes, each a sub-benchmark, run one after the other and are printed side by side with the
// growth ratios: REGMIRROR_SCALE_MANIFESTS (default 90000) and a tenth of it; with
// REGMIRROR_SCALE_1M=1 also 1,000,000 (long). Run with -benchtime 1x (make bench does).
//
// For each size, in one run:
//   - full generate: time and peak RSS (VmHWM of the child, polled);
//   - the floor: the catalog, every tag list and one manifest HEAD per tag, 32 requests in
//     flight, from a bare Go client against the same source (median of 3); and the same
//     client in a process of its own, timed from its start to its exit as the commands are
//     (median of 3; shown beside, the target is against the first); and the first with the
//     HEADs pipelined as generate sends them (median of 3; shown beside too);
//   - a no-op re-run, then a promotion of 10 tags (8 moved, 2 added), timed and as × floor;
//   - the bytes rsync moves outside blobs/ (deploy/mirror-sync through an rsync that adds
//     --no-whole-file --stats, so local copies use the delta algorithm as over a network):
//     into a mirror's copy and into a redirector host's copy (--meta-only), after the
//     promotion and after the crawl that follows it;
//   - regmirror serve on the redirector host's copy: ready time (until a tag answers the
//     source's digest), VmRSS after 2 s idle (steady), VmHWM (peak), and the switch after the
//     promotion: from the moment the --meta-only sync renames the copy's regmirror/live (the
//     end of the sync if there is no such link) until a moved tag answers its new digest,
//     and VmHWM after it (reset before the sync through /proc/<pid>/clear_refs, so
//     that it is the switch's peak, not the load's);
//   - after the crawl, a second promotion of 10 tags, whose delta pack compaction merges
//     with the first one's (as for most promotions after the first): its generate time
//     (and × floor), and its switch measured as the first's; the slower switch and the
//     higher peak are the figures;
//   - scaleExtraPromotions more promotions of 10 tags, each right after a floor of its own,
//     in a process of its own and in process: the promotions' target is checked against the
//     median of every promotion of the run over the median of every floor measured in
//     process, and over the median of every floor in a process of its own (a command, like
//     generate: the same client there costs more than in the source's process), since on
//     these shared machines one run moves by a third from the next.
func BenchmarkScale(b *testing.B) {
	needPeers(b)
	full := scaleManifests(b, 90000)
	scaleSizes(b, "issue 10: scale (synthetic source, two-arch indexes, 50 healthy mirrors in 30 countries on one nginx)",
		[]int{full / 10, full}, scaleRun, scaleTargets, (*scaleResult).detail)
}

// scaleSizes runs run on each size, and on 1,000,000 manifests with REGMIRROR_SCALE_1M=1, as
// sub-benchmarks "manifests=N" reporting targets' figures, then prints them side by side
// under title (scaleTable). regmirror is built before any size is timed.
func scaleSizes(b *testing.B, title string, sizes []int, run func(*testing.B, int) *scaleResult, targets []scaleTarget, detail func(*scaleResult) string) {
	if os.Getenv("REGMIRROR_SCALE_1M") == "1" {
		sizes = append(sizes, 1000000)
	}
	peers.Regmirror(b)
	var results []*scaleResult
	for _, n := range sizes {
		b.Run(fmt.Sprintf("manifests=%d", n), func(b *testing.B) {
			var res *scaleResult
			for range b.N {
				res = run(b, n)
			}
			res.report(b, targets)
			results = append(results, res)
		})
	}
	wrkBenchPrint(scaleTable(title, results, targets, detail))
}

// scaleShape is the scale source's shape for about manifests manifests: repositories of 100
// tags (fewer if the tree is smaller), 3 manifests a tag.
func scaleShape(manifests int) (repos, perRepo int) {
	tags := manifests / 3
	perRepo = min(100, tags)
	return (tags + perRepo - 1) / perRepo, perRepo
}

// scaleManifests is the size REGMIRROR_SCALE_MANIFESTS asks for, def when unset.
func scaleManifests(b *testing.B, def int) int {
	v := os.Getenv("REGMIRROR_SCALE_MANIFESTS")
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 300 {
		b.Fatalf("REGMIRROR_SCALE_MANIFESTS=%q: want a number of manifests, at least 300", v)
	}
	return n
}

// scaleResult is one size's figures.
type scaleResult struct {
	manifests, tags, repos int

	fullGen, noop, promo, floor, crawl time.Duration
	floorOwn                           time.Duration // the floor in a process of its own
	floorPiped                         time.Duration // the floor's HEADs pipelined (report only)
	promo2                             time.Duration // a second promotion, its delta merged with the first's
	// The medians of every promotion (the two above and scaleExtraPromotions more) and of every
	// floor measured in process (the first three and one before each of the extra promotions),
	// and each run.
	promoMedian, floorMedian time.Duration
	promoRuns                string
	// The median of every floor measured in a process of its own (the first three and one
	// before each of the extra promotions, beside the one in process).
	floorOwnMedian                time.Duration
	fullPeak, noopPeak, promoPeak int64 // bytes
	noopRequests, promoRequests   string

	// rsync outside blobs/: transferred file size and literal data, bytes.
	promoMirror, promoHost, crawlMirror, crawlHost scaleRsync

	ready, switchTime             time.Duration
	rss, peak, switchPeak         int64 // bytes
	switchPolls                   int
	switches                      string // each switch measured, when there are several
	mirrorsHealthy, mirrorsListed int

	serveDetail string // BenchmarkServeScale's line about the size
}

// scaleRsync sums what rsync did in one mirror-sync run.
type scaleRsync struct {
	files, size, literal int64 // outside blobs/
	blobFiles, blobSize  int64
}

func (r scaleRsync) String() string {
	return fmt.Sprintf("%s literal (%d files, %s)", scaleBytes(r.literal), r.files, scaleBytes(r.size))
}

func scaleBytes(n int64) string {
	switch {
	case n >= 10<<20:
		return fmt.Sprintf("%.0f MiB", float64(n)/(1<<20))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

func scaleProgress(n int, format string, args ...any) {
	fmt.Printf("scale %d manifests %s: %s\n", n, time.Now().UTC().Format("15:04:05"), fmt.Sprintf(format, args...))
}

// scaleRun measures one size.
func scaleRun(b *testing.B, manifests int) *scaleResult {
	repos, perRepo := scaleShape(manifests)
	res := &scaleResult{tags: repos * perRepo, repos: repos, manifests: 3 * repos * perRepo}
	src := newScaleSource(b, repos, perRepo)
	dir := b.TempDir()
	tree, mirror, host := filepath.Join(dir, "tree"), filepath.Join(dir, "mirror"), filepath.Join(dir, "redirector-host")
	for _, d := range []string{mirror, host} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			b.Fatal(err)
		}
	}
	mirrorsFile, listed := scaleMirrors(b, mirror, tree, 50, 30)
	res.mirrorsListed = listed
	ms := newScaleSync(b)
	progress := func(format string, args ...any) { scaleProgress(res.manifests, format, args...) }
	progress("%d repositories × %d tags, 50 mirrors in 30 countries on one nginx", repos, perRepo)

	gen := func(what string) (time.Duration, int64, string) {
		src.Reset()
		took, peak, stderr := scaleChild(b, "generate", "--source", src.URL, "--out", tree, "--mirrors", mirrorsFile)
		progress("%s generate: %v, peak RSS %s; source requests: %s; phases: %s", what, took.Round(time.Millisecond), scaleBytes(peak), src, scalePhases(stderr))
		return took, peak, src.String()
	}
	res.fullGen, res.fullPeak, _ = gen("full")

	ms.run(b, tree, mirror, false)
	progress("first mirror copy synced")
	res.crawl, res.mirrorsHealthy = scaleCrawl(b, tree)
	progress("crawl: %v, %d of %d mirrors healthy", res.crawl.Round(time.Millisecond), res.mirrorsHealthy, listed)
	if res.mirrorsHealthy != listed {
		b.Fatalf("crawl found %d of %d mirrors healthy, want all", res.mirrorsHealthy, listed)
	}
	ms.run(b, tree, mirror, false)
	ms.run(b, tree, host, true)

	// serve on the redirector host's copy.
	srv := scaleServe(b, host, scaleRepoName(0), scaleTagName(0), src.TagDigest(0, 0))
	res.ready = srv.ready
	time.Sleep(2 * time.Second)
	res.rss, res.peak = wrkBenchProcStatus(b, srv.pid)
	progress("serve ready in %v, VmRSS %s, VmHWM %s", res.ready.Round(time.Millisecond), scaleBytes(res.rss), scaleBytes(res.peak))

	res.noop, res.noopPeak, res.noopRequests = gen("no-op")
	var floors, own []time.Duration
	res.floor, floors = scaleMedianOf3(func() time.Duration { return scaleFloor(b, src, 32) })
	progress("floor (catalog, tag lists, a HEAD per tag, 32 in flight): %v (runs %v)", res.floor.Round(time.Millisecond), wrkBenchRound(floors))
	res.floorOwn, own = scaleMedianOf3(func() time.Duration { return scaleFloorProcess(b, src, 32) })
	progress("floor in a process of its own: %v (runs %v)", res.floorOwn.Round(time.Millisecond), wrkBenchRound(own))
	var piped []time.Duration
	res.floorPiped, piped = scaleMedianOf3(func() time.Duration { return scaleFloorPipelined(b, src, 32) })
	progress("floor with the HEADs pipelined as generate sends them: %v (runs %v)", res.floorPiped.Round(time.Millisecond), wrkBenchRound(piped))

	moved := src.Promote(10)
	res.promo, res.promoPeak, res.promoRequests = gen("10-tag promotion")

	// The redirector host first, then the switch, its peak apart from the load's.
	syncHost := func(what string, moved []scaleMoved) {
		var rs scaleRsync
		took, polls, peak := scaleSwitch(b, srv, host, moved, func() (err error) {
			rs, err = ms.sync(tree, host, true)
			return err
		})
		progress("redirector host after the %s: %s; switch %v, VmHWM %s", what, rs, took.Round(time.Millisecond), scaleBytes(peak))
		if res.switches != "" {
			res.switches += ", "
		}
		res.switches += fmt.Sprintf("%s %v (%d polls)", what, took.Round(time.Millisecond), polls)
		if took > res.switchTime {
			res.switchTime, res.switchPolls = took, polls
		}
		res.switchPeak = max(res.switchPeak, peak)
		if res.promoHost == (scaleRsync{}) {
			res.promoHost = rs
		}
	}
	syncHost("promotion", moved)
	res.promoMirror = ms.run(b, tree, mirror, false)
	progress("mirror after the promotion: %s (and %d blobs, %s)", res.promoMirror, res.promoMirror.blobFiles, scaleBytes(res.promoMirror.blobSize))

	var healthy int
	res.crawl, healthy = scaleCrawl(b, tree)
	progress("crawl: %v, %d of %d mirrors healthy", res.crawl.Round(time.Millisecond), healthy, listed)
	if healthy != listed {
		b.Errorf("crawl after the promotion found %d of %d mirrors healthy, want all", healthy, listed)
	}
	res.crawlHost = ms.run(b, tree, host, true)
	res.crawlMirror = ms.run(b, tree, mirror, false)
	progress("after the crawl: redirector host %s, mirror %s", res.crawlHost, res.crawlMirror)

	// A second promotion, whose delta compaction merges with the first one's, as it does for
	// most promotions after the first; the slower switch is the figure.
	moved = src.Promote(10)
	res.promo2, _, _ = gen("second 10-tag promotion (delta merged)")
	syncHost("second promotion", moved)

	// More promotions in a row, each after a floor of its own: on a shared machine one
	// promotion against floors measured minutes before moves by a third from run to run;
	// the medians of the floors and of the promotions, measured in turns, do not.
	floorRuns := append([]time.Duration{}, floors...)
	ownRuns := append([]time.Duration{}, own...)
	promoRuns := []time.Duration{res.promo, res.promo2}
	for i := range scaleExtraPromotions {
		ownRuns = append(ownRuns, scaleFloorProcess(b, src, 32))
		floorRuns = append(floorRuns, scaleFloor(b, src, 32))
		src.Promote(10)
		took, _, _ := gen(fmt.Sprintf("promotion %d of %d in turns with a floor", i+3, 2+scaleExtraPromotions))
		promoRuns = append(promoRuns, took)
	}
	res.floorMedian, res.promoMedian = wrkBenchMedian(floorRuns), wrkBenchMedian(promoRuns)
	res.floorOwnMedian = wrkBenchMedian(ownRuns)
	res.promoRuns = fmt.Sprintf("promotions %v, median %v; floors %v, median %v; in a process of its own %v, median %v", wrkBenchRound(promoRuns), res.promoMedian.Round(time.Millisecond),
		wrkBenchRound(floorRuns), res.floorMedian.Round(time.Millisecond), wrkBenchRound(ownRuns), res.floorOwnMedian.Round(time.Millisecond))
	progress("%s: %.2f×, %.2f× in a process of its own", res.promoRuns, res.promoMedian.Seconds()/res.floorMedian.Seconds(), res.promoMedian.Seconds()/res.floorOwnMedian.Seconds())
	return res
}

// scaleExtraPromotions is how many promotions BenchmarkScale runs after the second, each after
// a floor of its own, for the medians its target is checked against.
const scaleExtraPromotions = 3

// scaleChild runs regmirror with args to completion and returns its time, peak RSS and
// standard error. With REGMIRROR_SCALE_WRAP set (a command and its arguments, split at
// spaces, such as "perf record -e page-faults -g -o /tmp/pf.data"), the command runs under
// it: a debugging aid (the time, the peak and the profiles are then the wrapper's too).
func scaleChild(b *testing.B, args ...string) (time.Duration, int64, string) {
	b.Helper()
	return scaleChildOf(b, peers.Regmirror(b), args...)
}

// scaleChildOf is scaleChild with the regmirror binary at bin.
func scaleChildOf(b *testing.B, bin string, args ...string) (time.Duration, int64, string) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Hour)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	if wrap := strings.Fields(os.Getenv("REGMIRROR_SCALE_WRAP")); len(wrap) > 0 {
		cmd = exec.CommandContext(ctx, wrap[0], append(append(wrap[1:], bin), args...)...)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	hwm := watchHWM(cmd.Process.Pid)
	err := cmd.Wait()
	took := time.Since(start)
	if err != nil {
		b.Fatalf("regmirror %s: %v\n%s\n%s", strings.Join(args, " "), err, lastLines(stdout.String(), 20), lastLines(stderr.String(), 20))
	}
	return took, <-hwm << 10, stderr.String()
}

// scalePhases is the durations of the "phases" record (text format) a generate logged on
// stderr: "discover=1.5s await_previous=0s …", or "none logged".
func scalePhases(stderr string) string {
	for line := range strings.Lines(stderr) {
		if _, rest, ok := strings.Cut(line, " msg=phases "); ok {
			return strings.TrimSpace(rest)
		}
	}
	return "none logged"
}

var scaleHealthyRe = regexp.MustCompile(`(\d+) of (\d+) mirrors healthy`)

// scaleCrawl runs regmirror crawl on tree and returns its time and the healthy mirrors it
// reports.
func scaleCrawl(b *testing.B, tree string) (time.Duration, int) {
	b.Helper()
	start := time.Now()
	r := regmirror(b, nil, "crawl", "--tree", tree)
	if r.err != nil {
		b.Fatalf("%v", r)
	}
	m := scaleHealthyRe.FindStringSubmatch(r.stdout + r.stderr)
	if m == nil {
		b.Fatalf("crawl reported no healthy count\n%v", r)
	}
	n, _ := strconv.Atoi(m[1])
	return time.Since(start), n
}

// scaleMirrors starts one nginx serving root on n ports, and the tree on one more as the
// origin, and writes a mirrors file listing a mirror on each, over countries countries
// (wrkBenchCountries) with bandwidths 100 to 1000, and the origin.
func scaleMirrors(b *testing.B, root, tree string, n, countries int) (string, int) {
	b.Helper()
	cfg := &peers.NginxConfig{Dir: b.TempDir()}
	for range n {
		cfg.Servers = append(cfg.Servers, peers.NginxServer{Root: root})
	}
	cfg.Servers = append(cfg.Servers, peers.NginxServer{Root: tree})
	peers.StartNginxConfig(b, cfg)
	var f strings.Builder
	fmt.Fprintf(&f, "origin: http://localhost:%d/\nmirrors:\n", cfg.Servers[n].Port)
	for i, s := range cfg.Servers[:n] {
		c := wrkBenchCountries[i%countries]
		fmt.Fprintf(&f, "  - name: m%02d.%s\n    url: http://localhost:%d/\n    country: %s\n    bandwidth: %d\n", i, strings.ToLower(c), s.Port, c, 100*(1+i%10))
	}
	path := filepath.Join(b.TempDir(), "mirrors.yaml")
	if err := os.WriteFile(path, []byte(f.String()), 0o644); err != nil {
		b.Fatal(err)
	}
	return path, n
}

// scaleSync runs deploy/mirror-sync through an rsync wrapper that adds --no-whole-file (a
// local copy then uses the delta algorithm, as over a network), --stats and a line per file,
// into a log this reads back.
type scaleSync struct {
	script, wrapperDir, log string
}

func newScaleSync(b *testing.B) *scaleSync {
	b.Helper()
	real, err := exec.LookPath("rsync")
	if err != nil {
		b.Fatal("rsync not found: the scale benchmark syncs mirrors with deploy/mirror-sync")
	}
	s := &scaleSync{script: peers.MirrorSyncScript(b), wrapperDir: b.TempDir()}
	s.log = filepath.Join(s.wrapperDir, "rsync.log")
	wrapper := fmt.Sprintf("#!/bin/sh\nexec %s --no-whole-file --stats --out-format='regmirror-bench-file %%n|%%l' \"$@\" >>%s\n", real, s.log)
	if err := os.WriteFile(filepath.Join(s.wrapperDir, "rsync"), []byte(wrapper), 0o755); err != nil {
		b.Fatal(err)
	}
	return s
}

var scaleLiteralRe = regexp.MustCompile(`(?m)^Literal data: ([\d,]+) bytes`)

// run syncs tree to dst (with --meta-only if meta) and returns what rsync moved.
func (s *scaleSync) run(b *testing.B, tree, dst string, meta bool) scaleRsync {
	b.Helper()
	r, err := s.sync(tree, dst, meta)
	if err != nil {
		b.Fatal(err)
	}
	return r
}

// sync is run returning its failure, for a goroutine.
func (s *scaleSync) sync(tree, dst string, meta bool) (scaleRsync, error) {
	if err := os.WriteFile(s.log, nil, 0o644); err != nil {
		return scaleRsync{}, err
	}
	args := []string{}
	if meta {
		args = append(args, "--meta-only")
	}
	cmd := exec.Command(s.script, append(args, tree, dst)...)
	cmd.Env = append(os.Environ(), "PATH="+s.wrapperDir+":"+os.Getenv("PATH"))
	if out, err := cmd.CombinedOutput(); err != nil {
		return scaleRsync{}, fmt.Errorf("mirror-sync %s: %v\n%s", strings.Join(cmd.Args[1:], " "), err, out)
	}
	raw, err := os.ReadFile(s.log)
	if err != nil {
		return scaleRsync{}, err
	}
	var r scaleRsync
	var literal int64
	sc := bufio.NewScanner(bytes.NewReader(raw))
	for sc.Scan() {
		line := sc.Text()
		if m := scaleLiteralRe.FindStringSubmatch(line); m != nil {
			n, _ := strconv.ParseInt(strings.ReplaceAll(m[1], ",", ""), 10, 64)
			literal += n
			continue
		}
		rest, ok := strings.CutPrefix(line, "regmirror-bench-file ")
		if !ok {
			continue
		}
		name, size, _ := strings.Cut(rest, "|")
		if strings.HasSuffix(name, "/") { // a directory
			continue
		}
		n, _ := strconv.ParseInt(strings.ReplaceAll(size, ",", ""), 10, 64)
		if !meta && strings.HasPrefix(name, "blobs/") {
			r.blobFiles++
			r.blobSize += n
		} else {
			r.files++
			r.size += n
		}
	}
	// A blob is a new file (content-addressed, never changed): rsync has no basis for it and
	// sends it whole, so its literal data is its size.
	r.literal = literal - r.blobSize
	return r, nil
}

// scaleSwitch runs update (a sync of the redirector host's copy, or a publish) in a goroutine
// while serve runs on host's tree, and returns the switch time: from the moment update
// renames host's regmirror/live (its switch; the end of update if host has no such link)
// until the first moved tag answers its new digest, polled every 2 ms (and the polls made);
// and serve's VmHWM in the switch, reset before it (/proc/<pid>/clear_refs) so that it is the
// switch's peak, not the load's. It returns once update has returned too, having checked that
// every moved tag answers its new digest.
func scaleSwitch(b *testing.B, srv *scaleServer, host string, movedTags []scaleMoved, update func() error) (time.Duration, int, int64) {
	b.Helper()
	if err := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", srv.pid), []byte("5"), 0); err != nil {
		b.Logf("cannot reset serve's VmHWM (%v): the peak after the switch includes the load's", err)
	}
	moved := movedTags[0]
	live := filepath.Join(host, "regmirror", "live")
	before, linkErr := os.Readlink(live)
	ch := make(chan error, 1)
	go func() { ch <- update() }()
	var (
		switched time.Time
		took     time.Duration
		polls    int
		synced   bool
	)
	for took == 0 {
		if !synced {
			select {
			case err := <-ch:
				if err != nil {
					b.Fatal(err)
				}
				synced = true
			default:
			}
		}
		if switched.IsZero() {
			if l, err := os.Readlink(live); linkErr == nil && err == nil && l != before {
				switched = time.Now()
			} else if synced {
				switched = time.Now()
			}
		}
		if !switched.IsZero() {
			polls++
			if scaleHeadTag(b, srv.url, moved.Repo, moved.Tag) == moved.Digest {
				took = time.Since(switched)
				break
			}
			select {
			case <-srv.proc.Done():
				b.Fatalf("regmirror serve exited: %v\n%s", srv.proc.Err(), peers.Tail(srv.proc.Log, 30))
			default:
			}
			if time.Since(switched) > 5*time.Minute {
				b.Fatalf("regmirror serve: %s:%s not %s 5 minutes after the switch\n%s", moved.Repo, moved.Tag, moved.Digest, peers.Tail(srv.proc.Log, 30))
			}
		}
		time.Sleep(2 * time.Millisecond)
	}
	if !synced {
		if err := <-ch; err != nil {
			b.Fatal(err)
		}
	}
	_, peak := wrkBenchProcStatus(b, srv.pid)
	for _, m := range movedTags {
		if got := scaleHeadTag(b, srv.url, m.Repo, m.Tag); got != m.Digest {
			b.Errorf("serve after the switch: %s:%s answers %q, want %s", m.Repo, m.Tag, got, m.Digest)
		}
	}
	return took, polls, peak
}

// scaleServer is regmirror serve on a redirector host's copy.
type scaleServer struct {
	url   string
	pid   int
	ready time.Duration
	proc  *peers.Process
}

func scaleServeCmd(bin, tree string, port int) *exec.Cmd {
	cmd := exec.Command(bin, "serve", "--tree", tree, "--listen", "127.0.0.1:"+strconv.Itoa(port), "--access-log=false")
	cmd.Env = append(os.Environ(), "GOMAXPROCS="+strconv.Itoa(min(runtime.NumCPU(), 2)))
	return cmd
}

// scaleServe starts regmirror serve on tree and waits until repo:tag answers digest.
func scaleServe(b *testing.B, tree, repo, tag, digest string) *scaleServer {
	b.Helper()
	port := peers.FreePort(b)
	s := &scaleServer{url: "http://127.0.0.1:" + strconv.Itoa(port)}
	start := time.Now()
	s.proc = peers.Start(b, "regmirror-serve", scaleServeCmd(peers.Regmirror(b), tree, port), nil)
	s.pid = s.proc.Cmd.Process.Pid
	s.ready, _ = s.waitFor(b, repo, tag, digest, start)
	return s
}

// waitFor polls repo:tag every 2 ms until it answers digest, and returns the time since
// start and the polls made. It fails after 5 minutes or if serve exits.
func (s *scaleServer) waitFor(b *testing.B, repo, tag, digest string, start time.Time) (time.Duration, int) {
	b.Helper()
	for polls := 1; ; polls++ {
		if scaleHeadTag(b, s.url, repo, tag) == digest {
			return time.Since(start), polls
		}
		select {
		case <-s.proc.Done():
			b.Fatalf("regmirror serve exited: %v\n%s", s.proc.Err(), peers.Tail(s.proc.Log, 30))
		default:
		}
		if time.Since(start) > 5*time.Minute {
			b.Fatalf("regmirror serve: %s:%s not %s after 5 minutes\n%s", repo, tag, digest, peers.Tail(s.proc.Log, 30))
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// scaleFloor is the floor of a no-op: the catalog (pages of 1000), every repository's tag
// list, jobs at a time, then one manifest HEAD per tag, jobs in flight (headFloor), from a
// bare Go client in this process, the source's.
func scaleFloor(b *testing.B, src *scaleSource, jobs int) time.Duration {
	b.Helper()
	took, err := floorRun(src.URL, src.Tags(), jobs, false)
	if err != nil {
		b.Fatal(err)
	}
	return took
}

// scaleFloorPipelined is scaleFloor with the HEADs pipelined as generate sends them
// (headFloorPipelined), reported beside the floor: what the same requests cost when sent
// the way generate sends them.
func scaleFloorPipelined(b *testing.B, src *scaleSource, jobs int) time.Duration {
	b.Helper()
	took, err := floorRun(src.URL, src.Tags(), jobs, true)
	if err != nil {
		b.Fatal(err)
	}
	return took
}

// floorRun is scaleFloor's work: it lists source's catalog and tags and HEADs every tag
// (headFloorRun, or headFloorPipelined when pipelined), and fails unless it lists want tags.
func floorRun(source string, want, jobs int, pipelined bool) (time.Duration, error) {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: jobs}, Timeout: time.Minute}
	defer client.CloseIdleConnections()
	getJSON := func(u string, v any) (string, error) {
		resp, err := client.Get(u)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return "", fmt.Errorf("GET %s: %s", u, resp.Status)
		}
		next := ""
		if l := resp.Header.Get("Link"); l != "" {
			next = source + strings.Trim(strings.Split(l, ";")[0], "<>")
		}
		return next, json.NewDecoder(resp.Body).Decode(v)
	}
	start := time.Now()
	var repos []string
	for next := source + "/v2/_catalog?n=1000"; next != ""; {
		var page struct{ Repositories []string }
		var err error
		if next, err = getJSON(next, &page); err != nil {
			return 0, err
		}
		repos = append(repos, page.Repositories...)
	}
	refs := make([]testimages.Ref, len(repos))
	errs := make([]error, len(repos))
	work := make(chan int)
	var wg sync.WaitGroup
	for range jobs {
		wg.Go(func() {
			for i := range work {
				refs[i].Repo = repos[i]
				for next := source + "/v2/" + repos[i] + "/tags/list"; next != "" && errs[i] == nil; {
					var page struct{ Tags []string }
					next, errs[i] = getJSON(next, &page)
					refs[i].Tags = append(refs[i].Tags, page.Tags...)
				}
			}
		})
	}
	for i := range repos {
		work <- i
	}
	close(work)
	wg.Wait()
	listed := time.Since(start)
	tags := 0
	for i, err := range errs {
		if err != nil {
			return 0, err
		}
		tags += len(refs[i].Tags)
	}
	if tags != want {
		return 0, fmt.Errorf("floor: %d tags listed, want %d", tags, want)
	}
	heads := headFloorRun
	if pipelined {
		heads = func(source string, refs []testimages.Ref, jobs int) (time.Duration, error) {
			return headFloorPipelined(source, refs, jobs, generator.PipelineDepth)
		}
	}
	took, err := heads(source, refs, jobs)
	return listed + took, err
}

// scaleMedianOf3 runs measure three times and returns the median and the three runs.
func scaleMedianOf3(measure func() time.Duration) (time.Duration, []time.Duration) {
	runs := []time.Duration{measure(), measure(), measure()}
	return wrkBenchMedian(runs), runs
}

// floorChildEnv, when set in this test binary's environment ("URL TAGS JOBS"), makes it run
// floorRun against URL and exit instead of running tests (TestMain): the floor in a process
// of its own (scaleFloorProcess).
const floorChildEnv = "REGMIRROR_FLOOR_CHILD"

// floorChild runs the floor floorChildEnv describes, its errors written to stderr; it returns
// the process's exit code.
func floorChild(spec string, stderr io.Writer) int {
	var (
		source     string
		want, jobs int
	)
	if _, err := fmt.Sscan(spec, &source, &want, &jobs); err != nil {
		fmt.Fprintf(stderr, "%s=%q: want \"URL TAGS JOBS\": %v\n", floorChildEnv, spec, err)
		return 2
	}
	if _, err := floorRun(source, want, jobs, false); err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	return 0
}

// scaleFloorProcess is scaleFloor in a process of its own (this test binary, floorChild),
// timed from its start to its exit as scaleChild times a regmirror command: the floor of a
// command that, like it, starts with an empty heap and shares no runtime with the source.
func scaleFloorProcess(b testing.TB, src *scaleSource, jobs int) time.Duration {
	b.Helper()
	self, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(self, "-test.run", "^$")
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s %d %d", floorChildEnv, src.URL, src.Tags(), jobs))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err = cmd.Run()
	took := time.Since(start)
	if err != nil {
		b.Fatalf("floor in a process of its own: %v: %s", err, out.String())
	}
	return took
}

// scaleTarget is one figure of a result, with issue 10's bound on it if it sets one.
type scaleTarget struct {
	name, unit, bound string
	limit             float64
	get               func(r *scaleResult) float64
}

// scaleTargets are BenchmarkScale's figures: generate's, then serve's (scaleServeTargets).
var scaleTargets = slices.Concat([]scaleTarget{
	{"full generate", "s", "", 0, func(r *scaleResult) float64 { return r.fullGen.Seconds() }},
	{"generate peak RSS", "MiB", "<= 512 MiB at 90k", 512, func(r *scaleResult) float64 { return float64(r.fullPeak) / (1 << 20) }},
	{"floor (catalog+lists+HEADs)", "s", "", 0, func(r *scaleResult) float64 { return r.floor.Seconds() }},
	{"no-op re-run", "s", "", 0, func(r *scaleResult) float64 { return r.noop.Seconds() }},
	{"no-op / floor", "x", "", 0, func(r *scaleResult) float64 { return r.noop.Seconds() / r.floor.Seconds() }},
	{"10-tag promotion", "s", "", 0, func(r *scaleResult) float64 { return r.promo.Seconds() }},
	{"promotion / floor", "x", "", 0, func(r *scaleResult) float64 { return r.promo.Seconds() / r.floor.Seconds() }},
	{"floor, own process", "s", "", 0, func(r *scaleResult) float64 { return r.floorOwn.Seconds() }},
	{"promotion / floor, own process", "x", "", 0, func(r *scaleResult) float64 { return r.promo.Seconds() / r.floorOwn.Seconds() }},
	{"floor, HEADs pipelined", "s", "", 0, func(r *scaleResult) float64 { return r.floorPiped.Seconds() }},
	{"promotion / floor, HEADs pipelined", "x", "", 0, func(r *scaleResult) float64 { return r.promo.Seconds() / r.floorPiped.Seconds() }},
	{"promotion peak RSS", "MiB", "", 0, func(r *scaleResult) float64 { return float64(r.promoPeak) / (1 << 20) }},
	{"second promotion (delta merged)", "s", "", 0, func(r *scaleResult) float64 { return r.promo2.Seconds() }},
	{"second promotion / floor", "x", "", 0, func(r *scaleResult) float64 { return r.promo2.Seconds() / r.floor.Seconds() }},
	{fmt.Sprintf("promotions (median of %d)", 2+scaleExtraPromotions), "s", "", 0, func(r *scaleResult) float64 { return r.promoMedian.Seconds() }},
	{fmt.Sprintf("floors in turns (median of %d)", 3+scaleExtraPromotions), "s", "", 0, func(r *scaleResult) float64 { return r.floorMedian.Seconds() }},
	{"promotion / floor, medians", "x", "<= 1.5", 1.5, func(r *scaleResult) float64 { return r.promoMedian.Seconds() / r.floorMedian.Seconds() }},
	{fmt.Sprintf("floors in a process of their own in turns (median of %d)", 3+scaleExtraPromotions), "s", "", 0, func(r *scaleResult) float64 { return r.floorOwnMedian.Seconds() }},
	{"promotion / floor in a process of its own, medians", "x", "<= 1.5", 1.5, func(r *scaleResult) float64 { return r.promoMedian.Seconds() / r.floorOwnMedian.Seconds() }},
	{"rsync after promotion, mirror", "KiB", "<= 1024 KiB", 1024, func(r *scaleResult) float64 { return float64(r.promoMirror.literal) / 1024 }},
	{"rsync after promotion, redirector host", "KiB", "<= 1024 KiB", 1024, func(r *scaleResult) float64 { return float64(r.promoHost.literal) / 1024 }},
	{"crawl", "s", "", 0, func(r *scaleResult) float64 { return r.crawl.Seconds() }},
	{"rsync after crawl, mirror", "KiB", "<= 256 KiB", 256, func(r *scaleResult) float64 { return float64(r.crawlMirror.literal) / 1024 }},
	{"rsync after crawl, redirector host", "KiB", "<= 256 KiB", 256, func(r *scaleResult) float64 { return float64(r.crawlHost.literal) / 1024 }},
}, scaleServeTargets)

// scaleServeTargets are serve's figures (BenchmarkScale's and BenchmarkServeScale's).
var scaleServeTargets = []scaleTarget{
	{"serve ready", "s", "<= 10 s", 10, func(r *scaleResult) float64 { return r.ready.Seconds() }},
	{"serve RSS (steady)", "MiB", "<= 1024 MiB", 1024, func(r *scaleResult) float64 { return float64(r.rss) / (1 << 20) }},
	{"serve peak at load (VmHWM)", "MiB", "", 0, func(r *scaleResult) float64 { return float64(r.peak) / (1 << 20) }},
	{"serve peak in the switch", "MiB", "", 0, func(r *scaleResult) float64 { return float64(r.switchPeak) / (1 << 20) }},
	{"serve switch peak / steady", "x", "<= 1.25", 1.25, func(r *scaleResult) float64 { return float64(r.switchPeak) / float64(r.rss) }},
	{"switch after promotion (the slower)", "s", "<= 1 s", 1, func(r *scaleResult) float64 { return r.switchTime.Seconds() }},
}

// report reports every figure of targets as a metric.
func (r *scaleResult) report(b *testing.B, targets []scaleTarget) {
	for _, t := range targets {
		unit := strings.NewReplacer(" ", "-", "(", "", ")", "", "+", "-", ",", "", "/", "per").Replace(t.name) + "-" + t.unit
		b.ReportMetric(t.get(r), unit)
	}
	b.ReportMetric(float64(r.manifests), "manifests")
}

// scaleTable prints, under title, targets' figures of the sizes side by side, the growth
// from each size to the next, and each figure of the largest size against its target, then
// detail's lines about each size.
func scaleTable(title string, rs []*scaleResult, targets []scaleTarget, detail func(*scaleResult) string) string {
	if len(rs) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString(title + "\n")
	fmt.Fprintf(&b, "| figure |")
	for _, r := range rs {
		fmt.Fprintf(&b, " %d manifests |", r.manifests)
	}
	for i := 1; i < len(rs); i++ {
		fmt.Fprintf(&b, " growth ×%.0f |", float64(rs[i].manifests)/float64(rs[i-1].manifests))
	}
	b.WriteString(" target | largest vs target |\n|---|")
	b.WriteString(strings.Repeat("---|", 2*len(rs)+1) + "\n")
	for _, t := range targets {
		fmt.Fprintf(&b, "| %s (%s) |", t.name, t.unit)
		for _, r := range rs {
			fmt.Fprintf(&b, " %.3g |", t.get(r))
		}
		for i := 1; i < len(rs); i++ {
			fmt.Fprintf(&b, " %.2f |", t.get(rs[i])/t.get(rs[i-1]))
		}
		verdict := ""
		if t.limit > 0 {
			v := t.get(rs[len(rs)-1])
			mark := "met"
			if v > t.limit {
				mark = "NOT met"
			}
			verdict = fmt.Sprintf("%.2f× the bound, %s", v/t.limit, mark)
		}
		fmt.Fprintf(&b, " %s | %s |\n", t.bound, verdict)
	}
	for _, r := range rs {
		b.WriteString(detail(r) + "\n")
	}
	return b.String()
}

// detail is BenchmarkScale's lines about one size.
func (r *scaleResult) detail() string {
	return fmt.Sprintf("%d manifests (%d repositories × %d tags): mirrors healthy %d of %d; switches: %s\n  %s\n  no-op requests: %s\n  promotion requests: %s\n  rsync after promotion: mirror %s + %d blobs (%s); redirector host %s\n  rsync after crawl: mirror %s; redirector host %s",
		r.manifests, r.repos, r.tags/r.repos, r.mirrorsHealthy, r.mirrorsListed, r.switches, r.promoRuns, r.noopRequests, r.promoRequests,
		r.promoMirror, r.promoMirror.blobFiles, scaleBytes(r.promoMirror.blobSize), r.promoHost, r.crawlMirror, r.crawlHost)
}
