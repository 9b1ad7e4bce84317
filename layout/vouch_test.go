package layout

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// vouchedRun is a run that checked the file at rel holding data, with the vouches of cache,
// the file written long enough before the run's end to be vouched for; it returns the next
// run's tree, taking the vouches when trust.
func vouchedRun(t *testing.T, dir, cache, rel string, data []byte, trust bool) *Tree {
	t.Helper()
	first := NewTree(dir)
	save := first.UseVouches(cache, true)
	if !first.SharedFileHolds(rel, data) {
		t.Fatalf("the first run: %s does not hold its bytes", rel)
	}
	return nextVouched(dir, cache, save, trust)
}

// vouchingTree is a tree in a new directory, its run keeping vouches in a new cache directory
// when vouched (save writes them; without, it does nothing).
func vouchingTree(t *testing.T, vouched bool) (tree *Tree, dir, cache string, save func()) {
	dir, cache = t.TempDir(), t.TempDir()
	tree, save = NewTree(dir), func() {}
	if vouched {
		save = tree.UseVouches(cache, true)
	}
	return tree, dir, cache, save
}

// nextVouched ends a run that kept vouches (save), once the files it wrote are old enough to
// be vouched for, and returns the next run's tree at dir, taking them when trust.
func nextVouched(dir, cache string, save func(), trust bool) *Tree {
	time.Sleep(settleQuiet + 10*time.Millisecond)
	save()
	next := NewTree(dir)
	next.UseVouches(cache, trust)
	return next
}

// TestVouches: a file the last run checked is taken as holding its name's bytes, without
// reading them, while its identity is unchanged; any change of it, of the vouch, or a run
// that trusts none (generate --verify) has it hashed again.
func TestVouches(t *testing.T) {
	data := []byte("index\n")
	hex := DigestOf("sha256", data).Hex()[:16]
	rel := SharedDir + "/index.json/1-" + hex
	for _, tc := range []struct {
		name    string
		trust   bool
		change  func(t *testing.T, p, vouches string) // between the runs; nil: none
		vouched bool
		holds   bool // the bytes as they are then
	}{
		{name: "unchanged", trust: true, vouched: true, holds: true},
		{name: "not trusted (--verify)", trust: false, vouched: false, holds: true},
		{name: "rewritten in place, its times put back", trust: true, change: func(t *testing.T, p, _ string) {
			fi, err := os.Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, []byte("INDEX\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Chtimes(p, fi.ModTime(), fi.ModTime()); err != nil {
				t.Fatal(err)
			}
		}, vouched: false, holds: false},
		{name: "replaced by the same bytes", trust: true, change: func(t *testing.T, p, _ string) {
			if err := WriteFile(p, data); err != nil {
				t.Fatal(err)
			}
		}, vouched: false, holds: true},
		{name: "vouches damaged", trust: true, change: func(t *testing.T, _, vouches string) {
			b, err := os.ReadFile(vouches)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(vouches, b[:len(b)-2], 0o644); err != nil {
				t.Fatal(err)
			}
		}, vouched: false, holds: true},
		{name: "vouches removed", trust: true, change: func(t *testing.T, _, vouches string) {
			if err := os.Remove(vouches); err != nil {
				t.Fatal(err)
			}
		}, vouched: false, holds: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, cache := t.TempDir(), t.TempDir()
			p := filepath.Join(dir, filepath.FromSlash(rel))
			if err := WriteFile(p, data); err != nil {
				t.Fatal(err)
			}
			next := vouchedRun(t, dir, cache, rel, data, tc.trust)
			if tc.change != nil {
				tc.change(t, p, next.vouches.path)
			}
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			// Other bytes of the same length: a vouch is taken without reading them.
			if got := next.vouched(rel, make([]byte, len(b)), hex); got != tc.vouched {
				t.Errorf("vouched: got %v, want %v", got, tc.vouched)
			}
			if got := next.SharedFileHolds(rel, b); got != tc.holds {
				t.Errorf("SharedFileHolds: got %v, want %v", got, tc.holds)
			}
		})
	}
}

