package generator

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/regmirror/regmirror/layout"
)

// TestHelperGenerate is the child of TestCrashLoop: one Run, killed at a random moment.
func TestHelperGenerate(t *testing.T) {
	src, out := os.Getenv("REGMIRROR_CRASH_SOURCE"), os.Getenv("REGMIRROR_CRASH_OUT")
	if src == "" {
		t.Skip("child of TestCrashLoop")
	}
	o := Options{Source: src, Out: out, Keychain: emptyKeychain(), GCGrace: time.Nanosecond}
	if _, err := Run(context.Background(), o); err != nil {
		t.Fatal(err)
	}
}

// TestCrashLoop kills a generating process with SIGKILL at random moments, 25 times, while
// the source changes; after each kill the tree loads and verifies, and a last run completes.
func TestCrashLoop(t *testing.T) {
	if testing.Short() {
		t.Skip("slow")
	}
	src := newSource(t)
	src.demo()
	out := t.TempDir()
	rng := rand.New(rand.NewPCG(1, 2))
	child := func() *exec.Cmd {
		cmd := exec.Command(os.Args[0], "-test.run=^TestHelperGenerate$", "-test.count=1")
		cmd.Env = append(os.Environ(), "REGMIRROR_CRASH_SOURCE="+src.url, "REGMIRROR_CRASH_OUT="+out)
		return cmd
	}
	for i := range 4 {
		img, err := random.Image(1<<20, 3)
		if err != nil {
			t.Fatal(err)
		}
		src.pushImage(fmt.Sprintf("crash/img%d", i), "latest", img)
	}
	// Time one whole run (child start-up included) of the same size as the ones to come, to
	// kill those anywhere within one.
	t0 := time.Now()
	if msg, err := child().CombinedOutput(); err != nil {
		t.Fatalf("first run: %v\n%s", err, msg)
	}
	whole := time.Since(t0)
	completed, killed := 0, 0
	for i := range 25 {
		// A changing source: new images with layers large enough to be caught mid-write, and
		// a removed tag (orphans, and with a tiny grace, deletions).
		img, err := random.Image(1<<20, 3)
		if err != nil {
			t.Fatal(err)
		}
		src.pushImage(fmt.Sprintf("crash/img%d", i%4), "latest", img)
		if i%5 == 4 {
			src.deleteTag(fmt.Sprintf("crash/img%d", (i+1)%4), "latest")
		}
		cmd := child()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(rng.Int64N(int64(whole))))
		cmd.Process.Signal(syscall.SIGKILL)
		if err := cmd.Wait(); err == nil {
			completed++
		} else {
			killed++
		}
		tree := layout.NewTree(out)
		if _, _, err := tree.Load(); err == layout.ErrNoGeneration {
			continue
		}
		if err := tree.Verify(context.Background()); err != nil {
			t.Fatalf("after kill %d: %v", i, err)
		}
	}
	t.Logf("%d runs killed, %d completed before the kill (a whole run: %v)", killed, completed, whole)
	if killed == 0 {
		t.Errorf("no run was killed: the loop tested nothing")
	}
	cmd := child()
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("last run: %v\n%s", err, msg)
	}
	m := checkTree(t, out)
	if m.Repositories["fedora"] == nil {
		t.Errorf("last run did not publish the demo")
	}
	if tmp := listTemps(t, out); len(tmp) != 0 {
		t.Errorf("temporary files left: %v", tmp)
	}
}
