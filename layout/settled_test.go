package layout

import (
	"errors"
	"io/fs"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestSettled: Unsettle reports a tree settled only when its record names the live
// publication and blobs/sha256's current time, with the removed files it lists, and leaves
// no record either way; Settle records the live publication, blobs/sha256's time, the
// removed files and the plain repositories.
func TestSettled(t *testing.T) {
	tests := []struct {
		name    string
		publish bool   // a generation is live
		record  string // the record's content; "" for none; LIVE and MTIME are replaced
		change  bool   // a file is written into blobs/sha256 after the record
		want    bool
	}{
		{"no generation, no record", false, "", false, false},
		{"no record (an older tree, a run killed mid-way)", true, "", false, false},
		{"record of the live publication", true, "LIVE MTIME shared\n", false, true},
		{"record of the live publication, blobs/ written since", true, "LIVE MTIME shared\n", true, false},
		{"record of another blobs/ time", true, "LIVE 12345 shared\n", false, false},
		{"record without blobs/ time (the first format)", true, "LIVE\n", false, false},
		{"record without shared (the previous format): all of regmirror/shared changed", true, "LIVE MTIME\nblobs/sha256/aa\n", false, true},
		{"record with another word", true, "LIVE MTIME other\n", false, false},
		{"record with a word more", true, "LIVE MTIME shared more\n", false, false},
		{"record of another publication", true, "1-0011223344556677 MTIME shared\n", false, false},
		{"record without a live publication", false, "1-0011223344556677 MTIME shared\n", false, false},
		{"record garbled", true, "\x00", false, false},
		{"record with removed files", true, "LIVE MTIME shared\nblobs/sha256/aa\nblobs/sha256/bb\nregmirror/shared/v2-tags/00112233445566778899aabbccddeeff\n", false, true},
		{"record naming a path out of the tree", true, "LIVE MTIME shared\n../x\n", false, false},
		{"record cut short", true, "LIVE MTIME shared", false, false},
		{"record with plain repositories", true, "LIVE MTIME shared plain\nblobs/sha256/aa\n.\nfedora\nfedora/httpd\n", false, true},
		{"record with plain, none of either", true, "LIVE MTIME shared plain\n.\n", false, true},
		{"record with plain, without its separator", true, "LIVE MTIME shared plain\nblobs/sha256/aa\n", false, false},
		{"record with plain, a name with a space", true, "LIVE MTIME shared plain\n.\nfedora httpd\n", false, false},
		{"record with plain, an empty name", true, "LIVE MTIME shared plain\n.\n\n", false, false},
		{"record with plain but not shared", true, "LIVE MTIME plain\n.\n", false, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tree := NewTree(t.TempDir())
			blobs := tree.Path(BlobDir("sha256"))
			for _, dir := range []string{tree.Path(MetaDir), blobs} {
				if err := os.MkdirAll(dir, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			old := time.Now().Add(-time.Hour)
			if err := os.Chtimes(blobs, old, old); err != nil {
				t.Fatal(err)
			}
			live := ""
			if tc.publish {
				if _, err := tree.Publish(NewMeta(1)); err != nil {
					t.Fatal(err)
				}
				var err error
				if live, err = tree.LivePublication(); err != nil {
					t.Fatal(err)
				}
			}
			if tc.record != "" {
				record := tc.record
				record = strings.Replace(record, "LIVE", live, 1)
				record = strings.Replace(record, "MTIME", strconv.FormatInt(old.UnixNano(), 10), 1)
				if err := os.WriteFile(tree.Path(SettledFile), []byte(record), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if tc.change {
				if err := os.WriteFile(tree.Path(BlobDir("sha256")+"/x"), []byte("x"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			got, removed, err := tree.Unsettle()
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("Unsettle: got settled %v, want %v", got, tc.want)
			}
			var wantRemoved, wantPlain []string
			if tc.want {
				lines := strings.Split(strings.TrimSuffix(tc.record, "\n"), "\n")
				wantRemoved = lines[1:]
				if i := slices.Index(wantRemoved, "."); i >= 0 {
					wantRemoved, wantPlain = wantRemoved[:i], wantRemoved[i+1:]
				}
				if !strings.Contains(lines[0], " shared") {
					wantRemoved = append(wantRemoved, SharedDir)
				}
			}
			if !slices.Equal(removed, wantRemoved) {
				t.Errorf("Unsettle: got removed %q, want %q", removed, wantRemoved)
			}
			if got := tree.SettledPlain(); !slices.Equal(got, wantPlain) {
				t.Errorf("SettledPlain: got %q, want %q", got, wantPlain)
			}
			if _, err := os.Lstat(tree.Path(SettledFile)); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("after Unsettle the record is still there (%v)", err)
			}
			if !tc.publish {
				if err := tree.Settle(nil, nil); err == nil {
					t.Errorf("Settle without a live publication: got no error")
				}
				return
			}
			// Settle right after a change to blobs/sha256 (the garbage collection) waits until
			// a later change would move its time.
			if err := os.WriteFile(tree.Path(BlobDir("sha256")+"/y"), []byte("y"), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := tree.Settle([]string{"blobs/sha256/cc"}, []string{"fedora", "fedora/httpd"}); err != nil {
				t.Fatal(err)
			}
			if got, removed, err := tree.Unsettle(); err != nil || !got || !slices.Equal(removed, []string{"blobs/sha256/cc"}) {
				t.Errorf("Unsettle after Settle: got %v, %q (%v), want true, [blobs/sha256/cc]", got, removed, err)
			}
			if got, want := tree.SettledPlain(), []string{"fedora", "fedora/httpd"}; !slices.Equal(got, want) {
				t.Errorf("SettledPlain after Settle: got %q, want %q", got, want)
			}
			if err := tree.Settle(nil, nil); err != nil {
				t.Fatal(err)
			}
			if err := os.Remove(tree.Path(BlobDir("sha256") + "/y")); err != nil {
				t.Fatal(err)
			}
			if got, _, err := tree.Unsettle(); err != nil || got || tree.SettledPlain() != nil {
				t.Errorf("Unsettle after Settle, then a file removed from blobs/sha256: got %v, plain %q (%v), want false and none", got, tree.SettledPlain(), err)
			}
			if err := tree.Settle(nil, []string{"fedora"}); err != nil {
				t.Fatal(err)
			}
			if _, _, err := tree.Unsettle(); err != nil || tree.SettledPlain() == nil {
				t.Fatalf("Unsettle after Settle: plain %q (%v), want [fedora]", tree.SettledPlain(), err)
			}
			if got, _, err := tree.Unsettle(); err != nil || got || tree.SettledPlain() != nil {
				t.Errorf("Unsettle with no record, after one that named plain repositories: got %v, plain %q (%v), want false and none", got, tree.SettledPlain(), err)
			}
			if err := tree.Settle([]string{"../out"}, nil); err == nil {
				t.Errorf("Settle of a path out of the tree: got no error")
			}
			if err := tree.Settle(nil, []string{"fedora\nLIVE"}); err == nil {
				t.Errorf("Settle of a repository name with a line break: got no error")
			}
		})
	}
}

// FuzzParseSettled: reading a settled record never panics, and what it accepts names the
// live publication with blobs/sha256's time, and only plain paths in the tree.
func FuzzParseSettled(f *testing.F) {
	tree := NewTree(f.TempDir())
	if _, err := tree.Publish(NewMeta(1)); err != nil {
		f.Fatal(err)
	}
	if err := os.MkdirAll(tree.Path(BlobDir("sha256")), 0o755); err != nil {
		f.Fatal(err)
	}
	live, err := tree.LivePublication()
	if err != nil {
		f.Fatal(err)
	}
	mtime, err := tree.blobsTime()
	if err != nil {
		f.Fatal(err)
	}
	live += " " + strconv.FormatInt(mtime, 10)
	f.Add(live + "\n")
	f.Add(live + "\nblobs/sha256/aa\n")
	f.Add(live + "\n/etc/passwd\n")
	f.Add(live + " shared plain\nblobs/sha256/aa\n.\nfedora\n")
	f.Fuzz(func(t *testing.T, record string) {
		ok, removed, plain := tree.parseSettled(record)
		if !ok {
			return
		}
		if first, _, _ := strings.Cut(record, "\n"); first != live && !strings.HasPrefix(first, live+" ") {
			t.Errorf("accepted a record naming %q, live is %q", first, live)
		}
		for _, rel := range removed {
			if !fs.ValidPath(rel) || rel == "." {
				t.Errorf("accepted %q", rel)
			}
		}
		for _, name := range plain {
			if name == "" || strings.ContainsAny(name, " \n") {
				t.Errorf("accepted plain repository %q", name)
			}
		}
	})
}
