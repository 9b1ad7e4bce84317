package layout

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// basePack is m's content as a base pack, and the same pack as decoding its JSON gives it
// (what the pack cache copies).
func basePack(t testing.TB, m *Meta) *metaPack {
	t.Helper()
	var js bytes.Buffer
	if err := encodePack(&js, &metaPack{Format: 3, Kind: metaKindPack, Manifests: m.Manifests, Blobs: m.Blobs, Orphans: m.Orphans, Repositories: m.Repositories}); err != nil {
		t.Fatal(err)
	}
	var p metaPack
	if err := decodePack(&js, &p); err != nil {
		t.Fatal(err)
	}
	return &p
}

// packCopyCases are packs whose copies must read back as the packs themselves: random
// metadata after promotions (referrers, retiring, archived and removed tags, orphans), and
// the edge cases of nil and empty.
func packCopyCases(t testing.TB) map[string]*metaPack {
	t.Helper()
	cases := map[string]*metaPack{
		"nothing": {Format: 3, Kind: metaKindPack},
		"empty maps and lists": {Format: 3, Kind: metaKindPack, Manifests: map[Digest]*Manifest{}, Blobs: map[Digest]*Blob{},
			Orphans: map[Digest]*Orphan{}, Repositories: map[string]*Repository{"e": {Tags: map[string]Digest{}, Manifests: []Digest{},
				Blobs: []Digest{}, Retiring: []Digest{}, Archived: []string{}, Removed: map[string]time.Time{}, Referrers: map[Digest][]Descriptor{}}}},
		"empty manifest bytes and names": {Format: 3, Kind: metaKindPack, Manifests: map[Digest]*Manifest{
			DigestOf("sha256", []byte("a")): {Data: []byte{}},
			DigestOf("sha256", []byte("b")): {MediaType: MediaTypeOCIIndex},
		}, Repositories: map[string]*Repository{"": {Tags: map[string]Digest{"": DigestOf("sha256", []byte("a"))}}}},
		"times in zones": {Format: 3, Kind: metaKindPack, Blobs: map[Digest]*Blob{
			DigestOf("sha256", []byte("z")): {Size: -1, Retired: time.Date(2026, 3, 1, 2, 3, 4, 5, time.FixedZone("", 7200)), Left: time.Date(1, 1, 1, 0, 0, 0, 1, time.UTC)},
		}, Orphans: map[Digest]*Orphan{DigestOf("sha512", []byte("o")): {Size: 1 << 40, Since: ^uint64(0), Unreferenced: time.Unix(0, 0).UTC(), Subsets: 3}}},
	}
	rng := rand.New(rand.NewPCG(7, 7))
	for i := range 20 {
		g := &metaGen{rng: rng, now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
		m := g.meta()
		for range 1 + i%8 {
			g.promote(m)
		}
		cases["random "+string(rune('a'+i))] = basePack(t, m)
	}
	return cases
}

// TestPackCopyReadsBack: a pack's copy decodes to the pack, field for field (nil and empty
// kept apart), and the copy of a pack decoded from JSON to what decoding the JSON gave.
func TestPackCopyReadsBack(t *testing.T) {
	d := DigestOf("sha256", []byte("pack"))
	for name, p := range packCopyCases(t) {
		t.Run(name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := encodePackCopy(&buf, p, d); err != nil {
				t.Fatal(err)
			}
			got, err := decodePackCopy(buf.Bytes(), d)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, p) {
				t.Errorf("got  %+v\nwant %+v", got, p)
			}
		})
	}
}

// TestPackCopyOrder: a pack's copy is the same bytes however the pack's maps iterate, and a
// decode meets the table's digests in order: each record of the manifests and the blobs names
// either a digest met before or the table's next one (packOrder).
func TestPackCopyOrder(t *testing.T) {
	d := DigestOf("sha256", []byte("pack"))
	for name, p := range packCopyCases(t) {
		t.Run(name, func(t *testing.T) {
			var first, again bytes.Buffer
			if err := encodePackCopy(&first, p, d); err != nil {
				t.Fatal(err)
			}
			if err := encodePackCopy(&again, p, d); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(first.Bytes(), again.Bytes()) {
				t.Fatalf("two copies of the pack differ (%d and %d bytes)", first.Len(), again.Len())
			}
			r := &packCopyReader{b: first.Bytes()[:first.Len()-4], off: len(packCacheMagic)}
			r.str()
			n, _ := r.count(4)
			for range n {
				r.str()
			}
			next := uint32(0) // the first index not met yet
			meet := func(what string, i int) {
				switch idx := r.u32(); {
				case idx == next:
					next++
				case idx > next:
					t.Fatalf("%s %d names digest %d of the table before %d", what, i, idx, next)
				}
			}
			if k, isNil := r.count(4 + 4 + 4); !isNil {
				for i := range k {
					meet("manifest", i)
					r.str()
					r.bytes()
				}
			}
			if k, isNil := r.count(4 + 8*4 + 2); !isNil {
				for i := range k {
					meet("blob", i)
					r.u64()
					r.u64()
					r.time()
					r.u64()
					r.u64()
					r.time()
				}
			}
			if r.err != nil {
				t.Fatal(r.err)
			}
		})
	}
}

