package generator

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/regmirror/regmirror/internal/publish"
	"github.com/regmirror/regmirror/layout"
)

// requestsPerJob is how many small requests (tag lists, manifest HEADs and GETs, referrers)
// run concurrently per --jobs: a registry answers them slower than it streams bytes, so the
// run is bound by requests in flight, not by bandwidth.
const requestsPerJob = 4

// Failure is one tag (or referrer) that could not be published this run. A tag that failed
// keeps its previous state when the previous generation had it.
type Failure struct {
	Ref string // "repo:tag", "repo" (tag listing) or "repo@digest" (a referrer)
	Err error
}

func (f Failure) Error() string { return f.Ref + ": " + f.Err.Error() }

// PartialError is returned by Run when some tags failed; the generation was still published
// with everything else.
type PartialError struct {
	Generation uint64
	Failures   []Failure
	Published  bool
}

func (e *PartialError) Error() string {
	var b strings.Builder
	const show = 5
	for i, f := range e.Failures {
		if i == show {
			fmt.Fprintf(&b, "; and %d more (listed above)", len(e.Failures)-show)
			break
		}
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(oneLine(f.Error()))
	}
	what := "nothing published (dry run)"
	if e.Published {
		what = fmt.Sprintf("generation %d published without them, failed tags keep their previous state", e.Generation)
	}
	return fmt.Sprintf("%d failed (%s): %s", len(e.Failures), what, b.String())
}

// run is the state of one Run.
type run struct {
	// oneByOne: assemble takes the repositories taken whole one by one (takeWhole), never
	// starting from the previous generation's maps (startWhole); for the tests comparing both.
	oneByOne bool
	o        Options
	c        *client
	tree     *layout.Tree
	// prev is the tree's current generation and gen the one this run makes: set by
	// loadPrevious beside discovery, read once prevLoaded is closed (awaitPrevious); prevErr
	// is the load's failure.
	prev       *layout.Meta
	gen        uint64
	prevLoaded <-chan struct{}
	prevErr    error
	// prevCopy receives the copy of prev's records startWhole starts from (copyPrevious),
	// made beside discovery once prev is loaded; nil when none is made (set before
	// prevLoaded is closed).
	prevCopy chan *prevCopy
	// settled: the tree was as the previous generation's run left it when this one took its
	// lock (layout.Tree.Unsettle: blobs/ holding only what that generation records, nothing
	// written since), but for the files removed since its file list (removedSince); change
	// is then what the run knows the publish changes.
	settled      bool
	removedSince []string
	change       publish.Change
	// plain are the repositories of the previous generation its settled record names plain
	// (plainIn held for them when its run settled the tree): unchanged takes them without
	// looking at their records again. nil unless settled, and with Options.Verify or
	// VerifyLayers. trusted counts the repositories taken so.
	plain   map[string]bool
	trusted atomic.Int64
	// written are the blob files (tree-relative) the run committed while track, guarded by
	// mu: before the publish when the file list will take blobs/ from the previous one (the
	// change), and after its list, for the settled record.
	written []string
	track   bool
	blobDir string
	globs   []*Glob
	archive []*Glob // --archive, over "repository:tag"
	reqs    *slots  // small requests in flight
	xfers   *slots  // blob transfers in flight
	tags    *slots  // tags in flight (goTag)
	prog    *progress

	ctx    context.Context
	cancel context.CancelCauseFunc

	// Computed once per run (onceMap): manifests, uncompressed layer digests, referrer
	// listings (by repo@subject), closures.
	nodes     onceMap[layout.Digest, *node]
	diffIDs   onceMap[layout.Digest, string]
	referrers onceMap[string, []referrer]
	closures  onceMap[closureKey, *closure]

	mu        sync.Mutex
	blobs     map[layout.Digest]*blobTask // started at once, waited for later (blob)
	refFailed map[layout.Digest]bool
	// notReferrers are the (subject, referrer) listings already warned about.
	notReferrers map[subjectPair]bool
	failures     []Failure
	// strays are the files of blobs/ the previous generation does not record, listed when
	// the run starts (removeTemps); nil when not listed (a dry run).
	strays    *[]os.DirEntry
	blobsSync bool // a blob was committed: blobs/sha256 needs an fsync
	// unclean: blobs/ may hold a file the generation does not record (a transfer still
	// running for a failed tag, garbage not deleted): the run does not settle the tree.
	unclean bool
	bg      sync.WaitGroup // blob transfers; Run waits for them before returning

	refProbe     sync.Mutex
	refKnown     bool
	refSupported bool
}

