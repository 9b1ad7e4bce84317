package main

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a writer safe for concurrent use that counts its writes.
type syncBuffer struct {
	mu     sync.Mutex
	b      bytes.Buffer
	writes int
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.writes++
	return s.b.Write(p)
}

func (s *syncBuffer) snapshot() (string, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String(), s.writes
}

// TestLineBuffer: lines from many writers all arrive, each writer's in its order, in writes of
// many lines; lines written reach w without Close (the flusher), and Close writes the rest.
func TestLineBuffer(t *testing.T) {
	cases := []struct {
		name           string
		writers, lines int
		close          bool
	}{
		{"flushed by the ticker", 1, 10, false},
		{"many writers past the flush size", 8, 5000, true},
		{"past the maximum", 4, lineMaxSize / 40, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var out syncBuffer
			b := newLineBuffer(&out)
			var wg sync.WaitGroup
			for w := range c.writers {
				wg.Go(func() {
					for i := range c.lines {
						fmt.Fprintf(b, "writer=%d line=%06d %s\n", w, i, strings.Repeat("x", 10))
					}
				})
			}
			wg.Wait()
			if c.close {
				if err := b.Close(); err != nil {
					t.Fatal(err)
				}
			} else {
				defer b.Close()
				// The flusher writes them within 100 ms; 10 s only bounds the wait on a loaded machine.
				for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
					if got, _ := out.snapshot(); strings.Count(got, "\n") == c.writers*c.lines {
						break
					}
				}
			}
			got, writes := out.snapshot()
			next := make([]int, c.writers)
			for line := range strings.Lines(got) {
				var w, i int
				if _, err := fmt.Sscanf(line, "writer=%d line=%d", &w, &i); err != nil {
					t.Fatalf("line %q: %v", line, err)
				}
				if i != next[w] {
					t.Fatalf("writer %d: got line %d, want %d", w, i, next[w])
				}
				next[w]++
			}
			for w, n := range next {
				if n != c.lines {
					t.Errorf("writer %d: got %d lines, want %d", w, n, c.lines)
				}
			}
			if total := c.writers * c.lines; total > 1000 && writes > total/100 {
				t.Errorf("%d writes for %d lines, want at most one per hundred lines", writes, total)
			}
		})
	}
}
