package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/regmirror/regmirror/internal/listen"
	"github.com/regmirror/regmirror/internal/testsupport/peers"
)

// notifyingRegistry starts Debian's docker-registry configured to send its notifications to
// url with an Authorization header, as docs/release-engineers.md tells release engineers to.
func notifyingRegistry(t *testing.T, url, token string) *peers.Registry {
	t.Helper()
	bin := peers.Require(t, "docker-registry")
	dir := t.TempDir()
	port := peers.FreePort(t)
	r := &peers.Registry{
		Host:   "localhost:" + strconv.Itoa(port),
		URL:    "http://localhost:" + strconv.Itoa(port),
		Port:   port,
		Root:   filepath.Join(dir, "storage"),
		Config: filepath.Join(dir, "config.yml"),
	}
	config := fmt.Sprintf(`version: 0.1
log:
  level: info
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: 127.0.0.1:%d
  secret: regmirror-test-secret
%s`, r.Root, port, registrySnippet(t, url, token))
	if err := os.WriteFile(r.Config, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	r.Proc = peers.Start(t, "docker-registry", exec.Command(bin, "serve", r.Config), peers.HTTPReady(r.URL+"/v2/"))
	return r
}

// registrySnippet is the notifications block `regmirror listen --help` tells release engineers
// to paste, with the listener's URL and token filled in.
func registrySnippet(t *testing.T, url, token string) string {
	t.Helper()
	r := regmirror(t, nil, "listen", "--help")
	if r.err != nil {
		t.Fatalf("%v", r)
	}
	help := r.stderr
	start := strings.Index(help, "  notifications:\n")
	if start < 0 {
		t.Fatalf("listen --help shows no notifications block:\n%s", help)
	}
	block, _, _ := strings.Cut(help[start:], "\n\n")
	var b strings.Builder
	for line := range strings.SplitSeq(block, "\n") {
		b.WriteString(strings.TrimPrefix(line, "  ") + "\n")
	}
	s := strings.ReplaceAll(b.String(), "http://HOST:PORT/events", url)
	return strings.ReplaceAll(s, "TOKEN", token)
}

// startListen starts `regmirror listen` and waits for /healthz.
func startListen(t *testing.T, port int, args ...string) *peers.Process {
	t.Helper()
	bin := peers.Regmirror(t)
	args = append([]string{"listen", "--listen", "127.0.0.1:" + strconv.Itoa(port)}, args...)
	return peers.Start(t, "regmirror-listen", exec.Command(bin, args...), peers.HTTPReady(fmt.Sprintf("http://127.0.0.1:%d/healthz", port)))
}

func listenStatus(t *testing.T, port int) listen.Status {
	t.Helper()
	var s listen.Status
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/healthz", port))
	if err != nil {
		return s
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		t.Fatalf("/healthz: %v", err)
	}
	return s
}

func countLines(path, substr string) int {
	b, _ := os.ReadFile(path)
	return strings.Count(string(b), substr)
}

func waitUntil(t *testing.T, timeout time.Duration, what string, cond func() bool, log string) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > timeout {
			t.Fatalf("%s: not after %v\nlistener log:\n%s", what, timeout, peers.Tail(log, 40))
		}
		time.Sleep(100 * time.Millisecond)
	}
	return time.Since(start)
}

func indexHas(t *testing.T, dir, name string) bool {
	t.Helper()
	if _, err := os.Stat(filepath.Join(dir, "index.json")); err != nil {
		return false
	}
	tags, _ := readIndex(t, dir)
	_, ok := tags[name]
	return ok
}

