package layout

import "testing"

func TestSharedEntryOfAndFileHolds(t *testing.T) {
	data := []byte("refs\n")
	hex := DigestOf("sha256", data).Hex()[:16]
	tests := []struct {
		name, rel string
		entry     string // "" when rel lies in no shared entry
		holds     bool
	}{
		{"file", SharedDir + "/v2-refs.map/3-" + hex, SharedDir + "/v2-refs.map/3-" + hex, true},
		{"file of other bytes", SharedDir + "/v2-refs.map/3-0123456789abcdef", SharedDir + "/v2-refs.map/3-0123456789abcdef", false},
		{"in a directory", SharedDir + "/v2-tags/0123456789abcdef0123456789abcdef/_tags.json", SharedDir + "/v2-tags/0123456789abcdef0123456789abcdef", false},
		{"two-component kind", SharedDir + "/subsets/x86_64/3-" + hex, SharedDir + "/subsets/x86_64/3-" + hex, true},
		{"kind directory", SharedDir + "/v2-tags", "", false},
		{"not shared", MetaDir + "/v2/fedora", "", false},
		{"name not hex", SharedDir + "/v2-tags/xyz/_tags.json", "", false},
	}
	tree := NewTree(t.TempDir())
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := SharedEntryOf(tc.rel)
			if want := tc.entry; got != want || ok != (want != "") {
				t.Errorf("SharedEntryOf(%q) = %q %v, want %q", tc.rel, got, ok, want)
			}
			if got := tree.SharedFileHolds(tc.rel, data); got != tc.holds {
				t.Errorf("SharedFileHolds(%q) = %v, want %v", tc.rel, got, tc.holds)
			}
		})
	}
}
