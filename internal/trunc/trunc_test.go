package trunc

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestMiddle(t *testing.T) {
	chain := strings.Repeat("index sha256:"+strings.Repeat("a", 64)+" → ", 9) + "nested deeper than 8"
	tests := []struct {
		name string
		s    string
		n    int
		want string
	}{
		{"short", "abc", 10, "abc"},
		{"exact", "abcdef", 6, "abcdef"},
		{"cut", "abcdefghij", 7, "ab" + Ellipsis + "ij"},
		{"odd keep", "abcdefghij", 8, "abc" + Ellipsis + "ij"},
		{"tiny n", "abcdefghij", 2, Ellipsis},
		{"runes kept whole", "ééééééééé", 9, "é" + Ellipsis + "é"},
		{"cause at the end survives", chain, 200, chain[:99] + Ellipsis + chain[len(chain)-98:]},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Middle(tc.s, tc.n); got != tc.want {
				t.Errorf("Middle(%q, %d): got %q, want %q", tc.s, tc.n, got, tc.want)
			}
		})
	}
	if got := Middle(chain, 200); !strings.HasSuffix(got, "nested deeper than 8") || !strings.HasPrefix(got, "index sha256:") {
		t.Errorf("got %q, want both ends of the chain", got)
	}
}

func TestLine(t *testing.T) {
	tests := []struct {
		name, s string
		n       int
		want    string
	}{
		{"control characters", "a\nb\tc\x7f", 80, "a b c"},
		{"trimmed", "  x \r\n", 80, "x"},
		{"cut", "0123456789", 7, "01" + Ellipsis + "89"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Line(tc.s, tc.n); got != tc.want {
				t.Errorf("Line(%q, %d): got %q, want %q", tc.s, tc.n, got, tc.want)
			}
		})
	}
}

func FuzzMiddle(f *testing.F) {
	f.Add("sha256:"+strings.Repeat("f", 60000), 80)
	f.Add("ééé\xff\xfeabc", 5)
	f.Add("", 0)
	f.Fuzz(func(t *testing.T, s string, n int) {
		n = n % 1000
		got := Middle(s, n)
		if len(s) <= n {
			if got != s {
				t.Fatalf("Middle(%q, %d) = %q, want it unchanged", s, n, got)
			}
			return
		}
		if len(got) > max(n, len(Ellipsis)) {
			t.Fatalf("Middle(%q, %d) = %q: %d bytes, over %d", s, n, got, len(got), n)
		}
		if utf8.ValidString(s) && !utf8.ValidString(got) {
			t.Fatalf("Middle(%q, %d) = %q: split a rune", s, n, got)
		}
		l := Line(s, n)
		if strings.ContainsAny(l, "\r\n") || len(l) > max(n, len(Ellipsis)) {
			t.Fatalf("Line(%q, %d) = %q", s, n, l)
		}
	})
}
