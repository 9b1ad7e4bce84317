// Package testimages builds the demo images from testdata/rootfs: deterministic bytes, so the
// same digests on every machine, and pushes them into a source registry for the demo and tests.
package testimages

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"time"

	"github.com/google/go-containerregistry/pkg/compression"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Ref is one published reference: repository, tags, and what they point at (an Image or an
// Index, never both).
type Ref struct {
	Repo  string
	Tags  []string
	Image v1.Image
	Index v1.ImageIndex
}

// Digest is the digest the tags resolve to.
func (r Ref) Digest() (v1.Hash, error) {
	if r.Index != nil {
		return r.Index.Digest()
	}
	return r.Image.Digest()
}

// RootfsDir finds testdata/rootfs from anywhere inside the module, so tests in any package and
// `go run` from the root both find it.
func RootfsDir() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if ok {
		dir := filepath.Join(filepath.Dir(file), "..", "..", "testdata", "rootfs")
		if _, err := os.Stat(dir); err == nil {
			return dir, nil
		}
	}
	if _, err := os.Stat("testdata/rootfs"); err == nil {
		return "testdata/rootfs", nil
	}
	return "", fmt.Errorf("finding testdata/rootfs: run from the regmirror checkout")
}

// Demo builds the demo set described in testdata/README.md.
func Demo() ([]Ref, error) {
	root, err := RootfsDir()
	if err != nil {
		return nil, err
	}
	layer := func(name string, comp compression.Compression, mt types.MediaType) (v1.Layer, error) {
		b, err := TarDir(filepath.Join(root, name))
		if err != nil {
			return nil, err
		}
		return tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil },
			tarball.WithCompression(comp), tarball.WithMediaType(mt), tarball.WithCompressionLevel(6))
	}
	gz := compression.GZip
	baseAMD, err := layer("base-amd64", gz, types.OCILayer)
	if err != nil {
		return nil, err
	}
	baseARM, err := layer("base-arm64", gz, types.OCILayer)
	if err != nil {
		return nil, err
	}
	baseAMDDocker, err := layer("base-amd64", gz, types.DockerLayer)
	if err != nil {
		return nil, err
	}
	toolbox, err := layer("toolbox", gz, types.OCILayer)
	if err != nil {
		return nil, err
	}
	httpd, err := layer("httpd", gz, types.DockerLayer)
	if err != nil {
		return nil, err
	}
	minimal, err := layer("minimal", compression.ZStd, types.OCILayerZStd)
	if err != nil {
		return nil, err
	}

	fedAMD, err := Image(types.OCIManifestSchema1, types.OCIConfigJSON, "amd64", baseAMD)
	if err != nil {
		return nil, err
	}
	fedARM, err := Image(types.OCIManifestSchema1, types.OCIConfigJSON, "arm64", baseARM)
	if err != nil {
		return nil, err
	}
	fedora := Index(types.OCIImageIndex, fedAMD, fedARM)
	tb, err := Image(types.OCIManifestSchema1, types.OCIConfigJSON, "amd64", baseAMD, toolbox)
	if err != nil {
		return nil, err
	}
	hd, err := Image(types.DockerManifestSchema2, types.DockerConfigJSON, "amd64", baseAMDDocker, httpd)
	if err != nil {
		return nil, err
	}
	mn, err := Image(types.OCIManifestSchema1, types.OCIConfigJSON, "amd64", minimal)
	if err != nil {
		return nil, err
	}
	return []Ref{
		{Repo: "fedora", Tags: []string{"42", "latest"}, Index: fedora},
		{Repo: "fedora/toolbox", Tags: []string{"42"}, Image: tb},
		{Repo: "fedora/httpd", Tags: []string{"2.4", "latest"}, Image: hd},
		{Repo: "fedora/minimal", Tags: []string{"42"}, Image: mn},
	}, nil
}

// Image builds a linux image for arch with the given layers, manifest and config media types.
func Image(manifestMT, configMT types.MediaType, arch string, layers ...v1.Layer) (v1.Image, error) {
	img := mutate.MediaType(empty.Image, manifestMT)
	img = mutate.ConfigMediaType(img, configMT)
	for _, l := range layers {
		var err error
		img, err = mutate.Append(img, mutate.Addendum{Layer: l, MediaType: mustMediaType(l)})
		if err != nil {
			return nil, fmt.Errorf("building image: %w", err)
		}
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", arch
	cf.Created = v1.Time{Time: time.Unix(0, 0).UTC()}
	cf.Config.Cmd = []string{"/bin/sh"}
	return mutate.ConfigFile(img, cf)
}

// Index builds an index of the images, each with its config's platform.
func Index(mt types.MediaType, imgs ...v1.Image) v1.ImageIndex {
	idx := mutate.IndexMediaType(empty.Index, mt)
	for _, img := range imgs {
		cf, err := img.ConfigFile()
		var p *v1.Platform
		if err == nil {
			p = &v1.Platform{OS: cf.OS, Architecture: cf.Architecture}
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: p}})
	}
	return idx
}

func mustMediaType(l v1.Layer) types.MediaType {
	mt, err := l.MediaType()
	if err != nil {
		return types.OCILayer
	}
	return mt
}

// TarDir makes a deterministic tar of dir: sorted entries, zero times, root ownership.
func TarDir(dir string) ([]byte, error) {
	var paths []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != dir {
			paths = append(paths, p)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", dir, err)
	}
	sort.Strings(paths)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, p := range paths {
		fi, err := os.Lstat(p)
		if err != nil {
			return nil, err
		}
		rel, _ := filepath.Rel(dir, p)
		h := &tar.Header{Name: filepath.ToSlash(rel), ModTime: time.Unix(0, 0), Format: tar.FormatPAX}
		switch {
		case fi.IsDir():
			h.Typeflag, h.Mode, h.Name = tar.TypeDir, 0o755, h.Name+"/"
		case fi.Mode().IsRegular():
			h.Typeflag, h.Mode, h.Size = tar.TypeReg, 0o644, fi.Size()
			if fi.Mode()&0o111 != 0 {
				h.Mode = 0o755
			}
		default:
			continue
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if h.Typeflag == tar.TypeReg {
			b, err := os.ReadFile(p)
			if err != nil {
				return nil, err
			}
			tw.Write(b)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Push writes refs to the registry at host ("localhost:5000"), over plain HTTP unless the
// options say otherwise.
func Push(ctx context.Context, host string, refs []Ref, opts ...remote.Option) error {
	opts = append([]remote.Option{remote.WithContext(ctx)}, opts...)
	for _, r := range refs {
		for _, tag := range r.Tags {
			ref, err := name.NewTag(host+"/"+r.Repo+":"+tag, name.Insecure)
			if err != nil {
				return err
			}
			if r.Index != nil {
				err = remote.WriteIndex(ref, r.Index, opts...)
			} else {
				err = remote.Write(ref, r.Image, opts...)
			}
			if err != nil {
				return fmt.Errorf("pushing %s: %w", ref, err)
			}
		}
	}
	return nil
}
