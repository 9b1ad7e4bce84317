package redirector

import (
	"strconv"
	"time"

	"github.com/regmirror/regmirror/layout"
)

// Header values shared by many answers. Each slice has len == cap, so that a handler that
// appends to a header (Header.Add) copies instead of writing into the shared array.
var (
	hdrAPIVersion  = []string{"registry/2.0"}
	hdrNoSniff     = []string{"nosniff"}
	hdrJSON        = []string{"application/json"}
	hdrOctetStream = []string{"application/octet-stream"}
	hdrNoStore     = []string{"no-store"}
	hdrRegional    = []string{"private, no-store"}
	hdrImmutable   = []string{"public, max-age=31536000, immutable"}
	hdrAllow       = []string{"GET, HEAD"}
	hdrVaryAccept  = []string{"Accept"}
	hdrIndexType   = []string{layout.MediaTypeOCIIndex}
	hdrFilters     = []string{"artifactType"}
)

// autoLength is the largest body of a GET for which the handlers leave Content-Length to
// net/http, which writes it for an answer whose body fits in its buffer when the handler
// returns (2 KiB; TestAutoLength checks it, HTTP/1 and HTTP/2). Every header in the map
// costs about 1.5k instructions of net/http's (the map, WriteHeader's copy of it, the sort
// and the sanitizing when it is written: as much as the rest of a 307's handler), where
// net/http's own Content-Length costs next to nothing. HEAD answers and larger bodies carry
// their Content-Length in the map.
const autoLength = 2048

// Cache-Control policy, for a shared cache (CDN) in front of the redirector:
//
//   - Anything addressed by digest (a manifest by digest, a blob HEAD, a blob served from the
//     local tree, a manifest fetched through the blobs endpoint) never changes:
//     "public, max-age=31536000, immutable".
//   - Answers about names that move (a manifest by tag, tags/list, _catalog, referrers, /v2/):
//     "public, max-age=N" with N from --tag-max-age (default 60 s). A manifest by tag also
//     carries "Vary: Accept", since a client that accepts no manifest list gets the
//     linux/amd64 image instead.
//   - Anything that depends on the client's region: a blob 307 (the chosen mirror) and, with
//     --regional-manifests, a manifest by tag (the region's variant): "private, no-store".
//     A Vary header cannot express "varies by the client's address", so no shared cache may
//     keep these at all; "private" alone would still let a browser-like private cache keep a
//     307 to a mirror that later goes down, hence no-store too.
//   - Errors: "no-store", so a transient 404 during a generation switch is not remembered.
func tagCacheControl(maxAge time.Duration) []string {
	secs := int64(maxAge / time.Second)
	if secs <= 0 {
		return []string{"no-cache"}
	}
	return []string{"public, max-age=" + strconv.FormatInt(secs, 10)}
}
