package e2e

import (
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/regmirror/regmirror/internal/testsupport/geoiptest"
	"github.com/regmirror/regmirror/internal/testsupport/peers"
	"github.com/regmirror/regmirror/internal/testsupport/testimages"
	"github.com/regmirror/regmirror/layout"
)

// multiArchRelease is repo:tag as an OCI index of an amd64 and an arm64 image, each of a
// random layer of its own (seeded: same seed, same digests).
func multiArchRelease(t testing.TB, seed uint64, repo, tag string) testimages.Ref {
	t.Helper()
	var imgs []v1.Image
	for i, arch := range []string{"amd64", "arm64"} {
		l := randomImages(t, seed*10+uint64(i), []string{repo}, 1, 1, 64<<10)[0]
		layers, err := l.Image.Layers()
		if err != nil {
			t.Fatal(err)
		}
		img, err := testimages.Image(types.OCIManifestSchema1, types.OCIConfigJSON, arch, layers...)
		if err != nil {
			t.Fatal(err)
		}
		imgs = append(imgs, img)
	}
	return testimages.Ref{Repo: repo, Tags: []string{tag}, Index: testimages.Index(types.OCIImageIndex, imgs...)}
}

// refBlobs returns, per architecture, the files of blobs/ that ref's images of it reference
// (manifest, config, layers), and the files no platform claims (an index).
func refBlobs(t testing.TB, ref testimages.Ref) (byArch map[string][]string, any []string) {
	t.Helper()
	byArch = map[string][]string{}
	image := func(img v1.Image) {
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		d, err := img.Digest()
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := img.ConfigName()
		if err != nil {
			t.Fatal(err)
		}
		byArch[cf.Architecture] = append(byArch[cf.Architecture], d.String(), cfg.String())
		layers, err := img.Layers()
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range layers {
			ld, err := l.Digest()
			if err != nil {
				t.Fatal(err)
			}
			byArch[cf.Architecture] = append(byArch[cf.Architecture], ld.String())
		}
	}
	if ref.Index == nil {
		image(ref.Image)
		return byArch, nil
	}
	d, err := ref.Index.Digest()
	if err != nil {
		t.Fatal(err)
	}
	im, err := ref.Index.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range im.Manifests {
		img, err := ref.Index.Image(c.Digest)
		if err != nil {
			t.Fatal(err)
		}
		image(img)
	}
	return byArch, []string{d.String()}
}

// childDigest is the digest of ref's (an index) image for arch.
func childDigest(t testing.TB, ref testimages.Ref, arch string) string {
	t.Helper()
	im, err := ref.Index.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range im.Manifests {
		if c.Platform != nil && c.Platform.Architecture == arch {
			return c.Digest.String()
		}
	}
	t.Fatalf("%s:%s has no %s image", ref.Repo, ref.Tags[0], arch)
	return ""
}

// mirrorBlobs lists the digests of the files in a mirror's blobs/sha256/.
func mirrorBlobs(t testing.TB, root string) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(root, "blobs", "sha256"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		out = append(out, "sha256:"+e.Name())
	}
	slices.Sort(out)
	return out
}

func setOf(lists ...[]string) map[string]bool {
	s := map[string]bool{}
	for _, l := range lists {
		for _, x := range l {
			s[x] = true
		}
	}
	return s
}

func diffSets(got, want map[string]bool) (missing, extra []string) {
	for x := range want {
		if !got[x] {
			missing = append(missing, x)
		}
	}
	for x := range got {
		if !want[x] {
			extra = append(extra, x)
		}
	}
	slices.Sort(missing)
	slices.Sort(extra)
	return missing, extra
}

