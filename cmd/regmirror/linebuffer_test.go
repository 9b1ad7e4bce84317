package main

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"testing"
)

// countingWriter keeps what it is given and counts the writes.
type countingWriter struct {
	mu     sync.Mutex
	b      bytes.Buffer
	writes int
}

func (c *countingWriter) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.writes++
	return c.b.Write(p)
}

// got returns what was written and in how many writes.
func (c *countingWriter) got() (string, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.b.String(), c.writes
}

// TestLineBuffer: lines written from many goroutines reach the writer whole, in writes of
// many lines (internal/batch's tests check order and timing); Close writes the rest.
func TestLineBuffer(t *testing.T) {
	var out countingWriter
	b, err := newLineBuffer(&out)
	if err != nil {
		t.Fatal(err)
	}
	const writers, lines = 4, 20000
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range lines {
				fmt.Fprintf(b, "writer=%d line=%06d %s\n", w, i, strings.Repeat("x", 10))
			}
		})
	}
	wg.Wait()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	got := strings.Split(strings.TrimSuffix(out.b.String(), "\n"), "\n")
	if len(got) != writers*lines {
		t.Fatalf("got %d lines, want %d", len(got), writers*lines)
	}
	for _, l := range got {
		if !strings.HasPrefix(l, "writer=") || !strings.HasSuffix(l, " xxxxxxxxxx") {
			t.Fatalf("a line cut or mixed: %q", l)
		}
	}
	if out.writes > writers*lines/100 {
		t.Errorf("%d writes for %d lines, want at most one per hundred lines", out.writes, writers*lines)
	}
}

// TestLineBufferPassesLargeWrites: a write larger than 64 KiB reaches the writer as it is,
// after the lines before it and before the lines after it.
func TestLineBufferPassesLargeWrites(t *testing.T) {
	var out countingWriter
	b, err := newLineBuffer(&out)
	if err != nil {
		t.Fatal(err)
	}
	large := strings.Repeat("access line\n", 6000) // 72,000 bytes
	for _, w := range []string{"before\n", large, "after\n"} {
		if _, err := b.Write([]byte(w)); err != nil {
			t.Fatal(err)
		}
	}
	if got, writes := out.got(); got != "before\n"+large || writes != 2 {
		t.Errorf("before Close: %d writes of %d bytes, want 2 writes: the line waiting, then the large one", writes, len(got))
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if got, _ := out.got(); got != "before\n"+large+"after\n" {
		want := "before\n" + large + "after\n"
		t.Errorf("got %d bytes ending %q, want %d ending %q", len(got), got[max(0, len(got)-20):], len(want), want[len(want)-20:])
	}
}
