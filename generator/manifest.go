package generator

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/regmirror/regmirror/layout"
)

const (
	annotationRefName = "org.opencontainers.image.ref.name"
)

func isSchema1(mt string) bool {
	return mt == layout.MediaTypeDockerSchema1 || mt == layout.MediaTypeDockerSchema1Signed
}

func isKnownManifestType(mt string) bool {
	switch mt {
	case layout.MediaTypeOCIIndex, layout.MediaTypeOCIManifest, layout.MediaTypeOCIArtifact, layout.MediaTypeDockerList, layout.MediaTypeDockerManifest, layout.MediaTypeDockerSchema1, layout.MediaTypeDockerSchema1Signed:
		return true
	}
	return false
}

// descriptor is a descriptor as found in untrusted manifests; digests are checked by parse.
type descriptor struct {
	MediaType    string            `json:"mediaType"`
	Digest       string            `json:"digest"`
	Size         int64             `json:"size"`
	URLs         []string          `json:"urls,omitempty"`
	ArtifactType string            `json:"artifactType,omitempty"`
	Annotations  map[string]string `json:"annotations,omitempty"`
}

// rawManifest is the union of the manifest formats the generator reads.
type rawManifest struct {
	SchemaVersion int          `json:"schemaVersion"`
	MediaType     string       `json:"mediaType"`
	ArtifactType  string       `json:"artifactType"`
	Config        *descriptor  `json:"config"`
	Layers        []descriptor `json:"layers"`
	Manifests     []descriptor `json:"manifests"`
	Blobs         []descriptor `json:"blobs"` // OCI artifact manifest (draft 1.1)
	Subject       *descriptor  `json:"subject"`
}

// blobRef is a config or layer a manifest references.
type blobRef struct {
	digest    layout.Digest
	size      int64
	mediaType string
	layer     bool
	foreign   bool // may legitimately be absent from the source
}

// parsed is what the generator needs from a manifest.
type parsed struct {
	mediaType string
	schema1   bool
	children  []blobRef // manifests of an index
	config    *blobRef
	layers    []blobRef
	subject   layout.Digest // the manifest this one refers to (zero: none, or not a valid digest)
}

// blobs are the config and the layers.
func (p *parsed) blobs() []blobRef {
	var out []blobRef
	if p.config != nil {
		out = append(out, *p.config)
	}
	return append(out, p.layers...)
}

// parseManifest decodes untrusted manifest bytes. headerType is the Content-Type the source
// sent (may be empty or generic). The media type is the manifest's own mediaType field when
// it has one, else a known Content-Type, else guessed from the structure.
func parseManifest(data []byte, headerType string) (*parsed, error) {
	var m rawManifest
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("decoding manifest: %w", err)
	}
	headerType, _, _ = strings.Cut(headerType, ";")
	headerType = strings.TrimSpace(headerType)
	p := &parsed{mediaType: m.MediaType}
	if p.mediaType == "" && isKnownManifestType(headerType) {
		p.mediaType = headerType
	}
	if m.SchemaVersion == 1 || isSchema1(p.mediaType) || isSchema1(headerType) {
		p.schema1 = true
		if p.mediaType == "" {
			p.mediaType = layout.MediaTypeDockerSchema1Signed
		}
		return p, nil
	}
	if m.SchemaVersion != 2 {
		return nil, fmt.Errorf("manifest has schemaVersion %d, want 2", m.SchemaVersion)
	}
	if p.mediaType == "" {
		switch {
		case m.Manifests != nil:
			p.mediaType = layout.MediaTypeOCIIndex
		case m.Config != nil:
			p.mediaType = layout.MediaTypeOCIManifest
		case m.Blobs != nil:
			p.mediaType = layout.MediaTypeOCIArtifact
		default:
			return nil, fmt.Errorf("manifest has no mediaType and neither config nor manifests")
		}
	}
	conv := func(d descriptor, what string, i int) (blobRef, error) {
		dg, err := layout.ParseDigest(d.Digest)
		if err != nil {
			return blobRef{}, fmt.Errorf("%s %d: %w", what, i, err)
		}
		if d.Size < 0 {
			return blobRef{}, fmt.Errorf("%s %d (%s): negative size %d", what, i, dg, d.Size)
		}
		return blobRef{digest: dg, size: d.Size, mediaType: d.MediaType}, nil
	}
	for i, d := range m.Manifests {
		b, err := conv(d, "manifest", i)
		if err != nil {
			return nil, err
		}
		if b.size > MaxManifestSize {
			return nil, fmt.Errorf("child manifest %s is %d bytes, over the %d-byte limit", b.digest, b.size, MaxManifestSize)
		}
		p.children = append(p.children, b)
	}
	if m.Config != nil {
		b, err := conv(*m.Config, "config", 0)
		if err != nil {
			return nil, err
		}
		p.config = &b
	}
	layers := m.Layers
	if p.mediaType == layout.MediaTypeOCIArtifact {
		layers = append(layers, m.Blobs...)
	}
	for i, d := range layers {
		b, err := conv(d, "layer", i)
		if err != nil {
			return nil, err
		}
		b.layer = true
		b.foreign = layout.IsForeignLayer(d.MediaType, d.URLs)
		p.layers = append(p.layers, b)
	}
	if m.Subject != nil {
		// A referrer is accepted only for the subject it names; a subject that is not a
		// valid digest makes it a referrer of nothing, not a broken manifest.
		p.subject, _ = layout.ParseDigest(m.Subject.Digest)
	}
	switch p.mediaType {
	case layout.MediaTypeOCIIndex, layout.MediaTypeDockerList:
		if m.Config != nil || len(m.Layers) > 0 {
			return nil, fmt.Errorf("%s has config or layers", p.mediaType)
		}
	default:
		if len(m.Manifests) > 0 {
			return nil, fmt.Errorf("%s lists manifests", p.mediaType)
		}
	}
	return p, nil
}

// isImageConfig reports config media types whose rootfs.diff_ids --verify-layers checks.
func isImageConfig(mt string) bool {
	return mt == layout.MediaTypeDockerConfig || mt == layout.MediaTypeOCIConfig
}
