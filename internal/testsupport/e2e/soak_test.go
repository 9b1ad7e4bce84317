package e2e

import (
	"encoding/binary"
	"fmt"
	"io"
	"log"
	"maps"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/regmirror/regmirror/internal/testsupport/peers"
	"github.com/regmirror/regmirror/internal/testsupport/testimages"
	"github.com/regmirror/regmirror/layout"
)

// The soak's knobs. The whole test takes about 70 s on two cores (62 s of pulls).
const (
	soakRepo = "soak/app"
	// soakPulling is how long the clients go on starting pulls (and the promotions go on).
	soakPulling = 62 * time.Second
	// soakEvery is the time between the starts of two promotions.
	soakEvery = 3 * time.Second
	// soakGCGrace is generate's --gc-grace: what a generation stopped referencing longer ago
	// may leave the tree and the mirrors. A pull takes seconds, well within it.
	soakGCGrace = "25s"
	// soakRest is how long an image deleted at the source stays out: longer than the grace
	// and a generation, so that it comes back as content the mirrors no longer hold.
	soakRest = 32 * time.Second
	// soakLayer is the size of each layer; soakRate nginx's limit_rate for every response
	// of the mirrors and the origin, so a layer takes about a second to download.
	soakLayer = 96 << 10
	soakRate  = "96k"
	// soakClientsEach is how many of each client (skopeo, crane, podman) pull in parallel.
	soakClientsEach = 2
)

// soakInstalledSync is where the Ansible role installs deploy/mirror-sync, which
// regmirror-sync.service runs.
const soakInstalledSync = "/usr/local/lib/regmirror/mirror-sync"

// soakTags are the tags the promotions move and the clients pull.
var soakTags = []string{"latest", "stable"}

// soakImage is one of the three images the promotions move tags between.
type soakImage struct {
	name  string
	ref   testimages.Ref // without tags
	top   string         // the digest a tag resolves to
	amd64 string         // the linux/amd64 image's manifest digest (top for an image)
	// hexes holds the hex digest of every blob of the image: manifests, configs, layers.
	hexes []string
}

// soakImages builds the three images, deterministic for the seed: a two-arch OCI index
// (three layers per architecture), an OCI image of three layers and one of four; the index's
// linux/amd64 image and the first image share their first layer.
func soakImages(t *testing.T) []*soakImage {
	t.Helper()
	var s [32]byte
	binary.LittleEndian.PutUint64(s[:], 9)
	rng := rand.NewChaCha8(s)
	layers := func(n int) []v1.Layer {
		var ls []v1.Layer
		for range n {
			ls = append(ls, randomLayer(rng, soakLayer))
		}
		return ls
	}
	image := func(arch string, ls ...v1.Layer) v1.Image {
		img, err := testimages.Image(types.OCIManifestSchema1, types.OCIConfigJSON, arch, ls...)
		if err != nil {
			t.Fatal(err)
		}
		return img
	}
	shared := layers(1)[0]
	amd64 := image("amd64", append([]v1.Layer{shared}, layers(2)...)...)
	arm64 := image("arm64", layers(3)...)
	imgs := []*soakImage{
		{name: "index", ref: testimages.Ref{Repo: soakRepo, Index: testimages.Index(types.OCIImageIndex, amd64, arm64)}},
		{name: "three-layers", ref: testimages.Ref{Repo: soakRepo, Image: image("amd64", append([]v1.Layer{shared}, layers(2)...)...)}},
		{name: "four-layers", ref: testimages.Ref{Repo: soakRepo, Image: image("amd64", layers(4)...)}},
	}
	for _, im := range imgs {
		d, err := im.ref.Digest()
		if err != nil {
			t.Fatal(err)
		}
		im.top, im.amd64 = d.String(), d.String()
		im.hexes = append(im.hexes, d.Hex)
		children := []v1.Image{im.ref.Image}
		if im.ref.Index != nil {
			children = []v1.Image{amd64, arm64}
			ad, err := amd64.Digest()
			if err != nil {
				t.Fatal(err)
			}
			im.amd64 = ad.String()
		}
		for _, img := range children {
			d, err := img.Digest()
			if err != nil {
				t.Fatal(err)
			}
			mf, err := img.Manifest()
			if err != nil {
				t.Fatal(err)
			}
			im.hexes = append(im.hexes, d.Hex, mf.Config.Digest.Hex)
			for _, l := range mf.Layers {
				im.hexes = append(im.hexes, l.Digest.Hex)
			}
		}
	}
	return imgs
}

