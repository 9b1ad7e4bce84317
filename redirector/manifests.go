package redirector

import (
	"errors"
	"net/http"
	"strings"

	"github.com/regmirror/regmirror/layout"
)

// lookupRepo validates the name and finds the repository, answering the error itself: as
// findRepo, and NAME_UNKNOWN for a valid name the generation does not know.
func lookupRepo(w http.ResponseWriter, r *http.Request, g *generation, name string) *repoEntry {
	repo, ok := findRepo(w, r, g, name)
	if ok && repo == nil {
		writeError(w, r, errNameUnknown, "repository "+name+" is not published here")
	}
	return repo
}

// findRepo validates the name and finds the repository: nil, with ok, for a valid name the
// generation does not know (content by digest may still be found, see ahead.go). It answers
// the error itself when !ok.
func findRepo(w http.ResponseWriter, r *http.Request, g *generation, name string) (repo *repoEntry, ok bool) {
	if g != nil {
		if repo := g.repos[name]; repo != nil { // its name was validated when the generation was loaded
			return repo, true
		}
	}
	if err := layout.ValidateName(name); err != nil {
		writeError(w, r, errNameInvalid, err.Error())
		return nil, false
	}
	if g == nil {
		writeError(w, r, errUnavailable, "no generation loaded")
		return nil, false
	}
	return g.repos[name], true
}

// parseRefDigest validates a digest from a request. A well-formed digest of an algorithm the
// tree does not hold is reported as unknown (404), anything else as DIGEST_INVALID (400).
func parseRefDigest(w http.ResponseWriter, r *http.Request, ref string, unknown errorCode) (layout.Digest, bool) {
	d, err := layout.ParseDigest(ref)
	if err != nil {
		if errors.Is(err, layout.ErrDigestAlgo) {
			writeError(w, r, unknown, err.Error())
		} else {
			writeError(w, r, errDigestInvalid, err.Error())
		}
		return layout.Digest{}, false
	}
	return d, true
}

// serveManifest answers GET and HEAD /v2/<name>/manifests/<reference>.
//
// By digest: exactly the bytes of that digest (canonical or a regional variant) if the
// repository holds it. By tag: the tagged manifest; a list or index to a client whose Accept
// header names media types but neither list type gets the list's linux/amd64 image instead,
// as docker-distribution does for old clients; with regional manifests on, the client's
// region's variant.
func (s *Server) serveManifest(st *reqState, r *http.Request, g *generation, rt route) {
	byTag := strings.IndexByte(rt.ref, ':') < 0
	var repo *repoEntry
	if byTag {
		if repo = lookupRepo(st, r, g, rt.name); repo == nil {
			return
		}
	} else {
		var ok bool
		if repo, ok = findRepo(st, r, g, rt.name); !ok {
			return
		}
	}
	var e *manifestEntry
	if byTag {
		if err := layout.ValidateTag(rt.ref); err != nil {
			writeError(st, r, errManifestInvalid, err.Error())
			return
		}
		if e = repo.tags[rt.ref]; e == nil {
			writeError(st, r, errManifestUnknown, "tag "+rt.ref+" is not published in "+rt.name)
			return
		}
		if e.isList && e.defaultChild != nil && !acceptsList(r.Header["Accept"]) {
			e = e.defaultChild
		}
		if s.opts.RegionalManifests {
			if reg := s.resolveClient(st, r, g); reg != nil {
				if v := s.variantOf(g, reg, e); v != nil {
					e = v
				}
			}
		}
	} else {
		d, ok := parseRefDigest(st, r, rt.ref, errManifestUnknown)
		if !ok {
			return
		}
		if repo != nil {
			if e = repo.manifests[d.String()]; e == nil {
				e = s.variantByDigest(g, repo, d, func() *regionEntry { return s.resolveClient(st, r, g) })
			}
		}
		if e == nil {
			// A newer generation may have put it here (replicas a generation apart).
			e = s.aheadManifest(r.Context(), g, d)
		}
		if e == nil {
			writeError(st, r, errManifestUnknown, "manifest "+d.String()+" is not in "+rt.name)
			return
		}
	}

	h := st.Header()
	h["Docker-Content-Digest"] = e.digestHdr
	h["Etag"] = e.etag
	switch {
	case !byTag:
		h["Cache-Control"] = hdrImmutable
	case s.opts.RegionalManifests:
		h["Cache-Control"] = s.tagPrivateCC
		h["Vary"] = hdrVaryAccept
	default:
		h["Cache-Control"] = s.tagCC
		h["Vary"] = hdrVaryAccept
	}
	if etagMatch(r.Header["If-None-Match"], e.digest) {
		st.WriteHeader(http.StatusNotModified)
		return
	}
	h["Content-Type"] = e.contentType
	if r.Method != http.MethodGet || len(e.body) > autoLength {
		h["Content-Length"] = e.length
	}
	st.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		_, _ = st.Write(e.body)
	}
}

// acceptsList reports whether a client with these Accept header values takes a manifest list
// or OCI index: no Accept at all, a wildcard, or either list type named.
func acceptsList(accept []string) bool {
	named := false
	for _, v := range accept {
		for v != "" {
			var mt string
			mt, v, _ = strings.Cut(v, ",")
			mt, _, _ = strings.Cut(mt, ";")
			mt = strings.TrimSpace(mt)
			if mt == "" {
				continue
			}
			named = true
			switch mt {
			case layout.MediaTypeDockerList, layout.MediaTypeOCIIndex, "*/*", "application/*":
				return true
			}
		}
	}
	return !named
}

// etagMatch implements If-None-Match against a digest's ETag ("*", weak tags, lists).
func etagMatch(inm []string, digest string) bool {
	for _, v := range inm {
		for v != "" {
			var t string
			t, v, _ = strings.Cut(v, ",")
			t = strings.TrimSpace(t)
			t = strings.TrimPrefix(t, "W/")
			if t == "*" {
				return true
			}
			if len(t) == len(digest)+2 && t[0] == '"' && t[len(t)-1] == '"' && t[1:len(t)-1] == digest {
				return true
			}
		}
	}
	return false
}
