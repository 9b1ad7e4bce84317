package layout

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/regmirror/regmirror/internal/trunc"
)

// What a mirror must answer for a blob it holds: the rule the crawl and the redirector's
// health probes share.

// BlobCheck checks that a mirror serves blobs as clients need them: HEAD (or, where HEAD is
// refused with 405 or 501, GET with Range: bytes=0-0, remembered for the mirror's next
// checks), answered 200 or 206 with the blob's exact size and no Content-Encoding. The crawl
// and the redirector's health probes check with it. It is for one mirror, one check at a
// time.
type BlobCheck struct {
	Client    *http.Client
	UserAgent string
	// NoHEAD is set once the mirror refused a HEAD: later checks use a ranged GET.
	NoHEAD bool
}

// Check checks blob d of size bytes on the mirror whose tree is at mirrorURL (ending in "/").
// The error says what failed, as a crawl's status does: "down: …", "timeout: …", "missing
// <digest>: HTTP 404", "HTTP 503 for <digest>", "wrong size for …", "compressed: …".
func (c *BlobCheck) Check(ctx context.Context, mirrorURL string, d Digest, size int64) error {
	b := checkedBlob{digest: d, size: size}
	u := mirrorURL + BlobPath(d)
	if !c.NoHEAD {
		resp, err := c.do(ctx, http.MethodHead, u, false)
		if err != nil {
			return RequestFailure(err, "checking "+d.String())
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed && resp.StatusCode != http.StatusNotImplemented {
			return checkResponse(resp, b, false)
		}
		c.NoHEAD = true
	}
	resp, err := c.do(ctx, http.MethodGet, u, true)
	if err != nil {
		return RequestFailure(err, "checking "+d.String())
	}
	defer resp.Body.Close() // unread: the connection is dropped rather than the blob read
	return checkResponse(resp, b, true)
}

func (c *BlobCheck) do(ctx context.Context, method, u string, ranged bool) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("User-Agent", c.UserAgent)
	// Set explicitly, so the transport neither adds nor undoes it: a mirror that compresses
	// blobs shows it.
	req.Header.Set("Accept-Encoding", "gzip")
	if ranged {
		req.Header.Set("Range", "bytes=0-0")
	}
	return c.Client.Do(req)
}

type checkedBlob struct {
	digest Digest
	size   int64
}

func checkResponse(resp *http.Response, b checkedBlob, ranged bool) error {
	d := b.digest.String()
	if ce := resp.Header.Get("Content-Encoding"); ce != "" && !strings.EqualFold(ce, "identity") {
		return fmt.Errorf("compressed: Content-Encoding %s for %s (turn compression off for blobs/)", trunc.String(ce), d)
	}
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return fmt.Errorf("missing %s: HTTP 404", d)
	case ranged && resp.StatusCode == http.StatusPartialContent:
		size, ok := rangeTotal(resp.Header.Get("Content-Range"))
		if !ok {
			return fmt.Errorf("wrong size for %s: Content-Range %q", d, trunc.String(resp.Header.Get("Content-Range")))
		}
		if size != b.size {
			return fmt.Errorf("wrong size for %s: %d bytes, want %d", d, size, b.size)
		}
		return nil
	case resp.StatusCode != http.StatusOK:
		return fmt.Errorf("HTTP %d for %s", resp.StatusCode, d)
	case resp.ContentLength < 0:
		return fmt.Errorf("wrong size for %s: no Content-Length, want %d", d, b.size)
	case resp.ContentLength != b.size:
		return fmt.Errorf("wrong size for %s: Content-Length %d, want %d", d, resp.ContentLength, b.size)
	}
	return nil
}

// rangeTotal parses the complete length of "bytes 0-0/1234".
func rangeTotal(cr string) (int64, bool) {
	_, total, ok := strings.Cut(cr, "/")
	if !ok || !strings.HasPrefix(cr, "bytes ") {
		return 0, false
	}
	n, err := strconv.ParseInt(total, 10, 64)
	return n, err == nil && n >= 0
}

// RequestFailure turns the error of a request to a mirror into a status: "timeout: <what>" or
// "down: <error>".
func RequestFailure(err error, what string) error {
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout() {
		return fmt.Errorf("timeout: %s", what)
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return fmt.Errorf("down: %v", err)
}
