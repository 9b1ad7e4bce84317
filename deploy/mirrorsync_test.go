package deploy

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/regmirror/regmirror/internal/phase2"
	"github.com/regmirror/regmirror/internal/publish"
	"github.com/regmirror/regmirror/layout"
)

// source is a tree that publishes generations of one repository, "app", whose tags name
// small manifests.
type source struct {
	tree *layout.Tree
	gen  uint64
}

func newSource(t *testing.T) *source { return &source{tree: layout.NewTree(t.TempDir())} }

// publish publishes the next generation with tags (tag → a word the manifest holds).
func (s *source) publish(t *testing.T, tags map[string]string) {
	t.Helper()
	s.gen++
	m := layout.NewMeta(s.gen)
	repo := &layout.Repository{Tags: map[string]layout.Digest{}}
	for tag, word := range tags {
		data := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","word":"` + word + `"}`)
		sum := sha256.Sum256(data)
		d := layout.MustDigest("sha256:" + hex.EncodeToString(sum[:]))
		if _, err := os.Stat(s.tree.Path(layout.BlobPath(d))); err != nil {
			if err := layout.WriteFile(s.tree.Path(layout.BlobPath(d)), data); err != nil {
				t.Fatal(err)
			}
		}
		repo.Tags[tag] = d
		if _, ok := m.Manifests[d]; !ok {
			repo.Manifests = append(repo.Manifests, d)
		}
		m.Manifests[d] = &layout.Manifest{MediaType: "application/vnd.oci.image.manifest.v1+json", Data: data}
		m.Blobs[d] = &layout.Blob{Size: int64(len(data)), Since: s.gen}
	}
	sort.Slice(repo.Manifests, func(i, j int) bool { return repo.Manifests[i].String() < repo.Manifests[j].String() })
	m.Repositories["app"] = repo
	if err := layout.WriteFile(s.tree.Path(layout.OCILayoutFile), []byte(layout.OCILayoutContent)); err != nil {
		t.Fatal(err)
	}
	if _, err := publish.Publish(s.tree, m, publish.Change{}); err != nil {
		t.Fatal(err)
	}
}

// live is the source's live publication's directory.
func (s *source) live(t *testing.T) string {
	t.Helper()
	name, err := s.tree.LivePublication()
	if err != nil {
		t.Fatal(err)
	}
	return s.tree.Path(layout.PubPath(name))
}

