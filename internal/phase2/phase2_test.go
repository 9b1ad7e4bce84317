package phase2

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/regmirror/regmirror/layout"
)

func digestOf(s string) layout.Digest {
	sum := sha256.Sum256([]byte(s))
	return layout.MustDigest("sha256:" + hex.EncodeToString(sum[:]))
}

func testMeta(tags map[string]map[string]string) *layout.Meta {
	m := layout.NewMeta(1)
	for repo, ts := range tags {
		r := &layout.Repository{Tags: map[string]layout.Digest{}}
		for tag, body := range ts {
			d := digestOf(body)
			r.Tags[tag] = d
			r.Manifests = append(r.Manifests, d)
			m.Manifests[d] = &layout.Manifest{MediaType: "application/vnd.oci.image.manifest.v1+json", Data: []byte(body)}
		}
		m.Repositories[repo] = r
	}
	return m
}

// listFiles lists the files and directories below dir/sub as a web server sees them:
// symbolic links followed.
func listFiles(t *testing.T, dir, sub string) []string {
	t.Helper()
	var got []string
	var walk func(p, rel string)
	walk = func(p, rel string) {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if !fi.IsDir() {
			got = append(got, rel)
			return
		}
		got = append(got, path.Join(rel)+"/")
		ents, err := os.ReadDir(p)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			walk(filepath.Join(p, e.Name()), path.Join(rel, e.Name()))
		}
	}
	walk(filepath.Join(dir, filepath.FromSlash(sub)), ".")
	sort.Strings(got)
	return got
}

// pubFiles is TagFiles(m) by the paths a publication shows them at (PubDir/…).
func pubFiles(m *layout.Meta) map[string][]byte {
	t := TagFiles(m)
	files := map[string][]byte{path.Join(PubDir, RefsMapFile): t.RefsMap}
	for repo, entries := range t.Repos {
		for rel, e := range entries {
			files[path.Join(PubDir, repo, rel)] = e.Data
		}
	}
	return files
}