// soakFront is the CDN in front of registries: every request waits a random 100–400 ms (so
// a pull takes seconds and many span a promotion) and goes to a random backend (so the
// successive requests of one pull may reach replicas a generation apart). Redirects pass
// through unchanged. It counts the answers by backend and status.
type soakFront struct {
	peers.Endpoint

	mu       sync.Mutex
	answers  map[string]map[int]int // backend → status → count
	notFound []string               // "backend METHOD path" of every 404
}

func newSoakFront(t *testing.T, backends map[string]string) *soakFront {
	t.Helper()
	f := &soakFront{answers: map[string]map[int]int{}}
	var names []string
	proxies := map[string]*httputil.ReverseProxy{}
	for name, base := range backends {
		u, err := url.Parse(base)
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, name)
		proxies[name] = &httputil.ReverseProxy{
			Rewrite: func(r *httputil.ProxyRequest) {
				r.SetURL(u)
				r.Out.Host = r.In.Host
			},
			ModifyResponse: func(resp *http.Response) error {
				f.count(name, resp.StatusCode, resp.Request)
				return nil
			},
			ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
				f.count(name, http.StatusBadGateway, r)
				http.Error(w, err.Error(), http.StatusBadGateway)
			},
			ErrorLog: log.New(io.Discard, "", 0), // a client may hang up mid-body
		}
	}
	slices.Sort(names)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(100*time.Millisecond + rand.N(300*time.Millisecond))
		proxies[names[rand.IntN(len(names))]].ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	f.Host = strings.Replace(strings.TrimPrefix(srv.URL, "http://"), "127.0.0.1", "localhost", 1)
	return f
}

func (f *soakFront) count(backend string, status int, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.answers[backend] == nil {
		f.answers[backend] = map[int]int{}
	}
	f.answers[backend][status]++
	if status == http.StatusNotFound {
		f.notFound = append(f.notFound, backend+" "+r.Method+" "+r.URL.Path)
	}
}

// soakPull is one finished pull.
type soakPull struct {
	client, via, tag string
	digest           string // what the client got: see soakClient.want
	err              error
	start, end       time.Time
}

// soakClient is one real client pulling in a loop.
type soakClient struct {
	name string
	// pull pulls repo:tag from ep into a directory of its own under dir and returns the
	// digest the client reports.
	pull func(ep peers.Endpoint, name, dir string) (string, error)
	// amd64 says the digest is the linux/amd64 image's (skopeo copies one platform to dir:),
	// not the one the tag resolves to.
	amd64 bool
}

func soakClients(t *testing.T) []*soakClient {
	t.Helper()
	skopeo, crane, podman := peers.NewSkopeo(t), peers.NewCrane(t), peers.NewPodman(t)
	var cs []*soakClient
	for i := range soakClientsEach {
		cs = append(cs,
			&soakClient{name: fmt.Sprintf("skopeo-%d", i+1), amd64: true, pull: func(ep peers.Endpoint, name, dir string) (string, error) {
				return skopeo.CopyDirErr(ep, name, filepath.Join(dir, "dir"))
			}},
			&soakClient{name: fmt.Sprintf("crane-%d", i+1), pull: func(ep peers.Endpoint, name, dir string) (string, error) {
				got, err := crane.PullErr(ep, name, filepath.Join(dir, "oci"))
				if err == nil && len(got) != 1 {
					err = fmt.Errorf("crane pull %s: the OCI layout names %v, want one manifest", ep.Ref(name), got)
				}
				if err != nil {
					return "", err
				}
				return got[0], nil
			}},
			&soakClient{name: fmt.Sprintf("podman-%d", i+1), pull: func(ep peers.Endpoint, name, _ string) (string, error) {
				return podman.PullErr(ep, name)
			}},
		)
	}
	return cs
}

