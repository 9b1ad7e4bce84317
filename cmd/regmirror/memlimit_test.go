package main

import (
	"context"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"strings"
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

// TestBallast: the ballast costs no resident memory and moves the collector's goal up by its
// size, as serve counts on. It runs in a fresh process, as serve allocates it at its start:
// in this one, other tests' freed heap could hand the ballast pages already written.
func TestBallast(t *testing.T) {
	if os.Getenv("REGMIRROR_BALLAST_CHILD") == "" {
		cmd := exec.Command(os.Args[0], "-test.run=^TestBallast$", "-test.count=1", "-test.v")
		cmd.Env = append(os.Environ(), "REGMIRROR_BALLAST_CHILD=1")
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "--- PASS: TestBallast") {
			t.Fatalf("the ballast check in a fresh process: %v\n%s", err, out)
		}
		return
	}
	const n = 64 << 20
	runtime.GC()
	rss0 := residentBytes(t)
	b := newBallast(n)
	runtime.GC()
	goal := []metrics.Sample{{Name: "/gc/heap/goal:bytes"}}
	metrics.Read(goal)
	if got := rss0 + 8<<20; residentBytes(t) > got {
		t.Errorf("resident after a %d MiB ballast: %d MiB, want at most %d MiB (its pages are never written)", n>>20, residentBytes(t)>>20, got>>20)
	}
	if got := goal[0].Value.Uint64(); got < 2*n {
		t.Errorf("heap goal with a %d MiB ballast: %d MiB, want at least %d MiB", n>>20, got>>20, 2*n>>20)
	}
	runtime.KeepAlive(b)
}

// residentBytes is this process's resident set (VmRSS).
func residentBytes(t *testing.T) int64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b))
	pages, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return pages * int64(os.Getpagesize())
}
