package generator

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"

	"github.com/regmirror/regmirror/layout"
)

// resolve HEADs a tag, waiting for a request slot at rank (slots). When the source sends no
// Docker-Content-Digest it GETs the manifest instead and returns its bytes.
func (r *run) resolve(ctx context.Context, repo, tag string, rank int) (layout.Digest, *prefetched, error) {
	if err := r.reqs.take(ctx, rank); err != nil {
		return layout.Digest{}, nil, err
	}
	defer r.reqs.give()
	path := "/v2/" + repo + "/manifests/" + tag
	var (
		d   layout.Digest
		pre *prefetched
	)
	err := r.c.retry(ctx, "HEAD "+path, func() error {
		resp, err := r.c.getOK(ctx, http.MethodHead, path, manifestAccept)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.ContentLength > MaxManifestSize {
			return fmt.Errorf("manifest is %d bytes, over the %d-byte limit", resp.ContentLength, MaxManifestSize)
		}
		if h := resp.Header.Get("Docker-Content-Digest"); h != "" {
			d, err = layout.ParseDigest(h)
			if err != nil {
				return fmt.Errorf("HEAD %s: Docker-Content-Digest: %w", path, err)
			}
			return nil
		}
		// No digest header: fetch by tag and hash.
		data, mt, err := r.fetchManifest(ctx, path, layout.Digest{})
		if err != nil {
			return err
		}
		d = layout.DigestOf("sha256", data)
		pre = &prefetched{data: data, mediaType: mt}
		return nil
	})
	return d, pre, err
}

type prefetched struct {
	data      []byte
	mediaType string
}

var errSchema1 = errors.New("docker schema 1 manifest")

// node is a manifest, fetched once per run whatever repositories reference it.
type node struct {
	digest    layout.Digest
	mediaType string
	data      []byte
	p         *parsed
	children  []*node
	fetched   bool // from the source this run, not from the previous generation
	err       error
}

// node returns the manifest d, loading it (from the previous generation, or the source via
// repo) when no other tag has.
func (r *run) node(ctx context.Context, repo string, d layout.Digest, pre *prefetched, depth int) *node {
	n, err := r.nodes.do(ctx, d, func() (*node, error) {
		n := &node{digest: d}
		n.err = r.loadNode(ctx, repo, n, pre, depth)
		return n, nil
	})
	if err != nil {
		return &node{digest: d, err: err}
	}
	return n
}

func (r *run) loadNode(ctx context.Context, repo string, n *node, pre *prefetched, depth int) error {
	if depth > MaxDepth {
		return fmt.Errorf("manifests nested deeper than %d", MaxDepth)
	}
	var headerType string
	if pm, ok := r.prev.Manifests[n.digest]; ok && layout.VerifyBytes(n.digest, pm.Data) == nil {
		n.data, headerType = pm.Data, pm.MediaType
	} else if pre != nil {
		n.data, headerType, n.fetched = pre.data, pre.mediaType, true
	} else {
		if err := r.reqs.take(ctx, finishing); err != nil {
			return err
		}
		path := "/v2/" + repo + "/manifests/" + n.digest.String()
		err := r.c.retry(ctx, "GET "+path, func() error {
			var err error
			n.data, headerType, err = r.fetchManifest(ctx, path, n.digest)
			return err
		})
		r.reqs.give()
		if err != nil {
			return err
		}
		n.fetched = true
	}
	p, err := parseManifest(n.data, headerType)
	if err != nil {
		return fmt.Errorf("manifest %s: %w", n.digest, err)
	}
	if p.schema1 {
		return errSchema1
	}
	n.p, n.mediaType = p, p.mediaType
	if len(p.children) == 0 {
		return nil
	}
	n.children = make([]*node, len(p.children))
	var wg sync.WaitGroup
	for i, c := range p.children {
		wg.Go(func() { n.children[i] = r.node(ctx, repo, c.digest, nil, depth+1) })
	}
	wg.Wait()
	for i, c := range n.children {
		if c.err != nil {
			if errors.Is(c.err, errSchema1) {
				return inIndex(n.digest, fmt.Errorf("child %s is a schema 1 manifest", c.digest))
			}
			return inIndex(n.digest, c.err)
		}
		if int64(len(c.data)) != p.children[i].size {
			return inIndex(n.digest, fmt.Errorf("child %s is %d bytes, the index says %d", c.digest, len(c.data), p.children[i].size))
		}
	}
	return nil
}

// chainError is a failure inside nested indexes. Its message puts the cause first and the
// chain of indexes after it, outermost first, so that a message cut in the middle keeps both
// the cause and where it happened.
type chainError struct {
	chain []layout.Digest
	err   error
}

func (e *chainError) Error() string {
	var b strings.Builder
	b.WriteString(e.err.Error())
	b.WriteString(" (in index ")
	for i, d := range e.chain {
		if i > 0 {
			b.WriteString(" → ")
		}
		b.WriteString(d.String())
	}
	b.WriteString(")")
	return b.String()
}

func (e *chainError) Unwrap() error { return e.err }

// inIndex places err, a failure of a child of index d, in d. The child's error is shared by
// every index listing it, so the chain is copied, never extended in place.
func inIndex(d layout.Digest, err error) error {
	if ce, ok := err.(*chainError); ok {
		return &chainError{chain: append([]layout.Digest{d}, ce.chain...), err: ce.err}
	}
	return &chainError{chain: []layout.Digest{d}, err: err}
}

// fetchManifest GETs a manifest (one attempt), bounded to MaxManifestSize and, when want is
// set, checked against it.
func (r *run) fetchManifest(ctx context.Context, path string, want layout.Digest) ([]byte, string, error) {
	resp, err := r.c.getOK(ctx, http.MethodGet, path, manifestAccept)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	if resp.ContentLength > MaxManifestSize {
		return nil, "", fmt.Errorf("manifest is %d bytes, over the %d-byte limit", resp.ContentLength, MaxManifestSize)
	}
	data, err := readLimited(resp.Body, MaxManifestSize)
	if err != nil {
		return nil, "", fmt.Errorf("GET %s: %w", path, err)
	}
	if resp.ContentLength >= 0 && int64(len(data)) != resp.ContentLength {
		return nil, "", fmt.Errorf("GET %s: %w: got %d of %d bytes", path, errTruncated, len(data), resp.ContentLength)
	}
	if !want.IsZero() {
		if err := layout.VerifyBytes(want, data); err != nil {
			return nil, "", fmt.Errorf("GET %s: %w: %v", path, errDigestMismatch, err)
		}
	}
	return data, resp.Header.Get("Content-Type"), nil
}

// retryableError is an error worth another attempt; errors.Is(err, errRetryable) finds it.
type retryableError struct{ msg string }

func (e *retryableError) Error() string { return e.msg }

func (e *retryableError) Is(target error) bool { return target == errRetryable }

var (
	errRetryable      = errors.New("retryable")
	errTruncated      = &retryableError{"truncated body"}
	errDigestMismatch = &retryableError{"content does not match its digest"}
	errSizeMismatch   = &retryableError{"size does not match the manifest"}
)