// Run publishes one generation (or, with DryRun, computes the plan). It returns the summary
// even on failure when it has one. A *PartialError means the generation was published without
// the failed tags.
func Run(ctx context.Context, o Options) (*Summary, error) {
	start := time.Now()
	if err := o.setDefaults(); err != nil {
		return nil, err
	}
	base, err := parseSource(o.Source)
	if err != nil {
		return nil, err
	}
	r := &run{
		o:         o,
		reqs:      newSlots(o.Jobs * requestsPerJob),
		xfers:     newSlots(o.Jobs),
		tags:      newSlots(o.Jobs * requestsPerJob * tagsPerRequest),
		blobs:     map[layout.Digest]*blobTask{},
		refFailed: map[layout.Digest]bool{},
	}
	for _, p := range o.Repos {
		g, err := CompileGlob(p)
		if err != nil {
			return nil, err
		}
		r.globs = append(r.globs, g)
	}
	for _, p := range o.Archive {
		if !strings.Contains(p, ":") {
			return nil, fmt.Errorf("Options.Archive %q: want a repository:tag pattern, like fedora:3[0-9]", p)
		}
		g, err := CompileGlob(p)
		if err != nil {
			return nil, fmt.Errorf("Options.Archive: %w", err)
		}
		r.archive = append(r.archive, g)
	}
	if o.Out != "" {
		r.tree = layout.NewTree(o.Out)
		r.blobDir = r.tree.Path(layout.BlobDir("sha256"))
		if !o.DryRun {
			// A dry run writes nothing, not even the cache. What the load takes from a copy
			// is used until the run ends (the deferred calls below run before this one).
			defer r.tree.UsePackCache(o.CacheDir)()
			if err := layout.MkdirAllSynced(r.blobDir); err != nil {
				return nil, fmt.Errorf("creating the tree: %w", err)
			}
			release, err := r.tree.Lock(0)
			if errors.Is(err, layout.ErrLocked) {
				return nil, fmt.Errorf("%w (another regmirror generate is writing it, or a crawl is publishing): try again when it is done", err)
			}
			if err != nil {
				return nil, err
			}
			defer release()
			// Saved after the publish, still under the lock (deferred calls run last first):
			// the files this run checked or wrote, for the next run. --verify takes no vouch,
			// as it trusts no record.
			defer r.tree.UseVouches(o.CacheDir, !o.Verify)()
			// Before the first change: from here until the run's publish and garbage
			// collection are done, the tree is not as the last publish left it.
			if r.settled, r.removedSince, err = r.tree.Unsettle(); err != nil {
				return nil, err
			}
			r.track = r.settled && !o.Verify
			if r.settled && !o.Verify && !o.VerifyLayers {
				r.plain = map[string]bool{}
				for _, name := range r.tree.SettledPlain() {
					r.plain[name] = true
				}
			}
		}
	}

	r.ctx, r.cancel = context.WithCancelCause(ctx)
	defer func() {
		r.cancel(nil)
		r.bg.Wait()
	}()
	// The previous generation is read while the source is listed and HEADed: neither needs
	// the other until a repository's HEADs are in (discovery waits for it there).
	loaded := make(chan struct{})
	r.prevLoaded = loaded
	var loadTook time.Duration // read once loaded is closed
	go func() {
		defer close(loaded)
		loadStart := time.Now()
		if r.prevErr = r.loadPrevious(); r.prevErr != nil {
			r.fatal(r.prevErr)
		}
		loadTook = time.Since(loadStart)
		if r.prevErr == nil && !r.oneByOne && len(r.prev.Blobs) > 0 {
			// What startWhole copies of the previous generation, copied while the source
			// answers discovery's requests (they leave part of the two cores idle) rather
			// than after them.
			// prev, not r.prev, which release replaces: the copy may still be running then
			// when startWhole does not take it.
			prev := r.prev
			r.prevCopy = make(chan *prevCopy, 1)
			go func() { r.prevCopy <- copyPrevious(prev) }()
		}
	}()
	defer func() { <-loaded }() // before the lock is released: the load removes temporary files
	r.c, err = newClient(r.ctx, &r.o, base)
	if err != nil {
		return nil, err
	}
	defer r.c.close()
	r.prog = newProgress(o.Logger, o.Log, o.Live, o.LogInterval)
	defer r.prog.stop()

	clock := newPhaseClock(start)
	outcomes, err := r.discoverAndFetch()
	clock.done(PhaseDiscover)
	if !r.awaitPrevious() {
		return nil, r.prevErr
	}
	clock.done(PhaseAwait)
	if err != nil {
		return nil, err
	}
	if cause := context.Cause(r.ctx); cause != nil {
		return nil, interrupted(ctx, cause)
	}
	meta, st := r.assemble(outcomes)
	clock.done(PhaseAssemble)
	sum := &Summary{Generation: r.gen, DryRun: o.DryRun, Counts: st.Counts, unchanged: st.unchanged}
	if o.DryRun {
		sum.Plan = r.plan(st)
		sum.Duration = time.Since(start)
		sum.Phases = append(clock.phases, Phase{PhaseLoad, loadTook})
		r.prog.stop()
		return sum, r.partial(false)
	}
	if r.tree != nil {
		// The publish's first step, the content's diff with the live generation, runs while
		// the manifests are written and the mirror network applied.
		r.tree.StartDiff(meta)
	}
	manifests := r.manifestsToWrite(meta, st.whole)
	if r.settled && !o.Verify {
		// The tree holds the previous generation's digest markers, and no more (--verify
		// reads the tree whole instead): the publish finds their change from r.prev (which
		// the tree keeps as loaded anyway) while it writes the metadata, without comparing
		// the repositories assemble kept as they were (phase2.DiffKept).
		r.change = publish.Change{Settled: true, Prev: r.prev, Kept: st.kept}
	}
	r.release()
	deleted, err := r.write(meta, st, manifests)
	if err != nil {
		return nil, interrupted(ctx, err)
	}
	clock.done(PhasePublish)
	r.settle(deleted, meta, st)
	clock.done(PhaseSettle)
	sum.Counts = st.Counts
	sum.Duration = time.Since(start)
	sum.Phases = append(clock.phases, Phase{PhaseLoad, loadTook})
	sum.trusted = int(r.trusted.Load())
	r.prog.stop()
	return sum, r.partial(true)
}