// view is what a reader of a tree sees through its links: the generation, index.json, the
// file list and, for each tag, its phase-2 marker, and the tag list.
func view(t *testing.T, dir string) string {
	t.Helper()
	tree := layout.NewTree(dir)
	m, _, err := tree.Load()
	if err != nil {
		t.Fatalf("%s does not load: %v", dir, err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "generation %d\n", m.Generation)
	for _, f := range []string{layout.IndexFile, "fullfiletimelist-containers", phase2.LiveDir + "/app/" + phase2.TagListFile, phase2.LiveDir + "/" + phase2.RefsMapFile} {
		data, err := os.ReadFile(tree.Path(f))
		if err != nil {
			t.Fatalf("%s: %v", dir, err)
		}
		fmt.Fprintf(&b, "%s %x\n", f, sha256.Sum256(data))
	}
	tags, _ := filepath.Glob(tree.Path(phase2.LiveDir + "/app/_tags/*/*"))
	for _, p := range tags {
		rel, _ := filepath.Rel(dir, p)
		fmt.Fprintf(&b, "%s\n", rel)
	}
	return b.String()
}

// listing is every file and link below dir (temporary names aside), with links' targets and
// files' contents hashed.
func listing(t *testing.T, dir string) string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if strings.HasPrefix(d.Name(), layout.TempPrefix) {
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			out = append(out, rel+" -> "+target)
		case d.Type().IsRegular():
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			out = append(out, fmt.Sprintf("%s %x", rel, sha256.Sum256(data)))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return strings.Join(out, "\n")
}

// mirrorSync runs deploy/mirror-sync with env added and returns its standard error.
func mirrorSync(t *testing.T, env []string, args ...string) string {
	t.Helper()
	need(t, "rsync", "rsync")
	_, stderr := run(t, "", env, syncScript(t), args...)
	return stderr
}

func phase(n int) []string { return []string{fmt.Sprintf("REGMIRROR_SYNC_PHASE=%d", n)} }

// TestMirrorSyncPhases: after phase 1 a mirror reads exactly as the old generation (tags
// moved, added and deleted at the source included) while holding the new one's files; after
// phase 2 it reads as the new one and equals the source.
func TestMirrorSyncPhases(t *testing.T) {
	src := newSource(t)
	dst := filepath.Join(t.TempDir(), "containers")
	src.publish(t, map[string]string{"latest": "one", "stable": "one", "old": "two"})
	mirrorSync(t, nil, src.tree.Dir(), dst)
	if got, want := listing(t, dst), listing(t, src.tree.Dir()); got != want {
		t.Fatalf("after a whole sync:\ngot\n%s\nwant\n%s", got, want)
	}
	oldView := view(t, dst)

	src.publish(t, map[string]string{"latest": "three", "stable": "one", "new": "three"})
	mirrorSync(t, phase(1), src.tree.Dir(), dst)
	if got := view(t, dst); got != oldView {
		t.Errorf("after phase 1:\ngot\n%s\nwant the old generation's\n%s", got, oldView)
	}
	if _, err := os.Stat(filepath.Join(dst, strings.TrimPrefix(src.live(t), src.tree.Dir()), layout.PubStamp)); err != nil {
		t.Errorf("after phase 1 the new publication is not there: %v", err)
	}
	mirrorSync(t, phase(2), src.tree.Dir(), dst)
	if got, want := view(t, dst), view(t, src.tree.Dir()); got != want {
		t.Errorf("after phase 2:\ngot\n%s\nwant the new generation's\n%s", got, want)
	}
	if got, want := listing(t, dst), listing(t, src.tree.Dir()); got != want {
		t.Errorf("after phase 2 the mirror differs from the source:\ngot\n%s\nwant\n%s", got, want)
	}
	if ents, _ := os.ReadDir(filepath.Join(dst, layout.MetaDir)); len(ents) > 0 {
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), layout.TempPrefix) {
				t.Errorf("left behind: %s", e.Name())
			}
		}
	}
}

// TestMirrorSyncSourcePublishesBetweenPhases: the source publishes twice more between the
// phases, with a new blob, and prunes the publication phase 1 brought: phase 2 switches to
// the newest, whole (its blob and metadata there), and deletes the rest.
func TestMirrorSyncSourcePublishesBetweenPhases(t *testing.T) {
	src := newSource(t)
	dst := filepath.Join(t.TempDir(), "containers")
	src.publish(t, map[string]string{"latest": "one"})
	mirrorSync(t, nil, src.tree.Dir(), dst)
	src.publish(t, map[string]string{"latest": "two"})
	mirrorSync(t, phase(1), src.tree.Dir(), dst)
	second := src.live(t)
	src.publish(t, map[string]string{"latest": "three"})
	src.publish(t, map[string]string{"latest": "four", "extra": "five"})
	if err := os.RemoveAll(second); err != nil {
		t.Fatal(err)
	}
	mirrorSync(t, phase(2), src.tree.Dir(), dst)
	if got, want := view(t, dst), view(t, src.tree.Dir()); got != want {
		t.Errorf("after phase 2:\ngot\n%s\nwant the newest generation's\n%s", got, want)
	}
	if err := layout.NewTree(dst).Verify(context.Background()); err != nil {
		t.Errorf("the mirror is not whole: %v", err)
	}
	if got, want := listing(t, dst), listing(t, src.tree.Dir()); got != want {
		t.Errorf("after phase 2 the mirror differs from the source:\ngot\n%s\nwant\n%s", got, want)
	}
}