// soakSyncPhase runs one phase (1 or 2) of the documented mirror sync, deploy/mirror-sync
// with REGMIRROR_SYNC_PHASE, from the tree to a mirror's directory.
func soakSyncPhase(script, tree, dst string, phase int) error {
	_, err := peers.MirrorSync(script, tree, dst, phase)
	return err
}

// soakRetiring describes a generation's retiring set for the log: how many manifests and
// blobs it holds and what it adds to the metadata file (layout.RetiringMetaBytes), beside
// the metadata file's size.
func soakRetiring(tree string) (string, error) {
	tr := layout.NewTree(tree)
	m, stamp, err := tr.Load()
	if err != nil {
		return "", err
	}
	fi, err := os.Stat(tr.Path(layout.MetaDir + "/" + stamp.Meta))
	if err != nil {
		return "", err
	}
	manifests, blobs := 0, 0
	for _, r := range m.Repositories {
		manifests += len(r.Retiring)
		blobs += len(r.RetiringBlobs)
	}
	cost, err := layout.RetiringMetaBytes(m)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("retiring %d manifests and %d blobs, %d bytes of the %d-byte metadata file; %d orphaned blobs",
		manifests, blobs, cost, fi.Size(), len(m.Orphans)), nil
}

// soakClock is a moment as the nginx access logs write it (peers.AccessLogFormat's $msec).
func soakClock(t time.Time) string {
	return fmt.Sprintf("%d.%03d", t.Unix(), t.Nanosecond()/1e6)
}

// sleepOrStop sleeps d, or less when stop closes first; it says whether stop closed.
func sleepOrStop(stop <-chan struct{}, d time.Duration) bool {
	select {
	case <-stop:
		return true
	default:
	}
	select {
	case <-stop:
		return true
	case <-time.After(d):
		return false
	}
}