// loadPrevious reads the tree's current generation into r.prev (an empty one for a new tree
// or no tree) and, unless in a dry run, removes the temporary files a killed run left in
// blobs/ and lists its strays. It runs beside discovery: r.prev is read only after
// r.prevLoaded is closed.
func (r *run) loadPrevious() error {
	var prev *layout.Meta
	if r.tree != nil {
		var err error
		prev, _, err = r.tree.LoadForSuccessor() // never changed: assemble builds a new Meta
		switch {
		case errors.Is(err, layout.ErrNoGeneration):
			prev = nil
		case err != nil:
			hint := "move the tree aside to start afresh"
			if mf := (*layout.MetaFileError)(nil); errors.As(err, &mf) {
				hint = mf.Hint() + ", or " + hint
			}
			return fmt.Errorf("reading the current generation of %s: %w (%s)", r.o.Out, err, hint)
		}
	}
	if prev == nil {
		prev = layout.NewMeta(0)
	}
	if prev.Orphans == nil {
		prev.Orphans = map[layout.Digest]*layout.Orphan{}
	}
	r.prev, r.gen = prev, prev.Generation+1
	if !r.o.DryRun {
		// blobs/ is listed for temporary files and strays unless the tree is settled: the
		// run that published the previous generation left there only what it records, and
		// nothing changed it since.
		strays, err := removeTemps(r.tree, r.prev, r.o.Verify || !r.settled)
		if err != nil {
			return err
		}
		r.strays = &strays
	}
	return nil
}

