package generator

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/regmirror/regmirror/internal/testsupport/testimages"
	"github.com/regmirror/regmirror/layout"
)

// syncBuffer is a bytes.Buffer safe for the progress goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func randomBytes(t testing.TB, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

type desc struct {
	MediaType    string            `json:"mediaType"`
	Digest       string            `json:"digest"`
	Size         int               `json:"size"`
	URLs         []string          `json:"urls,omitempty"`
	ArtifactType string            `json:"artifactType,omitempty"`
	Annotations  map[string]string `json:"annotations,omitempty"`
}

type manifestDoc struct {
	SchemaVersion int               `json:"schemaVersion"`
	MediaType     string            `json:"mediaType,omitempty"`
	ArtifactType  string            `json:"artifactType,omitempty"`
	Config        desc              `json:"config"`
	Layers        []desc            `json:"layers"`
	Subject       *desc             `json:"subject,omitempty"`
	Annotations   map[string]string `json:"annotations,omitempty"`
}

func mustJSON(t testing.TB, v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestSchema1SkippedWithWarning(t *testing.T) {
	src := newSource(t)
	src.demo()
	s1 := []byte(`{"schemaVersion":1,"name":"legacy","tag":"old","architecture":"amd64","fsLayers":[],"history":[]}`)
	src.putManifest("legacy", "old", layout.MediaTypeDockerSchema1Signed, s1)
	out := t.TempDir()
	var log syncBuffer
	o := src.opts(out)
	o.Log = &log
	sum := mustRun(t, o)
	m := checkTree(t, out)
	if _, ok := m.Repositories["legacy"]; ok {
		t.Errorf("schema 1 repository published")
	}
	if !strings.Contains(log.String(), "legacy:old") || !strings.Contains(log.String(), "schema 1") {
		t.Errorf("log: got %q, want a warning naming legacy:old and schema 1", log.String())
	}
	if sum.Failures != 0 {
		t.Errorf("failures: got %d, want 0 (schema 1 is skipped, not failed)", sum.Failures)
	}
}

func TestArtifactsReferrersAndNestedIndex(t *testing.T) {
	src := newSource(t)
	src.demo()

	// A tagged artifact: custom config media type, artifactType, no layers.
	cfg := []byte(`{"kind":"policy"}`)
	cfgD := src.putBlob("artifacts", cfg)
	art := mustJSON(t, manifestDoc{SchemaVersion: 2, MediaType: layout.MediaTypeOCIManifest, ArtifactType: "application/vnd.example.policy",
		Config: desc{MediaType: "application/vnd.example.policy.config+json", Digest: cfgD, Size: len(cfg)}, Layers: []desc{}})
	artD := src.putManifest("artifacts", "policy-1", layout.MediaTypeOCIManifest, art)

	// A referrer (an SBOM) of fedora/toolbox:42, pushed by digest only.
	refs, err := testimages.Demo()
	if err != nil {
		t.Fatal(err)
	}
	var subject v1.Hash
	for _, r := range refs {
		if r.Repo == "fedora/toolbox" {
			subject, _ = r.Digest()
		}
	}
	subjectSize := 0
	for _, r := range refs {
		if r.Repo == "fedora/toolbox" {
			b, _ := r.Image.RawManifest()
			subjectSize = len(b)
		}
	}
	emptyCfg := []byte("{}")
	emptyD := src.putBlob("fedora/toolbox", emptyCfg)
	sbom := []byte(`{"spdxVersion":"SPDX-2.3"}`)
	sbomD := src.putBlob("fedora/toolbox", sbom)
	ref := mustJSON(t, manifestDoc{SchemaVersion: 2, MediaType: layout.MediaTypeOCIManifest, ArtifactType: "application/spdx+json",
		Config:      desc{MediaType: "application/vnd.oci.empty.v1+json", Digest: emptyD, Size: 2},
		Layers:      []desc{{MediaType: "application/spdx+json", Digest: sbomD, Size: len(sbom)}},
		Subject:     &desc{MediaType: layout.MediaTypeOCIManifest, Digest: subject.String(), Size: subjectSize},
		Annotations: map[string]string{"org.example.kind": "sbom"}})
	refD := src.putManifest("fedora/toolbox", sha256Digest(ref), layout.MediaTypeOCIManifest, ref)

	// A nested index: an index holding an index and an image.
	a, err := random.Image(512, 1)
	if err != nil {
		t.Fatal(err)
	}
	b, err := random.Image(512, 2)
	if err != nil {
		t.Fatal(err)
	}
	inner := mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.DockerManifestList), mutate.IndexAddendum{Add: a})
	outer := mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex),
		mutate.IndexAddendum{Add: inner}, mutate.IndexAddendum{Add: b})
	src.push(testimages.Ref{Repo: "nested", Tags: []string{"1"}, Index: outer})
	innerD, _ := inner.Digest()
	aD, _ := a.Digest()

	out := t.TempDir()
	mustRun(t, src.opts(out))
	m := checkTree(t, out)

	if got := m.Repositories["artifacts"].Tags["policy-1"].String(); got != artD {
		t.Errorf("artifact tag: got %s, want %s", got, artD)
	}
	if _, ok := m.Blobs[layout.MustDigest(cfgD)]; !ok {
		t.Errorf("artifact config %s not in the tree", cfgD)
	}

	tb := m.Repositories["fedora/toolbox"]
	rs := tb.Referrers[layout.MustDigest(subject.String())]
	if len(rs) != 1 || rs[0].Digest.String() != refD {
		t.Fatalf("referrers of %s: got %+v, want one, %s", subject, rs, refD)
	}
	if rs[0].Annotations["org.example.kind"] != "sbom" || rs[0].ArtifactType == "" {
		t.Errorf("referrer descriptor: got %+v, want annotations and artifactType from the API", rs[0])
	}
	if _, ok := m.Manifests[layout.MustDigest(refD)]; !ok {
		t.Errorf("referrer manifest %s not in Meta.Manifests", refD)
	}
	if !containsDigest(tb.Manifests, refD) || !containsDigest(tb.Blobs, sbomD) {
		t.Errorf("fedora/toolbox lists: manifests %v, blobs %v; want the referrer and its layer", tb.Manifests, tb.Blobs)
	}

	nested := m.Repositories["nested"]
	for _, d := range []string{innerD.String(), aD.String()} {
		if !containsDigest(nested.Manifests, d) {
			t.Errorf("nested: manifest %s missing from %v", d, nested.Manifests)
		}
	}
}

