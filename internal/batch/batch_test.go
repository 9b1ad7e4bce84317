package batch

import (
	"slices"
	"sync"
	"testing"
	"time"
)

// TestBatcher: items from many goroutines reach flush whole, each goroutine's in order, in
// batches; the ticker flushes without Close; an Add past max flushes at once; Close flushes
// the rest, and an Add after Close is flushed at once.
func TestBatcher(t *testing.T) {
	type item struct{ g, i int }
	cases := []struct {
		name        string
		goroutines  int
		items       int
		size, max   int
		close       bool
		wantBatches func(batches, items int) bool
	}{
		{"the ticker", 1, 10, 100, 1000, false, func(b, _ int) bool { return b >= 1 }},
		{"full batches", 8, 2000, 100, 1 << 20, true, func(b, n int) bool { return b <= n/50 }},
		{"past max", 4, 5000, 1 << 20, 64, true, func(b, n int) bool { return b >= n/(64*4) }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var mu sync.Mutex
			var got []item
			batches := 0
			b := New(20*time.Millisecond, c.size, c.max, func(items []item) error {
				mu.Lock()
				defer mu.Unlock()
				got = append(got, items...)
				batches++
				return nil
			})
			var wg sync.WaitGroup
			for g := range c.goroutines {
				wg.Go(func() {
					for i := range c.items {
						if err := b.Add(item{g, i}); err != nil {
							t.Error(err)
						}
					}
				})
			}
			wg.Wait()
			total := c.goroutines * c.items
			if c.close {
				if err := b.Close(); err != nil {
					t.Fatal(err)
				}
			} else {
				defer b.Close()
				// The ticker flushes within 20 ms; 10 s only bounds the wait on a loaded machine.
				for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
					mu.Lock()
					n := len(got)
					mu.Unlock()
					if n == total {
						break
					}
				}
			}
			mu.Lock()
			defer mu.Unlock()
			next := make([]int, c.goroutines)
			for _, it := range got {
				if it.i != next[it.g] {
					t.Fatalf("goroutine %d: got item %d, want %d", it.g, it.i, next[it.g])
				}
				next[it.g]++
			}
			if want := slices.Repeat([]int{c.items}, c.goroutines); !slices.Equal(next, want) {
				t.Errorf("items per goroutine: got %v, want %v", next, want)
			}
			if !c.wantBatches(batches, total) {
				t.Errorf("%d batches for %d items", batches, total)
			}
		})
	}

	t.Run("after Close", func(t *testing.T) {
		var got []int
		b := New(time.Hour, 100, 1000, func(items []int) error { got = append(got, items...); return nil })
		if err := b.Add(1, 2); err != nil {
			t.Fatal(err)
		}
		if err := b.Close(); err != nil {
			t.Fatal(err)
		}
		if err := b.Add(3); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, []int{1, 2, 3}) {
			t.Errorf("got %v, want [1 2 3]: Close flushes, and an Add after it", got)
		}
		if err := b.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
	})
}
