// Package publish is what generate and crawl run to publish a generation's metadata: one
// sequence for both, so a crawl's publication carries exactly what a generate's does.
package publish

import (
	"fmt"
	"slices"

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
	// Blobs are the files of blobs/sha256 (tree-relative) created, replaced or removed since
	// the settled publication's file list was rendered: the garbage collection after that
	// publish (Unsettle's removed files) and the blobs written since.
	Blobs []string
}

// Publish publishes meta in tree, whose lock the caller holds: the shared phase-2 digest
// markers brought in line with it and its tag files stored, then a publication
// (layout.Tree.PublishWith: the stamp, index.json, the phase-2 tag files, the per-subset
// rsync filter files and the quick-fedora-mirror file list, switched live in one rename).
// Everything meta references (blobs, manifests) must already be in the tree. What the caller
// knows of the tree's change (ch) spares reading the tree whole.
func Publish(tree *layout.Tree, meta *layout.Meta, ch Change) (layout.Stamp, error) {
	var markers *phase2.Change
	if ch.Settled {
		markers = &ch.Phase2
	}
	if err := phase2.Write(tree, meta, markers); err != nil {
		return layout.Stamp{}, fmt.Errorf("writing the phase-2 files: %w", err)
	}
	v2, uses, err := phase2.WriteTags(tree, meta, markers)
	if err != nil {
		return layout.Stamp{}, fmt.Errorf("writing the phase-2 files: %w", err)
	}
	var reuse []filelist.Reuse
	if ch.Settled {
		// The digest markers and the blobs are as the live publication's list has them, but
		// for the change.
		reuse = []filelist.Reuse{
			{Dir: phase2.Dir, Changed: slices.Concat(ch.Phase2.Add, ch.Phase2.Remove)},
			{Dir: layout.BlobDir("sha256"), Changed: ch.Blobs},
		}
	}
	finish, err := filelist.Finish(tree, filelist.DefaultModule, reuse)
	if err != nil {
		return layout.Stamp{}, err
	}
	return tree.PublishWith(meta, layout.Publication{
		SubsetFilters: true,
		Links:         map[string]string{phase2.PubDir: v2},
		Uses:          uses,
		RootLinks:     []string{filelist.Name(filelist.DefaultModule)},
		Finish:        finish,
	})
}