// TestVouchesNotForRecentFiles: a file changed just before the run ended is not vouched for
// (a change in the same clock tick could leave its times as they were), nor are other
// digits than those checked, or another length.
func TestVouchesNotForRecentFiles(t *testing.T) {
	data := []byte("filter\n")
	hex := DigestOf("sha256", data).Hex()[:16]
	rel := SharedDir + "/subsets/amd64/1-" + hex
	dir, cache := t.TempDir(), t.TempDir()
	if err := WriteFile(filepath.Join(dir, filepath.FromSlash(rel)), data); err != nil {
		t.Fatal(err)
	}
	first := NewTree(dir)
	save := first.UseVouches(cache, true)
	if !first.SharedFileHolds(rel, data) {
		t.Fatal("the file does not hold its bytes")
	}
	save()
	next := NewTree(dir)
	next.UseVouches(cache, true)
	if next.vouched(rel, data, hex) {
		t.Error("a file written just before the run's end was vouched for")
	}

	next = vouchedRun(t, dir, cache, rel, data, true)
	if !next.vouched(rel, data, hex) {
		t.Fatal("unchanged, not vouched for")
	}
	if other := strings.Repeat("0", 16); next.vouched(rel, data, other) {
		t.Error("vouched for digits other than those checked")
	}
	if next.vouched(rel, data[1:], hex) {
		t.Error("vouched for bytes of another length")
	}
}

// TestVouchesPruned: a vouches file unused for vouchesKeep is removed when a run saves its
// own; a recent one is kept.
func TestVouchesPruned(t *testing.T) {
	cache := t.TempDir()
	old, recent := filepath.Join(cache, vouchesPrefix+"0000000000000000"), filepath.Join(cache, vouchesPrefix+"1111111111111111")
	for _, p := range []string{old, recent} {
		if err := os.WriteFile(p, []byte(vouchesMagic), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	long := time.Now().Add(-vouchesKeep - time.Hour)
	if err := os.Chtimes(old, long, long); err != nil {
		t.Fatal(err)
	}
	NewTree(t.TempDir()).UseVouches(cache, true)()
	if _, err := os.Stat(old); !os.IsNotExist(err) {
		t.Errorf("the unused vouches: got %v, want them removed", err)
	}
	if _, err := os.Stat(recent); err != nil {
		t.Errorf("the recent vouches: %v, want them kept", err)
	}
}

// FuzzParseVouches: a vouches file of any bytes is read whole or not at all, never past a
// malformed line, and what it reads holds plain paths and hex digits.
func FuzzParseVouches(f *testing.F) {
	f.Add([]byte(vouchesMagic + "0123456789abcdef 1 2 3 4 5 regmirror/shared/index.json/1-0123456789abcdef\n"))
	f.Add([]byte(vouchesMagic + "0123 1 2 3 4 5 a b\n"))
	f.Add([]byte(vouchesMagic + "0123 1 2 3 4 5\n"))
	f.Add([]byte("regmirror vouches 0\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		for rel, v := range parseVouches(b) {
			if !vouchPath(rel) || v.hex == "" || !isLowerHex(v.hex) {
				t.Errorf("read %q: %+v", rel, v)
			}
		}
	})
}

// TestVouchesCarried: a run keeps the last run's vouches for the files it did not look at
// while they are unchanged (a crawl reads no index.json), and drops them when they changed.
func TestVouchesCarried(t *testing.T) {
	dir, cache := t.TempDir(), t.TempDir()
	type file struct {
		rel, hex string
		data     []byte
	}
	var idx, filter, refs file
	for name, f := range map[string]*file{"index": &idx, "filter": &filter, "refs": &refs} {
		f.data = []byte(name + "\n")
		f.hex = DigestOf("sha256", f.data).Hex()[:16]
		f.rel = SharedDir + "/kind/1-" + f.hex
		if err := WriteFile(filepath.Join(dir, filepath.FromSlash(f.rel)), f.data); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(settleQuiet + 10*time.Millisecond)
	run := func(look ...file) {
		t.Helper()
		tree := NewTree(dir)
		save := tree.UseVouches(cache, true)
		for _, f := range look {
			if !tree.SharedFileHolds(f.rel, f.data) {
				t.Fatalf("%s does not hold its bytes", f.rel)
			}
		}
		save()
	}
	run(idx, filter, refs)
	// The second run looks at idx only; refs changes before it (in place, same length).
	if err := os.WriteFile(filepath.Join(dir, filepath.FromSlash(refs.rel)), bytes.ToUpper(refs.data), 0o644); err != nil {
		t.Fatal(err)
	}
	run(idx)
	third := NewTree(dir)
	third.UseVouches(cache, true)
	for _, tc := range []struct {
		name string
		f    file
		want bool
	}{{"looked at", idx, true}, {"not looked at, unchanged", filter, true}, {"not looked at, changed", refs, false}} {
		if got := third.vouched(tc.f.rel, tc.f.data, tc.f.hex); got != tc.want {
			t.Errorf("%s: vouched for: got %v, want %v", tc.name, got, tc.want)
		}
	}
}
