package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/regmirror/regmirror/generator"
	"github.com/regmirror/regmirror/internal/testsupport/peers"
)

// BenchmarkScaleGenerate is generate alone at scale: generator.Run in this process against
// the scale benchmark's source (scaleSource), without mirrors, so that what it measures is
// the generator's own cost and the metadata's, not the mirror network's per-region data. It
// reports the full generation, the floor (as BenchmarkScale measures it), a no-op re-run and
// a promotion of 10 tags (REGMIRROR_SCALEGEN_PROMOTIONS of them in a row, their medians
// reported), the last two as × floor. REGMIRROR_SCALE_MANIFESTS sets the size
// (default 9000); REGMIRROR_PROFILE_DIR, when set, receives a CPU profile of each step
// (cpu.<step>.pprof). The CPU time of each step (this process's, the source's included: it
// answers the same requests before and after a change) moves less than its time on a shared
// machine. With REGMIRROR_SCALEGEN_CACHE=DIR, the full generation is made once and kept in
// DIR (which must not exist yet), and later runs start from a copy of it (cp -a, which keeps
// the times the settled record checks): the no-op and the promotion without the full
// generation's minutes, for before-and-after comparisons at one size (the source is
// deterministic; a cache made at another REGMIRROR_SCALE_MANIFESTS would make the no-op a
// large promotion: keep one per size). With REGMIRROR_SCALEGEN_PROCESS=1 every step runs as
// `regmirror generate` in a process of its own (as BenchmarkScale runs it: its heap starts
// empty), its CPU time added to this process's; the promotion's own CPU time is then also
// reported against the floor client's in a process of its own, and
// REGMIRROR_SCALEGEN_COMPARE=PATH runs every second promotion with the regmirror binary at
// PATH, an A/B in turns in one run (docs/benchmarks.md). With REGMIRROR_SCALEGEN_MIRRORS=1
// every step is given BenchmarkScale's 50 mirrors, crawled healthy after the full
// generation: its promotions then do what BenchmarkScale's do (scaleGenMirrors).
func BenchmarkScaleGenerate(b *testing.B) {
	repos, perRepo := scaleShape(scaleManifests(b, 9000))
	child := os.Getenv("REGMIRROR_SCALEGEN_PROCESS") != ""
	compare := os.Getenv("REGMIRROR_SCALEGEN_COMPARE")
	if compare != "" && !child {
		b.Fatal("REGMIRROR_SCALEGEN_COMPARE needs REGMIRROR_SCALEGEN_PROCESS=1: it runs another regmirror binary")
	}
	withMirrors := os.Getenv("REGMIRROR_SCALEGEN_MIRRORS") != ""
	network := "no mirrors" // for the progress lines
	if withMirrors {
		network = "50 mirrors"
	}
	for range b.N {
		src := newScaleSource(b, repos, perRepo)
		tree := filepath.Join(b.TempDir(), "tree")
		packs := filepath.Join(b.TempDir(), "packs") // --cache-dir, as the command's default gives one
		cache := os.Getenv("REGMIRROR_SCALEGEN_CACHE")
		// With REGMIRROR_SCALEGEN_MIRRORS, every step is given BenchmarkScale's mirrors file
		// (50 mirrors in 30 countries), and the full generation is crawled once, with every
		// mirror healthy (each serves the tree itself), as BenchmarkScale's tree is before
		// its promotions. A cached tree keeps its mirrors file beside it (CACHE.mirrors.yaml):
		// its mirrors' addresses are the tree's, and generate never asks them anything.
		var mirrorsFile string
		var mirrorsArgs []string
		if withMirrors {
			mirrorsFile = scaleGenMirrors(b, tree, cache)
			mirrorsArgs = []string{"--mirrors", mirrorsFile}
		}
		// gen runs one step, with the regmirror binary at bin ("": the checkout's); it
		// returns its time, the CPU time of this process and its children meanwhile (the
		// source's included), and, in a process of its own, the command's CPU time alone (0
		// in process).
		gen := func(step, bin string) (time.Duration, time.Duration, time.Duration) {
			b.Helper()
			if child {
				// The command in a process of its own, as BenchmarkScale runs it: its heap
				// starts empty (every page it touches is a fresh one), and it writes its own
				// profile (REGMIRROR_PROFILE_DIR).
				self, children, faults := processCPU(b), childrenCPU(b), childrenFaults(b)
				name := bin
				if bin == "" {
					bin, name = peers.Regmirror(b), "regmirror"
				}
				took, peak, stderr := scaleChildOf(b, bin, append([]string{"generate", "--source", src.URL, "--out", tree, "--cache-dir", packs}, mirrorsArgs...)...)
				own := childrenCPU(b) - children
				used := own + processCPU(b) - self
				scaleProgress(3*repos*perRepo, "%s generate (%s generate, %s): %v, CPU %v (its own %v, the source's %v), peak %d MiB, %d minor page faults; phases: %s",
					step, name, network, took.Round(time.Millisecond), used.Round(time.Millisecond), own.Round(time.Millisecond), (used - own).Round(time.Millisecond), peak>>20, childrenFaults(b)-faults, scalePhases(stderr))
				return took, used, own
			}
			if dir := os.Getenv("REGMIRROR_PROFILE_DIR"); dir != "" {
				f, err := os.Create(filepath.Join(dir, "cpu."+step+".pprof"))
				if err != nil {
					b.Fatal(err)
				}
				defer f.Close()
				if err := pprof.StartCPUProfile(f); err != nil {
					b.Fatal(err)
				}
				defer pprof.StopCPUProfile()
			}
			start, cpu := time.Now(), processCPU(b)
			sum, err := generator.Run(context.Background(), generator.Options{Source: src.URL, Out: tree, CacheDir: packs, MirrorsFile: mirrorsFile})
			if err != nil {
				b.Fatalf("%s generate: %v", step, err)
			}
			took, used := time.Since(start), processCPU(b)-cpu
			var phases []string
			for _, p := range sum.Phases {
				phases = append(phases, p.Name+"="+p.Took.Round(time.Millisecond).String())
			}
			scaleProgress(3*repos*perRepo, "%s generate (in process, %s): %v, CPU %v; phases: %s", step, network, took.Round(time.Millisecond), used.Round(time.Millisecond), strings.Join(phases, " "))
			return took, used, 0
		}
		var full time.Duration
		fullGen := func() {
			full, _, _ = gen("full", "")
			if withMirrors {
				took, healthy := scaleCrawl(b, tree)
				scaleProgress(3*repos*perRepo, "crawl: %v, %d of 50 mirrors healthy", took.Round(time.Millisecond), healthy)
				if healthy != 50 {
					b.Fatalf("crawl found %d of 50 mirrors healthy, want all", healthy)
				}
			}
		}
		if cache == "" {
			fullGen()
		} else {
			if _, err := os.Stat(cache); err != nil {
				fullGen()
				copyTree(b, tree, cache)
			} else {
				copyTree(b, cache, tree)
			}
		}
		floor, floorCPU := medianWithCPUOf3(processCPU, b, func() time.Duration { return scaleFloor(b, src, 32) })
		// The floor in a process of its own, and that client's own CPU time: with
		// REGMIRROR_SCALEGEN_PROCESS, what generate's own CPU time compares with (a figure
		// that moves less than times on a shared machine).
		own, clientCPU := medianWithCPUOf3(childrenCPU, b, func() time.Duration { return scaleFloorProcess(b, src, 32) })
		piped, pipedCPU := medianWithCPUOf3(processCPU, b, func() time.Duration { return scaleFloorPipelined(b, src, 32) })
		noop, noopCPU, _ := gen("no-op", "")
		// REGMIRROR_SCALEGEN_PROMOTIONS promotions in a row (the first one's delta pack
		// appended, the later ones' merged), their medians reported. With
		// REGMIRROR_SCALEGEN_COMPARE=PATH every second one (the second, the fourth, ...) runs
		// the regmirror binary at PATH instead, on the same tree and source: an A/B in one
		// run, in turns, whose medians are reported apart (the figures above are the
		// checkout's).
		var promos, promoCPUs, promoOwns, otherTimes, otherOwns []time.Duration
		for i := range scalePromotions(b) {
			src.Promote(10)
			step := "promotion"
			if i > 0 {
				step = fmt.Sprintf("promotion-%d", i+1)
			}
			if compare != "" && i%2 == 1 {
				took, _, own := gen(step, compare)
				otherTimes, otherOwns = append(otherTimes, took), append(otherOwns, own)
				continue
			}
			took, cpu, own := gen(step, "")
			promos, promoCPUs, promoOwns = append(promos, took), append(promoCPUs, cpu), append(promoOwns, own)
		}
		promo, promoCPU, promoOwn := wrkBenchMedian(promos), wrkBenchMedian(promoCPUs), wrkBenchMedian(promoOwns)
		if len(otherOwns) > 0 {
			other, otherOwn := wrkBenchMedian(otherTimes), wrkBenchMedian(otherOwns)
			fmt.Printf("scale %d manifests: compared in turns, medians: the checkout's promotion %v, its CPU %v (%d runs); %s's %v, its CPU %v (%d runs): time %.3f×, CPU %.3f× the checkout's\n",
				3*repos*perRepo, promo.Round(time.Millisecond), promoOwn.Round(time.Millisecond), len(promoOwns), compare, other.Round(time.Millisecond), otherOwn.Round(time.Millisecond), len(otherOwns),
				other.Seconds()/promo.Seconds(), otherOwn.Seconds()/promoOwn.Seconds())
		}
		fmt.Printf("scale %d manifests: generate alone: full %v; floor %v (CPU %v, client and source), in a process of its own %v (the client's CPU %v); no-op %.1f× floor (CPU %v), promotion %.1f× floor, %.1f× its own process's (CPU %v)\n",
			3*repos*perRepo, full.Round(time.Millisecond), floor.Round(time.Millisecond), floorCPU.Round(time.Millisecond), own.Round(time.Millisecond), clientCPU.Round(time.Millisecond),
			noop.Seconds()/floor.Seconds(), noopCPU.Round(time.Millisecond), promo.Seconds()/floor.Seconds(), promo.Seconds()/own.Seconds(), promoCPU.Round(time.Millisecond))
		fmt.Printf("scale %d manifests: the floor with its HEADs pipelined as generate sends them: %v (CPU %v, client and source); promotion %.1f× it\n",
			3*repos*perRepo, piped.Round(time.Millisecond), pipedCPU.Round(time.Millisecond), promo.Seconds()/piped.Seconds())
		b.ReportMetric(piped.Seconds(), "floor-pipelined-s")
		b.ReportMetric(promo.Seconds()/piped.Seconds(), "promotion-per-pipelined-floor-x")
		if child {
			fmt.Printf("scale %d manifests: the promotion's generate used %v of CPU, %.2f× the floor client's in a process of its own (%v)\n",
				3*repos*perRepo, promoOwn.Round(time.Millisecond), promoOwn.Seconds()/clientCPU.Seconds(), clientCPU.Round(time.Millisecond))
			b.ReportMetric(clientCPU.Seconds(), "floor-own-process-client-CPU-s")
			b.ReportMetric(promoOwn.Seconds(), "promotion-generate-CPU-s")
			b.ReportMetric(promoOwn.Seconds()/clientCPU.Seconds(), "promotion-CPU-per-floor-client-CPU-x")
		}
		b.ReportMetric(full.Seconds(), "full-generate-s")
		b.ReportMetric(floor.Seconds(), "floor-s")
		b.ReportMetric(floorCPU.Seconds(), "floor-cpu-s")
		b.ReportMetric(own.Seconds(), "floor-own-process-s")
		b.ReportMetric(promo.Seconds()/own.Seconds(), "promotion-per-own-process-floor-x")
		b.ReportMetric(noop.Seconds()/floor.Seconds(), "no-op-per-floor-x")
		b.ReportMetric(promo.Seconds()/floor.Seconds(), "promotion-per-floor-x")
		b.ReportMetric(noopCPU.Seconds(), "no-op-CPU-s")
		b.ReportMetric(promoCPU.Seconds(), "promotion-CPU-s")
	}
}

