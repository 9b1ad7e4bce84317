package layout

import (
	"strings"
	"testing"
)

// TestPathsGolden pins the tree contract: mirrors and redirectors in the field depend on it.
func TestPathsGolden(t *testing.T) {
	d := MustDigest("sha256:" + strings.Repeat("0123456789abcdef", 4))
	tests := []struct {
		name string
		got  string
		want string
	}{
		{"oci-layout", OCILayoutFile, "oci-layout"},
		{"index", IndexFile, "index.json"},
		{"blob", BlobPath(d), "blobs/sha256/0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"},
		{"blob dir", BlobDir("sha256"), "blobs/sha256"},
		{"current stamp", CurrentFile, "regmirror/current"},
		{"metadata", MetaPath(d), "regmirror/meta/0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef.json.zst"},
		{"stamp's metadata reference", metaRef(d), "meta/0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef.json.zst"},
		{"publications", PubDir, "regmirror/pub"},
		{"publication", PubPath("7-0011223344556677"), "regmirror/pub/7-0011223344556677"},
		{"live link", LiveLink, "regmirror/live"},
		{"settled record", SettledFile, "regmirror/settled"},
		{"live link target", LiveTarget("7-0011223344556677"), "pub/7-0011223344556677"},
		{"publication stamp", PubStamp, "current"},
		{"publication index", PubIndex, "index.json"},
		{"current link target", CurrentLinkTarget, "live/current"},
		{"index.json link target", RootLinkTarget(IndexFile), "regmirror/live/index.json"},
		{"file list link target", RootLinkTarget("fullfiletimelist-containers"), "regmirror/live/fullfiletimelist-containers"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.got != tc.want {
				t.Errorf("got %q, want %q", tc.got, tc.want)
			}
		})
	}
}
