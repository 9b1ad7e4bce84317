package main

import (
	"context"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
)

// serveHeadroom is how much serve's heap may grow between two collections. Go's collector
// runs when the heap has grown by GOGC per cent of what the last one found live, and at 4 MiB
// at the least: a redirector of a small tree (a few MiB live) would collect every thousand
// requests or so and mark its whole heap each time, about 6% of a 307's instructions. With
// 16 MiB of headroom it collects several times less often; a heap of 16 MiB or more keeps
// GOGC=100. A larger heap between collections costs cache misses and page faults: a 64 MiB
// ballast, and a goal of 56-92 MiB for a 1 MiB heap, were measured slower under wrk; 16 MiB
// was not (docs/benchmarks.md).
const serveHeadroom = 16 << 20

// runtimeHeapMinimum is the Go runtime's least heap goal at GOGC=100, which it scales with
// GOGC (4 MiB × GOGC / 100): a GOGC set for a small heap raises that floor too.
// TestKeepHeapHeadroomGoal checks the goal the runtime actually sets.
const runtimeHeapMinimum = 4 << 20

// gcPercentFor is the GOGC that lets a heap of live bytes grow by about headroom before the
// next collection: 100 for a heap of headroom bytes or more, more for a smaller one. The goal
// is live × (1 + GOGC/100), but never below runtimeHeapMinimum × GOGC/100, so for a small
// heap the floor is what sets it: the lesser of the two GOGCs reaching live + headroom.
func gcPercentFor(live, headroom int64) int {
	byLive := 100 * headroom / max(live, 64<<10)
	byFloor := (100*(live+headroom) + runtimeHeapMinimum - 1) / runtimeHeapMinimum // rounded up
	return int(max(100, min(byLive, byFloor)))
}

// keepHeapHeadroom sets GOGC after every collection (gcPercentFor of the live heap it found)
// until ctx is done, then sets it back as it was. It does nothing when GOGC is set in the
// environment: the operator chose. The first collection finds the heap as it is; a heap
// that grows past headroom (a larger tree loaded) has GOGC back to 100 from the collection
// that finds it, so the switch's peak is as without it but for one collection's headroom.
func keepHeapHeadroom(ctx context.Context, headroom int64) {
	if os.Getenv("GOGC") != "" {
		return
	}
	gogc := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(gogc)
	if gogc[0].Value.Kind() != metrics.KindUint64 {
		return // not reported by this runtime: GOGC stays as it is
	}
	was := int(gogc[0].Value.Uint64())
	var mu sync.Mutex // a cleanup's check of ctx and its setting, against the restore
	go func() {
		<-ctx.Done()
		mu.Lock()
		defer mu.Unlock()
		debug.SetGCPercent(was)
	}()
	sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	var arm func()
	arm = func() {
		// A collection finds the sentinel unreachable, and the cleanup runs after it: once a
		// cycle, on the runtime's cleanup goroutine.
		s := new(gcSentinel)
		runtime.AddCleanup(s, func(struct{}) {
			mu.Lock()
			defer mu.Unlock()
			if ctx.Err() != nil {
				return
			}
			metrics.Read(sample)
			if sample[0].Value.Kind() != metrics.KindUint64 {
				return // not kept by this runtime: GOGC stays
			}
			debug.SetGCPercent(gcPercentFor(int64(sample[0].Value.Uint64()), headroom))
			arm()
		}, struct{}{})
	}
	arm()
}

// gcSentinel is an object of its own (a pointer in it keeps the tiny allocator from
// combining it with others, which would delay its cleanup).
type gcSentinel struct{ _ *byte }
