package generator

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/regmirror/regmirror/layout"
)

// writeError is a failure writing the tree (full disk, I/O error): it stops the run.
type writeError struct{ err error }

func (e *writeError) Error() string { return e.err.Error() }
func (e *writeError) Unwrap() error { return e.err }

type blobState int

const (
	blobPending    blobState = iota
	blobPresent              // already in the tree
	blobFetched              // fetched this run
	blobForeign              // foreign layer the source does not hold: not in the tree
	blobWouldFetch           // dry run: would be fetched
)

// blobTask is one blob, ensured once per run whatever references it.
type blobTask struct {
	done  chan struct{}
	ref   blobRef
	state blobState
	size  int64
	err   error
}

func (t *blobTask) wait(ctx context.Context) error {
	select {
	case <-t.done:
		return t.err
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// blob ensures the blob is in the tree, fetching it through repo when it is not. reused says
// the referencing manifest comes from the previous generation.
func (r *run) blob(ctx context.Context, repo string, ref blobRef, reused bool) *blobTask {
	r.mu.Lock()
	t, ok := r.blobs[ref.digest]
	if !ok {
		t = &blobTask{done: make(chan struct{}), ref: ref}
		r.blobs[ref.digest] = t
	}
	r.mu.Unlock()
	prev := r.prev // the goroutine's own: release replaces r.prev before the write
	if !ok && r.recordedIn(prev, ref.digest, ref.size) {
		// In place (present): nothing to look up, nothing to wait for.
		t.state, t.size = blobPresent, ref.size
		close(t.done)
		return t
	}
	if !ok {
		r.bg.Add(1)
		go func() {
			defer r.bg.Done()
			defer close(t.done)
			t.state, t.size, t.err = r.ensureBlob(ctx, prev, repo, ref, reused)
		}()
	}
	return t
}

func (r *run) blobPath(d layout.Digest) string { return r.tree.Path(layout.BlobPath(d)) }

// smallBlobSize is the size up to which a blob transfer counts as a small request.
const smallBlobSize = 256 << 10

func (r *run) ensureBlob(ctx context.Context, prev *layout.Meta, repo string, ref blobRef, reused bool) (blobState, int64, error) {
	if r.tree != nil {
		if r.presentIn(prev, ref.digest, ref.size) {
			if !r.o.Verify {
				return blobPresent, ref.size, nil
			}
			if err := r.xfers.take(ctx, finishing); err != nil {
				return 0, 0, err
			}
			err := r.tree.VerifyBlob(ref.digest, -1)
			r.xfers.give()
			if err == nil {
				return blobPresent, ref.size, nil
			}
			r.prog.warnf("blob %s in the tree is corrupt, fetching it again: %v", ref.digest, err)
		}
	}
	if ref.foreign && reused {
		if _, ok := prev.Blobs[ref.digest]; !ok {
			return blobForeign, ref.size, nil
		}
	}
	if r.o.DryRun {
		return blobWouldFetch, ref.size, nil
	}
	r.prog.blobsTotal.Add(1)
	// A small blob (a config, a thin layer) costs a request more than bytes: it runs with
	// the small requests, 4x --jobs at a time, not with the --jobs transfers.
	sem := r.xfers
	if ref.size <= smallBlobSize {
		sem = r.reqs
	}
	if err := sem.take(ctx, finishing); err != nil {
		return 0, 0, err
	}
	defer sem.give()
	path := "/v2/" + repo + "/blobs/" + ref.digest.String()
	var foreign bool
	err := r.c.retry(ctx, "GET "+path, func() error {
		err := r.download(ctx, path, ref)
		if ref.foreign && statusOf(err) == http.StatusNotFound {
			foreign = true
			return nil
		}
		return err
	})
	if foreign {
		r.prog.blobsTotal.Add(-1)
		return blobForeign, ref.size, nil
	}
	if err != nil {
		var we *writeError
		if errors.As(err, &we) {
			r.fatal(fmt.Errorf("writing blob %s: %w", ref.digest, we.err))
		}
		return 0, 0, err
	}
	r.prog.blobsDone.Add(1)
	return blobFetched, ref.size, nil
}

// bufPool holds the downloads' copy buffers: 128 KiB keeps the writes large, and the pool
// stays a few MiB (at 1 MiB it held ~31 MiB at peak, most of a 9k-manifest run's heap).
var bufPool = sync.Pool{New: func() any { b := make([]byte, 128<<10); return &b }}

// download streams one blob into the tree, hashing while writing; the file is renamed into
// place only when size and digest match.
func (r *run) download(ctx context.Context, path string, ref blobRef) error {
	resp, err := r.c.getOK(ctx, http.MethodGet, path, "")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.ContentLength >= 0 && resp.ContentLength != ref.size {
		return fmt.Errorf("GET %s: %w: the source sends %d bytes, the manifest says %d", path, errSizeMismatch, resp.ContentLength, ref.size)
	}
	f, err := r.o.CreateFile(r.blobPath(ref.digest))
	if err != nil {
		return &writeError{err}
	}
	w := layout.NewBlobWriter(f, ref.digest, ref.size)
	defer w.Abort()
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	counted := &countingWriter{w: w, p: r.prog}
	n, err := io.CopyBuffer(counted, io.LimitReader(resp.Body, ref.size+1), *bp)
	if err != nil {
		r.prog.bytes.Add(-n)
		var we *writeError
		if errors.As(err, &we) {
			return err
		}
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return fmt.Errorf("GET %s: %w: the connection closed after %d of %d bytes", path, errTruncated, n, ref.size)
		}
		return fmt.Errorf("GET %s: %w", path, err)
	}
	if err := w.Commit(); err != nil {
		r.prog.bytes.Add(-n)
		switch {
		case errors.Is(err, layout.ErrSizeMismatch) && n < ref.size:
			return fmt.Errorf("GET %s: %w: got %d of %d bytes", path, errTruncated, n, ref.size)
		case errors.Is(err, layout.ErrSizeMismatch):
			return fmt.Errorf("GET %s: the source sends more than the %d bytes the manifest says", path, ref.size)
		case errors.Is(err, layout.ErrDigestMismatch):
			return fmt.Errorf("GET %s: %w: %v", path, errDigestMismatch, err)
		}
		return &writeError{err}
	}
	r.wrote(ref.digest)
	return nil
}

// countingWriter counts the bytes written in the progress; a failed write is a writeError.
type countingWriter struct {
	w io.Writer
	p *progress
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.p.bytes.Add(int64(n))
	if err != nil {
		return n, &writeError{err}
	}
	return n, nil
}

// diffID decompresses a layer file (gzip, zstd or plain tar, by its magic bytes) and returns
// the sha256 of the stream. It stops within a read of the run being cancelled.
func (r *run) diffID(ctx context.Context, d layout.Digest) (string, error) {
	return r.diffIDs.do(ctx, d, func() (string, error) { return diffIDOfFile(ctx, r.blobPath(d)) })
}

// maxZstdWindow bounds the memory a zstd layer may ask of --verify-layers (zstd --long=27, the
// largest window common tools use).
const maxZstdWindow = 1 << 27

func diffIDOfFile(ctx context.Context, path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 1<<20)
	magic, _ := br.Peek(4)
	var rd io.Reader = br
	switch {
	case len(magic) >= 2 && magic[0] == 0x1f && magic[1] == 0x8b:
		zr, err := gzip.NewReader(br)
		if err != nil {
			return "", fmt.Errorf("decompressing gzip: %w", err)
		}
		defer zr.Close()
		rd = zr
	case len(magic) == 4 && magic[0] == 0x28 && magic[1] == 0xb5 && magic[2] == 0x2f && magic[3] == 0xfd:
		zr, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true), zstd.WithDecoderMaxWindow(maxZstdWindow))
		if err != nil {
			return "", fmt.Errorf("decompressing zstd: %w", err)
		}
		defer zr.Close()
		rd = zr
	}
	h := sha256.New()
	if _, err := io.CopyBuffer(h, ctxReader{ctx, rd}, make([]byte, 256<<10)); err != nil {
		return "", fmt.Errorf("decompressing: %w", err)
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), nil
}

