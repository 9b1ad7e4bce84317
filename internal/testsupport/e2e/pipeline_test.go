package e2e

import (
	"bytes"
	"io"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/regmirror/regmirror/internal/testsupport/peers"
	"github.com/regmirror/regmirror/internal/testsupport/rawtcp"
)

// headCounter is a TCP proxy to a registry that counts the HEADs of fedora's tags its
// clients send, and the most that came in one read: more than one is a pipelined batch.
type headCounter struct {
	addr string

	mu            sync.Mutex
	heads, inRead int
}

func newHeadCounter(t *testing.T, to string) *headCounter {
	t.Helper()
	h := &headCounter{}
	h.addr = rawtcp.Serve(t, func(c net.Conn) { h.serve(c, to) }).Addr
	return h
}

func (h *headCounter) serve(c net.Conn, to string) {
	s, err := net.Dial("tcp", to)
	if err != nil {
		return
	}
	defer s.Close()
	go func() {
		io.Copy(c, s)
		c.Close()
	}()
	buf := make([]byte, 64<<10)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			k := bytes.Count(buf[:n], []byte("HEAD /v2/fedora/manifests/t"))
			h.mu.Lock()
			h.heads += k
			h.inRead = max(h.inRead, k)
			h.mu.Unlock()
			if _, err := s.Write(buf[:n]); err != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// TestGeneratePipelinesHeads runs generate against Debian's docker-registry, open and with
// basic authentication, through a proxy that counts the manifest HEADs: the tags of a
// repository are HEADed in pipelined batches (several requests in one read), each once, with
// the credentials, and every tag is published.
func TestGeneratePipelinesHeads(t *testing.T) {
	needPeers(t)
	var tags []string
	for i := range 12 {
		tags = append(tags, "t"+strconv.Itoa(i))
	}
	refs := randomImages(t, 11, []string{"fedora"}, 1, 1, 4<<10)
	refs[0].Tags = tags
	tests := []struct {
		name string
		opts []peers.RegistryOption
		args []string
	}{
		{name: "open"},
		{name: "basic authentication", opts: []peers.RegistryOption{peers.WithHtpasswd("alice", "s3cret")}, args: []string{"--username", "alice", "--password", "s3cret"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reg := peers.StartRegistry(t, tt.opts...)
			reg.Push(t, refs)
			proxy := newHeadCounter(t, "127.0.0.1:"+strconv.Itoa(reg.Port))
			_, port, _ := net.SplitHostPort(proxy.addr)
			out := filepath.Join(t.TempDir(), "tree")
			r := generate(t, "http://localhost:"+port, out, tt.args...)
			checkPublished(t, out, wantOf(t, refs))
			if strings.Contains(r.stderr, "pipelined") {
				t.Errorf("generate warned about pipelining, want no warning:\n%s", r.stderr)
			}
			proxy.mu.Lock()
			heads, inRead := proxy.heads, proxy.inRead
			proxy.mu.Unlock()
			if heads != len(tags) {
				t.Errorf("got %d manifest HEADs, want %d (one a tag)", heads, len(tags))
			}
			if inRead < 2 {
				t.Errorf("got at most %d HEAD in one read, want a pipelined batch (2 or more)", inRead)
			}
		})
	}
}
