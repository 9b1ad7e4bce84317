package generator

import (
	"bytes"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/regmirror/regmirror/internal/testsupport/metacmp"
	"github.com/regmirror/regmirror/internal/testsupport/testimages"
	"github.com/regmirror/regmirror/layout"
)

// A repository the source still lists as the previous generation published it is taken
// whole from the previous metadata: the generation is the one walking every manifest again
// gives (Options.Verify turns the shortcut off), counts included.
func TestUnchangedRepositoriesTakenWhole(t *testing.T) {
	refs, err := testimages.Demo()
	if err != nil {
		t.Fatal(err)
	}
	repos := map[string]bool{}
	for _, r := range refs {
		repos[r.Repo] = true
	}
	moved := refs[0]
	tests := []struct {
		name      string
		change    func(t *testing.T, src *source, o *Options)
		unchanged int
	}{
		{"nothing changed", func(*testing.T, *source, *Options) {}, len(repos)},
		{"a tag moved", func(t *testing.T, src *source, _ *Options) {
			img, err := random.Image(512, 1)
			if err != nil {
				t.Fatal(err)
			}
			src.pushImage(moved.Repo, moved.Tags[0], img)
		}, len(repos) - 1},
		{"a tag archived", func(_ *testing.T, _ *source, o *Options) {
			o.Archive = []string{moved.Repo + ":" + moved.Tags[0]}
		}, len(repos)},
		{"a tag deleted, kept removed", func(_ *testing.T, src *source, o *Options) {
			src.deleteTag(moved.Repo, moved.Tags[0])
			o.KeepRemoved = true
		}, len(repos) - 1},
	}
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src := newSourceWith(t) // no referrers API: nothing to ask about referrers
			t.Cleanup(src.srv.Close)
			src.push(refs...)
			dir := t.TempDir()
			taken, walked := filepath.Join(dir, "taken"), filepath.Join(dir, "walked")
			for _, out := range []string{taken, walked} {
				o := src.opts(out)
				o.Now = func() time.Time { return now }
				mustRun(t, o)
			}
			o := src.opts(taken)
			o.Now = func() time.Time { return now.Add(time.Hour) }
			tc.change(t, src, &o)
			sum := mustRun(t, o)
			if got := sum.unchanged; got != tc.unchanged {
				t.Errorf("repositories taken whole: got %d, want %d", got, tc.unchanged)
			}
			o.Out, o.Verify = walked, true
			want := mustRun(t, o)
			if want.unchanged != 0 {
				t.Errorf("with Verify: %d repositories taken whole, want 0", want.unchanged)
			}
			if !reflect.DeepEqual(sum.Counts, want.Counts) {
				t.Errorf("counts: got %+v, want %+v", sum.Counts, want.Counts)
			}
			if d := metacmp.Diff(checkTree(t, taken), checkTree(t, walked)); d != "" {
				t.Errorf("taken whole and walked differ in %s", d)
			}
		})
	}
}

func TestMayBeForeign(t *testing.T) {
	tests := []struct {
		name string
		data string
		want bool
	}{
		{"plain image", `{"schemaVersion":2,"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:00","size":1}]}`, false},
		{"urls", `{"layers":[{"urls":["https://example.com/l"]}]}`, true},
		{"URLS in another case", `{"layers":[{"URLs":["https://example.com/l"]}]}`, true},
		{"docker foreign layer", `{"layers":[{"mediaType":"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"}]}`, true},
		{"non-distributable", `{"layers":[{"mediaType":"application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"}]}`, true},
		{"escaped key", `{"layers":[{"\u0075rls":["x"]}]}`, true},
		{"non-ASCII key folding to urls", "{\"layers\":[{\"url\u017f\":[\"x\"]}]}", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := mayBeForeign([]byte(tc.data)); got != tc.want {
				t.Errorf("mayBeForeign(%s): got %v, want %v", tc.data, got, tc.want)
			}
		})
	}
}

