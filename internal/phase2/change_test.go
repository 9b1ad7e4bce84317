package phase2

import (
	"bytes"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/regmirror/regmirror/layout"
)

// spec describes a small random generation: repositories, the media type of each manifest
// (by name) and the generation it appeared in (0: no blob record).
type spec struct {
	repos map[string]*repoSpec
	media map[string]string
	since map[string]uint64
}

type repoSpec struct {
	tags     map[string]string // tag → manifest name
	extra    []string          // manifests referenced untagged (children)
	retiring []string
}

var (
	specRepos = []string{"a", "a/b", "a-b", "a/b/c", "ab", "z"}
	specTags  = []string{"1", "2", "latest", "sha256", "v1.0", "x-y"}
	specMedia = []string{layout.MediaTypeOCIManifest, layout.MediaTypeOCIIndex, layout.MediaTypeDockerManifest, layout.MediaTypeDockerList, "application/x-unknown"}
)

func randomSpec(rnd *rand.Rand) *spec {
	s := &spec{repos: map[string]*repoSpec{}, media: map[string]string{}, since: map[string]uint64{}}
	for i := range 12 {
		s.media[fmt.Sprint("m", i)] = specMedia[rnd.IntN(len(specMedia))]
		s.since[fmt.Sprint("m", i)] = uint64(rnd.IntN(4))
	}
	for _, name := range specRepos {
		if rnd.IntN(4) == 0 {
			continue
		}
		r := &repoSpec{tags: map[string]string{}}
		for _, tag := range specTags {
			if rnd.IntN(2) == 0 {
				r.tags[tag] = fmt.Sprint("m", rnd.IntN(12))
			}
		}
		for range rnd.IntN(3) {
			r.extra = append(r.extra, fmt.Sprint("m", rnd.IntN(12)))
		}
		for range rnd.IntN(3) {
			r.retiring = append(r.retiring, fmt.Sprint("m", rnd.IntN(12)))
		}
		s.repos[name] = r
	}
	return s
}

func (s *spec) clone() *spec {
	c := &spec{repos: map[string]*repoSpec{}, media: maps.Clone(s.media), since: maps.Clone(s.since)}
	for name, r := range s.repos {
		c.repos[name] = &repoSpec{maps.Clone(r.tags), slices.Clone(r.extra), slices.Clone(r.retiring)}
	}
	return c
}

// mutate is the next generation: up to four random changes, among them none.
func (s *spec) mutate(rnd *rand.Rand) *spec {
	c := s.clone()
	pick := func() *repoSpec {
		names := slices.Sorted(maps.Keys(c.repos))
		if len(names) == 0 {
			return nil
		}
		return c.repos[names[rnd.IntN(len(names))]]
	}
	for range rnd.IntN(5) {
		m := fmt.Sprint("m", rnd.IntN(12))
		switch rnd.IntN(8) {
		case 0: // a tag moved or added
			if r := pick(); r != nil {
				r.tags[specTags[rnd.IntN(len(specTags))]] = m
			}
		case 1: // a tag removed, its manifest retiring
			if r := pick(); r != nil {
				tag := specTags[rnd.IntN(len(specTags))]
				if old, ok := r.tags[tag]; ok {
					delete(r.tags, tag)
					r.retiring = append(r.retiring, old)
				}
			}
		case 2: // a repository added or replaced
			c.repos[specRepos[rnd.IntN(len(specRepos))]] = &repoSpec{tags: map[string]string{"1": m}}
		case 3: // a repository removed
			delete(c.repos, specRepos[rnd.IntN(len(specRepos))])
		case 4: // a manifest's media type changed
			c.media[m] = specMedia[rnd.IntN(len(specMedia))]
		case 5: // a manifest's generation changed (it left and came back)
			c.since[m] = uint64(rnd.IntN(5))
		case 6: // retiring content expired
			if r := pick(); r != nil {
				r.retiring = nil
			}
		case 7: // every tag gone: retiring content only
			if r := pick(); r != nil {
				for _, d := range r.tags {
					r.retiring = append(r.retiring, d)
				}
				r.tags = map[string]string{}
			}
		}
	}
	return c
}

