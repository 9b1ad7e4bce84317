package layout

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// BlobsCleanAttr is the extended attribute of blobs/sha256 by which generate notes, at the end
// of a run, that the generation it published records every file of the directory (as a blob
// or an orphan) and that the directory holds no temporary file: "<generation> <mtime>", the
// directory's modification time (Unix nanoseconds) when the note was made. Any file created,
// renamed or removed there since (by a later run, a run that stopped half-way, a person, an
// older regmirror) changes that time and voids the note; so does a later generation. While
// the note holds, generate need not list the directory for temporary files and strays. rsync
// -a does not copy extended attributes: mirrors never see it.
const BlobsCleanAttr = "user.regmirror.blobs-clean"

// blobsCleanSettle is how long blobs/sha256 must have been left alone for MarkBlobsClean to
// note it: longer than the kernel's clock tick, by which file times move.
const blobsCleanSettle = 50 * time.Millisecond

// MarkBlobsClean notes (BlobsCleanAttr) that generation gen accounts for every file of
// blobs/sha256 as it stands now; it notes nothing when the directory changed within the last
// blobsCleanSettle or the file system keeps no extended attributes. The caller must have
// synced the directory.
func (t *Tree) MarkBlobsClean(gen uint64) error {
	dir := t.Path(BlobDir("sha256"))
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("noting blobs/ clean: %w", err)
	}
	if time.Since(fi.ModTime()) < blobsCleanSettle {
		// A change this recent may share its timestamp with the next (file times move by
		// clock ticks): no note, the next run lists the directory.
		return nil
	}
	v := strconv.FormatUint(gen, 10) + " " + strconv.FormatInt(fi.ModTime().UnixNano(), 10)
	if err := syscall.Setxattr(dir, BlobsCleanAttr, []byte(v), 0); errors.Is(err, syscall.ENOTSUP) {
		return nil // a file system without extended attributes: no note, generate lists blobs/
	} else if err != nil {
		return fmt.Errorf("noting blobs/ clean: setting %s on %s: %w", BlobsCleanAttr, dir, err)
	}
	return nil
}

// BlobsClean reports whether the note of MarkBlobsClean holds for generation gen: made for
// gen, and blobs/sha256 unchanged since. False when there is no note or it cannot be read.
func (t *Tree) BlobsClean(gen uint64) bool {
	dir := t.Path(BlobDir("sha256"))
	buf := make([]byte, 64)
	n, err := syscall.Getxattr(dir, BlobsCleanAttr, buf)
	if err != nil || n <= 0 || n > len(buf) {
		return false
	}
	g, mtime, ok := strings.Cut(string(buf[:n]), " ")
	if !ok || g != strconv.FormatUint(gen, 10) {
		return false
	}
	fi, err := os.Stat(dir)
	return err == nil && mtime == strconv.FormatInt(fi.ModTime().UnixNano(), 10)
}

// ClearBlobsClean removes the note of MarkBlobsClean, if any.
func (t *Tree) ClearBlobsClean() {
	_ = syscall.Removexattr(t.Path(BlobDir("sha256")), BlobsCleanAttr)
}
