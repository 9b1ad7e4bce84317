package main

import (
	"context"
	"runtime"
	"runtime/debug"
	"testing"
	"time"
)

func TestNextMemoryLimit(t *testing.T) {
	const mib = 1 << 20
	tests := []struct {
		name              string
		limit, live, want int64
	}{
		{"live far below", 448 * mib, 100 * mib, 448 * mib},
		{"live at two thirds", 448 * mib, 448 * mib * 2 / 3, 448 * mib},
		{"live past two thirds", 448 * mib, 400 * mib, 600 * mib},
		{"live past the limit", 448 * mib, 2048 * mib, 3072 * mib},
		{"never lowered", 3072 * mib, 100 * mib, 3072 * mib},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := nextMemoryLimit(tc.limit, tc.live); got != tc.want {
				t.Errorf("nextMemoryLimit(%d MiB, %d MiB): got %d MiB, want %d MiB", tc.limit/mib, tc.live/mib, got/mib, tc.want/mib)
			}
		})
	}
}

// TestAdaptMemoryLimit: a live heap above the starting limit raises it to 1.5 × the live heap
// instead of leaving the collector to run without pause.
func TestAdaptMemoryLimit(t *testing.T) {
	old := debug.SetMemoryLimit(-1)
	defer debug.SetMemoryLimit(old)
	const live = 64 << 20
	hold := make([][]byte, 0, 64)
	for range 64 {
		hold = append(hold, make([]byte, live/64))
	}
	debug.SetMemoryLimit(8 << 20) // as adaptMemoryLimit does first, before the loop below reads it
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		adaptMemoryLimit(ctx, 8<<20, 10*time.Millisecond)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for debug.SetMemoryLimit(-1) < live+live/2 && time.Now().Before(deadline) {
		runtime.GC()
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	<-done
	if got := debug.SetMemoryLimit(-1); got < live+live/2 {
		t.Errorf("limit with %d MiB live from a start of 8 MiB: got %d MiB, want at least %d MiB", live>>20, got>>20, (live+live/2)>>20)
	}
	runtime.KeepAlive(hold)
}

func TestGCPercentFor(t *testing.T) {
	const mib = 1 << 20
	tests := []struct {
		name           string
		live, headroom int64
		want           int
	}{
		{"small tree", 8 * mib, 64 * mib, 800},
		{"nothing live yet", 0, 64 * mib, 6400},
		{"tiny heap: at most 10000", 1 * mib, 64 * mib * 1000, 10000},
		{"live equals headroom", 64 * mib, 64 * mib, 100},
		{"large tree: GOGC=100", 800 * mib, 64 * mib, 100},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := gcPercentFor(tc.live, tc.headroom); got != tc.want {
				t.Errorf("gcPercentFor(%d MiB, %d MiB): got %d, want %d", tc.live/mib, tc.headroom/mib, got, tc.want)
			}
		})
	}
}

// TestAdaptGCPercent: serve's collector lets the heap grow by the headroom, and follows a live
// heap that outgrows it back to GOGC=100.
func TestAdaptGCPercent(t *testing.T) {
	old := debug.SetGCPercent(100)
	defer debug.SetGCPercent(old)
	gcPercent := func() int { p := debug.SetGCPercent(100); debug.SetGCPercent(p); return p }
	run := func(headroom int64, from int) int {
		debug.SetGCPercent(from)
		runtime.GC() // the live heap as it is now
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			adaptGCPercent(ctx, headroom, time.Hour)
		}()
		deadline := time.Now().Add(10 * time.Second)
		for gcPercent() == from && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		cancel()
		<-done
		return gcPercent()
	}
	if got := run(1<<40, 100); got != 10000 {
		t.Errorf("headroom far above the live heap: GOGC %d, want 10000", got)
	}
	if got := run(1, 50); got != 100 {
		t.Errorf("headroom below the live heap: GOGC %d, want 100", got)
	}
}