// awaitPrevious waits until r.prev is loaded; false when the load failed (the run is then
// cancelled: Run returns the load's error).
func (r *run) awaitPrevious() bool {
	<-r.prevLoaded
	return r.prevErr == nil
}

// settle writes the settled record (layout.Tree.Settle) once the run's writes are over: its
// blob transfers stopped, blobs/ synced, and the files changed after its file list was
// rendered (the garbage it deleted, blobs committed since) named in it, with m's plain
// repositories (plainRepos); only when blobs/ holds nothing the generation does not record:
// no tag failed (a failed tag's transfer may have left a file), no transfer was still
// running when the generation was assembled, and every expired orphan was deleted.
// Otherwise, and when the record cannot be written, the next run reads the tree whole (and
// lists blobs/ for strays).
func (r *run) settle(deleted []string, m *layout.Meta, st *stats) {
	r.cancel(nil)
	r.bg.Wait()
	r.mu.Lock()
	clean := !r.unclean && len(r.failures) == 0
	changed := slices.Concat(deleted, r.written)
	r.mu.Unlock()
	if !clean {
		return
	}
	if err := layout.SyncDir(r.blobDir); err != nil {
		r.prog.warnf("%v (the next run reads the tree whole)", err)
		return
	}
	if err := r.tree.Settle(changed, plainRepos(m, st.whole)); err != nil {
		r.prog.warnf("%v (the next run reads the tree whole)", err)
	}
}

// wrote records that the run committed the blob file of d (when tracking: written).
func (r *run) wrote(d layout.Digest) {
	r.mu.Lock()
	r.blobsSync = true
	if r.track {
		r.written = append(r.written, layout.BlobPath(d))
	}
	r.mu.Unlock()
}

// release drops what only deciding needed, before the write: the run's manifests, closures
// and blob tasks, and the previous generation's metadata but for its mirror network. The
// write (the mirror network's per-region data, the encoded metadata) is the run's peak, and
// the new metadata holds everything it needs (manifest bytes are shared, not copied).
func (r *run) release() {
	r.mu.Lock()
	r.blobs = nil
	r.mu.Unlock()
	r.nodes, r.closures, r.referrers, r.diffIDs = onceMap[layout.Digest, *node]{}, onceMap[closureKey, *closure]{}, onceMap[string, []referrer]{}, onceMap[layout.Digest, string]{}
	net := layout.NewMeta(r.prev.Generation)
	net.Mirrors, net.Origin, net.MinMirrors = r.prev.Mirrors, r.prev.Origin, r.prev.MinMirrors
	r.prev = net
}

// interrupted explains a run stopped by its caller (a signal).
func interrupted(parent context.Context, err error) error {
	if parent.Err() != nil && errors.Is(err, context.Canceled) {
		return fmt.Errorf("interrupted, nothing published: the previous generation stays current: %w", err)
	}
	return err
}

func (r *run) partial(published bool) error {
	if len(r.failures) == 0 {
		return nil
	}
	sort.Slice(r.failures, func(i, j int) bool { return r.failures[i].Ref < r.failures[j].Ref })
	return &PartialError{Generation: r.gen, Failures: r.failures, Published: published}
}