// meta builds generation gen of s.
func (s *spec) meta(gen uint64) *layout.Meta {
	m := layout.NewMeta(gen)
	digest := func(name string) layout.Digest {
		d := digestOf(name)
		m.Manifests[d] = &layout.Manifest{MediaType: s.media[name]}
		if s.since[name] > 0 {
			m.Blobs[d] = &layout.Blob{Since: s.since[name]}
		}
		return d
	}
	for name, r := range s.repos {
		repo := &layout.Repository{Tags: map[string]layout.Digest{}}
		refs := map[layout.Digest]bool{}
		for tag, mf := range r.tags {
			repo.Tags[tag] = digest(mf)
			refs[repo.Tags[tag]] = true
		}
		for _, mf := range r.extra {
			refs[digest(mf)] = true
		}
		repo.Manifests = slices.SortedFunc(maps.Keys(refs), compareDigests)
		retiring := map[layout.Digest]bool{}
		for _, mf := range r.retiring {
			if d := digest(mf); !refs[d] {
				retiring[d] = true
			}
		}
		repo.Retiring = slices.SortedFunc(maps.Keys(retiring), compareDigests)
		m.Repositories[name] = repo
	}
	return m
}

// diffMarkers is the change of the digest markers from prev's to meta's, from every marker
// of both (what Diff computed before it compared repositories).
func diffMarkers(prev, meta *layout.Meta) (add, remove []string) {
	have, want := DigestFiles(prev), DigestFiles(meta)
	for f := range want {
		if _, ok := have[f]; !ok {
			add = append(add, f)
		}
	}
	for f := range have {
		if _, ok := want[f]; !ok {
			remove = append(remove, f)
		}
	}
	sort.Strings(add)
	sort.Strings(remove)
	return add, remove
}

// snapshot is what lies below the tree-relative dir, links followed: each path with a link's
// target or a file's bytes.
func snapshot(t *testing.T, tree *layout.Tree, dir string) string {
	t.Helper()
	var b strings.Builder
	var walk func(p, rel string)
	walk = func(p, rel string) {
		fi, err := os.Lstat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode()&os.ModeSymlink != 0 {
			target, err := os.Readlink(p)
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(&b, "%s -> %s\n", rel, target)
		}
		if fi, err = os.Stat(p); err != nil {
			t.Fatal(err)
		}
		if !fi.IsDir() {
			data, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(&b, "%s = %q\n", rel, data)
			return
		}
		ents, err := os.ReadDir(p)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%s/\n", rel)
		for _, e := range ents {
			walk(filepath.Join(p, e.Name()), path.Join(rel, e.Name()))
		}
	}
	walk(tree.Path(dir), ".")
	return b.String()
}

// TestWriteTagsChangeMatchesFull: over random chains of generations, publishing each with
// Diff's change (only the changed repositories rendered and the directories on their paths,
// refs.map spliced from the live one) writes exactly what rendering everything does: the
// same v2 entry, uses, refs.map bytes and digest markers; and Diff's markers are those of
// comparing every marker. Every other run stores the directories below depth 2 inside their
// ancestor's (maxLinkedDepth), where a change below that depth renders everything.
func TestWriteTagsChangeMatchesFull(t *testing.T) {
	rnd := rand.New(rand.NewPCG(10, 10))
	runs := 40
	if testing.Short() {
		runs = 8
	}
	defer func(d int) { maxLinkedDepth = d }(maxLinkedDepth)
	spliced := 0
	for run := range runs {
		maxLinkedDepth = 16
		if run%2 == 1 {
			maxLinkedDepth = 2
		}
		full, changed := layout.NewTree(t.TempDir()), layout.NewTree(t.TempDir())
		s := randomSpec(rnd)
		prev := s.meta(1)
		for _, tree := range []*layout.Tree{full, changed} {
			if _, _, err := publishTags(tree, prev, nil); err != nil {
				t.Fatal(err)
			}
		}
		for step := range 4 {
			s = s.mutate(rnd)
			next := s.meta(uint64(step + 2))
			name := fmt.Sprintf("run %d step %d", run, step)
			c := Diff(prev, next)
			add, remove := diffMarkers(prev, next)
			if !slices.Equal(c.Add, add) || !slices.Equal(c.Remove, remove) {
				t.Fatalf("%s: Diff markers:\ngot  +%q -%q\nwant +%q -%q", name, c.Add, c.Remove, add, remove)
			}
			deep := slices.ContainsFunc(c.Repos, func(name string) bool { return depth(name) >= maxLinkedDepth })
			if _, ok := readLive(changed, next, &c); ok {
				spliced++
			} else if !deep {
				t.Errorf("%s: the live publication could not vouch for its tag files", name)
			}
			rootWant, usesWant, err := publishTags(full, next, nil)
			if err != nil {
				t.Fatal(err)
			}
			rootGot, usesGot, err := publishTags(changed, next, &c)
			if err != nil {
				t.Fatal(err)
			}
			if rootGot != rootWant || !slices.Equal(usesGot, usesWant) {
				t.Fatalf("%s: got v2 %s uses %q, want %s %q", name, rootGot, usesGot, rootWant, usesWant)
			}
			if got, want := snapshot(t, changed, rootGot), snapshot(t, full, rootWant); got != want {
				t.Fatalf("%s: v2 entry:\ngot\n%s\nwant\n%s", name, got, want)
			}
			if got, want := snapshot(t, changed, Dir), snapshot(t, full, Dir); got != want {
				t.Fatalf("%s: digest markers:\ngot\n%s\nwant\n%s", name, got, want)
			}
			got, err := os.ReadFile(changed.Path(path.Join(LiveDir, RefsMapFile)))
			if err != nil {
				t.Fatal(err)
			}
			if want := TagFiles(next).RefsMap; !bytes.Equal(got, want) {
				t.Fatalf("%s: refs.map:\ngot\n%s\nwant\n%s", name, got, want)
			}
			prev = next
		}
	}
	t.Logf("%d publications spliced", spliced)
}

