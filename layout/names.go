package layout

import (
	"errors"
	"fmt"
	"strings"
	"unsafe"

	"github.com/regmirror/regmirror/internal/trunc"
)

// Limits from the distribution grammar.
const (
	MaxNameLength = 255
	MaxTagLength  = 128
)

// Errors returned by the parsers; wrapped with the offending value.
var (
	ErrNameInvalid   = errors.New("invalid repository name")
	ErrTagInvalid    = errors.New("invalid tag")
	ErrDigestInvalid = errors.New("invalid digest")
	ErrDigestAlgo    = errors.New("unsupported digest algorithm")
)

// Digest is a validated content digest, "<algorithm>:<hex>". The zero value is invalid.
// Only sha256 and sha512 are accepted, with lowercase hex of the right length, so a Digest is
// always safe to use as a path component.
type Digest struct{ s string }

// ParseDigest validates s. It returns ErrDigestAlgo for a well-formed digest of an algorithm
// the tree does not hold, and ErrDigestInvalid otherwise.
func ParseDigest(s string) (Digest, error) {
	algo, hex, ok := strings.Cut(s, ":")
	if !ok || !validAlgorithm(algo) {
		return Digest{}, fmt.Errorf("%w %q: want sha256:<64 hex digits>", ErrDigestInvalid, trunc.String(s))
	}
	var want int
	switch algo {
	case "sha256":
		want = 64
	case "sha512":
		want = 128
	default:
		return Digest{}, fmt.Errorf("%w %q", ErrDigestAlgo, trunc.String(algo))
	}
	if len(hex) != want || !isLowerHex(hex) {
		return Digest{}, fmt.Errorf("%w %q: want %s:<%d lowercase hex digits>", ErrDigestInvalid, trunc.String(s), algo, want)
	}
	return Digest{s}, nil
}

// MustDigest is ParseDigest for digests the program computed itself; it panics on a bad one.
func MustDigest(s string) Digest {
	d, err := ParseDigest(s)
	if err != nil {
		panic(err)
	}
	return d
}

func (d Digest) String() string { return d.s }

// Algorithm is the part before the colon.
func (d Digest) Algorithm() string { a, _, _ := strings.Cut(d.s, ":"); return a }

// Hex is the part after the colon.
func (d Digest) Hex() string { _, h, _ := strings.Cut(d.s, ":"); return h }

// IsZero reports whether d is the zero value.
func (d Digest) IsZero() bool { return d.s == "" }

// Half splits digests in two about even halves, for work done side by side: the low bit of
// the last byte (0 for the zero Digest).
func (d Digest) Half() byte {
	if d.s == "" {
		return 0
	}
	return d.s[len(d.s)-1] & 1
}

// side splits the keys of one map in two about even sides, for walks done side by side,
// by where their text lies in memory: no read of the text (a lookup's cost when the map is
// large). Copies of a digest may be on different sides: only for splitting one set of
// Digest values, never to agree with another (Half does).
func (d Digest) side() byte {
	p := uint64(uintptr(unsafe.Pointer(unsafe.StringData(d.s))))
	return byte((p * 0x9E3779B97F4A7C15) >> 63) // the address's bits mixed into the top one
}

// MarshalText implements encoding.TextMarshaler.
func (d Digest) MarshalText() ([]byte, error) { return []byte(d.s), nil }

// UnmarshalText implements encoding.TextUnmarshaler, validating the digest.
func (d *Digest) UnmarshalText(b []byte) error {
	p, err := ParseDigest(string(b))
	if err != nil {
		return err
	}
	*d = p
	return nil
}

// validAlgorithm checks the OCI algorithm grammar: [a-z0-9]+([+._-][a-z0-9]+)*.
func validAlgorithm(a string) bool {
	if a == "" {
		return false
	}
	prevSep := true
	for i := 0; i < len(a); i++ {
		c := a[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
			prevSep = false
		case c == '+' || c == '.' || c == '_' || c == '-':
			if prevSep {
				return false
			}
			prevSep = true
		default:
			return false
		}
	}
	return !prevSep
}

// isLowerHex reports whether s has only lowercase hex digits. It checks eight bytes at a time
// with no branch on the digits (a digest's are random): a byte is a hex digit when it is below
// 0x80 and in 0x30–0x39 or 0x61–0x66, each bound tested by an addition that carries into the
// byte's top bit and never into the next byte. The last bytes go through a table.
func isLowerHex(s string) bool {
	const (
		ones = 0x0101010101010101
		tops = 0x8080808080808080
	)
	for len(s) >= 8 {
		x := uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
			uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56
		if x&tops != 0 {
			return false
		}
		digit := (x + ones*(0x80-'0')) &^ (x + ones*(0x7f-'9'))
		letter := (x + ones*(0x80-'a')) &^ (x + ones*(0x7f-'f'))
		if (digit|letter)&tops != tops {
			return false
		}
		s = s[8:]
	}
	var bad byte
	for i := 0; i < len(s); i++ {
		bad |= notLowerHex[s[i]]
	}
	return bad == 0
}

// notLowerHex[c] is 1 unless c is a lowercase hex digit.
var notLowerHex = func() (t [256]byte) {
	for c := range t {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			t[c] = 1
		}
	}
	return t
}()

// ValidateName checks a repository name against the distribution grammar:
// path components of [a-z0-9]+ joined by ".", "_", "__" or "-"+, separated by "/",
// at most MaxNameLength bytes. Such a name never contains "..", a leading "/" or "//".
func ValidateName(name string) error {
	if name == "" || len(name) > MaxNameLength {
		return fmt.Errorf("%w %q: want 1 to %d characters", ErrNameInvalid, trunc.String(name), MaxNameLength)
	}
	for comp := range strings.SplitSeq(name, "/") {
		if !validComponent(comp) {
			return fmt.Errorf("%w %q: path component %q is not lowercase letters and digits joined by '.', '_', '__' or '-'", ErrNameInvalid, trunc.String(name), trunc.String(comp))
		}
	}
	return nil
}

func validComponent(c string) bool {
	if c == "" {
		return false
	}
	i := 0
	for {
		// alpha-numeric run
		start := i
		for i < len(c) && isAlnum(c[i]) {
			i++
		}
		if i == start {
			return false
		}
		if i == len(c) {
			return true
		}
		// separator: "." | "_" | "__" | "-"+
		switch c[i] {
		case '.':
			i++
		case '_':
			i++
			if i < len(c) && c[i] == '_' {
				i++
			}
		case '-':
			for i < len(c) && c[i] == '-' {
				i++
			}
		default:
			return false
		}
	}
}

func isAlnum(c byte) bool { return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' }

// ValidateTag checks a tag against the distribution grammar: [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}.
func ValidateTag(tag string) error {
	if tag == "" || len(tag) > MaxTagLength {
		return fmt.Errorf("%w %q: want 1 to %d characters", ErrTagInvalid, trunc.String(tag), MaxTagLength)
	}
	for i := 0; i < len(tag); i++ {
		c := tag[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' ||
			i > 0 && (c == '.' || c == '-')
		if !ok {
			return fmt.Errorf("%w %q: want [a-zA-Z0-9_][a-zA-Z0-9._-]*", ErrTagInvalid, trunc.String(tag))
		}
	}
	return nil
}
