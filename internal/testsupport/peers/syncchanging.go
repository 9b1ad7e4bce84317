package peers

import (
	"strings"
	"testing"
)

// SyncMirrorChanging is SyncMirror for a tree that changes while the sync runs (a crawl
// publishing and pruning metadata files, a generate deleting collected blobs): mirror-sync
// takes rsync's exit code 24, files vanished before they could be transferred, as success
// (what vanished is no longer part of the tree). It returns rsync's warnings about vanished
// files.
func SyncMirrorChanging(t testing.TB, tree, dst string) []string {
	t.Helper()
	var vanished []string
	for _, line := range strings.Split(SyncMirrorPhase(t, tree, dst, 0), "\n") {
		if strings.HasPrefix(line, "file has vanished: ") {
			vanished = append(vanished, line)
		}
	}
	return vanished
}
