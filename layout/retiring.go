package layout

import (
	"fmt"
	"time"
)

// RetiringMetaBytes is what the retiring set (Repository.Retiring and RetiringBlobs, the
// manifests and blob records only they keep, Blob.Retired) adds to m's metadata file: the
// compressed size of m less that of the same metadata without the retiring set. m is not
// changed.
func RetiringMetaBytes(m *Meta) (int, error) {
	with, _, err := EncodeMeta(m)
	if err != nil {
		return 0, fmt.Errorf("measuring the retiring set: %w", err)
	}
	c, err := DecodeMeta(with) // a copy to strip
	if err != nil {
		return 0, fmt.Errorf("measuring the retiring set: %w", err)
	}
	current := map[Digest]bool{}
	for _, r := range c.Repositories {
		for _, d := range append(append([]Digest{}, r.Manifests...), r.Blobs...) {
			current[d] = true
		}
	}
	for name, r := range c.Repositories {
		for _, d := range append(append([]Digest{}, r.Retiring...), r.RetiringBlobs...) {
			if !current[d] {
				delete(c.Manifests, d)
				delete(c.Blobs, d)
			}
		}
		r.Retiring, r.RetiringBlobs = nil, nil
		if !r.Published() {
			delete(c.Repositories, name)
		}
	}
	for _, b := range c.Blobs {
		b.Retired = time.Time{}
	}
	without, _, err := EncodeMeta(c)
	if err != nil {
		return 0, fmt.Errorf("measuring the retiring set: %w", err)
	}
	return len(with) - len(without), nil
}
