package generator

import (
	"context"
	"slices"
	"sync"
)

// slots bounds how many of something run at once (requests in flight, tags in flight, blob
// transfers). A waiter that finishes work already begun (a changed tag's manifests and blobs,
// its referrers) gets a free slot before one that begins more (a tag list, a tag's HEAD):
// otherwise, with every slot asked for by the HEADs of hundreds of repositories, each
// request of a changed tag waited behind them all, and a promotion's few changed tags
// finished only after the last HEAD. Waiters of one kind are served in turn.
type slots struct {
	mu     sync.Mutex
	free   int
	finish []chan struct{} // waiting, finishing work begun
	begin  []chan struct{} // waiting, beginning work
}

func newSlots(n int) *slots { return &slots{free: n} }

// Whether a waiter finishes work begun (take's finishing).
const (
	beginning = false
	finishing = true
)

// take waits for a slot, or fails when ctx is done.
func (s *slots) take(ctx context.Context, finishing bool) error {
	s.mu.Lock()
	if s.free > 0 { // no one waits while a slot is free (give hands it on)
		s.free--
		s.mu.Unlock()
		return nil
	}
	w := make(chan struct{})
	q := &s.begin
	if finishing {
		q = &s.finish
	}
	*q = append(*q, w)
	s.mu.Unlock()
	select {
	case <-w:
		return nil
	case <-ctx.Done():
	}
	s.mu.Lock()
	i := slices.Index(*q, w)
	if i >= 0 {
		*q = slices.Delete(*q, i, i+1)
	}
	s.mu.Unlock()
	if i < 0 { // handed a slot meanwhile: hand it on
		s.give()
	}
	return context.Cause(ctx)
}

// give frees a slot taken, handing it to the first waiter.
func (s *slots) give() {
	s.mu.Lock()
	var w chan struct{}
	switch {
	case len(s.finish) > 0:
		w = s.finish[0]
		s.finish[0] = nil
		s.finish = s.finish[1:]
	case len(s.begin) > 0:
		w = s.begin[0]
		s.begin[0] = nil
		s.begin = s.begin[1:]
	default:
		s.free++
	}
	s.mu.Unlock()
	if w != nil {
		close(w)
	}
}