// publishTags publishes m the way internal/publish does, with change (nil: render
// everything), and returns the v2 entry and the uses, sorted.
func publishTags(tree *layout.Tree, m *layout.Meta, change *Change) (string, []string, error) {
	if err := Write(tree, m, change); err != nil {
		return "", nil, err
	}
	v2, uses, err := WriteTags(tree, m, change)
	if err != nil {
		return "", nil, err
	}
	if _, err := tree.PublishWith(m, layout.Publication{Links: map[string]string{PubDir: v2}, Uses: uses}); err != nil {
		return "", nil, err
	}
	sort.Strings(uses)
	return v2, uses, nil
}

// fedoraSpec is a small generation: fedora (tags 41 and 42) and fedora/toolbox (42) below it;
// manifest d, of generation 2, is there for the next one.
func fedoraSpec() *spec {
	return &spec{
		repos: map[string]*repoSpec{
			"fedora":         {tags: map[string]string{"41": "a", "42": "b"}},
			"fedora/toolbox": {tags: map[string]string{"42": "c"}},
		},
		media: map[string]string{"a": layout.MediaTypeOCIIndex, "b": layout.MediaTypeOCIIndex, "c": layout.MediaTypeOCIManifest, "d": layout.MediaTypeOCIIndex},
		since: map[string]uint64{"a": 1, "b": 1, "c": 1, "d": 2},
	}
}

// TestWriteTagsKeepsByHardLink: a publish with a change makes what it keeps of the live
// publication's tag files (the links and files of a changed repository's entry that did not
// change, the unchanged entries of the directories it makes anew) hard links of the live
// ones, and writes only what changed.
func TestWriteTagsKeepsByHardLink(t *testing.T) {
	prevSpec := fedoraSpec()
	prevSpec.repos["z"] = &repoSpec{tags: map[string]string{"1": "c"}}
	nextSpec := prevSpec.clone()
	nextSpec.repos["fedora"].tags["42"] = "d"
	prev, next := prevSpec.meta(1), nextSpec.meta(2)
	tree := layout.NewTree(t.TempDir())
	if _, _, err := publishTags(tree, prev, nil); err != nil {
		t.Fatal(err)
	}
	// The entries, below the live v2/: the links to their directory followed, and a
	// v2-tags entry's _tags.json as _tags/../_tags.json.
	paths := []string{"_base.json", "z", "fedora/_tags/41", "fedora/_tags/42", "fedora/_tags/../_tags.json", "fedora/toolbox"}
	real := func(rel string) string {
		t.Helper()
		dir, base, ok := strings.Cut(rel, "/../")
		if ok {
			base = "../" + base
		} else {
			dir, base = path.Split(rel)
		}
		d, err := filepath.EvalSymlinks(tree.Path(path.Join(LiveDir, dir)))
		if err != nil {
			t.Fatal(err)
		}
		return filepath.Join(d, base)
	}
	before := map[string]os.FileInfo{}
	for _, rel := range paths {
		fi, err := os.Lstat(real(rel))
		if err != nil {
			t.Fatal(err)
		}
		before[rel] = fi
	}
	c := Diff(prev, next)
	if _, ok := readLive(tree, next, &c); !ok {
		t.Fatal("the live publication could not vouch for its tag files")
	}
	if _, _, err := publishTags(tree, next, &c); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		rel  string
		kept bool
	}{
		{"_base.json", true},                 // the root is new: fedora's link changed
		{"z", true},                          // an unchanged directory's link, in the new root
		{"fedora/_tags/41", true},            // an unchanged tag of a changed repository
		{"fedora/_tags/42", false},           // the moved tag
		{"fedora/_tags/../_tags.json", true}, // the same tags
		{"fedora/toolbox", true},             // an unchanged child's link in a changed directory
	}
	for _, tt := range tests {
		t.Run(tt.rel, func(t *testing.T) {
			fi, err := os.Lstat(real(tt.rel))
			if err != nil {
				t.Fatal(err)
			}
			if got := os.SameFile(fi, before[tt.rel]); got != tt.kept {
				t.Errorf("the same file as the live publication's: got %v, want %v", got, tt.kept)
			}
		})
	}
}