func (r *run) fail(ref string, err error) {
	r.mu.Lock()
	r.failures = append(r.failures, Failure{Ref: ref, Err: err})
	r.mu.Unlock()
	r.prog.warnf("failed: %s: %v", ref, oneLine(err.Error()))
}

// fatal stops the run (a full disk): nothing is published.
func (r *run) fatal(err error) { r.cancel(err) }

// tagsPerRequest is how many tags may be in flight (goTag) per request slot: enough that the
// requests of the tags in flight keep every slot busy.
const tagsPerRequest = 4

// goTag runs f, one tag's work, in a goroutine of wg once a tag slot (tags) is free, ranked
// (slots) by rank. The caller waits for the slot, not a goroutine:
// a goroutine per tag (and the goroutines of its manifests and blobs) waiting for a request
// slot held a stack each, hundreds of MiB at scale. A cancelled run starts no more: what it
// would do is left undone, as cancelling does.
func (r *run) goTag(wg *sync.WaitGroup, rank int, f func()) {
	if r.tags.take(r.ctx, rank) != nil {
		return
	}
	wg.Go(func() {
		defer r.tags.give()
		f()
	})
}

// outcome is what one tag (or repository) ended as.
type outcome struct {
	repo, tag string
	cl        *closure // nil: not published, unless reused
	// reused is the previous generation's record of the repository, taken whole (unchanged):
	// the tag resolved to digest, as before.
	reused *layout.Repository
	digest layout.Digest
	// removed: gone from the source, kept (--keep-removed) since then.
	removed   bool
	removedAt time.Time
}

// discoverAndFetch lists repositories and tags and processes every tag; it returns one
// outcome per published tag.
func (r *run) discoverAndFetch() ([]outcome, error) {
	repos, err := r.listRepos(r.ctx)
	if err != nil {
		return nil, err
	}
	// The outcomes are gathered a repository's batch at a time and copied once into a slice
	// of their number: tens of thousands of them, grown append by append, would be copied
	// about as often again, into fresh memory each time.
	var (
		mu      sync.Mutex
		batches [][]outcome
		total   int
		wg      sync.WaitGroup
	)
	add := func(o ...outcome) {
		mu.Lock()
		batches = append(batches, o)
		total += len(o)
		mu.Unlock()
	}
	if r.o.KeepRemoved { // repositories gone from the catalog keep their tags
		if !r.awaitPrevious() {
			return nil, context.Cause(r.ctx)
		}
		listed := map[string]bool{}
		for _, repo := range repos {
			listed[repo] = true
		}
		for name := range r.prev.Repositories {
			if !listed[name] && matchAny(r.globs, name) {
				add(r.keepRemoved(name, nil)...)
			}
		}
	}
	for i, repo := range repos {
		wg.Go(func() {
			tags, err := r.listTags(r.ctx, repo, beginning(i))
			if err != nil {
				if r.ctx.Err() != nil {
					return
				}
				r.fail(repo, fmt.Errorf("listing tags at %s: %w", r.c.base, err))
				// Keep the repository as it was.
				if !r.awaitPrevious() {
					return
				}
				if pr := r.prev.Repositories[repo]; pr != nil {
					for tag := range pr.Tags {
						if cl := r.fallback(repo, tag); cl != nil {
							add(outcome{repo: repo, tag: tag, cl: cl})
						}
					}
				}
				return
			}
			r.prog.tagsTotal.Add(int64(len(tags)))
			heads := r.resolveAll(repo, tags, beginning(i))
			if r.ctx.Err() != nil || !r.awaitPrevious() {
				return
			}
			if pr := r.unchanged(repo, tags, heads); pr != nil {
				batch := make([]outcome, len(tags))
				for i, tag := range tags {
					batch[i] = outcome{repo: repo, tag: tag, digest: heads[i].d, reused: pr}
				}
				add(batch...)
				r.prog.tagsDone.Add(int64(len(tags)))
				return
			}
			var twg sync.WaitGroup
			for i, tag := range tags {
				r.goTag(&twg, finishing, func() {
					defer r.prog.tagsDone.Add(1)
					cl, err := r.processTag(r.ctx, repo, tag, heads[i])
					if r.ctx.Err() != nil {
						return
					}
					switch {
					case errors.Is(err, errSkip):
					case err != nil:
						r.fail(repo+":"+tag, err)
						if cl := r.fallback(repo, tag); cl != nil {
							add(outcome{repo: repo, tag: tag, cl: cl})
						}
					default:
						add(outcome{repo: repo, tag: tag, cl: cl})
					}
				})
			}
			twg.Wait()
			if r.o.KeepRemoved {
				add(r.keepRemoved(repo, tags)...)
			}
		})
	}
	wg.Wait()
	outs := make([]outcome, 0, total)
	for _, b := range batches {
		outs = append(outs, b...)
	}
	return outs, nil
}

