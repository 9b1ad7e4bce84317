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
	b      bytes.Buffer
	writes int
}

func (c *countingWriter) Write(p []byte) (int, error) {
	c.writes++
	return c.b.Write(p)
}

// TestLineBuffer: lines written from many goroutines reach the writer whole, in writes of
// many lines (internal/batch's tests check order and timing); Close writes the rest.
func TestLineBuffer(t *testing.T) {
	var out countingWriter
	b := newLineBuffer(&out)
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
