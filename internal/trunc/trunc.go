// Package trunc keeps untrusted or long strings short in error messages, error bodies and
// logs. It cuts in the middle, so that both ends stay visible: the start of a digest chain
// and the cause at its end, or the algorithm and the last hex digits of a digest.
package trunc

import (
	"strings"
	"unicode/utf8"
)

// Ellipsis marks the cut.
const Ellipsis = "…"

// Short is the length of one untrusted value quoted in a message (a name, a digest, a URL).
const Short = 80

// Middle returns s if it is at most n bytes long, else its first and last parts joined by
// Ellipsis, at most n bytes in all and never splitting a UTF-8 sequence. n below the
// ellipsis's length gives just the ellipsis.
func Middle(s string, n int) string {
	if len(s) <= n {
		return s
	}
	keep := n - len(Ellipsis)
	if keep <= 0 {
		return Ellipsis
	}
	head := keep - keep/2
	tail := keep / 2
	// Step back to rune boundaries: the head ends before a continuation byte's rune, the
	// tail starts at a rune's first byte.
	for head > 0 && !utf8.RuneStart(s[head]) {
		head--
	}
	start := len(s) - tail
	for start < len(s) && !utf8.RuneStart(s[start]) {
		start++
	}
	return s[:head] + Ellipsis + s[start:]
}

// String is Middle(s, Short): one quoted value in a message.
func String(s string) string { return Middle(s, Short) }

// Line makes s one line of at most n bytes: control characters become spaces, surrounding
// space is trimmed, and what is too long is cut in the middle.
func Line(s string, n int) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	return Middle(strings.TrimSpace(s), n)
}
