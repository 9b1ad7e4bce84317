//go:build !linux

package layout

// BlobsCleanAttr is the extended attribute by which generate notes blobs/ clean on Linux
// (blobsclean_linux.go); elsewhere there is no note, and generate lists blobs/ every run.
const BlobsCleanAttr = "user.regmirror.blobs-clean"

// MarkBlobsClean does nothing where the note is not kept.
func (t *Tree) MarkBlobsClean(uint64) error { return nil }

// BlobsClean is false where the note is not kept.
func (t *Tree) BlobsClean(uint64) bool { return false }

// ClearBlobsClean does nothing where the note is not kept.
func (t *Tree) ClearBlobsClean() {}
