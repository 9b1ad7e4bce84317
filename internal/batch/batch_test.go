package batch

import (
	"bytes"
	"encoding/binary"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"
)

// record is one test record: its goroutine and its number there, 8 bytes.
func record(b []byte, g, i int) []byte {
	b = binary.LittleEndian.AppendUint32(b, uint32(g))
	return binary.LittleEndian.AppendUint32(b, uint32(i))
}

// collector is a flush function keeping every batch.
type collector struct {
	mu      sync.Mutex
	got     []byte
	batches int
}

func (c *collector) flush(p []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.got = append(c.got, p...)
	c.batches++
	return nil
}

func (c *collector) snapshot() ([]byte, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.got), c.batches
}

func mustNew(t *testing.T, interval time.Duration, size, capacity int, flush func([]byte) error) *Batcher {
	t.Helper()
	b, err := New(interval, size, capacity, flush)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// TestBatcher: records from many goroutines reach flush whole, each goroutine's in order, in
// batches; the ticker flushes without Close; a batch that does not fit its buffer is flushed
// by the goroutine appending; Close flushes the rest.
func TestBatcher(t *testing.T) {
	cases := []struct {
		name           string
		goroutines     int
		records        int
		size, capacity int
		close          bool
		wantBatches    func(batches, records int) bool
	}{
		{"the ticker", 1, 10, 800, 8000, false, func(b, _ int) bool { return b >= 1 }},
		{"full batches", 8, 2000, 800, 1 << 20, true, func(b, n int) bool { return b <= n/50 }},
		{"past capacity", 4, 5000, 64 * 8, 64 * 8, true, func(b, n int) bool { return b >= n/64 }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var col collector
			b := mustNew(t, 20*time.Millisecond, c.size, c.capacity, col.flush)
			var wg sync.WaitGroup
			for g := range c.goroutines {
				wg.Go(func() {
					for i := range c.records {
						if err := b.End(record(b.Begin(8), g, i)); err != nil {
							t.Error(err)
						}
					}
				})
			}
			wg.Wait()
			total := c.goroutines * c.records
			if c.close {
				if err := b.Close(); err != nil {
					t.Fatal(err)
				}
			} else {
				deadline := time.Now().Add(10 * time.Second)
				for got, _ := col.snapshot(); len(got) < 8*total; got, _ = col.snapshot() {
					if time.Now().After(deadline) {
						t.Fatalf("the ticker flushed %d of %d bytes in 10 s", len(got), 8*total)
					}
					time.Sleep(5 * time.Millisecond)
				}
			}
			got, batches := col.snapshot()
			if len(got) != 8*total {
				t.Fatalf("got %d bytes, want %d", len(got), 8*total)
			}
			next := make([]int, c.goroutines)
			for r := got; len(r) > 0; r = r[8:] {
				g, i := int(binary.LittleEndian.Uint32(r)), int(binary.LittleEndian.Uint32(r[4:]))
				if g >= c.goroutines || i != next[g] {
					t.Fatalf("goroutine %d: got record %d, want %d", g, i, next[min(g, c.goroutines-1)])
				}
				next[g]++
			}
			if want := slices.Repeat([]int{c.records}, c.goroutines); !slices.Equal(next, want) {
				t.Errorf("records per goroutine: got %v, want %v", next, want)
			}
			if !c.wantBatches(batches, total) {
				t.Errorf("%d batches for %d records", batches, total)
			}
		})
	}
}

// TestBatcherOrder: Pass, Append, a record larger than the buffers and records after Close
// all leave in the order they came.
func TestBatcherOrder(t *testing.T) {
	var col collector
	b := mustNew(t, time.Hour, 16, 16, col.flush)
	steps := []struct {
		name string
		do   func() error
	}{
		{"append", func() error { return b.Append([]byte("a")) }},
		{"in place", func() error { return b.End(append(b.Begin(2), "bc"...)) }},
		{"pass", func() error { return b.Pass([]byte("PASS")) }},
		{"append", func() error { return b.Append([]byte("d")) }},
		{"larger than a buffer", func() error { return b.Append([]byte("0123456789abcdefXYZ")) }},
		{"grown out of its room", func() error { return b.End(append(b.Begin(1), "grown"...)) }},
		{"fills a buffer", func() error { return b.Append([]byte("0123456789abcdef")) }},
		{"close", b.Close},
		{"after close", func() error { return b.Append([]byte("late")) }},
		{"pass after close", func() error { return b.Pass([]byte("LATE")) }},
		{"second close", b.Close},
	}
	for _, s := range steps {
		if err := s.do(); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
	}
	got, _ := col.snapshot()
	if want := "abcPASSd0123456789abcdefXYZgrown0123456789abcdeflateLATE"; string(got) != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

// TestBatcherOffHeap: the buffers are not on the Go heap, and a record appended in place
// costs no allocation.
func TestBatcherOffHeap(t *testing.T) {
	const capacity = 64 << 20
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	var flushed int
	b := mustNew(t, time.Hour, capacity, capacity, func(p []byte) error { flushed += len(p); return nil })
	rec := bytes.Repeat([]byte("x"), 1000)
	for range capacity / len(rec) {
		if err := b.Append(rec); err != nil {
			t.Fatal(err)
		}
	}
	runtime.ReadMemStats(&after)
	if grew := int64(after.HeapAlloc) - int64(before.HeapAlloc); grew > capacity/8 {
		t.Errorf("the heap grew by %d bytes with two buffers of %d filled, want far less", grew, capacity)
	}
	if got := testing.AllocsPerRun(100, func() { _ = b.End(append(b.Begin(len(rec)), rec...)) }); got != 0 {
		t.Errorf("%v allocations appending a record in place, want 0", got)
	}
	if err := b.Flush(); err != nil {
		t.Fatal(err)
	}
	if want := (capacity/len(rec) + 101) * len(rec); flushed != want {
		t.Errorf("flushed %d bytes, want %d", flushed, want)
	}
}

func TestNewRefuses(t *testing.T) {
	cases := []struct {
		name           string
		interval       time.Duration
		size, capacity int
	}{
		{"no size", time.Second, 0, 10},
		{"capacity below size", time.Second, 10, 5},
		{"no interval", 0, 1, 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if b, err := New(c.interval, c.size, c.capacity, func([]byte) error { return nil }); err == nil {
				_ = b.Close()
				t.Errorf("New(%v, %d, %d): no error", c.interval, c.size, c.capacity)
			}
		})
	}
}
