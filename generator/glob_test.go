package generator

import (
	"strings"
	"testing"
)

func TestGlob(t *testing.T) {
	tests := []struct {
		pattern, name string
		want          bool
	}{
		{"fedora", "fedora", true},
		{"fedora", "fedora/toolbox", false},
		{"fedora/*", "fedora/toolbox", true},
		{"fedora/*", "fedora", false},
		{"fedora/*", "fedora/a/b", false},
		{"fedora/**", "fedora/a/b", true},
		{"fedora/**", "fedora", false},
		{"**/toolbox", "toolbox", true},
		{"**/toolbox", "fedora/toolbox", true},
		{"**/toolbox", "a/b/toolbox", true},
		{"**/toolbox", "a/b/mytoolbox", false},
		{"**", "anything/at/all", true},
		{"*", "a/b", false},
		{"*", "abc", true},
		{"f*a", "fedora", true},
		{"f*a", "fedora/a", false},
		{"f**a", "fedora/a", true},
		{"a/**/b", "a/b", true},
		{"a/**/b", "a/x/y/b", true},
		{"a/**/b", "a/x/y/c", false},
		{"*/*", "a/b", true},
		{"***", "a/b", true},
		{"fedora-*", "fedora-41", true},
		{"fedora-*", "fedora", false},
		{"fedora:3[0-9]", "fedora:39", true},
		{"fedora:3[0-9]", "fedora:40", false},
		{"fedora:3[0-9]", "fedora:3", false},
		{"fedora:[!4]*", "fedora:39", true},
		{"fedora:[!4]*", "fedora:42", false},
		{"a[!x]b", "a/b", false},
		{"[a-c-]x", "-x", true},
		{"", "", false},
	}
	for _, tc := range tests {
		t.Run(tc.pattern+"~"+tc.name, func(t *testing.T) {
			g, err := CompileGlob(tc.pattern)
			if err != nil {
				if tc.pattern != "" {
					t.Fatal(err)
				}
				return
			}
			if got := g.Match(tc.name); got != tc.want {
				t.Errorf("Match(%q, %q): got %v, want %v", tc.pattern, tc.name, got, tc.want)
			}
		})
	}
}

// globRef is a plain backtracking matcher, the reference the fuzz test compares against.
func globRef(p, s string) bool {
	if p == "" {
		return s == ""
	}
	if strings.HasPrefix(p, "**/") {
		rest := p[3:]
		if globRef(rest, s) {
			return true
		}
		for i := 0; i < len(s); i++ {
			if s[i] == '/' && globRef(rest, s[i+1:]) {
				return true
			}
		}
		return false
	}
	if strings.HasPrefix(p, "**") {
		q := strings.TrimLeft(p, "*")
		if strings.HasPrefix(q, "/") {
			return globRef("**"+q, s)
		}
		for i := 0; i <= len(s); i++ {
			if globRef(q, s[i:]) {
				return true
			}
		}
		return false
	}
	if p[0] == '*' {
		for i := 0; i <= len(s); i++ {
			if globRef(p[1:], s[i:]) {
				return true
			}
			if i < len(s) && s[i] == '/' {
				break
			}
		}
		return false
	}
	return s != "" && s[0] == p[0] && globRef(p[1:], s[1:])
}

func FuzzGlob(f *testing.F) {
	for _, s := range [][2]string{{"fedora/*", "fedora/x"}, {"**/t", "a/b/t"}, {"a**b", "a/x/b"}, {"*-*", "a-b"}, {"***/", "/"}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, pattern, name string) {
		if len(pattern) > 24 || len(name) > 64 || strings.Contains(pattern, "[") {
			return // keep the reference matcher fast; classes are in TestGlob's table
		}
		g, err := CompileGlob(pattern)
		if err != nil {
			if pattern != "" {
				t.Fatalf("CompileGlob(%q): %v", pattern, err)
			}
			return
		}
		got := g.Match(name)
		if want := globRef(pattern, name); got != want {
			t.Fatalf("Match(%q, %q): got %v, want %v", pattern, name, got, want)
		}
		if !strings.Contains(pattern, "*") && got != (pattern == name) {
			t.Fatalf("literal pattern %q vs %q: got %v", pattern, name, got)
		}
		if g2, _ := CompileGlob("**"); !g2.Match(name) {
			t.Fatalf("** does not match %q", name)
		}
	})
}
