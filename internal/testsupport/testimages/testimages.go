// Package testimages gives tests the demo images: package demoimages' set (embedded layers,
// the same bytes and digests on every machine; testdata/README.md describes it) and its
// helpers to build more images and push them into a source registry.
package testimages

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/regmirror/regmirror/internal/demoimages"
)

// Ref is one published reference: repository, tags, and what they point at (an Image or an
// Index, never both).
type Ref = demoimages.Ref

// Demo builds the demo set described in testdata/README.md.
func Demo() ([]Ref, error) { return demoimages.Demo() }

// Image builds a linux image for arch with the given layers, manifest and config media types.
func Image(manifestMT, configMT types.MediaType, arch string, layers ...v1.Layer) (v1.Image, error) {
	return demoimages.Image(manifestMT, configMT, arch, layers...)
}

// Index builds an index of the images, each with its config's platform.
func Index(mt types.MediaType, imgs ...v1.Image) v1.ImageIndex { return demoimages.Index(mt, imgs...) }

// TarDir makes a deterministic tar of dir: sorted entries, zero times, root ownership.
func TarDir(dir string) ([]byte, error) { return demoimages.TarDir(dir) }

// Push writes refs to the registry at host ("localhost:5000"), over plain HTTP unless the
// options say otherwise.
func Push(ctx context.Context, host string, refs []Ref, opts ...remote.Option) error {
	return demoimages.Push(ctx, host, refs, opts...)
}

// RootfsDir finds testdata/rootfs, the files the demo layers are built from (by
// `make demo-images`; the images themselves never read it), from anywhere inside the module.
func RootfsDir() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if ok {
		dir := filepath.Join(filepath.Dir(file), "..", "..", "..", "testdata", "rootfs")
		if _, err := os.Stat(dir); err == nil {
			return dir, nil
		}
	}
	if _, err := os.Stat("testdata/rootfs"); err == nil {
		return "testdata/rootfs", nil
	}
	return "", fmt.Errorf("finding testdata/rootfs: run from the regmirror checkout")
}