// TestListen: docker-registry notifies `regmirror listen`; a burst of pushes causes one
// regeneration, a tag pushed with crane appears within seconds, strangers get 401, and a
// listener killed with a request queued regenerates after its restart.
func TestListen(t *testing.T) {
	needPeers(t)
	const token = "e2e-token-0123456789"
	tree := t.TempDir()
	state := t.TempDir()
	secret := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secret, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	port := peers.FreePort(t)
	events := fmt.Sprintf("http://127.0.0.1:%d/events", port)
	reg := notifyingRegistry(t, events, token)
	common := []string{"--source", reg.URL, "--out", tree, "--state-dir", state, "--secret-file", secret}

	l := startListen(t, port, append(common, "--debounce", "2s")...)
	// On an empty tree the listener publishes what the source has (nothing yet) at once.
	waitUntil(t, 30*time.Second, "the first run on an empty tree", func() bool {
		s := listenStatus(t, port)
		return s.Runs == 1 && !s.Running && !s.Pending
	}, l.Log)

	t.Run("stranger", func(t *testing.T) {
		for _, auth := range []string{"", "Bearer wrong"} {
			req, _ := http.NewRequest(http.MethodPost, events, strings.NewReader(`{"events":[]}`))
			req.Header.Set("Content-Type", "application/vnd.docker.distribution.events.v1+json")
			if auth != "" {
				req.Header.Set("Authorization", auth)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("Authorization %q: got %s, want 401", auth, resp.Status)
			}
		}
	})

	refs := demo(t)
	w := wantOf(t, refs)
	t.Run("burst", func(t *testing.T) {
		reg.Push(t, refs)
		waitUntil(t, 60*time.Second, "every pushed tag in the tree", func() bool {
			for _, n := range w.keys() {
				if !indexHas(t, tree, n) {
					return false
				}
			}
			return true
		}, l.Log)
		// Let late notifications arrive: still one run.
		time.Sleep(4 * time.Second)
		if got, want := countLines(l.Log, "msg=regenerating ")-1, 1; got != want {
			t.Errorf("regenerations after a burst of %d pushes: got %d, want %d\n%s", len(w), got, want, peers.Tail(l.Log, 30))
		}
		checkPublished(t, tree, w)
	})

	crane := peers.Require(t, "crane")
	craneEnv := []string{"DOCKER_CONFIG=" + t.TempDir()}
	t.Run("crane tag is served within seconds", func(t *testing.T) {
		servePort := peers.FreePort(t)
		serveURL := fmt.Sprintf("http://127.0.0.1:%d", servePort)
		peers.Start(t, "regmirror-serve", exec.Command(peers.Regmirror(t), "serve", "--tree", tree, "--listen", fmt.Sprintf("127.0.0.1:%d", servePort)), peers.HTTPReady(serveURL+"/v2/"))
		want := w[refs[0].Repo+":"+refs[0].Tags[0]].String()
		start := time.Now()
		if _, err := peers.RunErr(time.Minute, craneEnv, crane, "tag", "--insecure", reg.Host+"/"+refs[0].Repo+":"+refs[0].Tags[0], "promoted"); err != nil {
			t.Fatal(err)
		}
		waitUntil(t, 30*time.Second, "the crane-pushed tag served by the redirector", func() bool {
			req, _ := http.NewRequest(http.MethodHead, serveURL+"/v2/"+refs[0].Repo+"/manifests/promoted", nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return false
			}
			resp.Body.Close()
			return resp.StatusCode == 200 && resp.Header.Get("Docker-Content-Digest") == want
		}, l.Log)
		t.Logf("%s:promoted served %v after the push", refs[0].Repo, time.Since(start).Round(time.Millisecond))
	})

	t.Run("queued request survives kill -9", func(t *testing.T) {
		l.Kill()
		// A listener that would wait an hour: the request is queued, not served.
		l2 := startListen(t, port, append(common, "--debounce", "1h")...)
		if _, err := peers.RunErr(time.Minute, craneEnv, crane, "tag", "--insecure", reg.Host+"/"+refs[0].Repo+":"+refs[0].Tags[0], "queued"); err != nil {
			t.Fatal(err)
		}
		waitUntil(t, 30*time.Second, "the request in the state file", func() bool {
			b, _ := os.ReadFile(filepath.Join(state, "listen-state.json"))
			return strings.Contains(string(b), `"pending":true`)
		}, l2.Log)
		l2.Kill()
		if indexHas(t, tree, refs[0].Repo+":queued") {
			t.Fatalf("the tag was published before the quiet window ended")
		}
		l3 := startListen(t, port, append(common, "--debounce", "1h")...)
		waitUntil(t, 60*time.Second, "the queued tag after the restart", func() bool { return indexHas(t, tree, refs[0].Repo+":queued") }, l3.Log)
		waitUntil(t, 10*time.Second, "the state file cleared", func() bool {
			b, _ := os.ReadFile(filepath.Join(state, "listen-state.json"))
			return strings.Contains(string(b), `"pending":false`)
		}, l3.Log)
	})
}
