package e2e

import (
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/regmirror/regmirror/internal/testsupport/peers"
	"github.com/regmirror/regmirror/internal/testsupport/testimages"
)

// TestPhase2MirrorSwitch: a promotion (tags moved, a tag deleted at the source) reaches
// phase-2 mirrors (Debian's nginx and Apache configured with `regmirror mirror-config`) through
// deploy/mirror-sync. After phase 1 only, 20 HEADs of every moved tag and GET tags/list answer
// exactly as the old generation; after phase 2, as the new one. While phase 2 runs, a sampler
// alternating the deleted tag's manifest and tags/list never sees the new generation and then
// the old one again: the two agree at every moment.
func TestPhase2MirrorSwitch(t *testing.T) {
	needPeers(t)
	reg := peers.StartRegistry(t)
	imgs := randomImages(t, 91, []string{"app"}, 4, 1, 64<<10)
	tagged := func(r testimages.Ref, tags ...string) testimages.Ref {
		r.Tags = append(append([]string(nil), r.Tags...), tags...)
		return r
	}
	// Generation 1: m1 -> t0's image, m2 -> t1's; t3 is deleted in generation 2.
	reg.Push(t, []testimages.Ref{tagged(imgs[0], "m1"), tagged(imgs[1], "m2"), imgs[2], imgs[3]})
	tree := t.TempDir()
	generate(t, reg.URL, tree)
	mirror := filepath.Join(t.TempDir(), "containers")
	peers.SyncMirror(t, tree, mirror)

	nginx, apache := startPhase2Servers(t, mirror)
	servers := []struct{ name, base string }{
		{"nginx", strings.TrimSuffix(nginx.URL, "/")},
		{"apache", strings.TrimSuffix(apache.URL, "/")},
	}

	const deleted = "t3"
	moved := []string{"m1", "m2"}
	// answers is what a server says now: each moved tag's HEAD (status and digest, 20 times
	// when they must all agree), the deleted tag's HEAD and tags/list.
	answers := func(t *testing.T, base string, times int) map[string]string {
		t.Helper()
		out := map[string]string{}
		for _, tag := range append(moved, deleted) {
			for i := range times {
				got := fetch(t, http.MethodHead, base+"/v2/app/manifests/"+tag)
				a := itoa(got.status) + " " + got.digest
				if i > 0 && a != out[tag] {
					t.Errorf("%s: HEAD %s: answer %d is %q, answer 1 was %q", base, tag, i+1, a, out[tag])
				}
				out[tag] = a
			}
		}
		list := fetch(t, http.MethodGet, base+"/v2/app/tags/list")
		out["tags/list"] = itoa(list.status) + " " + list.body
		return out
	}
	same := func(t *testing.T, when string, got, want map[string]string) {
		t.Helper()
		for k, w := range want {
			if got[k] != w {
				t.Errorf("%s: %s: got %q, want %q", when, k, got[k], w)
			}
		}
	}
	old := map[string]map[string]string{}
	for _, s := range servers {
		old[s.name] = answers(t, s.base, 1)
		if !strings.Contains(old[s.name]["tags/list"], `"`+deleted+`"`) || !strings.HasPrefix(old[s.name][deleted], "200 ") {
			t.Fatalf("%s before the promotion: %v", s.name, old[s.name])
		}
	}

	// The promotion: m1 -> t1's image, m2 -> t2's, t3 deleted.
	reg.Push(t, []testimages.Ref{{Repo: "app", Tags: []string{"m1"}, Image: imgs[1].Image}, {Repo: "app", Tags: []string{"m2"}, Image: imgs[2].Image}})
	reg.DeleteTag(t, "app", deleted)
	generate(t, reg.URL, tree)

	peers.SyncMirrorPhase(t, tree, mirror, 1)
	for _, s := range servers {
		t.Run(s.name+"/after phase 1", func(t *testing.T) {
			same(t, "after phase 1", answers(t, s.base, 20), old[s.name])
		})
	}

	// Phase 2 while samplers ask each server for the deleted tag and the tag list in turn.
	samplers := make([]*switchSampler, len(servers))
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i, s := range servers {
		samplers[i] = &switchSampler{base: s.base, deleted: deleted}
		wg.Go(func() { samplers[i].run(stop) })
	}
	// Each sampler has seen the old generation for a while, then phase 2, then as many
	// samples again of the switched mirror.
	for _, sm := range samplers {
		sm.waitFor(10)
	}
	stderr, err := peers.MirrorSync(peers.MirrorSyncScript(t), tree, mirror, 2)
	for _, sm := range samplers {
		sm.waitFor(2*sm.count() + 10)
	}
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	for i, s := range servers {
		sawOld, sawNew := false, false
		all := samplers[i].samples
		for j, sm := range all {
			if !sm.new && sawNew {
				t.Errorf("%s: sample %d answers the old generation after sample %d answered the new: %s (before: %s)", s.name, j, j-1, sm.what, all[j-1].what)
				break
			}
			sawOld, sawNew = sawOld || !sm.new, sawNew || sm.new
		}
		if !sawOld || !sawNew {
			t.Errorf("%s: %d samples, old seen %v, new seen %v: want both", s.name, len(all), sawOld, sawNew)
		}
		if samplers[i].errors > 0 {
			t.Errorf("%s: %d requests failed while sampling: %s", s.name, samplers[i].errors, samplers[i].lastErr)
		}
		t.Logf("%s: %d samples across phase 2", s.name, len(all))
	}

	for _, s := range servers {
		t.Run(s.name+"/after phase 2", func(t *testing.T) {
			got := answers(t, s.base, 20)
			want := old[s.name]
			if got[deleted] != "404 " {
				t.Errorf("deleted tag: got %q, want 404", got[deleted])
			}
			if strings.Contains(got["tags/list"], `"`+deleted+`"`) {
				t.Errorf("tags/list: got %q, want it without %s", got["tags/list"], deleted)
			}
			for i, tag := range moved {
				d, _ := imgs[i+1].Image.Digest()
				if got[tag] != "200 "+d.String() || got[tag] == want[tag] {
					t.Errorf("moved tag %s: got %q, want 200 %s (was %q)", tag, got[tag], d, want[tag])
				}
			}
		})
	}
}