// TestWriteTagsFallsBack: when the live publication cannot vouch for its tag files, WriteTags
// with a change renders everything, and writes what it would without one.
func TestWriteTagsFallsBack(t *testing.T) {
	prevSpec := fedoraSpec()
	nextSpec := prevSpec.clone()
	nextSpec.repos["fedora"].tags["42"] = "d"
	nextSpec.repos["fedora"].retiring = []string{"b"}
	prev, next := prevSpec.meta(1), nextSpec.meta(2)
	refsMap := func(tree *layout.Tree) string {
		root, ok := liveRoot(tree)
		if !ok {
			t.Fatal("no live v2 entry")
		}
		from := path.Join(root, RefsMapFile)
		target, err := os.Readlink(tree.Path(from))
		if err != nil {
			t.Fatal(err)
		}
		entry, _, ok := linkedEntry(from, target, RefsKind)
		if !ok {
			t.Fatalf("refs.map link %q", target)
		}
		return entry
	}
	tests := []struct {
		name   string
		damage func(t *testing.T, tree *layout.Tree)
	}{
		{"refs.map damaged", func(t *testing.T, tree *layout.Tree) {
			p := tree.Path(refsMap(tree))
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			os.Chmod(p, 0o644)
			if err := os.WriteFile(p, bytes.Replace(b, []byte("fedora:41"), []byte("fedora:40"), 1), 0o644); err != nil {
				t.Fatal(err)
			}
		}},
		{"refs.map gone", func(t *testing.T, tree *layout.Tree) {
			if err := os.Remove(tree.Path(refsMap(tree))); err != nil {
				t.Fatal(err)
			}
		}},
		{"the root's link to a changed directory gone", func(t *testing.T, tree *layout.Tree) {
			if err := os.Remove(tree.Path(path.Join(LiveDir, "fedora"))); err != nil {
				t.Fatal(err)
			}
		}},
		{"a changed directory's link elsewhere", func(t *testing.T, tree *layout.Tree) {
			dir, err := filepath.EvalSymlinks(tree.Path(path.Join(LiveDir, "fedora")))
			if err != nil {
				t.Fatal(err)
			}
			p := filepath.Join(dir, "toolbox")
			if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink("../0123456789abcdef0123456789abcdef", p); err != nil {
				t.Fatal(err)
			}
		}},
		{"a changed repository's directory a real one", func(t *testing.T, tree *layout.Tree) {
			dir, err := filepath.EvalSymlinks(tree.Path(path.Join(LiveDir, "fedora")))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.Mkdir(filepath.Join(dir, "x"), 0o755); err != nil {
				t.Fatal(err)
			}
		}},
		{"the uses damaged", func(t *testing.T, tree *layout.Tree) {
			name, err := tree.LivePublication()
			if err != nil {
				t.Fatal(err)
			}
			p, err := filepath.EvalSymlinks(tree.Path(path.Join(layout.PubPath(name), layout.SharedUses)))
			if err != nil {
				t.Fatal(err)
			}
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, bytes.Replace(b, []byte(DirKind), []byte(RepoKind), 1), 0o644); err != nil {
				t.Fatal(err)
			}
		}},
		{"the live v2 of the shape before v2-dir", func(t *testing.T, tree *layout.Tree) {
			// Each repository's directory a real one in the root, holding its two links.
			old := map[string]layout.SharedEntry{BaseFile: {Data: []byte(baseJSON)}}
			tf := TagFiles(prev)
			for name, files := range tf.Repos {
				dir, err := tree.WriteSharedDir(RepoKind, files)
				if err != nil {
					t.Fatal(err)
				}
				old[path.Join(name, TagsDir)] = layout.SharedEntry{Link: path.Join(dir, TagsDir)}
				old[path.Join(name, TagListFile)] = layout.SharedEntry{Link: path.Join(dir, TagListFile)}
			}
			refs, err := tree.WriteSharedFile(RefsKind, prev.Generation, tf.RefsMap)
			if err != nil {
				t.Fatal(err)
			}
			old[RefsMapFile] = layout.SharedEntry{Link: refs}
			root, err := tree.WriteSharedDir(RootKind, old)
			if err != nil {
				t.Fatal(err)
			}
			name, err := tree.LivePublication()
			if err != nil {
				t.Fatal(err)
			}
			from := path.Join(layout.PubPath(name), PubDir)
			if err := os.Remove(tree.Path(from)); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(layout.RelLink(from, root), tree.Path(from)); err != nil {
				t.Fatal(err)
			}
			if got, err := os.ReadFile(tree.Path(path.Join(LiveDir, "fedora/toolbox", TagListFile))); err != nil || !bytes.Contains(got, []byte(`"42"`)) {
				t.Fatalf("the old shape's tag list: %q, %v", got, err)
			}
		}},
		{"no live publication", func(t *testing.T, tree *layout.Tree) {
			if err := os.Remove(tree.Path(layout.LiveLink)); err != nil {
				t.Fatal(err)
			}
		}},
	}
	// vouched: the run before kept vouches (layout.Tree.UseVouches) and this one takes
	// them: what was damaged since is refused all the same.
	for _, tc := range tests {
		for _, vouched := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/vouched=%v", tc.name, vouched), func(t *testing.T) {
				dir, cache := t.TempDir(), t.TempDir()
				full, changed := layout.NewTree(t.TempDir()), layout.NewTree(dir)
				save := func() {}
				if vouched {
					save = changed.UseVouches(cache, true)
				}
				for _, tree := range []*layout.Tree{full, changed} {
					if _, _, err := publishTags(tree, prev, nil); err != nil {
						t.Fatal(err)
					}
				}
				if vouched {
					time.Sleep(100 * time.Millisecond) // the files older than the vouches' quiet time
					save()
					changed = layout.NewTree(dir)
					changed.UseVouches(cache, true)
				}
				tc.damage(t, changed)
				c := Diff(prev, next)
				// readLive vouches for what it reads, writeChange for the live refs.map it splices.
				if l, ok := readLive(changed, next, &c); ok {
					if _, ok, _ := writeSplicedRefs(changed, next, l.changed, c.refs, l.refs); ok || !l.spliced {
						t.Errorf("the damaged live publication vouched for its tag files")
					}
				}
				if err := Write(changed, next, &c); err != nil {
					t.Fatal(err)
				}
				if err := Write(full, next, nil); err != nil {
					t.Fatal(err)
				}
				rootGot, usesGot, err := WriteTags(changed, next, &c)
				if err != nil {
					t.Fatal(err)
				}
				rootWant, usesWant, err := WriteTags(full, next, nil)
				if err != nil {
					t.Fatal(err)
				}
				sort.Strings(usesGot)
				sort.Strings(usesWant)
				if rootGot != rootWant || !slices.Equal(usesGot, usesWant) {
					t.Fatalf("got v2 %s uses %q, want %s %q", rootGot, usesGot, rootWant, usesWant)
				}
				if got, want := snapshot(t, changed, rootGot), snapshot(t, full, rootWant); got != want {
					t.Errorf("v2 entry:\ngot\n%s\nwant\n%s", got, want)
				}
			})
		}
	}
}

