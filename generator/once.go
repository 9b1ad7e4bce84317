package generator

import (
	"context"
	"sync"
)

// onceMap computes one value per key in a run and shares it: the first caller of a key
// computes it, later callers wait for that result or for their own context. The zero value
// is ready to use.
type onceMap[K comparable, V any] struct {
	mu sync.Mutex
	m  map[K]*onceCall[V]
}

type onceCall[V any] struct {
	done chan struct{}
	v    V
	err  error
}

// do returns key's result, computing it with f when no caller did before.
func (o *onceMap[K, V]) do(ctx context.Context, key K, f func() (V, error)) (V, error) {
	o.mu.Lock()
	c, ok := o.m[key]
	if !ok {
		if o.m == nil {
			o.m = map[K]*onceCall[V]{}
		}
		c = &onceCall[V]{done: make(chan struct{})}
		o.m[key] = c
	}
	o.mu.Unlock()
	if !ok {
		c.v, c.err = f()
		close(c.done)
		return c.v, c.err
	}
	select {
	case <-c.done:
		return c.v, c.err
	case <-ctx.Done():
		var zero V
		return zero, context.Cause(ctx)
	}
}
