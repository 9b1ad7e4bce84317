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