// helperPublishEnv makes the test binary, run as TestMirrorSyncHelperPublish, publish the
// next generation of the source tree it names and remove the publication that was live: a
// source publishing (and pruning) while phase 2 runs.
const helperPublishEnv = "REGMIRROR_TEST_PUBLISH_TREE"

func TestMirrorSyncHelperPublish(t *testing.T) {
	dir := os.Getenv(helperPublishEnv)
	if dir == "" {
		return // only a helper process for TestMirrorSyncSourcePublishesDuringPhase2
	}
	tree := layout.NewTree(dir)
	m, _, err := tree.Load()
	if err != nil {
		t.Fatal(err)
	}
	old, err := tree.LivePublication()
	if err != nil {
		t.Fatal(err)
	}
	s := &source{tree: tree, gen: m.Generation}
	s.publish(t, map[string]string{"latest": fmt.Sprintf("published during phase 2 %d", m.Generation)})
	if err := os.RemoveAll(tree.Path(layout.PubPath(old))); err != nil {
		t.Fatal(err)
	}
}

// TestMirrorSyncSourcePublishesDuringPhase2: the source publishes and prunes the publication
// phase 2 pinned, right after phase 2 pinned it: phase 2 starts over and switches to the
// new one, never to a publication it does not hold whole.
func TestMirrorSyncSourcePublishesDuringPhase2(t *testing.T) {
	rsync := need(t, "rsync", "rsync")
	src := newSource(t)
	dst := filepath.Join(t.TempDir(), "containers")
	src.publish(t, map[string]string{"latest": "one"})
	mirrorSync(t, nil, src.tree.Dir(), dst)
	src.publish(t, map[string]string{"latest": "two"})

	// An rsync that runs the publishing helper before its second run: phase 2's first rsync
	// pins the live publication, the second is phase 1 again.
	bin := t.TempDir()
	count := filepath.Join(bin, "count")
	wrapper := fmt.Sprintf(`#!/bin/sh
n=$(cat %[1]s 2>/dev/null || echo 0); n=$((n+1)); echo $n > %[1]s
if [ "$n" = 2 ]; then %[2]s=%[3]s %[4]s -test.run='^TestMirrorSyncHelperPublish$' >&2 || exit 99; fi
exec %[5]s "$@"
`, count, helperPublishEnv, src.tree.Dir(), os.Args[0], rsync)
	if err := os.WriteFile(filepath.Join(bin, "rsync"), []byte(wrapper), 0o755); err != nil {
		t.Fatal(err)
	}
	stderr := mirrorSync(t, append(phase(2), "PATH="+bin+":"+os.Getenv("PATH")), src.tree.Dir(), dst)
	if !strings.Contains(stderr, "starting phase 2 over") {
		t.Errorf("phase 2 did not start over after its pinned publication vanished; stderr:\n%s", stderr)
	}
	m, _, err := src.tree.Load()
	if err != nil || m.Generation != 3 {
		t.Fatalf("the helper did not publish generation 3: %v", err)
	}
	if got, want := view(t, dst), view(t, src.tree.Dir()); got != want {
		t.Errorf("after phase 2:\ngot\n%s\nwant the newest generation's\n%s", got, want)
	}
	if got, want := listing(t, dst), listing(t, src.tree.Dir()); got != want {
		t.Errorf("after phase 2 the mirror differs from the source:\ngot\n%s\nwant\n%s", got, want)
	}
}

