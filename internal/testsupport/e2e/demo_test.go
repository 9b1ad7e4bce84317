package e2e

import (
	"archive/tar"
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/regmirror/regmirror/internal/demoimages"
	"github.com/regmirror/regmirror/internal/testsupport/peers"
)

// TestDemoAnywhere: the binary `make build` writes, copied alone into an empty directory and
// run from there with the checkout out of reach (a private mount namespace lays an empty
// tmpfs over it) and HOME elsewhere, runs `regmirror demo --once`; then `regmirror demo`,
// and the skopeo copy it prints works as printed (its destination aside, and with the test's
// own policy file), and the fedora:42 crane exports through it holds a hello program that
// runs on this machine.
func TestDemoAnywhere(t *testing.T) {
	root, err := peers.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	root, err = filepath.Abs(root)
	if err != nil {
		t.Fatal(err)
	}
	unshare := peers.Require(t, "unshare")
	skopeo := peers.Require(t, "skopeo")
	crane := peers.Require(t, "crane")
	build := exec.Command("make", "build")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("make build: %v\n%s", err, out)
	}
	dir := t.TempDir()
	if strings.HasPrefix(dir, root+string(filepath.Separator)) {
		t.Fatalf("the temporary directory %s is inside the checkout %s: set TMPDIR elsewhere", dir, root)
	}
	work := filepath.Join(dir, "empty")
	home := filepath.Join(dir, "home")
	for _, d := range []string{work, home} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(filepath.Join(root, "bin", "regmirror"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(work, "regmirror"), b, 0o755); err != nil {
		t.Fatal(err)
	}
	// hidden runs ./regmirror with args in work, the checkout hidden under an empty tmpfs.
	hidden := func(args ...string) *exec.Cmd {
		script := `mount -t tmpfs regmirror-hidden "$1" && test ! -e "$1/go.mod" && cd "$2" && shift 2 && exec ./regmirror "$@"`
		cmd := exec.Command(unshare, append([]string{"--mount", "--", "sh", "-c", script, "sh", root, work}, args...)...)
		cmd.Env = []string{"HOME=" + home, "PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
		return cmd
	}

	once := hidden("demo", "--once", "--listen", "127.0.0.1:0")
	out, err := once.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "demo check: catalog and a manifest answered") {
		t.Fatalf("regmirror demo --once from an empty directory, checkout hidden: %v\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(work, "out", "demo-tree", "index.json")); err != nil {
		t.Errorf("demo --once wrote no tree in its working directory: %v", err)
	}

	// The demo, serving until stopped; its printed skopeo line is the pull to try.
	demo := hidden("demo", "--listen", "127.0.0.1:0", "--out", "tree2")
	stdout, err := demo.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	demo.Stderr = &stderr
	if err := demo.Start(); err != nil {
		t.Fatal(err)
	}
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			demo.Process.Kill()
			demo.Wait()
		}
	})
	lines := make(chan string, 64)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	var printed []string
	var copyLine string
	deadline := time.After(3 * time.Minute)
	for copyLine == "" {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("demo ended before printing a skopeo command:\n%s\n%s", strings.Join(printed, "\n"), stderr.String())
			}
			printed = append(printed, l)
			if s := strings.TrimSpace(l); strings.HasPrefix(s, "skopeo copy ") {
				copyLine = s
			}
		case <-deadline:
			t.Fatalf("no skopeo command printed after 3 minutes:\n%s\n%s", strings.Join(printed, "\n"), stderr.String())
		}
	}
	go func() {
		for range lines {
		}
	}()
	fields := strings.Fields(copyLine)
	dest := fields[len(fields)-1]
	if !strings.HasPrefix(dest, "dir:") {
		t.Fatalf("printed %q: want a dir: destination last", copyLine)
	}
	pulled := filepath.Join(dir, "pulled")
	policy := filepath.Join(dir, "policy.json")
	if err := os.WriteFile(policy, []byte(`{"default":[{"type":"insecureAcceptAnything"}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	args := append([]string{"--policy", policy}, fields[1:len(fields)-1]...)
	args = append(args, "dir:"+pulled)
	env := []string{"HOME=" + home, "TMPDIR=" + dir}
	if out, err := peers.RunErr(3*time.Minute, env, skopeo, args...); err != nil {
		t.Fatalf("%s (as printed, into %s): %v\n%s", copyLine, pulled, err, out)
	}

	// What was pulled is the demo image for this machine, byte for byte.
	refs, err := demoimages.Demo()
	if err != nil {
		t.Fatal(err)
	}
	idx, err := refs[0].Index.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	var want string
	for _, m := range idx.Manifests {
		if m.Platform.Architecture == runtime.GOARCH {
			want = m.Digest.String()
		}
	}
	mf, err := os.ReadFile(filepath.Join(pulled, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(mf)
	if got := "sha256:" + hex.EncodeToString(sum[:]); got != want {
		t.Errorf("skopeo copied manifest %s, want fedora:42's %s image %s", got, runtime.GOARCH, want)
	}

	// crane exports the image's filesystem through the demo's redirector; its program runs.
	host := strings.Split(fields[len(fields)-2], "/")[2] // docker://HOST/fedora:42
	export := exec.Command(crane, "export", "--insecure", "--platform", "linux/"+runtime.GOARCH, host+"/fedora:42", "-")
	export.Env = append(os.Environ(), "DOCKER_CONFIG="+home, "HOME="+home)
	fs, err := export.Output()
	if err != nil {
		t.Fatalf("crane export %s/fedora:42: %v", host, err)
	}
	hello := filepath.Join(dir, "hello")
	found := false
	tr := tar.NewReader(bytes.NewReader(fs))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if "/"+strings.TrimPrefix(h.Name, "/") == demoimages.HelloPath {
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(hello, b, 0o755); err != nil {
				t.Fatal(err)
			}
			found = true
		}
	}
	if !found {
		t.Fatalf("crane export of fedora:42 holds no %s", demoimages.HelloPath)
	}
	ran, err := exec.Command(hello).CombinedOutput()
	if w := "Hello from regmirror's demo image (linux/" + runtime.GOARCH + ")"; err != nil || !strings.Contains(string(ran), w) {
		t.Errorf("running the pulled %s: %v, %q; want %q", demoimages.HelloPath, err, ran, w)
	}

	if err := demo.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	err = demo.Wait()
	stopped = true
	if err != nil {
		t.Errorf("demo after Ctrl-C: %v\n%s", err, stderr.String())
	}
}
