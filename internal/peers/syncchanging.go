package peers

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// RsyncVanished is rsync's exit code when some source files vanished before they could be
// transferred: a warning, the rest was transferred (and deletions done).
const RsyncVanished = 24

// SyncMirrorChanging is SyncMirror for a tree that changes while rsync runs (a crawl
// publishing and pruning metadata files, a generate deleting collected blobs): rsync's exit
// code 24, files vanished before they could be transferred, is not a failure (what vanished is
// no longer part of the tree). It returns rsync's warnings about vanished files.
func SyncMirrorChanging(t testing.TB, tree, dst string) []string {
	t.Helper()
	rsync := Require(t, "rsync")
	if err := os.MkdirAll(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	var vanished []string
	for _, args := range SyncMirrorPhases(strings.TrimRight(tree, "/")+"/", strings.TrimRight(dst, "/")+"/") {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		cmd := exec.CommandContext(ctx, rsync, args...)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		cancel()
		var exit *exec.ExitError
		if errors.As(err, &exit) && exit.ExitCode() == RsyncVanished {
			for _, line := range strings.Split(out.String(), "\n") {
				if strings.HasPrefix(line, "file has vanished: ") {
					vanished = append(vanished, line)
				}
			}
			continue
		}
		if err != nil {
			t.Fatalf("rsync %s: %v\n%s", strings.Join(args, " "), err, lastBytes(out.String(), 4000))
		}
	}
	return vanished
}
