package redirector

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/regmirror/regmirror/internal/testsupport/testimages"
	"github.com/regmirror/regmirror/layout"
)

// demo is the demo image set published into a test tree, with the digests tests ask for.
type demo struct {
	fedoraIndex  layout.Digest // fedora:42, fedora:latest (OCI index)
	fedoraAMD64  layout.Digest
	fedoraARM64  layout.Digest
	toolbox      layout.Digest // fedora/toolbox:42 (OCI image)
	httpd        layout.Digest // fedora/httpd:2.4, :latest (Docker schema 2)
	minimal      layout.Digest
	baseLayer    layout.Digest // a layer of fedoraAMD64
	toolboxLayer layout.Digest // a layer only fedora/toolbox has
	httpdConfig  layout.Digest
	signature    layout.Digest // a referrer of fedoraAMD64 (artifactType sigType)
	sbom         layout.Digest // a referrer of fedoraAMD64 (artifactType sbomType)

	manifests map[layout.Digest][]byte
	blobs     map[layout.Digest][]byte
}

const (
	sigType  = "application/vnd.example.signature"
	sbomType = "application/vnd.example.sbom"
)

var (
	demoOnce sync.Once
	demoRefs []testimages.Ref
	demoErr  error
)

func digestOf(b []byte) layout.Digest {
	s := sha256.Sum256(b)
	return layout.MustDigest("sha256:" + hex.EncodeToString(s[:]))
}

