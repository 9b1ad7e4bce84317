package redirector

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/regmirror/regmirror/layout"
)

// A blob served from the tree must be a regular file of the recorded size inside the tree:
// symbolic links (even to the right bytes), directories and truncated files are refused with
// BLOB_UNKNOWN, never a 500 and never a byte from elsewhere.
func TestLocalBlobRefusals(t *testing.T) {
	dir, dm := newTestTree(t, nil)
	s := newServer(t, Options{Tree: dir})
	path := func(d layout.Digest) string { return filepath.Join(dir, filepath.FromSlash(layout.BlobPath(d))) }
	secret := filepath.Join(t.TempDir(), "secret")
	check(t, os.WriteFile(secret, dm.blobs[dm.baseLayer], 0o644))

	// A symbolic link out of the tree, with the right content.
	check(t, os.Remove(path(dm.baseLayer)))
	check(t, os.Symlink(secret, path(dm.baseLayer)))
	// A symbolic link inside the tree.
	check(t, os.Remove(path(dm.toolboxLayer)))
	check(t, os.Symlink(path(dm.httpdConfig), path(dm.toolboxLayer)))
	// A directory.
	var cfg layout.Digest
	for d := range dm.blobs {
		if _, isManifest := dm.manifests[d]; !isManifest && d != dm.baseLayer && d != dm.toolboxLayer && d != dm.httpdConfig {
			cfg = d
			break
		}
	}
	check(t, os.Remove(path(cfg)))
	check(t, os.Mkdir(path(cfg), 0o755))
	// A truncated file.
	check(t, os.WriteFile(path(dm.httpdConfig), []byte("{}"), 0o644))

	for name, d := range map[string]layout.Digest{"symlink out": dm.baseLayer, "symlink in": dm.toolboxLayer, "directory": cfg, "truncated": dm.httpdConfig} {
		t.Run(name, func(t *testing.T) {
			for _, repo := range []string{"fedora", "fedora/toolbox", "fedora/httpd", "fedora/minimal"} {
				w := do(s, "GET", "/v2/"+repo+"/blobs/"+d.String(), "", nil)
				if w.Code == 404 && w.Body.Len() > 0 && w.Body.Bytes()[0] == '{' {
					continue // refused, or not in this repository
				}
				t.Errorf("%s: %d, %d bytes", repo, w.Code, w.Body.Len())
			}
		})
	}
}
