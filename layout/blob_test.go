package layout

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestBlobWriter(t *testing.T) {
	data := []byte("a blob's bytes")
	d := digestOfTest(data)
	d512 := DigestOf("sha512", data)
	cases := []struct {
		name    string
		d       Digest
		size    int64
		write   []byte
		wantErr error
	}{
		{"sha256", d, int64(len(data)), data, nil},
		{"sha512", d512, int64(len(data)), data, nil},
		{"size unknown", d, -1, data, nil},
		{"short", d, int64(len(data)), data[:3], ErrSizeMismatch},
		{"long", d, 3, data, ErrSizeMismatch},
		{"other bytes", d, int64(len(data)), bytes.ToUpper(data), ErrDigestMismatch},
		{"other algorithm", MustDigest("sha512:" + d512.Hex()[:64] + d.Hex()), int64(len(data)), data, ErrDigestMismatch},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tree := NewTree(t.TempDir())
			w, err := tree.CreateBlob(c.d, c.size)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := w.Write(c.write); err != nil {
				t.Fatal(err)
			}
			if got, want := w.Written(), int64(len(c.write)); got != want {
				t.Errorf("Written: got %d, want %d", got, want)
			}
			err = w.Commit()
			w.Abort()
			if !errors.Is(err, c.wantErr) || (err == nil) != (c.wantErr == nil) {
				t.Fatalf("Commit: got %v, want %v", err, c.wantErr)
			}
			got, rerr := os.ReadFile(tree.Path(BlobPath(c.d)))
			if c.wantErr == nil {
				if !bytes.Equal(got, data) {
					t.Errorf("blob file: got %q (%v), want %q", got, rerr, data)
				}
				if err := tree.VerifyBlob(c.d, int64(len(data))); err != nil {
					t.Errorf("VerifyBlob: got %v, want nil", err)
				}
			} else if rerr == nil {
				t.Errorf("a rejected blob landed: %q", got)
			}
			ents, _ := os.ReadDir(filepath.Dir(tree.Path(BlobPath(c.d))))
			for _, e := range ents {
				if e.Name() != c.d.Hex() {
					t.Errorf("file left in blobs/: %s", e.Name())
				}
			}
		})
	}
}

func TestVerifyDigest(t *testing.T) {
	data := []byte("manifest")
	d := digestOfTest(data)
	cases := []struct {
		name    string
		data    []byte
		size    int64
		wantErr error
	}{
		{"match", data, int64(len(data)), nil},
		{"any size", data, -1, nil},
		{"wrong size", data, 3, ErrSizeMismatch},
		{"wrong bytes", []byte("Manifest"), -1, ErrDigestMismatch},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := VerifyReader(bytes.NewReader(c.data), d, c.size)
			if !errors.Is(err, c.wantErr) || (err == nil) != (c.wantErr == nil) {
				t.Errorf("VerifyReader: got %v, want %v", err, c.wantErr)
			}
			if c.size < 0 {
				err := VerifyBytes(d, c.data)
				if !errors.Is(err, c.wantErr) || (err == nil) != (c.wantErr == nil) {
					t.Errorf("VerifyBytes: got %v, want %v", err, c.wantErr)
				}
			}
		})
	}
	if got := DigestOf("sha256", data); got != d {
		t.Errorf("DigestOf: got %s, want %s", got, d)
	}
}
