package redirector

import (
	"fmt"
	"maps"
	"sync"
	"time"

	"github.com/regmirror/regmirror/layout"
)

// updateContent builds g's manifests, blobs and repositories as loadContent would, from prev's,
// built from the content change is against: only the records change names are looked at, and
// the repositories holding an entry that changed, so that a switch after a small promotion
// costs copies of prev's indexes and the change, not a look at every record; one that changed
// no content (a crawl) shares prev's indexes.
func (g *generation) updateContent(m *layout.Meta, prev *generation, change *layout.ContentChange) error {
	if len(change.Manifests)+len(change.Blobs)+len(change.Repositories) == 0 {
		// The same content (a crawl's generation): prev's indexes, which no one changes.
		g.manifests, g.blobs, g.retired, g.repos, g.repoSrc = prev.manifests, prev.blobs, prev.retired, prev.repos, prev.repoSrc
		return nil
	}
	// The blobs' index copied beside the manifests' work: at a million manifests each copy
	// takes most of a second.
	var blobs map[string]*blobEntry
	var wg sync.WaitGroup
	wg.Go(func() { blobs = maps.Clone(prev.blobs) })
	manifests, gone, err := updateManifests(m, prev.manifests, change.Manifests)
	wg.Wait()
	if err != nil {
		return err
	}
	g.manifests = manifests
	// A blob's entry records whether it is a manifest: a manifest named is looked at as a blob.
	retired := maps.Clone(prev.retired)
	seen := make(map[layout.Digest]bool, len(change.Blobs)+len(change.Manifests))
	for _, d := range append(change.Blobs[:len(change.Blobs):len(change.Blobs)], change.Manifests...) {
		if seen[d] {
			continue
		}
		seen[d] = true
		key := d.String()
		old := prev.blobs[key]
		delete(retired, key)
		b, ok := m.Blobs[d]
		if !ok {
			if old != nil {
				delete(blobs, key)
				gone[key] = true
			}
			continue
		}
		_, manifest := m.Manifests[d]
		be, err := blobEntryOf(d, b, manifest, old)
		if err != nil {
			return err
		}
		blobs[key] = be
		if be != old && old != nil {
			gone[key] = true
		}
		if be.retired {
			if retired == nil {
				retired = map[string]time.Time{}
			}
			retired[key] = b.Retired
		}
	}
	if len(retired) == 0 {
		retired = nil
	}
	g.blobs, g.retired = blobs, retired

	// The repositories named, and those holding an entry that is not this generation's.
	rebuild := make(map[string]bool, len(change.Repositories))
	for _, name := range change.Repositories {
		rebuild[name] = true
	}
	if len(gone) > 0 {
		for name, re := range prev.repos {
			if !rebuild[name] && re.holdsAny(gone) {
				rebuild[name] = true
			}
		}
	}
	g.repos, g.repoSrc = maps.Clone(prev.repos), maps.Clone(prev.repoSrc)
	if g.repos == nil {
		g.repos, g.repoSrc = map[string]*repoEntry{}, map[string]*layout.Repository{}
	}
	for name := range rebuild {
		r, ok := m.Repositories[name]
		if !ok {
			delete(g.repos, name)
			delete(g.repoSrc, name)
			continue
		}
		re := prev.repos[name]
		if re == nil || !re.unchanged(r, prev.repoSrc[name], manifests, blobs) {
			if re, err = loadRepository(name, r, manifests, blobs); err != nil {
				return err
			}
		}
		g.repos[name] = re
		g.repoSrc[name] = r
	}
	return nil
}

// updateManifests is loadManifests for the manifests named (keys), on a copy of prev (the
// entries of the content before): it also returns the digests whose entry in prev is not
// the new generation's (dropped or rebuilt).
func updateManifests(m *layout.Meta, prev map[string]*manifestEntry, keys []layout.Digest) (map[string]*manifestEntry, map[string]bool, error) {
	manifests := maps.Clone(prev)
	if manifests == nil {
		manifests = map[string]*manifestEntry{}
	}
	gone := map[string]bool{}
	var lists []*manifestEntry // new entries of lists, to learn their default child
	for _, d := range keys {
		key := d.String()
		old := prev[key]
		mf, ok := m.Manifests[d]
		if !ok {
			if old != nil {
				delete(manifests, key)
				gone[key] = true
			}
			continue
		}
		if mf == nil {
			return nil, nil, fmt.Errorf("manifest %s has no data", d)
		}
		if reuses(old, mf) {
			continue
		}
		e, err := newManifestEntry(d, mf.MediaType, mf.Data)
		if err != nil {
			return nil, nil, err
		}
		manifests[key] = e
		if old != nil {
			gone[key] = true
		}
		if e.isList {
			lists = append(lists, e)
		}
	}
	// A list whose default child's entry is gone is built anew (as loadManifests does); it is
	// gone then too.
	if len(gone) > 0 {
		for key, e := range manifests {
			if e.isList && prev[key] == e && e.defaultChild != nil && gone[e.defaultChild.digest] {
				ne := *e
				manifests[key] = &ne
				lists = append(lists, &ne)
				gone[key] = true
			}
		}
	}
	for _, e := range lists {
		e.defaultChild = findDefaultChild(e.body, manifests)
	}
	return manifests, gone, nil
}

// holdsAny reports whether re answers one of the digests in keys (a manifest or a blob).
func (re *repoEntry) holdsAny(keys map[string]bool) bool {
	for k := range keys {
		if _, ok := re.manifests[k]; ok {
			return true
		}
		if _, ok := re.blobs[k]; ok {
			return true
		}
	}
	return false
}
