package layout

import (
	"fmt"
	"time"
)

// GraceOver reports whether content unreferenced since t (a retiring file's Blob.Retired, an
// orphan's Orphan.Unreferenced) is past the grace period at now. It is the generator's rule:
// the first generation generated once it holds ends such a retiring entry (not the one that
// retired it) and deletes the file, from the tree and then from every mirror that syncs that
// generation. A server still loading an older generation may therefore no longer trust the
// mirrors with it.
func GraceOver(t time.Time, grace time.Duration, now time.Time) bool { return now.Sub(t) > grace }

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
