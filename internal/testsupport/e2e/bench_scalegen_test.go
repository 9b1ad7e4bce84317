package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime/pprof"
	"syscall"
	"testing"
	"time"

	"github.com/regmirror/regmirror/generator"
)

// BenchmarkScaleGenerate is generate alone at scale: generator.Run in this process against
// the scale benchmark's source (scaleSource), without mirrors, so that what it measures is
// the generator's own cost and the metadata's, not the mirror network's per-region data. It
// reports the full generation, the floor (as BenchmarkScale measures it), a no-op re-run and
// a promotion of 10 tags, the last two as × floor. REGMIRROR_SCALE_MANIFESTS sets the size
// (default 9000); REGMIRROR_PROFILE_DIR, when set, receives a CPU profile of each step
// (cpu.<step>.pprof). The CPU time of each step (this process's, the source's included: it
// answers the same requests before and after a change) moves less than its time on a shared
// machine.
func BenchmarkScaleGenerate(b *testing.B) {
	repos, perRepo := scaleShape(scaleManifests(b, 9000))
	for range b.N {
		src := newScaleSource(b, repos, perRepo)
		tree := filepath.Join(b.TempDir(), "tree")
		gen := func(step string) (time.Duration, time.Duration) {
			b.Helper()
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
			if _, err := generator.Run(context.Background(), generator.Options{Source: src.URL, Out: tree}); err != nil {
				b.Fatalf("%s generate: %v", step, err)
			}
			took, used := time.Since(start), processCPU(b)-cpu
			scaleProgress(3*repos*perRepo, "%s generate (in process, no mirrors): %v, CPU %v", step, took.Round(time.Millisecond), used.Round(time.Millisecond))
			return took, used
		}
		full, _ := gen("full")
		var floors []time.Duration
		for range 3 {
			floors = append(floors, scaleFloor(b, src, 32))
		}
		floor := wrkBenchMedian(floors)
		noop, noopCPU := gen("no-op")
		src.Promote(10)
		promo, promoCPU := gen("promotion")
		fmt.Printf("scale %d manifests: generate alone: full %v; floor %v; no-op %.1f× floor (CPU %v), promotion %.1f× floor (CPU %v)\n",
			3*repos*perRepo, full.Round(time.Millisecond), floor.Round(time.Millisecond), noop.Seconds()/floor.Seconds(), noopCPU.Round(time.Millisecond), promo.Seconds()/floor.Seconds(), promoCPU.Round(time.Millisecond))
		b.ReportMetric(full.Seconds(), "full-generate-s")
		b.ReportMetric(floor.Seconds(), "floor-s")
		b.ReportMetric(noop.Seconds()/floor.Seconds(), "no-op-per-floor-x")
		b.ReportMetric(promo.Seconds()/floor.Seconds(), "promotion-per-floor-x")
		b.ReportMetric(noopCPU.Seconds(), "no-op-CPU-s")
		b.ReportMetric(promoCPU.Seconds(), "promotion-CPU-s")
	}
}

// processCPU is the CPU time (user and system) this process used so far.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
