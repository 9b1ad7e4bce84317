package main

import (
	"context"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// generateMemoryLimit is the soft memory limit (runtime/debug.SetMemoryLimit) the generate
// command starts with unless GOMEMLIMIT sets one. What generate holds grows with the tree
// (about 72 MiB live at 27k manifests), but the garbage of its publish (stats of every blob
// file, file lists) let the heap reach three times that before the collector ran: near the
// limit the collector runs sooner instead. It complements, and does not replace, keeping
// what a run holds small. A tree whose live data outgrows it raises it (nextMemoryLimit).
const generateMemoryLimit = 448 << 20

// nextMemoryLimit is the soft memory limit once the live heap is live bytes: limit, or 1.5 ×
// live when that is more. A limit below what a run holds would have the collector run
// without pause (at 1M manifests, 85% of generate's CPU went to it under the fixed limit);
// at 1.5 × live it runs as with GOGC=50.
func nextMemoryLimit(limit, live int64) int64 {
	return max(limit, live+live/2)
}

// adaptMemoryLimit sets the soft memory limit to limit, then every interval until ctx is
// done raises it as the live heap grows (nextMemoryLimit). It never lowers it.
func adaptMemoryLimit(ctx context.Context, limit int64, interval time.Duration) {
	debug.SetMemoryLimit(limit)
	sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		metrics.Read(sample)
		if sample[0].Value.Kind() != metrics.KindUint64 {
			return // not kept by this runtime: the limit stays
		}
		if next := nextMemoryLimit(limit, int64(sample[0].Value.Uint64())); next != limit {
			limit = next
			debug.SetMemoryLimit(limit)
		}
	}
}

// serveHeapHeadroom is how much serve's heap may grow between two collections, at least. What
// serve holds is its generation; a cached answer leaves a few kilobytes of garbage (most of it
// net/http's). Under GOGC=100 a small tree's heap of a few MiB was collected every thousand
// requests, each collection marking the whole generation: about a tenth of a cached answer's
// instructions (BenchmarkInstructions). A large tree's live heap (64 MiB and more) spaces
// collections out as much under GOGC=100, which it keeps: its memory is as before.
const serveHeapHeadroom = 64 << 20

// gcPercentFor is the GOGC value that lets a heap of live bytes grow by headroom bytes before
// the next collection, or by live bytes (GOGC=100) when that is more; at most 10000.
func gcPercentFor(live, headroom int64) int {
	if live < 1<<20 {
		live = 1 << 20
	}
	return int(min(max(100, headroom*100/live), 10000))
}

// adaptGCPercent sets GOGC to gcPercentFor(live heap, headroom) now and every interval until
// ctx is done, as the live heap changes. serve starts it once its generation is loaded: the
// load's garbage is collected under GOGC=100.
func adaptGCPercent(ctx context.Context, headroom int64, interval time.Duration) {
	sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	t := time.NewTicker(interval)
	defer t.Stop()
	pct := 0
	for {
		metrics.Read(sample)
		if sample[0].Value.Kind() != metrics.KindUint64 {
			return // not kept by this runtime: GOGC stays
		}
		if p := gcPercentFor(int64(sample[0].Value.Uint64()), headroom); p != pct {
			pct = p
			debug.SetGCPercent(pct)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
