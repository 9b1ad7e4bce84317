package redirector

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/regmirror/regmirror/layout"
)

// TestSwitchBuildsWhatALoadBuilds follows generations changed at random (tags moved and
// removed, images added, manifests dropped, repositories copied and dropped, blob records
// changed; every fifth generation none, as a crawl's) with a Loader, as serve does, and
// checks that each switch built from the previous generation and the Loader's change
// (updateContent) serves what a generation built from every record (loadContent) serves,
// with its repositories answering its own entries, and shares the previous generation's
// indexes when no content changed.
func TestSwitchBuildsWhatALoadBuilds(t *testing.T) {
	for seed := range uint64(4) {
		t.Run(fmt.Sprint("seed ", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 3))
			dir := t.TempDir()
			m, dm := writeTree(t, dir, 1)
			tree := layout.NewTree(dir)
			if _, err := tree.Publish(m); err != nil {
				t.Fatal(err)
			}
			loader := tree.NewLoader()
			warn := func(string, ...any) {}
			var prev *generation
			updated := 0
			for step := range 40 {
				if step > 0 {
					m, _, err := layout.NewTree(dir).Load()
					if err != nil {
						t.Fatal(err)
					}
					m.Generation++
					what := "fedora's linux/amd64 image dropped"
					switch {
					case step == 3: // the default child of fedora's list: the list is built anew
						dropManifest(m, dm.fedoraAMD64, false)
					case step%5 == 4:
						what = "no content changed (a crawl's generation)"
					default:
						what = changeAtRandom(t, rng, m)
					}
					if _, err := layout.NewTree(dir).Publish(m); err != nil {
						t.Fatalf("step %d (%s): %v", step, what, err)
					}
				}
				loaded, stamp, change, err := loader.Load()
				if err != nil {
					t.Fatal(err)
				}
				if prev != nil && change.Base != "" && change.Base == prev.chain {
					updated++
				}
				got, err := loadGeneration(loaded, stamp, prev, change, warn)
				if err != nil {
					t.Fatalf("step %d: %v", step, err)
				}
				want, err := loadGeneration(loaded, stamp, nil, nil, warn)
				if err != nil {
					t.Fatalf("step %d: built whole: %v", step, err)
				}
				if g, w := contentOf(got), contentOf(want); !reflect.DeepEqual(g, w) {
					for _, k := range slices.Sorted(maps.Keys(w)) {
						if !reflect.DeepEqual(g[k], w[k]) {
							t.Errorf("step %d: %s:\n got %v\nwant %v", step, k, g[k], w[k])
						}
					}
					t.FailNow()
				}
				ownEntries(t, step, got)
				if step%5 == 4 {
					// Nothing to copy: the switch shares the indexes of the generation before.
					shared := reflect.ValueOf(got.manifests).UnsafePointer() == reflect.ValueOf(prev.manifests).UnsafePointer() &&
						reflect.ValueOf(got.blobs).UnsafePointer() == reflect.ValueOf(prev.blobs).UnsafePointer() &&
						reflect.ValueOf(got.repos).UnsafePointer() == reflect.ValueOf(prev.repos).UnsafePointer()
					if !shared {
						t.Errorf("step %d: no content changed, but the switch copied the indexes", step)
					}
				}
				prev = got
			}
			if updated < 20 {
				t.Errorf("%d of 39 switches built from the previous generation and the change, want at least 20", updated)
			}
		})
	}
}

