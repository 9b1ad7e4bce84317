package peers

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/regmirror/regmirror/layout"
)

// SyncMirror copies the tree to a mirror directory the way the documentation tells mirror
// admins to, so that a client or crawler looking at the mirror at any moment sees one whole
// generation (the old or the new), never a stamp or index.json that names a missing file:
//
//	# 1. new blobs and metadata files; the switch files stay old; nothing deleted
//	rsync -a --exclude='.tmp-*' --exclude=/index.json --exclude=/regmirror/current \
//	    SOURCE/ /srv/mirror/containers/
//	# 2. index.json and regmirror/current (renamed into place together at the end),
//	#    then deletions, last
//	rsync -a --modify-window=-1 --delay-updates --delete-after --exclude='.tmp-*' \
//	    SOURCE/ /srv/mirror/containers/
//
// SOURCE is the tree (or an rsync:// module serving it). Content addressing makes every blob
// and metadata file immutable, so phase 1 only adds files. Phase 1 takes everything but the
// two switch files, not just blobs/: with --delay-updates rsync renames the delayed files in
// file-list order, and "regmirror/current" sorts before "regmirror/meta/…", so a phase 2 that
// brought a new metadata file and the stamp together would, for a moment, publish a stamp
// naming a metadata file not yet in place. --modify-window=-1 (rsync >= 3.1.3) compares
// modification times to the nanosecond: by default rsync's quick check compares whole
// seconds and sizes, and a stamp rewritten within the same second as the copy the mirror
// holds (a crawl right after a generate, two quick generations) usually has the same size,
// so the mirror would keep the old stamp. Files starting with .tmp- are the generator's
// unfinished writes and are never copied (nor deleted on the mirror, being excluded).
func SyncMirror(t testing.TB, tree, dst string) {
	t.Helper()
	rsync := Require(t, "rsync")
	if err := os.MkdirAll(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	src := strings.TrimRight(tree, "/") + "/"
	dst = strings.TrimRight(dst, "/") + "/"
	for _, args := range SyncMirrorPhases(src, dst) {
		Run(t, 10*time.Minute, rsync, args...)
	}
}

// SyncMirrorPhases returns the arguments of the two rsync runs of SyncMirror, for src and dst
// ending in "/".
func SyncMirrorPhases(src, dst string) [][]string {
	return [][]string{
		{"-a", "--exclude=" + layout.TempPrefix + "*", "--exclude=/" + layout.IndexFile, "--exclude=/" + layout.CurrentFile, src, dst},
		{"-a", "--modify-window=-1", "--delay-updates", "--delete-after", "--exclude=" + layout.TempPrefix + "*", src, dst},
	}
}
