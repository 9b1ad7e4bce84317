package layout

import (
	"cmp"
	"encoding/json"
	"slices"
	"sort"
	"strings"
)

// The renderers of the publication's whole-tree files as they were before they were made
// fast (encoding/json, every manifest unmarshalled, a line slice sorted): the reference the
// differential tests and benchmarks compare the current ones with, byte for byte.

// refIndexJSON is IndexJSON as it was.
func refIndexJSON(m *Meta) ([]byte, error) {
	var descs []indexDescriptor
	for name, repo := range m.Repositories {
		for tag, d := range repo.Tags {
			mf := m.Manifests[d]
			if mf == nil {
				continue
			}
			var at struct {
				ArtifactType string `json:"artifactType"`
			}
			_ = json.Unmarshal(mf.Data, &at)
			descs = append(descs, indexDescriptor{
				MediaType:    mf.MediaType,
				Digest:       d.String(),
				Size:         int64(len(mf.Data)),
				ArtifactType: at.ArtifactType,
				Annotations:  map[string]string{annotationRefName: name + ":" + tag},
			})
		}
	}
	sort.Slice(descs, func(i, j int) bool {
		return descs[i].Annotations[annotationRefName] < descs[j].Annotations[annotationRefName]
	})
	if descs == nil {
		descs = []indexDescriptor{}
	}
	b, err := json.MarshalIndent(struct {
		SchemaVersion int               `json:"schemaVersion"`
		MediaType     string            `json:"mediaType"`
		Manifests     []indexDescriptor `json:"manifests"`
	}{2, MediaTypeOCIIndex, descs}, "", " ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// refSubsetFilters is Meta.SubsetFilters as it was.
func refSubsetFilters(m *Meta) map[string][]byte {
	names := AllSubsets()
	masks := make([]uint64, len(names))
	for i, s := range names {
		masks[i] = m.ContentMask([]string{s})
	}
	type line struct {
		since uint64
		path  string // BlobPath
		mask  uint64
	}
	l := make([]line, 0, len(m.Blobs)+len(m.Orphans))
	for d, b := range m.Blobs {
		l = append(l, line{b.Since, BlobPath(d), b.Subsets | b.Former})
	}
	for d, o := range m.Orphans {
		l = append(l, line{o.Since, BlobPath(d), o.Subsets})
	}
	slices.SortFunc(l, func(a, b line) int {
		if c := cmp.Compare(a.since, b.since); c != 0 {
			return c
		}
		return strings.Compare(a.path, b.path)
	})
	files := map[string][]byte{}
	for i, s := range names {
		b := []byte{}
		for _, x := range l {
			if x.mask == 0 && s != ArchiveSubset || x.mask&masks[i] != 0 {
				b = append(b, "+ /"...)
				b = append(b, x.path...)
				b = append(b, '\n')
			}
		}
		files[SubsetFilterPath(s)] = b
	}
	return files
}
