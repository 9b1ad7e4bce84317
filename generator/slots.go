package generator

import (
	"container/heap"
	"context"
	"sync"
)

// slots bounds how many of something run at once (requests in flight, tags in flight, blob
// transfers), handing a freed slot to the waiter of the lowest rank, and among equal ranks
// to the first come. Work that finishes what was begun (a changed tag's manifests and blobs,
// its referrers) ranks before all (finishing); work that begins more (a tag list, a tag's
// HEAD) ranks by its repository's place in the catalog (beginning(i)). Otherwise, with every
// slot asked for by the HEADs of hundreds of repositories in turn, every repository finished
// its HEADs near the last HEAD of the run, and a promotion's changed tags, processed once
// their repository's HEADs are in, then waited behind the HEADs of all the others: they
// finished after the last one. Ranked, repositories finish their HEADs one after the other
// and a changed one is processed while the HEADs of the next go on.
type slots struct {
	mu      sync.Mutex
	free    int
	waiting slotQueue
	arrived uint64
}

// finishing is the rank of work finishing what was begun.
const finishing = -1

// beginning is the rank of work beginning more for the repository i-th in the catalog.
func beginning(i int) int { return i }

func newSlots(n int) *slots { return &slots{free: n} }

// take waits for a slot, or fails when ctx is done.
func (s *slots) take(ctx context.Context, rank int) error {
	s.mu.Lock()
	if s.free > 0 { // no one waits while a slot is free (give hands it on)
		s.free--
		s.mu.Unlock()
		return nil
	}
	w := &slotWaiter{rank: rank, arrived: s.arrived, ready: make(chan struct{})}
	s.arrived++
	heap.Push(&s.waiting, w)
	s.mu.Unlock()
	select {
	case <-w.ready:
		return nil
	case <-ctx.Done():
	}
	s.mu.Lock()
	queued := w.index >= 0
	if queued {
		heap.Remove(&s.waiting, w.index)
	}
	s.mu.Unlock()
	if !queued { // handed a slot meanwhile: hand it on
		s.give()
	}
	return context.Cause(ctx)
}

// give frees a slot taken, handing it to the first waiter.
func (s *slots) give() {
	s.mu.Lock()
	if len(s.waiting) == 0 {
		s.free++
		s.mu.Unlock()
		return
	}
	w := heap.Pop(&s.waiting).(*slotWaiter)
	s.mu.Unlock()
	close(w.ready)
}

type slotWaiter struct {
	rank    int
	arrived uint64
	index   int // in the queue; -1 once out of it
	ready   chan struct{}
}

// slotQueue is a heap of waiters, by rank then arrival.
type slotQueue []*slotWaiter

func (q slotQueue) Len() int { return len(q) }
func (q slotQueue) Less(i, j int) bool {
	if q[i].rank != q[j].rank {
		return q[i].rank < q[j].rank
	}
	return q[i].arrived < q[j].arrived
}

func (q slotQueue) Swap(i, j int) {
	q[i], q[j] = q[j], q[i]
	q[i].index, q[j].index = i, j
}

func (q *slotQueue) Push(x any) {
	w := x.(*slotWaiter)
	w.index = len(*q)
	*q = append(*q, w)
}

func (q *slotQueue) Pop() any {
	old := *q
	w := old[len(old)-1]
	old[len(old)-1] = nil
	w.index = -1
	*q = old[:len(old)-1]
	return w
}
