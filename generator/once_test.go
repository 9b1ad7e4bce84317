package generator

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
)

func TestOnceMap(t *testing.T) {
	var o onceMap[string, int]
	var calls atomic.Int32
	release := make(chan struct{})
	var wg sync.WaitGroup
	results := make([]int, 8)
	for i := range results {
		wg.Go(func() {
			v, err := o.do(context.Background(), "k", func() (int, error) {
				calls.Add(1)
				<-release
				return 42, nil
			})
			if err != nil {
				t.Errorf("do: got %v, want nil", err)
			}
			results[i] = v
		})
	}
	close(release)
	wg.Wait()
	if got := calls.Load(); got != 1 {
		t.Errorf("computations of one key: got %d, want 1", got)
	}
	for i, v := range results {
		if v != 42 {
			t.Errorf("caller %d: got %d, want 42", i, v)
		}
	}

	// A waiter whose context ends stops waiting; the computation's result stays for others.
	block := make(chan struct{})
	started := make(chan struct{})
	go o.do(context.Background(), "slow", func() (int, error) {
		close(started)
		<-block
		return 0, errors.New("failed once")
	})
	<-started
	ctx, cancel := context.WithCancelCause(context.Background())
	stop := errors.New("stopped")
	cancel(stop)
	if _, err := o.do(ctx, "slow", func() (int, error) { t.Error("computed twice"); return 0, nil }); !errors.Is(err, stop) {
		t.Errorf("waiter with a done context: got %v, want %v", err, stop)
	}
	close(block)
	if _, err := o.do(context.Background(), "other", func() (int, error) { return 7, nil }); err != nil {
		t.Errorf("another key: %v", err)
	}
}
