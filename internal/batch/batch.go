// Package batch gathers byte records appended from many goroutines and hands them, in order,
// to one function in batches: every interval, as soon as a batch is large enough, and on
// Close. A record is appended in place under a short lock, into one of two buffers mapped
// outside the Go heap: however many records wait, the collector neither scans them nor
// counts them in the heap that paces it, so a busy server's collections stay as rare and as
// cheap as without them.
package batch

import (
	"fmt"
	"sync"
	"time"
)

// Batcher batches byte records for its flush function.
type Batcher struct {
	mu       sync.Mutex
	buf      []byte // records appended, not flushed yet (off the heap until Close)
	closed   bool
	heapRoom bool // Begin's room is on the heap (under mu, from Begin to End)

	fmu   sync.Mutex // held while flushing: batches leave in order
	spare []byte     // the other buffer, flushed last (under fmu)
	flush func([]byte) error

	interval       time.Duration
	size, capacity int
	kick           chan struct{}
	stop           chan struct{}
	done           chan struct{}
}

// New starts a batcher calling flush with the records appended, every interval and as soon
// as size bytes wait. Its two buffers hold capacity bytes each: an append that does not fit
// flushes the batch waiting itself, so that memory stays bounded when flush is slower than
// the records come. flush must not keep its argument.
func New(interval time.Duration, size, capacity int, flush func([]byte) error) (*Batcher, error) {
	if size <= 0 || capacity < size || interval <= 0 {
		return nil, fmt.Errorf("batch: size %d, capacity %d, interval %v: want 0 < size <= capacity and a positive interval", size, capacity, interval)
	}
	buf, err := mapBuffer(capacity)
	if err != nil {
		return nil, err
	}
	spare, err := mapBuffer(capacity)
	if err != nil {
		unmapBuffer(buf)
		return nil, err
	}
	b := &Batcher{buf: buf[:0], spare: spare[:0], flush: flush, interval: interval, size: size, capacity: capacity,
		kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	go b.run()
	return b, nil
}

func (b *Batcher) run() {
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

// Begin locks the batcher and returns room for one record of at most n bytes: a slice of
// length 0 and capacity n or more, to append the record to without growing it. The caller
// must call End with the record, and nothing else in between. When the buffer has less than
// n bytes free, the batch waiting is flushed first; n larger than the capacity, or a batcher
// closed, gets room on the heap and its record flushed alone by End.
func (b *Batcher) Begin(n int) []byte {
	b.mu.Lock()
	for !b.closed && cap(b.buf)-len(b.buf) < n && n <= b.capacity {
		b.mu.Unlock()
		_ = b.Flush() // its error is the flush function's: the record still goes in
		b.mu.Lock()
	}
	b.heapRoom = b.closed || cap(b.buf)-len(b.buf) < n
	if b.heapRoom {
		return make([]byte, 0, n)
	}
	return b.buf[len(b.buf):len(b.buf):cap(b.buf)]
}

// End adds the record appended to Begin's room and unlocks the batcher.
func (b *Batcher) End(rec []byte) error {
	free := b.buf[len(b.buf):cap(b.buf)]
	if !b.heapRoom && len(rec) <= len(free) && (len(rec) == 0 || &rec[0] == &free[0]) { // in place
		b.buf = b.buf[:len(b.buf)+len(rec)]
		n := len(b.buf)
		b.mu.Unlock()
		if n >= b.size {
			select {
			case b.kick <- struct{}{}:
			default:
			}
		}
		return nil
	}
	b.mu.Unlock()
	// Room on the heap (closed, or too large), or a record grown out of its room: the batch
	// waiting leaves first.
	return b.Pass(rec)
}

// Append adds a copy of p as one record.
func (b *Batcher) Append(p []byte) error {
	return b.End(append(b.Begin(len(p)), p...))
}

// Pass hands p to the flush function after the records waiting, without copying it.
func (b *Batcher) Pass(p []byte) error {
	b.fmu.Lock()
	defer b.fmu.Unlock()
	err := b.flushLocked()
	if len(p) > 0 {
		if perr := b.flush(p); err == nil {
			err = perr
		}
	}
	return err
}

// Flush hands the records appended so far to the flush function, if there are any.
func (b *Batcher) Flush() error {
	b.fmu.Lock()
	defer b.fmu.Unlock()
	return b.flushLocked()
}

// flushLocked swaps the buffers and flushes the full one (under fmu).
func (b *Batcher) flushLocked() error {
	b.mu.Lock()
	full := b.buf
	b.buf = b.spare[:0]
	b.mu.Unlock()
	var err error
	if len(full) > 0 {
		err = b.flush(full)
	}
	b.spare = full[:0]
	return err
}

// Close stops the batcher's goroutine, flushes what is left and releases the buffers;
// records appended afterwards are flushed at once.
func (b *Batcher) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	b.mu.Unlock()
	close(b.stop)
	<-b.done
	b.fmu.Lock()
	defer b.fmu.Unlock()
	err := b.flushLocked()
	b.mu.Lock()
	unmapBuffer(b.buf)
	unmapBuffer(b.spare)
	b.buf, b.spare = nil, nil
	b.mu.Unlock()
	return err
}
