package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/regmirror/regmirror/internal/testsupport/peers"
	"github.com/regmirror/regmirror/layout"
)

// TestCrawlCrashLoop kills `regmirror crawl` with SIGKILL at random moments, mostly late in
// the run where it publishes (a network file, a metadata root, a publication, the switch),
// many times over (at 0.3 to 1.2 times a crawl's duration: the first crawl's, then that of
// the last crawl that completed before its kill, so that the kills follow the machine's load), with a generate now and then (each publishing new content: a content
// pack). After each kill the tree loads and validates at the generation it had; at the end a
// crawl and a generate complete, and the metadata directory holds exactly the files the kept
// publications need (what the killed runs wrote is pruned).
func TestCrawlCrashLoop(t *testing.T) {
	needPeers(t)
	const kills = 24
	seed, rng := crashSeed(t)

	reg := peers.StartRegistry(t)
	reg.Push(t, demo(t))
	tree := filepath.Join(t.TempDir(), "tree")
	generate(t, reg.URL, tree)
	_, mirrorRoot, mirrors := clientStartMirror(t)
	peers.SyncMirror(t, tree, mirrorRoot)
	bin := peers.Regmirror(t)
	checker := newTreeChecker(tree)

	start := time.Now()
	if r := regmirror(t, nil, "crawl", "--tree", tree, "--mirrors", mirrors); r.err != nil {
		t.Fatalf("%v", r)
	}
	took := time.Since(start)
	t.Logf("a crawl takes %v", took.Round(time.Millisecond))

	metaDir := func() map[string]bool {
		ents, err := os.ReadDir(filepath.Join(tree, layout.MetaFilesDir))
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]bool{}
		for _, e := range ents {
			out[e.Name()] = true
		}
		return out
	}
	var interrupted, published, midPublish, generated int
	for i := 0; interrupted < kills && i < 4*kills; i++ {
		if i%6 == 5 {
			// A generation with new content (a tag more), so that the crawls after it build
			// on a chain of packs, not only a base.
			reg.Push(t, randomImages(t, uint64(100+i), []string{fmt.Sprintf("crash/crawl%d", i)}, 1, 1, 1<<10))
			generate(t, reg.URL, tree)
			generated++
		}
		m, before, err := layout.NewTree(tree).Load()
		if err != nil {
			t.Fatal(err)
		}
		files := metaDir()
		delay := time.Duration(float64(took) * (0.3 + 0.9*rng.Float64()))
		began := time.Now()
		p := peers.Start(t, "regmirror-crawl", exec.Command(bin, "crawl", "--tree", tree, "--mirrors", mirrors), nil)
		what := fmt.Sprintf("crawl %d killed after %v", i+1, delay.Round(time.Millisecond))
		select {
		case <-p.Done():
			if p.Err() != nil {
				t.Fatalf("crawl %d failed before the kill: %v\n%s", i+1, p.Err(), peers.Tail(p.Log, 20))
			}
			what = fmt.Sprintf("crawl %d completed", i+1)
			// The kills follow the crawls' speed, which the machine's load moves: a crawl
			// that completed before its kill is the new measure of a crawl.
			took = time.Since(began)
		case <-time.After(delay):
			p.Kill()
			interrupted++
		}
		got, err := checker.check()
		if err != nil {
			t.Fatalf("%s: the tree does not validate: %v (seed %d)", what, err, seed)
		}
		if got.Generation != m.Generation {
			t.Fatalf("%s: generation %d, want %d (seed %d)", what, got.Generation, m.Generation, seed)
		}
		if _, after, err := layout.NewTree(tree).Load(); err == nil && after != before {
			published++ // the kill came after the switch, or the crawl completed
			continue
		}
		for f := range metaDir() {
			if !files[f] {
				midPublish++ // killed after writing metadata files, before the switch
				break
			}
		}
	}
	t.Logf("%d crawls interrupted (%d of them after writing metadata files, before the switch), %d published; %d generations between",
		interrupted, midPublish, published, generated)
	if interrupted < kills {
		t.Errorf("only %d crawls were interrupted, want %d", interrupted, kills)
	}

	if r := regmirror(t, nil, "crawl", "--tree", tree, "--mirrors", mirrors); r.err != nil {
		t.Fatalf("the crawl after the kills: %v", r)
	}
	reg.Push(t, randomImages(t, 999, []string{"crash/last"}, 1, 1, 1<<10))
	generate(t, reg.URL, tree)
	checkTree(t, tree)
	lt := layout.NewTree(tree)
	need, err := lt.KeptMetaFiles()
	if err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(lt.Path(layout.MetaFilesDir))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if !need[e.Name()] {
			t.Errorf("metadata file %s: left by a killed run, and no publication needs it", e.Name())
		}
	}
}
