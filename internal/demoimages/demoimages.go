// Package demoimages is the demo set `regmirror demo` publishes and the tests use: a few
// images built from layers embedded in the binary (layers/), so the same bytes and digests
// on every machine, from any directory, with no checkout.
//
// The layers are deterministic tarballs committed in layers/: the files of testdata/rootfs
// and, in the base and minimal layers, /usr/bin/hello (package hello here: a static Go
// program, built for each architecture with CGO_ENABLED=0 -trimpath -buildvcs=false
// -ldflags="-s -w -buildid="). `make demo-images` (go generate here) rebuilds them;
// TestLayersReproducible checks the committed bytes are what that gives, and TestLayers
// that each is a valid, deterministic tar with the right program for its architecture.
// testdata/README.md describes the set.
package demoimages

import (
	"archive/tar"
	"bytes"
	"context"
	"embed"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
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

//go:generate go run ./gen -rootfs ../../testdata/rootfs -out layers

// Layers holds the committed layer blobs (layers/<name>.tar.gz, or .tar.zst for zstd) and
// layers/go-version, the toolchain that built their programs.
//
//go:embed layers
var Layers embed.FS

// LayerFiles names each layer's blob in Layers and its compression, in the order the
// generator writes them.
var LayerFiles = []struct {
	Name, File  string
	Compression compression.Compression
	Hello       string // the architecture of /usr/bin/hello in the layer, "" for none
}{
	{"base-amd64", "base-amd64.tar.gz", compression.GZip, "amd64"},
	{"base-arm64", "base-arm64.tar.gz", compression.GZip, "arm64"},
	{"toolbox", "toolbox.tar.gz", compression.GZip, ""},
	{"httpd", "httpd.tar.gz", compression.GZip, ""},
	{"minimal", "minimal.tar.zst", compression.ZStd, "amd64"},
}

// HelloPath is where the demo program sits in the images that have it.
const HelloPath = "/usr/bin/hello"

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

// layer returns the committed layer file as a layer of media type mt.
func layer(file string, mt types.MediaType) (v1.Layer, error) {
	b, err := Layers.ReadFile(path.Join("layers", file))
	if err != nil {
		return nil, fmt.Errorf("reading the demo layer %s: %w", file, err)
	}
	comp := compression.GZip
	if mt == types.OCILayerZStd {
		comp = compression.ZStd
	}
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil },
		tarball.WithMediaType(mt), tarball.WithCompression(comp))
	if err != nil {
		return nil, fmt.Errorf("reading the demo layer %s: %w", file, err)
	}
	return l, nil
}

// Demo builds the demo set described in testdata/README.md:
//
//	fedora:42, fedora:latest             OCI index: linux/amd64 + linux/arm64 (base layers)
//	fedora/toolbox:42                    OCI image, linux/amd64: base-amd64 + toolbox
//	fedora/httpd:2.4, fedora/httpd:latest Docker schema 2 image, linux/amd64: base-amd64 + httpd
//	fedora/minimal:42                    OCI image, linux/amd64: one zstd layer
//
// Every image runs /usr/bin/hello.
func Demo() ([]Ref, error) {
	var (
		layers = map[string]v1.Layer{}
		err    error
	)
	for _, l := range []struct {
		key, file string
		mt        types.MediaType
	}{
		{"base-amd64", "base-amd64.tar.gz", types.OCILayer},
		{"base-arm64", "base-arm64.tar.gz", types.OCILayer},
		{"base-amd64-docker", "base-amd64.tar.gz", types.DockerLayer},
		{"toolbox", "toolbox.tar.gz", types.OCILayer},
		{"httpd", "httpd.tar.gz", types.DockerLayer},
		{"minimal", "minimal.tar.zst", types.OCILayerZStd},
	} {
		if layers[l.key], err = layer(l.file, l.mt); err != nil {
			return nil, err
		}
	}
	images := []struct {
		manifest, config types.MediaType
		arch             string
		layers           []string
	}{
		{types.OCIManifestSchema1, types.OCIConfigJSON, "amd64", []string{"base-amd64"}},
		{types.OCIManifestSchema1, types.OCIConfigJSON, "arm64", []string{"base-arm64"}},
		{types.OCIManifestSchema1, types.OCIConfigJSON, "amd64", []string{"base-amd64", "toolbox"}},
		{types.DockerManifestSchema2, types.DockerConfigJSON, "amd64", []string{"base-amd64-docker", "httpd"}},
		{types.OCIManifestSchema1, types.OCIConfigJSON, "amd64", []string{"minimal"}},
	}
	built := make([]v1.Image, len(images))
	for i, im := range images {
		var ls []v1.Layer
		for _, k := range im.layers {
			ls = append(ls, layers[k])
		}
		img, err := Image(im.manifest, im.config, im.arch, ls...)
		if err == nil {
			img, err = withCmd(img, []string{HelloPath})
		}
		if err != nil {
			return nil, fmt.Errorf("building the demo images: %w", err)
		}
		built[i] = img
	}
	return []Ref{
		{Repo: "fedora", Tags: []string{"42", "latest"}, Index: Index(types.OCIImageIndex, built[0], built[1])},
		{Repo: "fedora/toolbox", Tags: []string{"42"}, Image: built[2]},
		{Repo: "fedora/httpd", Tags: []string{"2.4", "latest"}, Image: built[3]},
		{Repo: "fedora/minimal", Tags: []string{"42"}, Image: built[4]},
	}, nil
}

func withCmd(img v1.Image, cmd []string) (v1.Image, error) {
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.Config.Cmd = cmd
	return mutate.ConfigFile(img, cf)
}

// Image builds a linux image for arch with the given layers, manifest and config media types.
func Image(manifestMT, configMT types.MediaType, arch string, layers ...v1.Layer) (v1.Image, error) {
	img := mutate.MediaType(empty.Image, manifestMT)
	img = mutate.ConfigMediaType(img, configMT)
	for _, l := range layers {
		mt, err := l.MediaType()
		if err != nil {
			mt = types.OCILayer
		}
		img, err = mutate.Append(img, mutate.Addendum{Layer: l, MediaType: mt})
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

// Push writes refs to the registry at host ("localhost:5000"), over plain HTTP unless the
// options say otherwise.
func Push(ctx context.Context, host string, refs []Ref, opts ...remote.Option) error {
	opts = append([]remote.Option{remote.WithContext(ctx)}, opts...)
	for _, r := range refs {
		for _, tag := range r.Tags {
			ref, err := name.NewTag(host+"/"+r.Repo+":"+tag, name.Insecure)
			if err != nil {
				return fmt.Errorf("pushing %s/%s:%s: %w", host, r.Repo, tag, err)
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

// TarDir makes a deterministic tar of dir: sorted entries, zero times, root ownership,
// modes 0755 (directories and executables) and 0644.
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
			return nil, fmt.Errorf("reading %s: %w", dir, err)
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
			return nil, fmt.Errorf("taring %s: %w", dir, err)
		}
		if h.Typeflag == tar.TypeReg {
			b, err := os.ReadFile(p)
			if err != nil {
				return nil, fmt.Errorf("reading %s: %w", dir, err)
			}
			if _, err := tw.Write(b); err != nil {
				return nil, fmt.Errorf("taring %s: %w", dir, err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("taring %s: %w", dir, err)
	}
	return buf.Bytes(), nil
}
