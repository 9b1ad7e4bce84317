package main

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/regmirror/regmirror/layout"
)

// TestDemoOnce runs the demo end to end in-process: source registry, generate, serve, and the
// demo's own check of the served catalog and manifest.
func TestDemoOnce(t *testing.T) {
	out := filepath.Join(t.TempDir(), "tree")
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), []string{"demo", "--once", "--out", out, "--listen", "127.0.0.1:0"}, &stdout, &stderr)
	if err != nil {
		t.Fatalf("demo: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	for _, want := range []string{"skopeo copy --src-tls-verify=false docker://localhost:", "demo check: catalog and a manifest answered"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("stdout lacks %q:\n%s", want, stdout.String())
		}
	}
	m, _, err := layout.NewTree(out).Load()
	if err != nil {
		t.Fatal(err)
	}
	if got, want := len(m.Repositories), 4; got != want {
		t.Errorf("got %d repositories, want %d", got, want)
	}
	if err := layout.NewTree(out).Verify(context.Background()); err != nil {
		t.Errorf("generated tree does not verify: %v", err)
	}
}
