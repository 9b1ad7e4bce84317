package generator

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/random"
)

// TestMirrorsRecordedAndCarriedOver: --mirrors records the network in the metadata; a later run
// without it keeps the network (with its crawl state) instead of silently dropping it.
func TestMirrorsRecordedAndCarriedOver(t *testing.T) {
	src := newSource(t)
	src.demo()
	out := t.TempDir()
	file := filepath.Join(t.TempDir(), "mirrors.yaml")
	yaml := "origin: https://origin.example/tree/\nmirrors:\n  - name: m1.example.de\n    url: https://m1.example.de/c/\n    country: DE\n    bandwidth: 100\n"
	if err := os.WriteFile(file, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	o := src.opts(out)
	o.MirrorsFile = file
	mustRun(t, o)
	m := checkTree(t, out)
	if len(m.Mirrors) != 1 || m.Mirrors[0].Name != "m1.example.de" || m.Origin != "https://origin.example/tree/" {
		t.Fatalf("after --mirrors: got mirrors %+v origin %q, want m1.example.de and the origin", m.Mirrors, m.Origin)
	}

	img, err := random.Image(512, 1)
	if err != nil {
		t.Fatal(err)
	}
	src.pushImage("fedora/new", "1", img)
	mustRun(t, src.opts(out)) // no --mirrors
	m2 := checkTree(t, out)
	if m2.Generation != m.Generation+1 {
		t.Fatalf("got generation %d, want %d", m2.Generation, m.Generation+1)
	}
	if len(m2.Mirrors) != 1 || m2.Mirrors[0].Name != "m1.example.de" || m2.Origin != m.Origin {
		t.Errorf("without --mirrors: got mirrors %+v origin %q, want the previous network kept", m2.Mirrors, m2.Origin)
	}
}