// ctxReader fails reads once ctx is done: a decompression (a few milliseconds per read)
// stops when the run is interrupted, however large the stream.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, context.Cause(c.ctx)
	}
	return c.r.Read(p)
}

// verifyLayers checks the layers of n fetched this run against its config's diff_ids.
func (r *run) verifyLayers(ctx context.Context, n *node, cl *closure) error {
	if n.p.config == nil || !isImageConfig(n.p.config.mediaType) {
		return nil
	}
	var fresh bool
	for _, l := range n.p.layers {
		if cl.blobs[l.digest].state == blobFetched {
			fresh = true
		}
	}
	if !fresh {
		return nil
	}
	f, err := os.Open(r.blobPath(n.p.config.digest))
	if err != nil {
		return fmt.Errorf("verifying layers of %s: %w", n.digest, err)
	}
	var cfg struct {
		RootFS struct {
			DiffIDs []string `json:"diff_ids"`
		} `json:"rootfs"`
	}
	err = json.NewDecoder(io.LimitReader(f, 64<<20)).Decode(&cfg)
	f.Close()
	if err != nil {
		return fmt.Errorf("verifying layers of %s: config %s: %w", n.digest, n.p.config.digest, err)
	}
	if len(cfg.RootFS.DiffIDs) != len(n.p.layers) {
		return fmt.Errorf("image %s has %d layers but its config lists %d diff_ids", n.digest, len(n.p.layers), len(cfg.RootFS.DiffIDs))
	}
	for i, l := range n.p.layers {
		if cl.blobs[l.digest].state != blobFetched {
			continue
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		got, err := r.diffID(ctx, l.digest)
		if err != nil {
			return fmt.Errorf("layer %s of %s: %w", l.digest, n.digest, err)
		}
		if got != cfg.RootFS.DiffIDs[i] {
			return fmt.Errorf("layer %s of %s does not match the config's diff_ids[%d]: it decompresses to %s, the config says %s", l.digest, n.digest, i, got, oneLine(cfg.RootFS.DiffIDs[i]))
		}
	}
	return nil
}