// medianWithCPUOf3 runs measure three times and returns the median of the times it gives and
// the median of the CPU time cpu counts across each run.
func medianWithCPUOf3(cpu func(*testing.B) time.Duration, b *testing.B, measure func() time.Duration) (time.Duration, time.Duration) {
	var took, used []time.Duration
	for range 3 {
		before := cpu(b)
		took = append(took, measure())
		used = append(used, cpu(b)-before)
	}
	return wrkBenchMedian(took), wrkBenchMedian(used)
}

// scaleGenMirrors returns BenchmarkScaleGenerate's mirrors file for tree: with no cache or a
// cache still to make, 50 mirrors in 30 countries, each an nginx server of tree
// (scaleMirrors), the file also kept beside the cache; with a cache made, the file kept
// beside it (its servers are gone: generate never asks the mirrors anything).
func scaleGenMirrors(b *testing.B, tree, cache string) string {
	b.Helper()
	kept := cache + ".mirrors.yaml"
	if cache != "" {
		if _, err := os.Stat(cache); err == nil {
			if _, err := os.Stat(kept); err != nil {
				b.Fatalf("REGMIRROR_SCALEGEN_MIRRORS with the cache %s, made without mirrors (no %s): use another cache", cache, kept)
			}
			return kept
		}
	}
	path, _ := scaleMirrors(b, tree, tree, 50, 30)
	if cache == "" {
		return path
	}
	data, err := os.ReadFile(path)
	if err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(kept, data, 0o644); err != nil {
		b.Fatal(err)
	}
	return kept
}

