package redirector

import (
	"context"
	"crypto/rand"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/regmirror/regmirror/layout"
)

// A request in flight when the drain starts finishes whole; new connections are refused.
func TestGracefulDrain(t *testing.T) {
	big := make([]byte, 48<<20)
	_, _ = rand.Read(big)
	d := digestOf(big)
	dir, _ := newTestTree(t, func(m *layout.Meta, _ *demo) {
		m.Blobs[d] = &layout.Blob{Size: int64(len(big)), Since: 1}
		m.Repositories["fedora"].Blobs = sortedUnique(append(m.Repositories["fedora"].Blobs, d))
	})
	p := filepath.Join(dir, filepath.FromSlash(layout.BlobPath(d)))
	check(t, os.WriteFile(p, big, 0o644))
	s := newServer(t, Options{Tree: dir})

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := make(chan net.Addr, 1)
	done := make(chan error, 1)
	go func() {
		done <- s.ListenAndServe(ctx, ServeConfig{Listen: "127.0.0.1:0", MetricsListen: "127.0.0.1:0",
			Ready: func(api, metrics net.Addr) { ready <- api }})
	}()
	var addr net.Addr
	select {
	case addr = <-ready:
	case err := <-done:
		t.Fatal(err)
	}
	base := "http://" + addr.String()
	resp, err := http.Get(base + "/v2/fedora/blobs/" + d.String())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	first := make([]byte, 1<<10)
	if _, err := io.ReadFull(resp.Body, first); err != nil {
		t.Fatal(err)
	}
	cancel() // SIGTERM
	time.Sleep(100 * time.Millisecond)
	// New connections are refused while the download goes on.
	if c, err := net.DialTimeout("tcp", addr.String(), time.Second); err == nil {
		c.Close()
		t.Error("still accepting during the drain")
	}
	rest, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("download cut by the drain: %v", err)
	}
	if digestOf(append(first, rest...)) != d {
		t.Fatal("download corrupted")
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("ListenAndServe did not return after the drain")
	}
}

// A client that sends its headers too slowly is cut off; one that sends too many gets 431.
func TestSlowAndLargeHeaders(t *testing.T) {
	dir, _ := newTestTree(t, nil)
	s := newServer(t, Options{Tree: dir})
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan net.Addr, 1)
	done := make(chan error, 1)
	go func() {
		done <- s.ListenAndServe(ctx, ServeConfig{Listen: "127.0.0.1:0", ReadHeaderTimeout: 300 * time.Millisecond,
			Ready: func(api, _ net.Addr) { ready <- api }})
	}()
	defer func() { cancel(); <-done }() // no logging after the test
	addr := (<-ready).String()

	c, err := net.Dial("tcp", addr)
	check(t, err)
	defer c.Close()
	_, err = c.Write([]byte("GET /v2/ HTTP/1.1\r\nHost: x\r\n"))
	check(t, err)
	check(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
	start := time.Now()
	b, _ := io.ReadAll(c) // the server closes the connection
	if time.Since(start) > 4*time.Second {
		t.Errorf("slow client kept for %v (%q)", time.Since(start), b)
	}

	req, _ := http.NewRequest("GET", "http://"+addr+"/v2/", nil)
	req.Header.Set("X-Big", strings.Repeat("a", 200<<10))
	resp, err := http.DefaultClient.Do(req)
	check(t, err)
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("200 KiB of headers: %d", resp.StatusCode)
	}
}
