package demoimages

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"debug/elf"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/compression"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/klauspost/compress/zstd"
)

// unpack returns the tar inside a committed layer blob.
func unpack(t *testing.T, file string, c compression.Compression) []byte {
	t.Helper()
	b, err := Layers.ReadFile(path.Join("layers", file))
	if err != nil {
		t.Fatal(err)
	}
	var r io.Reader
	switch c {
	case compression.ZStd:
		d, err := zstd.NewReader(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		r = d
	default:
		g, err := gzip.NewReader(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		r = g
	}
	out, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return out
}

// TestLayers checks each committed layer: a tar in the deterministic form TarDir writes
// (sorted, zero times, root-owned), the files of testdata/rootfs, and a static hello
// program for the layer's architecture; the one for this machine runs.
func TestLayers(t *testing.T) {
	machines := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}
	total := 0
	for _, l := range LayerFiles {
		t.Run(l.Name, func(t *testing.T) {
			b := unpack(t, l.File, l.Compression)
			total += len(b)
			tr := tar.NewReader(bytes.NewReader(b))
			var names []string
			var hello []byte
			for {
				h, err := tr.Next()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				if h.ModTime.Unix() != 0 || h.Uid != 0 || h.Gid != 0 || (h.Mode != 0o644 && h.Mode != 0o755) {
					t.Errorf("%s: mtime %v, owner %d:%d, mode %o; want 0, 0:0, 0644 or 0755", h.Name, h.ModTime, h.Uid, h.Gid, h.Mode)
				}
				names = append(names, h.Name)
				if "/"+h.Name == HelloPath {
					if hello, err = io.ReadAll(tr); err != nil {
						t.Fatal(err)
					}
				}
			}
			if !slices.IsSorted(names) {
				t.Errorf("entries not sorted: %q", names)
			}
			src, err := os.ReadDir(filepath.Join("..", "..", "testdata", "rootfs", l.Name))
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range src {
				if !slices.Contains(names, e.Name()+"/") && !slices.Contains(names, e.Name()) {
					t.Errorf("testdata/rootfs/%s/%s: not in the layer %q", l.Name, e.Name(), names)
				}
			}
			if l.Hello == "" {
				if hello != nil {
					t.Errorf("layer has %s, want none", HelloPath)
				}
				return
			}
			if hello == nil {
				t.Fatalf("layer lacks %s: %q", HelloPath, names)
			}
			f, err := elf.NewFile(bytes.NewReader(hello))
			if err != nil {
				t.Fatalf("%s: %v", HelloPath, err)
			}
			if got, want := f.Machine, machines[l.Hello]; got != want {
				t.Errorf("%s: machine %v, want %v", HelloPath, got, want)
			}
			for _, p := range f.Progs {
				if p.Type == elf.PT_INTERP {
					t.Errorf("%s: dynamically linked (PT_INTERP), want static", HelloPath)
				}
			}
			if l.Hello != runtime.GOARCH || runtime.GOOS != "linux" {
				return
			}
			bin := filepath.Join(t.TempDir(), "hello")
			if err := os.WriteFile(bin, hello, 0o755); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command(bin).CombinedOutput()
			if want := "Hello from regmirror's demo image (linux/" + l.Hello + ")"; err != nil || !strings.Contains(string(out), want) {
				t.Errorf("running %s: %v, output %q; want %q", HelloPath, err, out, want)
			}
		})
	}
	if total < 2<<20 || total > 16<<20 {
		t.Errorf("the layers hold %d bytes unpacked, want a few MiB", total)
	}
}

// TestDemoShape checks the set's structure the tests rely on (testdata/README.md).
func TestDemoShape(t *testing.T) {
	refs, err := Demo()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, r := range refs {
		if r.Index != nil {
			idx, err := r.Index.IndexManifest()
			if err != nil {
				t.Fatal(err)
			}
			var plats []string
			for _, m := range idx.Manifests {
				plats = append(plats, m.Platform.OS+"/"+m.Platform.Architecture)
			}
			got[r.Repo] = string(idx.MediaType) + " " + strings.Join(plats, ",")
			continue
		}
		m, err := r.Image.Manifest()
		if err != nil {
			t.Fatal(err)
		}
		var layers []string
		for _, l := range m.Layers {
			layers = append(layers, string(l.MediaType))
		}
		got[r.Repo] = string(m.MediaType) + " " + strings.Join(layers, ",")
	}
	want := map[string]string{
		"fedora":         string(types.OCIImageIndex) + " linux/amd64,linux/arm64",
		"fedora/toolbox": string(types.OCIManifestSchema1) + " " + string(types.OCILayer) + "," + string(types.OCILayer),
		"fedora/httpd":   string(types.DockerManifestSchema2) + " " + string(types.DockerLayer) + "," + string(types.DockerLayer),
		"fedora/minimal": string(types.OCIManifestSchema1) + " " + string(types.OCILayerZStd),
	}
	for repo, w := range want {
		if got[repo] != w {
			t.Errorf("%s: got %q, want %q", repo, got[repo], w)
		}
	}
	if len(got) != len(want) {
		t.Errorf("got repositories %v, want %d", got, len(want))
	}
}

// TestLayersReproducible rebuilds the layers (make demo-images) into a temporary directory
// and compares them with the committed ones, byte for byte. Go builds are reproducible for
// one toolchain only: with another than layers/go-version names, the test says so and stops.
func TestLayersReproducible(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the hello program twice: not a -short test")
	}
	committed, err := Layers.ReadFile("layers/go-version")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := runtime.Version(), strings.TrimSpace(string(committed)); got != want {
		t.Skipf("the layers were built with %s, this is %s: the programs' bytes differ across toolchains (make demo-images rebuilds them)", want, got)
	}
	out := t.TempDir()
	cmd := exec.Command("go", "run", "./gen", "-rootfs", "../../testdata/rootfs", "-out", out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go run ./gen: %v\n%s", err, b)
	}
	for _, l := range LayerFiles {
		got, err := os.ReadFile(filepath.Join(out, l.File))
		if err != nil {
			t.Fatal(err)
		}
		want, err := Layers.ReadFile(path.Join("layers", l.File))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s: rebuilt %d bytes differ from the committed %d: run make demo-images and commit", l.File, len(got), len(want))
		}
	}
}
