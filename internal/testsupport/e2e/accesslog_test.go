package e2e

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/regmirror/regmirror/internal/testsupport/peers"
)

// TestAccessLogNotLost: `regmirror serve` (access log on, as deployed) keeps every line of the
// requests it answered when it is stopped (SIGTERM, as systemd stops it), and loses at most
// the last second's when it crashes (SIGKILL): lines are formatted every 50 ms and written
// every 100 ms.
func TestAccessLogNotLost(t *testing.T) {
	needPeers(t)
	tree := filepath.Join(t.TempDir(), "tree")
	if r := regmirror(t, nil, "demo", "--once", "--out", tree, "--listen", "127.0.0.1:"+strconv.Itoa(peers.FreePort(t))); r.err != nil {
		t.Fatalf("regmirror demo --once: %v\n%s", r.err, r)
	}
	const n = 500
	for _, c := range []struct {
		name   string
		signal syscall.Signal
		wait   time.Duration // between the last answer and the signal
	}{
		{"SIGTERM at once", syscall.SIGTERM, 0},
		{"SIGKILL after a second", syscall.SIGKILL, 1100 * time.Millisecond},
	} {
		t.Run(c.name, func(t *testing.T) {
			for _, format := range []string{"text", "json"} {
				port := peers.FreePort(t)
				url := "http://127.0.0.1:" + strconv.Itoa(port)
				p := peers.Start(t, "regmirror-serve-"+format, exec.Command(peers.Regmirror(t), "serve", "--tree", tree,
					"--listen", "127.0.0.1:"+strconv.Itoa(port), "--log-format", format), peers.HTTPReady(url+"/v2/"))
				client := &http.Client{Timeout: 10 * time.Second}
				for i := range n {
					resp, err := client.Get(fmt.Sprintf("%s/v2/fedora/manifests/42?i=%d", url, i))
					if err != nil {
						t.Fatal(err)
					}
					resp.Body.Close()
				}
				time.Sleep(c.wait)
				_ = syscall.Kill(-p.Cmd.Process.Pid, c.signal)
				select {
				case <-p.Done():
				case <-time.After(15 * time.Second):
					t.Fatalf("%s: serve did not exit after %v", format, c.signal)
				}
				log, err := os.ReadFile(p.Log)
				if err != nil {
					t.Fatal(err)
				}
				marker := ` path=/v2/fedora/manifests/42 `
				if format == "json" {
					marker = `"path":"/v2/fedora/manifests/42"`
				}
				if got := strings.Count(string(log), marker); got != n {
					t.Errorf("%s: got %d access lines for the %d answered requests, want %d\n%s", format, got, n, n, peers.Tail(p.Log, 5))
				}
			}
		})
	}
}
