package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	ocilayout "github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/regmirror/regmirror/internal/testsupport/peers"
	"github.com/regmirror/regmirror/internal/testsupport/testimages"
	"github.com/regmirror/regmirror/layout"
)

// extraRefs are repositories beyond the demo set: nested names for the --repo globs, several
// tags per repository, and a Docker manifest list.
func extraRefs(t testing.TB) []testimages.Ref {
	t.Helper()
	refs := randomImages(t, 1, []string{"extra/app"}, 3, 2, 64<<10)
	refs = append(refs, randomImages(t, 2, []string{"extra/deep/nested"}, 1, 1, 32<<10)...)
	mk := func(arch string, b byte) v1.Image {
		l := static.NewLayer([]byte(strings.Repeat(string(b), 4096)), types.DockerUncompressedLayer)
		img, err := testimages.Image(types.DockerManifestSchema2, types.DockerConfigJSON, arch, l)
		if err != nil {
			t.Fatal(err)
		}
		return img
	}
	list := testimages.Index(types.DockerManifestList, mk("amd64", 'a'), mk("arm64", 'b'))
	return append(refs, testimages.Ref{Repo: "extra/dockerlist", Tags: []string{"1", "latest"}, Index: list})
}

// platformImage is the image a client on os/arch gets for ref: the index child for that
// platform, or the image itself.
func platformImage(t testing.TB, ref testimages.Ref, arch string) v1.Image {
	t.Helper()
	if ref.Image != nil {
		return ref.Image
	}
	im, err := ref.Index.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range im.Manifests {
		if d.Platform != nil && d.Platform.OS == "linux" && d.Platform.Architecture == arch {
			img, err := ref.Index.Image(d.Digest)
			if err != nil {
				t.Fatal(err)
			}
			return img
		}
	}
	t.Fatalf("%s has no linux/%s image", ref.Repo, arch)
	return nil
}

// uniqueContent returns the distinct manifests (tagged and index children) and blobs (configs
// and layers) of refs.
func uniqueContent(t testing.TB, refs []testimages.Ref) (manifests, blobs map[v1.Hash]bool) {
	t.Helper()
	manifests, blobs = map[v1.Hash]bool{}, map[v1.Hash]bool{}
	addImage := func(img v1.Image) {
		d, err := img.Digest()
		if err != nil {
			t.Fatal(err)
		}
		manifests[d] = true
		m, err := img.Manifest()
		if err != nil {
			t.Fatal(err)
		}
		blobs[m.Config.Digest] = true
		for _, l := range m.Layers {
			blobs[l.Digest] = true
		}
	}
	for _, r := range refs {
		if r.Image != nil {
			addImage(r.Image)
			continue
		}
		d, err := r.Index.Digest()
		if err != nil {
			t.Fatal(err)
		}
		manifests[d] = true
		im, err := r.Index.IndexManifest()
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range im.Manifests {
			img, err := r.Index.Image(c.Digest)
			if err != nil {
				t.Fatal(err)
			}
			addImage(img)
		}
	}
	return manifests, blobs
}

