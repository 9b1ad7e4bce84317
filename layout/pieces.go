package layout

import (
	"bytes"
	"io"
)

// pieces are a file's bytes as runs, in order: what a splice keeps of a live publication's file
// referred to where it is (mapped), and what it adds. Storing them copies each run once, into
// the file; joining them first would copy the whole file into as much fresh memory (tens of
// megabytes at scale, each page a fault).
type pieces [][]byte

// size is the number of bytes p holds.
func (p pieces) size() int {
	n := 0
	for _, b := range p {
		n += len(b)
	}
	return n
}

// digest is the sha256 of p's bytes.
func (p pieces) digest() Digest {
	h := newHash("sha256")
	for _, b := range p {
		h.Write(b)
	}
	return digestOfHash("sha256", h)
}

// bytes are p's bytes joined.
func (p pieces) bytes() []byte {
	if len(p) == 1 {
		return p[0]
	}
	return bytes.Join(p, nil)
}

// equal reports whether p holds b's bytes.
func (p pieces) equal(b []byte) bool {
	for _, r := range p {
		if len(b) < len(r) || !bytes.Equal(b[:len(r)], r) {
			return false
		}
		b = b[len(r):]
	}
	return len(b) == 0
}

// writeTo writes p's bytes to w.
func (p pieces) writeTo(w io.Writer) error {
	for _, b := range p {
		if _, err := w.Write(b); err != nil {
			return err
		}
	}
	return nil
}

// splicer builds pieces from runs of src and added bytes. A run of src that starts where the
// last run of src ended extends it, as added bytes extend the last added run: the pieces are
// as few as the splice's changes.
type splicer struct {
	src   []byte
	out   pieces
	added []byte // the added runs are slices of it; appends past its capacity move it, never the runs
	// lastSrc is the end in src of the last run when it is src's, else -1; lastAdded the start
	// in added of the last run when it is added bytes, else -1.
	lastSrc, lastAdded int
}

// newSplicer starts pieces made from src, with room for about n added bytes.
func newSplicer(src []byte, n int) *splicer {
	return &splicer{src: src, added: make([]byte, 0, n), lastSrc: -1, lastAdded: -1}
}

// keep appends src[from:to].
func (s *splicer) keep(from, to int) {
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

// add appends what f appends to a byte slice.
func (s *splicer) add(f func([]byte) []byte) {
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

// pieces are the runs appended so far: at least one, perhaps empty (a value of pieces is
// known by its first run's address: pubContents).
func (s *splicer) pieces() pieces {
	if len(s.out) == 0 {
		return pieces{nil}
	}
	return s.out
}
