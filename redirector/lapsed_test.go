package redirector

import (
	"testing"
	"time"

	"github.com/regmirror/regmirror/layout"
)

// TestLapsed: which blobs a server stops trusting the mirrors with. Only a blob the asked
// repository does not reference, that some repository retires, past the grace the metadata
// records.
func TestLapsed(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	grace := time.Hour
	d := layout.DigestOf("sha256", []byte("layer"))
	past, within := now.Add(-grace-time.Second), now.Add(-grace+time.Second)
	for _, c := range []struct {
		name    string
		grace   time.Duration
		retired time.Time // zero: no repository retires the blob
		// in says how the asked repository holds the blob: "" not at all (or no such
		// repository), "referenced" or "retiring".
		in   string
		want bool
	}{
		{"referenced everywhere", grace, time.Time{}, "referenced", false},
		{"retiring here, within the grace", grace, within, "retiring", false},
		{"retiring here, the grace over", grace, past, "retiring", true},
		{"retiring here exactly at the grace", grace, now.Add(-grace), "retiring", false},
		{"referenced here, retiring elsewhere, the grace over", grace, past, "referenced", false},
		{"another repository's, the grace over", grace, past, "", true},
		{"another repository's, within the grace", grace, within, "", false},
		{"metadata without a grace", 0, past, "retiring", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			b := newBlobEntry(d, 5, 1)
			g := &generation{grace: c.grace}
			if !c.retired.IsZero() {
				b.retired = true
				g.retired = map[string]time.Time{d.String(): c.retired}
			}
			var repo *repoEntry
			switch c.in {
			case "referenced":
				repo = &repoEntry{blobs: map[string]*blobEntry{d.String(): b}}
			case "retiring":
				repo = &repoEntry{blobs: map[string]*blobEntry{d.String(): b}, retiring: map[string]bool{d.String(): true}}
			}
			if got := g.lapsed(repo, b, func() time.Time { return now }); got != c.want {
				t.Errorf("lapsed: got %v, want %v", got, c.want)
			}
		})
	}
}
