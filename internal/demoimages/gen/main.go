// Command gen rebuilds the demo layers of package demoimages: for each layer, the files of
// ROOTFS/<layer> and, where the layer has one, the hello program built for its architecture
// (static, reproducible: CGO_ENABLED=0 -trimpath -buildvcs=false -ldflags="-s -w -buildid="),
// as a deterministic tar, compressed (gzip best, or zstd best, one thread) into OUT. It also
// writes OUT/go-version, the toolchain the programs were built with: another one builds other
// bytes. Run it from its package directory (go generate, make demo-images).
package main

import (
	"bytes"
	"compress/gzip"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"

	"github.com/google/go-containerregistry/pkg/compression"
	"github.com/klauspost/compress/zstd"

	"github.com/regmirror/regmirror/internal/demoimages"
)

func main() {
	rootfs := flag.String("rootfs", "../../testdata/rootfs", "directory of the layers' files")
	out := flag.String("out", "layers", "directory the layer blobs are written to")
	flag.Parse()
	if err := run(*rootfs, *out); err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
}

func run(rootfs, out string) error {
	tmp, err := os.MkdirTemp("", "demoimages-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	for _, l := range demoimages.LayerFiles {
		stage := filepath.Join(tmp, l.Name)
		if err := os.CopyFS(stage, os.DirFS(filepath.Join(rootfs, l.Name))); err != nil {
			return fmt.Errorf("layer %s: %w", l.Name, err)
		}
		if l.Hello != "" {
			if err := buildHello(l.Hello, filepath.Join(stage, demoimages.HelloPath)); err != nil {
				return fmt.Errorf("layer %s: %w", l.Name, err)
			}
		}
		b, err := demoimages.TarDir(stage)
		if err != nil {
			return fmt.Errorf("layer %s: %w", l.Name, err)
		}
		if b, err = compress(b, l.Compression); err != nil {
			return fmt.Errorf("layer %s: %w", l.Name, err)
		}
		if err := writeFile(filepath.Join(out, l.File), b); err != nil {
			return err
		}
		fmt.Printf("%s: %d bytes\n", l.File, len(b))
	}
	return writeFile(filepath.Join(out, "go-version"), []byte(runtime.Version()+"\n"))
}

// buildHello builds package hello (beside this command) for linux/arch into dst.
func buildHello(arch, dst string) error {
	cmd := exec.Command("go", "build", "-trimpath", "-buildvcs=false", "-ldflags=-s -w -buildid=", "-o", dst, "./hello")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+arch, "GOFLAGS=")
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("building hello for linux/%s: %w", arch, err)
	}
	return os.Chmod(dst, 0o755)
}

func compress(b []byte, c compression.Compression) ([]byte, error) {
	var buf bytes.Buffer
	switch c {
	case compression.ZStd:
		w, err := zstd.NewWriter(&buf, zstd.WithEncoderLevel(zstd.SpeedBestCompression), zstd.WithEncoderConcurrency(1))
		if err != nil {
			return nil, err
		}
		if _, err := w.Write(b); err != nil {
			return nil, err
		}
		if err := w.Close(); err != nil {
			return nil, err
		}
	default:
		w, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
		if _, err := w.Write(b); err != nil {
			return nil, err
		}
		if err := w.Close(); err != nil {
			return nil, err
		}
	}
	return buf.Bytes(), nil
}

// writeFile writes b to path through a temporary file and a rename.
func writeFile(path string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
