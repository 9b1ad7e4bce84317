// Package batch gathers items added from many goroutines and hands them, in order, to one
// function in batches: every interval, as soon as a batch is full, and on Close. Adding is a
// copy under a short lock; the function runs on the batcher's goroutine, outside that lock.
package batch

import (
	"sync"
	"time"
)

// Batcher batches items of type T for its flush function.
type Batcher[T any] struct {
	mu     sync.Mutex
	items  []T // added, not flushed yet
	closed bool

	fmu   sync.Mutex // held while flushing: batches leave in order
	spare []T        // the batch last flushed, reused (under fmu)
	flush func([]T) error

	interval  time.Duration
	size, max int
	kick      chan struct{}
	stop      chan struct{}
	done      chan struct{}
}

// New starts a batcher calling flush with the items added, every interval and as soon as size
// items wait; an Add finding max items waiting (flush slower than the items come) flushes
// them itself, so that memory stays bounded. flush must not keep its argument.
func New[T any](interval time.Duration, size, max int, flush func([]T) error) *Batcher[T] {
	b := &Batcher[T]{items: make([]T, 0, 2*size), spare: make([]T, 0, 2*size), flush: flush, interval: interval, size: size, max: max,
		kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	go b.run()
	return b
}

func (b *Batcher[T]) run() {
	defer close(b.done)
	t := time.NewTicker(b.interval)
	defer t.Stop()
	for {
		select {
		case <-b.stop:
			return
		case <-t.C:
		case <-b.kick:
		}
		_ = b.Flush()
	}
}

// Add adds items to the batch; after Close, it flushes them at once.
func (b *Batcher[T]) Add(items ...T) error {
	b.mu.Lock()
	b.items = append(b.items, items...)
	n, closed := len(b.items), b.closed
	b.mu.Unlock()
	switch {
	case closed || n >= b.max:
		return b.Flush()
	case n >= b.size:
		select {
		case b.kick <- struct{}{}:
		default:
		}
	}
	return nil
}

// Flush hands the items added so far to the flush function, if there are any.
func (b *Batcher[T]) Flush() error {
	b.fmu.Lock()
	defer b.fmu.Unlock()
	b.mu.Lock()
	items := b.items
	b.items = b.spare[:0]
	b.mu.Unlock()
	var err error
	if len(items) > 0 {
		err = b.flush(items)
	}
	clear(items) // what the items point to
	b.spare = items[:0]
	return err
}

// Close stops the batcher's goroutine and flushes what is left.
func (b *Batcher[T]) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	b.mu.Unlock()
	close(b.stop)
	<-b.done
	return b.Flush()
}
