package layout

import "strings"

// The vocabulary of the formats the tree stores and serves: media types, the foreign-layer
// rule and the descriptor. Every package that names a media type uses these.

// Manifest media types.
const (
	MediaTypeOCIIndex            = "application/vnd.oci.image.index.v1+json"
	MediaTypeOCIManifest         = "application/vnd.oci.image.manifest.v1+json"
	MediaTypeOCIArtifact         = "application/vnd.oci.artifact.manifest.v1+json"
	MediaTypeDockerList          = "application/vnd.docker.distribution.manifest.list.v2+json"
	MediaTypeDockerManifest      = "application/vnd.docker.distribution.manifest.v2+json"
	MediaTypeDockerSchema1       = "application/vnd.docker.distribution.manifest.v1+json"
	MediaTypeDockerSchema1Signed = "application/vnd.docker.distribution.manifest.v1+prettyjws"
)

// Config and layer media types.
const (
	MediaTypeDockerConfig       = "application/vnd.docker.container.image.v1+json"
	MediaTypeOCIConfig          = "application/vnd.oci.image.config.v1+json"
	MediaTypeDockerForeignLayer = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
	// mediaTypeNondistributable prefixes the OCI non-distributable layer types.
	mediaTypeNondistributable = "application/vnd.oci.image.layer.nondistributable."
)

// IsIndex reports the media types of a list of manifests (OCI index, Docker manifest list).
func IsIndex(mt string) bool { return mt == MediaTypeOCIIndex || mt == MediaTypeDockerList }

// IsForeignLayer reports a layer that the distribution spec lets a registry not hold: one
// with urls, or of a foreign or non-distributable media type.
func IsForeignLayer(mediaType string, urls []string) bool {
	return len(urls) > 0 || mediaType == MediaTypeDockerForeignLayer ||
		strings.HasPrefix(mediaType, mediaTypeNondistributable)
}

// Descriptor is an OCI content descriptor as the metadata stores it (the referrers of a
// subject). It is the tree's own type: its JSON is part of the stored format (FormatVersion),
// byte for byte what formats 1 and 2 stored (go-containerregistry's v1.Descriptor's fields
// and order), and no library upgrade changes it.
type Descriptor struct {
	MediaType    string            `json:"mediaType"`
	Size         int64             `json:"size"`
	Digest       Digest            `json:"digest"`
	Data         []byte            `json:"data,omitempty"`
	URLs         []string          `json:"urls,omitempty"`
	Annotations  map[string]string `json:"annotations,omitempty"`
	Platform     *Platform         `json:"platform,omitempty"`
	ArtifactType string            `json:"artifactType,omitempty"`
}

// Platform is a descriptor's platform.
type Platform struct {
	Architecture string   `json:"architecture"`
	OS           string   `json:"os"`
	OSVersion    string   `json:"os.version,omitempty"`
	OSFeatures   []string `json:"os.features,omitempty"`
	Variant      string   `json:"variant,omitempty"`
	Features     []string `json:"features,omitempty"`
}
