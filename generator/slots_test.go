package generator

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestSlots: a freed slot goes to the waiters finishing work begun first, then to those
// beginning more by their repository's rank, each rank in turn; a waiter whose context ends
// leaves, and a slot handed to it is handed on, never lost.
func TestSlots(t *testing.T) {
	s := newSlots(1)
	ctx := context.Background()
	if err := s.take(ctx, beginning(0)); err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 8)
	waiting := func(n int) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
			s.mu.Lock()
			w := len(s.waiting)
			s.mu.Unlock()
			if w == n {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d waiters, want %d", w, n)
			}
		}
	}
	wait := func(name string, rank int) {
		go func() {
			if err := s.take(ctx, rank); err != nil {
				got <- name + ": " + err.Error()
				return
			}
			got <- name
		}()
	}
	// In this order: repositories 2, 1, 2 beginning, a cancelled one, two finishing.
	wait("begin 2a", beginning(2))
	waiting(1)
	wait("begin 1", beginning(1))
	waiting(2)
	wait("begin 2b", beginning(2))
	waiting(3)
	cctx, cancel := context.WithCancelCause(ctx)
	cancelled := make(chan error, 1)
	go func() { cancelled <- s.take(cctx, finishing) }()
	waiting(4)
	wait("finish 1", finishing)
	waiting(5)
	wait("finish 2", finishing)
	waiting(6)
	stop := errors.New("stopped")
	cancel(stop)
	if err := <-cancelled; !errors.Is(err, stop) {
		t.Fatalf("cancelled waiter: got %v, want %v", err, stop)
	}
	waiting(5)
	for _, want := range []string{"finish 1", "finish 2", "begin 1", "begin 2a", "begin 2b"} {
		s.give()
		if g := <-got; g != want {
			t.Fatalf("slot given to %q, want %q", g, want)
		}
	}
	s.give()
	// A slot handed to a waiter as its context ends is handed on.
	for range 100 {
		if err := s.take(ctx, beginning(0)); err != nil {
			t.Fatal(err)
		}
		cctx, cancel := context.WithCancel(ctx)
		res := make(chan error)
		go func() { res <- s.take(cctx, finishing) }()
		waiting(1)
		cancel()
		s.give()
		if <-res == nil { // the waiter got the slot first: it holds it
			s.give()
		}
		s.mu.Lock()
		free := s.free
		s.mu.Unlock()
		if free != 1 {
			t.Fatalf("free slots after a cancelled waiter: got %d, want 1", free)
		}
		if err := s.take(ctx, beginning(0)); err != nil {
			t.Fatal(err)
		}
		s.give()
	}
	if s.free != 1 {
		t.Errorf("free slots: got %d, want 1", s.free)
	}
}