func BenchmarkMayBeForeign(b *testing.B) {
	data := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef","size":1234},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:a3ed95caeb02ffe68cdd9fd84406680ae93d633cb16422d00e8a7c22955b46d4","size":5678}]}`)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if mayBeForeign(data) {
			b.Fatal("plain manifest reported as maybe foreign")
		}
	}
}

// A repository taken whole gives its previous lists as they are only when they are sorted
// without duplicates and nothing else was taken; otherwise the lists are those the sets
// give, sorted, the same as walking every manifest would.
func TestRepoSetsLists(t *testing.T) {
	d := func(c byte) layout.Digest { return layout.DigestOf("sha256", []byte{c}) }
	a, b, c := d('a'), d('b'), d('c')
	sorted := sortedDigests(map[layout.Digest]bool{a: true, b: true, c: true})
	tests := []struct {
		name         string
		whole        *layout.Repository
		extra        []layout.Digest // taken from a closure too
		wantM, wantB []layout.Digest
	}{
		{"sorted", &layout.Repository{Manifests: sorted[:2], Blobs: sorted}, nil, sorted[:2], sorted},
		{"empty", &layout.Repository{}, nil, []layout.Digest{}, []layout.Digest{}},
		{"unsorted", &layout.Repository{Manifests: []layout.Digest{sorted[2], sorted[0]}, Blobs: sorted[:1]}, nil, []layout.Digest{sorted[0], sorted[2]}, sorted[:1]},
		{"a duplicate", &layout.Repository{Manifests: sorted[:1], Blobs: []layout.Digest{sorted[1], sorted[1]}}, nil, sorted[:1], sorted[1:2]},
		{"a closure too", &layout.Repository{Manifests: sorted[1:2], Blobs: sorted[2:]}, sorted[:1], sorted[:2], []layout.Digest{sorted[0], sorted[2]}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := &repoSets{manifests: map[layout.Digest]bool{}, blobs: map[layout.Digest]bool{}, whole: tc.whole}
			for _, e := range tc.extra {
				s.manifests[e], s.blobs[e] = true, true
			}
			gotM, gotB := s.lists()
			if !reflect.DeepEqual(gotM, tc.wantM) || !reflect.DeepEqual(gotB, tc.wantB) {
				t.Errorf("got %v, %v; want %v, %v", gotM, gotB, tc.wantM, tc.wantB)
			}
			if len(tc.whole.Manifests) > 0 && len(gotM) > 0 && &gotM[0] == &tc.whole.Manifests[0] {
				t.Errorf("the list is the previous record's, not a copy")
			}
		})
	}
}

// mayBeForeignBytewise is mayBeForeign a byte at a time, as it was: the reference.
func mayBeForeignBytewise(data []byte) bool {
	for i, c := range data {
		if c == '\\' || c >= 0x80 {
			return true
		}
		switch c | 0x20 {
		case 'u':
			if hasFoldPrefix(data[i:], "urls") {
				return true
			}
		case 'f':
			if hasFoldPrefix(data[i:], "foreign") {
				return true
			}
		case 'n':
			if hasFoldPrefix(data[i:], "nondistributable") {
				return true
			}
		}
	}
	return false
}

// FuzzMayBeForeign: the look eight bytes at a time answers as the byte-at-a-time one, at
// every alignment of the words it looks for.
func FuzzMayBeForeign(f *testing.F) {
	for _, s := range []string{"", "urls", "xxxxxxxURLS", "\\", "a|b", "é", "{\"foreign\":1}", "NONDISTRIBUTABLE", "nondistributabl", "sha256:ffffffffffffffffff"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		for shift := range 8 {
			in := append(make([]byte, shift), data...)
			for i := range shift {
				in[i] = 'x'
			}
			if got, want := mayBeForeign(in), mayBeForeignBytewise(in); got != want {
				t.Fatalf("mayBeForeign(%q): got %v, want %v", in, got, want)
			}
		}
	})
}

// Long manifests: each word found in any case wherever it lies, and a long plain manifest
// reported plain.
func TestMayBeForeignLong(t *testing.T) {
	plain := bytes.Repeat([]byte(`{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:00","size":1},`), 200)
	if mayBeForeign(plain) {
		t.Fatalf("a plain manifest of %d bytes: got true, want false", len(plain))
	}
	for _, w := range []string{"urls", "URLS", "Foreign", "nondistributablE", "\\", "\u017f"} {
		for at := range len(plain) - len(w) {
			in := slices.Clone(plain)
			copy(in[at:], w)
			if got, want := mayBeForeign(in), mayBeForeignBytewise(in); got != want || !got {
				t.Fatalf("%q at %d of %d bytes: got %v, want %v", w, at, len(in), got, want)
			}
		}
	}
}