// writeTree writes the demo set into dir as generation gen and returns the metadata (not yet
// published) and the digests.
func writeTree(t testing.TB, dir string, gen uint64) (*layout.Meta, *demo) {
	t.Helper()
	demoOnce.Do(func() { demoRefs, demoErr = testimages.Demo() })
	if demoErr != nil {
		t.Fatal(demoErr)
	}
	m := layout.NewMeta(gen)
	dm := &demo{manifests: map[layout.Digest][]byte{}, blobs: map[layout.Digest][]byte{}}
	addBlob := func(b []byte) layout.Digest {
		d := digestOf(b)
		if _, ok := m.Blobs[d]; !ok {
			p := filepath.Join(dir, filepath.FromSlash(layout.BlobPath(d)))
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, b, 0o644); err != nil {
				t.Fatal(err)
			}
			m.Blobs[d] = &layout.Blob{Size: int64(len(b)), Since: gen}
			dm.blobs[d] = b
		}
		return d
	}
	addManifest := func(mt string, b []byte) layout.Digest {
		d := addBlob(b)
		m.Manifests[d] = &layout.Manifest{MediaType: mt, Data: b}
		dm.manifests[d] = b
		return d
	}
	repo := func(name string) *layout.Repository {
		r := m.Repositories[name]
		if r == nil {
			r = &layout.Repository{Tags: map[string]layout.Digest{}}
			m.Repositories[name] = r
		}
		return r
	}
	addImage := func(r *layout.Repository, img v1.Image) layout.Digest {
		raw, err := img.RawManifest()
		check(t, err)
		mt, err := img.MediaType()
		check(t, err)
		cfg, err := img.RawConfigFile()
		check(t, err)
		r.Blobs = append(r.Blobs, addBlob(cfg))
		layers, err := img.Layers()
		check(t, err)
		for _, l := range layers {
			rc, err := l.Compressed()
			check(t, err)
			b, err := io.ReadAll(rc)
			check(t, err)
			rc.Close()
			r.Blobs = append(r.Blobs, addBlob(b))
		}
		d := addManifest(string(mt), raw)
		r.Manifests = append(r.Manifests, d)
		return d
	}
	for _, ref := range demoRefs {
		r := repo(ref.Repo)
		var d layout.Digest
		if ref.Index != nil {
			im, err := ref.Index.IndexManifest()
			check(t, err)
			for _, desc := range im.Manifests {
				img, err := ref.Index.Image(desc.Digest)
				check(t, err)
				cd := addImage(r, img)
				switch desc.Platform.Architecture {
				case "amd64":
					dm.fedoraAMD64 = cd
				case "arm64":
					dm.fedoraARM64 = cd
				}
			}
			raw, err := ref.Index.RawManifest()
			check(t, err)
			mt, err := ref.Index.MediaType()
			check(t, err)
			d = addManifest(string(mt), raw)
			r.Manifests = append(r.Manifests, d)
			dm.fedoraIndex = d
		} else {
			d = addImage(r, ref.Image)
			switch ref.Repo {
			case "fedora/toolbox":
				dm.toolbox = d
			case "fedora/httpd":
				dm.httpd = d
				dm.httpdConfig = r.Blobs[len(r.Blobs)-3]
			case "fedora/minimal":
				dm.minimal = d
			}
		}
		for _, tag := range ref.Tags {
			r.Tags[tag] = d
		}
	}
	// Layers: the base layer of fedora/amd64 and one that only toolbox has.
	var amd v1.Manifest
	check(t, json.Unmarshal(dm.manifests[dm.fedoraAMD64], &amd))
	dm.baseLayer = layout.MustDigest(amd.Layers[0].Digest.String())
	var tb v1.Manifest
	check(t, json.Unmarshal(dm.manifests[dm.toolbox], &tb))
	dm.toolboxLayer = layout.MustDigest(tb.Layers[1].Digest.String())

	// Two referrers of fedora's amd64 image.
	fed := repo("fedora")
	fed.Referrers = map[layout.Digest][]layout.Descriptor{}
	for _, at := range []string{sigType, sbomType} {
		empty := addBlob([]byte("{}"))
		art := v1.Manifest{
			SchemaVersion: 2,
			MediaType:     types.OCIManifestSchema1,
			ArtifactType:  at,
			Config:        v1.Descriptor{MediaType: "application/vnd.oci.empty.v1+json", Size: 2, Digest: mustHash(empty)},
			Layers:        []v1.Descriptor{{MediaType: "application/vnd.oci.empty.v1+json", Size: 2, Digest: mustHash(empty)}},
			Subject:       &v1.Descriptor{MediaType: types.OCIManifestSchema1, Size: int64(len(dm.manifests[dm.fedoraAMD64])), Digest: mustHash(dm.fedoraAMD64)},
		}
		raw, err := json.Marshal(art)
		check(t, err)
		d := addManifest(string(types.OCIManifestSchema1), raw)
		fed.Manifests = append(fed.Manifests, d)
		fed.Blobs = append(fed.Blobs, empty)
		fed.Referrers[dm.fedoraAMD64] = append(fed.Referrers[dm.fedoraAMD64], layout.Descriptor{
			MediaType: layout.MediaTypeOCIManifest, Size: int64(len(raw)), Digest: d, ArtifactType: at,
		})
		if at == sigType {
			dm.signature = d
		} else {
			dm.sbom = d
		}
	}
	for _, r := range m.Repositories {
		r.Blobs = sortedUnique(r.Blobs)
		r.Manifests = sortedUnique(r.Manifests)
	}
	return m, dm
}

func sortedUnique(ds []layout.Digest) []layout.Digest {
	slices.SortFunc(ds, func(a, b layout.Digest) int { return cmp.Compare(a.String(), b.String()) })
	return slices.CompactFunc(ds, func(a, b layout.Digest) bool { return a == b })
}

func mustHash(d layout.Digest) v1.Hash {
	h, err := v1.NewHash(d.String())
	if err != nil {
		panic(err)
	}
	return h
}