// TestMirrorSyncMigrates: a mirror holding a copy made before publications existed (regular
// index.json and regmirror/current, no live link) keeps reading as its generation after
// phase 1 and gets the links in phase 2.
func TestMirrorSyncMigrates(t *testing.T) {
	src := newSource(t)
	dst := filepath.Join(t.TempDir(), "containers")
	src.publish(t, map[string]string{"latest": "one"})
	mirrorSync(t, nil, src.tree.Dir(), dst)
	// Make the copy an old one: the links' contents as regular files, no publications.
	for _, f := range []string{layout.IndexFile, layout.CurrentFile, "fullfiletimelist-containers"} {
		p := filepath.Join(dst, filepath.FromSlash(f))
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	oldIndex, _ := os.ReadFile(filepath.Join(dst, layout.IndexFile))
	for _, p := range []string{layout.LiveLink, layout.PubDir} {
		if err := os.RemoveAll(filepath.Join(dst, p)); err != nil {
			t.Fatal(err)
		}
	}
	src.publish(t, map[string]string{"latest": "two"})
	mirrorSync(t, phase(1), src.tree.Dir(), dst)
	m, _, err := layout.NewTree(dst).Load()
	if err != nil || m.Generation != 1 {
		t.Fatalf("after phase 1 the old copy does not read as generation 1: %v", err)
	}
	if got, _ := os.ReadFile(filepath.Join(dst, layout.IndexFile)); !bytes.Equal(got, oldIndex) {
		t.Errorf("phase 1 changed index.json")
	}
	mirrorSync(t, phase(2), src.tree.Dir(), dst)
	if got, want := listing(t, dst), listing(t, src.tree.Dir()); got != want {
		t.Errorf("after phase 2 the mirror differs from the source:\ngot\n%s\nwant\n%s", got, want)
	}
}

// TestMirrorSyncErrors: wrong uses fail with one line saying what is wrong.
func TestMirrorSyncErrors(t *testing.T) {
	need(t, "rsync", "rsync")
	old := t.TempDir()
	if err := os.MkdirAll(filepath.Join(old, layout.MetaDir), 0o755); err != nil {
		t.Fatal(err)
	}
	src := newSource(t)
	src.publish(t, map[string]string{"latest": "one"})
	cases := []struct {
		name string
		env  []string
		args []string
		want string
	}{
		{"no arguments", nil, nil, "usage: mirror-sync"},
		{"unknown option", nil, []string{"--subsets", "a", "b"}, "unknown option --subsets"},
		{"subset without a name", nil, []string{"--subset"}, "--subset needs a NAME"},
		{"subset name not a name", nil, []string{"--subset", "X86_64", old, t.TempDir()}, "--subset 'X86_64': want a subset name like amd64, arm64 or archive"},
		{"subset and meta-only", nil, []string{"--meta-only", "--subset", "amd64", old, t.TempDir()}, "--meta-only copies no blobs: --subset does not apply"},
		{"subset the source lacks", nil, []string{"--subset", "x8664", src.tree.Dir(), t.TempDir()}, "SOURCE's publication has no subset x8664 (it has: 386 amd64 archive arm arm64 loong64 mips mips64 mips64le mipsle ppc64 ppc64le riscv64 s390x wasm)"},
		{"subset the source lacks, phase 2", phase(2), []string{"--subset", "x8664", src.tree.Dir(), t.TempDir()}, "SOURCE's publication has no subset x8664"},
		{"bad phase", []string{"REGMIRROR_SYNC_PHASE=3"}, []string{old, t.TempDir()}, "want 1, 2"},
		{"source without publications", nil, []string{old, t.TempDir()}, "regmirror/live"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, syncScript(t), c.args...)
			cmd.Env = append(os.Environ(), c.env...)
			out, err := cmd.CombinedOutput()
			if err == nil || !strings.Contains(string(out), c.want) {
				t.Errorf("got %v, output %q; want a failure mentioning %q", err, out, c.want)
			}
		})
	}
}

