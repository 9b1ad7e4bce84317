package mirrors

import (
	"fmt"
	"os"
	"runtime"
	"sort"
	"testing"

	"github.com/regmirror/regmirror/layout"
)

// benchCountries are 30 countries on six continents.
var benchCountries = []string{
	"DE", "FR", "NL", "GB", "SE", "PL", "IT", "ES", "CZ", "AT", "FI", "CH",
	"US", "CA", "MX",
	"BR", "AR", "CL",
	"JP", "CN", "IN", "KR", "SG", "TW", "ID",
	"AU", "NZ",
	"ZA", "KE", "EG",
}

// BenchMeta builds metadata like a distribution's: n manifests (a fifth of them indexes of
// two images), each image of a config and 2 to 5 layers on a shared base layer, blobs spread
// over 10 generations; and mirrors mirrors spread over the first countries countries, one in
// ten a generation behind, all crawled and healthy.
func benchMeta(n, mirrors, countries int) *layout.Meta {
	meta := layout.NewMeta(10)
	blob := func(seed string, since uint64, size int64) layout.Digest {
		d := digestOf([]byte(seed))
		meta.Blobs[d] = &layout.Blob{Size: size, Since: since}
		return d
	}
	base := blob("base", 1, 80<<20)
	image := func(i int) (layout.Digest, int) {
		since := uint64(i%10 + 1)
		cfg := blob(fmt.Sprint("config", i), since, 1500)
		data := fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":1500},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"%s","size":%d}`, cfg, base, 80<<20)
		for j := 0; j < 1+i%4; j++ {
			l := blob(fmt.Sprint("layer", i, j), since, 1<<20)
			data += fmt.Sprintf(`,{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"%s","size":%d}`, l, 1<<20)
		}
		data += `],"annotations":{"org.opencontainers.image.created":"2026-01-01T00:00:00Z"}}`
		d := digestOf([]byte(data))
		meta.Manifests[d] = &layout.Manifest{MediaType: mediaOCIManifest, Data: []byte(data)}
		meta.Blobs[d] = &layout.Blob{Size: int64(len(data)), Since: since}
		return d, len(data)
	}
	for i := 0; len(meta.Manifests) < n; i++ {
		if i%4 == 0 && n-len(meta.Manifests) >= 3 {
			a, as := image(2 * i)
			b, bs := image(2*i + 1)
			data := fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"%s","size":%d,"platform":{"architecture":"amd64","os":"linux"}},{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"%s","size":%d,"platform":{"architecture":"arm64","os":"linux"}}]}`, a, as, b, bs)
			d := digestOf([]byte(data))
			meta.Manifests[d] = &layout.Manifest{MediaType: mediaOCIIndex, Data: []byte(data)}
			meta.Blobs[d] = &layout.Blob{Size: int64(len(data)), Since: 1}
			continue
		}
		image(2 * i)
	}
	for i := 0; i < mirrors; i++ {
		c := benchCountries[i%countries]
		cont, _ := layout.ContinentOf(c)
		gen := uint64(10)
		if i%10 == 9 {
			gen = 9
		}
		meta.Mirrors = append(meta.Mirrors, &layout.Mirror{
			Name: fmt.Sprintf("m%02d.%s", i, c), URL: fmt.Sprintf("https://mirror%02d.example.%s/pub/containers/", i, c),
			Country: c, Continent: cont, Bandwidth: int64(100 * (1 + i%10)), Enabled: true,
			Generation: gen, Healthy: true, Checked: crawled, Status: "up to date",
		})
	}
	meta.Origin = "https://origin.example.org/containers/"
	return meta
}

func BenchmarkPrecompute(b *testing.B) {
	for _, c := range []struct{ manifests, mirrors, countries int }{
		{10000, 50, 30}, // the network: 38 regions
		{10000, 10, 2},  // 10 regions: 2 countries, 7 continents, global
	} {
		b.Run(fmt.Sprintf("manifests=%d/mirrors=%d/countries=%d", c.manifests, c.mirrors, c.countries), func(b *testing.B) {
			meta := benchMeta(c.manifests, c.mirrors, c.countries)
			var st Stats
			cpu0 := cpuTime()
			n := 0
			b.ResetTimer()
			for b.Loop() {
				var err error
				if st, err = Precompute(meta); err != nil {
					b.Fatal(err)
				}
				n++
			}
			b.StopTimer()
			// CPU time is less at the mercy of other load on the machine than wall time.
			b.ReportMetric((cpuTime()-cpu0).Seconds()/float64(n), "cpu-s/op")
			b.ReportMetric(float64(st.Regions), "regions")
			b.ReportMetric(float64(st.VariantSets), "variant-sets")
			meta.Created = crawled
			raw, _, err := layout.EncodeMeta(meta)
			meta = nil
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(len(raw))/(1<<20), "meta-zst-MiB")
			// The heap a redirector holds for this metadata once decoded: live heap with the
			// decoded metadata, less live heap once it is dropped.
			decoded, err := layout.DecodeMeta(raw)
			if err != nil {
				b.Fatal(err)
			}
			var with, without runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&with)
			runtime.KeepAlive(decoded)
			decoded = nil
			runtime.GC()
			runtime.ReadMemStats(&without)
			b.ReportMetric((float64(with.HeapAlloc)-float64(without.HeapAlloc))/(1<<20), "decoded-heap-MiB")
		})
	}
}

// TestBenchMetaShape checks the benchmark's input is what it says.
func TestBenchMetaShape(t *testing.T) {
	meta := benchMeta(1000, 50, 30)
	if len(meta.Manifests) != 1000 {
		t.Errorf("%d manifests", len(meta.Manifests))
	}
	countries := map[string]bool{}
	for _, m := range meta.Mirrors {
		countries[m.Country] = true
	}
	if len(meta.Mirrors) != 50 || len(countries) != 30 {
		t.Errorf("%d mirrors in %d countries", len(meta.Mirrors), len(countries))
	}
	st, err := Precompute(meta)
	if err != nil {
		t.Fatal(err)
	}
	var regions []string
	for r := range meta.Regions {
		regions = append(regions, r)
	}
	sort.Strings(regions)
	if st.Regions != 38 {
		t.Errorf("stats %+v, regions %v", st, regions)
	}
	t.Log(st)
}

// TestWriteBenchTree publishes the metadata of BenchmarkPrecompute's 50-mirror network (10,000
// manifests, 30 countries, regions and variants computed) as a tree in $REGMIRROR_BENCH_TREE,
// for measuring a redirector on it (`regmirror serve --tree DIR`, then VmRSS). Blob files are
// not written: the redirector answers from the metadata.
func TestWriteBenchTree(t *testing.T) {
	dir := os.Getenv("REGMIRROR_BENCH_TREE")
	if dir == "" {
		t.Skip("set REGMIRROR_BENCH_TREE to a directory to write the tree")
	}
	meta := benchMeta(10000, 50, 30)
	repo := &layout.Repository{Tags: map[string]layout.Digest{}}
	i := 0
	for d := range meta.Manifests {
		repo.Tags[fmt.Sprintf("t%05d", i)] = d
		repo.Manifests = append(repo.Manifests, d)
		i++
	}
	sort.Slice(repo.Manifests, func(i, j int) bool { return repo.Manifests[i].String() < repo.Manifests[j].String() })
	meta.Repositories["bench/images"] = repo
	st, err := Precompute(meta)
	if err != nil {
		t.Fatal(err)
	}
	s, err := layout.NewTree(dir).Publish(meta)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%v; published %s", st, s.Meta)
}