// TestSubsetMirrors is issue 12 end to end: an amd64-only and an arm64-only mirror in DE, a
// full mirror in the US, an archive mirror in NL, all nginx filled by deploy/mirror-sync
// --subset; the demo set with fedora:41 (amd64 and arm64) archived and fedora:40 removed at
// the source later and kept (--keep-removed).
func TestSubsetMirrors(t *testing.T) {
	needPeers(t)
	peers.CleanHostResidue(t)
	refs := demo(t)
	f41 := multiArchRelease(t, 41, "fedora", "41")
	f40 := multiArchRelease(t, 40, "fedora", "40")
	refs = append(refs, f41, f40)
	n := &mirrorNetwork{clientFixture: &clientFixture{d: clientDigestsOf(t, refs), tree: filepath.Join(t.TempDir(), "tree")}}
	if err := os.MkdirAll(n.tree, 0o755); err != nil {
		t.Fatal(err)
	}
	n.startMirrors(t, []*netMirror{
		{name: "de-amd64", country: "DE", bandwidth: 100, content: []string{"amd64"}},
		{name: "de-arm64", country: "DE", bandwidth: 100, content: []string{"arm64"}},
		{name: "us-full", country: "US", bandwidth: 100},
		{name: "nl-archive", country: "NL", bandwidth: 100, content: []string{"archive"}},
	}, []string{"de-amd64", "de-arm64", "us-full", "nl-archive"})
	subsetArgs := map[string][]string{
		"de-amd64":   {"--subset", "amd64"},
		"de-arm64":   {"--subset", "arm64"},
		"us-full":    {"--subset", "amd64", "--subset", "arm64"}, // every architecture the tree has, no archive
		"nl-archive": {"--subset", "archive"},
	}
	syncAll := func(t *testing.T) {
		t.Helper()
		for _, m := range n.mirrors {
			peers.SyncMirrorPhase(t, n.tree, m.root, 0, subsetArgs[m.name]...)
		}
	}
	n.src = peers.StartRegistry(t)
	n.src.Push(t, refs)
	flags := []string{"--mirrors", n.mirrorsFile, "--archive", "fedora:41", "--keep-removed"}
	r := generate(t, n.src.URL, n.tree, flags...)
	t.Logf("generate: %s", lastLines(r.stdout+r.stderr, 3))
	if out := r.stdout + r.stderr; !strings.Contains(out, "subsets: amd64 ") || !strings.Contains(out, "archive ") {
		t.Errorf("generate's summary shows no bytes per subset:\n%s", lastLines(out, 3))
	}
	syncAll(t)
	m := n.crawl(t)
	for _, mi := range m.Mirrors {
		if !mi.Healthy || mi.Generation != 1 {
			t.Fatalf("mirror %s after the first crawl: healthy %v, generation %d (%s); want healthy at 1", mi.Name, mi.Healthy, mi.Generation, mi.Status)
		}
	}

	// What each mirror must hold, from the images pushed (not from the tree's metadata).
	live := map[string][]string{}
	var liveAny, archived []string
	for _, ref := range refs {
		byArch, anyArch := refBlobs(t, ref)
		if ref.Repo == "fedora" && ref.Tags[0] == "41" {
			for _, l := range byArch {
				archived = append(archived, l...)
			}
			archived = append(archived, anyArch...)
			continue
		}
		for a, l := range byArch {
			live[a] = append(live[a], l...)
		}
		liveAny = append(liveAny, anyArch...)
	}
	liveAll := setOf(live["amd64"], live["arm64"], liveAny)
	archiveOnly := map[string]bool{}
	for _, d := range archived {
		if !liveAll[d] {
			archiveOnly[d] = true
		}
	}
	if len(archiveOnly) < 6 {
		t.Fatalf("fedora:41 has %d blobs of its own, want at least 6 (its index, two manifests, two configs, two layers)", len(archiveOnly))
	}
	t.Run("mirror-contents", func(t *testing.T) {
		for _, tc := range []struct {
			mirror string
			want   map[string]bool
		}{
			{"de-amd64", setOf(live["amd64"], liveAny)},
			{"de-arm64", setOf(live["arm64"], liveAny)},
			{"us-full", liveAll},
			{"nl-archive", archiveOnly},
		} {
			missing, extra := diffSets(setOf(mirrorBlobs(t, n.mirror(tc.mirror).root)), tc.want)
			if len(missing)+len(extra) > 0 {
				t.Errorf("mirror %s: lacks %v, holds besides %v", tc.mirror, missing, extra)
			}
		}
	})

	db := filepath.Join(t.TempDir(), "GeoIP2-Country.mmdb")
	if err := geoiptest.Write(db, netWorld); err != nil {
		t.Fatal(err)
	}
	n.canonical = clientServe(t, n.tree, nil, "--geoip", db, "--trusted-proxy", "127.0.0.1/32")
	upstream := strings.Replace(n.canonical.Host, "localhost", "127.0.0.1", 1)
	edges := []*peers.Edge{{Upstream: upstream, ClientAddr: netClientAddr(t, "DE")}, {Upstream: upstream, ClientAddr: netClientAddr(t, "US")}}
	peers.StartEdges(t, edges)
	n.edges = map[string]peers.Endpoint{"DE": edges[0].Endpoint, "US": edges[1].Endpoint}
	n.startClients(t)
	de, us := n.edges["DE"], n.edges["US"]

	// Each blob a pull fetches comes from a mirror carrying it, never from another.
	f42 := refs[0]
	for _, tc := range []struct {
		name   string
		ep     peers.Endpoint
		ref    testimages.Ref
		arch   string
		want   []string
		podman bool
	}{
		{"DE-amd64-fedora-42", de, f42, "amd64", []string{"de-amd64"}, false},
		{"DE-arm64-fedora-42", de, f42, "arm64", []string{"de-arm64"}, false},
		{"US-arm64-fedora-42", us, f42, "arm64", []string{"us-full"}, false},
		{"DE-arm64-fedora-41-archived", de, f41, "arm64", []string{"nl-archive"}, false},
		{"US-amd64-fedora-41-archived", us, f41, "amd64", []string{"nl-archive"}, false},
		{"DE-podman-arm64-fedora-42", de, f42, "arm64", []string{"de-arm64"}, true},
		{"DE-podman-amd64-fedora-41-archived", de, f41, "amd64", []string{"nl-archive"}, true},
	} {
		t.Run("pull-"+tc.name, func(t *testing.T) {
			child := childDigest(t, tc.ref, tc.arch)
			img, err := tc.ref.Index.Image(v1.Hash{Algorithm: "sha256", Hex: strings.TrimPrefix(child, "sha256:")})
			if err != nil {
				t.Fatal(err)
			}
			byArch, _ := refBlobs(t, testimages.Ref{Image: img})
			blobs := slices.DeleteFunc(slices.Clone(byArch[tc.arch]), func(d string) bool { return d == child }) // the manifest comes from serve
			name := tc.ref.Repo + ":" + tc.ref.Tags[0]
			n.fromMirrors(t, tc.want, blobs, func(t *testing.T) {
				if tc.podman {
					d, err := tc.ref.Index.Digest()
					if err != nil {
						t.Fatal(err)
					}
					n.podman.Pull(t, tc.ep, name, d.String(), "--arch", tc.arch)
					return
				}
				n.skopeo.CopyDir(t, tc.ep, name, child, "--override-arch", tc.arch)
			})
		})
	}
	if bad := n.badBlobAnswers(); len(bad) > 0 {
		t.Errorf("mirrors answered blob requests with errors (a blob sent to a mirror lacking it):\n%s", strings.Join(bad, "\n"))
	}

	// The crawl flags an arm64 mirror lacking an arm64 blob (it never held amd64 ones).
	t.Run("crawl-per-subset", func(t *testing.T) {
		arm := n.mirror("de-arm64")
		layer := live["arm64"][len(live["arm64"])-1]
		p := filepath.Join(arm.root, filepath.FromSlash(layout.BlobPath(layout.MustDigest(layer))))
		aside := p + ".aside"
		if err := os.Rename(p, aside); err != nil {
			t.Fatal(err)
		}
		m := n.crawl(t)
		got := m.Mirrors[slices.IndexFunc(m.Mirrors, func(mi *layout.Mirror) bool { return mi.Name == "de-arm64" })]
		if got.Healthy || !strings.HasPrefix(got.Status, "arm64: ") || !strings.Contains(got.Status, strings.TrimPrefix(layer, "sha256:")[:12]) {
			t.Errorf("de-arm64 lacking arm64 layer %s: healthy %v, status %q; want unhealthy, \"arm64: …\" naming the layer", layer, got.Healthy, got.Status)
		}
		if err := os.Rename(aside, p); err != nil {
			t.Fatal(err)
		}
		m = n.crawl(t)
		for _, mi := range m.Mirrors {
			if !mi.Healthy {
				t.Errorf("mirror %s after the layer is back: unhealthy (%s); an arm64 mirror holds no amd64 blob and must not be flagged for it", mi.Name, mi.Status)
			}
		}
	})

	// fedora:40 removed at the source: kept, archived; the archive mirror gets its blobs and
	// serves its pulls; the architecture mirrors keep them through the grace, then delete them.
	t.Run("keep-removed", func(t *testing.T) {
		n.src.DeleteTag(t, "fedora", "40")
		r := generate(t, n.src.URL, n.tree, flags...)
		t.Logf("generate: %s", lastLines(r.stdout+r.stderr, 3))
		syncAll(t)
		n.crawl(t)
		byArch, anyArch := refBlobs(t, f40)
		f40Blobs := setOf(byArch["amd64"], byArch["arm64"], anyArch)
		if missing, _ := diffSets(setOf(mirrorBlobs(t, n.mirror("nl-archive").root)), f40Blobs); len(missing) > 0 {
			t.Errorf("nl-archive after fedora:40 was removed at the source: lacks its blobs %v", missing)
		}
		if missing, _ := diffSets(setOf(mirrorBlobs(t, n.mirror("de-amd64").root)), setOf(byArch["amd64"])); len(missing) > 0 {
			t.Errorf("de-amd64 within the grace: deleted fedora:40's amd64 blobs %v already", missing)
		}
		child := childDigest(t, f40, "amd64")
		img, err := f40.Index.Image(v1.Hash{Algorithm: "sha256", Hex: strings.TrimPrefix(child, "sha256:")})
		if err != nil {
			t.Fatal(err)
		}
		ib, _ := refBlobs(t, testimages.Ref{Image: img})
		blobs := slices.DeleteFunc(slices.Clone(ib["amd64"]), func(d string) bool { return d == child })
		// The redirector picks the generation up by itself: wait until it sends fedora:40's
		// layer to the archive mirror.
		layer := blobs[len(blobs)-1]
		client := clientHTTP(de, false)
		deadline := time.Now().Add(30 * time.Second)
		for {
			resp, err := client.Get(de.URL() + "/v2/fedora/blobs/" + layer)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			loc := resp.Header.Get("Location")
			if resp.StatusCode == http.StatusTemporaryRedirect && n.whose(loc) == "nl-archive" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("30 s after the crawl of the generation with fedora:40 archived, its layer still gets %s (Location %q), want a 307 to nl-archive", resp.Status, loc)
			}
			time.Sleep(200 * time.Millisecond)
		}
		n.fromMirrors(t, []string{"nl-archive"}, blobs, func(t *testing.T) {
			n.skopeo.CopyDir(t, de, "fedora:40", child, "--override-arch", "amd64")
		})

		// Past the grace (a generation with --gc-grace 1s, a second later), the amd64
		// mirror's sync deletes fedora:40's blobs; the archive mirror keeps them.
		time.Sleep(1100 * time.Millisecond)
		r = generate(t, n.src.URL, n.tree, append(flags, "--gc-grace", "1s")...)
		t.Logf("generate: %s", lastLines(r.stdout+r.stderr, 3))
		syncAll(t)
		if _, extra := diffSets(setOf(mirrorBlobs(t, n.mirror("de-amd64").root)), setOf(live["amd64"], liveAny)); len(extra) > 0 {
			t.Errorf("de-amd64 past the grace: still holds %v (fedora:40's: %v)", extra, byArch["amd64"])
		}
		if missing, _ := diffSets(setOf(mirrorBlobs(t, n.mirror("nl-archive").root)), f40Blobs); len(missing) > 0 {
			t.Errorf("nl-archive past the grace: lacks fedora:40's %v", missing)
		}
	})
}
