package generator

import (
	"errors"
	"fmt"
)

// maxGlobLength bounds a --repo pattern; repository names are at most 255 bytes.
const maxGlobLength = 1024

// Glob is a compiled --repo pattern. A "*" matches any run of characters within one path
// segment (no "/"); a "**" matches any run of characters across segments, and "**/" also
// matches nothing, so "**/toolbox" selects "toolbox" as well as "fedora/toolbox". A "[...]"
// matches one character of the class: characters and ranges ("[0-9a-f]"), negated with a
// leading "!" or "^" (never "/"). Every other character matches itself.
type Glob struct {
	pattern string
	toks    []globTok
}

type globKind uint8

const (
	tokLit        globKind = iota
	tokStar                // "*": any run without '/'
	tokDStar               // "**": any run
	tokDStarSlash          // "**/": empty, or any run ending in '/'
	tokClass               // "[...]": one byte of set
)

type globTok struct {
	kind globKind
	c    byte
	set  *[256]bool
}

// parseClass parses the class starting at pattern[i] == '['; it returns the set and the index
// of the closing ']'.
func parseClass(pattern string, i int) (*[256]bool, int, error) {
	var set [256]bool
	j := i + 1
	neg := j < len(pattern) && (pattern[j] == '!' || pattern[j] == '^')
	if neg {
		j++
	}
	start := j
	for ; j < len(pattern); j++ {
		c := pattern[j]
		if c == ']' && j > start {
			if neg {
				for k := range set {
					set[k] = !set[k]
				}
				set['/'] = false
			}
			return &set, j, nil
		}
		if j+2 < len(pattern) && pattern[j+1] == '-' && pattern[j+2] != ']' {
			lo, hi := c, pattern[j+2]
			if lo > hi {
				return nil, 0, fmt.Errorf("pattern %q: range %c-%c is backwards", pattern, lo, hi)
			}
			for k := int(lo); k <= int(hi); k++ {
				set[k] = true
			}
			j += 2
			continue
		}
		set[c] = true
	}
	return nil, 0, fmt.Errorf("pattern %q: %q without its closing ]", pattern, "[")
}

// CompileGlob parses a --repo pattern.
func CompileGlob(pattern string) (*Glob, error) {
	if pattern == "" {
		return nil, errors.New("empty Options.Repos pattern")
	}
	if len(pattern) > maxGlobLength {
		return nil, fmt.Errorf("Options.Repos pattern is %d bytes, over the %d-byte limit", len(pattern), maxGlobLength)
	}
	g := &Glob{pattern: pattern}
	for i := 0; i < len(pattern); i++ {
		c := pattern[i]
		if c == '[' {
			set, end, err := parseClass(pattern, i)
			if err != nil {
				return nil, err
			}
			g.toks = append(g.toks, globTok{kind: tokClass, set: set})
			i = end
			continue
		}
		if c != '*' {
			g.toks = append(g.toks, globTok{kind: tokLit, c: c})
			continue
		}
		if i+1 < len(pattern) && pattern[i+1] == '*' {
			// Any longer run of stars is one "**".
			for i+1 < len(pattern) && pattern[i+1] == '*' {
				i++
			}
			if i+1 < len(pattern) && pattern[i+1] == '/' {
				i++
				g.toks = append(g.toks, globTok{kind: tokDStarSlash})
			} else {
				g.toks = append(g.toks, globTok{kind: tokDStar})
			}
			continue
		}
		g.toks = append(g.toks, globTok{kind: tokStar})
	}
	return g, nil
}

func (g *Glob) String() string { return g.pattern }

// Match reports whether name matches the whole pattern. It runs in O(len(pattern)·len(name)).
func (g *Glob) Match(name string) bool {
	// seen[i][j]: (token i, byte j) already tried and failed.
	seen := make([]bool, (len(g.toks)+1)*(len(name)+1))
	var match func(i, j int) bool
	match = func(i, j int) bool {
		for {
			if i == len(g.toks) {
				return j == len(name)
			}
			k := i*(len(name)+1) + j
			if seen[k] {
				return false
			}
			t := g.toks[i]
			switch t.kind {
			case tokLit:
				if j < len(name) && name[j] == t.c {
					i, j = i+1, j+1
					continue
				}
				seen[k] = true
				return false
			case tokClass:
				if j < len(name) && t.set[name[j]] {
					i, j = i+1, j+1
					continue
				}
				seen[k] = true
				return false
			case tokStar:
				for e := j; ; e++ {
					if match(i+1, e) {
						return true
					}
					if e == len(name) || name[e] == '/' {
						break
					}
				}
			case tokDStar:
				for e := j; e <= len(name); e++ {
					if match(i+1, e) {
						return true
					}
				}
			case tokDStarSlash:
				if match(i+1, j) {
					return true
				}
				for e := j; e < len(name); e++ {
					if name[e] == '/' && match(i+1, e+1) {
						return true
					}
				}
			}
			seen[k] = true
			return false
		}
	}
	return match(0, 0)
}

// matchAny reports whether name matches one of globs; no globs select everything.
func matchAny(globs []*Glob, name string) bool {
	if len(globs) == 0 {
		return true
	}
	for _, g := range globs {
		if g.Match(name) {
			return true
		}
	}
	return false
}
