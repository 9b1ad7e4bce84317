package redirector

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"time"
)

var hdrAcceptRanges = []string{"bytes"}

// serveBlob answers GET and HEAD /v2/<name>/blobs/<digest>.
//
// HEAD is answered here, never redirected. GET of a manifest (canonical or variant) is
// answered from memory. GET of any other blob is a 307 to the mirror chosen for the client,
// else to the origin URL, else the blob is served from the local tree.
func (s *Server) serveBlob(st *reqState, r *http.Request, g *generation, rt route) {
	repo := lookupRepo(st, r, g, rt.name)
	if repo == nil {
		return
	}
	d, ok := parseRefDigest(st, r, rt.ref, errBlobUnknown)
	if !ok {
		return
	}
	h := st.Header()
	if e := repo.manifests[d.String()]; e != nil {
		h["Content-Type"] = hdrOctetStream
		h["Docker-Content-Digest"] = e.digestHdr
		h["Etag"] = e.etag
		h["Cache-Control"] = hdrImmutable
		http.ServeContent(st, r, "", time.Time{}, bytes.NewReader(e.body))
		return
	}
	b := repo.blobs[d.String()]
	if b == nil {
		writeError(st, r, errBlobUnknown, "blob "+d.String()+" is not in "+rt.name)
		return
	}
	if r.Method == http.MethodHead {
		h["Content-Type"] = hdrOctetStream
		h["Docker-Content-Digest"] = b.digestHdr
		h["Etag"] = b.etag
		h["Content-Length"] = b.length
		h["Accept-Ranges"] = hdrAcceptRanges
		h["Cache-Control"] = hdrImmutable
		st.WriteHeader(http.StatusOK)
		return
	}

	if len(g.regions) > 0 || len(g.netblockMirrors) > 0 || len(g.asnMirrors) > 0 {
		reg := s.resolveClient(st, r, g)
		if m := g.chooseMirror(st.client, st.asn, reg, b.since, s.rnd); m != nil {
			st.mirror = m.name
			s.metrics.redirect(st.region, m.name)
			redirect(st, m.url+b.path, b)
			return
		}
	}
	if g.origin != "" {
		if !st.resolved {
			s.resolveClient(st, r, g)
		}
		st.mirror = "origin"
		s.metrics.redirect(st.region, "origin")
		redirect(st, g.origin+b.path, b)
		return
	}
	s.serveLocalBlob(st, r, b)
}

// redirect answers 307 to url, which is a configured mirror's or the origin's URL followed by
// a blob path made from a validated digest.
func redirect(st *reqState, url string, b *blobEntry) {
	h := st.Header()
	h["Location"] = []string{url}
	h["Docker-Content-Digest"] = b.digestHdr
	h["Cache-Control"] = hdrRegional
	h["Content-Length"] = hdrZero
	st.WriteHeader(http.StatusTemporaryRedirect)
}

// serveLocalBlob serves a blob from the tree through os.Root, with Range and conditional
// requests. Symbolic links and anything but a regular file of the recorded size are refused.
func (s *Server) serveLocalBlob(st *reqState, r *http.Request, b *blobEntry) {
	f, err := s.openBlob(b)
	if err != nil {
		s.log.Error("cannot serve blob from the tree", "digest", b.digest.String(), "err", err)
		writeError(st, r, errBlobUnknown, "blob "+b.digest.String()+" is not available here")
		return
	}
	defer f.Close()
	h := st.Header()
	h["Content-Type"] = hdrOctetStream
	h["Docker-Content-Digest"] = b.digestHdr
	h["Etag"] = b.etag
	h["Cache-Control"] = hdrImmutable
	st.mirror = "local"
	http.ServeContent(st, r, "", time.Time{}, f)
}

func (s *Server) openBlob(b *blobEntry) (*os.File, error) {
	fi, err := s.root.Lstat(b.path)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file (%s)", b.path, fi.Mode().Type())
	}
	f, err := s.root.Open(b.path)
	if err != nil {
		return nil, err
	}
	fi, err = f.Stat()
	if err == nil && !fi.Mode().IsRegular() {
		err = fmt.Errorf("%s is not a regular file", b.path)
	}
	if err == nil && fi.Size() != b.size {
		err = fmt.Errorf("%s has %d bytes, the metadata says %d", b.path, fi.Size(), b.size)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}
