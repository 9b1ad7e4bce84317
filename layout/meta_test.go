package layout

import (
	"bytes"
	"errors"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
)

func TestPublishLoadRoundTrip(t *testing.T) {
	tree := NewTree(t.TempDir())
	if _, _, err := tree.Load(); !errors.Is(err, ErrNoGeneration) {
		t.Fatalf("Load on empty tree: got %v, want ErrNoGeneration", err)
	}
	d := MustDigest("sha256:" + strings.Repeat("ab", 32))
	m := NewMeta(3)
	m.Repositories["fedora"] = &Repository{Tags: map[string]Digest{"42": d}, Manifests: []Digest{d}}
	m.Manifests[d] = &Manifest{MediaType: "application/vnd.oci.image.manifest.v1+json", Data: []byte(`{"schemaVersion":2}`)}
	m.Blobs[d] = &Blob{Size: 19, Since: 3}
	s, err := tree.Publish(m)
	if err != nil {
		t.Fatal(err)
	}
	got, gs, err := tree.Load()
	if err != nil {
		t.Fatal(err)
	}
	if gs != s {
		t.Errorf("stamp: got %+v, want %+v", gs, s)
	}
	if got.Generation != 3 || string(got.Manifests[d].Data) != `{"schemaVersion":2}` || got.Repositories["fedora"].Tags["42"] != d {
		t.Errorf("round trip lost data: got %+v", got)
	}
}

// TestDecodeMetaFormats reads metadata of each format: format 1 (variant bytes stored) loses
// its variants, and regions point at none; format 2 loads with or without the per-manifest
// variant records earlier writers wrote (ignored: variants are rendered); an unknown format is
// refused.
func TestDecodeMetaFormats(t *testing.T) {
	d := "sha256:" + strings.Repeat("ab", 32)
	sets := `"regions":{"DE":{"tiers":[["a"]],"variantSet":0}},"variantSets":`
	for _, tc := range []struct {
		name     string
		json     string
		ok       bool
		wantSets int
		wantSet  int // DE's variant set
	}{
		{"format 2", `{"format":2,"generation":1,` + sets + `[{"mirrors":["a"]}]}`, true, 1, 0},
		{"format 2 with variant records", `{"format":2,"generation":1,` + sets + `[{"mirrors":["a"],"variants":{"` + d + `":{"digest":"` + d + `","size":5}}}]}`, true, 1, 0},
		{"format 1", `{"format":1,"generation":1,` + sets + `[{"variants":{"` + d + `":{"digest":"` + d + `","mediaType":"x","data":"e30="}}}]}`, true, 0, -1},
		{"format 3 whole document (EncodeMeta)", `{"format":3,"generation":1,` + sets + `[{"mirrors":["a"],"variants":{}}]}`, true, 1, 0},
		{"format 3 root", `{"format":3,"kind":"root","generation":1}`, false, 0, 0},
		{"format 3 pack", `{"format":3,"kind":"pack"}`, false, 0, 0},
		{"format 4", `{"format":4,"generation":1}`, false, 0, 0},
		{"no format", `{"generation":1}`, false, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := DecodeMeta(zstdBytes(t, tc.json))
			if (err == nil) != tc.ok {
				t.Fatalf("DecodeMeta: got err %v, want ok=%v", err, tc.ok)
			}
			if !tc.ok {
				return
			}
			if m.Format != FormatVersion {
				t.Errorf("format: got %d, want %d", m.Format, FormatVersion)
			}
			if got := len(m.VariantSets); got != tc.wantSets {
				t.Errorf("variant sets: got %d, want %d", got, tc.wantSets)
			}
			if got := m.Regions["DE"].VariantSet; got != tc.wantSet {
				t.Errorf("DE's variant set: got %d, want %d", got, tc.wantSet)
			}
		})
	}
}

func zstdBytes(t *testing.T, s string) []byte {
	t.Helper()
	zw, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer zw.Close()
	return zw.EncodeAll([]byte(s), nil)
}

func TestLoadRefusesCorruptMeta(t *testing.T) {
	tree := NewTree(t.TempDir())
	s, err := tree.Publish(NewMeta(1))
	if err != nil {
		t.Fatal(err)
	}
	d, _ := metaDigestFromRef(s.Meta)
	if err := os.WriteFile(tree.Path(MetaPath(d)), []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := tree.Load(); err == nil || !strings.Contains(err.Error(), "corrupt") {
		t.Errorf("got %v, want a corruption error", err)
	}
}

func TestParseStamp(t *testing.T) {
	hex := strings.Repeat("ab", 32)
	tests := []struct {
		name string
		in   string
		ok   bool
	}{
		{"good", `{"format":2,"generation":2,"meta":"meta/` + hex + `.json.zst"}`, true},
		{"format 1", `{"format":1,"generation":2,"meta":"meta/` + hex + `.json.zst"}`, true},
		{"format 3", `{"format":3,"generation":2,"meta":"meta/` + hex + `.json.zst"}`, true},
		{"future format", `{"format":4,"generation":2,"meta":"meta/` + hex + `.json.zst"}`, false},
		{"no format", `{"generation":2,"meta":"meta/` + hex + `.json.zst"}`, false},
		{"traversal", `{"format":1,"generation":2,"meta":"../../etc/passwd"}`, false},
		{"not json", `garbage`, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseStamp([]byte(tc.in))
			if got := err == nil; got != tc.ok {
				t.Errorf("ParseStamp: got err %v, want ok=%v", err, tc.ok)
			}
		})
	}
}

func FuzzParseStamp(f *testing.F) {
	f.Add([]byte(`{"format":1,"generation":2,"meta":"meta/` + strings.Repeat("ab", 32) + `.json.zst"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := ParseStamp(b)
		if err != nil {
			return
		}
		if strings.Contains(s.Meta, "..") || strings.Contains(s.Meta[5:], "/") {
			t.Fatalf("accepted unsafe metadata reference %q", s.Meta)
		}
	})
}

func TestWriteFileFuncFailureKeepsOld(t *testing.T) {
	dir := t.TempDir()
	p := dir + "/f"
	if err := WriteFile(p, []byte("old")); err != nil {
		t.Fatal(err)
	}
	err := WriteFileFunc(p, func(w io.Writer) error {
		w.Write([]byte("half"))
		return errors.New("boom")
	})
	if err == nil {
		t.Fatal("got nil error, want the writer's failure")
	}
	got, _ := os.ReadFile(p)
	if string(got) != "old" {
		t.Errorf("got %q, want the old content %q", got, "old")
	}
	left, _ := os.ReadDir(dir)
	if len(left) != 1 {
		t.Errorf("got %d files, want 1: the temporary file must be removed", len(left))
	}
}

// TestWriteFileFuncLarge: a file written in writes of every size across several writeback
// chunks holds every byte written, in order.
func TestWriteFileFuncLarge(t *testing.T) {
	p := t.TempDir() + "/f"
	want := make([]byte, 2*writebackChunk+12345)
	for i := range want {
		want[i] = byte(i * 7 / 3)
	}
	err := WriteFileFunc(p, func(w io.Writer) error {
		for b, n := want, 1; len(b) > 0; n = n*3 + 1 {
			n = min(n, len(b))
			if _, err := w.Write(b[:n]); err != nil {
				return err
			}
			b = b[n:]
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(p); err != nil || !bytes.Equal(got, want) {
		t.Errorf("got %d bytes (%v), want the %d written", len(got), err, len(want))
	}
}
