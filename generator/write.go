package generator

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"slices"

	"golang.org/x/sync/errgroup"

	"github.com/regmirror/regmirror/internal/mirrors"
	"github.com/regmirror/regmirror/internal/publish"
	"github.com/regmirror/regmirror/layout"
)

// write lands the generation: blobs are already committed; then their directory fsync,
// manifests, oci-layout, the publication (publish.Publish), then garbage collection. It
// returns the blob files the garbage collection deleted (tree-relative).
func (r *run) write(m *layout.Meta, st *stats, manifests []layout.Digest) ([]string, error) {
	ctx := r.ctx
	if r.blobsSync {
		if err := layout.SyncDir(r.blobDir); err != nil {
			return nil, fmt.Errorf("writing blobs: %w", err)
		}
	}
	n, err := r.writeManifests(ctx, m, manifests)
	if err != nil {
		return nil, err
	}
	st.ManifestsWritten = n
	if err := writeIfChanged(r.tree.Path(layout.OCILayoutFile), []byte(layout.OCILayoutContent)); err != nil {
		return nil, fmt.Errorf("writing oci-layout: %w", err)
	}
	if err := r.applyMirrors(ctx, m); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, context.Cause(ctx)
	}
	// The paths changed since the previous file list: the record's (the garbage deleted after
	// its publish, the shared entries changed after its list), the blobs this run wrote. Those written from here on, the file list may not know of:
	// the settled record names them.
	r.mu.Lock()
	if r.change.Settled {
		r.change.Changed = slices.Concat(r.removedSince, r.written)
	}
	r.written, r.track = nil, true
	r.mu.Unlock()
	// The metadata, then the publication (stamp, index.json, phase-2 tag files, file list),
	// switched live in one step.
	if _, err := publish.Publish(r.tree, m, r.change); err != nil {
		return nil, fmt.Errorf("publishing generation %d: %w", m.Generation, err)
	}
	// Garbage: after the switch, so that no published generation loses a file.
	var deleted []string
	for _, d := range st.expired {
		if err := os.Remove(r.blobPath(d)); err != nil && !errors.Is(err, os.ErrNotExist) {
			r.prog.warnf("deleting unreferenced blob %s: %v", d, err)
			r.mu.Lock()
			r.unclean = true
			r.mu.Unlock()
			continue
		}
		deleted = append(deleted, layout.BlobPath(d))
	}
	if len(deleted) > 0 {
		if err := layout.SyncDir(r.blobDir); err != nil {
			r.prog.warnf("%v", err)
		}
	}
	return deleted, nil
}

// writeManifests writes the manifests of m that blobs/ lacks (manifestsToWrite),
// concurrently, then fsyncs the directory. It returns how many it wrote.
func (r *run) writeManifests(ctx context.Context, m *layout.Meta, jobs []layout.Digest) (int, error) {
	if len(jobs) == 0 {
		return 0, nil
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(r.o.Jobs * requestsPerJob)
	for _, d := range jobs {
		if gctx.Err() != nil {
			break
		}
		g.Go(func() error {
			if err := r.writeBlob(d, m.Manifests[d].Data); err != nil {
				return fmt.Errorf("writing manifest %s: %w", d, err)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return 0, err
	}
	if err := ctx.Err(); err != nil {
		return 0, context.Cause(ctx)
	}
	if err := layout.SyncDir(r.blobDir); err != nil {
		return 0, fmt.Errorf("writing manifests: %w", err)
	}
	return len(jobs), nil
}

// writeBlob writes a manifest's bytes as blob d, checked against d before they land.
func (r *run) writeBlob(d layout.Digest, data []byte) error {
	f, err := r.o.CreateFile(r.blobPath(d))
	if err != nil {
		return err
	}
	if err := layout.WriteBlob(f, d, data); err != nil {
		return err
	}
	r.wrote(d)
	return nil
}

// writeIfChanged replaces path atomically unless it already holds data.
func writeIfChanged(path string, data []byte) error {
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, data) {
		return nil
	}
	return layout.WriteFile(path, data)
}

// applyMirrors records the mirror network in m with its per-region data: from --mirrors when
// given, else the previous generation's network (its mirrors keep their crawl state; per blob,
// a mirror is offered only the blobs of the generation it holds, so new blobs go to the
// origin until a crawl finds them on mirrors).
func (r *run) applyMirrors(ctx context.Context, m *layout.Meta) error {
	prev := r.prev
	if prev.Generation == 0 {
		prev = nil
	}
	if r.o.MirrorsFile != "" {
		src := mirrors.Source{Path: r.o.MirrorsFile, MMDirectory: r.o.MMDirectory, MinMirrors: r.o.MinMirrors}
		if err := mirrors.ApplyFile(ctx, src, prev, m); err != nil {
			return fmt.Errorf("applying Options.MirrorsFile %s: %w", r.o.MirrorsFile, err)
		}
		return nil
	}
	if prev == nil || len(prev.Mirrors) == 0 {
		return nil
	}
	m.Mirrors, m.Origin, m.MinMirrors = prev.Mirrors, prev.Origin, prev.MinMirrors
	if r.o.MinMirrors > 0 {
		m.MinMirrors = r.o.MinMirrors
	}
	if _, err := mirrors.Precompute(m); err != nil {
		return fmt.Errorf("recomputing the regions of the previous mirror network: %w", err)
	}
	return nil
}
