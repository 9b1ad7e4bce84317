package redirector

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/regmirror/regmirror/internal/testsupport/peers"
)

// startServer runs ListenAndServe on loopback ports until the test ends and returns the API
// and metrics addresses.
func startServer(t *testing.T, s *Server, cfg ServeConfig) (api, metrics string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	type addrs struct{ api, metrics net.Addr }
	ready := make(chan addrs, 1)
	done := make(chan error, 1)
	cfg.Listen, cfg.MetricsListen = "127.0.0.1:0", "127.0.0.1:0"
	cfg.Ready = func(a, m net.Addr) { ready <- addrs{a, m} }
	go func() { done <- s.ListenAndServe(ctx, cfg) }()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case a := <-ready:
		return a.api.String(), a.metrics.String()
	case err := <-done:
		t.Fatal(err)
	}
	return "", ""
}

// TestAnnouncedBodyNeverSent: a request that announces a body and never sends it is answered
// at once, and its connection closed well within the header timeout, on the API and on the
// metrics listener alike.
func TestAnnouncedBodyNeverSent(t *testing.T) {
	dir, _ := newTestTree(t, nil)
	s := newServer(t, Options{Tree: dir})
	const headerTimeout = 3 * time.Second
	api, metrics := startServer(t, s, ServeConfig{ReadHeaderTimeout: headerTimeout})
	tests := []struct {
		name, addr, head string
		status           int
	}{
		{"GET with Content-Length", api, "GET /v2/ HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n", 400},
		{"GET blob with 256 KiB announced", api, "GET /v2/fedora/blobs/sha256:" + strings.Repeat("0", 64) + " HTTP/1.1\r\nHost: x\r\nContent-Length: 262144\r\n\r\n", 400},
		{"GET chunked", api, "GET /v2/fedora/manifests/42 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
		{"HEAD with Content-Length", api, "HEAD /v2/ HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n", 400},
		{"POST upload", api, "POST /v2/x/blobs/uploads/ HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n", 405},
		{"PATCH chunked with Expect", api, "PATCH /v2/x/blobs/uploads/1 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n", 405},
		{"metrics GET with Content-Length", metrics, "GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n", 400},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial("tcp", tc.addr)
			check(t, err)
			defer c.Close()
			start := time.Now()
			_, err = io.WriteString(c, tc.head)
			check(t, err)
			check(t, c.SetReadDeadline(start.Add(2*headerTimeout)))
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatalf("no answer after %v: %v", time.Since(start), err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			// The connection is closed after the answer: the next read sees EOF.
			_, err = c.Read(make([]byte, 1))
			took := time.Since(start)
			if err != io.EOF {
				t.Errorf("after the answer: got %v, want the connection closed (EOF)", err)
			}
			if took >= headerTimeout {
				t.Errorf("connection closed after %v, want within the header timeout %v", took, headerTimeout)
			}
			if resp.StatusCode != tc.status {
				t.Errorf("status: got %d, want %d", resp.StatusCode, tc.status)
			}
			if !resp.Close {
				t.Errorf("the answer does not say Connection: close")
			}
			t.Logf("answered %d and closed after %v", resp.StatusCode, took.Round(time.Millisecond))
		})
	}
	// A request without a body on the same server is answered and the connection kept.
	c, err := net.Dial("tcp", api)
	check(t, err)
	defer c.Close()
	br := bufio.NewReader(c)
	for i := range 2 {
		_, err = io.WriteString(c, "GET /v2/ HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
		check(t, err)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("request %d on a kept connection: %v", i, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("request %d without a body: got %d, want 200", i, resp.StatusCode)
		}
	}
}

// TestHTTP2Limits reads the server's SETTINGS frame: the limits are the documented ones, not
// net/http's defaults; and a request announcing a body is answered without it.
func TestHTTP2Limits(t *testing.T) {
	dir, _ := newTestTree(t, nil)
	s := newServer(t, Options{Tree: dir})
	tf := peers.NewTLS(t)
	api, _ := startServer(t, s, ServeConfig{TLSCert: tf.Cert, TLSKey: tf.Key})

	cfg := tf.ClientConfig()
	cfg.ServerName = "localhost"
	cfg.NextProtos = []string{"h2"}
	c, err := tls.Dial("tcp", api, cfg)
	check(t, err)
	defer c.Close()
	if p := c.ConnectionState().NegotiatedProtocol; p != "h2" {
		t.Fatalf("ALPN: got %q, want h2", p)
	}
	_, err = io.WriteString(c, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
	check(t, err)
	check(t, c.SetReadDeadline(time.Now().Add(10*time.Second)))
	var hdr [9]byte
	_, err = io.ReadFull(c, hdr[:])
	check(t, err)
	n := int(hdr[0])<<16 | int(hdr[1])<<8 | int(hdr[2])
	if hdr[3] != 0x4 { // SETTINGS
		t.Fatalf("first frame type %d, want SETTINGS", hdr[3])
	}
	payload := make([]byte, n)
	_, err = io.ReadFull(c, payload)
	check(t, err)
	got := map[uint16]uint32{}
	for i := 0; i+6 <= len(payload); i += 6 {
		got[binary.BigEndian.Uint16(payload[i:])] = binary.BigEndian.Uint32(payload[i+2:])
	}
	want := []struct {
		name string
		id   uint16
		v    uint32
	}{
		{"HEADER_TABLE_SIZE", 0x1, H2HeaderTableSize},
		{"MAX_CONCURRENT_STREAMS", 0x3, H2MaxConcurrentStreams},
		{"INITIAL_WINDOW_SIZE", 0x4, H2ReceiveBufferPerStream},
		{"MAX_FRAME_SIZE", 0x5, H2MaxReadFrameSize},
		{"MAX_HEADER_LIST_SIZE", 0x6, maxHeaderBytes},
	}
	for _, w := range want {
		v, ok := got[w.id]
		if w.id == 0x1 && !ok {
			v, ok = 4096, true // the protocol's default, not sent
		}
		if !ok || v < w.v || v > w.v+w.v/8 { // MAX_HEADER_LIST_SIZE includes net/http's slack
			t.Errorf("%s: got %d (sent %v), want %d", w.name, v, ok, w.v)
		}
	}

	// A GET whose body never comes is answered over HTTP/2 too.
	tr := &http.Transport{TLSClientConfig: tf.ClientConfig(), ForceAttemptHTTP2: true}
	defer tr.CloseIdleConnections()
	pr, pw := io.Pipe()
	defer pw.Close()
	req, err := http.NewRequest("GET", "https://localhost:"+portOf(api)+"/v2/", pr)
	check(t, err)
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	resp, err := client.Do(req)
	check(t, err)
	resp.Body.Close()
	if resp.ProtoMajor != 2 || resp.StatusCode != http.StatusBadRequest {
		t.Errorf("GET with a body never sent over HTTP/2: got %s %d, want HTTP/2 400", resp.Proto, resp.StatusCode)
	}
}

func portOf(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}
