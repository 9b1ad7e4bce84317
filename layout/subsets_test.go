package layout

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"
)

// subsetFixture is a small multi-arch tree: fedora:42 an index of an amd64 and an arm64
// image and an attestation, fedora:41 (archived) a single-arch amd64 image sharing a layer
// with 42's amd64 image, a signature referring to 42's index.
type subsetFixture struct {
	meta  *Meta
	d     map[string]Digest // name → digest
	archs map[Digest]string // config → architecture
}

func fakeDigest(s string) Digest {
	sum := sha256.Sum256([]byte(s))
	return MustDigest("sha256:" + hex.EncodeToString(sum[:]))
}

func newSubsetFixture(t *testing.T) *subsetFixture {
	t.Helper()
	f := &subsetFixture{meta: NewMeta(3), d: map[string]Digest{}, archs: map[Digest]string{}}
	blob := func(name string) Digest {
		d := fakeDigest(name)
		f.d[name] = d
		f.meta.Blobs[d] = &Blob{Size: int64(100 * len(name)), Since: 1}
		return d
	}
	manifest := func(name, body string) Digest {
		data := []byte(body)
		sum := sha256.Sum256(data)
		d := MustDigest("sha256:" + hex.EncodeToString(sum[:]))
		f.d[name] = d
		f.meta.Manifests[d] = &Manifest{MediaType: "application/vnd.oci.image.manifest.v1+json", Data: data}
		f.meta.Blobs[d] = &Blob{Size: int64(len(data)), Since: 1}
		return d
	}
	image := func(name, config string, layers ...string) Digest {
		var ls []string
		for _, l := range layers {
			ls = append(ls, fmt.Sprintf(`{"digest":%q}`, blob(l)))
		}
		return manifest(name, fmt.Sprintf(`{"schemaVersion":2,"config":{"digest":%q},"layers":[%s]}`, blob(config), strings.Join(ls, ",")))
	}
	amd := image("img-amd64", "cfg-amd64", "l-amd64", "l-shared", "l-old-new")
	arm := image("img-arm64", "cfg-arm64", "l-arm64", "l-shared")
	att := image("attestation", "cfg-att", "l-att")
	idx := manifest("index", fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[`+
		`{"digest":%q,"platform":{"architecture":"amd64","os":"linux"}},`+
		`{"digest":%q,"platform":{"architecture":"arm64","os":"linux"}},`+
		`{"digest":%q,"platform":{"architecture":"unknown","os":"unknown"}}]}`, amd, arm, att))
	old := image("img-41", "cfg-41", "l-41", "l-old-new")
	f.archs[f.d["cfg-41"]] = "amd64"
	sig := image("signature", "cfg-sig", "l-sig")
	repo := &Repository{
		Tags:      map[string]Digest{"42": idx, "41": old},
		Archived:  []string{"41"},
		Referrers: map[Digest][]Descriptor{idx: {{Digest: sig}}},
	}
	f.meta.Repositories["fedora"] = repo
	return f
}

// subsetsOfBlob names the subsets a blob's mask gives, sorted.
func subsetsOfBlob(m *Meta, mask uint64) string {
	var out []string
	for i, s := range m.Subsets {
		if mask&(1<<i) != 0 {
			out = append(out, s)
		}
	}
	sort.Strings(out)
	return strings.Join(out, ",")
}

func TestMembership(t *testing.T) {
	f := newSubsetFixture(t)
	table, masks, err := Membership(f.meta, func(d Digest) string { return f.archs[d] })
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(table, " "), "amd64 arm64 * archive"; got != want {
		t.Fatalf("table: got %q, want %q", got, want)
	}
	if err := f.meta.SetMembership(table, masks, nil, time.Now(), time.Hour); err != nil {
		t.Fatal(err)
	}
	tests := []struct{ blob, want string }{
		{"index", "*"},
		{"img-amd64", "amd64"},
		{"cfg-amd64", "amd64"},
		{"l-amd64", "amd64"},
		{"l-shared", "amd64,arm64"},
		{"img-arm64", "arm64"},
		{"l-arm64", "arm64"},
		{"attestation", "*"},
		{"l-att", "*"},
		{"signature", "*"},
		{"l-sig", "*"},
		// fedora:41 is archived: its own blobs are the archive; the layer 42 shares is not.
		{"img-41", "archive"},
		{"cfg-41", "archive"},
		{"l-41", "archive"},
		{"l-old-new", "amd64"},
	}
	for _, tc := range tests {
		t.Run(tc.blob, func(t *testing.T) {
			if got := subsetsOfBlob(f.meta, f.meta.Blobs[f.d[tc.blob]].Subsets); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestCarries(t *testing.T) {
	f := newSubsetFixture(t)
	table, masks, err := Membership(f.meta, func(d Digest) string { return f.archs[d] })
	if err != nil {
		t.Fatal(err)
	}
	if err := f.meta.SetMembership(table, masks, nil, time.Now(), time.Hour); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		content []string
		carries []string
		not     []string
	}{
		{"full", nil, []string{"l-amd64", "l-arm64", "index", "l-sig", "l-old-new"}, []string{"l-41", "img-41"}},
		{"amd64", []string{"amd64"}, []string{"l-amd64", "l-shared", "index", "l-att", "l-sig"}, []string{"l-arm64", "l-41"}},
		{"arm64", []string{"arm64"}, []string{"l-arm64", "l-shared", "index", "l-sig"}, []string{"l-amd64", "l-old-new", "l-41"}},
		{"riscv64, no image of it", []string{"riscv64"}, []string{"index", "l-sig"}, []string{"l-amd64", "l-arm64", "l-41"}},
		{"archive", []string{"archive"}, []string{"l-41", "img-41", "cfg-41"}, []string{"l-amd64", "index", "l-old-new"}},
		{"arm64 and archive", []string{"arm64", "archive"}, []string{"l-arm64", "l-41"}, []string{"l-amd64"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			mask := f.meta.ContentMask(tc.content)
			for _, b := range tc.carries {
				if !Carries(mask, f.meta.Blobs[f.d[b]]) {
					t.Errorf("content %v: does not carry %s, want it to", tc.content, b)
				}
			}
			for _, b := range tc.not {
				if Carries(mask, f.meta.Blobs[f.d[b]]) {
					t.Errorf("content %v: carries %s, want not", tc.content, b)
				}
			}
		})
	}
	// Metadata without subsets: every mirror carries everything.
	old := NewMeta(1)
	if got, want := Carries(old.ContentMask([]string{"arm64"}), &Blob{Size: 1}), true; got != want {
		t.Errorf("metadata without subsets: got %v, want %v", got, want)
	}
}

func TestSetMembershipCarriesOver(t *testing.T) {
	f := newSubsetFixture(t)
	arch := func(d Digest) string { return f.archs[d] }
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	table, masks, err := Membership(f.meta, arch)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.meta.SetMembership(table, masks, nil, t0, time.Hour); err != nil {
		t.Fatal(err)
	}
	prev := f.meta
	// Next generation: fedora:42 archived too, l-41 an orphan.
	next := NewMeta(4)
	for d, b := range prev.Blobs {
		if d != f.d["l-41"] {
			next.Blobs[d] = &Blob{Size: b.Size, Since: b.Since}
		}
	}
	next.Manifests = prev.Manifests
	next.Orphans = map[Digest]*Orphan{f.d["l-41"]: {Size: 1, Since: 1, Unreferenced: t0}}
	r := *prev.Repositories["fedora"]
	r.Archived = []string{"41", "42"}
	next.Repositories["fedora"] = &r
	table, masks, err = Membership(next, arch)
	if err != nil {
		t.Fatal(err)
	}
	if err := next.SetMembership(table, masks, prev, t0.Add(time.Minute), time.Hour); err != nil {
		t.Fatal(err)
	}
	b := next.Blobs[f.d["l-arm64"]]
	if got, want := subsetsOfBlob(next, b.Subsets), "archive"; got != want {
		t.Errorf("l-arm64 after archiving: got %q, want %q", got, want)
	}
	if got, want := subsetsOfBlob(next, b.Former), "arm64"; got != want {
		t.Errorf("l-arm64 former: got %q, want %q", got, want)
	}
	if got, want := b.Since, uint64(4); got != want {
		t.Errorf("l-arm64 joined the archive: Since got %d, want %d", got, want)
	}
	if got, want := subsetsOfBlob(next, next.Orphans[f.d["l-41"]].Subsets), "archive"; got != want {
		t.Errorf("orphan l-41: got %q, want %q", got, want)
	}
	filters := next.SubsetFilters()
	line := "+ /" + BlobPath(f.d["l-arm64"]) + "\n"
	for _, tc := range []struct {
		subset string
		want   bool
	}{{"arm64", true}, {"archive", true}, {"amd64", false}} {
		if got := strings.Contains(string(filters[SubsetFilterPath(tc.subset)]), line); got != tc.want {
			t.Errorf("%s's filter lists l-arm64 (left arm64 within the grace): got %v, want %v", tc.subset, got, tc.want)
		}
	}
	// Past the grace the former membership is gone.
	third := NewMeta(5)
	for d, b := range next.Blobs {
		third.Blobs[d] = &Blob{Size: b.Size, Since: b.Since}
	}
	third.Manifests, third.Repositories = next.Manifests, next.Repositories
	table, masks, err = Membership(third, arch)
	if err != nil {
		t.Fatal(err)
	}
	if err := third.SetMembership(table, masks, next, t0.Add(2*time.Hour), time.Hour); err != nil {
		t.Fatal(err)
	}
	if got := third.Blobs[f.d["l-arm64"]].Former; got != 0 {
		t.Errorf("past the grace: Former got %b, want 0", got)
	}
	if strings.Contains(string(third.SubsetFilters()[SubsetFilterPath("arm64")]), line) {
		t.Errorf("past the grace: arm64's filter still lists l-arm64")
	}
}

func TestValidSubset(t *testing.T) {
	tests := []struct {
		name, err string
	}{
		{"amd64", ""},
		{"archive", ""},
		{"s390x", ""},
		{"x86_64", `"x86_64" is not a subset: want an OCI architecture (386 amd64 arm arm64 loong64 mips mips64 mips64le mipsle ppc64 ppc64le riscv64 s390x wasm) or archive (x86_64 is amd64)`},
		{"AMD64", `"AMD64" is not a subset: want an OCI architecture (386 amd64 arm arm64 loong64 mips mips64 mips64le mipsle ppc64 ppc64le riscv64 s390x wasm) or archive`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := ValidSubset(tc.name)
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != tc.err {
				t.Errorf("got %q, want %q", got, tc.err)
			}
		})
	}
}

// TestFedoraLikeSubsetBytes computes the bytes per subset of a synthetic Fedora-like tree:
// fedora, fedora-minimal and fedora-toolbox for releases 37 to 42 on the four Fedora
// architectures (compressed sizes of the order Fedora publishes), a signature per image
// index, releases 37 to 39 archived. It checks the accounting (every byte in exactly the
// subsets the rules give) and logs the figures.
func TestFedoraLikeSubsetBytes(t *testing.T) {
	const MB = 1 << 20
	m := NewMeta(1)
	archs := []string{"amd64", "arm64", "ppc64le", "s390x"}
	images := []struct {
		repo string
		size map[string]int64 // per architecture: the image's one layer
	}{
		{"fedora", map[string]int64{"amd64": 62 * MB, "arm64": 60 * MB, "ppc64le": 68 * MB, "s390x": 63 * MB}},
		{"fedora-minimal", map[string]int64{"amd64": 38 * MB, "arm64": 36 * MB, "ppc64le": 41 * MB, "s390x": 39 * MB}},
		{"fedora-toolbox", map[string]int64{"amd64": 310 * MB, "arm64": 295 * MB, "ppc64le": 330 * MB, "s390x": 300 * MB}},
	}
	add := func(name string, size int64) Digest {
		d := fakeDigest(name)
		m.Blobs[d] = &Blob{Size: size, Since: 1}
		return d
	}
	addManifest := func(body string) Digest {
		d := fakeDigest(body)
		m.Manifests[d] = &Manifest{MediaType: "application/vnd.oci.image.manifest.v1+json", Data: []byte(body)}
		m.Blobs[d] = &Blob{Size: int64(len(body)), Since: 1}
		return d
	}
	wantArch := map[string]int64{}
	var wantArchive, wantAny int64
	for _, im := range images {
		repo := &Repository{Tags: map[string]Digest{}, Referrers: map[Digest][]Descriptor{}}
		m.Repositories[im.repo] = repo
		for rel := 37; rel <= 42; rel++ {
			archived := rel <= 39
			tag := fmt.Sprint(rel)
			var children []string
			for _, a := range archs {
				layer := add(fmt.Sprintf("%s:%d/%s/layer", im.repo, rel, a), im.size[a])
				cfg := add(fmt.Sprintf("%s:%d/%s/config", im.repo, rel, a), 4<<10)
				img := addManifest(fmt.Sprintf(`{"schemaVersion":2,"config":{"digest":%q},"layers":[{"digest":%q}]}`, cfg, layer))
				children = append(children, fmt.Sprintf(`{"digest":%q,"platform":{"architecture":%q,"os":"linux"}}`, img, a))
				n := im.size[a] + 4<<10 + m.Blobs[img].Size
				if archived {
					wantArchive += n
				} else {
					wantArch[a] += n
				}
			}
			idx := addManifest(fmt.Sprintf(`{"schemaVersion":2,"manifests":[%s]}`, strings.Join(children, ",")))
			sigLayer := add(fmt.Sprintf("%s:%d/signature", im.repo, rel), 300)
			sigCfg := add(fmt.Sprintf("%s:%d/signature-config", im.repo, rel), 233)
			sig := addManifest(fmt.Sprintf(`{"schemaVersion":2,"config":{"digest":%q},"layers":[{"digest":%q}],"subject":{"digest":%q}}`, sigCfg, sigLayer, idx))
			repo.Referrers[idx] = []Descriptor{{Digest: sig}}
			repo.Tags[tag] = idx
			n := m.Blobs[idx].Size + 300 + 233 + m.Blobs[sig].Size
			if archived {
				repo.Archived = append(repo.Archived, tag)
				wantArchive += n
			} else {
				wantAny += n
			}
		}
	}
	table, masks, err := Membership(m, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.SetMembership(table, masks, nil, time.Now(), time.Hour); err != nil {
		t.Fatal(err)
	}
	per, total := m.SubsetBytes()
	for _, a := range archs {
		if got, want := per[a], wantArch[a]+wantAny; got != want {
			t.Errorf("%s: got %d bytes, want %d", a, got, want)
		}
	}
	if got, want := per[ArchiveSubset], wantArchive; got != want {
		t.Errorf("archive: got %d bytes, want %d", got, want)
	}
	var sum int64
	for _, a := range archs {
		sum += wantArch[a]
	}
	if got, want := total, sum+wantAny+wantArchive; got != want {
		t.Errorf("total: got %d bytes, want %d", got, want)
	}
	t.Logf("Fedora-like tree, 3 repositories × releases 37-42 × 4 architectures, 37-39 archived: %s",
		m.FormatSubsetBytes(func(n int64) string { return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30)) }))
}

// FuzzMembership: whatever a source's manifests say, membership terminates, names only
// subsets a mirror may give (and AnyArchitecture), and gives every reachable blob a mask.
func FuzzMembership(f *testing.F) {
	f.Add([]byte(`{"manifests":[{"digest":"sha256:`+strings.Repeat("a", 64)+`","platform":{"architecture":"arm64"}}]}`), "amd64")
	f.Add([]byte(`{"config":{"digest":"sha256:`+strings.Repeat("b", 64)+`"},"layers":[{"digest":"sha256:`+strings.Repeat("c", 64)+`"}]}`), "../../etc")
	f.Fuzz(func(t *testing.T, data []byte, arch string) {
		m := NewMeta(1)
		d := fakeDigest(string(data))
		m.Manifests[d] = &Manifest{MediaType: "application/vnd.oci.image.index.v1+json", Data: data}
		m.Blobs[d] = &Blob{Size: int64(len(data)), Since: 1}
		for _, h := range []string{"a", "b", "c"} {
			m.Blobs[MustDigest("sha256:"+strings.Repeat(h, 64))] = &Blob{Size: 1, Since: 1}
		}
		// The manifest refers to itself too, through a second tag's index.
		self := []byte(fmt.Sprintf(`{"manifests":[{"digest":%q,"platform":{"architecture":%q}}]}`, d, arch))
		sd := fakeDigest(string(self))
		m.Manifests[sd] = &Manifest{MediaType: "application/vnd.oci.image.index.v1+json", Data: self}
		m.Blobs[sd] = &Blob{Size: 1, Since: 1}
		m.Repositories["r"] = &Repository{Tags: map[string]Digest{"a": d, "b": sd}, Archived: []string{"b"}}
		table, masks, err := Membership(m, func(Digest) string { return arch })
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range table {
			if s != AnyArchitecture && ValidSubset(s) != nil {
				t.Fatalf("table names %q", s)
			}
		}
		if _, ok := masks[d]; !ok {
			t.Fatalf("the tagged manifest has no membership")
		}
		if err := m.SetMembership(table, masks, nil, time.Now(), time.Hour); err != nil {
			t.Fatal(err)
		}
	})
}

// TestRetiringKeepsMembership: a blob no tag reaches any more but still in Blobs (retiring
// content) keeps the subsets it had; one without any earlier membership is every
// architecture's.
func TestRetiringKeepsMembership(t *testing.T) {
	f := newSubsetFixture(t)
	arch := func(d Digest) string { return f.archs[d] }
	table, masks, err := Membership(f.meta, arch)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.meta.SetMembership(table, masks, nil, time.Now(), time.Hour); err != nil {
		t.Fatal(err)
	}
	prev := f.meta
	next := NewMeta(4)
	for d, b := range prev.Blobs {
		next.Blobs[d] = &Blob{Size: b.Size, Since: b.Since}
	}
	stray := fakeDigest("stray")
	next.Blobs[stray] = &Blob{Size: 1, Since: 4}
	next.Manifests = prev.Manifests
	r := *prev.Repositories["fedora"]
	r.Tags = map[string]Digest{"41": r.Tags["41"]} // fedora:42 gone: its content retires
	next.Repositories["fedora"] = &r
	table, masks, err = Membership(next, arch)
	if err != nil {
		t.Fatal(err)
	}
	if err := next.SetMembership(table, masks, prev, time.Now(), time.Hour); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ blob, want string }{
		{"l-arm64", "arm64"},
		{"l-shared", "amd64,arm64"},
		{"index", "*"},
	} {
		if got := subsetsOfBlob(next, next.Blobs[f.d[tc.blob]].Subsets); got != tc.want {
			t.Errorf("retiring %s: got %q, want %q", tc.blob, got, tc.want)
		}
	}
	if got, want := subsetsOfBlob(next, next.Blobs[stray].Subsets), "*"; got != want {
		t.Errorf("a blob without earlier membership: got %q, want %q", got, want)
	}
}

// TestSubsetFiltersOrder: each subset's filter lists its blobs, members, former members and
// orphans alike ("+ /blobs/…" lines), by the generation they appeared in, then by path;
// metadata without membership lists every blob in every subset.
func TestSubsetFiltersOrder(t *testing.T) {
	d := func(s string) Digest { return DigestOf("sha256", []byte(s)) }
	line := func(s string) string { return "+ /" + BlobPath(d(s)) + "\n" }
	m := NewMeta(3)
	m.Subsets = []string{"amd64", "arm64", ArchiveSubset}
	m.Blobs[d("a")] = &Blob{Since: 2, Subsets: 1}
	m.Blobs[d("b")] = &Blob{Since: 1, Subsets: 1 | 2}
	m.Blobs[d("c")] = &Blob{Since: 2, Subsets: 4, Former: 2}
	m.Blobs[d("e")] = &Blob{Since: 1, Subsets: 1}
	m.Orphans = map[Digest]*Orphan{d("f"): {Since: 1, Subsets: 2}}
	sorted := func(names ...string) string {
		slices.SortFunc(names, func(x, y string) int {
			sx, sy := m.Blobs[d(x)], m.Blobs[d(y)]
			ix, iy := uint64(1), uint64(1) // orphans here appeared in generation 1
			if sx != nil {
				ix = sx.Since
			}
			if sy != nil {
				iy = sy.Since
			}
			if ix != iy {
				return int(ix) - int(iy)
			}
			return strings.Compare(line(x), line(y))
		})
		var b strings.Builder
		for _, n := range names {
			b.WriteString(line(n))
		}
		return b.String()
	}
	tests := []struct {
		name, subset, want string
	}{
		{"members", "amd64", sorted("a", "b", "e")},
		{"members, former members and orphans", "arm64", sorted("b", "c", "f")},
		{"archive", ArchiveSubset, sorted("c")},
		{"an architecture the tree has no image of", "s390x", ""},
	}
	filters := m.SubsetFilters()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := string(filters[SubsetFilterPath(tc.subset)]); got != tc.want {
				t.Errorf("%s's filter:\ngot  %q\nwant %q", tc.subset, got, tc.want)
			}
		})
	}
	m.Subsets = nil
	if got, want := string(m.SubsetFilters()[SubsetFilterPath("arm64")]), sorted("a", "b", "c", "e", "f"); got != want {
		t.Errorf("without membership, arm64's filter:\ngot  %q\nwant %q", got, want)
	}
	if got, want := string(m.SubsetFilters()[SubsetFilterPath(ArchiveSubset)]), sorted("a", "b", "c", "e", "f"); got != want {
		t.Errorf("without membership, the archive's filter:\ngot  %q\nwant %q", got, want)
	}
}
