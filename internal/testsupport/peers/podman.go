package peers

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
)

// Podman runs rootful podman with everything of its own in a temporary directory: storage
// (vfs driver, a fresh --root for every pull so no layer is ever already there), run root,
// tmp dir, network config dir, registries.conf, policy, auth file; no events log.
//
// What podman still writes outside (containers/image's blob info cache in
// /var/lib/containers/cache, netavark's /run/containers/networks, lock files in
// /etc/containers/networks and /etc/cni/net.d) is removed by CleanHostResidue when it was not
// there before.
type Podman struct {
	Bin string
	dir string
	env []string
	n   atomic.Int64
}

// NewPodman finds podman and writes its private configuration.
func NewPodman(t testing.TB) *Podman {
	t.Helper()
	// A short directory: podman refuses a --runroot longer than 50 bytes (t.TempDir() holds
	// the test's name).
	dir, err := os.MkdirTemp("", "podman-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	p := &Podman{Bin: Require(t, "podman"), dir: dir}
	p.env = containersFiles(t, p.dir)
	conf := filepath.Join(p.dir, "containers.conf")
	if err := os.WriteFile(conf, []byte("[engine]\nevents_logger = \"none\"\ncgroup_manager = \"cgroupfs\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	p.env = append(p.env, "CONTAINERS_CONF="+conf)
	CleanHostResidue(t)
	return p
}

// Pull runs "podman pull HOST/name" into a fresh storage root and checks the image's digest
// ({{.Digest}}) is want and its RepoDigests name HOST/repo@want. Plain HTTP endpoints are
// marked insecure in the private registries.conf; TLS endpoints get --cert-dir with the CA.
func (p *Podman) Pull(t testing.TB, ep Endpoint, name, want string, extra ...string) {
	t.Helper()
	got, err := p.PullErr(ep, name, extra...)
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Fatalf("podman pull %s: image digest %s, want %s", ep.Ref(name), got, want)
	}
}

// PullErr is Pull returning the image's digest ({{.Digest}}, checked to be among its
// RepoDigests) or the failure instead of failing a test, for pulls run from goroutines.
func (p *Podman) PullErr(ep Endpoint, name string, extra ...string) (string, error) {
	n := p.n.Add(1)
	root := filepath.Join(p.dir, fmt.Sprintf("storage-%d", n))
	// The layers are podman's own copies; free the space now rather than at the test's end.
	defer os.RemoveAll(root)
	regConf := filepath.Join(p.dir, fmt.Sprintf("registries-%d.conf", n))
	conf := "unqualified-search-registries = []\n"
	if ep.TLS == nil {
		conf += fmt.Sprintf("\n[[registry]]\nlocation = %q\ninsecure = true\n", ep.Host)
	}
	if err := os.WriteFile(regConf, []byte(conf), 0o644); err != nil {
		return "", err
	}
	env := append(append([]string{}, p.env...), "CONTAINERS_REGISTRIES_CONF="+regConf)
	global := []string{
		"--root", filepath.Join(root, "root"),
		"--runroot", filepath.Join(root, "run"),
		"--storage-driver", "vfs",
		"--tmpdir", filepath.Join(root, "libpod-tmp"),
		"--network-config-dir", filepath.Join(root, "networks"),
		"--events-backend", "none",
		"--cgroup-manager", "cgroupfs",
	}
	args := append(append([]string{}, global...), "pull",
		"--signature-policy", filepath.Join(p.dir, "policy.json"),
		"--authfile", filepath.Join(p.dir, "auth.json"))
	if ep.TLS != nil {
		args = append(args, "--tls-verify=true", "--cert-dir", ep.TLS.Dir)
	}
	args = append(args, extra...)
	args = append(args, ep.Ref(name))
	if _, err := RunErr(clientTimeout, env, p.Bin, args...); err != nil {
		return "", fmt.Errorf("podman pull from %s: %w", ep, err)
	}
	out, err := RunErr(clientTimeout, env, p.Bin, append(global, "image", "inspect", ep.Ref(name))...)
	if err != nil {
		return "", fmt.Errorf("podman image inspect: %w", err)
	}
	var imgs []struct {
		Digest      string
		RepoDigests []string
	}
	if err := json.Unmarshal([]byte(strings.TrimSpace(out)), &imgs); err != nil || len(imgs) != 1 {
		return "", fmt.Errorf("podman image inspect: %v\n%s", err, out)
	}
	img := imgs[0]
	if !repoDigestOK(img.RepoDigests, ep, name, img.Digest) {
		return "", fmt.Errorf("podman pull %s: RepoDigests %s lack %s/%s@%s", ep.Ref(name), fmtList(img.RepoDigests), ep.Host, refName(name), img.Digest)
	}
	return img.Digest, nil
}