// switchSampler asks a phase-2 server, in turn, for a tag deleted by a promotion (HEAD) and
// the tag list, and records which generation each answer belongs to.
type switchSampler struct {
	base, deleted string

	mu      sync.Mutex
	samples []switchSample
	errors  int
	lastErr string
}

type switchSample struct {
	what string
	new  bool // the answer is the new generation's (the tag is gone)
}

func (s *switchSampler) run(stop <-chan struct{}) {
	client := &http.Client{Timeout: 30 * time.Second}
	for n := 0; ; n++ {
		select {
		case <-stop:
			return
		default:
		}
		var sm switchSample
		var err error
		if n%2 == 0 {
			var resp *http.Response
			req, _ := http.NewRequest(http.MethodHead, s.base+"/v2/app/manifests/"+s.deleted, nil)
			if resp, err = client.Do(req); err == nil {
				resp.Body.Close()
				sm = switchSample{"HEAD " + s.deleted + ": " + resp.Status, resp.StatusCode == http.StatusNotFound}
				if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusNotFound {
					err = fmt.Errorf("HEAD %s: %s", s.deleted, resp.Status)
				}
			}
		} else {
			var resp *http.Response
			if resp, err = client.Get(s.base + "/v2/app/tags/list"); err == nil {
				b, rerr := io.ReadAll(resp.Body)
				resp.Body.Close()
				sm = switchSample{"tags/list: " + resp.Status + " " + string(b), !strings.Contains(string(b), `"`+s.deleted+`"`)}
				if rerr != nil || resp.StatusCode != http.StatusOK {
					err = fmt.Errorf("tags/list: %s %v", resp.Status, rerr)
				}
			}
		}
		s.mu.Lock()
		if err != nil {
			s.errors++
			s.lastErr = err.Error()
		} else {
			s.samples = append(s.samples, sm)
		}
		s.mu.Unlock()
	}
}

func (s *switchSampler) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.samples) + s.errors
}

// waitFor waits until the sampler has taken n samples.
func (s *switchSampler) waitFor(n int) {
	for s.count() < n {
		time.Sleep(time.Millisecond)
	}
}
