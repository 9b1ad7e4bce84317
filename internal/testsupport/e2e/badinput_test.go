package e2e

import (
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/regmirror/regmirror/internal/testsupport/peers"
	"github.com/regmirror/regmirror/layout"
)

// authFile writes a containers-auth.json / docker config with one registry's credentials.
func authFile(t testing.TB, host, user, password string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "auth.json")
	auth := base64.StdEncoding.EncodeToString([]byte(user + ":" + password))
	if err := os.WriteFile(p, fmt.Appendf(nil, `{"auths":{%q:{"auth":%q}}}`, host, auth), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestGenerateBadInput runs generate against sources that cannot be published (unreachable,
// not a registry, refusing the credentials) over an existing tree: each exits non-zero with
// one line on stderr, "regmirror: …", naming the cause, and the previous generation stays
// current and valid.
func TestGenerateBadInput(t *testing.T) {
	needPeers(t)
	reg := peers.StartRegistry(t, peers.WithHtpasswd("alice", "s3cret"))
	refs := demo(t)
	reg.Push(t, refs)
	out := filepath.Join(t.TempDir(), "tree")
	generate(t, reg.URL, out, "--username", "alice", "--password", "s3cret")
	checkPublished(t, out, wantOf(t, refs))
	tree := layout.NewTree(out)
	_, before, err := tree.Load()
	if err != nil {
		t.Fatal(err)
	}

	closed := "localhost:" + strconv.Itoa(peers.FreePort(t))
	notRegistry := peers.StartNginx(t, t.TempDir())
	notRegistryHost := strings.TrimSuffix(strings.TrimPrefix(notRegistry.URL, "http://"), "/")
	tests := []struct {
		name    string
		source  string
		args    []string
		env     []string
		mention []string // the error names at least one of these (case-insensitive)
	}{
		{name: "unreachable source", source: "http://" + closed, mention: []string{closed}},
		{name: "not a registry", source: "http://" + notRegistryHost, mention: []string{notRegistryHost}},
		{name: "wrong password", source: reg.URL, args: []string{"--username", "alice", "--password", "wrong"},
			mention: []string{"401", "unauthorized", "authenticat", "credential"}},
		{name: "unknown user", source: reg.URL, args: []string{"--username", "mallory", "--password", "s3cret"},
			mention: []string{"401", "unauthorized", "authenticat", "credential"}},
		{name: "no credentials", source: reg.URL, env: []string{"REGISTRY_AUTH_FILE=", "DOCKER_CONFIG=" + t.TempDir(), "HOME=" + t.TempDir(), "XDG_RUNTIME_DIR=" + t.TempDir()},
			mention: []string{"401", "unauthorized", "authenticat", "credential"}},
		{name: "wrong password in REGISTRY_AUTH_FILE", source: reg.URL, env: []string{"REGISTRY_AUTH_FILE=" + authFile(t, reg.Host, "alice", "wrong")},
			mention: []string{"401", "unauthorized", "authenticat", "credential"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := regmirror(t, tc.env, append([]string{"generate", "--source", tc.source, "--out", out}, tc.args...)...)
			var exit *exec.ExitError
			if !errors.As(r.err, &exit) || exit.ExitCode() == 0 {
				t.Fatalf("got %v, want a non-zero exit\n%v", r.err, r)
			}
			lines := strings.Split(strings.TrimRight(r.stderr, "\n"), "\n")
			if len(lines) != 1 || !strings.HasPrefix(lines[0], "regmirror: ") {
				t.Errorf("stderr: got %q, want one line starting %q", r.stderr, "regmirror: ")
			}
			lower := strings.ToLower(r.stderr)
			named := false
			for _, m := range tc.mention {
				named = named || strings.Contains(lower, strings.ToLower(m))
			}
			if !named {
				t.Errorf("stderr: got %q, want it to name the cause (one of %q)", r.stderr, tc.mention)
			}
			t.Logf("took %v: %s", r.took, strings.TrimSpace(r.stderr))
			_, after, err := tree.Load()
			if err != nil {
				t.Fatalf("the previous tree no longer loads: %v", err)
			}
			if after != before {
				t.Errorf("current generation: got %+v, want the previous one %+v", after, before)
			}
			checkTree(t, out)
		})
	}

	t.Run("right password in REGISTRY_AUTH_FILE", func(t *testing.T) {
		env := []string{"REGISTRY_AUTH_FILE=" + authFile(t, reg.Host, "alice", "s3cret")}
		if r := regmirror(t, env, "generate", "--source", reg.URL, "--out", out); r.err != nil {
			t.Fatalf("%v", r)
		}
		checkPublished(t, out, wantOf(t, refs))
		checkTree(t, out)
	})
}

// TestGenerateConcurrentRunRefused starts a second generate on a tree while a first one is
// still writing it: the second exits non-zero at once with a one-line error, and the first
// completes a valid generation.
func TestGenerateConcurrentRunRefused(t *testing.T) {
	needPeers(t)
	reg := peers.StartRegistry(t)
	refs := randomImages(t, 40, []string{"slow/one"}, 2, 2, 2<<20)
	reg.Push(t, refs)
	proxy := newSourceProxy(t, reg.URL, 4<<20) // 8 MiB at 4 MiB/s: the first run lasts ~2 s
	out := filepath.Join(t.TempDir(), "tree")
	first := peers.Start(t, "regmirror-generate", exec.Command(peers.Regmirror(t), "generate", "--source", proxy.URL, "--out", out), nil)
	// Wait until the first run holds the tree (it has created it and is fetching).
	for proxy.Count("GET blob") == 0 {
		select {
		case <-first.Done():
			t.Fatalf("the first run ended before fetching a blob: %v\n%s", first.Err(), peers.Tail(first.Log, 20))
		case <-time.After(10 * time.Millisecond):
		}
	}
	r := regmirror(t, nil, "generate", "--source", reg.URL, "--out", out)
	var exit *exec.ExitError
	if !errors.As(r.err, &exit) {
		t.Errorf("second run: got %v, want a non-zero exit", r.err)
	}
	if lines := strings.Split(strings.TrimRight(r.stderr, "\n"), "\n"); len(lines) != 1 || !strings.HasPrefix(lines[0], "regmirror: ") {
		t.Errorf("second run stderr: got %q, want one line starting %q", r.stderr, "regmirror: ")
	}
	if !strings.Contains(r.stderr, out) {
		t.Errorf("second run stderr: got %q, want it to name the tree %s", r.stderr, out)
	}
	<-first.Done()
	if first.Err() != nil {
		t.Fatalf("first run: %v\n%s", first.Err(), peers.Tail(first.Log, 20))
	}
	checkPublished(t, out, wantOf(t, refs))
	checkTree(t, out)
}