// keepRemoved returns the outcomes of repo's previous tags that listed (the source's tags)
// lacks, kept from their previous state (--keep-removed), unless gone for longer than
// --archive-max-age.
func (r *run) keepRemoved(repo string, listed []string) []outcome {
	pr := r.prev.Repositories[repo]
	if pr == nil {
		return nil
	}
	have := make(map[string]bool, len(listed))
	for _, t := range listed {
		have[t] = true
	}
	now := r.o.Now().UTC()
	var outs []outcome
	for tag := range pr.Tags {
		if have[tag] {
			continue
		}
		at, ok := pr.Removed[tag]
		if !ok {
			at = now
		}
		if r.o.ArchiveMaxAge > 0 && now.Sub(at) > r.o.ArchiveMaxAge {
			r.prog.warnf("%s:%s: removed from the source on %s, older than Options.ArchiveMaxAge %s: removed", repo, tag, at.Format(time.RFC3339), r.o.ArchiveMaxAge)
			continue
		}
		if cl := r.fallback(repo, tag); cl != nil {
			outs = append(outs, outcome{repo: repo, tag: tag, cl: cl, removed: true, removedAt: at})
		}
	}
	return outs
}

// errSkip marks a tag that is deliberately not published (schema 1, vanished).
var errSkip = errors.New("skipped")

// head is what resolving a tag gave.
type head struct {
	d   layout.Digest
	pre *prefetched
	err error
}

// resolveAll resolves repo's tags, one HEAD each, concurrently (whether the previous
// generation has repo, which unchanged may then reuse, is not known yet: it is read
// meanwhile).
func (r *run) resolveAll(repo string, tags []string, rank int) []*head {
	heads := make([]*head, len(tags))
	var wg sync.WaitGroup
	if r.c.pipe != nil && len(tags) > 1 {
		for lo := 0; lo < len(tags); lo += PipelineDepth {
			batch := tags[lo:min(lo+PipelineDepth, len(tags))]
			r.goTag(&wg, rank, func() { r.resolvePipelined(repo, batch, heads[lo:lo+len(batch)], rank) })
		}
		wg.Wait()
		return heads
	}
	for i, tag := range tags {
		r.goTag(&wg, rank, func() {
			d, pre, err := r.resolve(r.ctx, repo, tag, rank)
			heads[i] = &head{d, pre, err}
		})
	}
	wg.Wait()
	return heads
}

// resolvePipelined resolves a batch of repo's tags into heads with one request slot and
// pipelined HEADs (pipeline); those whose answer resolve would not take as it is, it resolves.
func (r *run) resolvePipelined(repo string, tags []string, heads []*head, rank int) {
	var answers []headAnswer
	if r.reqs.take(r.ctx, rank) == nil {
		paths := make([]string, len(tags))
		for i, tag := range tags {
			paths[i] = "/v2/" + repo + "/manifests/" + tag
		}
		answers = r.c.pipe.heads(r.ctx, paths)
		r.reqs.give()
		if r.c.pipe.turnedOff() {
			r.prog.warnf("%s did not answer pipelined HEADs within the stall timeout (%v): tags are HEADed one request at a time from here on", r.c.base, r.o.StallTimeout)
		}
	}
	for i, tag := range tags {
		if i < len(answers) {
			if d, ok := pipelinedDigest(answers[i]); ok {
				heads[i] = &head{d: d}
				continue
			}
		}
		d, pre, err := r.resolve(r.ctx, repo, tag, rank)
		heads[i] = &head{d, pre, err}
	}
}