// skopeoPolicy writes a signature policy that accepts everything, so skopeo does not depend on
// the machine's /etc/containers/policy.json.
func skopeoPolicy(t testing.TB) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "policy.json")
	if err := os.WriteFile(p, []byte(`{"default":[{"type":"insecureAcceptAnything"}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// ociRefName is the OCI image layout's org.opencontainers.image.ref.name grammar, which
// skopeo enforces on oci: references.
var ociRefName = regexp.MustCompile(`^[A-Za-z0-9]+(([-._:@+]|--)[A-Za-z0-9]+)*(/[A-Za-z0-9]+(([-._:@+]|--)[A-Za-z0-9]+)*)*$`)

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// TestGeneratePublishesEveryTag publishes the demo images and extra repositories from
// docker-registry and reads every tag back with skopeo from the tree as an OCI layout.
func TestGeneratePublishesEveryTag(t *testing.T) {
	needPeers(t)
	skopeo := peers.Require(t, "skopeo")
	policy := skopeoPolicy(t)
	reg := peers.StartRegistry(t)
	refs := append(demo(t), extraRefs(t)...)
	// Valid registry names outside the OCI ref.name grammar: published all the same.
	odd := randomImages(t, 4, []string{"extra/odd__name"}, 1, 1, 8<<10)
	odd[0].Tags = []string{"_underscore", "plain"}
	refs = append(refs, odd...)
	reg.Push(t, refs)
	out := filepath.Join(t.TempDir(), "tree")

	r := generate(t, reg.URL, out)
	t.Logf("generate took %v; last line: %s", r.took.Round(time.Millisecond), lastLines(r.stderr+r.stdout, 1))
	w := wantOf(t, refs)
	checkPublished(t, out, w)
	checkTree(t, out)
	if n := rehashAllBlobs(t, out); n == 0 {
		t.Fatalf("blobs/sha256 is empty")
	}
	t.Run("--verify-layers accepts every image", func(t *testing.T) {
		// gzip, zstd and uncompressed layers, OCI and Docker, as docker-registry serves them.
		other := filepath.Join(t.TempDir(), "tree")
		generate(t, reg.URL, other, "--verify-layers")
		checkPublished(t, other, wantOf(t, refs))
		generate(t, reg.URL, other, "--verify")
		checkTree(t, other)
	})

	byName := map[string]testimages.Ref{}
	for _, ref := range refs {
		for _, tag := range ref.Tags {
			byName[ref.Repo+":"+tag] = ref
		}
	}
	type copyCase struct {
		name string
		args []string // extra skopeo arguments
		arch string
	}
	_, index := readIndex(t, out)
	mediaTypes := map[string]types.MediaType{}
	for _, d := range index.Manifests {
		mediaTypes[d.Annotations[refNameAnnotation]] = d.MediaType
	}
	for _, name := range w.keys() {
		t.Run(name, func(t *testing.T) {
			ref := byName[name]
			cases := []copyCase{{name: "host platform", arch: "amd64"}}
			if ref.Index != nil {
				cases = append(cases, copyCase{name: "arm64", args: []string{"--override-arch", "arm64"}, arch: "arm64"})
			}
			if mt := mediaTypes[name]; mt != types.OCIManifestSchema1 && mt != types.OCIImageIndex || !ociRefName.MatchString(name) {
				// containers/image's oci: transport only looks at index.json entries of OCI
				// media types (oci/layout getManifestDescriptor), so skopeo cannot address a
				// Docker schema 2 manifest or manifest list in any OCI layout, nor a name
				// outside the ref.name grammar. Read those with go-containerregistry's layout
				// package instead.
				for _, c := range cases {
					t.Run(c.name+" (go-containerregistry layout)", func(t *testing.T) {
						checkViaGGCRLayout(t, out, name, w[name], platformImage(t, ref, c.arch), c.arch)
					})
				}
				return
			}
			loc := "oci:" + out + ":" + name
			raw := peers.Run(t, time.Minute, skopeo, "--policy", policy, "inspect", "--raw", loc)
			if got, want := "sha256:"+sha256Hex([]byte(raw)), w[name].String(); got != want {
				t.Errorf("skopeo inspect --raw %s: got bytes hashing to %s, want %s", name, got, want)
			}
			var info struct {
				Architecture string
				Layers       []string
			}
			if err := json.Unmarshal([]byte(peers.Run(t, time.Minute, skopeo, "--policy", policy, "inspect", loc)), &info); err != nil {
				t.Fatalf("skopeo inspect %s: %v", name, err)
			}
			if info.Architecture != "amd64" {
				t.Errorf("skopeo inspect %s: got architecture %q, want amd64", name, info.Architecture)
			}
			for _, c := range cases {
				t.Run(c.name, func(t *testing.T) {
					img := platformImage(t, ref, c.arch)
					dir := filepath.Join(t.TempDir(), "copy")
					args := append([]string{"--policy", policy}, c.args...)
					peers.Run(t, 2*time.Minute, skopeo, append(args, "copy", "--quiet", loc, "dir:"+dir)...)
					mf, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
					if err != nil {
						t.Fatal(err)
					}
					wantDigest, err := img.Digest()
					if err != nil {
						t.Fatal(err)
					}
					if got := "sha256:" + sha256Hex(mf); got != wantDigest.String() {
						t.Errorf("copied manifest: got %s, want %s", got, wantDigest)
					}
					m, err := img.Manifest()
					if err != nil {
						t.Fatal(err)
					}
					var wantLayers []string
					for _, l := range m.Layers {
						wantLayers = append(wantLayers, l.Digest.String())
					}
					if c.arch == "amd64" && !slices.Equal(info.Layers, wantLayers) {
						t.Errorf("skopeo inspect layers: got %v, want %v", info.Layers, wantLayers)
					}
					for _, d := range append([]v1.Descriptor{m.Config}, m.Layers...) {
						got, err := peers.FileDigest(filepath.Join(dir, d.Digest.Hex))
						if err != nil {
							t.Errorf("copied blob %s: %v", d.Digest, err)
						} else if got != d.Digest.String() {
							t.Errorf("copied blob %s: got bytes hashing to %s", d.Digest, got)
						}
					}
				})
			}
		})
	}
}

// checkViaGGCRLayout reads name from the tree with go-containerregistry's OCI layout package:
// the tagged manifest's digest, the platform image's digest, and every blob of it hashing
// right.
func checkViaGGCRLayout(t *testing.T, out, name string, tagged v1.Hash, want v1.Image, arch string) {
	t.Helper()
	p, err := ocilayout.FromPath(out)
	if err != nil {
		t.Fatal(err)
	}
	ii, err := p.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	im, err := ii.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	var img v1.Image
	for _, d := range im.Manifests {
		if d.Annotations[refNameAnnotation] != name {
			continue
		}
		if d.Digest != tagged {
			t.Errorf("%s: got %s, want %s", name, d.Digest, tagged)
		}
		if d.MediaType.IsIndex() {
			child, err := ii.ImageIndex(d.Digest)
			if err != nil {
				t.Fatal(err)
			}
			cm, err := child.IndexManifest()
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range cm.Manifests {
				if c.Platform != nil && c.Platform.Architecture == arch {
					if img, err = child.Image(c.Digest); err != nil {
						t.Fatal(err)
					}
				}
			}
		} else if img, err = ii.Image(d.Digest); err != nil {
			t.Fatal(err)
		}
	}
	if img == nil {
		t.Fatalf("%s: no linux/%s image found through the layout", name, arch)
	}
	got, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	if wd, _ := want.Digest(); got != wd {
		t.Errorf("%s linux/%s: got image %s, want %s", name, arch, got, wd)
	}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range layers {
		d, _ := l.Digest()
		rc, err := l.Compressed()
		if err != nil {
			t.Fatalf("layer %s: %v", d, err)
		}
		h := sha256.New()
		_, err = io.Copy(h, rc)
		rc.Close()
		if err != nil {
			t.Fatalf("layer %s: %v", d, err)
		}
		if gotH := "sha256:" + hex.EncodeToString(h.Sum(nil)); gotH != d.String() {
			t.Errorf("layer %s: got bytes hashing to %s", d, gotH)
		}
	}
	if _, err := img.ConfigFile(); err != nil {
		t.Errorf("%s config: %v", name, err)
	}
}

// TestGenerateRepoGlobs checks that --repo selects repositories as design.md says: "*" within
// a path segment, "**" across segments, several flags adding up.
func TestGenerateRepoGlobs(t *testing.T) {
	needPeers(t)
	reg := peers.StartRegistry(t)
	refs := append(demo(t), extraRefs(t)...)
	reg.Push(t, refs)
	all := wantOf(t, refs)

	tests := []struct {
		name  string
		globs []string
		repos []string
	}{
		{"no glob selects everything", nil, []string{"fedora", "fedora/toolbox", "fedora/httpd", "fedora/minimal", "extra/app", "extra/deep/nested", "extra/dockerlist"}},
		{"exact name", []string{"fedora"}, []string{"fedora"}},
		{"star stays in its segment", []string{"fedora/*"}, []string{"fedora/toolbox", "fedora/httpd", "fedora/minimal"}},
		{"lone star is one segment", []string{"*"}, []string{"fedora"}},
		{"star does not cross slashes", []string{"extra/*"}, []string{"extra/app", "extra/dockerlist"}},
		{"double star crosses slashes", []string{"extra/**"}, []string{"extra/app", "extra/deep/nested", "extra/dockerlist"}},
		{"leading double star", []string{"**/nested"}, []string{"extra/deep/nested"}},
		{"star inside a segment", []string{"fedora/*i*"}, []string{"fedora/minimal"}},
		{"several flags add up", []string{"fedora", "extra/app", "fedora/toolbox"}, []string{"fedora", "extra/app", "fedora/toolbox"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "tree")
			var args []string
			for _, g := range tc.globs {
				args = append(args, "--repo", g)
			}
			generate(t, reg.URL, out, args...)
			w := want{}
			for name, d := range all {
				repo, _, _ := strings.Cut(name, ":")
				if slices.Contains(tc.repos, repo) {
					w[name] = d
				}
			}
			checkPublished(t, out, w)
			checkTree(t, out)
		})
	}
}

// TestGenerateLifecycle follows one tree through re-runs against a changing source: a no-op
// re-run costs about one request per tag and fetches no blob; a tag deleted at the source
// leaves the next generation while its blobs wait out the grace period; --dry-run writes
// nothing; the next real run applies what the dry run planned.
func TestGenerateLifecycle(t *testing.T) {
	needPeers(t)
	reg := peers.StartRegistry(t)
	refs := append(demo(t), extraRefs(t)...)
	reg.Push(t, refs)
	w := wantOf(t, refs)
	proxy := newSourceProxy(t, reg.URL, 0)
	out := filepath.Join(t.TempDir(), "tree")

	generate(t, proxy.URL, out)
	checkPublished(t, out, w)
	m0 := checkTree(t, out)
	t.Logf("first run: %s", proxy)
	manifests, blobs := uniqueContent(t, refs)
	// Every blob at most once per run across repositories (the base layer is in several).
	if got := proxy.Count("GET blob"); got != len(blobs) {
		t.Errorf("first run GET blob: got %d, want %d (each unique config and layer once)", got, len(blobs))
	}
	if got := proxy.Count("GET manifest"); got > len(manifests) {
		t.Errorf("first run GET manifest: got %d, want at most %d (each unique manifest once)", got, len(manifests))
	}

	t.Run("no-op re-run fetches no blob", func(t *testing.T) {
		proxy.Reset()
		r := generate(t, proxy.URL, out)
		repos := map[string]bool{}
		for name := range w {
			repo, _, _ := strings.Cut(name, ":")
			repos[repo] = true
		}
		t.Logf("re-run over %d tags in %d repositories: %d requests (%s) in %v", len(w), len(repos), proxy.Total(), proxy, r.took.Round(time.Millisecond))
		for _, key := range []string{"GET blob", "HEAD blob", "GET manifest"} {
			if got := proxy.Count(key); got != 0 {
				t.Errorf("%s requests: got %d, want 0 (every digest is already in the tree)", key, got)
			}
		}
		// One HEAD per tag, one tag list per repository, and a few fixed: the catalog, /v2/
		// pings, a referrers probe.
		if got, max := proxy.Total(), len(w)+len(repos)+5; got > max {
			t.Errorf("requests: got %d, want at most %d (%d tags, %d repositories): %s", got, max, len(w), len(repos), proxy)
		}
		checkPublished(t, out, w)
		checkTree(t, out)
	})

	gone := "extra/app:t1"
	goneRef := refs[len(demo(t))+1] // extra/app t1
	if goneRef.Repo+":"+goneRef.Tags[0] != gone {
		t.Fatalf("test setup: got %s:%s, want %s", goneRef.Repo, goneRef.Tags[0], gone)
	}
	goneLayers := func() []layout.Digest {
		m, err := goneRef.Image.Manifest()
		if err != nil {
			t.Fatal(err)
		}
		var ds []layout.Digest
		for _, l := range m.Layers {
			ds = append(ds, layout.MustDigest(l.Digest.String()))
		}
		return ds
	}()

	t.Run("deleted tag leaves the next generation", func(t *testing.T) {
		for _, d := range goneLayers {
			if m0.Blobs[d] == nil {
				t.Fatalf("setup: layer %s of %s not in the first generation", d, gone)
			}
		}
		reg.DeleteTag(t, "extra/app", "t1")
		generate(t, proxy.URL, out)
		w = w.without(gone)
		checkPublished(t, out, w)
		m := checkTree(t, out)
		app := m.Repositories["extra/app"]
		for _, d := range goneLayers {
			if slices.Contains(app.Blobs, d) {
				t.Errorf("layer %s of deleted %s: still referenced by extra/app", d, gone)
			}
			if b := m.Blobs[d]; b == nil || b.Retired.IsZero() || !slices.Contains(app.RetiringBlobs, d) {
				t.Errorf("layer %s of deleted %s: got %+v, not retiring in extra/app; want it retiring (grace period)", d, gone, b)
			}
			if _, err := os.Stat(filepath.Join(out, layout.BlobPath(d))); err != nil {
				t.Errorf("layer %s of deleted %s: deleted before the grace period: %v", d, gone, err)
			}
		}
	})

	t.Run("gc after the grace period", func(t *testing.T) {
		time.Sleep(10 * time.Millisecond)
		generate(t, proxy.URL, out, "--gc-grace", "1ms")
		checkPublished(t, out, w)
		m := checkTree(t, out)
		for _, d := range goneLayers {
			if m.Orphans[d] != nil || m.Blobs[d] != nil {
				t.Errorf("layer %s of deleted %s: still in the metadata after the grace period", d, gone)
			}
			if _, err := os.Stat(filepath.Join(out, layout.BlobPath(d))); !os.IsNotExist(err) {
				t.Errorf("layer %s of deleted %s: got %v, want the file deleted after the grace period", d, gone, err)
			}
		}
		rehashAllBlobs(t, out)
	})

	t.Run("dry run writes nothing", func(t *testing.T) {
		added := randomImages(t, 3, []string{"extra/app"}, 1, 1, 16<<10)
		added[0].Tags = []string{"t9"}
		reg.Push(t, added)
		reg.DeleteTag(t, "extra/app", "t2")
		before := snapshot(t, out)
		r := regmirror(t, nil, "generate", "--source", reg.URL, "--out", out, "--dry-run")
		if r.err != nil {
			t.Fatalf("%v", r)
		}
		if diffs := diffSnapshots(before, snapshot(t, out)); len(diffs) > 0 {
			t.Errorf("--dry-run changed the tree:\n%s", strings.Join(diffs, "\n"))
		}
		plan := r.stdout + r.stderr
		for _, name := range []string{"extra/app:t9", "extra/app:t2"} {
			if !strings.Contains(plan, name) {
				t.Errorf("--dry-run plan does not name %s:\n%s", name, lastLines(plan, 40))
			}
		}

		fresh := filepath.Join(t.TempDir(), "never-created")
		if r := regmirror(t, nil, "generate", "--source", reg.URL, "--out", fresh, "--dry-run"); r.err != nil {
			t.Fatalf("%v", r)
		}
		if _, err := os.Stat(fresh); !os.IsNotExist(err) {
			t.Errorf("--dry-run into a new directory: got %v, want the directory not created", err)
		}

		generate(t, reg.URL, out)
		w = w.without("extra/app:t2")
		d, err := added[0].Digest()
		if err != nil {
			t.Fatal(err)
		}
		w["extra/app:t9"] = d
		checkPublished(t, out, w)
		checkTree(t, out)
	})
}
