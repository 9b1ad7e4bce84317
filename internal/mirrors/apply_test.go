package mirrors

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/regmirror/regmirror/layout"
)

func digestOf(b []byte) layout.Digest {
	sum := sha256.Sum256(b)
	return layout.MustDigest("sha256:" + hex.EncodeToString(sum[:]))
}

// fixture is a small tree's metadata: generation 2, blobs of generations 1 and 2.
type fixture struct {
	meta                           *layout.Meta
	c1, l1, l2, l3                 layout.Digest // config, layers (l2 new in generation 2; l3 not in the tree)
	m1, m2, m3, m4, idx, nested    layout.Digest
	m1Data, m2Data, m3Data, m4Data []byte
}

func newFixture(t testing.TB) *fixture {
	f := &fixture{meta: layout.NewMeta(2)}
	blob := func(content string, since uint64) layout.Digest {
		d := digestOf([]byte(content))
		f.meta.Blobs[d] = &layout.Blob{Size: int64(len(content)), Since: since}
		return d
	}
	manifest := func(mt string, data []byte) layout.Digest {
		d := digestOf(data)
		f.meta.Manifests[d] = &layout.Manifest{MediaType: mt, Data: data}
		f.meta.Blobs[d] = &layout.Blob{Size: int64(len(data)), Since: 1}
		return d
	}
	f.c1 = blob("config", 1)
	f.l1 = blob("layer one", 1)
	f.l2 = blob("layer two", 2)
	f.l3 = digestOf([]byte("foreign"))
	f.m1Data = []byte(fmt.Sprintf(`{
  "schemaVersion": 2,
  "mediaType": "application/vnd.oci.image.manifest.v1+json",
  "artifactType": "application/vnd.example+type",
  "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": %q, "size": 6},
  "layers": [
    {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": %q, "size": 9, "annotations": {"a": "<b>"}},
    {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": %q, "size": 9}
  ],
  "subject": {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:%064x", "size": 1},
  "annotations": {"org.example": "x"}
}`, f.c1, f.l1, f.l2, 7))
	f.m1 = manifest(mediaOCIManifest, f.m1Data)
	f.m2Data = []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{"mediaType":"application/vnd.docker.container.image.v1+json","size":6,"digest":%q},"layers":[{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","size":9,"digest":%q}]}`, f.c1, f.l1))
	f.m2 = manifest(mediaDockerManifest, f.m2Data)
	f.m3Data = []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{"mediaType":"application/vnd.docker.container.image.v1+json","size":6,"digest":%q},"layers":[{"mediaType":"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip","size":7,"digest":%q,"urls":["https://foreign.example/l3"]},{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","size":9,"digest":%q}]}`, f.c1, f.l3, f.l1))
	f.m3 = manifest(mediaDockerManifest, f.m3Data)
	f.m4Data = []byte(`{"schemaVersion":1,"name":"x","tag":"y","fsLayers":[],"signatures":[]}`)
	f.m4 = manifest("application/vnd.docker.distribution.manifest.v1+prettyjws", f.m4Data)
	idxData := []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":%q,"size":%d,"platform":{"architecture":"amd64","os":"linux"}},{"mediaType":"application/vnd.docker.distribution.manifest.v2+json","digest":%q,"size":%d,"platform":{"architecture":"arm64","os":"linux"}}],"annotations":{"k":"v"}}`, f.m1, len(f.m1Data), f.m2, len(f.m2Data)))
	f.idx = manifest(mediaOCIIndex, idxData)
	nestedData := []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.index.v1+json","digest":%q,"size":%d}]}`, f.idx, len(idxData)))
	f.nested = manifest(mediaOCIIndex, nestedData)
	return f
}

var crawled = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func mirror(name, country, continent string, bw int64, gen uint64, healthy bool) *layout.Mirror {
	return &layout.Mirror{Name: name, URL: "https://" + name + ".example/", Country: country, Continent: continent,
		Bandwidth: bw, Enabled: true, Generation: gen, Healthy: healthy, Checked: crawled, Status: "x"}
}

func network() []*layout.Mirror {
	off := mirror("off", "JP", "AS", 100, 2, true)
	off.Enabled = false
	never := mirror("new", "BR", "SA", 100, 0, false)
	never.Checked = time.Time{}
	return []*layout.Mirror{
		mirror("de1", "DE", "EU", 1000, 2, true),
		mirror("de2", "DE", "EU", 100, 1, true), // a generation behind
		mirror("fr1", "FR", "EU", 500, 2, true),
		mirror("us1", "US", "NA", 100, 2, true),
		mirror("down", "DE", "EU", 5000, 2, false),
		off,
		never,
	}
}

func TestPrecomputeRegions(t *testing.T) {
	f := newFixture(t)
	f.meta.Mirrors = network()
	f.meta.Origin = "https://origin.example/tree/"
	st, err := Precompute(f.meta)
	if err != nil {
		t.Fatal(err)
	}
	world := [][]string{{"de1", "fr1", "de2", "us1"}}
	want := map[string][][]string{
		"DE":     {{"de1", "de2"}, {"fr1"}, {"us1"}},
		"FR":     {{"fr1"}, {"de1", "de2"}, {"us1"}},
		"US":     {{"us1"}, {"de1", "fr1", "de2"}},
		"NA":     {{"us1"}, {"de1", "fr1", "de2"}},
		"EU":     {{"de1", "fr1", "de2"}, {"us1"}},
		"JP":     world,
		"BR":     world,
		"AF":     world,
		"AN":     world,
		"AS":     world,
		"OC":     world,
		"SA":     world,
		"global": world,
	}
	got := map[string][][]string{}
	for r, reg := range f.meta.Regions {
		got[r] = reg.Tiers
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("tiers:\ngot  %v\nwant %v", got, want)
	}
	// Identical tiers share a set; distinct ones do not.
	sets := map[string]int{}
	for r, reg := range f.meta.Regions {
		sets[r] = reg.VariantSet
	}
	if sets["US"] != sets["NA"] || sets["JP"] != sets["global"] || sets["BR"] != sets["AS"] || sets["DE"] == sets["FR"] || sets["DE"] == sets["EU"] {
		t.Errorf("variant sets %v", sets)
	}
	if st.VariantSets != 5 || len(f.meta.VariantSets) != 5 || st.Regions != 13 || st.Candidates != 4 || st.Mirrors != 7 {
		t.Errorf("stats %+v", st)
	}
	// 5 variant manifests (m1, m2, m3, idx, nested) in each of 5 sets; the schema 1 manifest
	// has none.
	var all []layout.Digest
	for d := range f.meta.Manifests {
		all = append(all, d)
	}
	r, n := layout.NewRenderer(f.meta), 0
	for set := range f.meta.VariantSets {
		r.Render(set, all, func(d layout.Digest, _ *layout.Variant) {
			if d == f.m4 {
				t.Errorf("set %d: the schema 1 manifest has a variant", set)
			}
			n++
		})
	}
	if n != 25 {
		t.Errorf("variants %d, want 25", n)
	}
	t.Logf("%v", st)
}

// variant renders the variant of d in variant set set, and checks its digest; nil when it has
// none.
func variant(t testing.TB, meta *layout.Meta, set int, d layout.Digest) *layout.Variant {
	t.Helper()
	v, err := layout.NewRenderer(meta).Variant(set, d)
	if errors.Is(err, layout.ErrNoVariant) {
		return nil
	}
	if err != nil {
		t.Fatalf("rendering the variant of %s in set %d: %v", d, set, err)
	}
	if got := digestOf(v.Data); got != v.Digest {
		t.Fatalf("variant of %s in set %d: rendered bytes hash to %s, says %s", d, set, got, v.Digest)
	}
	return v
}

// urlsOf returns the urls of every config and layer descriptor of an image manifest, by digest.
func urlsOf(t *testing.T, data []byte) map[string][]string {
	var m struct {
		Config struct {
			Digest string   `json:"digest"`
			URLs   []string `json:"urls"`
		} `json:"config"`
		Layers []struct {
			Digest string   `json:"digest"`
			URLs   []string `json:"urls"`
		} `json:"layers"`
	}
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{m.Config.Digest: m.Config.URLs}
	for _, l := range m.Layers {
		out[l.Digest] = l.URLs
	}
	return out
}

func TestVariantURLs(t *testing.T) {
	f := newFixture(t)
	f.meta.Mirrors = network()
	f.meta.Origin = "https://origin.example/tree/"
	if _, err := Precompute(f.meta); err != nil {
		t.Fatal(err)
	}
	de := f.meta.Regions["DE"].VariantSet
	if got, want := f.meta.VariantSets[de].Mirrors, []string{"de1", "de2", "fr1", "us1"}; !reflect.DeepEqual(got, want) {
		t.Errorf("DE's set mirrors %v, want %v", got, want)
	}
	get := func(d layout.Digest) *layout.Variant { return variant(t, f.meta, de, d) }
	u := func(m string, d layout.Digest) string { return "https://" + m + ".example/blobs/sha256/" + d.Hex() }
	o := func(d layout.Digest) string { return "https://origin.example/tree/blobs/sha256/" + d.Hex() }
	v1 := get(f.m1)
	got := urlsOf(t, v1.Data)
	want := map[string][]string{
		// At most three mirrors, preference order, origin last.
		f.c1.String(): {u("de1", f.c1), u("de2", f.c1), u("fr1", f.c1), o(f.c1)},
		f.l1.String(): {u("de1", f.l1), u("de2", f.l1), u("fr1", f.l1), o(f.l1)},
		// de2 holds generation 1 only: not a candidate for l2.
		f.l2.String(): {u("de1", f.l2), u("fr1", f.l2), u("us1", f.l2), o(f.l2)},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("urls:\ngot  %v\nwant %v", got, want)
	}
	if v1.MediaType != mediaOCIManifest || v1.Digest != digestOf(v1.Data) {
		t.Errorf("variant %s %s", v1.MediaType, v1.Digest)
	}
	// Everything but the urls is the canonical manifest, field order included.
	if !strings.Contains(string(v1.Data), `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","artifactType":"application/vnd.example+type","config":{"mediaType"`) ||
		!strings.Contains(string(v1.Data), `"annotations":{"a":"<b>"}`) {
		t.Errorf("variant layout: %s", v1.Data)
	}
	if c, v := withoutURLs(t, f.m1Data), withoutURLs(t, v1.Data); !reflect.DeepEqual(c, v) {
		t.Errorf("variant differs beyond urls:\n%v\n%v", c, v)
	}

	// A foreign layer keeps its own urls; the other descriptors get the region's.
	got3 := urlsOf(t, get(f.m3).Data)
	if !reflect.DeepEqual(got3[f.l3.String()], []string{"https://foreign.example/l3"}) || len(got3[f.l1.String()]) != 4 {
		t.Errorf("foreign layer: %v", got3)
	}
	if v := get(f.m4); v != nil {
		t.Error("schema 1 manifest got a variant")
	}

	// The index points at its children's variants, with their sizes, platform kept.
	var idx struct {
		MediaType string            `json:"mediaType"`
		Children  []json.RawMessage `json:"manifests"`
		Ann       map[string]string `json:"annotations"`
	}
	vi := get(f.idx)
	if err := json.Unmarshal(vi.Data, &idx); err != nil {
		t.Fatal(err)
	}
	wantChildren := []string{
		fmt.Sprintf(`{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"%s","size":%d,"platform":{"architecture":"amd64","os":"linux"}}`, v1.Digest, len(v1.Data)),
		fmt.Sprintf(`{"mediaType":"application/vnd.docker.distribution.manifest.v2+json","digest":"%s","size":%d,"platform":{"architecture":"arm64","os":"linux"}}`, get(f.m2).Digest, len(get(f.m2).Data)),
	}
	for i, c := range idx.Children {
		if string(c) != wantChildren[i] {
			t.Errorf("child %d:\ngot  %s\nwant %s", i, c, wantChildren[i])
		}
	}
	if idx.Ann["k"] != "v" || vi.MediaType != mediaOCIIndex || vi.Digest != digestOf(vi.Data) {
		t.Errorf("index variant %s", vi.Data)
	}
	vn := get(f.nested)
	if !strings.Contains(string(vn.Data), vi.Digest.String()) || !strings.Contains(string(vn.Data), fmt.Sprintf(`"size":%d`, len(vi.Data))) {
		t.Errorf("nested index variant does not point at the index variant: %s", vn.Data)
	}

	// In another region the urls follow that region's preference.
	us := variant(t, f.meta, f.meta.Regions["US"].VariantSet, f.m1)
	if got := urlsOf(t, us.Data)[f.l2.String()]; !reflect.DeepEqual(got, []string{u("us1", f.l2), u("de1", f.l2), u("fr1", f.l2), o(f.l2)}) {
		t.Errorf("US urls for l2: %v", got)
	}
}

// withoutURLs decodes a manifest and drops the urls of config and layers.
func withoutURLs(t *testing.T, data []byte) map[string]any {
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	if c, ok := m["config"].(map[string]any); ok {
		delete(c, "urls")
	}
	if ls, ok := m["layers"].([]any); ok {
		for _, l := range ls {
			delete(l.(map[string]any), "urls")
		}
	}
	return m
}

func TestVariantsWithoutOrigin(t *testing.T) {
	f := newFixture(t)
	// Only a mirror a generation behind: l2 has no url at all, and no origin is configured.
	f.meta.Mirrors = []*layout.Mirror{mirror("old", "DE", "EU", 100, 1, true)}
	if _, err := Precompute(f.meta); err != nil {
		t.Fatal(err)
	}
	v := variant(t, f.meta, f.meta.Regions["DE"].VariantSet, f.m1)
	got := urlsOf(t, v.Data)
	if len(got[f.l2.String()]) != 0 || len(got[f.l1.String()]) != 1 {
		t.Errorf("urls %v", got)
	}
	if strings.Contains(string(v.Data), `"urls":[]`) {
		t.Errorf("empty urls written: %s", v.Data)
	}
}

func TestPrecomputeNoCandidates(t *testing.T) {
	f := newFixture(t)
	ms := network()
	for _, m := range ms {
		m.Healthy = false
	}
	f.meta.Mirrors = ms
	st, err := Precompute(f.meta)
	if err != nil {
		t.Fatal(err)
	}
	if st.VariantSets != 0 || len(f.meta.VariantSets) != 0 {
		t.Errorf("stats %+v", st)
	}
	for r, reg := range f.meta.Regions {
		if reg.VariantSet != -1 || len(reg.Tiers) != 0 {
			t.Errorf("region %s: %+v", r, reg)
		}
	}
	if _, ok := f.meta.Regions["DE"]; !ok {
		t.Error("no region for a country with mirrors")
	}
}

func TestApplyCarriesCrawlState(t *testing.T) {
	f := newFixture(t)
	prev := []*layout.Mirror{
		{Name: "a", URL: "https://a.example/", Generation: 1, Healthy: true, Status: "up to date", Failures: 0, Checked: crawled},
		{Name: "b", URL: "https://old-b.example/", Generation: 1, Healthy: true, Status: "up to date", Checked: crawled},
		{Name: "gone", URL: "https://gone.example/", Healthy: true, Checked: crawled},
	}
	file, err := Parse("m.yaml", []byte(`origin: https://o.example/
mirrors:
  - {name: a, url: "https://a.example/", country: DE, netblocks: [10.1.2.3/16]}
  - {name: b, url: "https://b.example/", country: FR}
  - {name: c, url: "https://c.example/", country: FR}
`))
	if err != nil {
		t.Fatal(err)
	}
	st, err := Apply(f.meta, file, prev)
	if err != nil {
		t.Fatal(err)
	}
	if f.meta.Origin != "https://o.example/" || len(f.meta.Mirrors) != 3 {
		t.Fatalf("meta %+v", f.meta)
	}
	a, b, c := f.meta.Mirrors[0], f.meta.Mirrors[1], f.meta.Mirrors[2]
	if !a.Healthy || a.Generation != 1 || a.Status != "up to date" || !a.Checked.Equal(crawled) || a.Continent != "EU" || a.Bandwidth != 100 || !reflect.DeepEqual(a.Netblocks, []string{"10.1.0.0/16"}) {
		t.Errorf("a: %+v", a)
	}
	// b moved: crawl state starts over. c is new.
	if b.Healthy || b.Generation != 0 || b.Status != StatusNotCrawled || c.Healthy || c.Status != StatusNotCrawled {
		t.Errorf("b: %+v\nc: %+v", b, c)
	}
	if st.Candidates != 1 || !reflect.DeepEqual(f.meta.Regions["FR"].Tiers, [][]string{{"a"}}) {
		t.Errorf("stats %+v, FR %+v", st, f.meta.Regions["FR"])
	}
}

func TestPrecomputeIsDeterministic(t *testing.T) {
	var first []byte
	for i := 0; i < 3; i++ {
		f := newFixture(t)
		f.meta.Mirrors = network()
		if _, err := Precompute(f.meta); err != nil {
			t.Fatal(err)
		}
		f.meta.Created = crawled
		b, err := json.Marshal(f.meta)
		if err != nil {
			t.Fatal(err)
		}
		if first == nil {
			first = b
		} else if string(b) != string(first) {
			t.Fatal("two precomputes of the same input differ")
		}
	}
}

func TestApplyFile(t *testing.T) {
	dir := t.TempDir()
	path := dir + "/mirrors.yaml"
	if err := os.WriteFile(path, []byte("mirrors:\n  - {name: a, url: 'https://a.example/', country: DE}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	prev := layout.NewMeta(1)
	prev.Mirrors = []*layout.Mirror{mirror("a", "DE", "EU", 100, 1, true)}
	prev.Mirrors[0].URL = "https://a.example/"
	f := newFixture(t)
	if err := ApplyFile(context.Background(), Source{Path: path}, prev, f.meta); err != nil {
		t.Fatal(err)
	}
	if len(f.meta.Mirrors) != 1 || !f.meta.Mirrors[0].Healthy || f.meta.Regions["DE"].VariantSet != 0 || !reflect.DeepEqual(f.meta.VariantSets[0].Mirrors, []string{"a"}) {
		t.Errorf("meta %+v %+v", f.meta.Mirrors[0], f.meta.Regions["DE"])
	}
	if err := ApplyFile(context.Background(), Source{Path: path}, nil, layout.NewMeta(1)); err != nil {
		t.Errorf("first generation: %v", err)
	}
	if err := ApplyFile(context.Background(), Source{Path: dir + "/none.yaml"}, nil, f.meta); err == nil {
		t.Error("missing file accepted")
	}
}

func TestPrecomputeWithoutMirrors(t *testing.T) {
	f := newFixture(t)
	f.meta.Mirrors = network()
	if _, err := Precompute(f.meta); err != nil {
		t.Fatal(err)
	}
	file, err := Parse("m.yaml", []byte("mirrors: []\n"))
	if err != nil {
		t.Fatal(err)
	}
	st, err := Apply(f.meta, file, f.meta.Mirrors)
	if err != nil {
		t.Fatal(err)
	}
	if f.meta.Regions != nil || f.meta.VariantSets != nil || st.Regions != 0 {
		t.Errorf("regions %v, sets %v, stats %+v", f.meta.Regions, f.meta.VariantSets, st)
	}
}

// TestPrecomputeSubsets: a region's candidate list is widened until each subset the blobs use
// has MinMirrors carriers (or every carrier the region has), and variants' urls name only
// mirrors carrying the blob.
func TestPrecomputeSubsets(t *testing.T) {
	f := newFixture(t)
	m := f.meta
	const amd64, arm64, anyArch, archive = 1, 2, 4, 8
	m.Subsets = []string{"amd64", "arm64", layout.AnyArchitecture, layout.ArchiveSubset}
	for _, b := range m.Blobs {
		b.Subsets = anyArch
	}
	m.Blobs[f.l1].Subsets = amd64
	m.Blobs[f.l2].Subsets = arm64
	m.Blobs[f.c1].Subsets = archive
	deAMD := mirror("de-amd", "DE", "EU", 100, 2, true)
	deAMD.Content = []string{"amd64"}
	deARM := mirror("de-arm", "DE", "EU", 100, 2, true)
	deARM.Content = []string{"arm64"}
	nl := mirror("nl-archive", "NL", "EU", 100, 2, true)
	nl.Content = []string{"archive"}
	us := mirror("us-full", "US", "NA", 100, 2, true)
	m.Mirrors = []*layout.Mirror{deAMD, deARM, nl, us}
	m.MinMirrors = 1
	if _, err := Precompute(m); err != nil {
		t.Fatal(err)
	}
	set := func(region string) []string { return m.VariantSets[m.Regions[region].VariantSet].Mirrors }
	// DE: its two mirrors carry amd64, arm64 and the unclaimed blobs; the archive needs the
	// continent's tier.
	if got, want := set("DE"), []string{"de-amd", "de-arm", "nl-archive"}; !reflect.DeepEqual(got, want) {
		t.Errorf("DE's candidates: got %v, want %v", got, want)
	}
	// US: the full mirror carries every architecture; the archive is in Europe.
	if got, want := set("US"), []string{"us-full", "de-amd", "de-arm", "nl-archive"}; !reflect.DeepEqual(got, want) {
		t.Errorf("US's candidates: got %v, want %v", got, want)
	}
	r := layout.NewRenderer(m)
	v, err := r.Variant(m.Regions["DE"].VariantSet, f.m1)
	if err != nil {
		t.Fatal(err)
	}
	body := string(v.Data)
	for _, tc := range []struct {
		blob      layout.Digest
		want, not string
	}{
		{f.l1, "de-amd", "de-arm"},
		{f.l2, "de-arm", "de-amd"},
		{f.c1, "nl-archive", "de-amd"},
	} {
		_, after, _ := strings.Cut(body, tc.blob.String())
		urls, _, _ := strings.Cut(after, "]")
		if !strings.Contains(urls, tc.want) || strings.Contains(urls, tc.not) {
			t.Errorf("variant urls of %s: %s; want %s, not %s", tc.blob, urls, tc.want, tc.not)
		}
	}
}