// FuzzSpliceRefs: spliceRefs never panics on any bytes; from the refs.map of the metadata the
// change is from it makes exactly the new one; and whatever it accepts, it made by removing
// the change's lines once each and adding its new ones.
func FuzzSpliceRefs(f *testing.F) {
	prevSpec := &spec{
		repos: map[string]*repoSpec{
			"a":   {tags: map[string]string{"1": "m1", "2": "m2"}, extra: []string{"m3"}},
			"a/b": {tags: map[string]string{"1": "m1"}, retiring: []string{"m4"}},
			"z":   {tags: map[string]string{"latest": "m5"}},
		},
		media: map[string]string{"m1": layout.MediaTypeOCIIndex, "m2": layout.MediaTypeOCIIndex, "m3": layout.MediaTypeOCIManifest, "m4": layout.MediaTypeDockerManifest, "m5": layout.MediaTypeOCIIndex, "m6": layout.MediaTypeOCIIndex},
		since: map[string]uint64{"m1": 1, "m2": 1, "m3": 2, "m4": 1, "m5": 3, "m6": 4},
	}
	nextSpec := prevSpec.clone()
	nextSpec.repos["a"].tags["2"] = "m6"
	nextSpec.repos["a"].retiring = []string{"m2"}
	delete(nextSpec.repos, "a/b")
	prev, next := prevSpec.meta(3), nextSpec.meta(4)
	c := Diff(prev, next)
	changed := map[string]bool{}
	for _, name := range c.Repos {
		changed[name] = true
	}
	valid, want := TagFiles(prev).RefsMap, TagFiles(next).RefsMap
	f.Add(valid)
	f.Add([]byte(refsHeader))
	f.Add(bytes.Replace(valid, []byte("a:1 "), []byte("a:9 "), 1))
	f.Add(bytes.Replace(valid, []byte("\nz:"), []byte("\na:sha256:x "), 1))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, ok := spliceRefs(b, next, changed, c.refs)
		got := p.Bytes()
		if bytes.Equal(b, valid) {
			if !ok || !bytes.Equal(got, want) {
				t.Fatalf("from the previous refs.map: got %q (ok %v), want %q", got, ok, want)
			}
		}
		if !ok {
			return
		}
		lines := map[string]int{}
		for l := range strings.SplitSeq(string(b), "\n") {
			lines[l]++
		}
		for l, n := range c.refs.remove {
			lines[l] -= n
		}
		for _, l := range c.refs.tags {
			lines[l]++
		}
		for _, r := range c.refs.digests {
			lines[r.line]++
		}
		for l := range strings.SplitSeq(string(got), "\n") {
			lines[l]--
		}
		for l, n := range lines {
			if n != 0 {
				t.Fatalf("line %q: %d more in the input and the change than in the output %q", l, n, got)
			}
		}
	})
}

