package crawl

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// BenchmarkCrawl crawls 50 mirrors on loopback (httptest servers serving the tree with
// http.FileServer), with the default sample: each iteration is a whole `regmirror crawl`
// (load, check, precompute, publish).
func BenchmarkCrawl(b *testing.B) {
	tt := newTestTree(b, 500, 50)
	fs := http.FileServer(http.Dir(tt.dir))
	countries := []string{"DE", "FR", "NL", "GB", "SE", "PL", "IT", "ES", "CZ", "AT", "US", "CA", "BR", "JP", "IN", "SG", "AU", "ZA", "KR", "MX"}
	var y strings.Builder
	y.WriteString("mirrors:\n")
	for i := 0; i < 50; i++ {
		srv := httptest.NewServer(fs)
		b.Cleanup(srv.Close)
		fmt.Fprintf(&y, "  - {name: m%02d, url: '%s/', country: %s, bandwidth: %d}\n", i, srv.URL, countries[i%len(countries)], 100*(1+i%10))
	}
	file := filepath.Join(b.TempDir(), "mirrors.yaml")
	if err := os.WriteFile(file, []byte(y.String()), 0o644); err != nil {
		b.Fatal(err)
	}
	opts := Options{Tree: tt.dir, MirrorsFile: file}
	var rep *Report
	for b.Loop() {
		var err error
		if rep, err = Run(context.Background(), opts); err != nil {
			b.Fatal(err)
		}
	}
	if rep.Healthy() != 50 {
		b.Fatalf("%d healthy", rep.Healthy())
	}
	b.ReportMetric(50, "mirrors")
	b.ReportMetric(float64(rep.Mirrors[0].Blobs), "blobs/mirror")
	b.ReportMetric(float64(rep.Stats.VariantSets), "variant-sets")
}