func containsDigest(ds []layout.Digest, s string) bool {
	for _, d := range ds {
		if d.String() == s {
			return true
		}
	}
	return false
}

func TestForeignLayerSkipped(t *testing.T) {
	src := newSource(t)
	mf, mfD, foreignD := pushForeign(t, src)

	out := t.TempDir()
	sum := mustRun(t, src.opts(out))
	m := checkTree(t, out)
	if sum.ForeignSkipped != 1 {
		t.Errorf("foreign layers skipped: got %d, want 1", sum.ForeignSkipped)
	}
	if _, ok := m.Blobs[layout.MustDigest(foreignD)]; ok {
		t.Errorf("foreign layer listed in Meta.Blobs")
	}
	if got := m.Repositories["win"].Tags["ltsc"].String(); got != mfD {
		t.Errorf("win:ltsc: got %s, want %s", got, mfD)
	}
	if !bytes.Equal(m.Manifests[layout.MustDigest(mfD)].Data, mf) {
		t.Errorf("manifest bytes changed: the descriptor must be kept as is")
	}
	src.resetCounts()
	sum = mustRun(t, src.opts(out))
	if c := src.resetCounts(); c["GET blob"] != 0 {
		t.Errorf("re-run asked for %d blobs, want 0 (the foreign layer is known absent)", c["GET blob"])
	}
	if sum.ForeignSkipped != 1 {
		t.Errorf("re-run foreign layers skipped: got %d, want 1", sum.ForeignSkipped)
	}
}

// pushForeign pushes win:ltsc, an image with a foreign layer (never pushed) and a local one,
// and returns its manifest, the manifest's digest and the foreign layer's.
func pushForeign(t *testing.T, src *source) (mf []byte, mfD, foreignD string) {
	t.Helper()
	cfg := []byte(`{"architecture":"amd64","os":"windows","rootfs":{"type":"layers","diff_ids":[]}}`)
	cfgD := src.putBlob("win", cfg)
	local := randomBytes(t, 1000)
	localD := src.putBlob("win", local)
	foreign := randomBytes(t, 3000)
	foreignD = sha256Digest(foreign) // never pushed
	mf = mustJSON(t, manifestDoc{SchemaVersion: 2, MediaType: layout.MediaTypeDockerManifest,
		Config: desc{MediaType: layout.MediaTypeDockerConfig, Digest: cfgD, Size: len(cfg)},
		Layers: []desc{
			{MediaType: "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip", Digest: foreignD, Size: len(foreign), URLs: []string{"https://example.invalid/base"}},
			{MediaType: "application/vnd.docker.image.rootfs.diff.tar.gzip", Digest: localD, Size: len(local)},
		}})
	mfD = src.putManifest("win", "ltsc", layout.MediaTypeDockerManifest, mf)
	return mf, mfD, foreignD
}

func TestVerifyLayers(t *testing.T) {
	src := newSource(t)
	src.demo() // zstd and gzip layers, all consistent
	good, err := random.Image(2048, 2)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := good.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.RootFS.DiffIDs[1] = v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("0", 64)}
	bad, err := mutate.ConfigFile(good, cf)
	if err != nil {
		t.Fatal(err)
	}
	src.pushImage("broken", "1", bad)
	src.pushImage("fine", "1", good)

	tests := []struct {
		name         string
		verifyLayers bool
		wantBroken   bool
	}{
		{"without --verify-layers", false, true},
		{"with --verify-layers", true, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out := t.TempDir()
			o := src.opts(out)
			o.VerifyLayers = tc.verifyLayers
			_, err := Run(context.Background(), o)
			m := checkTree(t, out)
			_, gotBroken := m.Repositories["broken"]
			if gotBroken != tc.wantBroken {
				t.Errorf("broken:1 published: got %v, want %v (err %v)", gotBroken, tc.wantBroken, err)
			}
			if _, ok := m.Repositories["fine"]; !ok {
				t.Errorf("fine:1 not published")
			}
			var pe *PartialError
			if tc.wantBroken {
				if err != nil {
					t.Errorf("got %v, want no error", err)
				}
				return
			}
			if !errors.As(err, &pe) || len(pe.Failures) != 1 || pe.Failures[0].Ref != "broken:1" || !strings.Contains(err.Error(), "diff_ids") {
				t.Errorf("got %v, want one failure naming broken:1 and diff_ids", err)
			}
		})
	}
}
