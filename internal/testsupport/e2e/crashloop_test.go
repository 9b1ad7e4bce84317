package e2e

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/regmirror/regmirror/internal/testsupport/listcheck"
	"github.com/regmirror/regmirror/internal/testsupport/peers"
	"github.com/regmirror/regmirror/internal/testsupport/testimages"
	"github.com/regmirror/regmirror/layout"
)

// crashSeedEnv replays a crash loop: the test logs the seed it used.
const crashSeedEnv = "REGMIRROR_CRASH_SEED"

// TestGenerateCrashLoop kills `regmirror generate` with SIGKILL at random moments, many times
// over, on one tree. The source holds four groups of images with multi-MB random layers behind
// a throttling proxy. Runs publish one group at random (now and then all of them) and mostly
// collect garbage at once, so the blobs of a group are deleted while others are published and
// must be fetched again on its next turn: every run has blobs to fetch, files to rename and
// orphans to delete, and the kills land in all of it. After each kill the tree has no
// generation yet (only before any run got that far) or loads and validates: everything
// reachable from index.json and everything the metadata lists is present and hashes right.
// Every fourth run, and the last, are left alone and must complete.
func TestGenerateCrashLoop(t *testing.T) {
	needPeers(t)
	// Kill until this many runs were interrupted (runs that finish first count apart), and
	// stop after maxRuns; fewer than minKills is a failure.
	const kills, minKills, maxRuns = 24, 20, 90
	seed, rng := crashSeed(t)

	reg := peers.StartRegistry(t)
	base := randomImages(t, 10, []string{"crash/base"}, 1, 1, 2<<20)
	shared, err := base[0].Image.Layers()
	if err != nil {
		t.Fatal(err)
	}
	const groups = 4
	var sets [][]testimages.Ref
	for g := range groups {
		repos := []string{fmt.Sprintf("crash/g%d/one", g), fmt.Sprintf("crash/g%d/two", g)}
		sets = append(sets, randomImages(t, uint64(20+g), repos, 4, 2, 1<<20, shared...))
	}
	pushStart := time.Now()
	pushAll(t, reg, sets)
	t.Logf("pushed %d groups of %d tags in %v", groups, len(sets[0]), time.Since(pushStart).Round(time.Millisecond))
	// 12 MiB/s: publishing one group (16 MiB of layers) from scratch takes over a second.
	proxy := newSourceProxy(t, reg.URL, 12<<20)

	out := filepath.Join(t.TempDir(), "tree")
	checker := newTreeChecker(out)
	bin := peers.Regmirror(t)
	var (
		generated  bool   // a generation has been seen: ErrNoGeneration is no longer acceptable
		lastGen    uint64 // generations never go back
		completed  int
		interrupts int
	)
	check := func(what string) string {
		t.Helper()
		m, err := checker.check()
		switch {
		case errors.Is(err, layout.ErrNoGeneration) && !generated:
			return "no generation yet"
		case err != nil:
			t.Fatalf("%s: the tree does not validate: %v (seed %d)", what, err, seed)
		}
		generated = true
		if m.Generation < lastGen {
			t.Fatalf("%s: generation went back from %d to %d (seed %d)", what, lastGen, m.Generation, seed)
		}
		lastGen = m.Generation
		return fmt.Sprintf("generation %d valid", m.Generation)
	}

	for i := 0; interrupts < kills && i < maxRuns; i++ {
		args := []string{"generate", "--source", proxy.URL, "--out", out}
		sel := "everything"
		if i%6 != 5 {
			sel = fmt.Sprintf("crash/g%d/**", rng.IntN(groups))
			args = append(args, "--repo", sel)
		}
		gc := rng.IntN(8) != 0
		if gc {
			args = append(args, "--gc-grace", "1ms")
		}
		delay := time.Duration(rng.Int64N(int64(1200 * time.Millisecond)))
		if i%4 == 3 {
			// Every fourth run is left to finish, so that later kills land on a tree with
			// a few generations behind it and orphans to collect.
			delay = time.Hour
		}
		what := fmt.Sprintf("run %d (%s, gc %v) killed after %v", i+1, sel, gc, delay.Round(time.Millisecond))

		p := peers.Start(t, "regmirror-generate", exec.Command(bin, args...), nil)
		select {
		case <-p.Done():
			if p.Err() != nil {
				t.Fatalf("run %d (%s) failed before the kill: %v\n%s", i+1, sel, p.Err(), peers.Tail(p.Log, 20))
			}
			completed++
			generated = true
			what = fmt.Sprintf("run %d (%s, gc %v) completed", i+1, sel, gc)
			// Its file list: read whole after a kill (no settled record), else taken in
			// part from the previous one; either way what a listing says.
			diffs, err := listcheck.Check(out, nil)
			if err != nil {
				t.Fatal(err)
			}
			for _, d := range diffs {
				t.Errorf("%s: file list: %s (seed %d)", what, d, seed)
			}
			if delay < time.Hour {
				what += fmt.Sprintf(" before the kill at %v", delay.Round(time.Millisecond))
			}
		case <-time.After(delay):
			p.Kill()
			interrupts++
		}
		t.Logf("%s: %s", what, check(what))
	}
	if interrupts < minKills {
		t.Errorf("only %d of %d runs were interrupted, want at least %d: slow the source down", interrupts, maxRuns, minKills)
	}

	start := time.Now()
	generate(t, proxy.URL, out)
	t.Logf("%d runs interrupted, %d completed; the final run took %v", interrupts, completed, time.Since(start).Round(time.Millisecond))
	checkPublished(t, out, wantOf(t, sets...))
	checkTree(t, out)
	rehashAllBlobs(t, out)
}

// crashSeed returns a crash loop's seed (REGMIRROR_CRASH_SEED, or the time), logged with how to
// replay it, and a random source seeded with it.
func crashSeed(t *testing.T) (uint64, *rand.Rand) {
	t.Helper()
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv(crashSeedEnv); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("%s=%q: %v", crashSeedEnv, s, err)
		}
	}
	t.Logf("crash loop seed %d (replay: %s=%d go test -run %s ./internal/testsupport/e2e/)", seed, crashSeedEnv, seed, t.Name())
	return seed, rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
}

// pushAll pushes the sets, four pushers at a time.
func pushAll(t testing.TB, reg *peers.Registry, sets [][]testimages.Ref) {
	t.Helper()
	var all []testimages.Ref
	for _, set := range sets {
		all = append(all, set...)
	}
	pushParallel(t, reg, all, 4)
}