// TestMirrorSyncDocumentedCommands: the commands docs/mirror-admins.md says mirror-sync runs
// are exactly the rsync commands it runs, in order (an rsync in PATH logs them).
func TestMirrorSyncDocumentedCommands(t *testing.T) {
	rsync := need(t, "rsync", "rsync")
	doc, err := os.ReadFile("../docs/mirror-admins.md")
	if err != nil {
		t.Fatal(err)
	}
	var want [][]string
	in := false
	for line := range strings.SplitSeq(string(doc), "\n") {
		if strings.HasPrefix(line, "    # Phase 1:") {
			in = true
		}
		if !in {
			continue
		}
		if !strings.HasPrefix(line, "    ") {
			break
		}
		if cmd := strings.TrimSpace(line); !strings.HasPrefix(cmd, "#") {
			want = append(want, shellWords(t, cmd))
		}
	}
	if len(want) < 9 {
		t.Fatalf("docs/mirror-admins.md: got %d commands after \"# Phase 1:\", want the 9 of both phases", len(want))
	}

	src := newSource(t)
	src.publish(t, map[string]string{"latest": "one"})
	dst := filepath.Join(t.TempDir(), "containers")
	bin := t.TempDir()
	logFile := filepath.Join(bin, "log")
	wrapper := fmt.Sprintf("#!/bin/sh\nfor a in \"$@\"; do printf '%%s\\037' \"$a\" >> %s; done\necho >> %[1]s\nexec %s \"$@\"\n", logFile, rsync)
	if err := os.WriteFile(filepath.Join(bin, "rsync"), []byte(wrapper), 0o755); err != nil {
		t.Fatal(err)
	}
	mirrorSync(t, []string{"PATH=" + bin + ":" + os.Getenv("PATH")}, src.tree.Dir(), dst)
	logged, err := os.ReadFile(logFile)
	if err != nil {
		t.Fatal(err)
	}
	name, err := src.tree.LivePublication()
	if err != nil {
		t.Fatal(err)
	}
	_, stamp, err := src.tree.Load()
	if err != nil {
		t.Fatal(err)
	}
	subst := strings.NewReplacer("SOURCE", src.tree.Dir(), "DEST", dst, "NAME", name, "META", stamp.Meta)
	var got [][]string
	for line := range strings.SplitSeq(strings.TrimSuffix(string(logged), "\n"), "\n") {
		got = append(got, append([]string{"rsync"}, strings.Split(strings.TrimSuffix(line, "\x1f"), "\x1f")...))
	}
	if len(got) != len(want) {
		t.Fatalf("mirror-sync ran %d rsync commands, the documentation shows %d:\ngot  %q\nwant %q", len(got), len(want), got, want)
	}
	for i := range want {
		for j := range want[i] {
			want[i][j] = subst.Replace(want[i][j])
		}
		if strings.Join(got[i], " ") != strings.Join(want[i], " ") {
			t.Errorf("command %d:\ngot  %q\nwant %q", i+1, got[i], want[i])
		}
	}
}