// processTag collects the closure of a tag resolved to h.
func (r *run) processTag(ctx context.Context, repo, tag string, h *head) (*closure, error) {
	d, pre, err := h.d, h.pre, h.err
	if err != nil {
		if statusOf(err) == http.StatusNotFound {
			r.prog.warnf("%s:%s: listed but gone from the source, not published", repo, tag)
			return nil, errSkip
		}
		return nil, err
	}
	root := r.node(ctx, repo, d, pre, 0)
	if errors.Is(root.err, errSchema1) {
		r.prog.warnf("%s:%s: Docker schema 1 manifest, skipped (a deprecated format the tree does not carry; repush it as schema 2 or OCI)", repo, tag)
		return nil, errSkip
	}
	return r.closureOf(ctx, repo, d, 0, false)
}

// fallback rebuilds a tag's previous state from the previous metadata (no request, unless a
// blob is missing from disk). nil when there was none or it cannot be rebuilt.
func (r *run) fallback(repo, tag string) *closure {
	pr := r.prev.Repositories[repo]
	if pr == nil {
		return nil
	}
	d, ok := pr.Tags[tag]
	if !ok {
		return nil
	}
	if _, ok := r.prev.Manifests[d]; !ok {
		return nil
	}
	cl, err := r.closureOf(r.ctx, repo, d, 0, true)
	if err != nil {
		if r.ctx.Err() == nil {
			r.prog.warnf("%s:%s: previous state lost too: %v", repo, tag, oneLine(err.Error()))
		}
		return nil
	}
	return cl
}

// removeTemps deletes leftovers of interrupted writes in the tree's directories, blobs/ only
// when listBlobs. It returns the files of blobs/ that prev records neither as blobs nor as
// orphans (left by a failed run): listing the directory once serves both.
func removeTemps(t *layout.Tree, prev *layout.Meta, listBlobs bool) ([]os.DirEntry, error) {
	var strays []os.DirEntry
	for _, dir := range []string{"", layout.BlobDir("sha256"), layout.MetaDir, layout.MetaFilesDir} {
		if dir == layout.BlobDir("sha256") && !listBlobs {
			continue
		}
		ents, err := readDirUnsorted(t.Path(dir))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("cleaning temporary files: %w", err)
		}
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), layout.TempPrefix) && e.Type().IsRegular() {
				if err := os.Remove(t.Path(dir + "/" + e.Name())); err != nil && !errors.Is(err, os.ErrNotExist) {
					return nil, fmt.Errorf("cleaning temporary files: %w", err)
				}
				continue
			}
			if dir == layout.BlobDir("sha256") && isStray(prev, e) {
				strays = append(strays, e)
			}
		}
	}
	return strays, nil
}

// readDirUnsorted is os.ReadDir without the sort (blobs/ holds a file per blob).
func readDirUnsorted(dir string) ([]os.DirEntry, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return f.ReadDir(-1)
}

// isStray reports whether e, an entry of blobs/sha256, is a blob file prev records neither
// as a blob nor as an orphan.
func isStray(prev *layout.Meta, e os.DirEntry) bool {
	d, err := layout.ParseDigest("sha256:" + e.Name())
	if err != nil || !e.Type().IsRegular() {
		return false
	}
	if _, ok := prev.Blobs[d]; ok {
		return false
	}
	_, ok := prev.Orphans[d]
	return !ok
}