// TestPackCopyRefused: a copy that is damaged, cut short, of another pack or of another
// version is an error, never a pack; and a pack that drops or changes records has no copy.
func TestPackCopyRefused(t *testing.T) {
	d := DigestOf("sha256", []byte("pack"))
	p := packCopyCases(t)["random c"]
	var buf bytes.Buffer
	if err := encodePackCopy(&buf, p, d); err != nil {
		t.Fatal(err)
	}
	good := buf.Bytes()
	flipped := bytes.Clone(good)
	flipped[len(flipped)/2] ^= 1
	version := bytes.Clone(good)
	version[len(packCacheMagic)-2]++
	for name, tc := range map[string]struct {
		b    []byte
		d    Digest
		want string
	}{
		"a bit flipped":    {flipped, d, "CRC"},
		"cut short":        {good[:len(good)-9], d, "CRC"},
		"another pack":     {good, DigestOf("sha256", []byte("other")), "a copy of"},
		"another version":  {version, d, "version"},
		"empty":            {nil, d, "version"},
		"only the magic":   {[]byte(packCacheMagic), d, "version"},
		"a wrong checksum": {append(bytes.Clone(good[:len(good)-4]), 0, 0, 0, 0), d, "CRC"},
	} {
		t.Run(name, func(t *testing.T) {
			got, err := decodePackCopy(tc.b, tc.d)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, %v; want an error saying %q", got != nil, err, tc.want)
			}
		})
	}
	if err := encodePackCopy(&bytes.Buffer{}, &metaPack{DropBlobs: []Digest{d}}, d); err == nil {
		t.Error("a pack dropping records was copied")
	}
}