func check(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// Mirrors of the test network: two in Germany (weights 1000 and 3000), one in France, one in
// the US, one in Japan that serves a netblock.
func addMirrors(m *layout.Meta, gen uint64) {
	mk := func(name, country, cont string, bw int64) *layout.Mirror {
		return &layout.Mirror{Name: name, URL: "https://" + name + "/pub/", Country: country, Continent: cont,
			Bandwidth: bw, Enabled: true, Healthy: true, Generation: gen, Checked: time.Now()}
	}
	jp := mk("jp.example", "JP", "AS", 100)
	jp.Netblocks = []string{"198.51.100.0/24", "2001:db8:1::/48"}
	m.Mirrors = []*layout.Mirror{
		mk("de1.example", "DE", "EU", 1000),
		mk("de2.example", "DE", "EU", 3000),
		mk("fr.example", "FR", "EU", 1000),
		mk("us.example", "US", "NA", 1000),
		jp,
		{Name: "off.example", URL: "https://off.example/", Country: "DE", Enabled: false, Healthy: true, Generation: gen, Checked: time.Now()},
		{Name: "sick.example", URL: "https://sick.example/", Country: "DE", Enabled: true, Healthy: false, Generation: gen, Checked: time.Now()},
	}
	m.Regions = map[string]*layout.Region{
		"DE":     {Tiers: [][]string{{"de1.example", "de2.example", "off.example", "sick.example"}, {"fr.example"}, {"us.example", "jp.example"}}, VariantSet: -1},
		"EU":     {Tiers: [][]string{{"de1.example", "de2.example", "fr.example"}, {"us.example", "jp.example"}}, VariantSet: -1},
		"global": {Tiers: [][]string{{"de1.example", "de2.example", "fr.example", "us.example", "jp.example"}}, VariantSet: -1},
	}
}

// variantSetMirrors are the mirrors of the test variant sets, in preference order: set 0 the
// German mirrors, set 1 the French one, then the German ones.
var variantSetMirrors = [][]string{
	{"de2.example", "de1.example"},
	{"fr.example", "de2.example", "de1.example"},
}

// addVariants writes sets variant sets (at most len(variantSetMirrors)), as the generator's
// precompute does: every image's layers and config get urls at the set's mirrors, and lists
// point at their children's variants. Germany gets set 0, the rest of Europe set 1.
func addVariants(t testing.TB, m *layout.Meta, sets int) {
	t.Helper()
	m.VariantSets = nil
	for i := range sets {
		m.VariantSets = append(m.VariantSets, &layout.VariantSet{Mirrors: variantSetMirrors[i]})
	}
	for key, i := range map[string]int{"DE": 0, "EU": 1} {
		if r := m.Regions[key]; r != nil && i < sets {
			r.VariantSet = i
		}
	}
}

// renderedVariant renders the variant of d in set of meta, checked against its digest.
func renderedVariant(t testing.TB, meta *layout.Meta, set int, d layout.Digest) *layout.Variant {
	t.Helper()
	v, err := layout.NewRenderer(meta).Variant(set, d)
	if err != nil {
		t.Fatalf("variant of %s in set %d: %v", d, set, err)
	}
	if digestOf(v.Data) != v.Digest {
		t.Fatalf("variant of %s in set %d hashes to %s, says %s", d, set, digestOf(v.Data), v.Digest)
	}
	return v
}

// newTestTree publishes the demo set (after mod) into a new tree and returns its directory.
func newTestTree(t testing.TB, mod func(*layout.Meta, *demo)) (string, *demo) {
	t.Helper()
	dir := t.TempDir()
	m, dm := writeTree(t, dir, 1)
	if mod != nil {
		mod(m, dm)
	}
	if _, err := layout.NewTree(dir).Publish(m); err != nil {
		t.Fatal(err)
	}
	return dir, dm
}

// seeded is a deterministic random source, safe for concurrent use.
func seeded(seed uint64) func() uint64 {
	var mu sync.Mutex
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	return func() uint64 {
		mu.Lock()
		defer mu.Unlock()
		return r.Uint64()
	}
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }

func newServer(t testing.TB, opts Options) *Server {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = testLogger(t)
	}
	if opts.Random == nil {
		opts.Random = seeded(1)
	}
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// do sends one request through the handler.
func do(h http.Handler, method, target, remote string, hdr http.Header) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, target, nil)
	if remote != "" {
		req.RemoteAddr = remote
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w
}

var trustAll = []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")}

// counterValue is c's value.
func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}
