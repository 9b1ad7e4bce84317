// Package rawtcp serves TCP connections on loopback with a test's own code: a peer that
// speaks HTTP/1.1 byte by byte (answering pipelined requests in ways net/http's server does
// not), or a proxy that watches what a client sends.
package rawtcp

import (
	"net"
	"sync"
	"sync/atomic"
	"testing"
)

// Server accepts connections on 127.0.0.1 and runs serve on each in a goroutine of its own.
type Server struct {
	// Addr is host:port.
	Addr string

	accepted atomic.Int32
	mu       sync.Mutex
	open     map[net.Conn]bool
}

// Serve starts a Server for the rest of t: when t ends it stops accepting, closes every
// connection still open and waits for the serve calls to return. serve need not close c.
func Serve(t testing.TB, serve func(c net.Conn)) *Server {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{Addr: l.Addr().String(), open: map[net.Conn]bool{}}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		l.Close()
		s.mu.Lock()
		for c := range s.open {
			c.Close()
		}
		s.mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			s.accepted.Add(1)
			s.mu.Lock()
			s.open[c] = true
			s.mu.Unlock()
			wg.Go(func() {
				defer func() {
					s.mu.Lock()
					delete(s.open, c)
					s.mu.Unlock()
					c.Close()
				}()
				serve(c)
			})
		}
	})
	return s
}

// Accepted is the number of connections accepted so far.
func (s *Server) Accepted() int { return int(s.accepted.Load()) }
