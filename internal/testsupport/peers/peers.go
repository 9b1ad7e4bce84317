// Package peers starts the real programs regmirror is tested against (docker-registry, nginx,
// rsync, skopeo, podman, containerd, dockerd, …) on loopback, on free ports, for one test, and
// cleans them up. A missing program fails the test loudly with what to install: end-to-end
// tests never skip silently.
package peers

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Require returns the absolute path of program, looking in PATH, bin/tools of the checkout,
// and /usr/sbin. It fails the test with an install hint when the program is missing.
func Require(t testing.TB, program string) string {
	t.Helper()
	if p, err := exec.LookPath(program); err == nil {
		return p
	}
	candidates := []string{filepath.Join("/usr/sbin", program)}
	if root, err := ModuleRoot(); err == nil {
		candidates = append(candidates, filepath.Join(root, "bin", "tools", program))
	}
	for _, c := range candidates {
		if fi, err := os.Stat(c); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return c
		}
	}
	t.Fatalf("%s not found: run 'make test' (it installs the test peers; as root for Debian packages)", program)
	return ""
}

// ModuleRoot is the checkout's root directory (where go.mod is).
func ModuleRoot() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", errors.New("finding the checkout: no caller information")
	}
	root := filepath.Join(filepath.Dir(file), "..", "..", "..")
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		return "", fmt.Errorf("finding the checkout: %w", err)
	}
	return filepath.Abs(root)
}

var (
	buildOnce sync.Once
	buildPath string
	buildErr  error
)

// Regmirror builds the regmirror binary once per test process and returns its path.
func Regmirror(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		root, err := ModuleRoot()
		if err != nil {
			buildErr = err
			return
		}
		dir, err := os.MkdirTemp("", "regmirror-bin-")
		if err != nil {
			buildErr = err
			return
		}
		buildPath = filepath.Join(dir, "regmirror")
		cmd := exec.Command("go", "build", "-o", buildPath, "./cmd/regmirror")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("building regmirror: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return buildPath
}

// FreePort returns a TCP port free on 127.0.0.1 at the time of the call.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("finding a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Process is a started peer.
type Process struct {
	Name string
	Cmd  *exec.Cmd
	Log  string // path of the file holding its stdout and stderr

	done chan struct{}
	err  error
}

// Start starts cmd in its own process group, its output in a log file in a fresh temporary
// directory, and stops the whole group when the test ends (SIGTERM, then SIGKILL after 10 s).
// If ready is non-nil, Start polls it until it returns nil (up to timeout) and fails the test
// with the log's tail if it never does or the process exits first.
func Start(t testing.TB, name string, cmd *exec.Cmd, ready func() error) *Process {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		f.Close()
		t.Fatalf("starting %s: %v", name, err)
	}
	p := &Process{Name: name, Cmd: cmd, Log: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	t.Cleanup(func() { p.Stop() })
	if ready == nil {
		return p
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		err := ready()
		if err == nil {
			return p
		}
		select {
		case <-p.done:
			t.Fatalf("%s exited before it was ready (%v): %v\n%s", name, p.err, err, Tail(logPath, 40))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready after 60s: %v\n%s", name, err, Tail(logPath, 40))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop ends the process group: SIGTERM, then SIGKILL after 10 s. Safe to call twice.
func (p *Process) Stop() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = syscall.Kill(-p.Cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-p.Cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
}

// Kill sends SIGKILL to the process group at once and waits for the process to exit.
func (p *Process) Kill() {
	_ = syscall.Kill(-p.Cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

// Done is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Err is the process's exit error, valid after Done is closed.
func (p *Process) Err() error { return p.err }

// Tail returns the last n lines of a file, for failure messages.
func Tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// HTTPReady returns a readiness check that succeeds once url answers with any status below 500.
func HTTPReady(url string) func() error {
	client := &http.Client{Timeout: 2 * time.Second}
	return func() error {
		resp, err := client.Get(url)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode >= 500 {
			return fmt.Errorf("%s answered %s", url, resp.Status)
		}
		return nil
	}
}

// Run runs a command to completion (with a timeout) and returns its stdout; the test fails
// with the command line, stdout and stderr if it exits non-zero.
func Run(t testing.TB, timeout time.Duration, name string, args ...string) string {
	t.Helper()
	out, err := RunErr(timeout, nil, name, args...)
	if err != nil {
		t.Fatalf("%v", err)
	}
	return out
}

// RunErr is Run returning the failure (with the command line and its output) instead of
// failing the test. env, when non-nil, is added to the environment.
func RunErr(timeout time.Duration, env []string, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		return stdout.String(), fmt.Errorf("%s %s: %w\nstdout:\n%s\nstderr:\n%s", name, strings.Join(args, " "), err, lastBytes(stdout.String(), 4000), lastBytes(stderr.String(), 4000))
	}
	return stdout.String(), nil
}

func lastBytes(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}
