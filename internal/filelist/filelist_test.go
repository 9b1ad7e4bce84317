package filelist

import (
	"bufio"
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/regmirror/regmirror/layout"
)

// parsed is a file list read back the way quick-fedora-mirror's readers do.
type parsed struct {
	version   string
	files     map[string]Entry
	checksums map[string]string
	ended     bool
}

// parse reads a file list strictly: the header lines in order, then sections; every [Files]
// line has four tab-separated fields.
func parse(t *testing.T, data []byte) parsed {
	t.Helper()
	p := parsed{files: map[string]Entry{}, checksums: map[string]string{}}
	sc := bufio.NewScanner(bytes.NewReader(data))
	var lines []string
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if len(lines) < 4 || lines[0] != "[Version]" || lines[2] != "" || lines[3] != "[Files]" {
		t.Fatalf("header: got %q, want [Version], a number, an empty line, [Files]", lines[:min(4, len(lines))])
	}
	p.version = lines[1]
	section := "[Files]"
	for i, l := range lines[4:] {
		switch {
		case l == "":
			continue
		case strings.HasPrefix(l, "[") && strings.HasSuffix(l, "]"):
			section = l
			if l == "[End]" {
				p.ended = true
				if rest := lines[4+i+1:]; len(rest) > 0 {
					t.Errorf("lines after [End]: %q", rest)
				}
			}
			continue
		}
		f := strings.Split(l, "\t")
		switch section {
		case "[Files]":
			if len(f) != 4 {
				t.Fatalf("[Files] line %q: got %d fields, want 4", l, len(f))
			}
			ts, err1 := strconv.ParseInt(f[0], 10, 64)
			size, err2 := strconv.ParseInt(f[2], 10, 64)
			if err1 != nil || err2 != nil {
				t.Fatalf("[Files] line %q: bad number", l)
			}
			if _, dup := p.files[f[3]]; dup {
				t.Errorf("%s listed twice", f[3])
			}
			p.files[f[3]] = Entry{Time: ts, Type: f[1], Size: size, Path: f[3]}
		case "[Checksums SHA1]":
			if len(f) != 2 || len(f[0]) != 40 {
				t.Fatalf("[Checksums SHA1] line %q: want <sha1>\\t<path>", l)
			}
			p.checksums[f[1]] = f[0]
		default:
			t.Fatalf("unknown section %s", section)
		}
	}
	return p
}

// changedSince is what quick-fedora-mirror transfers: the entries newer than its last run.
func (p parsed) changedSince(last int64) []string {
	var out []string
	for path, e := range p.files {
		if e.Time > last && e.Type != "d" {
			out = append(out, path)
		}
	}
	return out
}

// writeGeneration writes blobs and publishes a generation, as the generator does.
func writeGeneration(t *testing.T, tree *layout.Tree, gen uint64, blobs ...string) *layout.Meta {
	t.Helper()
	m := layout.NewMeta(gen)
	for _, b := range blobs {
		sum := sha256.Sum256([]byte(b))
		d := layout.MustDigest("sha256:" + hex.EncodeToString(sum[:]))
		// Like the generator: a blob already in the tree is not written again.
		if _, err := os.Stat(tree.Path(layout.BlobPath(d))); err != nil {
			if err := layout.WriteFile(tree.Path(layout.BlobPath(d)), []byte(b)); err != nil {
				t.Fatal(err)
			}
		}
		m.Blobs[d] = &layout.Blob{Size: int64(len(b)), Since: gen}
	}
	if err := layout.WriteFile(tree.Path(layout.OCILayoutFile), []byte(layout.OCILayoutContent)); err != nil {
		t.Fatal(err)
	}
	publishWithList(t, tree, m, DefaultModule)
	return m
}

