package layout

import (
	"bytes"
	"strings"
	"testing"
)

func TestSplicer(t *testing.T) {
	src := []byte("0123456789")
	add := func(s string) func(*Splicer) {
		return func(sp *Splicer) { sp.Add(func(b []byte) []byte { return append(b, s...) }) }
	}
	keep := func(from, to int) func(*Splicer) { return func(sp *Splicer) { sp.Keep(from, to) } }
	for _, c := range []struct {
		name  string
		room  int
		steps []func(*Splicer)
		want  string
		runs  int
	}{
		{"nothing", 8, nil, "", 1},
		{"all kept", 8, []func(*Splicer){keep(0, 10)}, "0123456789", 1},
		{"contiguous runs join", 8, []func(*Splicer){keep(0, 3), keep(3, 7), keep(7, 10)}, "0123456789", 1},
		{"a gap splits", 8, []func(*Splicer){keep(0, 3), keep(5, 10)}, "01256789", 2},
		{"empty runs vanish", 8, []func(*Splicer){keep(2, 2), add(""), keep(0, 2)}, "01", 1},
		{"added between", 8, []func(*Splicer){keep(0, 2), add("ab"), keep(2, 4)}, "01ab23", 3},
		{"added runs join", 8, []func(*Splicer){add("ab"), add("cd"), keep(9, 10)}, "abcd9", 2},
		{"added past the room", 2, []func(*Splicer){add("ab"), add("cdef"), keep(0, 1), add("gh"), add("ijklmn")}, "abcdef0ghijklmn", 3},
		{"kept after added restarts", 8, []func(*Splicer){keep(0, 2), add("x"), keep(2, 3)}, "01x2", 3},
	} {
		t.Run(c.name, func(t *testing.T) {
			sp := NewSplicer(src, c.room)
			for _, step := range c.steps {
				step(sp)
			}
			p := sp.Pieces()
			if got := string(p.Bytes()); got != c.want {
				t.Errorf("bytes: got %q, want %q", got, c.want)
			}
			if got := len(p); got != c.runs {
				t.Errorf("runs: got %d, want %d", got, c.runs)
			}
			if got := p.size(); got != len(c.want) {
				t.Errorf("size: got %d, want %d", got, len(c.want))
			}
			if !p.equal([]byte(c.want)) || p.equal([]byte(c.want+"!")) || len(c.want) > 0 && p.equal([]byte(c.want[1:])) {
				t.Errorf("equal is wrong about %q", c.want)
			}
			if got, want := p.digest(), DigestOf("sha256", []byte(c.want)); got != want {
				t.Errorf("digest: got %s, want %s", got, want)
			}
			var w strings.Builder
			if err := p.writeTo(&w); err != nil || w.String() != c.want {
				t.Errorf("writeTo: got %q (%v), want %q", w.String(), err, c.want)
			}
			if !bytes.Equal(src, []byte("0123456789")) {
				t.Errorf("the source changed: %q", src)
			}
		})
	}
}

func TestPiecesOf(t *testing.T) {
	b := []byte("abcdef")
	got := piecesOf(map[string][]byte{"a": b, "b": b, "prefix": b[:3], "empty": nil})
	for rel, want := range map[string]string{"a": "abcdef", "b": "abcdef", "prefix": "abc", "empty": ""} {
		if s := string(got[rel].Bytes()); s != want {
			t.Errorf("%s: got %q, want %q", rel, s, want)
		}
	}
	if &got["a"][0] != &got["b"][0] {
		t.Errorf("files given one slice got two values of Pieces, want one (hashed once)")
	}
	if &got["a"][0] == &got["prefix"][0] {
		t.Errorf("a file given a shorter slice shares the longer one's Pieces")
	}
}