// scalePromotions is how many promotions BenchmarkScaleGenerate runs in a row:
// REGMIRROR_SCALEGEN_PROMOTIONS, 1 by default.
func scalePromotions(b *testing.B) int {
	v := os.Getenv("REGMIRROR_SCALEGEN_PROMOTIONS")
	if v == "" {
		return 1
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		b.Fatalf("REGMIRROR_SCALEGEN_PROMOTIONS=%q: want a number of promotions, 1 or more", v)
	}
	return n
}

// copyTree copies the tree from to to (which must not exist), times included.
func copyTree(b testing.TB, from, to string) {
	b.Helper()
	if out, err := exec.Command("cp", "-a", from, to).CombinedOutput(); err != nil {
		b.Fatalf("copying %s to %s: %v: %s", from, to, err, out)
	}
}

// processCPU is the CPU time (user and system) this process used so far.
func processCPU(b *testing.B) time.Duration { return rusageCPU(b, syscall.RUSAGE_SELF) }

// childrenCPU is the CPU time (user and system) of this process's children waited for so far.
func childrenCPU(b *testing.B) time.Duration { return rusageCPU(b, syscall.RUSAGE_CHILDREN) }

// childrenFaults is the minor page faults of this process's children waited for so far:
// each the first touch of a page (docs/benchmarks.md: 12 to 14 µs each on the virtual
// machines these benchmarks ran on).
func childrenFaults(b *testing.B) int64 { return rusage(b, syscall.RUSAGE_CHILDREN).Minflt }

// rusageCPU is the CPU time (user and system) getrusage(2) gives for who.
func rusageCPU(b *testing.B, who int) time.Duration {
	ru := rusage(b, who)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// rusage is getrusage(2) for who.
func rusage(b *testing.B, who int) syscall.Rusage {
	b.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(who, &ru); err != nil {
		b.Fatal(err)
	}
	return ru
}
