package redirector

import "strings"

// endpoint is what a request path addresses. Its name labels metrics and access log lines.
type endpoint uint8

const (
	epUnknown endpoint = iota
	epBase
	epCatalog
	epTags
	epManifest
	epBlob
	epReferrers
	epUpload
	epHealth
	epStatus     // GET /: the status page
	epStatusJSON // GET /status.json
	epRoute      // GET /route: why a client is sent where
	numEndpoints
)

var endpointNames = [numEndpoints]string{"other", "base", "catalog", "tags", "manifests", "blobs", "referrers", "uploads", "healthz", "status", "status.json", "route"}

func (e endpoint) String() string {
	if e < numEndpoints {
		return endpointNames[e]
	}
	return "other"
}

// route is a parsed request path. name and ref are raw slices of the path: nothing is looked
// up or used in a filesystem path before the handler validates them with the layout package's
// grammar checks.
type route struct {
	ep   endpoint
	name string // repository name, for tags, manifests, blobs, referrers and uploads
	ref  string // tag or digest (manifests), digest (blobs, referrers)
}

// parseRoute splits a /v2/ path by hand. A repository name may contain slashes, so the parts
// are found from the end: /v2/<name>/tags/list, /v2/<name>/<kind>/<reference>.
func parseRoute(path string) route {
	switch path {
	case "/v2/", "/v2":
		return route{ep: epBase}
	case "/v2/_catalog":
		return route{ep: epCatalog}
	case "/healthz":
		return route{ep: epHealth}
	case "/":
		return route{ep: epStatus}
	case "/status.json":
		return route{ep: epStatusJSON}
	case "/route":
		return route{ep: epRoute}
	}
	rest, ok := strings.CutPrefix(path, "/v2/")
	if !ok {
		return route{ep: epUnknown}
	}
	if name, ok := strings.CutSuffix(rest, "/tags/list"); ok {
		return route{ep: epTags, name: name}
	}
	i := lastSlash(rest)
	if i < 0 {
		return route{ep: epUnknown}
	}
	ref, before := rest[i+1:], rest[:i]
	j := strings.LastIndexByte(before, '/')
	if j < 0 {
		return route{ep: epUnknown}
	}
	kind, name := before[j+1:], before[:j]
	switch kind {
	case "manifests":
		return route{ep: epManifest, name: name, ref: ref}
	case "blobs":
		if ref == "uploads" {
			return route{ep: epUpload, name: name}
		}
		return route{ep: epBlob, name: name, ref: ref}
	case "referrers":
		return route{ep: epReferrers, name: name, ref: ref}
	case "uploads":
		if n, ok := strings.CutSuffix(name, "/blobs"); ok {
			return route{ep: epUpload, name: n}
		}
	}
	return route{ep: epUnknown}
}

// sha256RefLen is the length of the usual reference, "sha256:" and 64 hex digits.
const sha256RefLen = len("sha256:") + 64

// lastSlash is strings.LastIndexByte(s, '/'), which scans byte by byte from the end: it first
// tries where a sha256 reference would start, checked by the vectorized forward scan.
func lastSlash(s string) int {
	if n := len(s); n > sha256RefLen && s[n-sha256RefLen-1] == '/' && strings.IndexByte(s[n-sha256RefLen:], '/') < 0 {
		return n - sha256RefLen - 1
	}
	return strings.LastIndexByte(s, '/')
}