// FuzzLinkedEntry: linkedEntry accepts a link target only if it is exactly the one a publish
// writes at that path to the entry of that kind it returns (and the path in it).
func FuzzLinkedEntry(f *testing.F) {
	root := path.Join(layout.SharedDir, RootKind, "0123456789abcdef0123456789abcdef")
	f.Add(path.Join(root, "fedora/toolbox", TagListFile), "../../../../v2-tags/0123456789abcdef0123456789abcdef/_tags.json", RepoKind)
	f.Add(path.Join(root, "fedora", TagListFile), "../../../v2-tags/0123456789abcdef0123456789abcdef/_tags.json", RepoKind)
	f.Add(path.Join(root, RefsMapFile), "../../v2-refs.map/12-0123456789abcdef", RefsKind)
	f.Add(path.Join(layout.PubPath("3-0123456789abcdef"), PubDir), "../../shared/v2/0123456789abcdef0123456789abcdef", RootKind)
	f.Add(path.Join(root, "a", TagListFile), "../../../v2-tags/../x/_tags.json", RepoKind)
	f.Add(path.Join(root, "a", TagListFile), "../../../../../../../../etc/passwd", RepoKind)
	f.Fuzz(func(t *testing.T, from, target, kind string) {
		entry, rest, ok := linkedEntry(from, target, kind)
		if !ok {
			return
		}
		to := path.Join(entry, rest)
		if got, _ := layout.SharedEntryOf(entry); got != entry || path.Dir(entry) != path.Join(layout.SharedDir, kind) {
			t.Errorf("linkedEntry(%q, %q, %q) = %q, not an entry of that kind", from, target, kind, entry)
		}
		if want := layout.RelLink(from, to); want != target {
			t.Errorf("linkedEntry(%q, %q, %q) = %q %q, which is linked as %q", from, target, kind, entry, rest, want)
		}
	})
}

