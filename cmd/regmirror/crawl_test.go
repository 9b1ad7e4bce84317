package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/regmirror/regmirror/layout"
	"github.com/spf13/pflag"
)

// crawlTree publishes a tree of one blob and returns its directory.
func crawlTree(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	data := []byte("blob")
	d := layout.MustDigest("sha256:fa2a3ba5ab3ab6e1a0ec4d2e1a6f9f6a4a3e1f44b2e1e5f3d1b0c8a9f6e4d2c1")
	if err := os.MkdirAll(filepath.Join(dir, "blobs", "sha256"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, filepath.FromSlash(layout.BlobPath(d))), data, 0o644); err != nil {
		t.Fatal(err)
	}
	m := layout.NewMeta(1)
	m.Blobs[d] = &layout.Blob{Size: int64(len(data)), Since: 1}
	if _, err := layout.NewTree(dir).Publish(m); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestCrawlCommand(t *testing.T) {
	dir := crawlTree(t)
	srv := httptest.NewServer(http.FileServer(http.Dir(dir)))
	defer srv.Close()
	file := filepath.Join(t.TempDir(), "mirrors.yaml")
	if err := os.WriteFile(file, []byte(fmt.Sprintf("mirrors:\n  - name: local\n    url: %s/\n    country: DE\n", srv.URL)), 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	if err := run(context.Background(), []string{"crawl", "--tree", dir, "--mirrors", file, "--jobs", "2", "--timeout", "5s", "--sample", "2", "--max-failures", "2"}, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "local") || !strings.Contains(out.String(), "up to date") || !strings.Contains(out.String(), "generation 1: 1 of 1 mirrors healthy") {
		t.Errorf("output:\n%s", out.String())
	}
	// Again, with the mirrors recorded in the tree.
	out.Reset()
	if err := run(context.Background(), []string{"crawl", "--tree", dir}, &out, &errOut); err != nil || !strings.Contains(out.String(), "up to date") {
		t.Errorf("second crawl: %v\n%s", err, out.String())
	}
}

func TestCrawlCommandErrors(t *testing.T) {
	dir := crawlTree(t)
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no tree", []string{}, "crawl: --tree is required"},
		{"bad jobs", []string{"--tree", dir, "--jobs", "0"}, "crawl: --jobs 0: want at least 1"},
		{"bad timeout", []string{"--tree", dir, "--timeout", "0s"}, "crawl: --timeout 0s"},
		{"bad sample", []string{"--tree", dir, "--sample", "0"}, "crawl: --sample 0"},
		{"bad max failures", []string{"--tree", dir, "--max-failures", "0"}, "crawl: --max-failures 0"},
		{"unknown flag", []string{"--tree", dir, "--bogus"}, "crawl: unknown flag: --bogus: see 'regmirror crawl --help'"},
		{"argument", []string{"--tree", dir, "extra"}, `crawl: unexpected argument "extra"`},
		{"no mirrors", []string{"--tree", dir}, "records no mirrors: give the mirrors file with --mirrors FILE"},
		{"missing mirrors file", []string{"--tree", dir, "--mirrors", filepath.Join(dir, "none.yaml")}, "crawl: reading mirrors file:"},
		{"empty tree", []string{"--tree", t.TempDir()}, "run regmirror generate first"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			err := run(context.Background(), append([]string{"crawl"}, tc.args...), &out, &errOut)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error is not one line: %q", err)
			}
		})
	}
	var out, errOut bytes.Buffer
	if err := run(context.Background(), []string{"crawl", "--help"}, &out, &errOut); !errors.Is(err, pflag.ErrHelp) || !strings.Contains(errOut.String(), "--max-failures") {
		t.Errorf("help: %v\n%s", err, errOut.String())
	}
}
