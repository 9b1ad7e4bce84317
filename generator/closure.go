package generator

import (
	"context"
	"errors"
	"fmt"

	"github.com/regmirror/regmirror/layout"
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

// closureOf returns the closure of manifest d in repo at depth, computing it once per run.
// A closure waits only for closures one level deeper, so the waits cannot form a cycle
// whatever the source lists, and the work is bounded by MaxDepth+1 closures per manifest.
func (r *run) closureOf(ctx context.Context, repo string, d layout.Digest, depth int, prevOnly bool) (*closure, error) {
	key := closureKey{repo: repo, digest: d, depth: depth, prevOnly: prevOnly}
	return r.closures.do(ctx, key, func() (*closure, error) {
		return r.collect(ctx, repo, r.node(ctx, repo, d, nil, depth), depth, prevOnly)
	})
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