// TestWriteTagsAfterKilledRun: a run killed after WriteTags wrote its entries (and in the
// middle of another, a temporary directory left) but before it published: the live
// publication is the previous one, still vouched for, and the next publish with the change
// writes what a full render on a fresh tree does, reusing the entries the killed run left.
func TestWriteTagsAfterKilledRun(t *testing.T) {
	prevSpec := fedoraSpec()
	nextSpec := prevSpec.clone()
	nextSpec.repos["fedora/toolbox"].tags["43"] = "d"
	prev, next := prevSpec.meta(1), nextSpec.meta(2)
	tree, fresh := layout.NewTree(t.TempDir()), layout.NewTree(t.TempDir())
	if _, _, err := publishTags(tree, prev, nil); err != nil {
		t.Fatal(err)
	}
	c := Diff(prev, next)
	if err := Write(tree, next, &c); err != nil {
		t.Fatal(err)
	}
	if _, _, err := WriteTags(tree, next, &c); err != nil { // the killed run: never published
		t.Fatal(err)
	}
	stale := tree.Path(path.Join(layout.SharedDir, DirKind, layout.TempPrefix+"0123456789abcdef0123456789abcdef"))
	if err := os.MkdirAll(filepath.Join(stale, "x"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, ok := readLive(tree, next, &c); !ok {
		t.Fatal("after the killed run, the live publication could not vouch for its tag files")
	}
	rootGot, usesGot, err := publishTags(tree, next, &c)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := publishTags(fresh, prev, nil); err != nil {
		t.Fatal(err)
	}
	rootWant, usesWant, err := publishTags(fresh, next, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rootGot != rootWant || !slices.Equal(usesGot, usesWant) {
		t.Fatalf("got v2 %s uses %q, want %s %q", rootGot, usesGot, rootWant, usesWant)
	}
	if got, want := snapshot(t, tree, rootGot), snapshot(t, fresh, rootWant); got != want {
		t.Errorf("v2 entry:\ngot\n%s\nwant\n%s", got, want)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("the killed run's temporary directory: %v, want it removed by the publish", err)
	}
}

// TestDiffKeptDifferential: over random chains of generations, DiffKept told which
// repositories kept their tags, manifests and those manifests' records (keptRepos) gives the
// change Diff gives comparing every repository: a kept repository whose retiring manifests
// changed is still in the change.
func TestDiffKeptDifferential(t *testing.T) {
	rnd := rand.New(rand.NewPCG(11, 11))
	runs, hinted := 200, 0
	if testing.Short() {
		runs = 40
	}
	for run := range runs {
		s := randomSpec(rnd)
		prev := s.meta(1)
		for step := range 4 {
			s = s.mutate(rnd)
			next := s.meta(uint64(step + 2))
			kept := keptRepos(prev, next)
			hinted += len(kept)
			got, want := DiffKept(prev, next, kept), Diff(prev, next)
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("run %d step %d, kept %v:\ngot  %+v\nwant %+v", run, step, slices.Sorted(maps.Keys(kept)), got, want)
			}
			prev = next
		}
	}
	if hinted == 0 {
		t.Fatal("no repository was ever kept: the test compared nothing")
	}
}

// keptRepos are the repositories of next that DiffKept may be told it kept from prev: the
// same tags and manifest list, and the same media type and generation for each of those
// manifests (their retiring manifests may differ).
func keptRepos(prev, next *layout.Meta) map[string]bool {
	kept := map[string]bool{}
	sameRecord := func(d layout.Digest) bool {
		a, b := prev.Manifests[d], next.Manifests[d]
		if (a == nil) != (b == nil) || a != nil && a.MediaType != b.MediaType {
			return false
		}
		return since(prev, d) == since(next, d)
	}
	for name, repo := range next.Repositories {
		old := prev.Repositories[name]
		if old == nil || !maps.Equal(old.Tags, repo.Tags) || !slices.Equal(old.Manifests, repo.Manifests) {
			continue
		}
		if !slices.ContainsFunc(repo.Manifests, func(d layout.Digest) bool { return !sameRecord(d) }) &&
			!slices.ContainsFunc(slices.Collect(maps.Values(repo.Tags)), func(d layout.Digest) bool { return !sameRecord(d) }) {
			kept[name] = true
		}
	}
	return kept
}
