package redirector

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"time"

	"github.com/regmirror/regmirror/layout"
	"golang.org/x/sync/singleflight"
)

// Content a newer generation published. Replicas behind one name may be a generation apart: a
// client may read an index from a replica at G+1 and ask this one, still at G, for its children
// and blobs, in the same repository or a new one. What the loaded generation does not hold in
// the repository asked is answered from the tree's own blobs/ when the file is there, else from
// the origin (which holds every generation's files), else not at all (404). Paths are only ever
// built from parsed digests.
const (
	// aheadTimeout bounds one manifest fetch from the origin.
	aheadTimeout = 5 * time.Second
	// aheadCacheBytes bounds the manifests kept once fetched from the origin.
	aheadCacheBytes = 8 << 20
	// aheadFetches bounds the origin fetches in flight.
	aheadFetches = 8
)

// aheadFetcher fetches manifests a newer generation published from the origin: one fetch per
// digest at a time, a bounded number at once, verified, and kept (with those read from the
// tree's blobs/) in a small cache.
type aheadFetcher struct {
	client *http.Client
	group  singleflight.Group
	sem    chan struct{}
	cache  *variantCache
}

func newAheadFetcher(client *http.Client) *aheadFetcher {
	if client == nil {
		client = &http.Client{Timeout: aheadTimeout}
	}
	return &aheadFetcher{client: client, sem: make(chan struct{}, aheadFetches), cache: newVariantCache(aheadCacheBytes)}
}

// aheadManifest finds a manifest the loaded generation does not know: the tree's blobs/ file,
// else the origin's. nil when neither has a manifest with digest d.
func (s *Server) aheadManifest(ctx context.Context, g *generation, d layout.Digest) *manifestEntry {
	if e := s.ahead.cache.get(d); e != nil {
		return e
	}
	if e := s.localManifest(d); e != nil {
		s.ahead.cache.add(d, e)
		return e
	}
	if g.origin == "" {
		return nil
	}
	v, _, _ := s.ahead.group.Do(d.String(), func() (any, error) {
		if e := s.ahead.cache.get(d); e != nil {
			return e, nil
		}
		e, err := s.fetchManifest(ctx, g.origin+layout.BlobPath(d), d)
		if err != nil {
			s.log.Warn("manifest of a newer generation not found at the origin", "digest", d.String(), "err", err)
			return (*manifestEntry)(nil), nil
		}
		s.ahead.cache.add(d, e)
		return e, nil
	})
	e, _ := v.(*manifestEntry)
	return e
}

// localManifest reads d from the tree's blobs/: a regular file of at most
// layout.MaxManifestSize bytes that hashes to d and is a manifest.
func (s *Server) localManifest(d layout.Digest) *manifestEntry {
	path := layout.BlobPath(d)
	fi, err := s.root.Lstat(path)
	if err != nil || !fi.Mode().IsRegular() || fi.Size() > layout.MaxManifestSize {
		return nil
	}
	f, err := s.root.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, layout.MaxManifestSize+1))
	if err != nil || len(data) > layout.MaxManifestSize {
		return nil
	}
	e, err := manifestDocument(d, data)
	if err != nil {
		return nil
	}
	return e
}

// fetchManifest GETs url, bounded in time and size, and checks the bytes against d.
func (s *Server) fetchManifest(ctx context.Context, url string, d layout.Digest) (*manifestEntry, error) {
	select {
	case s.ahead.sem <- struct{}{}:
		defer func() { <-s.ahead.sem }()
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	// Detached from the client's request: other requests may wait for this fetch.
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), aheadTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(fctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("User-Agent", "regmirror-serve")
	resp, err := s.ahead.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	if resp.ContentLength > layout.MaxManifestSize {
		return nil, fmt.Errorf("GET %s: %d bytes, over the %d-byte manifest limit", url, resp.ContentLength, layout.MaxManifestSize)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, layout.MaxManifestSize+1))
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", url, err)
	}
	if len(data) > layout.MaxManifestSize {
		return nil, fmt.Errorf("GET %s: over the %d-byte manifest limit", url, layout.MaxManifestSize)
	}
	return manifestDocument(d, data)
}

// manifestDocument checks that data hashes to d and is an image manifest or index
// (schemaVersion 2), and takes its media type from the document.
func manifestDocument(d layout.Digest, data []byte) (*manifestEntry, error) {
	if err := verifyDigest(d, data); err != nil {
		return nil, err
	}
	var doc struct {
		SchemaVersion int             `json:"schemaVersion"`
		MediaType     string          `json:"mediaType"`
		Config        json.RawMessage `json:"config"`
		Layers        json.RawMessage `json:"layers"`
		Manifests     json.RawMessage `json:"manifests"`
	}
	if err := json.Unmarshal(data, &doc); err != nil || doc.SchemaVersion != 2 {
		return nil, errNotManifest
	}
	mt := doc.MediaType
	switch {
	case mt == layout.MediaTypeOCIIndex || mt == layout.MediaTypeDockerList:
		if doc.Manifests == nil {
			return nil, errNotManifest
		}
	case mt == layout.MediaTypeOCIManifest || mt == layout.MediaTypeDockerManifest:
		if doc.Config == nil || doc.Layers == nil {
			return nil, errNotManifest
		}
	case mt != "":
		return nil, errNotManifest
	case doc.Manifests != nil:
		mt = layout.MediaTypeOCIIndex
	case doc.Config != nil && doc.Layers != nil:
		mt = layout.MediaTypeOCIManifest
	default:
		return nil, errNotManifest
	}
	return newManifestEntry(d, mt, data)
}

var errNotManifest = errors.New("not an image manifest or index")

// aheadFile is the tree's file of blob d when it is a regular file, else nil: where
// serveAheadBlob takes d from first (then the origin, then nowhere).
func (s *Server) aheadFile(d layout.Digest) fs.FileInfo {
	fi, err := s.root.Lstat(layout.BlobPath(d))
	if err == nil && fi.Mode().IsRegular() {
		return fi
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		s.log.Warn("cannot look for a blob in the tree", "digest", d.String(), "err", err)
	}
	return nil
}

// serveAheadBlob answers a blob the loaded generation does not know: the tree's file if it
// has one (aheadFile), else a 307 to the origin (whose answer is authoritative, for HEAD as for
// GET), else BLOB_UNKNOWN.
func (s *Server) serveAheadBlob(st *reqState, r *http.Request, g *generation, d layout.Digest) {
	if fi := s.aheadFile(d); fi != nil {
		b := newBlobEntry(d, fi.Size(), 0)
		if r.Method == http.MethodHead {
			s.headBlob(st, b)
			return
		}
		s.serveLocalBlob(st, r, b)
		return
	}
	if g.origin != "" {
		s.resolveClient(st, r, g)
		st.mirror = "origin"
		redirect(st, r, g.origin, layout.BlobPath(d), newBlobEntry(d, -1, 0))
		return
	}
	writeError(st, r, errBlobUnknown, "blob "+d.String()+" is not in this generation")
}
