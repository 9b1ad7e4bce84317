package main

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

func TestListenCommandErrors(t *testing.T) {
	empty := filepath.Join(t.TempDir(), "empty")
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"no source", []string{"listen", "--out", "/tmp/x"}, "--source is required"},
		{"no out", []string{"listen", "--source", "http://localhost:5000"}, "--out is required"},
		{"bad debounce", []string{"listen", "--source", "http://x", "--out", "/tmp/x", "--debounce", "0s"}, "--debounce"},
		{"bad jobs", []string{"listen", "--source", "http://x", "--out", "/tmp/x", "--jobs", "0"}, "--jobs"},
		{"bad max entries", []string{"listen", "--source", "http://x", "--out", "/tmp/x", "--max-entries", "0"}, "listen: --max-entries 0: want at least 1"},
		{"missing secret file", []string{"listen", "--source", "http://x", "--out", "/tmp/x", "--secret-file", "/nonexistent/secret"}, "--secret-file"},
		{"empty secret file", []string{"listen", "--source", "http://x", "--out", "/tmp/x", "--secret-file", empty}, "is empty"},
		{"argument", []string{"listen", "extra"}, "unexpected argument"},
		{"unknown flag", []string{"listen", "--nope"}, "see 'regmirror listen --help'"},
		{"bad glob", []string{"listen", "--source", "http://x", "--out", t.TempDir(), "--repo", ""}, "empty --repo"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			err := run(context.Background(), c.args, &out, &errOut)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want an error mentioning %q", err, c.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error spans lines: %q", err)
			}
		})
	}
}

func TestListenHelp(t *testing.T) {
	var out, errOut bytes.Buffer
	err := run(context.Background(), []string{"listen", "--help"}, &out, &errOut)
	if !errors.Is(err, pflag.ErrHelp) {
		t.Fatalf("got %v, want pflag.ErrHelp", err)
	}
	for _, want := range []string{"--debounce", "--secret-file", "--state-dir", "--repo", "--max-entries", "--max-pages", "--max-referrers", "notifications:", "url: http://HOST:PORT/events", "Authorization: [Bearer TOKEN]", "threshold:", "backoff:"} {
		if !strings.Contains(errOut.String(), want) {
			t.Errorf("help lacks %q:\n%s", want, errOut.String())
		}
	}
}

// TestListenCommandServes starts the command on a free port: /healthz answers, a stranger
// gets 401, and cancelling the context stops it cleanly.
func TestListenCommandServes(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	secret := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secret, []byte("tok\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	var errOut bytes.Buffer
	go func() {
		done <- run(ctx, []string{"listen", "--source", "http://localhost:1", "--out", t.TempDir(), "--state-dir", t.TempDir(), "--listen", addr, "--secret-file", secret}, &bytes.Buffer{}, &errOut)
	}()
	base := "http://" + addr
	var resp *http.Response
	for i := 0; ; i++ {
		resp, err = http.Get(base + "/healthz")
		if err == nil {
			break
		}
		if i > 100 {
			t.Fatalf("listener not up: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("/healthz: got %d, want 200", resp.StatusCode)
	}
	resp, err = http.Post(base+"/events", "application/vnd.docker.distribution.events.v1+json", strings.NewReader(`{"events":[]}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Errorf("POST without the token: got %d, want 401", resp.StatusCode)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("stopping: got %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("listen did not stop")
	}
}

func TestMirrorConfigCommand(t *testing.T) {
	cases := []struct {
		name    string
		args    []string
		wantOut string
		wantErr string
	}{
		{name: "nginx", args: []string{"--server", "nginx", "--root", "/srv/m"}, wantOut: "random_index on;"},
		{name: "apache", args: []string{"--server", "apache", "--root", "/srv/m"}, wantOut: "RewriteMap regmirror"},
		{name: "no server", args: []string{"--root", "/srv/m"}, wantErr: "--server is required"},
		{name: "no root", args: []string{"--server", "nginx"}, wantErr: "--root is required"},
		{name: "bad server", args: []string{"--server", "iis", "--root", "/srv/m"}, wantErr: "nginx or apache"},
		{name: "relative root", args: []string{"--server", "nginx", "--root", "m"}, wantErr: "absolute"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			err := run(context.Background(), append([]string{"mirror-config"}, c.args...), &out, &errOut)
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) || strings.Contains(err.Error(), "\n") {
					t.Fatalf("got %v, want a one-line error mentioning %q", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(out.String(), c.wantOut) {
				t.Errorf("output lacks %q:\n%s", c.wantOut, out.String())
			}
		})
	}
}
