package redirector

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"time"
	"unsafe"

	"github.com/regmirror/regmirror/layout"
)

var hdrAcceptRanges = []string{"bytes"}

// serveBlob answers GET and HEAD /v2/<name>/blobs/<digest>.
//
// HEAD is answered here, never redirected. GET of a manifest (canonical or variant) is
// answered from memory. GET of any other blob goes to a mirror of the client's tiers holding
// it (chooseMirror), else to any mirror holding it that every client may use, else to the
// origin URL, else it is served from the local tree. HEAD and GET agree: HEAD answers 200 only
// when one of them can take the GET. Content the repository does not hold in this generation
// (a newer one may have put it there: replicas a generation apart) is answered by
// serveAheadBlob, and so is a retiring blob whose grace is over (lapsed): a newer generation
// may have deleted it from the mirrors, or brought it back as new content.
func (s *Server) serveBlob(st *reqState, r *http.Request, g *generation, rt route) {
	repo, ok := findRepo(st, r, g, rt.name)
	if !ok {
		return
	}
	h := st.Header()
	var (
		e *manifestEntry
		b *blobEntry
	)
	if repo != nil {
		// The reference is looked up as it is: every digest a generation holds was
		// validated when it was loaded. It is parsed only when it is not found.
		if b = repo.blobs[rt.ref]; b == nil || b.manifest { // a layer's GET looks up one map
			e = repo.manifests[rt.ref]
		}
	}
	if e == nil && b == nil {
		d, ok := parseRefDigest(st, r, rt.ref, errBlobUnknown)
		if !ok {
			return
		}
		if b = g.blobs[d.String()]; b == nil { // another repository's: a newer generation may have put it here
			s.serveAheadBlob(st, r, g, d)
			return
		}
	}
	if e == nil && g.lapsed(repo, b, s.now) { // a manifest is answered from memory in any case
		s.serveAheadBlob(st, r, g, b.digest)
		return
	}
	if e != nil {
		st.mirror = "local"
		h["Content-Type"] = hdrOctetStream
		h["Docker-Content-Digest"] = e.digestHdr
		h["Etag"] = e.etag
		h["Cache-Control"] = hdrImmutable
		http.ServeContent(st, r, "", time.Time{}, bytes.NewReader(e.body))
		return
	}
	if r.Method == http.MethodHead {
		if !s.blobReachable(g, b) {
			writeError(st, r, errBlobUnknown, "blob "+b.digest.String()+" is not available here: no mirror holds it yet, no origin, and the tree lacks its file")
			return
		}
		s.headBlob(st, b)
		return
	}

	if len(g.regions) > 0 || len(g.netblockMirrors) > 0 || len(g.asnMirrors) > 0 || len(g.anyMirrors) > 0 {
		reg := s.resolveClient(st, r, g)
		w := wantOf(b)
		m := g.chooseMirror(st.client, st.asn, reg, w, s.rnd)
		if m == nil {
			m = pickWeighted(g.anyMirrors, w.has, s.rnd)
		}
		if m != nil {
			st.mirror = m.name
			redirect(st, r, m.url, b.path, b)
			return
		}
	}
	if g.origin != "" {
		if !st.resolved {
			s.resolveClient(st, r, g)
		}
		st.mirror = "origin"
		redirect(st, r, g.origin, b.path, b)
		return
	}
	s.serveLocalBlob(st, r, b)
}

// lapsed reports whether b, asked for in repo (nil: a repository that does not hold it), may
// be gone from the mirrors that synced a newer generation: the repository does not reference
// it (it only retires it, or does not hold it), the generation records that some repository
// retires it, and its grace is over at now() (layout.GraceOver; the clock is read only then).
// The next generation deletes such a file, unless it references it again, as new content that
// only the mirrors holding that generation have. The crawl's findings cannot tell, as they say
// which generation a mirror held when crawled, not which it holds now. Metadata that does not
// record the grace (written before it was) lapses nothing.
func (g *generation) lapsed(repo *repoEntry, b *blobEntry, now func() time.Time) bool {
	if !b.retired || g.grace <= 0 {
		return false
	}
	retired, ok := g.retired[b.digest.String()]
	if !ok {
		return false
	}
	if repo != nil && repo.blobs[b.digest.String()] == b && !repo.retiring[b.digest.String()] {
		return false // referenced here: no generation deletes it before retiring it
	}
	return layout.GraceOver(retired, g.grace, now())
}

// blobReachable reports whether a GET of b would find it: at a mirror every client may use
// (a client's own tiers only add to these), at the origin, or in the local tree.
func (s *Server) blobReachable(g *generation, b *blobEntry) bool {
	if g.origin != "" {
		return true
	}
	w := wantOf(b)
	for _, m := range g.anyMirrors {
		if w.has(m) {
			return true
		}
	}
	fi, err := s.root.Lstat(b.path) // what openBlob would refuse, short of opening
	return err == nil && fi.Mode().IsRegular() && fi.Size() == b.size
}

// headBlob answers HEAD for a blob that a GET would find.
func (s *Server) headBlob(st *reqState, b *blobEntry) {
	h := st.Header()
	h["Content-Type"] = hdrOctetStream
	h["Docker-Content-Digest"] = b.digestHdr
	h["Etag"] = b.etag
	h["Content-Length"] = b.length
	h["Accept-Ranges"] = hdrAcceptRanges
	h["Cache-Control"] = hdrImmutable
	st.WriteHeader(http.StatusOK)
}

// redirect answers 307 to base+path: a configured mirror's or the origin's URL, and a blob
// path made from a validated digest.
//
// On HTTP/1 the Location is built in its connection's room, without allocating: a
// connection's requests take turns, and net/http has written this answer's header (from the
// copy WriteHeader takes of the header map) before it reads the connection's next request,
// the only one that reuses the room. HTTP/2 runs a connection's requests side by side: there
// each Location is a string of its own.
func redirect(st *reqState, r *http.Request, base, path string, b *blobEntry) {
	h := st.Header()
	if ci := st.conn; ci != nil && r.ProtoMajor == 1 {
		ci.loc = append(append(ci.loc[:0], base...), path...)
		ci.hdr[0] = unsafe.String(unsafe.SliceData(ci.loc), len(ci.loc))
		h["Location"] = ci.hdr[:]
	} else {
		h["Location"] = []string{base + path}
	}
	h["Docker-Content-Digest"] = b.digestHdr
	h["Cache-Control"] = hdrRegional
	// No Content-Length: net/http writes "Content-Length: 0" itself for an answer without a
	// body (see autoLength).
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