// TestTreePackCache: with a pack cache, a tree's generation loads the same with and without
// the copy; the copy is made on the first load and read on the next; a damaged copy is
// ignored and made again; a pack missing from the tree is refused even though the cache has
// its copy.
func TestTreePackCache(t *testing.T) {
	tree := cacheableTree(t, 3)
	want, _, err := NewTree(tree.Dir()).Load()
	if err != nil {
		t.Fatal(err)
	}
	cache := t.TempDir()
	load := func(what string) {
		t.Helper()
		ct := NewTree(tree.Dir())
		defer ct.UsePackCache(cache)()
		got, _, err := ct.Load()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		sameMeta(t, what, got, want)
		if !reflect.DeepEqual(got.Repositories, want.Repositories) || !reflect.DeepEqual(got.Manifests, want.Manifests) ||
			!reflect.DeepEqual(got.Blobs, want.Blobs) || !reflect.DeepEqual(got.Orphans, want.Orphans) {
			t.Fatalf("%s: the content differs from the pack's", what)
		}
	}
	copies := func() []string {
		t.Helper()
		c, err := filepath.Glob(filepath.Join(cache, "*"+packCacheExt))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	load("first load (no copy)")
	c := copies()
	if len(c) != 1 {
		t.Fatalf("copies after the first load: got %v, want one", c)
	}
	made, err := os.Stat(c[0])
	if err != nil {
		t.Fatal(err)
	}
	load("second load (the copy)")
	if again, err := os.Stat(c[0]); err != nil || !os.SameFile(made, again) {
		t.Fatalf("the copy was written again (%v): it was not read", err)
	}
	raw, err := os.ReadFile(c[0])
	if err != nil {
		t.Fatal(err)
	}
	raw[len(raw)/3] ^= 0x40
	if err := os.WriteFile(c[0], raw, 0o644); err != nil {
		t.Fatal(err)
	}
	load("a damaged copy")
	if fixed, err := os.ReadFile(c[0]); err != nil || bytes.Equal(fixed, raw) {
		t.Fatalf("the damaged copy was not replaced (%v)", err)
	}

	s, err := tree.ReadStamp()
	if err != nil {
		t.Fatal(err)
	}
	files, err := tree.MetaFiles(s)
	if err != nil {
		t.Fatal(err)
	}
	pack := files[len(files)-1] // the root, the network file, then the packs
	if err := os.Remove(tree.Path(pack)); err != nil {
		t.Fatal(err)
	}
	ct := NewTree(tree.Dir())
	ct.UsePackCache(cache)
	var mfe *MetaFileError
	if _, _, err := ct.Load(); !errors.As(err, &mfe) {
		t.Fatalf("pack %s missing from the tree: got %v, want a MetaFileError", pack, err)
	}
}

// TestPackCachePruned: the cache keeps the packCacheKeep copies used last, and removes the
// temporary files of writes interrupted more than an hour ago.
func TestPackCachePruned(t *testing.T) {
	tree := NewTree(t.TempDir())
	tree.UsePackCache(t.TempDir())
	p := &metaPack{Format: 3, Kind: metaKindPack}
	var ds []Digest
	for i := range packCacheKeep + 2 {
		d := DigestOf("sha256", []byte{byte(i)})
		ds = append(ds, d)
		if err := tree.writeCachedPack(d, p); err != nil {
			t.Fatal(err)
		}
		old := time.Now().Add(time.Duration(i-10) * time.Minute)
		if err := os.Chtimes(tree.packCachePath(d), old, old); err != nil {
			t.Fatal(err)
		}
	}
	stale, fresh := filepath.Join(tree.packCache, TempPrefix+"1"), filepath.Join(tree.packCache, TempPrefix+"2")
	for _, f := range []string{stale, fresh} {
		if err := os.WriteFile(f, nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if old := time.Now().Add(-2 * time.Hour); os.Chtimes(stale, old, old) != nil {
		t.Fatal("cannot age the stale temporary file")
	}
	tree.prunePackCache()
	for f, kept := range map[string]bool{stale: false, fresh: true} {
		if _, err := os.Stat(f); kept != (err == nil) {
			t.Errorf("%s: kept %v, want %v", filepath.Base(f), err == nil, kept)
		}
	}
	for i, d := range ds {
		_, err := os.Stat(tree.packCachePath(d))
		if kept := i >= len(ds)-packCacheKeep; kept != (err == nil) {
			t.Errorf("copy %d of %d (oldest first): kept %v, want %v", i, len(ds), err == nil, kept)
		}
	}
}

// FuzzPackCopy: whatever its bytes, a copy decodes to a pack or an error, without panicking,
// and a pack it decodes to copies back to one that decodes the same.
func FuzzPackCopy(f *testing.F) {
	d := DigestOf("sha256", []byte("pack"))
	cases := packCopyCases(f)
	for _, name := range []string{"empty manifest bytes and names", "times in zones", "empty maps and lists"} {
		var buf bytes.Buffer
		if err := encodePackCopy(&buf, cases[name], d); err != nil {
			f.Fatal(err)
		}
		f.Add(buf.Bytes())
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := decodePackCopy(b, d)
		if err != nil {
			return
		}
		var buf bytes.Buffer
		if err := encodePackCopy(&buf, p, d); err != nil {
			t.Fatal(err)
		}
		again, err := decodePackCopy(buf.Bytes(), d)
		if err != nil || !reflect.DeepEqual(again, p) {
			t.Fatalf("the copy of a decoded copy reads back as %v, %v", again, err)
		}
	})
}

// BenchmarkPackCopy is BenchmarkDecodePack's base pack (REGMIRROR_SCALE_MANIFESTS, default
// 9000) read three ways in one run: decoded from its JSON (what a load without the cache
// does, the decompression left out), from its copy (a load with it), and its copy written
// (what the first load of a new base adds).
func BenchmarkPackCopy(b *testing.B) {
	js := scaleBasePack(b)
	var p metaPack
	if err := decodePack(bytes.NewReader(js), &p); err != nil {
		b.Fatal(err)
	}
	d := DigestOf("sha256", js)
	var cp bytes.Buffer
	if err := encodePackCopy(&cp, &p, d); err != nil {
		b.Fatal(err)
	}
	b.Run("json", func(b *testing.B) { benchDecodePack(b, js) })
	b.Run("copy", func(b *testing.B) {
		b.SetBytes(int64(cp.Len()))
		b.ReportAllocs()
		for b.Loop() {
			if _, err := decodePackCopy(cp.Bytes(), d); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("write copy", func(b *testing.B) {
		b.SetBytes(int64(cp.Len()))
		b.ReportAllocs()
		for b.Loop() {
			if err := encodePackCopy(io.Discard, &p, d); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// cacheableTree publishes a generated tree (seed) whose base pack is large enough for the
// pack cache (packCacheMin) into a temporary directory.
func cacheableTree(t *testing.T, seed uint64) *Tree {
	t.Helper()
	g := &metaGen{rng: rand.New(rand.NewPCG(seed, seed)), now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	m, _ := g.scale(6000)
	tree := NewTree(t.TempDir())
	if _, err := tree.Publish(m); err != nil {
		t.Fatal(err)
	}
	return tree
}
