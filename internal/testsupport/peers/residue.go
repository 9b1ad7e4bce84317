package peers

import (
	"os"
	"sort"
	"sync"
	"testing"
)

// hostResiduePaths are files and directories outside any temporary directory that the real
// clients create whatever their flags say: containers/image's blob info cache (podman,
// skopeo as root), netavark's and CNI's lock files and run directory (podman), dockerd's
// plugin socket directory, and the directory a containerd "opt" plugin would use.
var hostResiduePaths = []string{
	"/var/lib/containers",
	"/var/lib/containers/cache",
	"/run/containers",
	"/run/containers/networks",
	"/run/libpod",
	"/etc/containers/networks",
	"/etc/cni/net.d/cni.lock",
	"/run/docker",
	"/run/docker/plugins",
	"/etc/docker/key.json",
	"/opt/containerd",
}

var residueMu sync.Mutex

// CleanHostResidue notes which of the known host paths the real clients leave behind do not
// exist yet, and removes those when the test ends. Call it before starting such a client.
func CleanHostResidue(t testing.TB) {
	t.Helper()
	residueMu.Lock()
	defer residueMu.Unlock()
	var absent []string
	for _, p := range hostResiduePaths {
		if _, err := os.Lstat(p); os.IsNotExist(err) {
			absent = append(absent, p)
		}
	}
	t.Cleanup(func() {
		residueMu.Lock()
		defer residueMu.Unlock()
		// Deepest first, so a parent that was absent goes after its children.
		sort.Sort(sort.Reverse(sort.StringSlice(absent)))
		for _, p := range absent {
			_ = os.RemoveAll(p)
		}
	})
}