// changeAtRandom changes m as a generation may, consistently (every digest a repository
// names is in the metadata), and says how.
func changeAtRandom(t *testing.T, rng *rand.Rand, m *layout.Meta) string {
	t.Helper()
	names := slices.Sorted(maps.Keys(m.Repositories))
	name := names[rng.IntN(len(names))]
	r := m.Repositories[name]
	cp := *r
	r = &cp
	r.Tags = maps.Clone(r.Tags)
	m.Repositories[name] = r
	tags := slices.Sorted(maps.Keys(r.Tags))
	switch op := rng.IntN(7); {
	case op == 0 && len(r.Manifests) > 0: // a tag moved
		tag := fmt.Sprint("t", rng.IntN(3))
		r.Tags[tag] = r.Manifests[rng.IntN(len(r.Manifests))]
		return "tag " + name + ":" + tag + " moved"
	case op == 1 && len(tags) > 0:
		delete(r.Tags, tags[0])
		return "tag " + name + ":" + tags[0] + " removed"
	case op == 2 && len(r.Manifests) > 0: // a new image, from one of the repository's
		base := m.Manifests[r.Manifests[rng.IntN(len(r.Manifests))]]
		data := append([]byte(fmt.Sprintf(`{"annotations":{"n":"%d"},`, rng.Uint64())), base.Data[1:]...)
		d := layout.DigestOf("sha256", data)
		m.Manifests[d] = &layout.Manifest{MediaType: base.MediaType, Data: data}
		m.Blobs[d] = &layout.Blob{Size: int64(len(data)), Since: m.Generation}
		r.Manifests = sortedUnique(append(slices.Clone(r.Manifests), d))
		r.Tags["new"] = d
		return "image added to " + name
	case op == 3 && len(r.Manifests) > 1: // a manifest dropped, its blob record kept or not
		d := r.Manifests[rng.IntN(len(r.Manifests))]
		keepBlob := rng.IntN(2) == 0
		dropManifest(m, d, keepBlob)
		return fmt.Sprintf("manifest %s dropped (blob record kept: %v)", d, keepBlob)
	case op == 4: // a repository copied under a new name
		n := fmt.Sprintf("copy/%d", rng.IntN(1000))
		c := *r
		m.Repositories[n] = &c
		return "repository " + name + " copied to " + n
	case op == 5 && len(names) > 2:
		delete(m.Repositories, name)
		return "repository " + name + " dropped"
	default: // a blob's record changed: retired, no longer retired, or its subsets
		if len(r.Blobs) == 0 {
			return "nothing"
		}
		d := r.Blobs[rng.IntN(len(r.Blobs))]
		b := *m.Blobs[d]
		switch rng.IntN(3) {
		case 0:
			b.Retired = time.Date(2026, 1, 1, 0, 0, rng.IntN(60), 0, time.UTC)
		case 1:
			b.Retired = time.Time{}
		default:
			b.Subsets = uint64(rng.IntN(4))
		}
		m.Blobs[d] = &b
		return "blob " + d.String() + " changed"
	}
}

// dropManifest drops manifest d from m and from every repository and tag naming it, and its
// blob record unless keepBlob.
func dropManifest(m *layout.Meta, d layout.Digest, keepBlob bool) {
	for n, o := range m.Repositories {
		if !slices.Contains(o.Manifests, d) && !slices.Contains(o.Retiring, d) && !slices.Contains(slices.Collect(maps.Values(o.Tags)), d) {
			continue
		}
		c := *o
		c.Manifests = slices.DeleteFunc(slices.Clone(o.Manifests), func(x layout.Digest) bool { return x == d })
		c.Retiring = slices.DeleteFunc(slices.Clone(o.Retiring), func(x layout.Digest) bool { return x == d })
		c.Tags = maps.Clone(o.Tags)
		maps.DeleteFunc(c.Tags, func(_ string, x layout.Digest) bool { return x == d })
		m.Repositories[n] = &c
	}
	delete(m.Manifests, d)
	if !keepBlob {
		delete(m.Blobs, d)
	}
}

// contentOf is what g's content serves, by part, in plain values.
func contentOf(g *generation) map[string]any {
	out := map[string]any{
		"catalog": string(g.catalogBody), "counts": [2]int{g.manifestCount, g.blobCount},
		"retired": maps.Clone(g.retired),
	}
	for k, e := range g.manifests {
		child := ""
		if e.defaultChild != nil {
			child = e.defaultChild.digest
		}
		out["manifest "+k] = fmt.Sprint(e.digest, e.mediaType, e.isList, string(e.body), child, e.etag, e.length)
	}
	for k, b := range g.blobs {
		out["blob "+k] = fmt.Sprint(b.digest, b.size, b.since, b.subsets, b.manifest, b.retired, b.path, b.length)
	}
	for n, re := range g.repos {
		tags := map[string]string{}
		for tag, e := range re.tags {
			tags[tag] = e.digest
		}
		refs := map[string]string{}
		for subj, s := range re.referrers {
			refs[subj] = string(s.body)
		}
		out["repository "+n] = fmt.Sprint(re.published, re.tagList, tags, slices.Sorted(maps.Keys(re.manifests)),
			slices.Sorted(maps.Keys(re.blobs)), re.retiring, string(re.tagsBody), refs)
	}
	return out
}

// ownEntries checks that g's repositories answer g's own manifest and blob entries.
func ownEntries(t *testing.T, step int, g *generation) {
	t.Helper()
	for n, re := range g.repos {
		for k, e := range re.manifests {
			if g.manifests[k] != e {
				t.Fatalf("step %d: repository %s answers manifest %s with an entry not the generation's", step, n, k)
			}
		}
		for k, b := range re.blobs {
			if g.blobs[k] != b {
				t.Fatalf("step %d: repository %s answers blob %s with an entry not the generation's", step, n, k)
			}
		}
	}
	for k, e := range g.manifests {
		if e.defaultChild != nil && g.manifests[e.defaultChild.digest] != e.defaultChild {
			t.Fatalf("step %d: list %s's default child is not the generation's entry", step, k)
		}
	}
}
