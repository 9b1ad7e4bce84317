package peers

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Chromium is Debian's headless Chromium, for looking at pages as a person would.
type Chromium struct {
	bin     string
	profile string
}

// NewChromium finds chromium; each instance uses a fresh profile directory.
func NewChromium(t testing.TB) *Chromium {
	t.Helper()
	return &Chromium{bin: Require(t, "chromium"), profile: t.TempDir()}
}

func (c *Chromium) args(extra ...string) []string {
	// --no-sandbox: the tests run as root, where Chromium's sandbox refuses to start.
	return append([]string{"--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions",
		"--user-data-dir=" + c.profile, "--window-size=1280,1000"}, extra...)
}

// DumpDOM loads url and returns the DOM after the page loaded, serialised.
func (c *Chromium) DumpDOM(t testing.TB, url string) string {
	t.Helper()
	return Run(t, time.Minute, c.bin, c.args("--dump-dom", url)...)
}

// Screenshot loads url and writes a PNG of the window to path.
func (c *Chromium) Screenshot(t testing.TB, url, path string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	Run(t, time.Minute, c.bin, c.args("--screenshot="+path, url)...)
	if fi, err := os.Stat(path); err != nil || fi.Size() == 0 {
		t.Fatalf("chromium wrote no screenshot of %s to %s: %v", url, path, err)
	}
}

// ArtifactPath is where a test keeps a file for people to look at after the run:
// out/test-artifacts/NAME in the checkout.
func ArtifactPath(t testing.TB, name string) string {
	t.Helper()
	root, err := ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(root, "out", "test-artifacts", name)
}
