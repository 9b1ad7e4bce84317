package filelist

import (
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/regmirror/regmirror/layout"
)

// TestReadByQuickFedoraMirrorRules reads a written list with awk the way quick-fedora-mirror's
// zsh script does (its rules, restated here): the [Version] section runs to the first empty
// line and must be at most 3; "[End]" must be within the last two lines; the [Files] section
// runs to the next empty line, its fields split on tabs as time, type, size, path, where type
// "f" or "l" is a file to transfer and "d" a directory. What it extracts must be exactly the
// tree's files and directories (bar the list itself), with their sizes.
func TestReadByQuickFedoraMirrorRules(t *testing.T) {
	awk, err := exec.LookPath("awk")
	if err != nil {
		t.Fatalf("awk not found: install gawk or mawk (Debian's base system has mawk)")
	}
	dir := t.TempDir()
	tree := layout.NewTree(dir)
	writeGeneration(t, tree, 1, "layer one", "config one")
	list := tree.Path(Name(DefaultModule))
	run := func(prog string) []string {
		t.Helper()
		out, err := exec.Command(awk, "-F", "\t", prog, list).Output()
		if err != nil {
			t.Fatalf("awk %q: %v", prog, err)
		}
		s := strings.TrimRight(string(out), "\n")
		if s == "" {
			return nil
		}
		return strings.Split(s, "\n")
	}

	version := run(`/^\[Version/ {s=1; next} /^$/ {exit} s {print}`)
	if v, err := strconv.Atoi(strings.Join(version, "")); len(version) != 1 || err != nil || v > 3 {
		t.Errorf("version section: got %q, want one number no higher than 3", version)
	}
	data, _ := os.ReadFile(list)
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if !slices.Contains(lines[max(0, len(lines)-2):], "[End]") {
		t.Errorf("last two lines %q: want [End] among them", lines[max(0, len(lines)-2):])
	}
	gotFiles := run(`/\[Files/ {s=1; next} /^$/ {s=0; next} s && ($2 == "f" || $2 == "l") {print $4 "\t" $3}`)
	gotDirs := run(`/\[Files/ {s=1; next} /^$/ {s=0; next} s && $2 == "d" {print $4}`)

	var wantFiles, wantDirs []string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		switch {
		case d.IsDir() && d.Type()&fs.ModeSymlink == 0:
			wantDirs = append(wantDirs, rel)
		case rel == Name(DefaultModule):
		default:
			fi, _ := d.Info()
			wantFiles = append(wantFiles, rel+"\t"+strconv.FormatInt(fi.Size(), 10))
		}
		return nil
	})
	slices.Sort(gotFiles)
	slices.Sort(wantFiles)
	slices.Sort(gotDirs)
	slices.Sort(wantDirs)
	if !slices.Equal(gotFiles, wantFiles) {
		t.Errorf("files extracted:\ngot  %q\nwant %q", gotFiles, wantFiles)
	}
	if !slices.Equal(gotDirs, wantDirs) {
		t.Errorf("directories extracted:\ngot  %q\nwant %q", gotDirs, wantDirs)
	}
}
