package layout

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestValidateName(t *testing.T) {
	tests := []struct {
		name string
		in   string
		ok   bool
	}{
		{"simple", "fedora", true},
		{"nested", "fedora/toolbox", true},
		{"dots and dashes", "a.b-c/d--e_f", true},
		{"double underscore", "a__b", true},
		{"digits", "0/9", true},
		{"max length", strings.Repeat("a", 255), true},
		{"empty", "", false},
		{"too long", strings.Repeat("a", 256), false},
		{"uppercase", "Fedora", false},
		{"traversal", "../etc", false},
		{"dot component", "a/./b", false},
		{"dotdot component", "a/../b", false},
		{"leading slash", "/a", false},
		{"trailing slash", "a/", false},
		{"double slash", "a//b", false},
		{"triple underscore", "a___b", false},
		{"leading separator", "-a", false},
		{"trailing separator", "a-", false},
		{"mixed separators", "a.-b", false},
		{"space", "a b", false},
		{"nul", "a\x00b", false},
		{"colon", "a:b", false},
		{"backslash", `a\b`, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := ValidateName(tc.in)
			if got := err == nil; got != tc.ok {
				t.Fatalf("ValidateName(%q) = %v, want ok=%v", tc.in, err, tc.ok)
			}
			if err != nil && !errors.Is(err, ErrNameInvalid) {
				t.Errorf("got %v, want ErrNameInvalid", err)
			}
		})
	}
}

func TestValidateTag(t *testing.T) {
	tests := []struct {
		name string
		in   string
		ok   bool
	}{
		{"simple", "latest", true},
		{"version", "42.1-x86_64", true},
		{"leading underscore", "_hidden", true},
		{"uppercase", "Latest", true},
		{"cosign", "sha256-" + strings.Repeat("a", 64) + ".sig", true},
		{"max length", strings.Repeat("a", 128), true},
		{"empty", "", false},
		{"too long", strings.Repeat("a", 129), false},
		{"leading dot", ".x", false},
		{"leading dash", "-x", false},
		{"slash", "a/b", false},
		{"colon", "a:b", false},
		{"dotdot", "..", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := ValidateTag(tc.in)
			if got := err == nil; got != tc.ok {
				t.Fatalf("ValidateTag(%q) = %v, want ok=%v", tc.in, err, tc.ok)
			}
		})
	}
}

func TestParseDigest(t *testing.T) {
	hex64 := strings.Repeat("ab", 32)
	tests := []struct {
		name    string
		in      string
		wantErr error
	}{
		{"sha256", "sha256:" + hex64, nil},
		{"sha512", "sha512:" + hex64 + hex64, nil},
		{"uppercase hex", "sha256:" + strings.ToUpper(hex64), ErrDigestInvalid},
		{"short", "sha256:abc", ErrDigestInvalid},
		{"long", "sha256:" + hex64 + "a", ErrDigestInvalid},
		{"no colon", "sha256" + hex64, ErrDigestInvalid},
		{"empty", "", ErrDigestInvalid},
		{"unknown algorithm", "md5:" + hex64, ErrDigestAlgo},
		{"bad algorithm", "SHA256:" + hex64, ErrDigestInvalid},
		{"traversal", "sha256:../../../../etc/passwd", ErrDigestInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, err := ParseDigest(tc.in)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("ParseDigest(%q) error = %v, want %v", tc.in, err, tc.wantErr)
			}
			if err == nil && d.String() != tc.in {
				t.Errorf("got %q, want %q", d, tc.in)
			}
		})
	}
}

func FuzzParseDigest(f *testing.F) {
	f.Add("sha256:" + strings.Repeat("0", 64))
	f.Add("sha256:../x")
	f.Add("a+b:c")
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseDigest(s)
		if err != nil {
			return
		}
		if d.String() != s {
			t.Fatalf("got %q, want %q", d, s)
		}
		p := BlobPath(d)
		if strings.Contains(p, "..") || strings.Count(p, "/") != 2 {
			t.Fatalf("unsafe blob path %q from %q", p, s)
		}
	})
}

func FuzzValidateName(f *testing.F) {
	f.Add("fedora/toolbox")
	f.Add("a/../b")
	f.Add("a__b-c.d")
	f.Fuzz(func(t *testing.T, s string) {
		if ValidateName(s) != nil {
			return
		}
		if strings.Contains(s, "..") || strings.Contains(s, "//") || strings.HasPrefix(s, "/") ||
			strings.HasSuffix(s, "/") || len(s) > MaxNameLength {
			t.Fatalf("accepted unsafe name %q", s)
		}
		for _, c := range s {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || strings.ContainsRune("._-/", c)) {
				t.Fatalf("accepted %q with character %q", s, c)
			}
		}
	})
}

func FuzzValidateTag(f *testing.F) {
	f.Add("latest")
	f.Add("../x")
	f.Fuzz(func(t *testing.T, s string) {
		if ValidateTag(s) != nil {
			return
		}
		if strings.ContainsAny(s, "/:@\x00") || s[0] == '.' || s[0] == '-' || len(s) > MaxTagLength {
			t.Fatalf("accepted unsafe tag %q", s)
		}
	})
}

// TestIsLowerHexEveryByte: every byte value at every place of values up to 17 bytes long (two
// words and a tail) is judged as the table judges it.
func TestIsLowerHexEveryByte(t *testing.T) {
	ref := func(s string) bool {
		for i := 0; i < len(s); i++ {
			if notLowerHex[s[i]] != 0 {
				return false
			}
		}
		return true
	}
	for n := 1; n <= 17; n++ {
		for at := range n {
			for c := range 256 {
				v := []byte(strings.Repeat("0123456789abcdef", 2)[:n])
				v[at] = byte(c)
				if got, want := isLowerHex(string(v)), ref(string(v)); got != want {
					t.Fatalf("isLowerHex(%q): got %v, want %v", v, got, want)
				}
			}
		}
	}
}

func BenchmarkParseDigest(b *testing.B) {
	s := "sha256:c0acb2ad94befe23e6ab26ac50b13edcc88c3a2b04d68077829cf8b7ed7696d8"
	for b.Loop() {
		if _, err := ParseDigest(s); err != nil {
			b.Fatal(err)
		}
	}
}

// TestDigestHalf: the halves are the low bit of the last byte ('e' is 0x65, 'f' 0x66), the
// zero Digest in the first, and a run of digests falls about evenly in both.
func TestDigestHalf(t *testing.T) {
	for _, tc := range []struct {
		name string
		d    Digest
		want byte
	}{
		{"zero", Digest{}, 0},
		{"ends in 0", Digest{s: "sha256:" + strings.Repeat("a", 63) + "0"}, 0},
		{"ends in 1", Digest{s: "sha256:" + strings.Repeat("a", 63) + "1"}, 1},
		{"ends in e", Digest{s: "sha256:" + strings.Repeat("a", 63) + "e"}, 1},
		{"ends in f", Digest{s: "sha256:" + strings.Repeat("a", 63) + "f"}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.d.Half(); got != tc.want {
				t.Errorf("Half(%q): got %d, want %d", tc.d, got, tc.want)
			}
		})
	}
	ones := 0
	for i := range 1000 {
		ones += int(DigestOf("sha256", fmt.Appendf(nil, "%d", i)).Half())
	}
	if ones < 400 || ones > 600 {
		t.Errorf("%d of 1000 digests in the second half, want about 500", ones)
	}
}