// TestPromotionSoak: promotions while real clients pull through replicas a generation apart
// and a phase-2 mirror (issue 9). Run it alone with
//
//	go test ./internal/testsupport/e2e -run TestPromotionSoak -count=1 -v
//
// The source is Debian's docker-registry holding three images in soak/app (a two-arch OCI
// index, two OCI images; several layers each, one shared). Every 3 s a promotion moves
// "latest" or "stable" to another image, now and then tags an image under neither
// "rc<N>", and now and then deletes such an image's manifest at the source (which drops all
// its tags; the first time at the second promotion); then `regmirror generate --mirrors …
// --gc-grace 25s` and `regmirror crawl`. A deleted image rests for longer than the grace
// before a promotion brings it back, so its files leave the tree and the mirrors and come
// back as new content. The mirrors file lists an origin (nginx on the generator's tree), two
// nginx blob mirrors and one phase-2 nginx mirror (`regmirror mirror-config --server nginx`,
// serving blobs too), each synced in a loop by deploy/mirror-sync at random lags, phase 1 and
// phase 2 run apart (REGMIRROR_SYNC_PHASE) with a random pause between them. Two `serve`
// replicas, one on the generator's tree, one on a redirector-only host's tree holding only
// regmirror/, synced with a lag by deploy/systemd/regmirror-sync.service's own command
// (mirror-sync --meta-only, as the Ansible role sets it with an origin), sit behind one front
// that sends every request to either. Meanwhile skopeo, crane and podman (two of each, in
// parallel) pull the moved tags for 62 s through the front and through the phase-2 mirror,
// each request delayed 100-400 ms and every response of the mirrors and the origin
// rate-limited, so that pulls take seconds and most span a switch.
//
// Result: no pull fails; every pulled image is one the tag pointed to during the run (by
// digest; a client checks its blobs against the manifest, so no mix); no mirror's nor the
// origin's access log has a 404 for a blob of the three images. The soak checks it soaked:
// ten switches at least, pulls spanning them, both replicas and the phase-2 mirror answering,
// an image deleted and brought back. The log gives each generation (what changed, generate's
// summary, the retiring set and what it adds to the metadata), pulls per client and their
// durations, failures, the answers through the fronts, the replicas' distance and the
// duration; a failed run keeps the access logs, the replicas' logs and a journal of syncs,
// generates and crawls, and says where.
func TestPromotionSoak(t *testing.T) {
	needPeers(t)
	began := time.Now()
	script := peers.MirrorSyncScript(t)
	root, err := peers.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	imgs := soakImages(t)

	// The source, with latest → index, stable → three-layers, rc0 → four-layers.
	src := peers.StartRegistry(t)
	tags := map[string]int{} // the source's tags → image
	seen := map[string]map[int]bool{}
	push := func(tag string, i int) {
		r := imgs[i].ref
		r.Tags = []string{tag}
		src.Push(t, []testimages.Ref{r})
		tags[tag] = i
		if seen[tag] == nil {
			seen[tag] = map[int]bool{}
		}
		seen[tag][i] = true
	}
	push("latest", 0)
	push("stable", 1)
	push("rc0", 2)

	// The generator's tree, its origin, the mirrors.
	n := &mirrorNetwork{clientFixture: &clientFixture{tree: filepath.Join(t.TempDir(), "tree")}}
	if err := os.MkdirAll(n.tree, 0o755); err != nil {
		t.Fatal(err)
	}
	limit := "limit_rate " + soakRate + ";\n"
	n.origin = peers.StartNginxConfig(t, &peers.NginxConfig{Dir: t.TempDir(),
		Servers: []peers.NginxServer{{Root: n.tree, Directives: limit}}})
	p2root := filepath.Join(t.TempDir(), "phase2-us")
	p2conf := regmirror(t, nil, "mirror-config", "--server", "nginx", "--root", p2root)
	if p2conf.err != nil {
		t.Fatalf("%v", p2conf)
	}
	n.startMirrors(t, []*netMirror{
		{name: "blobs-de", country: "DE", bandwidth: 100, directives: limit},
		{name: "blobs-fr", country: "FR", bandwidth: 100, directives: limit},
		{name: "phase2-us", country: "US", bandwidth: 100, root: p2root, directives: p2conf.stdout + limit},
	}, []string{"blobs-de", "blobs-fr", "phase2-us"})
	generateArgs := []string{"--mirrors", n.mirrorsFile, "--gc-grace", soakGCGrace}
	generate(t, src.URL, n.tree, generateArgs...)
	for _, m := range n.mirrors {
		for phase := 1; phase <= 2; phase++ {
			if err := soakSyncPhase(script, n.tree, m.root, phase); err != nil {
				t.Fatal(err)
			}
		}
	}
	if r := regmirror(t, nil, "crawl", "--tree", n.tree); r.err != nil {
		t.Fatalf("%v", r)
	}

	// The redirector-only host: its tree holds what regmirror-sync.service brings.
	host := filepath.Join(t.TempDir(), "redirector-host")
	unit, err := peers.ReadUnit(filepath.Join(root, "deploy", "systemd", "regmirror-sync.service"),
		// REGMIRROR_SYNC_ARGS as the Ansible role's serve.env sets it with regmirror_origin.
		map[string]string{"REGMIRROR_SYNC_SOURCE": n.tree, "REGMIRROR_TREE": host, "REGMIRROR_SYNC_ARGS": "--meta-only"})
	if err != nil {
		t.Fatal(err)
	}
	// The unit runs the script where the Ansible role installs it.
	unit.Program(soakInstalledSync, script)
	for _, args := range unit.Exec {
		if _, err := os.Stat(args[0]); err != nil {
			t.Fatalf("%s runs %s, which is not here: %v", unit.Path, args[0], err)
		}
	}
	if err := unit.Run(time.Minute, nil); err != nil {
		t.Fatal(err)
	}
	full := clientServe(t, n.tree, nil)
	metaOnly := clientServe(t, host, nil)
	front := newSoakFront(t, map[string]string{"full-tree": full.URL(), "redirector-only": metaOnly.URL()})
	p2 := n.mirror("phase2-us")
	p2front := newSoakFront(t, map[string]string{"phase2-us": strings.TrimSuffix(p2.nginx.URL, "/")})
	vias := map[string]peers.Endpoint{"replicas": front.Endpoint, "phase2": p2front.Endpoint}
	clients := soakClients(t)
	for _, im := range imgs {
		t.Logf("image %s: %s (linux/amd64 %s)", im.name, im.top, im.amd64)
	}
	t.Logf("set up in %v", time.Since(began).Round(time.Millisecond))

	journal := &soakJournal{}
	// Everything below runs until stop closes; the pulls until pullsUntil.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	var pulls []soakPull
	var bgErrs []string
	bgError := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		bgErrs = append(bgErrs, fmt.Sprintf(format, args...))
	}
	stopped := false
	stopAll := func() {
		if !stopped {
			stopped = true
			close(stop)
			wg.Wait()
		}
	}
	t.Cleanup(stopAll)
	pullsUntil := time.Now().Add(soakPulling)

	for k, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := k; time.Now().Before(pullsUntil) && !sleepOrStop(stop, 0); i++ {
				via := "replicas"
				if i%2 == 1 {
					via = "phase2"
				}
				tag := soakTags[rand.IntN(len(soakTags))]
				dir, err := os.MkdirTemp("", "soak-pull-")
				if err != nil {
					bgError("%s: %v", c.name, err)
					return
				}
				p := soakPull{client: c.name, via: via, tag: tag, start: time.Now()}
				p.digest, p.err = c.pull(vias[via], soakRepo+":"+tag, dir)
				p.end = time.Now()
				_ = os.RemoveAll(dir)
				mu.Lock()
				pulls = append(pulls, p)
				mu.Unlock()
			}
		}()
	}
	// The mirrors: mirror-sync's two phases at random lags, a random pause between them.
	for _, m := range n.mirrors {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !sleepOrStop(stop, rand.N(4*time.Second)) {
				for phase := 1; phase <= 2; phase++ {
					if phase == 2 && sleepOrStop(stop, rand.N(3*time.Second)) {
						return
					}
					start := time.Now()
					err := soakSyncPhase(script, n.tree, m.root, phase)
					journal.add("sync-"+m.name, start, "phase %d: %s", phase, soakStampOf(m.root))
					if err != nil {
						bgError("syncing %s, phase %d: %v", m.name, phase, err)
					}
				}
			}
		}()
	}
	// The redirector-only host: the unit's commands, as its timer runs them, with a lag.
	wg.Add(1)
	go func() {
		defer wg.Done()
		for !sleepOrStop(stop, time.Second+rand.N(4*time.Second)) {
			start := time.Now()
			err := unit.Run(time.Minute, nil)
			journal.add("sync-redirector-only", start, "%s", soakStampOf(host))
			if err != nil {
				bgError("regmirror-sync.service: %v", err)
			}
		}
	}()
	// How far apart the replicas' trees are, sampled.
	var samples, behind int
	var farthest uint64 // the most generations the host was behind
	wg.Add(1)
	go func() {
		defer wg.Done()
		for !sleepOrStop(stop, 200*time.Millisecond) {
			a, errA := layout.NewTree(n.tree).ReadStamp()
			b, errB := layout.NewTree(host).ReadStamp()
			if errA != nil || errB != nil {
				continue
			}
			mu.Lock()
			samples++
			if b.Generation < a.Generation {
				behind++
				farthest = max(farthest, a.Generation-b.Generation)
			}
			mu.Unlock()
		}
	}()

	// The promotions, in this goroutine.
	rng := rand.New(rand.NewPCG(uint64(began.UnixNano()), 9))
	t.Logf("promotion seed %d", began.UnixNano())
	var switches []time.Time
	var generations []string
	free := func() []int { // images no pulled tag points at
		var f []int
		for i := range imgs {
			if !slices.ContainsFunc(soakTags, func(tag string) bool { i2, ok := tags[tag]; return ok && i2 == i }) {
				f = append(f, i)
			}
		}
		return f
	}
	// An image deleted at the source rests for soakRest before a promotion may bring it back:
	// its files have left the tree and the mirrors by then, and come back as new content.
	deleted := map[int]time.Time{}
	resting := func(i int) bool { at, ok := deleted[i]; return ok && time.Since(at) < soakRest }
	deletions, refetched := 0, 0
	for step := 1; time.Now().Before(pullsUntil); step++ {
		next := time.Now().Add(soakEvery)
		var did []string
		// Move a pulled tag to another image: one back from resting if there is one.
		tag := soakTags[rng.IntN(len(soakTags))]
		var to []int
		for i := range imgs {
			if i != tags[tag] && !resting(i) {
				to = append(to, i)
			}
		}
		if back := slices.DeleteFunc(slices.Clone(to), func(i int) bool { _, ok := deleted[i]; return !ok }); len(back) > 0 {
			to = back
		}
		if len(to) > 0 {
			i := to[rng.IntN(len(to))]
			push(tag, i)
			did = append(did, fmt.Sprintf("%s → %s", tag, imgs[i].name))
			if _, ok := deleted[i]; ok {
				delete(deleted, i)
				refetched++
				did[len(did)-1] += " (back after resting)"
			}
		}
		// Now and then tag an image that no pulled tag points at "rc<step>", and delete such an
		// image at the source: the first time as soon as step 2, then now and then.
		var spare []int
		for _, i := range free() {
			if _, ok := deleted[i]; !ok {
				spare = append(spare, i)
			}
		}
		del := len(spare) > 0 && ((deletions == 0 && step >= 2) || rng.IntN(4) == 0)
		if len(spare) > 0 && (rng.IntN(3) == 0 || del) {
			i := spare[rng.IntN(len(spare))]
			rc := fmt.Sprintf("rc%d", step)
			push(rc, i)
			did = append(did, fmt.Sprintf("%s → %s (added)", rc, imgs[i].name))
		}
		if del {
			for _, i := range spare {
				var its []string
				for tg, j := range tags {
					if j == i {
						its = append(its, tg)
					}
				}
				if len(its) == 0 {
					continue
				}
				slices.Sort(its)
				src.DeleteTag(t, soakRepo, its[0])
				for _, tg := range its {
					delete(tags, tg)
				}
				deleted[i] = time.Now()
				deletions++
				did = append(did, fmt.Sprintf("%s deleted (%s)", imgs[i].name, strings.Join(its, ", ")))
				break
			}
		}
		before, _ := layout.NewTree(n.tree).ReadStamp()
		g := generate(t, src.URL, n.tree, generateArgs...)
		after, err := layout.NewTree(n.tree).ReadStamp()
		if err != nil {
			t.Fatal(err)
		}
		switched := time.Now()
		if after.Generation != before.Generation {
			mu.Lock()
			switches = append(switches, switched)
			mu.Unlock()
		}
		if len(did) == 0 {
			did = append(did, "nothing changed (the images a move could take are resting)")
		}
		journal.add("generate", switched.Add(-g.took), "%s", g.stdout)
		crawled := time.Now()
		c := regmirror(t, nil, "crawl", "--tree", n.tree)
		if c.err != nil {
			t.Errorf("%v", c)
		}
		journal.add("crawl", crawled, "%s", c.stdout)
		desc, err := soakRetiring(n.tree)
		if err != nil {
			t.Fatal(err)
		}
		generations = append(generations, fmt.Sprintf("generation %d at %s (generate %v, crawl %v): %s; %s\n%s",
			after.Generation, soakClock(switched), g.took.Round(time.Millisecond), c.took.Round(time.Millisecond), strings.Join(did, ", "), desc,
			lastLines(g.stdout, 1)))
		time.Sleep(time.Until(next))
	}
	stopAll()
	took := time.Since(began)

	// The figures.
	for _, g := range generations {
		t.Log(g)
	}
	var durations []time.Duration
	for _, p := range pulls {
		durations = append(durations, p.end.Sub(p.start))
	}
	slices.Sort(durations)
	if len(durations) > 0 {
		t.Logf("a pull took %v (median), %v at most", durations[len(durations)/2].Round(time.Millisecond), durations[len(durations)-1].Round(time.Millisecond))
	}
	type tally struct{ ok, failed, spanning int }
	per := map[string]*tally{}
	var failures []string
	spanning := 0
	for _, p := range pulls {
		key := p.client + " via " + p.via
		if per[key] == nil {
			per[key] = &tally{}
		}
		span := slices.ContainsFunc(switches, func(s time.Time) bool { return s.After(p.start) && s.Before(p.end) })
		if span {
			per[key].spanning++
			spanning++
		}
		if p.err != nil {
			per[key].failed++
			failures = append(failures, fmt.Sprintf("%s %s:%s via %s (%s to %s, spanning a switch: %v): %s",
				p.client, soakRepo, p.tag, p.via, soakClock(p.start), soakClock(p.end), span, lastLines(p.err.Error(), 6)))
			continue
		}
		per[key].ok++
	}
	for _, key := range slices.Sorted(maps.Keys(per)) {
		c := per[key]
		t.Logf("%-28s %3d pulls, %3d failed, %3d spanning a switch", key, c.ok+c.failed, c.failed, c.spanning)
	}
	for _, f := range []*soakFront{front, p2front} {
		f.mu.Lock()
		for _, b := range slices.Sorted(maps.Keys(f.answers)) {
			t.Logf("front → %s: answers by status %v", b, f.answers[b])
		}
		for i, nf := range f.notFound {
			if i == 10 {
				t.Logf("… and %d more 404s", len(f.notFound)-i)
				break
			}
			t.Logf("404 through the front: %s", nf)
		}
		f.mu.Unlock()
	}
	mu.Lock()
	t.Logf("%d pulls, %d failed, %d spanning a switch; %d generations switched; %d images deleted at the source, %d brought back after resting; the redirector-only host behind the tree in %d of %d samples, by %d generations at most; %v in all",
		len(pulls), len(failures), spanning, len(switches), deletions, refetched, behind, samples, farthest, took.Round(time.Second))
	mu.Unlock()

	// The results.
	for i, f := range failures {
		if i == 15 {
			t.Errorf("… and %d more failed pulls", len(failures)-i)
			break
		}
		t.Errorf("failed pull: %s", f)
	}
	for _, e := range bgErrs {
		t.Errorf("%s", e)
	}
	byClient := map[string]*soakClient{}
	for _, c := range clients {
		byClient[c.name] = c
	}
	for _, p := range pulls {
		if p.err != nil {
			continue
		}
		var want []string
		for _, i := range slices.Sorted(maps.Keys(seen[p.tag])) {
			if byClient[p.client].amd64 {
				want = append(want, imgs[i].amd64)
			} else {
				want = append(want, imgs[i].top)
			}
		}
		if !slices.Contains(want, p.digest) {
			t.Errorf("%s pulled %s:%s via %s as %s, which is none of the images the tag pointed to: %v", p.client, soakRepo, p.tag, p.via, p.digest, want)
		}
	}
	hexes := map[string]bool{}
	for _, im := range imgs {
		for _, h := range im.hexes {
			hexes[h] = true
		}
	}
	hexRE := regexp.MustCompile(`[0-9a-f]{64}`)
	logs := map[string]*peers.Nginx{"origin": n.origin}
	for _, m := range n.mirrors {
		logs[m.name] = m.nginx
	}
	for _, name := range slices.Sorted(maps.Keys(logs)) {
		var bad []string
		lines := logs[name].AccessLog()
		for _, line := range lines {
			f := strings.Fields(line)
			if len(f) >= 3 && f[2] == "404" && hexes[hexRE.FindString(f[1])] {
				bad = append(bad, line)
			}
		}
		t.Logf("%s: %d requests in its access log, %d answered 404 for a blob of the images", name, len(lines), len(bad))
		for i, line := range bad {
			if i == 5 {
				t.Errorf("%s: … and %d more", name, len(bad)-i)
				break
			}
			t.Errorf("%s access log: %s: want no 404 for a blob of a served manifest", name, line)
		}
	}

	// The soak soaked: promotions switched, both replicas and the phase-2 mirror answered,
	// pulls spanned switches, and the redirector-only host held the metadata only.
	if deletions == 0 || refetched == 0 {
		t.Errorf("%d images deleted at the source, %d brought back after resting: want both", deletions, refetched)
	}
	if len(switches) < 10 {
		t.Errorf("%d generations switched during the run, want at least 10", len(switches))
	}
	if spanning == 0 {
		t.Errorf("no pull spanned a switch: slow the pulls down")
	}
	for _, f := range []*soakFront{front, p2front} {
		for b, st := range f.answers {
			if st[http.StatusOK]+st[http.StatusTemporaryRedirect] == 0 {
				t.Errorf("%s answered no request through the front with 200 or 307", b)
			}
		}
	}
	if len(front.answers) != 2 {
		t.Errorf("the front reached %d replicas, want 2", len(front.answers))
	}
	if _, err := os.Stat(filepath.Join(host, layout.BlobsDir)); err == nil {
		t.Errorf("the redirector-only host's tree has %s/, want only %s/", layout.BlobsDir, layout.MetaDir)
	}
	if t.Failed() {
		keepSoakLogs(t, logs, map[string]string{"serve-full-tree.log": full.proc.Log, "serve-redirector-only.log": metaOnly.proc.Log}, journal)
	}
	for _, tag := range soakTags {
		var names []string
		for _, i := range slices.Sorted(maps.Keys(seen[tag])) {
			names = append(names, imgs[i].name)
		}
		t.Logf("%s pointed to %s during the run", tag, strings.Join(names, ", "))
	}
}

