package phase2

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"sort"
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

func listFiles(t *testing.T, dir string) []string {
	t.Helper()
	var got []string
	err := filepath.Walk(filepath.Join(dir, filepath.FromSlash(Dir)), func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if fi.IsDir() {
			rel += "/"
		}
		got = append(got, filepath.ToSlash(rel))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(got)
	return got
}

func TestWrite(t *testing.T) {
	dir := t.TempDir()
	tree := layout.NewTree(dir)
	a, b := digestOf("a"), digestOf("b")
	m1 := testMeta(map[string]map[string]string{"fedora": {"42": "a"}, "fedora/toolbox": {"42": "b"}})
	if err := Write(tree, m1); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"regmirror/v2/",
		"regmirror/v2/_base.json",
		"regmirror/v2/fedora/",
		"regmirror/v2/fedora/_digests/",
		"regmirror/v2/fedora/_digests/" + a.Hex() + "/",
		"regmirror/v2/fedora/_digests/" + a.Hex() + "/" + a.Hex() + ".oci-manifest",
		"regmirror/v2/fedora/_tags/",
		"regmirror/v2/fedora/_tags.json",
		"regmirror/v2/fedora/_tags/42/",
		"regmirror/v2/fedora/_tags/42/" + a.Hex() + ".oci-manifest",
		"regmirror/v2/fedora/toolbox/",
		"regmirror/v2/fedora/toolbox/_digests/",
		"regmirror/v2/fedora/toolbox/_digests/" + b.Hex() + "/",
		"regmirror/v2/fedora/toolbox/_digests/" + b.Hex() + "/" + b.Hex() + ".oci-manifest",
		"regmirror/v2/fedora/toolbox/_tags/",
		"regmirror/v2/fedora/toolbox/_tags.json",
		"regmirror/v2/fedora/toolbox/_tags/42/",
		"regmirror/v2/fedora/toolbox/_tags/42/" + b.Hex() + ".oci-manifest",
		"regmirror/v2/refs.map",
	}
	sort.Strings(want)
	if got := listFiles(t, dir); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("files:\ngot  %q\nwant %q", got, want)
	}
	refs, err := os.ReadFile(tree.Path(Dir + "/refs.map"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{"fedora:42 " + a.Hex() + ".oci-manifest", "fedora:" + a.String() + " " + a.Hex() + ".oci-manifest", "fedora/toolbox:42 " + b.Hex() + ".oci-manifest"} {
		if !strings.Contains(string(refs), line+"\n") {
			t.Errorf("refs.map: got\n%s\nwant a line %q", refs, line)
		}
	}

	// The next generation moves fedora:42 and drops fedora/toolbox: stale files, empty
	// directories and a killed run's temporary files go, unchanged files keep their mtime.
	base := tree.Path(Dir + "/_base.json")
	old := time.Unix(1_000_000_000, 0)
	if err := os.Chtimes(base, old, old); err != nil {
		t.Fatal(err)
	}
	for _, tmp := range []string{Dir + "/" + layout.TempPrefix + "refs.map-1", Dir + "/fedora/_tags/42/" + layout.TempPrefix + "x"} {
		if err := os.WriteFile(tree.Path(tmp), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	c := digestOf("c")
	m2 := testMeta(map[string]map[string]string{"fedora": {"42": "c"}})
	if err := Write(tree, m2); err != nil {
		t.Fatal(err)
	}
	want = []string{
		"regmirror/v2/",
		"regmirror/v2/_base.json",
		"regmirror/v2/fedora/",
		"regmirror/v2/fedora/_digests/",
		"regmirror/v2/fedora/_digests/" + c.Hex() + "/",
		"regmirror/v2/fedora/_digests/" + c.Hex() + "/" + c.Hex() + ".oci-manifest",
		"regmirror/v2/fedora/_tags/",
		"regmirror/v2/fedora/_tags.json",
		"regmirror/v2/fedora/_tags/42/",
		"regmirror/v2/fedora/_tags/42/" + c.Hex() + ".oci-manifest",
		"regmirror/v2/refs.map",
	}
	sort.Strings(want)
	if got := listFiles(t, dir); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("files after the second generation:\ngot  %q\nwant %q", got, want)
	}
	if fi, err := os.Stat(base); err != nil || !fi.ModTime().Equal(old) {
		t.Errorf("unchanged _base.json was rewritten (mtime %v, err %v)", fi.ModTime(), err)
	}
}

func TestFilesSkipsUnknownMediaTypes(t *testing.T) {
	m := testMeta(map[string]map[string]string{"x": {"1": "a"}})
	m.Manifests[digestOf("a")].MediaType = "application/vnd.example.weird+json"
	for p := range Files(m) {
		if strings.Contains(p, "_tags/") || strings.Contains(p, "_digests/") {
			t.Errorf("got marker %s for a media type a mirror cannot name, want none", p)
		}
	}
}

func TestConfig(t *testing.T) {
	cases := []struct {
		name, server, root string
		wantErr            string
		wantIn             []string
	}{
		{name: "nginx", server: "nginx", root: "/srv/mirror/containers/", wantIn: []string{"random_index on;", "alias /srv/mirror/containers/blobs/sha256/$rm_hex;", "application/vnd.oci.image.index.v1+json oci-index;", "Docker-Content-Digest sha256:$rm_hex"}},
		{name: "apache", server: "apache", root: "/srv/mirror/containers", wantIn: []string{`RewriteMap regmirror "txt:/srv/mirror/containers/regmirror/v2/refs.map"`, "T=application/vnd.docker.distribution.manifest.v2+json", `<Directory "/srv/mirror/containers">`}},
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
