package layout

import (
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
)

// The bytes of blobs/: a file there hashes to its name. This file owns that rule: every blob
// file is written through a BlobWriter (streamed hashing, size and digest checked before the
// fsync and rename) and every digest is checked with DigestOf, VerifyBytes or VerifyReader,
// like go-containerregistry's layout.Path.WriteBlob and distribution's validateBlob.

var (
	// ErrDigestMismatch: content does not hash to the digest it should have.
	ErrDigestMismatch = errors.New("content does not match its digest")
	// ErrSizeMismatch: content is not the size it should have.
	ErrSizeMismatch = errors.New("size does not match")
)

// newHash returns the hash of a Digest's algorithm (ParseDigest accepts sha256 and sha512).
func newHash(algo string) hash.Hash {
	if algo == "sha512" {
		return sha512.New()
	}
	return sha256.New()
}

func digestOfHash(algo string, h hash.Hash) Digest {
	return Digest{algo + ":" + hex.EncodeToString(h.Sum(nil))}
}

// DigestOf returns the digest of data under algo ("sha256" or "sha512"; anything else is
// sha256).
func DigestOf(algo string, data []byte) Digest {
	if algo != "sha512" {
		algo = "sha256"
	}
	h := newHash(algo)
	h.Write(data)
	return digestOfHash(algo, h)
}

// VerifyBytes checks that data hashes to d. The error ("its bytes hash to ...") wraps
// ErrDigestMismatch.
func VerifyBytes(d Digest, data []byte) error {
	if got := DigestOf(d.Algorithm(), data); got != d {
		return &mismatchError{"its bytes hash to " + got.String(), ErrDigestMismatch}
	}
	return nil
}

// VerifyReader reads r to its end and checks that it holds size bytes (size < 0: any) that
// hash to d. Read errors are returned as they are; a wrong size ("N bytes, want M") wraps
// ErrSizeMismatch, a wrong digest ("content hashes to ...") ErrDigestMismatch.
func VerifyReader(r io.Reader, d Digest, size int64) error {
	h := newHash(d.Algorithm())
	n, err := io.Copy(h, r)
	if err != nil {
		return err
	}
	return check(d, size, n, h)
}

func check(d Digest, size, n int64, h hash.Hash) error {
	if size >= 0 && n != size {
		return &mismatchError{fmt.Sprintf("%d bytes, want %d", n, size), ErrSizeMismatch}
	}
	if got := digestOfHash(d.Algorithm(), h); got != d {
		return &mismatchError{"content hashes to " + got.String(), ErrDigestMismatch}
	}
	return nil
}

// mismatchError says what the content is; errors.Is finds its kind (ErrSizeMismatch,
// ErrDigestMismatch).
type mismatchError struct {
	msg  string
	kind error
}

func (e *mismatchError) Error() string { return e.msg }
func (e *mismatchError) Unwrap() error { return e.kind }

// VerifyBlob checks the tree's file of blob d: size bytes (size < 0: any) that hash to d.
func (t *Tree) VerifyBlob(d Digest, size int64) error {
	f, err := os.Open(t.Path(BlobPath(d)))
	if err != nil {
		return err
	}
	defer f.Close()
	return VerifyReader(f, d, size)
}

// AtomicFile is a file written under a temporary name and renamed into place (a *File).
type AtomicFile interface {
	io.Writer
	CommitNoDirSync() error
	Abort()
}

// BlobWriter writes one file of blobs/, hashing while it writes: Commit renames it into place
// only when it holds the expected size and hashes to its digest.
type BlobWriter struct {
	f    AtomicFile
	d    Digest
	size int64
	h    hash.Hash
	n    int64
}

// NewBlobWriter writes blob d, of size bytes (size < 0: any), into f, a temporary file
// opened for the blob's path (BlobPath).
func NewBlobWriter(f AtomicFile, d Digest, size int64) *BlobWriter {
	return &BlobWriter{f: f, d: d, size: size, h: newHash(d.Algorithm())}
}

// CreateBlob starts writing blob d of size bytes (size < 0: any) in the tree.
func (t *Tree) CreateBlob(d Digest, size int64) (*BlobWriter, error) {
	f, err := CreateFile(t.Path(BlobPath(d)))
	if err != nil {
		return nil, err
	}
	return NewBlobWriter(f, d, size), nil
}

// Write writes to the temporary file and hashes what was written. Its errors are the file's.
func (w *BlobWriter) Write(p []byte) (int, error) {
	n, err := w.f.Write(p)
	w.h.Write(p[:n])
	w.n += int64(n)
	return n, err
}

// Written is the number of bytes written so far.
func (w *BlobWriter) Written() int64 { return w.n }

// Commit checks the size and digest (errors wrap ErrSizeMismatch or ErrDigestMismatch, and
// the file is discarded), then fsyncs the file and renames it into place. The blob directory
// is not fsynced: a caller writing many blobs calls SyncDir(BlobDir) once before anything
// depends on them.
func (w *BlobWriter) Commit() error {
	if err := check(w.d, w.size, w.n, w.h); err != nil {
		w.f.Abort()
		return err
	}
	return w.f.CommitNoDirSync()
}

// Abort discards the temporary file; a no-op after Commit, so it can be deferred.
func (w *BlobWriter) Abort() { w.f.Abort() }

// WriteBlob writes data as blob d through f (see NewBlobWriter): data is checked against d
// before it lands.
func WriteBlob(f AtomicFile, d Digest, data []byte) error {
	w := NewBlobWriter(f, d, int64(len(data)))
	defer w.Abort()
	if _, err := w.Write(data); err != nil {
		return err
	}
	return w.Commit()
}
