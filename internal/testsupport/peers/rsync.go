package peers

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// MirrorSyncScript is the path of deploy/mirror-sync, the script mirror admins and the
// redirector hosts' regmirror-sync.service run (docs/mirror-admins.md).
func MirrorSyncScript(t testing.TB) string {
	t.Helper()
	Require(t, "rsync")
	root, err := ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(root, "deploy", "mirror-sync")
}

// SyncMirror copies the tree to a mirror directory with deploy/mirror-sync, the way the
// documentation tells mirror admins to: phase 1 adds the new files and changes nothing a
// reader sees, phase 2 switches the mirror's regmirror/live to the tree's live publication in
// one rename and deletes last, so a client or crawler looking at the mirror at any moment sees
// one whole generation, the old or the new.
func SyncMirror(t testing.TB, tree, dst string) {
	t.Helper()
	SyncMirrorPhase(t, tree, dst, 0)
}

// SyncMirrorPhase runs one phase of deploy/mirror-sync (1 or 2; 0 runs both), so a test can
// look at the mirror between them. It returns the script's standard error (rsync's warnings).
func SyncMirrorPhase(t testing.TB, tree, dst string, phase int, args ...string) string {
	t.Helper()
	stderr, err := MirrorSync(MirrorSyncScript(t), tree, dst, phase, args...)
	if err != nil {
		t.Fatal(err)
	}
	return stderr
}

// MirrorSync runs deploy/mirror-sync at script with args, SOURCE tree and DEST dst, phase 1
// or 2 only (0: both), and returns its standard error. For goroutines, which cannot fail a
// test.
func MirrorSync(script, tree, dst string, phase int, args ...string) (string, error) {
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, script, append(args, tree, dst)...)
	cmd.Env = os.Environ()
	if phase != 0 {
		cmd.Env = append(cmd.Env, fmt.Sprintf("REGMIRROR_SYNC_PHASE=%d", phase))
	}
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		return stderr.String(), fmt.Errorf("mirror-sync %s (phase %d): %v\n%s%s", strings.Join(cmd.Args[1:], " "), phase, err, lastBytes(out.String(), 2000), lastBytes(stderr.String(), 4000))
	}
	return stderr.String(), nil
}
