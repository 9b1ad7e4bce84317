package redirector

import (
	"net/http"
	"strconv"

	"github.com/regmirror/regmirror/layout"
)

// serveReferrers answers GET /v2/<name>/referrers/<digest> (OCI 1.1): an image index of the
// manifests that refer to the subject, filtered by ?artifactType= when given (and then says so
// in OCI-Filters-Applied). A subject without referrers, or unknown, gets an empty index.
func (s *Server) serveReferrers(st *reqState, r *http.Request, g *generation, rt route) {
	repo := lookupRepo(st, r, g, rt.name)
	if repo == nil {
		return
	}
	d, ok := parseRefDigest(st, r, rt.ref, errManifestUnknown)
	if !ok {
		return
	}
	h := st.Header()
	body := emptyReferrers
	set := repo.referrers[d.String()]
	if set != nil {
		body = set.body
	}
	if at := r.URL.Query().Get("artifactType"); at != "" {
		h["Oci-Filters-Applied"] = hdrFilters
		if set != nil {
			var keep []layout.Descriptor
			for _, desc := range set.descs {
				if desc.ArtifactType == at {
					keep = append(keep, desc)
				}
			}
			b, err := referrersBody(keep)
			if err != nil {
				s.log.Error("encoding referrers", "err", err)
				writeError(st, r, errInternal, "")
				return
			}
			body = b
		}
	}
	h["Content-Type"] = hdrIndexType
	h["Content-Length"] = []string{strconv.Itoa(len(body))}
	h["Cache-Control"] = s.tagCC
	st.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		_, _ = st.Write(body)
	}
}
