package peers

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// Containerd is a private containerd: its own configuration (version 2), root, state, grpc
// and ttrpc sockets in a temporary directory; the CRI plugin and the snapshotters and
// exporters a pull does not need are disabled.
type Containerd struct {
	// Address is the grpc socket, for "ctr --address" or "dockerd --containerd".
	Address string
	Dir     string
	Proc    *Process

	ctr string
	n   atomic.Int64
}

// StartContainerd starts a private containerd and waits until it answers "ctr version".
// It stops when the test ends.
func StartContainerd(t testing.TB) *Containerd {
	t.Helper()
	bin := Require(t, "containerd")
	ctr := Require(t, "ctr")
	CleanHostResidue(t)
	// A short directory: unix socket paths are limited to 108 bytes.
	dir, err := os.MkdirTemp("", "ctd-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	c := &Containerd{Address: filepath.Join(dir, "containerd.sock"), Dir: dir, ctr: ctr}
	config := fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = [
  "io.containerd.grpc.v1.cri",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing",
]

[grpc]
  address = %q

[ttrpc]
  address = %q

[debug]
  level = "warn"

[plugins."io.containerd.internal.v1.opt"]
  path = %q
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), c.Address, c.Address+".ttrpc", filepath.Join(dir, "opt"))
	confPath := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(confPath, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	ready := func() error {
		_, err := RunErr(5*time.Second, nil, ctr, "--address", c.Address, "version")
		return err
	}
	c.Proc = Start(t, "containerd", exec.Command(bin, "--config", confPath), ready)
	return c
}

// Ctr runs ctr against this containerd in namespace ns.
func (c *Containerd) Ctr(t testing.TB, ns string, args ...string) string {
	t.Helper()
	out, err := RunErr(clientTimeout, nil, c.ctr, append([]string{"--address", c.Address, "--namespace", ns}, args...)...)
	if err != nil {
		t.Fatalf("%v\ncontainerd log:\n%s", err, Tail(c.Proc.Log, 20))
	}
	return out
}

// Pull runs "ctr images pull HOST/name" (with the native snapshotter, so it unpacks on any
// file system) in a fresh namespace, so no blob is already there, and checks that
// "ctr images ls" lists HOST/name with digest want. Plain HTTP endpoints get --plain-http;
// TLS endpoints a hosts directory (--hosts-dir) whose hosts.toml names the CA.
func (c *Containerd) Pull(t testing.TB, ep Endpoint, name, want string, extra ...string) {
	t.Helper()
	ns := fmt.Sprintf("pull%d", c.n.Add(1))
	ref := ep.Ref(name)
	args := []string{"images", "pull", "--snapshotter", "native"}
	if ep.TLS == nil {
		args = append(args, "--plain-http")
	} else {
		hosts := filepath.Join(c.Dir, "hosts-"+ns)
		hostDir := filepath.Join(hosts, ep.Host)
		if err := os.MkdirAll(hostDir, 0o755); err != nil {
			t.Fatal(err)
		}
		toml := fmt.Sprintf("server = %q\n\n[host.%q]\n  capabilities = [\"pull\", \"resolve\"]\n  ca = %q\n",
			ep.URL(), ep.URL(), ep.TLS.CACert)
		if err := os.WriteFile(filepath.Join(hostDir, "hosts.toml"), []byte(toml), 0o644); err != nil {
			t.Fatal(err)
		}
		args = append(args, "--hosts-dir", hosts)
	}
	args = append(args, extra...)
	c.Ctr(t, ns, append(args, ref)...)
	out := c.Ctr(t, ns, "images", "ls")
	got := ""
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) >= 3 && f[0] == ref {
			got = f[2]
		}
	}
	if got != want {
		t.Fatalf("ctr images pull %s: images ls says digest %q, want %s\n%s", ref, got, want, out)
	}
	// Drop the image and let the garbage collector remove its content and snapshots now.
	c.Ctr(t, ns, "images", "rm", "--sync", ref)
}
