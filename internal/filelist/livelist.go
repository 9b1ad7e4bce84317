package filelist

import (
	"bytes"
	"math"
	"runtime"
	"slices"
	"sync"

	"github.com/regmirror/regmirror/layout"
)

// liveList is the live publication's list, mapped, with its [Files] lines below some
// directories parsed (parseLive): what writeSpliced copies, found before the render so that
// the render only picks and copies lines. Its release unmaps the list; one never released is
// unmapped once unreachable.
type liveList struct {
	data     []byte     // the mapped list
	lines    []liveLine // the lines below prefixes, in the list's order
	prefixes []string   // the directories' paths with a slash (at most 8)
	mapping  *mapping
}

// liveLine is one [Files] line of a liveList: data[start:start+n], its path from start+path,
// below the prefixes of the bits of pre (24 bytes a line).
type liveLine struct {
	t     int64
	start uint32
	path  uint16
	n     uint16
	pre   uint8
}

// mapping is a mapped file's unmap, done once.
type mapping struct {
	once  sync.Once
	unmap func()
}

func (m *mapping) release() { m.once.Do(m.unmap) }

// release unmaps the list; l's lines must not be used after it. It may be called again, and
// on nil.
func (l *liveList) release() {
	if l != nil {
		l.mapping.release()
	}
}

// parseLive maps the live publication's list (module's) and parses its [Files] lines below
// prefixes (directories' paths with a slash, at most 8), checking each as writeSpliced
// copies it: canonical numbers, a type, and the lines in order by time and path, none twice.
// nil when the list cannot be read or is not such a list (the render then lists the tree).
func parseLive(tree *layout.Tree, module string, prefixes []string) *liveList {
	if len(prefixes) > 8 {
		return nil
	}
	data, unmap, ok := previousList(tree, module)
	if !ok {
		return nil
	}
	l := &liveList{data: data, prefixes: prefixes, mapping: &mapping{unmap: unmap}}
	runtime.AddCleanup(l, (*mapping).release, l.mapping)
	if len(data) > math.MaxUint32 || !l.parse() { // offsets are 32 bits
		l.release()
		return nil
	}
	return l
}

// parse fills l.lines from l.data; false when l.data is not a list parseLive takes.
func (l *liveList) parse() bool {
	lines, ok := bytes.CutPrefix(l.data, []byte(listHead))
	if !ok {
		return false
	}
	pre := make([][]byte, len(l.prefixes))
	for i, p := range l.prefixes {
		pre[i] = []byte(p)
	}
	at := len(l.data) - len(lines) // lines' offset in data
	// At most a record a line, in one allocation: grown by append, the array would be
	// allocated (fresh memory, dear here) several times its size.
	l.lines = make([]liveLine, 0, bytes.Count(lines, []byte{'\n'}))
	var lastT int64
	var lastP []byte
	for {
		nl := bytes.IndexByte(lines, '\n')
		if nl < 0 {
			return false
		}
		line := lines[:nl]
		start := at
		lines, at = lines[nl+1:], at+nl+1
		if len(line) == 0 {
			return bytes.HasPrefix(lines, []byte("[Checksums SHA1]\n"))
		}
		t1 := bytes.IndexByte(line, '\t')
		if t1 < 0 {
			return false
		}
		t2 := bytes.IndexByte(line[t1+1:], '\t') + t1 + 1
		if t2 == t1 {
			return false
		}
		t3 := bytes.IndexByte(line[t2+1:], '\t') + t2 + 1
		if t3 == t2 {
			return false
		}
		p := line[t3+1:]
		var mask uint8
		for i, pre := range pre {
			if bytes.HasPrefix(p, pre) {
				mask |= 1 << i
			}
		}
		if mask == 0 {
			continue
		}
		t, ok1 := canonicalInt(line[:t1])
		_, ok2 := canonicalInt(line[t2+1 : t3])
		typ := line[t1+1 : t2]
		if !ok1 || !ok2 || len(typ) != 1 || (typ[0] != 'f' && typ[0] != 'd' && typ[0] != 'l') || len(line) > math.MaxUint16 {
			return false
		}
		if lastP != nil && (t < lastT || t == lastT && bytes.Compare(p, lastP) <= 0) {
			return false // not in order, or a key twice
		}
		lastT, lastP = t, p
		l.lines = append(l.lines, liveLine{t: t, start: uint32(start), path: uint16(t3 + 1), n: uint16(len(line)), pre: mask})
	}
}

// mask is the bits of l.prefixes among prefixes.
func (l *liveList) mask(prefixes []string) uint8 {
	var m uint8
	for i, p := range l.prefixes {
		if slices.Contains(prefixes, p) {
			m |= 1 << i
		}
	}
	return m
}

// covers reports whether l parsed every directory of prefixes.
func (l *liveList) covers(prefixes []string) bool {
	for _, p := range prefixes {
		if !slices.Contains(l.prefixes, p) {
			return false
		}
	}
	return true
}

// reusePrefixes are the paths with a slash of reuse's directories: those a render may take
// from the live list (resolveReuse keeps some of them).
func reusePrefixes(reuse []Reuse) []string {
	var out []string
	for _, r := range reuse {
		if p := r.Dir + "/"; !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return out
}
