package generator

import (
	"fmt"
	"slices"

	"github.com/regmirror/regmirror/layout"
)

// retiring are the figures of the retiring set: what the generation no longer references but
// still serves by digest.
type retiring struct {
	manifests, blobs int   // distinct digests in the repositories' retiring lists
	bytes            int64 // their files' bytes
	fresh            []string
}

// retire works out each repository's retiring set (layout.Repository.Retiring and
// RetiringBlobs): everything the previous generation served in a repository, referenced or
// already retiring, that this generation does not reference there. An entry retiring now is
// always kept (a pull spanning this switch, a replica still at the previous generation); an
// entry retiring since an earlier generation is kept while its file's Retired time is within
// the grace period. Retiring manifests keep their bytes in m.Manifests and every retiring file
// its record in m.Blobs, so that garbage collection, which only ever deletes what m.Blobs
// lacks, leaves them alone. A repository gone from the source stays in m.Repositories, without
// tags, while it retires something.
func (r *run) retire(m *layout.Meta) retiring {
	now := r.o.Now().UTC()
	var st retiring
	fresh := map[layout.Digest]bool{} // retired from some repository by this generation
	all := map[layout.Digest]bool{}
	for name, pr := range r.prev.Repositories {
		if pr == nil {
			continue
		}
		repo := m.Repositories[name]
		// What the repository references now, made when first asked (a repository that
		// retires nothing, as most of a promotion's, never asks).
		var current map[layout.Digest]bool
		referenced := func(d layout.Digest) bool {
			if current == nil {
				current = map[layout.Digest]bool{}
				if repo != nil {
					for _, d := range repo.Manifests {
						current[d] = true
					}
					for _, d := range repo.Blobs {
						current[d] = true
					}
					for _, d := range repo.Tags {
						current[d] = true
					}
				}
			}
			return current[d]
		}
		manifests, blobs := map[layout.Digest]bool{}, map[layout.Digest]bool{}
		keep := func(d layout.Digest, manifest, already bool) {
			pb := r.prev.Blobs[d]
			if pb == nil || referenced(d) {
				return // still referenced here, or no file to serve (a foreign layer)
			}
			if manifest && r.prev.Manifests[d] == nil {
				return
			}
			if already && layout.GraceOver(pb.Retired, r.o.GCGrace, now) {
				return // retired longer ago than the grace period
			}
			if !already {
				fresh[d] = true
				if manifest {
					st.fresh = append(st.fresh, fmt.Sprintf("retire %s@%s", name, d))
				}
			}
			if manifest {
				manifests[d] = true
			} else {
				blobs[d] = true
			}
		}
		// Lists the repository still has as they were reference all they name: nothing in
		// them retires.
		if repo == nil || !slices.Equal(repo.Manifests, pr.Manifests) {
			for _, d := range pr.Manifests {
				keep(d, true, false)
			}
		}
		if repo == nil || !slices.Equal(repo.Blobs, pr.Blobs) {
			for _, d := range pr.Blobs {
				keep(d, false, false)
			}
		}
		for _, d := range pr.Retiring {
			keep(d, true, true)
		}
		for _, d := range pr.RetiringBlobs {
			keep(d, false, true)
		}
		if len(manifests) == 0 && len(blobs) == 0 {
			continue
		}
		if repo == nil {
			repo = &layout.Repository{Tags: map[string]layout.Digest{}}
			m.Repositories[name] = repo
		}
		repo.Retiring, repo.RetiringBlobs = sortedDigests(manifests), sortedDigests(blobs)
		for d := range manifests {
			if _, ok := m.Manifests[d]; !ok {
				m.Manifests[d] = r.prev.Manifests[d]
			}
			all[d] = true
		}
		for d := range blobs {
			all[d] = true
		}
	}
	for d := range all {
		pb := r.prev.Blobs[d]
		b := m.Blobs[d]
		if b == nil { // retiring everywhere: the previous record, kept
			b = &layout.Blob{Size: pb.Size, Since: pb.Since}
			m.Blobs[d] = b
		}
		b.Retired = pb.Retired
		if fresh[d] || b.Retired.IsZero() {
			b.Retired = now
		}
		if _, ok := m.Manifests[d]; ok {
			st.manifests++
		} else {
			st.blobs++
		}
		st.bytes += b.Size
	}
	return st
}