// soakJournal records what the soak's actors did (syncs, generates, crawls), each entry
// with the time it started and ended as the access logs write times, one log per actor.
type soakJournal struct {
	mu   sync.Mutex
	logs map[string]*strings.Builder
}

func (j *soakJournal) add(actor string, start time.Time, format string, args ...any) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.logs == nil {
		j.logs = map[string]*strings.Builder{}
	}
	if j.logs[actor] == nil {
		j.logs[actor] = &strings.Builder{}
	}
	fmt.Fprintf(j.logs[actor], "%s-%s %s\n", soakClock(start), soakClock(time.Now()), strings.TrimRight(fmt.Sprintf(format, args...), "\n"))
}

// soakStampOf describes the generation a tree's stamp names.
func soakStampOf(dir string) string {
	st, err := layout.NewTree(dir).ReadStamp()
	if err != nil {
		return err.Error()
	}
	return fmt.Sprintf("generation %d (%s)", st.Generation, st.Meta)
}

// keepSoakLogs copies the nginx access logs, the replicas' logs and the journal of a failed
// soak to a directory that outlives the test, and says where.
func keepSoakLogs(t *testing.T, nginx map[string]*peers.Nginx, files map[string]string, journal *soakJournal) {
	t.Helper()
	dir, err := os.MkdirTemp("", "regmirror-soak-logs-")
	if err != nil {
		t.Logf("keeping the logs: %v", err)
		return
	}
	for name, n := range nginx {
		files[name+"-access.log"] = n.Config.AccessLogPath()
	}
	for name, p := range files {
		b, err := os.ReadFile(p)
		if err == nil {
			err = os.WriteFile(filepath.Join(dir, name), b, 0o644)
		}
		if err != nil {
			t.Logf("keeping %s: %v", p, err)
		}
	}
	journal.mu.Lock()
	for actor, b := range journal.logs {
		if err := os.WriteFile(filepath.Join(dir, actor+".log"), []byte(b.String()), 0o644); err != nil {
			t.Logf("keeping the journal of %s: %v", actor, err)
		}
	}
	journal.mu.Unlock()
	t.Logf("the access logs, the replicas' logs and the journal of syncs, generates and crawls are kept in %s", dir)
}
