package generator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

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
	o       Options
	c       *client
	tree    *layout.Tree
	prev    *layout.Meta
	gen     uint64
	blobDir string
	globs   []*Glob
	archive []*Glob // --archive, over "repository:tag"
	reqSem  chan struct{}
	xferSem chan struct{}
	prog    *progress

	ctx    context.Context
	cancel context.CancelCauseFunc

	mu        sync.Mutex
	nodes     map[layout.Digest]*node
	blobs     map[layout.Digest]*blobTask
	diffIDs   map[layout.Digest]*diffTask
	referrers map[string]*refTask
	closures  map[closureKey]*closureTask
	refFailed map[layout.Digest]bool
	// notReferrers are the (subject, referrer) listings already warned about.
	notReferrers map[subjectPair]bool
	failures     []Failure
	blobsSync    bool           // a blob was committed: blobs/sha256 needs an fsync
	bg           sync.WaitGroup // blob transfers; Run waits for them before returning

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
		reqSem:    make(chan struct{}, o.Jobs*requestsPerJob),
		xferSem:   make(chan struct{}, o.Jobs),
		nodes:     map[layout.Digest]*node{},
		blobs:     map[layout.Digest]*blobTask{},
		diffIDs:   map[layout.Digest]*diffTask{},
		referrers: map[string]*refTask{},
		closures:  map[closureKey]*closureTask{},
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
			return nil, fmt.Errorf("--archive %q: want a repository:tag pattern, like fedora:3[0-9]", p)
		}
		g, err := CompileGlob(p)
		if err != nil {
			return nil, fmt.Errorf("--archive: %w", err)
		}
		r.archive = append(r.archive, g)
	}
	if o.Out != "" {
		r.tree = layout.NewTree(o.Out)
		r.blobDir = r.tree.Path(layout.BlobDir("sha256"))
		if !o.DryRun {
			if err := os.MkdirAll(r.blobDir, 0o755); err != nil {
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
		}
		prev, _, err := r.tree.Load()
		switch {
		case errors.Is(err, layout.ErrNoGeneration):
			prev = nil
		case err != nil:
			return nil, fmt.Errorf("reading the current generation of %s: %w (move the tree aside to start afresh)", o.Out, err)
		}
		r.prev = prev
	}
	if r.prev == nil {
		r.prev = layout.NewMeta(0)
	}
	if r.prev.Orphans == nil {
		r.prev.Orphans = map[layout.Digest]*layout.Orphan{}
	}
	r.gen = r.prev.Generation + 1
	if !o.DryRun {
		if err := removeTemps(r.tree); err != nil {
			return nil, err
		}
	}

	r.ctx, r.cancel = context.WithCancelCause(ctx)
	defer func() {
		r.cancel(nil)
		r.bg.Wait()
	}()
	r.c, err = newClient(r.ctx, &r.o, base)
	if err != nil {
		return nil, err
	}
	r.prog = newProgress(o.Logger, o.Log, o.Live, o.LogInterval)
	defer r.prog.stop()

	outcomes, err := r.discoverAndFetch()
	if err != nil {
		return nil, err
	}
	if cause := context.Cause(r.ctx); cause != nil {
		return nil, interrupted(ctx, cause)
	}
	meta, st := r.assemble(outcomes)
	sum := &Summary{Generation: r.gen, DryRun: o.DryRun, Counts: st.Counts}
	if o.DryRun {
		sum.Plan = r.plan(st)
		sum.Duration = time.Since(start)
		r.prog.stop()
		return sum, r.partial(false)
	}
	if err := r.write(meta, st); err != nil {
		return nil, interrupted(ctx, err)
	}
	sum.Counts = st.Counts
	sum.Duration = time.Since(start)
	r.prog.stop()
	return sum, r.partial(true)
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

// acquire takes a slot of sem, or fails when the run is cancelled.
func (r *run) acquire(ctx context.Context, sem chan struct{}) error {
	select {
	case sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// outcome is what one tag (or repository) ended as.
type outcome struct {
	repo, tag string
	cl        *closure // nil: not published
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
	var (
		mu   sync.Mutex
		outs []outcome
		wg   sync.WaitGroup
	)
	add := func(o outcome) {
		mu.Lock()
		outs = append(outs, o)
		mu.Unlock()
	}
	if r.o.KeepRemoved { // repositories gone from the catalog keep their tags
		listed := map[string]bool{}
		for _, repo := range repos {
			listed[repo] = true
		}
		for name := range r.prev.Repositories {
			if !listed[name] && matchAny(r.globs, name) {
				for _, o := range r.keepRemoved(name, nil) {
					add(o)
				}
			}
		}
	}
	for _, repo := range repos {
		wg.Go(func() {
			tags, err := r.listTags(r.ctx, repo)
			if err != nil {
				if r.ctx.Err() != nil {
					return
				}
				r.fail(repo, fmt.Errorf("listing tags at %s: %w", r.c.base, err))
				// Keep the repository as it was.
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
			var twg sync.WaitGroup
			for _, tag := range tags {
				twg.Go(func() {
					defer r.prog.tagsDone.Add(1)
					cl, err := r.processTag(r.ctx, repo, tag)
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
				for _, o := range r.keepRemoved(repo, tags) {
					add(o)
				}
			}
		})
	}
	wg.Wait()
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
			r.prog.warnf("%s:%s: removed from the source on %s, older than --archive-max-age %s: removed", repo, tag, at.Format(time.RFC3339), r.o.ArchiveMaxAge)
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

// processTag resolves a tag with one HEAD and collects its closure.
func (r *run) processTag(ctx context.Context, repo, tag string) (*closure, error) {
	d, pre, err := r.resolve(ctx, repo, tag)
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

// resolve HEADs a tag. When the source sends no Docker-Content-Digest it GETs the manifest
// instead and returns its bytes.
func (r *run) resolve(ctx context.Context, repo, tag string) (layout.Digest, *prefetched, error) {
	if err := r.acquire(ctx, r.reqSem); err != nil {
		return layout.Digest{}, nil, err
	}
	defer func() { <-r.reqSem }()
	path := "/v2/" + repo + "/manifests/" + tag
	var (
		d   layout.Digest
		pre *prefetched
	)
	err := r.c.retry(ctx, "HEAD "+path, func() error {
		resp, err := r.c.getOK(ctx, http.MethodHead, path, manifestAccept)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.ContentLength > MaxManifestSize {
			return fmt.Errorf("manifest is %d bytes, over the %d-byte limit", resp.ContentLength, MaxManifestSize)
		}
		if h := resp.Header.Get("Docker-Content-Digest"); h != "" {
			d, err = layout.ParseDigest(h)
			if err != nil {
				return fmt.Errorf("HEAD %s: Docker-Content-Digest: %w", path, err)
			}
			return nil
		}
		// No digest header: fetch by tag and hash.
		data, mt, err := r.fetchManifest(ctx, path, layout.Digest{})
		if err != nil {
			return err
		}
		d = layout.DigestOf("sha256", data)
		pre = &prefetched{data: data, mediaType: mt}
		return nil
	})
	return d, pre, err
}

type prefetched struct {
	data      []byte
	mediaType string
}

var errSchema1 = errors.New("docker schema 1 manifest")

// node is a manifest, fetched once per run whatever repositories reference it.
type node struct {
	done      chan struct{}
	digest    layout.Digest
	mediaType string
	data      []byte
	p         *parsed
	children  []*node
	fetched   bool // from the source this run, not from the previous generation
	err       error
}

// node returns the manifest d, loading it (from the previous generation, or the source via
// repo) when no other tag has.
func (r *run) node(ctx context.Context, repo string, d layout.Digest, pre *prefetched, depth int) *node {
	r.mu.Lock()
	if n, ok := r.nodes[d]; ok {
		r.mu.Unlock()
		select {
		case <-n.done:
		case <-ctx.Done():
			return &node{digest: d, err: context.Cause(ctx)}
		}
		return n
	}
	n := &node{done: make(chan struct{}), digest: d}
	r.nodes[d] = n
	r.mu.Unlock()
	defer close(n.done)
	n.err = r.loadNode(ctx, repo, n, pre, depth)
	return n
}

func (r *run) loadNode(ctx context.Context, repo string, n *node, pre *prefetched, depth int) error {
	if depth > MaxDepth {
		return fmt.Errorf("manifests nested deeper than %d", MaxDepth)
	}
	var headerType string
	if pm, ok := r.prev.Manifests[n.digest]; ok && layout.VerifyBytes(n.digest, pm.Data) == nil {
		n.data, headerType = pm.Data, pm.MediaType
	} else if pre != nil {
		n.data, headerType, n.fetched = pre.data, pre.mediaType, true
	} else {
		if err := r.acquire(ctx, r.reqSem); err != nil {
			return err
		}
		path := "/v2/" + repo + "/manifests/" + n.digest.String()
		err := r.c.retry(ctx, "GET "+path, func() error {
			var err error
			n.data, headerType, err = r.fetchManifest(ctx, path, n.digest)
			return err
		})
		<-r.reqSem
		if err != nil {
			return err
		}
		n.fetched = true
	}
	p, err := parseManifest(n.data, headerType)
	if err != nil {
		return fmt.Errorf("manifest %s: %w", n.digest, err)
	}
	if p.schema1 {
		return errSchema1
	}
	n.p, n.mediaType = p, p.mediaType
	if len(p.children) == 0 {
		return nil
	}
	n.children = make([]*node, len(p.children))
	var wg sync.WaitGroup
	for i, c := range p.children {
		wg.Go(func() { n.children[i] = r.node(ctx, repo, c.digest, nil, depth+1) })
	}
	wg.Wait()
	for i, c := range n.children {
		if c.err != nil {
			if errors.Is(c.err, errSchema1) {
				return inIndex(n.digest, fmt.Errorf("child %s is a schema 1 manifest", c.digest))
			}
			return inIndex(n.digest, c.err)
		}
		if int64(len(c.data)) != p.children[i].size {
			return inIndex(n.digest, fmt.Errorf("child %s is %d bytes, the index says %d", c.digest, len(c.data), p.children[i].size))
		}
	}
	return nil
}

// chainError is a failure inside nested indexes. Its message puts the cause first and the
// chain of indexes after it, outermost first, so that a message cut in the middle keeps both
// the cause and where it happened.
type chainError struct {
	chain []layout.Digest
	err   error
}

func (e *chainError) Error() string {
	var b strings.Builder
	b.WriteString(e.err.Error())
	b.WriteString(" (in index ")
	for i, d := range e.chain {
		if i > 0 {
			b.WriteString(" → ")
		}
		b.WriteString(d.String())
	}
	b.WriteString(")")
	return b.String()
}

func (e *chainError) Unwrap() error { return e.err }

// inIndex places err, a failure of a child of index d, in d. The child's error is shared by
// every index listing it, so the chain is copied, never extended in place.
func inIndex(d layout.Digest, err error) error {
	if ce, ok := err.(*chainError); ok {
		return &chainError{chain: append([]layout.Digest{d}, ce.chain...), err: ce.err}
	}
	return &chainError{chain: []layout.Digest{d}, err: err}
}

// fetchManifest GETs a manifest (one attempt), bounded to MaxManifestSize and, when want is
// set, checked against it.
func (r *run) fetchManifest(ctx context.Context, path string, want layout.Digest) ([]byte, string, error) {
	resp, err := r.c.getOK(ctx, http.MethodGet, path, manifestAccept)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	if resp.ContentLength > MaxManifestSize {
		return nil, "", fmt.Errorf("manifest is %d bytes, over the %d-byte limit", resp.ContentLength, MaxManifestSize)
	}
	data, err := readLimited(resp.Body, MaxManifestSize)
	if err != nil {
		return nil, "", fmt.Errorf("GET %s: %w", path, err)
	}
	if resp.ContentLength >= 0 && int64(len(data)) != resp.ContentLength {
		return nil, "", fmt.Errorf("GET %s: %w: got %d of %d bytes", path, errTruncated, len(data), resp.ContentLength)
	}
	if !want.IsZero() {
		if err := layout.VerifyBytes(want, data); err != nil {
			return nil, "", fmt.Errorf("GET %s: %w: %v", path, errDigestMismatch, err)
		}
	}
	return data, resp.Header.Get("Content-Type"), nil
}

// retryableError is an error worth another attempt; errors.Is(err, errRetryable) finds it.
type retryableError struct{ msg string }

func (e *retryableError) Error() string        { return e.msg }
func (e *retryableError) Is(target error) bool { return target == errRetryable }

var (
	errRetryable      = errors.New("retryable")
	errTruncated      = &retryableError{"truncated body"}
	errDigestMismatch = &retryableError{"content does not match its digest"}
	errSizeMismatch   = &retryableError{"size does not match the manifest"}
)

// closure is what one manifest publishes in a repository: the manifest, the manifests an
// index lists (recursively), their blobs, the referrers accepted for each of them, and the
// closures of those referrers, shared rather than copied: a closure is computed once per
// repository, manifest and depth in a run (closureOf), and assemble walks each once.
type closure struct {
	root      layout.Digest
	nodes     map[layout.Digest]*node
	blobs     map[layout.Digest]*blobTask
	referrers map[layout.Digest][]layout.Descriptor // subject → its accepted referrers
	subs      []*closure                            // the closures of those referrers
}

func newClosure(root layout.Digest) *closure {
	return &closure{root: root, nodes: map[layout.Digest]*node{}, blobs: map[layout.Digest]*blobTask{}, referrers: map[layout.Digest][]layout.Descriptor{}}
}

// walk calls f once for cl and each closure reachable from it through referrers, skipping
// closures already in seen (which it fills).
func (cl *closure) walk(seen map[*closure]bool, f func(*closure)) {
	stack := []*closure{cl}
	for len(stack) > 0 {
		c := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if seen[c] {
			continue
		}
		seen[c] = true
		f(c)
		stack = append(stack, c.subs...)
	}
}

// closureKey identifies a closure: the referrers found, and the repository blobs are fetched
// through, depend on the repository; how deep referrers are still followed on the depth;
// prevOnly closures take referrers from the previous generation.
type closureKey struct {
	repo     string
	digest   layout.Digest
	depth    int
	prevOnly bool
}

type closureTask struct {
	done chan struct{}
	cl   *closure
	err  error
}

// closureOf returns the closure of manifest d in repo at depth, computing it once per run.
// A closure waits only for closures one level deeper, so the waits cannot form a cycle
// whatever the source lists, and the work is bounded by MaxDepth+1 closures per manifest.
func (r *run) closureOf(ctx context.Context, repo string, d layout.Digest, depth int, prevOnly bool) (*closure, error) {
	key := closureKey{repo: repo, digest: d, depth: depth, prevOnly: prevOnly}
	r.mu.Lock()
	t, ok := r.closures[key]
	if !ok {
		t = &closureTask{done: make(chan struct{})}
		r.closures[key] = t
	}
	r.mu.Unlock()
	if !ok {
		t.cl, t.err = r.collect(ctx, repo, r.node(ctx, repo, d, nil, depth), depth, prevOnly)
		close(t.done)
	}
	select {
	case <-t.done:
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	}
	return t.cl, t.err
}

// collect builds the closure of n: adds n and the manifests it lists, waits for their blobs,
// checks layers when asked, then follows the referrers of each of those manifests (a
// referrer counts only if its own subject is that manifest). prevOnly takes referrers from
// the previous generation instead of the source.
func (r *run) collect(ctx context.Context, repo string, n *node, depth int, prevOnly bool) (*closure, error) {
	if n.err != nil {
		return nil, n.err
	}
	cl := newClosure(n.digest)
	var walk func(n *node)
	var nodes []*node
	walk = func(n *node) {
		if _, ok := cl.nodes[n.digest]; ok {
			return
		}
		cl.nodes[n.digest] = n
		nodes = append(nodes, n)
		for _, b := range n.p.blobs() {
			if _, ok := cl.blobs[b.digest]; !ok {
				cl.blobs[b.digest] = r.blob(ctx, repo, b, !n.fetched)
			}
		}
		for _, c := range n.children {
			walk(c)
		}
	}
	walk(n)
	for _, n := range nodes {
		for _, b := range n.p.blobs() {
			t := cl.blobs[b.digest]
			if err := t.wait(ctx); err != nil {
				return nil, fmt.Errorf("%s %s: %w", blobKind(b), b.digest, err)
			}
			if t.size != b.size && t.state != blobForeign {
				return nil, fmt.Errorf("%s %s: manifest %s says %d bytes, another says %d", blobKind(b), b.digest, n.digest, b.size, t.size)
			}
		}
	}
	if r.o.VerifyLayers && !r.o.DryRun {
		for _, n := range nodes {
			if err := r.verifyLayers(ctx, n, cl); err != nil {
				return nil, err
			}
		}
	}
	if depth >= MaxDepth {
		return cl, nil
	}
	// Referrers of every manifest in the closure.
	for _, n := range nodes {
		var refs []referrer
		if prevOnly {
			refs = r.prevReferrers(repo, n.digest)
		} else {
			var err error
			refs, err = r.referrersOf(ctx, repo, n.digest)
			if err != nil {
				return nil, fmt.Errorf("referrers of %s at %s: %w", n.digest, r.c.base, err)
			}
		}
		for _, ref := range refs {
			sub, err := r.referrerClosure(ctx, repo, n.digest, ref.digest, depth+1, prevOnly)
			if err == nil {
				cl.referrers[n.digest] = append(cl.referrers[n.digest], ref.desc)
				cl.subs = append(cl.subs, sub)
				continue
			}
			if ctx.Err() != nil {
				return nil, context.Cause(ctx)
			}
			if errors.Is(err, errNotReferrer) {
				r.warnNotReferrer(repo, subjectPair{n.digest, ref.digest}, err)
				continue
			}
			r.mu.Lock()
			seen := r.refFailed[ref.digest]
			r.refFailed[ref.digest] = true
			r.mu.Unlock()
			if !seen {
				r.fail(repo+"@"+ref.digest.String(), fmt.Errorf("referrer of %s left out: %w", n.digest, err))
			}
		}
	}
	return cl, nil
}

// errNotReferrer marks a manifest listed as a referrer of a subject it does not name.
var errNotReferrer = errors.New("not a referrer")

// referrerClosure checks that manifest ref names subject as its subject, then returns its
// closure. A source that lists unrelated manifests as referrers (of each other, say) gets
// nothing published for it, and no work beyond fetching the manifest.
func (r *run) referrerClosure(ctx context.Context, repo string, subject, ref layout.Digest, depth int, prevOnly bool) (*closure, error) {
	rn := r.node(ctx, repo, ref, nil, depth)
	if rn.err != nil {
		return nil, rn.err
	}
	if rn.p.subject != subject {
		names := "no subject"
		if !rn.p.subject.IsZero() {
			names = "subject " + rn.p.subject.String()
		}
		return nil, fmt.Errorf("%w: %s names %s", errNotReferrer, ref, names)
	}
	return r.closureOf(ctx, repo, ref, depth, prevOnly)
}

type subjectPair struct{ subject, referrer layout.Digest }

// warnNotReferrer warns once per run and pair about a referrer listing the manifest
// contradicts.
func (r *run) warnNotReferrer(repo string, p subjectPair, err error) {
	r.mu.Lock()
	if r.notReferrers == nil {
		r.notReferrers = map[subjectPair]bool{}
	}
	seen := r.notReferrers[p]
	r.notReferrers[p] = true
	r.mu.Unlock()
	if !seen {
		r.prog.warnf("%s: %s listed as a referrer of %s by %s, left out: %v", repo, p.referrer, p.subject, r.c.base, err)
	}
}

func blobKind(b blobRef) string {
	if b.layer {
		return "layer"
	}
	return "config"
}

// pageSize is the n of catalog and tag list requests.
const pageSize = 1000

// listRepos reads the catalog, every page, and keeps valid names matching --repo.
func (r *run) listRepos(ctx context.Context) ([]string, error) {
	var repos []string
	err := r.paginate(ctx, "/v2/_catalog", "repositories", func(name string) {
		if err := layout.ValidateName(name); err != nil {
			r.prog.warnf("skipping repository from the catalog: %v", err)
			return
		}
		if matchAny(r.globs, name) {
			repos = append(repos, name)
		}
	})
	if err != nil {
		return nil, fmt.Errorf("listing repositories at %s: %w", r.c.base, err)
	}
	sort.Strings(repos)
	return repos, nil
}

// listTags reads a repository's tags, every page, keeping valid ones.
func (r *run) listTags(ctx context.Context, repo string) ([]string, error) {
	var tags []string
	err := r.paginate(ctx, "/v2/"+repo+"/tags/list", "tags", func(tag string) {
		if err := layout.ValidateTag(tag); err != nil {
			r.prog.warnf("%s: skipping tag: %v", repo, err)
			return
		}
		tags = append(tags, tag)
	})
	if statusOf(err) == http.StatusNotFound {
		// In the catalog but without tags (docker-distribution after deletions).
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	sort.Strings(tags)
	return tags, nil
}

// limitError is a source going past one of the run's limits (Options.MaxPages, MaxEntries,
// MaxReferrers); the caller's context names the source.
type limitError struct {
	what   string // "tags", "pages of tags", "referrers"
	limit  int
	option string // the Options field
}

func (e *limitError) Error() string {
	return fmt.Sprintf("more than %d %s (limit: Options.%s %d; raise it if the source really has more)", e.limit, e.what, e.option, e.limit)
}

// paginate GETs a list endpoint page by page, calling each once per distinct entry of the
// JSON array field. It follows Link rel="next"; a source that sends a full page without a Link
// is asked again with last=<final entry> until a page brings nothing new. More than MaxPages
// pages or MaxEntries distinct entries is an error.
func (r *run) paginate(ctx context.Context, base, field string, each func(string)) error {
	seen := map[string]bool{}
	n := r.o.pageSize
	if n <= 0 {
		n = pageSize
	}
	path := base + "?n=" + strconv.Itoa(n)
	visited := map[string]bool{}
	for pages := 0; path != "" && !visited[path]; pages++ {
		if pages == r.o.MaxPages {
			return &limitError{what: "pages of " + field, limit: r.o.MaxPages, option: "MaxPages"}
		}
		visited[path] = true
		var page map[string]json.RawMessage
		if err := r.acquire(ctx, r.reqSem); err != nil {
			return err
		}
		link, err := r.c.getJSON(ctx, path, 64<<20, &page)
		<-r.reqSem
		if err != nil {
			return err
		}
		var items []string
		if raw, ok := page[field]; ok && string(raw) != "null" {
			if err := json.Unmarshal(raw, &items); err != nil {
				return fmt.Errorf("GET %s: %s: %w", path, field, err)
			}
		}
		fresh := 0
		for _, it := range items {
			if seen[it] {
				continue
			}
			if len(seen) == r.o.MaxEntries {
				return &limitError{what: field, limit: r.o.MaxEntries, option: "MaxEntries"}
			}
			seen[it] = true
			fresh++
			each(it)
		}
		next, err := nextLink(link)
		if err != nil {
			return err
		}
		if next == "" && len(items) >= n && fresh > 0 {
			next = base + "?n=" + strconv.Itoa(n) + "&last=" + url.QueryEscape(items[len(items)-1])
		}
		if fresh == 0 {
			break
		}
		path = next
	}
	return nil
}

// referrer is one manifest referring to a subject, as the referrers API describes it.
type referrer struct {
	digest layout.Digest
	desc   layout.Descriptor
}

type refTask struct {
	done chan struct{}
	refs []referrer
	err  error
}

// referrersOf asks the source for the referrers of d. A source without the API (any answer
// but 200 to the first query) is not asked again this run.
func (r *run) referrersOf(ctx context.Context, repo string, d layout.Digest) ([]referrer, error) {
	r.refProbe.Lock()
	if r.refKnown && !r.refSupported {
		r.refProbe.Unlock()
		return nil, nil
	}
	if !r.refKnown {
		// The first query decides, holding the lock so that the others wait for it.
		defer r.refProbe.Unlock()
		refs, err := r.queryReferrers(ctx, repo, d)
		if err != nil {
			if ctx.Err() != nil {
				return nil, err
			}
			r.refKnown, r.refSupported = true, false
			return nil, nil
		}
		r.refKnown, r.refSupported = true, true
		return refs, nil
	}
	r.refProbe.Unlock()

	key := repo + "@" + d.String()
	r.mu.Lock()
	t, ok := r.referrers[key]
	if !ok {
		t = &refTask{done: make(chan struct{})}
		r.referrers[key] = t
	}
	r.mu.Unlock()
	if !ok {
		t.refs, t.err = r.queryReferrers(ctx, repo, d)
		if statusOf(t.err) == http.StatusNotFound {
			// The API exists (the probe said so); the subject just has no referrers here.
			t.refs, t.err = nil, nil
		}
		close(t.done)
	}
	select {
	case <-t.done:
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	}
	return t.refs, t.err
}

func (r *run) queryReferrers(ctx context.Context, repo string, d layout.Digest) ([]referrer, error) {
	path := "/v2/" + repo + "/referrers/" + d.String()
	var out []referrer
	seen := map[layout.Digest]bool{}
	visited := map[string]bool{}
	for pages := 0; path != "" && !visited[path]; pages++ {
		if pages == r.o.MaxPages {
			return nil, &limitError{what: "pages of referrers", limit: r.o.MaxPages, option: "MaxPages"}
		}
		visited[path] = true
		var idx struct {
			Manifests []struct {
				descriptor
				Platform *layout.Platform `json:"platform,omitempty"`
			} `json:"manifests"`
		}
		if err := r.acquire(ctx, r.reqSem); err != nil {
			return nil, err
		}
		link, err := r.c.getJSON(ctx, path, MaxManifestSize, &idx)
		<-r.reqSem
		if err != nil {
			return nil, err
		}
		for _, m := range idx.Manifests {
			rd, err := layout.ParseDigest(m.Digest)
			if err != nil {
				return nil, fmt.Errorf("referrers of %s: %w", d, err)
			}
			if seen[rd] || rd == d {
				continue
			}
			if len(seen) == r.o.MaxReferrers {
				return nil, &limitError{what: "referrers", limit: r.o.MaxReferrers, option: "MaxReferrers"}
			}
			seen[rd] = true
			out = append(out, referrer{digest: rd, desc: layout.Descriptor{
				MediaType:    m.MediaType,
				Size:         m.Size,
				Digest:       rd,
				ArtifactType: m.ArtifactType,
				Annotations:  m.Annotations,
				Platform:     m.Platform,
			}})
		}
		next, err := nextLink(link)
		if err != nil {
			return nil, err
		}
		path = next
	}
	sort.Slice(out, func(i, j int) bool { return out[i].digest.String() < out[j].digest.String() })
	return out, nil
}

// prevReferrers are the referrers of d that the previous generation published in repo.
func (r *run) prevReferrers(repo string, d layout.Digest) []referrer {
	pr := r.prev.Repositories[repo]
	if pr == nil {
		return nil
	}
	var out []referrer
	for _, desc := range pr.Referrers[d] {
		rd := desc.Digest
		if _, ok := r.prev.Manifests[rd]; ok {
			out = append(out, referrer{digest: rd, desc: desc})
		}
	}
	return out
}

// removeTemps deletes leftovers of interrupted writes in the tree's directories.
func removeTemps(t *layout.Tree) error {
	for _, dir := range []string{"", layout.BlobDir("sha256"), layout.MetaDir, layout.MetaFilesDir} {
		p := t.Path(dir)
		ents, err := os.ReadDir(p)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("cleaning temporary files: %w", err)
		}
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), layout.TempPrefix) && e.Type().IsRegular() {
				if err := os.Remove(t.Path(dir + "/" + e.Name())); err != nil && !errors.Is(err, os.ErrNotExist) {
					return fmt.Errorf("cleaning temporary files: %w", err)
				}
			}
		}
	}
	return nil
}
