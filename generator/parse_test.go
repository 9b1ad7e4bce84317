package generator

import (
	"strings"
	"testing"

	"github.com/regmirror/regmirror/layout"
)

const d64 = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func TestParseManifest(t *testing.T) {
	tests := []struct {
		name, data, header string
		wantType           string
		wantChildren       int
		wantLayers         int
		wantForeign        int
		wantSchema1        bool
		wantErr            string
	}{
		{name: "oci image", data: `{"schemaVersion":2,"mediaType":"` + layout.MediaTypeOCIManifest + `","config":{"mediaType":"` + layout.MediaTypeOCIConfig + `","digest":"` + d64 + `","size":2},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+zstd","digest":"` + d64 + `","size":3}]}`,
			wantType: layout.MediaTypeOCIManifest, wantLayers: 1},
		{name: "type from header", data: `{"schemaVersion":2,"config":{"mediaType":"x","digest":"` + d64 + `","size":2},"layers":[]}`, header: layout.MediaTypeDockerManifest + "; charset=utf-8",
			wantType: layout.MediaTypeDockerManifest},
		{name: "guessed index", data: `{"schemaVersion":2,"manifests":[{"mediaType":"` + layout.MediaTypeOCIManifest + `","digest":"` + d64 + `","size":9}]}`, header: "application/json",
			wantType: layout.MediaTypeOCIIndex, wantChildren: 1},
		{name: "foreign by urls", data: `{"schemaVersion":2,"mediaType":"` + layout.MediaTypeDockerManifest + `","config":{"digest":"` + d64 + `","size":2},"layers":[{"mediaType":"x","digest":"` + d64 + `","size":3,"urls":["https://x"]}]}`,
			wantType: layout.MediaTypeDockerManifest, wantLayers: 1, wantForeign: 1},
		{name: "nondistributable", data: `{"schemaVersion":2,"mediaType":"` + layout.MediaTypeOCIManifest + `","config":{"digest":"` + d64 + `","size":2},"layers":[{"mediaType":"application/vnd.oci.image.layer.nondistributable.v1.tar+gzip","digest":"` + d64 + `","size":3}]}`,
			wantType: layout.MediaTypeOCIManifest, wantLayers: 1, wantForeign: 1},
		{name: "schema 1 by version", data: `{"schemaVersion":1,"fsLayers":[]}`, wantSchema1: true, wantType: layout.MediaTypeDockerSchema1Signed},
		{name: "schema 1 by header", data: `{"schemaVersion":1}`, header: layout.MediaTypeDockerSchema1, wantSchema1: true, wantType: layout.MediaTypeDockerSchema1},
		{name: "traversal digest", data: `{"schemaVersion":2,"mediaType":"` + layout.MediaTypeOCIManifest + `","config":{"digest":"sha256:../../etc/passwd","size":2}}`, wantErr: "invalid digest"},
		{name: "uppercase digest", data: `{"schemaVersion":2,"mediaType":"` + layout.MediaTypeOCIManifest + `","config":{"digest":"` + strings.ToUpper(d64) + `","size":2}}`, wantErr: "digest"},
		{name: "negative size", data: `{"schemaVersion":2,"mediaType":"` + layout.MediaTypeOCIManifest + `","config":{"digest":"` + d64 + `","size":-1}}`, wantErr: "negative size"},
		{name: "huge child", data: `{"schemaVersion":2,"mediaType":"` + layout.MediaTypeOCIIndex + `","manifests":[{"digest":"` + d64 + `","size":99999999}]}`, wantErr: "limit"},
		{name: "index with layers", data: `{"schemaVersion":2,"mediaType":"` + layout.MediaTypeOCIIndex + `","manifests":[],"layers":[{"digest":"` + d64 + `","size":1}]}`, wantErr: "config or layers"},
		{name: "schema 3", data: `{"schemaVersion":3}`, wantErr: "schemaVersion 3"},
		{name: "not json", data: `<html>`, wantErr: "decoding"},
		{name: "nothing", data: `{"schemaVersion":2}`, wantErr: "no mediaType"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := parseManifest([]byte(tc.data), tc.header)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %v, want an error mentioning %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			foreign := 0
			for _, l := range p.layers {
				if l.foreign {
					foreign++
				}
			}
			if p.mediaType != tc.wantType || len(p.children) != tc.wantChildren || len(p.layers) != tc.wantLayers || foreign != tc.wantForeign || p.schema1 != tc.wantSchema1 {
				t.Errorf("got type %q, %d children, %d layers (%d foreign), schema1 %v; want %q, %d, %d (%d), %v",
					p.mediaType, len(p.children), len(p.layers), foreign, p.schema1, tc.wantType, tc.wantChildren, tc.wantLayers, tc.wantForeign, tc.wantSchema1)
			}
		})
	}
}

