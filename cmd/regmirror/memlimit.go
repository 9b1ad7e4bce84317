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
