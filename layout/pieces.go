package layout

import (
	"bytes"
	"io"
)

// Pieces are a file's bytes as runs, in order: what a splice (Splicer) keeps of a live
// publication's file referred to where it is (mapped), and what it adds. Storing them copies each run once, into
// the file; joining them first would copy the whole file into as much fresh memory (tens of
// megabytes at scale, each page a fault).
type Pieces [][]byte

// piecesOf is each file's bytes as Pieces, files given the same slice sharing one value
// (pubContents hashes a value once: SubsetFilters gives subsets with the same file one
// slice).
func piecesOf(files map[string][]byte) map[string]Pieces {
	out := make(map[string]Pieces, len(files))
	type slice struct {
		at  *byte
		len int
	}
	made := map[slice]Pieces{} // by the bytes given: a slice and a prefix of it are two
	for rel, b := range files {
		if len(b) == 0 {
			out[rel] = Pieces{b}
			continue
		}
		k := slice{&b[0], len(b)}
		p := made[k]
		if p == nil {
			p = Pieces{b}
			made[k] = p
		}
		out[rel] = p
	}
	return out
}

// size is the number of bytes p holds.
func (p Pieces) size() int {
	n := 0
	for _, b := range p {
		n += len(b)
	}
	return n
}

// digest is the sha256 of p's bytes.
func (p Pieces) digest() Digest {
	h := newHash("sha256")
	for _, b := range p {
		h.Write(b)
	}
	return digestOfHash("sha256", h)
}

// Bytes are p's bytes joined.
func (p Pieces) Bytes() []byte {
	if len(p) == 1 {
		return p[0]
	}
	return bytes.Join(p, nil)
}

// equal reports whether p holds b's bytes.
func (p Pieces) equal(b []byte) bool {
	for _, r := range p {
		if len(b) < len(r) || !bytes.Equal(b[:len(r)], r) {
			return false
		}
		b = b[len(r):]
	}
	return len(b) == 0
}

// writeTo writes p's bytes to w.
func (p Pieces) writeTo(w io.Writer) error {
	for _, b := range p {
		if _, err := w.Write(b); err != nil {
			return err
		}
	}
	return nil
}

// Splicer builds Pieces from runs of src and added bytes. A run of src that starts where the
// last run of src ended extends it, as added bytes extend the last added run: the Pieces are
// as few as the splice's changes.
type Splicer struct {
	src   []byte
	out   Pieces
	added []byte // the added runs are slices of it; appends past its capacity move it, never the runs
	// lastSrc is the end in src of the last run when it is src's, else -1; lastAdded the start
	// in added of the last run when it is added bytes, else -1.
	lastSrc, lastAdded int
}

// NewSplicer starts Pieces made from src, with room for about n added bytes. The Pieces refer
// to src: it must not change, nor be unmapped, until they are written.
func NewSplicer(src []byte, n int) *Splicer {
	return &Splicer{src: src, added: make([]byte, 0, n), lastSrc: -1, lastAdded: -1}
}

// Keep appends src[from:to].
func (s *Splicer) Keep(from, to int) {
	if from == to {
		return
	}
	if s.lastSrc == from {
		last := &s.out[len(s.out)-1]
		*last = (*last)[:len(*last)+to-from]
	} else {
		s.out = append(s.out, s.src[from:to])
	}
	s.lastSrc, s.lastAdded = to, -1
}

// Add appends what f appends to a byte slice.
func (s *Splicer) Add(f func([]byte) []byte) {
	start := len(s.added)
	s.added = f(s.added)
	if len(s.added) == start {
		return
	}
	if s.lastAdded >= 0 {
		// The last run and this one, together, as the added bytes hold them now (moved or not).
		s.out[len(s.out)-1] = s.added[s.lastAdded:]
	} else {
		s.out = append(s.out, s.added[start:])
		s.lastAdded = start
	}
	s.lastSrc = -1
}

// Pieces are the runs appended so far: at least one, perhaps empty (a value of Pieces is
// known by its first run's address: pubContents).
func (s *Splicer) Pieces() Pieces {
	if len(s.out) == 0 {
		return Pieces{nil}
	}
	return s.out
}