// publishWithList publishes m with its file list, as generate and crawl do.
func publishWithList(t *testing.T, tree *layout.Tree, m *layout.Meta, module string) {
	t.Helper()
	finish, _, err := Finish(tree, module, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tree.PublishWith(m, layout.Publication{RootLinks: []string{Name(module)}, Finish: finish}); err != nil {
		t.Fatal(err)
	}
}

func TestWrite(t *testing.T) {
	dir := t.TempDir()
	tree := layout.NewTree(dir)
	m := writeGeneration(t, tree, 1, "layer one", "config one")
	// Not listed: a writer's temporary file, the listener's state, another file list.
	for _, p := range []string{"blobs/sha256/" + layout.TempPrefix + "x", ListenStateFile, Prefix + "other"} {
		if err := os.WriteFile(tree.Path(p), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	m.Generation++
	publishWithList(t, tree, m, "")
	data, err := os.ReadFile(tree.Path(Name(DefaultModule)))
	if err != nil {
		t.Fatal(err)
	}
	p := parse(t, data)
	if got, want := p.version, "2"; got != want {
		t.Errorf("version: got %s, want %s", got, want)
	}
	if !p.ended {
		t.Errorf("no [End] line")
	}

	// Every file and directory of the tree is listed with its type and size, nothing else (the
	// root link to the list aside); the list names itself: its link in the publication and
	// its shared file.
	self := listItself(t, tree)
	if len(self) != 2 {
		t.Errorf("the list's own entries: got %v, want its link and its file", self)
	}
	want := map[string]Entry{}
	err = filepath.Walk(dir, func(path string, fi os.FileInfo, err error) error {
		if err != nil || path == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		rel = filepath.ToSlash(rel)
		if strings.HasPrefix(fi.Name(), layout.TempPrefix) || strings.HasPrefix(rel, Prefix) || rel == ListenStateFile {
			return nil
		}
		typ := "f"
		if fi.IsDir() {
			typ = "d"
		} else if fi.Mode()&os.ModeSymlink != 0 {
			typ = "l"
		}
		want[rel] = Entry{Type: typ, Size: fi.Size(), Path: rel}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got, w := len(p.files), len(want); got != w {
		t.Errorf("entries: got %d, want %d", got, w)
	}
	for rel, w := range want {
		got, ok := p.files[rel]
		if !ok {
			t.Errorf("%s: not listed", rel)
			continue
		}
		if got.Type != w.Type || (w.Type != "d" && got.Size != w.Size) {
			t.Errorf("%s: got type %s size %d, want %s %d", rel, got.Type, got.Size, w.Type, w.Size)
		}
		if now := time.Now().Unix(); got.Time < now-60 || got.Time > now+1 {
			t.Errorf("%s: timestamp %d, want about now (%d)", rel, got.Time, now)
		}
	}
	for _, rel := range Checksummed {
		b, err := os.ReadFile(tree.Path(rel))
		if err != nil {
			t.Fatal(err)
		}
		sum := sha1.Sum(b)
		if got, w := p.checksums[rel], hex.EncodeToString(sum[:]); got != w {
			t.Errorf("SHA1 of %s: got %s, want %s", rel, got, w)
		}
	}

}

func TestChangedSinceLastRun(t *testing.T) {
	dir := t.TempDir()
	tree := layout.NewTree(dir)
	writeGeneration(t, tree, 1, "old layer")
	// A client's last run, then a new generation (one second later, the list's resolution).
	last := time.Now().Unix()
	time.Sleep(1100 * time.Millisecond)
	writeGeneration(t, tree, 2, "old layer", "new layer")
	data, _ := os.ReadFile(tree.Path("fullfiletimelist-containers"))
	p := parse(t, data)
	got := map[string]bool{}
	for _, f := range p.changedSince(last) {
		got[f] = true
	}
	sum := sha256.Sum256([]byte("new layer"))
	newBlob := "blobs/sha256/" + hex.EncodeToString(sum[:])
	sum = sha256.Sum256([]byte("old layer"))
	oldBlob := "blobs/sha256/" + hex.EncodeToString(sum[:])
	live, err := tree.LivePublication()
	if err != nil {
		t.Fatal(err)
	}
	pub := layout.PubPath(live)
	for _, f := range []string{newBlob, layout.LiveLink, pub + "/" + layout.PubIndex, pub + "/" + layout.PubStamp, pub + "/" + Name("containers")} {
		if !got[f] {
			t.Errorf("changed since the last run: %s missing from %v", f, got)
		}
	}
	for _, f := range []string{oldBlob, layout.IndexFile, layout.CurrentFile} {
		if got[f] {
			t.Errorf("changed since the last run: the unchanged %s is listed", f)
		}
	}
}

func TestFinishErrors(t *testing.T) {
	tree := layout.NewTree(t.TempDir())
	for _, c := range []struct{ name, module string }{{"module with a slash", "a/b"}, {"module hidden", ".x"}} {
		t.Run(c.name, func(t *testing.T) {
			if _, _, err := Finish(tree, c.module, nil); err == nil || !strings.Contains(err.Error(), "plain name") {
				t.Errorf("got %v, want an error mentioning %q", err, "plain name")
			}
		})
	}
}

// listItself is the live file list's own entries: its link in the live publication and the
// shared file that link points at (tree-relative paths).
func listItself(t *testing.T, tree *layout.Tree) map[string]bool {
	t.Helper()
	live, err := tree.LivePublication()
	if err != nil {
		t.Fatal(err)
	}
	link := layout.PubPath(live) + "/" + Name(DefaultModule)
	target, err := os.Readlink(tree.Path(link))
	if err != nil {
		t.Fatalf("the publication's file list: %v, want a link to its shared file", err)
	}
	shared := path.Clean(path.Join(path.Dir(link), target))
	if !strings.HasPrefix(shared, layout.SharedDir+"/") {
		t.Fatalf("%s points at %s, want a file under %s", link, shared, layout.SharedDir)
	}
	return map[string]bool{link: true, shared: true}
}

// TestScanRoots: the paths listed do not depend on how the root is spelled (relative, with
// a trailing separator, absolute).
func TestScanRoots(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"a", "a.b", "b/c", "b/d/e"} {
		if err := layout.WriteFile(filepath.Join(dir, filepath.FromSlash(f)), []byte(f)); err != nil {
			t.Fatal(err)
		}
	}
	want := "a a.b b b/c b/d b/d/e"
	t.Chdir(dir)
	for name, root := range map[string]string{"absolute": dir, "trailing separator": dir + string(filepath.Separator), "dot": ".", "dot slash": "./"} {
		t.Run(name, func(t *testing.T) {
			entries, err := Scan(root)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, e := range entries {
				got = append(got, e.Path)
			}
			if strings.Join(got, " ") != want {
				t.Errorf("Scan(%q): got %q, want %q", root, got, want)
			}
		})
	}
}

// TestRenderLines: each [Files] line is "time<TAB>type<TAB>size<TAB>path", in time then path
// order.
func TestRenderLines(t *testing.T) {
	entries := []Entry{
		{Time: 1700000002, Type: "f", Size: 0, Path: "z"},
		{Time: -1, Type: "l", Size: 12, Path: "b/link"},
		{Time: 1700000002, Type: "d", Size: 4096, Path: "a dir"},
	}
	sortByTime(entries)
	got, err := render(entries, map[string]string{})
	if err != nil {
		t.Fatal(err)
	}
	want := "[Version]\n2\n\n[Files]\n-1\tl\t12\tb/link\n1700000002\td\t4096\ta dir\n1700000002\tf\t0\tz\n\n[Checksums SHA1]\n\n[End]\n"
	if string(got) != want {
		t.Errorf("render: got %q, want %q", got, want)
	}
}

// TestScanMatchesWalk: the platform's listing (on Linux read with directory descriptors)
// gives exactly what filepath.WalkDir's does, over every kind of entry and every exception.
func TestScanMatchesWalk(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{
		"blobs/sha256/aa", "blobs/sha256/bb", "regmirror/v2/fedora/_digests/aa/aa.oci-manifest",
		"regmirror/v2/fedora/toolbox/_digests/bb/bb.oci-index", "a.b", "a/b",
		layout.TempPrefix + "dir/x", "blobs/" + layout.TempPrefix + "y", ListenStateFile, layout.SettledFile,
		Prefix + "containers", "sub/" + Prefix + "nested",
	} {
		if err := layout.WriteFile(filepath.Join(dir, filepath.FromSlash(f)), []byte(f)); err != nil {
			t.Fatal(err)
		}
	}
	for link, target := range map[string]string{"index.json": "regmirror/live/index.json", "regmirror/live": "pub/x", "blobs/dir-link": "sha256"} {
		if err := os.Symlink(target, filepath.Join(dir, filepath.FromSlash(link))); err != nil {
			t.Fatal(err)
		}
	}
	if err := syscallMkfifo(filepath.Join(dir, "fifo")); err != nil {
		t.Logf("no fifo in the tree: %v", err)
	}
	old := time.Unix(1_000_000_000, 0)
	if err := os.Chtimes(filepath.Join(dir, "a.b"), old, old); err != nil {
		t.Fatal(err)
	}
	sortByPath := func(l []Entry) {
		slices.SortFunc(l, func(a, b Entry) int { return strings.Compare(a.Path, b.Path) })
	}
	want, err := walkScan(dir, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	sortByPath(want)
	got, err := scanSkipping(dir, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	sortByPath(got)
	if !slices.Equal(got, want) {
		t.Errorf("scan:\ngot  %v\nwant %v", got, want)
	}
	if len(want) < 15 {
		t.Errorf("walkScan listed %d entries, want every one made: %v", len(want), want)
	}
	// Skipping a directory: listed itself, nothing below it.
	wantSkip := slices.DeleteFunc(slices.Clone(want), func(e Entry) bool { return strings.HasPrefix(e.Path, "regmirror/v2/") })
	// Below a directory, named by its path in the tree: what the whole tree's listing has
	// below it.
	wantBelow := slices.DeleteFunc(slices.Clone(want), func(e Entry) bool { return !strings.HasPrefix(e.Path, "regmirror/") })
	for name, scan := range map[string]func(string, string, map[string]bool) ([]Entry, error){"scanSkipping": scanSkipping, "walkScan": walkScan} {
		got, err := scan(dir, "", map[string]bool{"regmirror/v2": true})
		if err != nil {
			t.Fatal(err)
		}
		sortByPath(got)
		if !slices.Equal(got, wantSkip) || !slices.ContainsFunc(got, func(e Entry) bool { return e.Path == "regmirror/v2" }) {
			t.Errorf("%s skipping regmirror/v2:\ngot  %v\nwant %v", name, got, wantSkip)
		}
		got, err = scan(filepath.Join(dir, "regmirror"), "regmirror", nil)
		if err != nil {
			t.Fatal(err)
		}
		sortByPath(got)
		if !slices.Equal(got, wantBelow) || len(wantBelow) == 0 {
			t.Errorf("%s below regmirror:\ngot  %v\nwant %v", name, got, wantBelow)
		}
	}

	if err := os.WriteFile(filepath.Join(dir, "blobs", "tab\tname"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := scanSkipping(dir, "", nil); err == nil || !strings.Contains(err.Error(), "tab or newline") {
		t.Errorf("scan of a name with a tab: got %v, want the format's error", err)
	}
	if _, err := scanSkipping(filepath.Join(dir, "missing"), "", nil); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("scan of a missing root: got %v, want not exist", err)
	}
}

// BenchmarkScan lists a tree shaped as a generated one: a flat directory of blobs and a
// directory per manifest holding its phase-2 marker.
//
//	go test ./internal/filelist -run '^$' -bench '^BenchmarkScan$'
func BenchmarkScan(b *testing.B) {
	dir := b.TempDir()
	for i := range 3000 {
		hex := strconv.Itoa(1_000_000 + i)
		for _, f := range []string{"blobs/sha256/" + hex, "blobs/sha256/c" + hex, "blobs/sha256/l" + hex, "regmirror/v2/r/_digests/" + hex + "/" + hex + ".oci-manifest"} {
			if err := layout.WriteFile(filepath.Join(dir, filepath.FromSlash(f)), nil); err != nil {
				b.Fatal(err)
			}
		}
	}
	for _, bc := range []struct {
		name string
		scan func(string, string, map[string]bool) ([]Entry, error)
	}{{"platform", scanSkipping}, {"WalkDir", walkScan}} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				if _, err := bc.scan(dir, "", nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestReuse: with a settled tree, the entries below each Reuse.Dir come from the live
// publication's list but for the changed paths and their directories, which are read again;
// the rest is listed. The result equals a listing of the tree; an entry the caller vouches for
// is taken from the list, not read; a list that is missing or not ours is not used.
func TestReuse(t *testing.T) {
	const dir2 = "regmirror/v2"
	a := dir2 + "/a/_digests/11/11.oci-manifest"
	b := dir2 + "/b/_digests/22/22.oci-manifest"
	c := dir2 + "/c/x/_digests/33/33.oci-index"
	tests := []struct {
		name    string
		list    func(entries []Entry) []byte // the live publication's list, from a listing
		wantOK  bool
		wantErr bool
		changed []string
	}{
		{"settled", func(e []Entry) []byte { return mustRender(t, e) }, true, false, []string{c, b}},
		{"no list", nil, false, false, []string{c, b}},
		{"not a file list", func([]Entry) []byte { return []byte("[Version]\n1\n") }, false, false, []string{c, b}},
		{"list cut short", func(e []Entry) []byte { l := mustRender(t, e); return l[:len(l)/2] }, false, false, []string{c, b}},
		{"a change outside the directory", func(e []Entry) []byte { return mustRender(t, e) }, false, true, []string{"blobs/sha256/yy"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tree, before := liveTree(t, a, b, "blobs/sha256/zz", "blobs/sha256/ww")
			// An entry the caller vouches for is not read again: marked with a time of its own.
			const vouched = 7
			for i := range before {
				if before[i].Path == a || before[i].Path == "blobs/sha256/zz" {
					before[i].Time = vouched
				}
			}
			if tc.list != nil {
				if err := os.WriteFile(tree.Path("regmirror/pub/p/"+Name(DefaultModule)), tc.list(before), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			// The change: c added (new directories), b removed (its directories left empty),
			// a blob added and one removed.
			if err := layout.WriteFile(tree.Path(c), nil); err != nil {
				t.Fatal(err)
			}
			for _, p := range []string{b, path.Dir(b), path.Dir(path.Dir(b)), path.Dir(path.Dir(path.Dir(b)))} {
				if err := os.Remove(tree.Path(p)); err != nil {
					t.Fatal(err)
				}
			}
			if err := layout.WriteFile(tree.Path("blobs/sha256/yy"), nil); err != nil {
				t.Fatal(err)
			}
			if err := os.Remove(tree.Path("blobs/sha256/ww")); err != nil {
				t.Fatal(err)
			}
			u, err := resolveReuse([]Reuse{
				{Dir: dir2, Changed: tc.changed},
				{Dir: "blobs/sha256", Changed: []string{"blobs/sha256/yy", "blobs/sha256/ww"}},
			}, nil)
			got, ok := []Entry(nil), false
			if err == nil {
				got, ok, err = reuseEntries(tree, DefaultModule, u)
			}
			if (err != nil) != tc.wantErr || ok != tc.wantOK {
				t.Fatalf("got ok %v, error %v; want ok %v, error %v", ok, err, tc.wantOK, tc.wantErr)
			}
			if !ok {
				return
			}
			want, err := Scan(tree.Dir())
			if err != nil {
				t.Fatal(err)
			}
			for i := range want {
				if want[i].Path == a || want[i].Path == "blobs/sha256/zz" {
					want[i].Time = vouched
				}
			}
			slices.SortFunc(got, func(a, b Entry) int { return strings.Compare(a.Path, b.Path) })
			if !slices.Equal(got, want) {
				t.Errorf("entries:\ngot  %v\nwant %v", got, want)
			}
		})
	}
}

// liveTree is a tree holding files (each its path as content) and a live publication
// regmirror/pub/p (empty), and its listing.
func liveTree(t *testing.T, files ...string) (*layout.Tree, []Entry) {
	t.Helper()
	tree := layout.NewTree(t.TempDir())
	for _, f := range files {
		if err := layout.WriteFile(tree.Path(f), []byte(f)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(tree.Path("regmirror/pub/p"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("pub/p", tree.Path(layout.LiveLink)); err != nil {
		t.Fatal(err)
	}
	entries, err := Scan(tree.Dir())
	if err != nil {
		t.Fatal(err)
	}
	return tree, entries
}

// mustRender is the list of entries (no checksummed file).
func mustRender(t *testing.T, entries []Entry) []byte {
	t.Helper()
	l := slices.Clone(entries)
	sortByTime(l)
	data, err := render(l, map[string]string{})
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// FuzzParseFiles: parseFiles, which reads the live publication's list back from the tree,
// never panics; what it accepts is below the prefix, and renders and parses back the same.
func FuzzParseFiles(f *testing.F) {
	f.Add([]byte("[Version]\n2\n\n[Files]\n1\tf\t2\ta/b\n3\td\t4096\ta\n\n[Checksums SHA1]\n\n[End]\n"), "a/")
	f.Add([]byte("[Version]\n2\n\n[Files]\n1\tx\t2\ta/b\n"), "a/")
	f.Add([]byte("[Version]\n2\n\n[Files]\n"), "")
	f.Fuzz(func(t *testing.T, data []byte, prefix string) {
		entries, ok := parseFiles(data, []string{prefix})
		if !ok {
			return
		}
		for _, e := range entries {
			if !strings.HasPrefix(e.Path, prefix) {
				t.Errorf("%q: not below %q", e.Path, prefix)
			}
		}
		data2, err := render(entries, map[string]string{})
		if err != nil {
			t.Fatal(err)
		}
		again, ok := parseFiles(data2, []string{prefix})
		if !ok || !slices.Equal(again, entries) {
			t.Errorf("rendered and parsed again: got %v (%v), want %v", again, ok, entries)
		}
	})
}

// TestReuseWhole: a Reuse whose changed paths are read again whole (Reuse.Whole, as
// regmirror/shared's entries are): the entries below each changed path come from a listing,
// what the live list has below it is dropped, the rest is taken from the list; the changed
// paths given Later count as well; Dir itself among them has Dir listed. The entries equal a
// listing of the tree (an entry vouched for aside), and the spliced list the listed one.
func TestReuseWhole(t *testing.T) {
	const shared = "regmirror/shared"
	kept := shared + "/k/aaaa/_tags/1"           // vouched for: taken from the list
	moved := shared + "/k/bbbb/_tags/1"          // its time moves: read again with its entry
	gone := shared + "/k/cccc/_tags/1"           // its entry removed
	added := shared + "/k/dddd/_tags/1"          // its entry new
	later := shared + "/j/eeee-0000000000000000" // a file changed, known Later
	tests := []struct {
		name        string
		changed     []string
		later       []string
		wantVouched bool // the vouched entry's line comes from the list
	}{
		{"entries changed", []string{shared + "/k/bbbb", shared + "/k/cccc", shared + "/k/dddd"}, []string{later}, true},
		{"a kind changed whole", []string{shared + "/k"}, []string{later}, false},
		{"nested changes", []string{shared + "/k", shared + "/k/bbbb", shared + "/k/bbbb/_tags/1"}, []string{later, shared + "/j"}, false},
		{"all of it changed", []string{shared + "/k/bbbb"}, []string{shared}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tree, before := liveTree(t, kept, moved, gone, later, "blobs/sha256/zz")
			const vouched = 7
			for i := range before {
				switch before[i].Path {
				case kept:
					before[i].Time = vouched
				case moved, path.Dir(moved), path.Dir(path.Dir(moved)), later:
					before[i].Time = 9 // as listed before their times moved: read again
				}
			}
			if err := os.WriteFile(tree.Path("regmirror/pub/p/"+Name(DefaultModule)), mustRender(t, before), 0o644); err != nil {
				t.Fatal(err)
			}
			// The change: a time moved, an entry removed, one added, a file replaced.
			old := time.Unix(1_000_000, 0)
			if err := os.Chtimes(tree.Path(moved), old, old); err != nil {
				t.Fatal(err)
			}
			if err := os.RemoveAll(tree.Path(path.Dir(path.Dir(gone)))); err != nil {
				t.Fatal(err)
			}
			for _, f := range []string{added, later} {
				if err := layout.WriteFile(tree.Path(f), []byte(f+" again")); err != nil {
					t.Fatal(err)
				}
			}
			reuse := []Reuse{{Dir: shared, Changed: tc.changed, Whole: true, Later: func() []string { return tc.later }}}
			u, err := resolveReuse(reuse, nil)
			if err != nil {
				t.Fatal(err)
			}
			got, ok, err := reuseEntries(tree, DefaultModule, u)
			if err != nil || !ok {
				t.Fatalf("reuseEntries: ok %v, %v", ok, err)
			}
			want, err := Scan(tree.Dir())
			if err != nil {
				t.Fatal(err)
			}
			gotVouched := slices.ContainsFunc(got, func(e Entry) bool { return e.Path == kept && e.Time == vouched })
			if gotVouched != tc.wantVouched {
				t.Errorf("the vouched entry taken from the list: got %v, want %v", gotVouched, tc.wantVouched)
			}
			for i := range want {
				if want[i].Path == kept && tc.wantVouched {
					want[i].Time = vouched
				}
			}
			slices.SortFunc(got, func(a, b Entry) int { return strings.Compare(a.Path, b.Path) })
			if !slices.Equal(got, want) {
				t.Errorf("entries:\ngot  %v\nwant %v", got, want)
			}
			// Spliced, the same list as rendered from the entries.
			tmpDir := tree.Path("regmirror/pub/.tmp-q")
			if err := layout.WriteFile(filepath.Join(tmpDir, layout.PubStamp), []byte("{}")); err != nil {
				t.Fatal(err)
			}
			file := path.Join(shared, Name(DefaultModule), "2-1")
			u = mustResolve(t, reuse, "q", file)
			now := time.Now().Unix()
			listed, err := renderListed(tree, tmpDir, "q", DefaultModule, file, u, func() int64 { return now })
			if err != nil {
				t.Fatal(err)
			}
			spliced, ok := renderSpliced(tree, tmpDir, "q", DefaultModule, file, u, func() int64 { return now })
			if ok != (len(u.dirs) > 0) {
				t.Errorf("spliced: got ok %v, want %v", ok, len(u.dirs) > 0)
			}
			if ok && !bytes.Equal(spliced, listed) {
				t.Errorf("spliced list:\ngot\n%s\nwant\n%s", spliced, listed)
			}
		})
	}
}

// TestListedAsLive: a publication's list is what a listing of the tree says once it is live,
// directory times included, when a second begins between what the publish wrote before the
// list was rendered and the render (generation 1: regmirror/shared moves as the list's
// directory is made; every generation: the list's directory, regmirror/pub and regmirror
// move as the list, the publication and live land after the render). An attempt whose
// writes after the render do not all fall within that second (a machine too loaded) proves
// nothing and is made again.
func TestListedAsLive(t *testing.T) {
	tree := layout.NewTree(t.TempDir())
	for gen := uint64(1); gen <= 3; gen++ {
		var diffs []string
		for attempt := 0; ; attempt++ {
			if attempt == 5 {
				t.Fatalf("generation %d: no publish ended within the second its list was rendered in %d attempts: %v", gen, attempt, diffs)
			}
			m := layout.NewMeta(gen)
			if err := layout.WriteFile(tree.Path(layout.OCILayoutFile), []byte(layout.OCILayoutContent)); err != nil {
				t.Fatal(err)
			}
			finish, _, err := Finish(tree, DefaultModule, nil)
			if err != nil {
				t.Fatal(err)
			}
			var second int64
			atSecond := func(tmpDir, name string, sharedPath func(string) string) (map[string][]byte, error) {
				start := time.Now().Truncate(time.Second).Add(time.Second + 20*time.Millisecond)
				time.Sleep(time.Until(start))
				second = start.Unix()
				return finish(tmpDir, name, sharedPath)
			}
			if _, err := tree.PublishWith(m, layout.Publication{RootLinks: []string{Name(DefaultModule)}, Finish: atSecond}); err != nil {
				t.Fatal(err)
			}
			inTime := time.Now().Unix() == second
			data, err := os.ReadFile(tree.Path(Name(DefaultModule)))
			if err != nil {
				t.Fatal(err)
			}
			listed := parse(t, data).files
			want, err := Scan(tree.Dir())
			if err != nil {
				t.Fatal(err)
			}
			diffs = nil
			for _, e := range want {
				if got := listed[e.Path]; got != e {
					diffs = append(diffs, fmt.Sprintf("%s: listed %v, a listing says %v", e.Path, got, e))
				}
				delete(listed, e.Path)
			}
			for _, e := range listed {
				diffs = append(diffs, fmt.Sprintf("%s: listed, not in the tree", e.Path))
			}
			if inTime {
				for _, d := range diffs {
					t.Errorf("generation %d: %s", gen, d)
				}
				break
			}
		}
	}
}
