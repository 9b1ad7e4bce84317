package redirector

import (
	"encoding/json"
	"net/http"
	"strconv"

	"github.com/regmirror/regmirror/internal/trunc"
)

// errorCode is a distribution error code with the HTTP status that carries it. Every error
// answer is built from one of these, so a code never travels with the wrong status.
type errorCode struct {
	Code    string
	Status  int
	Message string
}

// The error codes of the distribution spec that a read-only registry answers with, in one
// table: code, status, default message.
var (
	errBlobUnknown       = errorCode{"BLOB_UNKNOWN", http.StatusNotFound, "blob unknown to registry"}
	errDigestInvalid     = errorCode{"DIGEST_INVALID", http.StatusBadRequest, "provided digest did not match uploaded content"}
	errManifestUnknown   = errorCode{"MANIFEST_UNKNOWN", http.StatusNotFound, "manifest unknown"}
	errManifestInvalid   = errorCode{"MANIFEST_INVALID", http.StatusBadRequest, "manifest invalid"}
	errNameInvalid       = errorCode{"NAME_INVALID", http.StatusBadRequest, "invalid repository name"}
	errNameUnknown       = errorCode{"NAME_UNKNOWN", http.StatusNotFound, "repository name not known to registry"}
	errPaginationInvalid = errorCode{"PAGINATION_NUMBER_INVALID", http.StatusBadRequest, "invalid number of results requested"}
	errUnsupported       = errorCode{"UNSUPPORTED", http.StatusMethodNotAllowed, "the operation is unsupported: this registry is read-only"}
	errBodyRefused       = errorCode{"UNSUPPORTED", http.StatusBadRequest, "a request body is not allowed: this registry is read-only"}
	errNotFound          = errorCode{"NOT_FOUND", http.StatusNotFound, "no such endpoint"}
	errUnavailable       = errorCode{"UNAVAILABLE", http.StatusServiceUnavailable, "service unavailable"}
	errInternal          = errorCode{"UNKNOWN", http.StatusInternalServerError, "internal error"}
)

type errorBody struct {
	Errors []errorEntry `json:"errors"`
}

type errorEntry struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Detail  any    `json:"detail,omitempty"`
}

// errorJSON is the body of an error answer.
func errorJSON(code errorCode, detail string) []byte {
	e := errorEntry{Code: code.Code, Message: code.Message}
	if detail != "" {
		e.Detail = detail
	}
	b, err := json.Marshal(errorBody{Errors: []errorEntry{e}})
	if err != nil { // cannot happen: strings only
		return []byte(`{"errors":[{"code":"UNKNOWN","message":"internal error"}]}`)
	}
	return append(b, '\n')
}

// maxDetail bounds the detail of an error answer: whatever a request holds, the answer
// echoes at most this many bytes of it, cut in the middle.
const maxDetail = 256

// writeError answers with code and an optional detail (never echoing more than a short,
// already-validated or truncated piece of the request).
func writeError(w http.ResponseWriter, r *http.Request, code errorCode, detail string) {
	body := errorJSON(code, trunc.Middle(detail, maxDetail))
	h := w.Header()
	h["Content-Type"] = hdrJSON
	h["Content-Length"] = []string{strconv.Itoa(len(body))}
	h["Cache-Control"] = hdrNoStore
	if code.Status == http.StatusMethodNotAllowed {
		h["Allow"] = hdrAllow
	}
	w.WriteHeader(code.Status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
}
