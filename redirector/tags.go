package redirector

import (
	"net/http"
	"net/url"
	"sort"
	"strconv"
)

// page is a parsed n/last pagination request.
type page struct {
	n     int  // at most n entries, if limited
	limit bool // n was given
	last  string
}

// parsePage reads n and last. n must be a non-negative integer; n=0 asks for an empty list.
func parsePage(q url.Values) (page, bool) {
	var p page
	if v, ok := q["n"]; ok && len(v) > 0 && v[0] != "" {
		n, err := strconv.Atoi(v[0])
		if err != nil || n < 0 {
			return p, false
		}
		p.n, p.limit = n, true
	}
	p.last = q.Get("last")
	return p, true
}

// apply returns the entries of the sorted list that come lexically after last (whether or not
// last is itself in the list), at most n of them, and whether more remain.
func (p page) apply(sorted []string) ([]string, bool) {
	list := sorted
	if p.last != "" {
		i := sort.SearchStrings(list, p.last)
		if i < len(list) && list[i] == p.last {
			i++
		}
		list = list[i:]
	}
	if p.limit && p.n < len(list) {
		return list[:p.n], p.n > 0
	}
	return list, false
}

// nextLink is the RFC 5988 Link header for the next page.
func nextLink(path string, last string, n int) []string {
	return []string{"<" + path + "?last=" + url.QueryEscape(last) + "&n=" + strconv.Itoa(n) + `>; rel="next"`}
}

// serveTags answers GET /v2/<name>/tags/list with n/last pagination.
func (s *Server) serveTags(st *reqState, r *http.Request, g *generation, rt route) {
	repo := lookupRepo(st, r, g, rt.name)
	if repo == nil {
		return
	}
	if !repo.published {
		writeError(st, r, errNameUnknown, "repository "+rt.name+" is not published here")
		return
	}
	body := repo.tagsBody
	h := st.Header()
	if r.URL.RawQuery != "" {
		p, ok := parsePage(r.URL.Query())
		if !ok {
			writeError(st, r, errPaginationInvalid, "n must be a non-negative integer")
			return
		}
		list, more := p.apply(repo.tagList)
		if more {
			h["Link"] = nextLink("/v2/"+repo.name+"/tags/list", list[len(list)-1], p.n)
		}
		body = tagsBody(repo.name, list)
	}
	writeJSON(st, r, body, s.tagCC)
}

// serveCatalog answers GET /v2/_catalog with n/last pagination.
func (s *Server) serveCatalog(st *reqState, r *http.Request, g *generation) {
	if g == nil {
		writeError(st, r, errUnavailable, "no generation loaded")
		return
	}
	body := g.catalogBody
	h := st.Header()
	if r.URL.RawQuery != "" {
		p, ok := parsePage(r.URL.Query())
		if !ok {
			writeError(st, r, errPaginationInvalid, "n must be a non-negative integer")
			return
		}
		list, more := p.apply(g.catalog)
		if more {
			h["Link"] = nextLink("/v2/_catalog", list[len(list)-1], p.n)
		}
		body = catalogBody(list)
	}
	writeJSON(st, r, body, s.tagCC)
}

func writeJSON(st *reqState, r *http.Request, body []byte, cc []string) {
	h := st.Header()
	h["Content-Type"] = hdrJSON
	h["Content-Length"] = []string{strconv.Itoa(len(body))}
	h["Cache-Control"] = cc
	st.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		_, _ = st.Write(body)
	}
}
