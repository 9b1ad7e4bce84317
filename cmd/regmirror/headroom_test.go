package main

import (
	"context"
	"io"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"
	"time"
)

func TestGCPercentFor(t *testing.T) {
	for _, c := range []struct {
		name           string
		live, headroom int64
		want           int
	}{
		{"a heap as large as the headroom keeps 100", 16 << 20, 16 << 20, 100},
		{"a larger heap keeps 100", 330 << 20, 16 << 20, 100},
		{"a quarter of it grows by four times itself", 4 << 20, 16 << 20, 400},
		{"a small heap: the runtime's floor, scaled, sets the goal", 3 << 20, 16 << 20, 475},
		{"a tiny heap, rounded up", 1<<20 + 1, 16 << 20, 426},
		{"no heap", 0, 16 << 20, 400},
		{"a heap between: its own growth sets the goal", 8 << 20, 16 << 20, 200},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := gcPercentFor(c.live, c.headroom); got != c.want {
				t.Errorf("gcPercentFor(%d, %d) = %d, want %d", c.live, c.headroom, got, c.want)
			}
		})
	}
}

// withGOGC100 sets the GOGC environment variable to env for the test ("": not chosen, whatever
// the test's environment sets) and GOGC itself to 100, as it was set back when the test ends.
func withGOGC100(t *testing.T, env string) {
	t.Helper()
	t.Setenv("GOGC", env)
	was := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(was) })
}

// gogc reads the GOGC in effect.
func gogc(t *testing.T) int {
	t.Helper()
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		t.Fatal("this runtime does not report /gc/gogc:percent")
	}
	return int(s[0].Value.Uint64())
}

// collectUntilGOGC collects until GOGC is want(live heap), or fails after a while (a
// headroom's cleanup runs on its own goroutine after the collection).
func collectUntilGOGC(t *testing.T, what string, want func(live int64) int) {
	t.Helper()
	live := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	deadline := time.Now().Add(10 * time.Second)
	for {
		runtime.GC()
		time.Sleep(time.Millisecond)
		metrics.Read(live)
		w := want(int64(live[0].Value.Uint64()))
		got := gogc(t)
		if got == w {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: GOGC %d, want %d (live heap %d bytes)", what, got, w, live[0].Value.Uint64())
		}
	}
}

// gogcAfterCollections is GOGC after a few collections: a headroom still armed would have
// set it by then.
func gogcAfterCollections(t *testing.T) int {
	t.Helper()
	for range 3 {
		runtime.GC()
		time.Sleep(time.Millisecond)
	}
	return gogc(t)
}

// TestKeepHeapHeadroom checks that GOGC follows the live heap after collections while the
// context lives, and is set back when it is done.
func TestKeepHeapHeadroom(t *testing.T) {
	withGOGC100(t, "")
	const headroom = 1 << 40 // far above any test's heap: GOGC well above 100
	ctx, cancel := context.WithCancel(context.Background())
	keepHeapHeadroom(ctx, headroom)
	collectUntilGOGC(t, "while serving", func(live int64) int { return gcPercentFor(live, headroom) })
	if got := gogc(t); got <= 100 {
		t.Errorf("GOGC %d while serving a small heap, want more than 100", got)
	}
	cancel()
	collectUntilGOGC(t, "after the context is done", func(int64) int { return 100 })
}

// TestKeepHeapHeadroomGoal checks the heap goal the runtime derives from the GOGC set for a
// small heap (this test's): the heap may grow by serveHeadroom, and not much more (the
// runtime's floor scales with GOGC; a goal of 56 MiB for a 1 MiB heap was once set here).
func TestKeepHeapHeadroomGoal(t *testing.T) {
	withGOGC100(t, "")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	keepHeapHeadroom(ctx, serveHeadroom)
	collectUntilGOGC(t, "while serving", func(live int64) int { return gcPercentFor(live, serveHeadroom) })
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}, {Name: "/gc/heap/goal:bytes"}}
	metrics.Read(s)
	live, goal := int64(s[0].Value.Uint64()), int64(s[1].Value.Uint64())
	if live >= serveHeadroom {
		t.Fatalf("live heap %d bytes: not a small heap, this test checks nothing", live)
	}
	if got, lo, hi := goal-live, int64(serveHeadroom), int64(serveHeadroom)*5/4; got < lo || got > hi {
		t.Errorf("heap goal %d bytes for a live heap of %d (GOGC %d): growth %d, want %d to %d", goal, live, gogc(t), got, lo, hi)
	}
}

// TestKeepHeapHeadroomLeavesGOGC checks that a GOGC set in the environment is left alone.
func TestKeepHeapHeadroomLeavesGOGC(t *testing.T) {
	withGOGC100(t, "100")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	keepHeapHeadroom(ctx, 1<<40)
	if got := gogcAfterCollections(t); got != 100 {
		t.Errorf("GOGC %d with GOGC=100 in the environment, want 100", got)
	}
}

// TestServeErrorRestoresGOGC checks that a serve that returns early (here: a tree with no
// generation) leaves GOGC as it found it: its headroom stops with it.
func TestServeErrorRestoresGOGC(t *testing.T) {
	withGOGC100(t, "")
	if err := run(context.Background(), []string{"serve", "--tree", t.TempDir()}, io.Discard, io.Discard); err == nil {
		t.Fatal("serve of an empty tree: no error")
	}
	collectUntilGOGC(t, "after serve returned", func(int64) int { return 100 })
	if got := gogcAfterCollections(t); got != 100 {
		t.Errorf("GOGC %d some collections after serve returned, want 100", got)
	}
}
