package layout

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
)

func digestOfTest(b []byte) Digest {
	s := sha256.Sum256(b)
	return MustDigest("sha256:" + hex.EncodeToString(s[:]))
}

// smallTree writes a one-image tree (config, layer, a foreign layer it lacks, manifest),
// its index.json and metadata, and returns the digests by role.
func smallTree(t *testing.T) (*Tree, map[string]Digest) {
	t.Helper()
	tree := NewTree(t.TempDir())
	config := []byte(`{"rootfs":{"type":"layers","diff_ids":[]}}`)
	layer := []byte("layer bytes")
	foreign := digestOfTest([]byte("not here"))
	cd, ld := digestOfTest(config), digestOfTest(layer)
	manifest := []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",`+
		`"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%d},`+
		`"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"%s","size":%d},`+
		`{"mediaType":"application/vnd.oci.image.layer.nondistributable.v1.tar","digest":"%s","size":8}]}`,
		cd, len(config), ld, len(layer), foreign))
	md := digestOfTest(manifest)
	for d, b := range map[Digest][]byte{cd: config, ld: layer, md: manifest} {
		if err := WriteFile(tree.Path(BlobPath(d)), b); err != nil {
			t.Fatal(err)
		}
	}
	index := fmt.Sprintf(`{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"%s","size":%d,"annotations":{"org.opencontainers.image.ref.name":"demo:1"}}]}`, md, len(manifest))
	if err := WriteFile(tree.Path(IndexFile), []byte(index)); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(tree.Path(OCILayoutFile), []byte(OCILayoutContent)); err != nil {
		t.Fatal(err)
	}
	m := NewMeta(1)
	m.Repositories["demo"] = &Repository{Tags: map[string]Digest{"1": md}, Manifests: []Digest{md}, Blobs: []Digest{cd, ld}}
	m.Manifests[md] = &Manifest{MediaType: "application/vnd.oci.image.manifest.v1+json", Data: manifest}
	m.Blobs[md] = &Blob{Size: int64(len(manifest)), Since: 1}
	m.Blobs[cd] = &Blob{Size: int64(len(config)), Since: 1}
	m.Blobs[ld] = &Blob{Size: int64(len(layer)), Since: 1}
	if _, err := tree.Publish(m); err != nil {
		t.Fatal(err)
	}
	return tree, map[string]Digest{"config": cd, "layer": ld, "manifest": md}
}

func TestVerify(t *testing.T) {
	tests := []struct {
		name    string
		breakIt func(t *testing.T, tree *Tree, d map[string]Digest) string // returns a wanted substring
	}{
		{"whole", func(*testing.T, *Tree, map[string]Digest) string { return "" }},
		{"corrupt layer", func(t *testing.T, tree *Tree, d map[string]Digest) string {
			os.WriteFile(tree.Path(BlobPath(d["layer"])), []byte("layer bytez"), 0o644)
			return d["layer"].String() + ": content hashes to"
		}},
		{"short config", func(t *testing.T, tree *Tree, d map[string]Digest) string {
			os.WriteFile(tree.Path(BlobPath(d["config"])), []byte("{}"), 0o644)
			return d["config"].String() + ": 2 bytes"
		}},
		{"missing manifest", func(t *testing.T, tree *Tree, d map[string]Digest) string {
			os.Remove(tree.Path(BlobPath(d["manifest"])))
			return d["manifest"].String()
		}},
		{"index points elsewhere", func(t *testing.T, tree *Tree, d map[string]Digest) string {
			other := digestOfTest([]byte("other"))
			os.WriteFile(tree.Path(IndexFile), []byte(`{"manifests":[{"digest":"`+other.String()+`","size":5}]}`), 0o644)
			return other.String()
		}},
		{"no index", func(t *testing.T, tree *Tree, d map[string]Digest) string {
			os.Remove(tree.Path(IndexFile))
			return "index.json"
		}},
		{"referrer not among the manifests", func(t *testing.T, tree *Tree, d map[string]Digest) string {
			m, _, err := tree.Load()
			if err != nil {
				t.Fatal(err)
			}
			ghost := digestOfTest([]byte("ghost"))
			m.Repositories["demo"].Referrers = map[Digest][]Descriptor{d["manifest"]: {{Digest: ghost, Size: 5}}}
			if _, err := tree.Publish(m); err != nil {
				t.Fatal(err)
			}
			return "referrer " + ghost.String()
		}},
		{"retiring content not recorded", func(t *testing.T, tree *Tree, d map[string]Digest) string {
			m, _, err := tree.Load()
			if err != nil {
				t.Fatal(err)
			}
			ghost := digestOfTest([]byte("ghost"))
			m.Repositories["gone"] = &Repository{Retiring: []Digest{ghost}, RetiringBlobs: []Digest{d["layer"]}}
			if _, err := tree.Publish(m); err != nil {
				t.Fatal(err)
			}
			return "retires blob " + d["layer"].String()
		}},
		{"hostile index digest", func(t *testing.T, tree *Tree, d map[string]Digest) string {
			os.WriteFile(tree.Path(IndexFile), []byte(`{"manifests":[{"digest":"sha256:../../etc/passwd","size":5}]}`), 0o644)
			return "invalid digest"
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tree, d := smallTree(t)
			want := tc.breakIt(t, tree, d)
			err := tree.Verify(context.Background())
			if want == "" {
				if err != nil {
					t.Fatalf("got %v, want a whole tree", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("got %v, want a problem mentioning %q", err, want)
			}
		})
	}
}

func TestVerifyEmptyTree(t *testing.T) {
	if err := NewTree(t.TempDir()).Verify(context.Background()); !errors.Is(err, ErrNoGeneration) {
		t.Errorf("got %v, want ErrNoGeneration", err)
	}
}
