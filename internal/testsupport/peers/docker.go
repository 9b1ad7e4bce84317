package peers

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Docker is a private Debian dockerd: vfs storage, no bridge, no iptables, its own data root,
// exec root, pid file, key file and socket in a temporary directory, and a private containerd
// (dockerd's classic image store does not use it for pulls, but dockerd needs one). Pulls
// work; running containers does not, and nothing needs it. 127.0.0.0/8 is an insecure
// registry by default, so dockerd reaches "localhost:PORT" over plain HTTP, and over HTTPS
// without insisting on a trusted certificate.
type Docker struct {
	// Host is the -H value, "unix:///…/docker.sock".
	Host string
	Dir  string
	Proc *Process

	docker string
	env    []string
}

// StartDocker starts a private dockerd on top of ctd (a private containerd) and waits until
// "docker version" answers. It stops when the test ends.
func StartDocker(t testing.TB, ctd *Containerd) *Docker {
	t.Helper()
	bin := Require(t, "dockerd")
	cli := Require(t, "docker")
	CleanHostResidue(t)
	dir, err := os.MkdirTemp("", "dkr-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	d := &Docker{Host: "unix://" + filepath.Join(dir, "docker.sock"), Dir: dir, docker: cli}
	cfg := filepath.Join(dir, "client")
	if err := os.MkdirAll(cfg, 0o700); err != nil {
		t.Fatal(err)
	}
	d.env = []string{"DOCKER_CONFIG=" + cfg, "DOCKER_HOST=" + d.Host}
	daemonJSON := filepath.Join(dir, "daemon.json")
	conf, _ := json.Marshal(map[string]any{"deprecated-key-path": filepath.Join(dir, "key.json")})
	if err := os.WriteFile(daemonJSON, conf, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin,
		"--config-file", daemonJSON,
		"--storage-driver=vfs", "--bridge=none", "--iptables=false", "--ip6tables=false", "--ip-masq=false",
		"--data-root", filepath.Join(dir, "data"),
		"--exec-root", filepath.Join(dir, "exec"),
		"--pidfile", filepath.Join(dir, "docker.pid"),
		"-H", d.Host,
		"--containerd", ctd.Address,
		"--containerd-namespace", "regmirror-moby",
		"--containerd-plugins-namespace", "regmirror-moby-plugins",
	)
	ready := func() error {
		_, err := RunErr(5*time.Second, d.env, cli, "version")
		return err
	}
	d.Proc = Start(t, "dockerd", cmd, ready)
	return d
}

// Docker runs the docker CLI against this daemon.
func (d *Docker) Docker(t testing.TB, args ...string) string {
	t.Helper()
	out, err := RunErr(clientTimeout, d.env, d.docker, args...)
	if err != nil {
		t.Fatalf("%v\ndockerd log:\n%s", err, Tail(d.Proc.Log, 20))
	}
	return out
}

// Pull runs "docker pull HOST/name", checks that no layer was already there (the image is
// removed after each pull) and that "docker inspect" lists HOST/repo@want among RepoDigests.
// For a TLS endpoint the CA goes to /etc/docker/certs.d/HOST/ca.crt (dockerd reads no other
// place) for the duration of the pull.
func (d *Docker) Pull(t testing.TB, ep Endpoint, name, want string) {
	t.Helper()
	if ep.TLS != nil {
		installDockerCA(t, ep)
	}
	ref := ep.Ref(name)
	out := d.Docker(t, "pull", ref)
	if strings.Contains(out, "Already exists") {
		t.Fatalf("docker pull %s: some layers were already there:\n%s", ref, out)
	}
	var digests []string
	if err := json.Unmarshal([]byte(d.Docker(t, "image", "inspect", "--format", "{{json .RepoDigests}}", ref)), &digests); err != nil {
		t.Fatalf("docker image inspect %s: %v", ref, err)
	}
	if !repoDigestOK(digests, ep, name, want) {
		t.Fatalf("docker pull %s: RepoDigests %s lack %s/%s@%s\n%s", ref, fmtList(digests), ep.Host, refName(name), want, out)
	}
	// Remove the image and its layers, so the next pull downloads everything again.
	d.Docker(t, "image", "rm", "--force", ref)
	d.Docker(t, "image", "prune", "--all", "--force")
}

// installDockerCA puts the endpoint's CA in /etc/docker/certs.d/HOST/ca.crt and removes what
// it created when the test ends.
func installDockerCA(t testing.TB, ep Endpoint) {
	t.Helper()
	base := "/etc/docker/certs.d"
	dir := filepath.Join(base, ep.Host)
	var created []string
	for _, p := range []string{"/etc/docker", base, dir} {
		if _, err := os.Stat(p); os.IsNotExist(err) {
			if err := os.Mkdir(p, 0o755); err != nil {
				t.Fatalf("installing the test CA for dockerd: %v (run as root)", err)
			}
			created = append(created, p)
		}
	}
	ca, err := os.ReadFile(ep.TLS.CACert)
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(dir, "ca.crt")
	if b, err := os.ReadFile(dst); err == nil {
		if string(b) == string(ca) {
			return // installed by an earlier pull of this test
		}
		t.Fatalf("%s exists already: not overwriting it", dst)
	}
	if err := os.WriteFile(dst, ca, 0o644); err != nil {
		t.Fatalf("installing the test CA for dockerd: %v", err)
	}
	t.Cleanup(func() {
		_ = os.Remove(dst)
		for i := len(created) - 1; i >= 0; i-- {
			_ = os.Remove(created[i])
		}
	})
}

// String describes the daemon for messages.
func (d *Docker) String() string { return fmt.Sprintf("dockerd at %s", d.Host) }
