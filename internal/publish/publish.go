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

// Change is what a publish's caller knows of how the tree changes from the publication it is
// settled at (layout.Tree.Unsettle reported true) to meta. The zero Change knows nothing: the
// tree is read.
type Change struct {
	// Phase2, when not nil, is the change of the phase-2 digest markers from those of the
	// settled publication's metadata to meta's (phase2.Diff; empty for a crawl, which changes
	// no content).
	Phase2 *phase2.Change
}

// Publish publishes meta in tree, whose lock the caller holds: the shared phase-2 digest
// markers brought in line with it and its tag files stored, then a publication
// (layout.Tree.PublishWith: the stamp, index.json, the phase-2 tag files, the per-subset
// rsync filter files and the quick-fedora-mirror file list, switched live in one rename).
// Everything meta references (blobs, manifests) must already be in the tree. What the caller
// knows of the tree's change (ch) spares reading the tree whole: with ch.Phase2, neither the
// markers' change nor the file list reads regmirror/v2.
func Publish(tree *layout.Tree, meta *layout.Meta, ch Change) (layout.Stamp, error) {
	if err := phase2.Write(tree, meta, ch.Phase2); err != nil {
		return layout.Stamp{}, fmt.Errorf("writing the phase-2 files: %w", err)
	}
	v2, uses, err := phase2.WriteTags(tree, meta)
	if err != nil {
		return layout.Stamp{}, fmt.Errorf("writing the phase-2 files: %w", err)
	}
	var reuse *filelist.Reuse
	if ch.Phase2 != nil {
		// The digest markers are as the live publication's list has them, but for the change.
		reuse = &filelist.Reuse{Dir: phase2.Dir, Changed: slices.Concat(ch.Phase2.Add, ch.Phase2.Remove)}
	}
	finish, err := filelist.Finish(tree, filelist.DefaultModule, reuse)
	if err != nil {
		return layout.Stamp{}, err
	}
	return tree.PublishWith(meta, layout.Publication{
		Shared:    meta.SubsetFilters(),
		Links:     map[string]string{phase2.PubDir: v2},
		Uses:      uses,
		RootLinks: []string{filelist.Name(filelist.DefaultModule)},
		Finish:    finish,
	})
}
