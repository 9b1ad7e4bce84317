package layout

import (
	"errors"
	"io/fs"
	"os"
	"testing"
)

// TestSettled: Unsettle reports a tree settled only when its record names the live
// publication, and leaves no record either way; Settle records the live publication.
func TestSettled(t *testing.T) {
	tests := []struct {
		name    string
		publish bool   // a generation is live
		record  string // the record's content; "" for none
		want    bool
	}{
		{"no generation, no record", false, "", false},
		{"no record (an older tree, a run killed mid-way)", true, "", false},
		{"record of the live publication", true, "LIVE\n", true},
		{"record of another publication", true, "1-0011223344556677\n", false},
		{"record without a live publication", false, "1-0011223344556677\n", false},
		{"record garbled", true, "\x00", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tree := NewTree(t.TempDir())
			if err := os.MkdirAll(tree.Path(MetaDir), 0o755); err != nil {
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
				if record == "LIVE\n" {
					record = live + "\n"
				}
				if err := os.WriteFile(tree.Path(SettledFile), []byte(record), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			got, err := tree.Unsettle()
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("Unsettle: got settled %v, want %v", got, tc.want)
			}
			if _, err := os.Lstat(tree.Path(SettledFile)); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("after Unsettle the record is still there (%v)", err)
			}
			if !tc.publish {
				if err := tree.Settle(); err == nil {
					t.Errorf("Settle without a live publication: got no error")
				}
				return
			}
			if err := tree.Settle(); err != nil {
				t.Fatal(err)
			}
			if got, err := tree.Unsettle(); err != nil || !got {
				t.Errorf("Unsettle after Settle: got %v (%v), want true", got, err)
			}
		})
	}
}
