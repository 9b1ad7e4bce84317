package redirector

import (
	"context"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/regmirror/regmirror/layout"
)

// republish writes generation gen of the demo tree into dir, with mod applied.
func republish(t *testing.T, dir string, gen uint64, mod func(*layout.Meta, *demo)) {
	t.Helper()
	m, dm := writeTree(t, dir, gen)
	if mod != nil {
		mod(m, dm)
	}
	if _, err := layout.NewTree(dir).Publish(m); err != nil {
		t.Fatal(err)
	}
}

// metaFiles returns the metadata files the live generation of the tree in dir needs: its
// root, network file and content packs.
func metaFiles(t *testing.T, dir string) []string {
	t.Helper()
	tree := layout.NewTree(dir)
	st, err := tree.ReadStamp()
	check(t, err)
	files, err := tree.MetaFiles(st)
	check(t, err)
	if len(files) < 3 {
		t.Fatalf("metadata files %v: want a root, a network file and a pack", files)
	}
	return files
}

func TestReload(t *testing.T) {
	dir, dm := newTestTree(t, nil)
	s := newServer(t, Options{Tree: dir})
	get := func(path string) int { return do(s, "GET", path, "", nil).Code }
	if get("/v2/fedora/manifests/43") != 404 {
		t.Fatal("tag 43 before it exists")
	}
	// Nothing changed: nothing happens.
	if err := s.Check(); err != nil || s.Generation() != 1 {
		t.Fatalf("idle check: %v, generation %d", err, s.Generation())
	}
	// Generation 2 adds a tag.
	republish(t, dir, 2, func(m *layout.Meta, dm *demo) { m.Repositories["fedora"].Tags["43"] = dm.fedoraIndex })
	if err := s.Check(); err != nil {
		t.Fatal(err)
	}
	if s.Generation() != 2 || get("/v2/fedora/manifests/43") != 200 {
		t.Fatalf("generation %d after reload", s.Generation())
	}

	// Broken generations are refused; generation 2 keeps serving.
	broken := []struct {
		name  string
		apply func(t *testing.T)
	}{
		{"tag names a missing manifest", func(t *testing.T) {
			republish(t, dir, 3, func(m *layout.Meta, dm *demo) {
				m.Repositories["fedora"].Tags["44"] = layout.MustDigest("sha256:" + strings.Repeat("e", 64))
			})
		}},
		{"manifest bytes do not match the digest", func(t *testing.T) {
			republish(t, dir, 3, func(m *layout.Meta, dm *demo) {
				m.Manifests[dm.fedoraIndex].Data = append([]byte(" "), m.Manifests[dm.fedoraIndex].Data...)
			})
		}},
		{"stamp is garbage", func(t *testing.T) {
			check(t, layout.WriteFile(filepath.Join(dir, layout.CurrentFile), []byte("{not json")))
		}},
		{"stamp names a missing metadata file", func(t *testing.T) {
			check(t, layout.WriteFile(filepath.Join(dir, layout.CurrentFile),
				[]byte(`{"format":2,"generation":3,"meta":"meta/`+strings.Repeat("a", 64)+`.json.zst"}`)))
		}},
		{"metadata file is corrupt", func(t *testing.T) {
			republish(t, dir, 3, nil)
			st, err := layout.NewTree(dir).ReadStamp()
			check(t, err)
			p := filepath.Join(dir, layout.MetaDir, filepath.FromSlash(st.Meta))
			check(t, os.Chmod(p, 0o644))
			check(t, os.WriteFile(p, []byte("garbage"), 0o644))
		}},
		{"a content pack is missing", func(t *testing.T) {
			republish(t, dir, 3, func(m *layout.Meta, dm *demo) { m.Repositories["fedora"].Tags["44"] = dm.fedoraIndex })
			files := metaFiles(t, dir)
			check(t, os.Remove(filepath.Join(dir, filepath.FromSlash(files[len(files)-1]))))
		}},
		{"the network file is corrupt", func(t *testing.T) {
			republish(t, dir, 3, func(m *layout.Meta, dm *demo) { m.Origin = "https://origin.example/" })
			p := filepath.Join(dir, filepath.FromSlash(metaFiles(t, dir)[1]))
			b, err := os.ReadFile(p)
			check(t, err)
			b[len(b)/2] ^= 1
			check(t, os.WriteFile(p, b, 0o644))
		}},
		{"stamp of another format", func(t *testing.T) {
			check(t, layout.WriteFile(filepath.Join(dir, layout.CurrentFile), []byte(`{"format":99,"generation":3}`)))
		}},
	}
	for _, b := range broken {
		t.Run(b.name, func(t *testing.T) {
			b.apply(t)
			if err := s.Check(); err == nil {
				t.Fatal("broken generation accepted")
			}
			if s.Generation() != 2 || get("/v2/fedora/manifests/43") != 200 || get("/v2/fedora/blobs/"+dm.baseLayer.String()) != 200 {
				t.Fatalf("generation 2 stopped serving (now %d)", s.Generation())
			}
			// Asked again at once, the same broken stamp is not reloaded (nor logged) again.
			if err := s.Check(); err != nil {
				t.Fatalf("second check of the same broken stamp: %v", err)
			}
		})
	}
	// A missing stamp (a tree being replaced) keeps generation 2 serving too.
	check(t, os.Remove(filepath.Join(dir, layout.CurrentFile)))
	if err := s.Check(); err == nil || s.Generation() != 2 {
		t.Fatalf("missing stamp: %v, generation %d", err, s.Generation())
	}
	// A good generation 3 is taken.
	republish(t, dir, 3, func(m *layout.Meta, dm *demo) { delete(m.Repositories["fedora"].Tags, "43") })
	if err := s.Check(); err != nil {
		t.Fatal(err)
	}
	if s.Generation() != 3 || get("/v2/fedora/manifests/43") != 404 {
		t.Fatalf("generation %d", s.Generation())
	}
	// The metrics saw it all.
	w := httptest.NewRecorder()
	s.MetricsHandler().ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
	for _, want := range []string{
		`regmirror_generation_loads_total{result="failed"} 8`,
		`regmirror_generation_loads_total{result="ok"} 3`,
		`regmirror_generation 3`,
		`regmirror_requests_total{code="200",endpoint="manifests"}`,
		`regmirror_requests_total{code="404",endpoint="manifests"}`,
		`regmirror_generation_age_seconds`,
	} {
		if !strings.Contains(w.Body.String(), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

func TestNoGenerationAtStart(t *testing.T) {
	_, err := New(Options{Tree: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "no generation") {
		t.Fatalf("empty tree: %v", err)
	}
	_, err = New(Options{Tree: filepath.Join(t.TempDir(), "missing")})
	if err == nil {
		t.Fatal("missing tree accepted")
	}
}

// While generations switch under load, every answer is whole: the bytes always match the
// digest header, and a tag always resolves within one generation. The watcher (Run) picks up
// each generation, and loads it at the first try: a refused load fails the test at once
// (the watcher would only try that stamp again after retryFailedAfter). How long the
// switches take is not asserted: on a loaded machine the republishing, which shares the
// cores with the four requesters, takes most of it (over a second a generation at a load
// average of 10); a watcher that never switches is left to the test binary's -timeout.
func TestSwapUnderLoad(t *testing.T) {
	dir, dm := newTestTree(t, func(m *layout.Meta, dm *demo) { m.Repositories["fedora"].Tags["moving"] = dm.fedoraAMD64 })
	s := newServer(t, Options{Tree: dir, PollInterval: time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.Run(ctx)

	var stop atomic.Bool
	var wg sync.WaitGroup
	var requests, errs atomic.Int64
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				w := do(s, "GET", "/v2/fedora/manifests/moving", "", nil)
				requests.Add(1)
				d := w.Header().Get("Docker-Content-Digest")
				if w.Code != 200 || digestOf(w.Body.Bytes()).String() != d || (d != dm.fedoraAMD64.String() && d != dm.fedoraARM64.String()) {
					errs.Add(1)
				}
			}
		}()
	}
	for gen := uint64(2); gen <= 6; gen++ {
		republish(t, dir, gen, func(m *layout.Meta, dm *demo) {
			target := dm.fedoraAMD64
			if gen%2 == 0 {
				target = dm.fedoraARM64
			}
			m.Repositories["fedora"].Tags["moving"] = target
		})
		for s.Generation() != gen {
			if n := reloads(t, s, "failed"); n > 0 {
				t.Fatalf("generation %d: %v reloads refused, want none (the log says why)", gen, n)
			}
			time.Sleep(time.Millisecond)
		}
	}
	stop.Store(true)
	wg.Wait()
	if errs.Load() > 0 {
		t.Fatalf("%d of %d answers were inconsistent", errs.Load(), requests.Load())
	}
	if w := do(s, "GET", "/v2/fedora/manifests/moving", "", nil); w.Header().Get("Docker-Content-Digest") != dm.fedoraARM64.String() {
		t.Fatal("last generation not served")
	}
}

// reloads is the count of the generation reloads with result ("ok", "failed"; counted once
// the generation is installed).
func reloads(t *testing.T, s *Server, result string) float64 {
	t.Helper()
	return counterValue(t, s.metrics.reloads.WithLabelValues(result))
}

// TestReloadReusesUnchanged: a switch builds only what changed; the rest is the previous
// generation's entries, and what changed is built anew and answers its new state.
func TestReloadReusesUnchanged(t *testing.T) {
	dir, dm := newTestTree(t, nil)
	s := newServer(t, Options{Tree: dir})
	g1 := s.base.Load()

	// Generation 2: fedora gains a tag; toolbox's own layer gets a later since (as if it
	// joined a subset); every other blob keeps generation 1's record.
	republish(t, dir, 2, func(m *layout.Meta, _ *demo) {
		m.Repositories["fedora"].Tags["43"] = dm.fedoraIndex
		for _, b := range m.Blobs {
			b.Since = 1
		}
		m.Blobs[dm.toolboxLayer].Since = 2
	})
	if err := s.Check(); err != nil {
		t.Fatal(err)
	}
	g2 := s.base.Load()
	if g2 == g1 || g2.number != 2 {
		t.Fatalf("got generation %d after the reload, want 2", g2.number)
	}
	cases := []struct {
		name       string
		old, new   any
		wantShared bool
	}{
		{"unchanged manifest", g1.manifests[dm.httpd.String()], g2.manifests[dm.httpd.String()], true},
		{"unchanged index", g1.manifests[dm.fedoraIndex.String()], g2.manifests[dm.fedoraIndex.String()], true},
		{"unchanged blob", g1.blobs[dm.baseLayer.String()], g2.blobs[dm.baseLayer.String()], true},
		{"unchanged repository", g1.repos["fedora/httpd"], g2.repos["fedora/httpd"], true},
		{"repository with a new tag", g1.repos["fedora"], g2.repos["fedora"], false},
		{"blob with a new since", g1.blobs[dm.toolboxLayer.String()], g2.blobs[dm.toolboxLayer.String()], false},
		{"repository holding that blob", g1.repos["fedora/toolbox"], g2.repos["fedora/toolbox"], false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.old == nil || c.new == nil {
				t.Fatalf("got %v, %v: missing from a generation", c.old, c.new)
			}
			if got := c.old == c.new; got != c.wantShared {
				t.Errorf("shared with the previous generation: got %v, want %v", got, c.wantShared)
			}
		})
	}
	if got, want := g2.repos["fedora/toolbox"].blobs[dm.toolboxLayer.String()].since, uint64(2); got != want {
		t.Errorf("toolbox layer's since after the reload: got %d, want %d", got, want)
	}
	if got := do(s, "GET", "/v2/fedora/manifests/43", "", nil); got.Code != 200 || got.Body.String() != string(dm.manifests[dm.fedoraIndex]) {
		t.Errorf("GET the new tag: got %d, want 200 with the index", got.Code)
	}
	if got := do(s, "GET", "/v2/fedora/httpd/manifests/"+dm.httpd.String(), "", nil); got.Code != 200 {
		t.Errorf("GET a reused manifest: got %d, want 200", got.Code)
	}
}