func FuzzParseManifest(f *testing.F) {
	f.Add([]byte(`{"schemaVersion":2,"mediaType":"`+layout.MediaTypeOCIManifest+`","config":{"digest":"`+d64+`","size":2},"layers":[{"digest":"`+d64+`","size":3,"urls":["x"]}]}`), "")
	f.Add([]byte(`{"schemaVersion":2,"manifests":[{"digest":"`+d64+`","size":9}]}`), layout.MediaTypeDockerList)
	f.Add([]byte(`{"schemaVersion":1}`), "")
	f.Fuzz(func(t *testing.T, data []byte, header string) {
		p, err := parseManifest(data, header)
		if err != nil {
			return
		}
		refs := append(append([]blobRef{}, p.children...), p.blobs()...)
		for _, b := range refs {
			if _, err := layout.ParseDigest(b.digest.String()); err != nil || b.digest.IsZero() {
				t.Fatalf("accepted digest %q: %v", b.digest, err)
			}
			if b.size < 0 {
				t.Fatalf("accepted size %d", b.size)
			}
			if strings.ContainsAny(layout.BlobPath(b.digest), "\\") || strings.Contains(layout.BlobPath(b.digest), "..") {
				t.Fatalf("unsafe path %q", layout.BlobPath(b.digest))
			}
		}
		if p.mediaType == "" {
			t.Fatalf("no media type")
		}
	})
}

func TestNextLink(t *testing.T) {
	tests := []struct {
		header, want, wantErr string
	}{
		{"", "", ""},
		{`</v2/_catalog?last=b&n=2>; rel="next"`, "/v2/_catalog?last=b&n=2", ""},
		{`<http://other.example/v2/x/tags/list?n=1&last=a>; rel="next"`, "/v2/x/tags/list?n=1&last=a", ""},
		{`</v2/a>; rel="prev", </v2/b?last=x>; rel=next`, "/v2/b?last=x", ""},
		{`</etc/passwd>; rel="next"`, "", "outside /v2/"},
		{`</v2/../etc>; rel="next"`, "", "outside /v2/"},
		{`/v2/x; rel="next"`, "", "malformed"},
	}
	for _, tc := range tests {
		t.Run(tc.header, func(t *testing.T) {
			got, err := nextLink(tc.header)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %q, %v; want an error mentioning %q", got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func FuzzNextLink(f *testing.F) {
	f.Add(`</v2/_catalog?last=b&n=2>; rel="next"`)
	f.Add(`<../../x>; rel=next`)
	f.Fuzz(func(t *testing.T, header string) {
		got, err := nextLink(header)
		if err != nil || got == "" {
			return
		}
		path, _, _ := strings.Cut(got, "?")
		if !strings.HasPrefix(path, "/v2/") || strings.Contains(path, "..") || strings.ContainsAny(path, "\r\n") {
			t.Fatalf("nextLink(%q) = %q: not a path under /v2/", header, got)
		}
	})
}
