package mirrors

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestDocExamples parses every example of docs/mirrors-file.md and docs/mirrormanager.md: the
// blocks that start with an "# error: " comment must be refused with exactly that message,
// every other block must load.
func TestDocExamples(t *testing.T) {
	var blocks [][]string
	for _, c := range []struct {
		file string
		min  int
	}{{"mirrors-file.md", 10}, {"mirrormanager.md", 1}} {
		doc, err := os.ReadFile("../../docs/" + c.file)
		if err != nil {
			t.Fatal(err)
		}
		bs := regexp.MustCompile("(?ms)^```(yaml|json)\n(.*?)^```$").FindAllStringSubmatch(string(doc), -1)
		if len(bs) < c.min {
			t.Fatalf("got %d examples in docs/%s, want at least %d", len(bs), c.file, c.min)
		}
		blocks = append(blocks, bs...)
	}
	for i, b := range blocks {
		body := b[2]
		first, _, _ := strings.Cut(body, "\n")
		want, refused := strings.CutPrefix(first, "# error: ")
		f, err := Parse("mirrors.yaml", []byte(body))
		switch {
		case refused && err == nil:
			t.Errorf("example %d: loaded, want error %q", i+1, want)
		case refused && err.Error() != want:
			t.Errorf("example %d: got error\n\t%s\nwant\n\t%s", i+1, err, want)
		case !refused && err != nil:
			t.Errorf("example %d: %v", i+1, err)
		case !refused && len(f.Mirrors) == 0:
			t.Errorf("example %d: no mirrors loaded", i+1)
		}
	}
}
