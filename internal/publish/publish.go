// Package publish is what generate and crawl run to publish a generation's metadata: one
// sequence for both, so a crawl's publication carries exactly what a generate's does.
package publish

import (
	"fmt"
	"slices"
	"strings"

	"golang.org/x/sync/errgroup"

	"github.com/regmirror/regmirror/internal/filelist"
	"github.com/regmirror/regmirror/internal/phase2"
	"github.com/regmirror/regmirror/layout"
)

// Change is what a publish's caller knows of how the tree changed since the publication it
// is settled at. The zero Change knows nothing: the tree is read.
type Change struct {
	// Settled: the tree is settled at the live publication (layout.Tree.Unsettle reported
	// true), and the fields below are every change since. Then neither the digest markers'
	// change nor the file list reads regmirror/v2 or blobs/sha256.
	Settled bool
	// Phase2 is the change of the phase-2 files (digest markers, tag files, refs.map) from
	// those of the settled publication's metadata to meta's (phase2.Diff; none for a crawl,
	// which changes no content): only it is written, the rest reused from the live
	// publication.
	Phase2 phase2.Change
	// Prev, when not nil, is the settled publication's metadata, and Phase2 is Publish's to
	// find (phase2.Diff of Prev and meta), while the metadata is written: a walk of every
	// repository the caller need not wait for. Prev is only read.
	Prev *layout.Meta
	// Kept are the repositories meta kept from Prev as they were (phase2.DiffKept's kept),
	// which the change is found without comparing; nil: every repository is compared.
	Kept map[string]bool
	// Changed are the paths (tree-relative) created, replaced or removed since the settled
	// publication's file list was rendered: what Unsettle reported (the garbage collection
	// after that publish, and the shared entries it changed after its list, each with what
	// lies below it: layout.Tree.SharedChanged) and the blobs written since. Files of
	// blobs/sha256 and paths under layout.SharedDir, which the file list reads again, the
	// rest of those directories taken from the live publication's list.
	Changed []string
}

// Publish publishes meta in tree, whose lock the caller holds: the shared phase-2 digest
// markers brought in line with it and its tag files stored (the publication's Prepare, which
// runs while its metadata is written and its files rendered), then a publication
// (layout.Tree.PublishWith: the stamp, index.json, the phase-2 tag files, the per-subset
// rsync filter files and the quick-fedora-mirror file list, switched live in one rename).
// Everything meta references (blobs, manifests) must already be in the tree. What the caller
// knows of the tree's change (ch) spares reading the tree whole.
func Publish(tree *layout.Tree, meta *layout.Meta, ch Change) (layout.Stamp, error) {
	var markers *phase2.Change
	if ch.Settled {
		markers = &ch.Phase2 // with ch.Prev, found by Prepare, before anything reads it
	}
	var reuse []filelist.Reuse
	if ch.Settled {
		// The digest markers, the blobs and the shared entries are as the live publication's
		// list has them, but for the change: the shared entries changed since it (ch) and by
		// this publish before its list is rendered (the tree's SharedChanged then), each read
		// again with what lies below it.
		var blobs, shared []string
		for _, rel := range ch.Changed {
			if rel == layout.SharedDir || strings.HasPrefix(rel, layout.SharedDir+"/") {
				shared = append(shared, rel)
			} else {
				blobs = append(blobs, rel)
			}
		}
		reuse = []filelist.Reuse{
			{Dir: phase2.Dir, Later: func() []string { return slices.Concat(markers.Add, markers.Remove) }},
			{Dir: layout.BlobDir("sha256"), Changed: blobs},
			{Dir: layout.SharedDir, Changed: shared, Whole: true, Later: tree.SharedChanged},
		}
	}
	finish, startList, err := filelist.Finish(tree, filelist.DefaultModule, reuse)
	if err != nil {
		return layout.Stamp{}, err
	}
	return tree.PublishWith(meta, layout.Publication{
		SubsetFilters: true,
		Prepare: func() (map[string]string, []string, error) {
			if ch.Settled && ch.Prev != nil {
				*markers = phase2.DiffKept(ch.Prev, meta, ch.Kept)
			}
			// The digest markers (regmirror/v2/) and the tag files (regmirror/shared/) are
			// apart and wait mostly for the file system: written side by side, both done
			// and durable before the publication that needs them is.
			var v2 string
			var uses []string
			var g errgroup.Group
			g.Go(func() error {
				return phase2.Write(tree, meta, markers)
			})
			g.Go(func() (err error) {
				v2, uses, err = phase2.WriteTags(tree, meta, markers)
				return err
			})
			if err := g.Wait(); err != nil {
				return nil, nil, fmt.Errorf("writing the phase-2 files: %w", err)
			}
			return map[string]string{phase2.PubDir: v2}, uses, nil
		},
		RootLinks: []string{filelist.Name(filelist.DefaultModule)},
		Finish:    finish,
		Rendered:  startList,
	})
}
