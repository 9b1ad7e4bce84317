package layout

import (
	"bytes"
	"path/filepath"
	"slices"
	"testing"
)

// TestSuperseded publishes generations in turn, each with a large file of its own and one
// they all share, and checks which files a publish would give back the page cache of: the
// publication live before the live one's own files, not the shared one, not those of older
// publications (given back by the publishes before), not those of a publication newer than
// the live one (a publish that failed before its switch).
func TestSuperseded(t *testing.T) {
	tree := NewTree(t.TempDir())
	big := func(b byte) []byte { return bytes.Repeat([]byte{b}, releaseMin) }
	pubs := map[uint64]string{} // generation → its publication
	// own is the OS path, with no symbolic link in it, of generation g's file of its own.
	own := func(g uint64) string {
		t.Helper()
		p, err := filepath.EvalSymlinks(tree.Path(PubPath(pubs[g]) + "/own"))
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	steps := []struct {
		name     string
		gen      uint64
		liveBack uint64 // after the publish, live switched back to this generation's publication
		want     func() []string
	}{
		{name: "the first publication", gen: 1, want: func() []string { return nil }},
		{name: "the second: the first's own file", gen: 2, want: func() []string { return []string{own(1)} }},
		{name: "the third: the second's, not the first's again", gen: 3, want: func() []string { return []string{own(2)} }},
		{name: "a newer publication than live is not looked at", gen: 4, liveBack: 3, want: func() []string { return []string{own(2)} }},
	}
	for _, s := range steps {
		_, err := tree.PublishWith(NewMeta(s.gen), Publication{Shared: map[string][]byte{
			"own":    big(byte(s.gen)),
			"shared": big(0),
		}})
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if pubs[s.gen], err = tree.LivePublication(); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if s.liveBack != 0 {
			if err := replaceSymlink(tree.Path(LiveLink), LiveTarget(pubs[s.liveBack])); err != nil {
				t.Fatalf("%s: %v", s.name, err)
			}
		}
		if got, want := tree.superseded(), s.want(); !slices.Equal(got, want) {
			t.Errorf("%s: got %q, want %q", s.name, got, want)
		}
	}
}
