package redirector

import (
	"bufio"
	"net"
	"net/http"
	"strings"
	"testing"

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
