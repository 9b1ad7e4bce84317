package generator

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sort"

	"github.com/regmirror/regmirror/layout"
)

// referrer is one manifest referring to a subject, as the referrers API describes it.
type referrer struct {
	digest layout.Digest
	desc   layout.Descriptor
}

// referrersOf asks the source for the referrers of d. A source without the API (any answer
// but 200 to the first query) is not asked again this run; one whose first answer runs past
// a limit has the API, and that query fails.
func (r *run) referrersOf(ctx context.Context, repo string, d layout.Digest) ([]referrer, error) {
	r.refProbe.Lock()
	if r.refKnown && !r.refSupported {
		r.refProbe.Unlock()
		return nil, nil
	}
	if !r.refKnown {
		// The first query decides, holding the lock so that the others wait for it.
		defer r.refProbe.Unlock()
		refs, err := r.queryReferrers(ctx, repo, d)
		if le := (*limitError)(nil); errors.As(err, &le) {
			r.refKnown, r.refSupported = true, true
			return nil, err
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil, err
			}
			r.refKnown, r.refSupported = true, false
			return nil, nil
		}
		r.refKnown, r.refSupported = true, true
		return refs, nil
	}
	r.refProbe.Unlock()

	return r.referrers.do(ctx, repo+"@"+d.String(), func() ([]referrer, error) {
		refs, err := r.queryReferrers(ctx, repo, d)
		if statusOf(err) == http.StatusNotFound {
			// The API exists (the probe said so); the subject just has no referrers here.
			return nil, nil
		}
		return refs, err
	})
}

func (r *run) queryReferrers(ctx context.Context, repo string, d layout.Digest) ([]referrer, error) {
	path := "/v2/" + repo + "/referrers/" + d.String()
	var out []referrer
	seen := map[layout.Digest]bool{}
	visited := map[string]bool{}
	for pages := 0; path != "" && !visited[path]; pages++ {
		if pages == r.o.MaxPages {
			return nil, &limitError{what: "pages of referrers", limit: r.o.MaxPages, option: "MaxPages"}
		}
		visited[path] = true
		var idx struct {
			Manifests []struct {
				descriptor
				Platform *layout.Platform `json:"platform,omitempty"`
			} `json:"manifests"`
		}
		if err := r.reqs.take(ctx, finishing); err != nil {
			return nil, err
		}
		link, err := r.c.getJSON(ctx, path, MaxManifestSize, &idx)
		r.reqs.give()
		if err != nil {
			return nil, err
		}
		for _, m := range idx.Manifests {
			rd, err := layout.ParseDigest(m.Digest)
			if err != nil {
				return nil, fmt.Errorf("referrers of %s: %w", d, err)
			}
			if seen[rd] || rd == d {
				continue
			}
			if len(seen) == r.o.MaxReferrers {
				return nil, &limitError{what: "referrers", limit: r.o.MaxReferrers, option: "MaxReferrers"}
			}
			seen[rd] = true
			out = append(out, referrer{digest: rd, desc: layout.Descriptor{
				MediaType:    m.MediaType,
				Size:         m.Size,
				Digest:       rd,
				ArtifactType: m.ArtifactType,
				Annotations:  m.Annotations,
				Platform:     m.Platform,
			}})
		}
		next, err := nextLink(link)
		if err != nil {
			return nil, err
		}
		path = next
	}
	sort.Slice(out, func(i, j int) bool { return out[i].digest.String() < out[j].digest.String() })
	return out, nil
}

// prevReferrers are the referrers of d that the previous generation published in repo.
func (r *run) prevReferrers(repo string, d layout.Digest) []referrer {
	pr := r.prev.Repositories[repo]
	if pr == nil {
		return nil
	}
	var out []referrer
	for _, desc := range pr.Referrers[d] {
		rd := desc.Digest
		if _, ok := r.prev.Manifests[rd]; ok {
			out = append(out, referrer{digest: rd, desc: desc})
		}
	}
	return out
}