// publish publishes m the way generate and crawl do (internal/publish).
func publish(t *testing.T, tree *layout.Tree, m *layout.Meta) string {
	t.Helper()
	if err := Write(tree, m, nil); err != nil {
		t.Fatal(err)
	}
	v2, uses, err := WriteTags(tree, m, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tree.PublishWith(m, layout.Publication{Links: map[string]string{PubDir: v2}, Uses: uses}); err != nil {
		t.Fatal(err)
	}
	live, err := tree.LivePublication()
	if err != nil {
		t.Fatal(err)
	}
	return layout.PubPath(live)
}

func TestWrite(t *testing.T) {
	dir := t.TempDir()
	tree := layout.NewTree(dir)
	a, b := digestOf("a"), digestOf("b")
	m1 := testMeta(map[string]map[string]string{"fedora": {"42": "a"}, "fedora/toolbox": {"42": "b"}})
	// What a tree published before publications existed kept in Dir: Write removes it.
	legacy := []string{Dir + "/fedora/_tags/41/" + a.Hex() + ".oci-manifest", Dir + "/refs.map", Dir + "/fedora/_tags.json"}
	for _, f := range legacy {
		if err := layout.WriteFile(tree.Path(f), nil); err != nil {
			t.Fatal(err)
		}
	}
	pub := publish(t, tree, m1)
	wantShared := []string{
		"./",
		"fedora/",
		"fedora/_digests/",
		"fedora/_digests/" + a.Hex() + "/",
		"fedora/_digests/" + a.Hex() + "/" + a.Hex() + ".oci-manifest",
		"fedora/toolbox/",
		"fedora/toolbox/_digests/",
		"fedora/toolbox/_digests/" + b.Hex() + "/",
		"fedora/toolbox/_digests/" + b.Hex() + "/" + b.Hex() + ".oci-manifest",
	}
	if got := listFiles(t, dir, Dir); strings.Join(got, "\n") != strings.Join(wantShared, "\n") {
		t.Errorf("shared files:\ngot  %q\nwant %q", got, wantShared)
	}
	wantPub := []string{
		"./",
		"_base.json",
		"fedora/",
		"fedora/_tags/",
		"fedora/_tags.json",
		"fedora/_tags/42/",
		"fedora/_tags/42/" + a.Hex() + ".oci-manifest",
		"fedora/toolbox/",
		"fedora/toolbox/_tags/",
		"fedora/toolbox/_tags.json",
		"fedora/toolbox/_tags/42/",
		"fedora/toolbox/_tags/42/" + b.Hex() + ".oci-manifest",
		"refs.map",
	}
	sort.Strings(wantPub)
	if got := listFiles(t, dir, pub+"/"+PubDir); strings.Join(got, "\n") != strings.Join(wantPub, "\n") {
		t.Errorf("publication's files:\ngot  %q\nwant %q", got, wantPub)
	}
	refs, err := os.ReadFile(tree.Path(LiveDir + "/refs.map"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{"fedora:42 " + a.Hex() + ".oci-manifest", "fedora:" + a.String() + " " + a.Hex() + ".oci-manifest", "fedora/toolbox:42 " + b.Hex() + ".oci-manifest"} {
		if !strings.Contains(string(refs), line+"\n") {
			t.Errorf("refs.map: got\n%s\nwant a line %q", refs, line)
		}
	}

	// The next generation moves fedora:42 and drops fedora/toolbox, which retires its
	// manifest (as generate does): the new publication has its tags; the previous one is
	// untouched and still resolves (its tags lead to digest markers the retiring set keeps).
	// Then the retiring ends: stale shared markers, empty directories and a killed run's
	// temporary files go, unchanged markers keep their mtime.
	marker := tree.Path(Dir + "/fedora/_digests/" + a.Hex() + "/" + a.Hex() + ".oci-manifest")
	old := time.Unix(1_000_000_000, 0)
	if err := os.Chtimes(marker, old, old); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(tree.Path(Dir+"/fedora/"+layout.TempPrefix+"x"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	c := digestOf("c")
	m2 := testMeta(map[string]map[string]string{"fedora": {"42": "c", "41": "a"}})
	m2.Generation = 2
	m2.Manifests[b] = m1.Manifests[b]
	m2.Repositories["fedora/toolbox"] = &layout.Repository{Tags: map[string]layout.Digest{}, Retiring: []layout.Digest{b}}
	pub2 := publish(t, tree, m2)
	if got := listFiles(t, dir, pub+"/"+PubDir); pub2 == pub || strings.Join(got, "\n") != strings.Join(wantPub, "\n") {
		t.Errorf("previous publication changed:\ngot  %q\nwant %q", got, wantPub)
	}
	delete(m2.Repositories, "fedora/toolbox")
	delete(m2.Manifests, b)
	m2.Generation = 3
	publish(t, tree, m2)
	wantShared = []string{
		"./",
		"fedora/",
		"fedora/_digests/",
		"fedora/_digests/" + a.Hex() + "/",
		"fedora/_digests/" + a.Hex() + "/" + a.Hex() + ".oci-manifest",
		"fedora/_digests/" + c.Hex() + "/",
		"fedora/_digests/" + c.Hex() + "/" + c.Hex() + ".oci-manifest",
	}
	sort.Strings(wantShared)
	if got := listFiles(t, dir, Dir); strings.Join(got, "\n") != strings.Join(wantShared, "\n") {
		t.Errorf("shared files after the second generation:\ngot  %q\nwant %q", got, wantShared)
	}
	if got, err := os.ReadFile(tree.Path(LiveDir + "/fedora/_tags.json")); err != nil || string(got) != `{"name":"fedora","tags":["41","42"]}`+"\n" {
		t.Errorf("live tag list: got %q, %v", got, err)
	}
	if _, err := os.Stat(tree.Path(LiveDir + "/fedora/_tags/42/" + c.Hex() + ".oci-manifest")); err != nil {
		t.Errorf("live tag marker: %v", err)
	}
	if fi, err := os.Stat(marker); err != nil || !fi.ModTime().Equal(old) {
		t.Errorf("unchanged marker was rewritten (err %v)", err)
	}
}

func TestFilesSkipsUnknownMediaTypes(t *testing.T) {
	m := testMeta(map[string]map[string]string{"x": {"1": "a"}})
	m.Manifests[digestOf("a")].MediaType = "application/vnd.example.weird+json"
	for _, files := range []map[string][]byte{pubFiles(m), DigestFiles(m)} {
		for p := range files {
			if strings.Contains(p, "_tags/") || strings.Contains(p, "_digests/") {
				t.Errorf("got marker %s for a media type a mirror cannot name, want none", p)
			}
		}
	}
}

// TestRetiringServedByDigest: a repository's retiring manifests keep their digest markers and
// refs.map entries; a repository that only retires content has no tag list (404).
func TestRetiringServedByDigest(t *testing.T) {
	m := testMeta(map[string]map[string]string{"moved": {"latest": "new"}})
	old, gone := digestOf("old"), digestOf("gone")
	for _, d := range []layout.Digest{old, gone} {
		m.Manifests[d] = &layout.Manifest{MediaType: "application/vnd.oci.image.manifest.v1+json", Data: []byte(d.String())}
	}
	m.Repositories["moved"].Retiring = []layout.Digest{old}
	m.Repositories["deleted"] = &layout.Repository{Tags: map[string]layout.Digest{}, Retiring: []layout.Digest{gone}}
	digests, pub := DigestFiles(m), pubFiles(m)
	for repo, d := range map[string]layout.Digest{"moved": old, "deleted": gone} {
		marker := Dir + "/" + repo + "/" + DigestsDir + "/" + d.Hex() + "/" + d.Hex() + ".oci-manifest"
		if _, ok := digests[marker]; !ok {
			t.Errorf("%s: no digest marker %s for the retiring manifest", repo, marker)
		}
		if want := repo + ":" + d.String() + " "; !strings.Contains(string(pub[PubDir+"/"+RefsMapFile]), want) {
			t.Errorf("refs.map lacks %q", want)
		}
	}
	if _, ok := pub[PubDir+"/moved/"+TagListFile]; !ok {
		t.Errorf("the published repository lost its tag list")
	}
	if _, ok := pub[PubDir+"/deleted/"+TagListFile]; ok {
		t.Errorf("a repository with retiring content only has a tag list, want none")
	}
}

func TestConfig(t *testing.T) {
	cases := []struct {
		name, server, root string
		wantErr            string
		wantIn             []string
	}{
		{name: "nginx", server: "nginx", root: "/srv/mirror/containers/", wantIn: []string{"random_index on;", "alias /srv/mirror/containers/blobs/sha256/$rm_hex;", "alias /srv/mirror/containers/regmirror/live/v2/;", "alias /srv/mirror/containers/regmirror/live/v2/$rm_repo/_tags.json;", "application/vnd.oci.image.index.v1+json oci-index;", "Docker-Content-Digest sha256:$rm_hex"}},
		{name: "apache", server: "apache", root: "/srv/mirror/containers", wantIn: []string{`RewriteMap regmirror "txt:/srv/mirror/containers/regmirror/live/v2/refs.map"`, "Options FollowSymLinks", "T=application/vnd.docker.distribution.manifest.v2+json", `<Directory "/srv/mirror/containers">`}},
		{name: "relative root", server: "nginx", root: "srv/x", wantErr: "absolute"},
		{name: "root with a space", server: "nginx", root: "/srv/my mirror", wantErr: "spaces"},
		{name: "root with a brace", server: "apache", root: "/srv/x}", wantErr: "cannot go"},
		{name: "root slash", server: "nginx", root: "/", wantErr: "directory of its own"},
		{name: "unknown server", server: "lighttpd", root: "/srv/x", wantErr: "nginx or apache"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := Config(c.server, c.root)
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("got error %v, want one mentioning %q", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range c.wantIn {
				if !strings.Contains(got, w) {
					t.Errorf("config lacks %q:\n%s", w, got)
				}
			}
		})
	}
}

// TestWriteAfterKilledMarkerWrite: a run killed while writing a marker leaves a temporary
// file in the marker's digest directory and no marker; the next Write reads that directory,
// writes the marker and removes the temporary file. A digest directory whose marker is there
// keeps it as it is.
func TestWriteAfterKilledMarkerWrite(t *testing.T) {
	dir := t.TempDir()
	tree := layout.NewTree(dir)
	a, b := digestOf("a"), digestOf("b")
	m := testMeta(map[string]map[string]string{"fedora": {"41": "a", "42": "b"}})
	if err := Write(tree, m, nil); err != nil {
		t.Fatal(err)
	}
	want := listFiles(t, dir, Dir)
	markerA := Dir + "/fedora/_digests/" + a.Hex() + "/" + a.Hex() + ".oci-manifest"
	markerB := Dir + "/fedora/_digests/" + b.Hex() + "/" + b.Hex() + ".oci-manifest"
	if err := os.Remove(tree.Path(markerB)); err != nil {
		t.Fatal(err)
	}
	temp := Dir + "/fedora/_digests/" + b.Hex() + "/" + layout.TempPrefix + b.Hex() + ".oci-manifest"
	if err := os.WriteFile(tree.Path(temp), []byte("partial"), 0o644); err != nil {
		t.Fatal(err)
	}
	old := time.Unix(1_000_000_000, 0)
	if err := os.Chtimes(tree.Path(markerA), old, old); err != nil {
		t.Fatal(err)
	}
	if err := Write(tree, m, nil); err != nil {
		t.Fatal(err)
	}
	if got := listFiles(t, dir, Dir); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("shared files:\ngot  %q\nwant %q", got, want)
	}
	if fi, err := os.Stat(tree.Path(markerA)); err != nil || !fi.ModTime().Equal(old) {
		t.Errorf("unchanged marker was rewritten (err %v)", err)
	}
}

// BenchmarkWriteUnchanged is Write when nothing changed (a no-op generate): 3,000 manifests
// in 30 repositories.
//
//	go test ./internal/phase2 -run '^$' -bench '^BenchmarkWriteUnchanged$'
func BenchmarkWriteUnchanged(b *testing.B) {
	tags := map[string]map[string]string{}
	for i := range 3000 {
		repo := "repo" + strconv.Itoa(i%30)
		if tags[repo] == nil {
			tags[repo] = map[string]string{}
		}
		tags[repo][strconv.Itoa(i)] = "manifest " + strconv.Itoa(i)
	}
	m := testMeta(tags)
	tree := layout.NewTree(b.TempDir())
	if err := Write(tree, m, nil); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if err := Write(tree, m, nil); err != nil {
			b.Fatal(err)
		}
	}
}

// TestWriteChangeMatchesWalk: from a tree Write left with prev's markers, writing next with
// Diff(prev, next) leaves Dir exactly as a walk of it (Write without a change) does.
func TestWriteChangeMatchesWalk(t *testing.T) {
	prev := map[string]map[string]string{
		"fedora":         {"41": "a", "42": "b"},
		"fedora/toolbox": {"42": "c"},
		"centos":         {"9": "d"},
	}
	tests := []struct {
		name string
		next func() *layout.Meta
	}{
		{"no change", func() *layout.Meta { return testMeta(prev) }},
		{"tag moved", func() *layout.Meta {
			return testMeta(map[string]map[string]string{"fedora": {"41": "a", "42": "e"}, "fedora/toolbox": {"42": "c"}, "centos": {"9": "d"}})
		}},
		{"tag moved, old manifest retiring", func() *layout.Meta {
			m := testMeta(map[string]map[string]string{"fedora": {"41": "a", "42": "e"}, "fedora/toolbox": {"42": "c"}, "centos": {"9": "d"}})
			m.Repositories["fedora"].Retiring = []layout.Digest{digestOf("b")}
			m.Manifests[digestOf("b")] = &layout.Manifest{MediaType: layout.MediaTypeOCIManifest, Data: []byte("b")}
			return m
		}},
		{"nested repository removed", func() *layout.Meta {
			return testMeta(map[string]map[string]string{"fedora": {"41": "a", "42": "b"}, "centos": {"9": "d"}})
		}},
		{"parent repository removed", func() *layout.Meta {
			return testMeta(map[string]map[string]string{"fedora/toolbox": {"42": "c"}, "centos": {"9": "d"}})
		}},
		{"media type changed", func() *layout.Meta {
			m := testMeta(prev)
			m.Manifests[digestOf("d")].MediaType = layout.MediaTypeDockerManifest
			return m
		}},
		{"repository added, one emptied", func() *layout.Meta {
			return testMeta(map[string]map[string]string{"fedora": {"41": "a", "42": "b"}, "fedora/toolbox": {"42": "c"}, "rhel/ubi": {"9": "f"}})
		}},
		{"everything removed", func() *layout.Meta { return testMeta(nil) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			walked, changed := t.TempDir(), t.TempDir()
			p := testMeta(prev)
			for _, dir := range []string{walked, changed} {
				if err := Write(layout.NewTree(dir), p, nil); err != nil {
					t.Fatal(err)
				}
			}
			if err := Write(layout.NewTree(walked), tc.next(), nil); err != nil {
				t.Fatal(err)
			}
			c := Diff(p, tc.next())
			if err := Write(layout.NewTree(changed), tc.next(), &c); err != nil {
				t.Fatal(err)
			}
			got, want := listFiles(t, changed, Dir), listFiles(t, walked, Dir)
			if strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Errorf("after the change:\ngot  %q\nwant %q", got, want)
			}
		})
	}
}
