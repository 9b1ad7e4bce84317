package redirector

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/regmirror/regmirror/internal/testsupport/peers"
	"github.com/regmirror/regmirror/layout"
)

// TestRedirectsOnOneConnection: a connection's 307s each carry their own Location, though
// on HTTP/1 every Location is built in the same room of the connection: requests sent
// pipelined (all written before the first answer is read), for two blobs in turn, to
// mirrors drawn at random, and a longer origin URL among them.
func TestRedirectsOnOneConnection(t *testing.T) {
	dir, dm := newTestTree(t, func(m *layout.Meta, _ *demo) { addMirrors(m, m.Generation) })
	s := newServer(t, Options{Tree: dir})
	api, _ := startServer(t, s, ServeConfig{})
	mirrors := map[string]bool{}
	for _, m := range []string{"de1", "de2", "fr", "us", "jp"} {
		mirrors["https://"+m+".example/pub/"] = true
	}
	blobs := []layout.Digest{dm.baseLayer, dm.toolboxLayer}
	repos := []string{"fedora", "fedora/toolbox"}

	c, err := net.Dial("tcp", api)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const n = 200
	var reqs strings.Builder
	for i := range n {
		reqs.WriteString("GET /v2/" + repos[i%2] + "/blobs/" + blobs[i%2].String() + " HTTP/1.1\r\nHost: x\r\n\r\n")
	}
	go func() { _, _ = c.Write([]byte(reqs.String())) }()
	br := bufio.NewReader(c)
	seen := map[string]bool{}
	for i := range n {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("answer %d: %v", i, err)
		}
		resp.Body.Close()
		if resp.ContentLength != 0 || len(resp.TransferEncoding) > 0 {
			t.Fatalf("answer %d: Content-Length %d, Transfer-Encoding %v: want Content-Length 0", i, resp.ContentLength, resp.TransferEncoding)
		}
		loc := resp.Header.Get("Location")
		base, ok := strings.CutSuffix(loc, layout.BlobPath(blobs[i%2]))
		if resp.StatusCode != http.StatusTemporaryRedirect || !ok || !mirrors[base] {
			t.Fatalf("answer %d: %d to %q, want 307 to a mirror's %s", i, resp.StatusCode, loc, layout.BlobPath(blobs[i%2]))
		}
		seen[base] = true
	}
	if len(seen) < 2 {
		t.Errorf("the answers went to %d mirror(s), want several (random draws)", len(seen))
	}
}

// TestAutoLength: net/http writes the Content-Length the handlers leave to it (autoLength): a
// body of up to autoLength bytes, written whole before the handler returns, over HTTP/1 and
// HTTP/2; and on the wire regmirror's 307 and manifest answers carry theirs.
func TestAutoLength(t *testing.T) {
	for _, proto := range []string{"HTTP/1.1", "HTTP/2.0"} {
		t.Run("net/http/"+proto, func(t *testing.T) {
			for _, n := range []int{0, 1, autoLength} {
				srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					_, _ = w.Write(bytes.Repeat([]byte("x"), n))
				}))
				srv.EnableHTTP2 = proto == "HTTP/2.0"
				srv.StartTLS()
				resp, err := srv.Client().Get(srv.URL)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				srv.Close()
				if resp.Proto != proto || resp.ContentLength != int64(n) || len(resp.TransferEncoding) > 0 {
					t.Errorf("%d bytes: %s, Content-Length %d, Transfer-Encoding %v; want %s, %d, none",
						n, resp.Proto, resp.ContentLength, resp.TransferEncoding, proto, n)
				}
			}
		})
	}

	dir, dm := newTestTree(t, func(m *layout.Meta, _ *demo) { addMirrors(m, m.Generation) })
	s := newServer(t, Options{Tree: dir})
	tf := peers.NewTLS(t)
	plain, _ := startServer(t, s, ServeConfig{})
	secure, _ := startServer(t, s, ServeConfig{TLSCert: tf.Cert, TLSKey: tf.Key})
	tr := &http.Transport{TLSClientConfig: tf.ClientConfig(), ForceAttemptHTTP2: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	index := dm.manifests[dm.fedoraIndex]
	if len(index) > autoLength {
		t.Fatalf("the demo's index has %d bytes: want one of at most %d", len(index), autoLength)
	}
	for _, base := range []string{"http://" + plain, "https://localhost:" + portOf(secure)} {
		for _, c := range []struct {
			path   string
			status int
			length int64
		}{
			{"/v2/fedora/blobs/" + dm.baseLayer.String(), http.StatusTemporaryRedirect, 0},
			{"/v2/fedora/manifests/42", http.StatusOK, int64(len(index))},
		} {
			resp, err := client.Get(base + c.path)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != c.status || resp.ContentLength != c.length || len(body) != int(c.length) || len(resp.TransferEncoding) > 0 {
				t.Errorf("%s %s%s: %d, Content-Length %d, %d bytes, Transfer-Encoding %v; want %d with Content-Length %d",
					resp.Proto, base, c.path, resp.StatusCode, resp.ContentLength, len(body), resp.TransferEncoding, c.status, c.length)
			}
		}
	}
}