// shellWords splits a documented command line as sh does, for the quoting the documentation
// uses: words separated by spaces, single-quoted strings taken literally.
func shellWords(t *testing.T, line string) []string {
	t.Helper()
	var words []string
	var cur strings.Builder
	inWord, quoted := false, false
	for _, r := range line {
		switch {
		case quoted && r == '\'':
			quoted = false
		case quoted:
			cur.WriteRune(r)
		case r == '\'':
			quoted, inWord = true, true
		case r == ' ':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		case r == '"' || r == '\\' || r == '$':
			t.Fatalf("documented command %q: shellWords does not handle %q", line, r)
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if quoted {
		t.Fatalf("documented command %q: unterminated quote", line)
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words
}

// publishSubsets publishes the next generation of s with the files named in blobs (name →
// the subsets' mask over table, and the former mask) as blobs of repository "app" with the
// membership given, besides the manifests of publish.
func (s *source) publishSubsets(t *testing.T, table []string, blobs map[string][2]uint64) map[string]layout.Digest {
	t.Helper()
	s.gen++
	m := layout.NewMeta(s.gen)
	m.Subsets = table
	repo := &layout.Repository{Tags: map[string]layout.Digest{}}
	ds := map[string]layout.Digest{}
	for name, masks := range blobs {
		data := []byte("blob " + name)
		sum := sha256.Sum256(data)
		d := layout.MustDigest("sha256:" + hex.EncodeToString(sum[:]))
		ds[name] = d
		if _, err := os.Stat(s.tree.Path(layout.BlobPath(d))); err != nil {
			if err := layout.WriteFile(s.tree.Path(layout.BlobPath(d)), data); err != nil {
				t.Fatal(err)
			}
		}
		b := &layout.Blob{Size: int64(len(data)), Since: 1, Subsets: masks[0], Former: masks[1]}
		if masks[1] != 0 {
			b.Left = time.Now()
		}
		m.Blobs[d] = b
		repo.Blobs = append(repo.Blobs, d)
	}
	sort.Slice(repo.Blobs, func(i, j int) bool { return repo.Blobs[i].String() < repo.Blobs[j].String() })
	m.Repositories["app"] = repo
	if _, err := publish.Publish(s.tree, m, publish.Change{}); err != nil {
		t.Fatal(err)
	}
	return ds
}

// TestMirrorSyncSubset: --subset copies the blobs of the named subsets and no other, keeps a
// blob that left them while the lists name it (the grace), then deletes it; everything
// outside blobs/ is copied as without --subset.
func TestMirrorSyncSubset(t *testing.T) {
	const amd64, arm64, anyArch, archive = 1, 2, 4, 8
	table := []string{"amd64", "arm64", layout.AnyArchitecture, layout.ArchiveSubset}
	src := newSource(t)
	ds := src.publishSubsets(t, table, map[string][2]uint64{
		"a": {amd64}, "b": {arm64}, "c": {anyArch}, "d": {archive}, "ab": {amd64 | arm64},
	})
	has := func(dst string) []string {
		var out []string
		for name, d := range ds {
			if _, err := os.Stat(filepath.Join(dst, filepath.FromSlash(layout.BlobPath(d)))); err == nil {
				out = append(out, name)
			}
		}
		sort.Strings(out)
		return out
	}
	for _, tc := range []struct {
		name    string
		subsets []string
		want    []string
	}{
		{"arm64", []string{"arm64"}, []string{"ab", "b", "c"}},
		{"amd64 and archive", []string{"amd64", "archive"}, []string{"a", "ab", "c", "d"}},
		{"archive", []string{"archive"}, []string{"d"}},
		{"riscv64, no image of it", []string{"riscv64"}, []string{"c"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dst := filepath.Join(t.TempDir(), "containers")
			var args []string
			for _, s := range tc.subsets {
				args = append(args, "--subset", s)
			}
			mirrorSync(t, nil, append(args, src.tree.Dir(), dst)...)
			if got := has(dst); !slices.Equal(got, tc.want) {
				t.Errorf("blobs: got %v, want %v", got, tc.want)
			}
			if got, want := listing(t, filepath.Join(dst, "regmirror")), listing(t, src.tree.Path("regmirror")); got != want {
				t.Errorf("regmirror/ is not the source's:\ngot\n%s\nwant\n%s", got, want)
			}
		})
	}

	// b leaves arm64 for the archive: an arm64 mirror keeps it while the lists name it as a
	// former member, and deletes it after.
	dst := filepath.Join(t.TempDir(), "containers")
	mirrorSync(t, nil, "--subset", "arm64", src.tree.Dir(), dst)
	src.publishSubsets(t, table, map[string][2]uint64{
		"a": {amd64}, "b": {archive, arm64}, "c": {anyArch}, "d": {archive}, "ab": {amd64 | arm64},
	})
	mirrorSync(t, nil, "--subset", "arm64", src.tree.Dir(), dst)
	if got, want := has(dst), []string{"ab", "b", "c"}; !slices.Equal(got, want) {
		t.Errorf("within the grace: got %v, want %v", got, want)
	}
	src.publishSubsets(t, table, map[string][2]uint64{
		"a": {amd64}, "b": {archive}, "c": {anyArch}, "d": {archive}, "ab": {amd64 | arm64},
	})
	mirrorSync(t, phase(1), "--subset", "arm64", src.tree.Dir(), dst)
	if got, want := has(dst), []string{"ab", "b", "c"}; !slices.Equal(got, want) {
		t.Errorf("past the grace, after phase 1 (which deletes nothing): got %v, want %v", got, want)
	}
	mirrorSync(t, phase(2), "--subset", "arm64", src.tree.Dir(), dst)
	if got, want := has(dst), []string{"ab", "c"}; !slices.Equal(got, want) {
		t.Errorf("past the grace, after phase 2: got %v, want %v", got, want)
	}
}

// sharedOfLive is the shared entries (below regmirror/) the source's live publication lists
// in its uses file.
func sharedOfLive(t *testing.T, s *source) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(s.live(t), layout.SharedUses))
	if err != nil {
		t.Fatal(err)
	}
	return strings.Fields(string(b))
}

// TestMirrorSyncSharedEntries: phase 2 switches only to a publication whose shared entries
// are all here (a source missing one: no switch, the copy keeps reading as the old
// generation), and its deletions never remove one the pinned publication reaches, even once
// the source has removed it.
func TestMirrorSyncSharedEntries(t *testing.T) {
	testSyncNeeds(t, func(t *testing.T, src *source) []string {
		var missing []string
		for _, e := range sharedOfLive(t, src) {
			if strings.HasPrefix(e, "shared/"+phase2.RepoKind+"/") {
				missing = append(missing, src.tree.Path(layout.MetaDir+"/"+e))
			}
		}
		return missing
	}, func(t *testing.T, src *source) []string {
		var gone []string
		for _, e := range sharedOfLive(t, src) {
			gone = append(gone, src.tree.Path(layout.MetaDir+"/"+e))
		}
		return gone
	})
}

// testSyncNeeds checks that phase 2 switches only to a publication whose needed files are
// all here, and never deletes them: the source publishes a second generation, then misses the
// paths missing returns (no switch: the copy keeps reading as the old generation), or removes
// the paths gone returns during phase 2, before its deletions (the copy keeps them and reads
// as the new generation).
func testSyncNeeds(t *testing.T, missing, gone func(t *testing.T, src *source) []string) {
	rsync := need(t, "rsync", "rsync")
	t.Run("missing at the source", func(t *testing.T) {
		src := newSource(t)
		dst := filepath.Join(t.TempDir(), "containers")
		src.publish(t, map[string]string{"latest": "one"})
		mirrorSync(t, nil, src.tree.Dir(), dst)
		old := view(t, dst)
		src.publish(t, map[string]string{"latest": "two"})
		for _, p := range missing(t, src) {
			if err := os.RemoveAll(p); err != nil {
				t.Fatal(err)
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, syncScript(t), src.tree.Dir(), dst).CombinedOutput()
		if err == nil || !strings.Contains(string(out), "kept changing") {
			t.Errorf("got %v, output %q; want a failure after starting over", err, out)
		}
		if got := view(t, dst); got != old {
			t.Errorf("after the failed sync:\ngot\n%s\nwant the old generation's\n%s", got, old)
		}
	})
	t.Run("removed at the source during phase 2", func(t *testing.T) {
		src := newSource(t)
		dst := filepath.Join(t.TempDir(), "containers")
		src.publish(t, map[string]string{"latest": "one"})
		mirrorSync(t, nil, src.tree.Dir(), dst)
		src.publish(t, map[string]string{"latest": "two"})
		removed := gone(t, src)
		want := view(t, src.tree.Dir())
		// An rsync that removes them at the source before phase 2's sixth run, the deletions.
		bin := t.TempDir()
		count := filepath.Join(bin, "count")
		wrapper := fmt.Sprintf("#!/bin/sh\nn=$(cat %[1]s 2>/dev/null || echo 0); n=$((n+1)); echo $n > %[1]s\nif [ \"$n\" = 6 ]; then rm -rf %[2]s; fi\nexec %[3]s \"$@\"\n", count, strings.Join(removed, " "), rsync)
		if err := os.WriteFile(filepath.Join(bin, "rsync"), []byte(wrapper), 0o755); err != nil {
			t.Fatal(err)
		}
		mirrorSync(t, append(phase(2), "PATH="+bin+":"+os.Getenv("PATH")), src.tree.Dir(), dst)
		for _, p := range removed {
			if _, err := os.Stat(p); err == nil {
				t.Fatalf("the wrapper did not remove %s at the source", p)
			}
		}
		if got := view(t, dst); got != want {
			t.Errorf("after phase 2:\ngot\n%s\nwant the new generation's\n%s", got, want)
		}
	})
}

// TestMirrorSyncDeltaTransfer: with rsync's delta algorithm (as over a network), a crawl's
// publication (nothing changed) and a promotion of a few tags move a small part of the files
// they add outside blobs/ and the metadata files (not this test's concern): --fuzzy finds the
// previous version of each large shared file.
func TestMirrorSyncDeltaTransfer(t *testing.T) {
	rsync := need(t, "rsync", "rsync")
	src := newSource(t)
	dst := filepath.Join(t.TempDir(), "containers")
	tags := map[string]string{}
	for i := range 1500 {
		tags[fmt.Sprintf("t%04d", i)] = fmt.Sprintf("one %d", i)
	}
	src.publish(t, tags)
	mirrorSync(t, nil, src.tree.Dir(), dst)

	bin := t.TempDir()
	log := filepath.Join(bin, "log")
	wrapper := fmt.Sprintf("#!/bin/sh\nexec %s --no-whole-file --out-format='transferred %%n %%l %%b' \"$@\" >>%s\n", rsync, log)
	if err := os.WriteFile(filepath.Join(bin, "rsync"), []byte(wrapper), 0o755); err != nil {
		t.Fatal(err)
	}
	sync := func(name string, maxShare int64) {
		t.Helper()
		if err := os.WriteFile(log, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		mirrorSync(t, []string{"PATH=" + bin + ":" + os.Getenv("PATH")}, src.tree.Dir(), dst)
		out, err := os.ReadFile(log)
		if err != nil {
			t.Fatal(err)
		}
		var size, sent int64
		var big []string
		for line := range strings.SplitSeq(string(out), "\n") {
			f := strings.Fields(line)
			if len(f) != 4 || f[0] != "transferred" || strings.HasPrefix(f[1], layout.BlobsDir+"/") || strings.HasPrefix(f[1], layout.MetaFilesDir+"/") {
				continue
			}
			l, _ := strconv.ParseInt(f[2], 10, 64)
			b, _ := strconv.ParseInt(f[3], 10, 64)
			size += l
			sent += b
			if b > 1024 {
				big = append(big, fmt.Sprintf("%s %d of %d", f[1], b, l))
			}
		}
		t.Logf("%s: %d bytes sent for %d bytes of files: %s", name, sent, size, strings.Join(big, ", "))
		if size == 0 || sent*maxShare > size {
			t.Errorf("%s: %d bytes sent for %d bytes of files outside blobs/ and regmirror/meta/, want at most 1/%d: %s", name, sent, size, maxShare, strings.Join(big, ", "))
		}
	}
	for i := range 5 {
		tags[fmt.Sprintf("t%04d", i*300)] = fmt.Sprintf("two %d", i)
	}
	src.publish(t, tags)
	sync("a promotion of 5 tags", 5)
	src.gen-- // a crawl: the same generation, nothing changed
	src.publish(t, tags)
	sync("a crawl", 20)
}

// metaFilesOfLive returns the paths of the metadata files besides the root that the source's
// live stamp lists (metaFiles: the network file and the content packs).
func metaFilesOfLive(t *testing.T, s *source) []string {
	t.Helper()
	st, err := s.tree.ReadStamp()
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, f := range strings.Fields(st.MetaFiles) {
		paths = append(paths, s.tree.Path(layout.MetaDir+"/"+f))
	}
	if len(paths) < 2 {
		t.Fatalf("live stamp's metaFiles %q: want a network file and a pack", st.MetaFiles)
	}
	return paths
}

// TestMirrorSyncMetaFiles: phase 2 switches only to a publication whose metadata files (the
// network file and content packs its stamp lists) are all here, and its deletions never
// remove one, even once the source has removed it.
func TestMirrorSyncMetaFiles(t *testing.T) {
	testSyncNeeds(t, func(t *testing.T, src *source) []string {
		files := metaFilesOfLive(t, src)
		return files[len(files)-1:]
	}, metaFilesOfLive)
}
