// Package crawl checks which mirrors hold the tree and are healthy, and refreshes the tree's
// region data accordingly, without touching the source registry.
//
// For every enabled mirror, with bounded concurrency and a timeout on every request, a crawl:
//
//  1. reads <mirror url>regmirror/current, the stamp rsync carries, for the generation the
//     mirror holds (G);
//  2. checks a sample of the blobs that generation holds (Since <= G): the newest ones always
//     (the highest Since, --sample of them) and --sample others at random. Each must answer
//     HEAD (or, where HEAD is refused with 405 or 501, GET with Range: bytes=0-0) with 200 or
//     206, the blob's exact size, and no Content-Encoding. The request says Accept-Encoding:
//     gzip, as clients do, so a server that compresses blobs is caught.
//
// The first problem ends a mirror's check. Statuses: "up to date", "behind by N generations",
// "ahead of the tree by N generations" (the mirror synced from a newer tree than the one crawl
// reads: it is taken at the tree's generation), "down: <error>", "timeout: <what>", "missing
// <digest>: HTTP 404", "wrong size for <digest>: ...", "compressed: ...", "bad stamp: ...",
// "disabled".
//
// # Health
//
// A mirror that passes is healthy, at the generation it holds: a mirror one or more
// generations behind stays a candidate, for the blobs of its generation only (the per-blob
// filter, Blob.Since <= Mirror.Generation, keeps it away from newer ones). A mirror that fails
// is out at once: nobody is sent to a mirror that the last crawl could not vouch for, since
// containerd and Docker fail a pull on a mirror's error rather than trying the next one.
// Failures counts the crawls failed in a row. Once it reaches --max-failures (default 3) the
// mirror is "dead": its status says so, and when it passes again it must pass a check four
// times as large (4 × --sample newest and random blobs) before it is back; a mirror back from a
// short outage needs only an ordinary pass.
//
// # Publishing
//
// The crawl reads the tree's current metadata, applies --mirrors FILE if given (mirrors added,
// removed or changed there take effect; crawl state is kept for mirrors whose name and URL are
// unchanged; the file is re-read on every run, a mirrors file or MirrorManager's mirrorlist
// cache with --mm-directory, and one that does not load ends the crawl before anything is
// checked or published, so the tree keeps its current mirrors), records its findings, recomputes regions and variant sets (mirrors.Precompute) and
// publishes the result as the same generation (layout.Tree.Publish): a new metadata file and a
// new stamp, which running redirectors pick up. It holds the tree's lock (the flock regmirror
// generate holds for its whole run) only while it re-checks the stamp and publishes. If a
// generate holds the lock, or the tree's stamp changed while the crawl ran (a generate
// finished), nothing is published and Run returns an error: run crawl again.
//
// Each crawl writes a metadata file of the current generation. The generator deletes those of
// old generations; crawl deletes those of the current generation that two crawls have
// superseded, keeping the one it replaced for redirectors still loading it.
package crawl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/regmirror/regmirror/internal/mirrors"
	"github.com/regmirror/regmirror/internal/publish"
	"github.com/regmirror/regmirror/layout"
)

// Defaults of Options.
const (
	DefaultJobs        = 16
	DefaultTimeout     = 10 * time.Second
	DefaultSample      = 8
	DefaultMaxFailures = 3
	// DeadSampleFactor multiplies the sample of a mirror coming back after MaxFailures or more
	// failed crawls.
	DeadSampleFactor = 4
	// maxStampSize bounds the stamp read from a mirror.
	maxStampSize = 64 << 10
)

// Options configure a crawl.
type Options struct {
	// Tree is the tree's root directory.
	Tree string
	// CacheDir is --cache-dir: decoded copies of the tree's large content packs, read instead
	// of the packs' JSON (layout.Tree.UsePackCache); empty keeps none.
	CacheDir string
	// MirrorsFile, when set, is re-read and applied before crawling; otherwise the mirrors
	// recorded in the tree are crawled. It is a mirrors file or MirrorManager's mirrorlist
	// cache (with MMDirectory); see mirrors.LoadSource.
	MirrorsFile string
	// MMDirectory is the tree's directory in a MirrorManager mirrorlist cache.
	MMDirectory string
	// MinMirrors, when positive, replaces the tree's recorded layout.Meta.MinMirrors.
	MinMirrors int
	// Jobs is how many mirrors are checked at once (DefaultJobs when 0).
	Jobs int
	// Timeout bounds every request (DefaultTimeout when 0).
	Timeout time.Duration
	// Sample is how many of the newest blobs, and how many random others, each mirror must
	// serve (DefaultSample when 0).
	Sample int
	// MaxFailures is the number of failed crawls in a row after which a mirror is dead
	// (DefaultMaxFailures when 0).
	MaxFailures int
	// Client makes the requests; nil for a client of the crawl's own.
	Client *http.Client
	// UserAgent is sent with every request; "regmirror-crawl" when empty.
	UserAgent string
	// Rand picks the random sample; nil for a randomly seeded source.
	Rand *rand.Rand
	// Now gives the time recorded as each mirror's Checked; time.Now when nil.
	Now func() time.Time
}

func (o *Options) defaults() {
	if o.Jobs <= 0 {
		o.Jobs = DefaultJobs
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Sample <= 0 {
		o.Sample = DefaultSample
	}
	if o.MaxFailures <= 0 {
		o.MaxFailures = DefaultMaxFailures
	}
	if o.Client == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConnsPerHost = 2
		tr.ResponseHeaderTimeout = o.Timeout
		o.Client = &http.Client{Transport: tr}
	}
	if o.UserAgent == "" {
		o.UserAgent = "regmirror-crawl"
	}
	if o.Rand == nil {
		o.Rand = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// Result is what the crawl found on one mirror.
type Result struct {
	Name       string
	URL        string
	Country    string
	Continent  string
	Private    bool // reached through netblocks and ASNs only
	Enabled    bool
	Healthy    bool
	Generation uint64 // the generation the mirror holds, as recorded; 0 unknown
	Status     string
	Failures   int           // failed crawls in a row
	Blobs      int           // blobs checked
	Duration   time.Duration // time spent on the mirror
	// Content is the mirror's content (layout.Mirror.Content); Subsets what the crawl found
	// for each subset it carries, in order (none when the tree records no subsets).
	Content []string
	Subsets []SubsetResult
}

// SubsetResult is what the crawl found of one subset on one mirror: the blobs of that subset
// it checked, and the first failure ("" when they all answered).
type SubsetResult struct {
	Name  string
	Blobs int
	Err   string
}

// Report is the outcome of a crawl.
type Report struct {
	Tree       string
	Generation uint64
	Stamp      layout.Stamp // the stamp published
	Mirrors    []Result     // in the order of the mirrors file
	Stats      mirrors.Stats
	Duration   time.Duration
	// Sizes is the bytes a mirror carrying each subset alone holds, and of every blob
	// (layout.Meta.FormatSubsetBytes); "" when the tree records no subsets.
	Sizes string
}

// Healthy counts the healthy mirrors.
func (r *Report) Healthy() int {
	n := 0
	for _, m := range r.Mirrors {
		if m.Healthy {
			n++
		}
	}
	return n
}

// Run crawls the mirrors of the tree at opts.Tree and publishes the findings in the tree.
func Run(ctx context.Context, opts Options) (*Report, error) {
	start := time.Now()
	opts.defaults()
	if opts.Tree == "" {
		return nil, errors.New("no tree given")
	}
	tree := layout.NewTree(opts.Tree)
	defer tree.UsePackCache(opts.CacheDir)()            // the loaded generation is used until the crawl returns
	saveVouches := tree.UseVouches(opts.CacheDir, true) // saved under the lock, if the crawl publishes
	meta, stamp, err := tree.LoadForUpdate()
	if errors.Is(err, layout.ErrNoGeneration) {
		return nil, fmt.Errorf("loading tree %s: %w: run regmirror generate first", opts.Tree, err)
	}
	if mf := (*layout.MetaFileError)(nil); errors.As(err, &mf) {
		return nil, fmt.Errorf("loading tree %s: %w (nothing published: %s)", opts.Tree, err, mf.Hint())
	}
	if err != nil {
		return nil, fmt.Errorf("loading tree %s: %w", opts.Tree, err)
	}
	if opts.MirrorsFile != "" {
		// A file that does not load changes nothing: the tree keeps the mirrors it records.
		f, err := mirrors.LoadSource(mirrors.Source{Path: opts.MirrorsFile, MMDirectory: opts.MMDirectory})
		if err != nil {
			return nil, fmt.Errorf("%w (nothing published: the tree keeps its current mirrors)", err)
		}
		mirrors.SetMirrors(meta, f, meta.Mirrors)
	} else if opts.MMDirectory != "" {
		return nil, errors.New("Options.MMDirectory needs Options.MirrorsFile naming MirrorManager's mirrorlist cache")
	} else if len(meta.Mirrors) == 0 {
		return nil, fmt.Errorf("tree %s records no mirrors: give the mirrors file with Options.MirrorsFile FILE", opts.Tree)
	}
	if opts.MinMirrors > 0 {
		meta.MinMirrors = opts.MinMirrors
	}

	results := Check(ctx, meta, opts)
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("crawling: %w", err)
	}
	stats, err := mirrors.Precompute(meta)
	if err != nil {
		return nil, fmt.Errorf("precomputing regions: %w", err)
	}
	release, err := tree.Lock(0)
	if errors.Is(err, layout.ErrLocked) {
		return nil, fmt.Errorf("%w: a regmirror generate is writing it; nothing published, crawl again when it is done", err)
	}
	if err != nil {
		return nil, err
	}
	defer release()
	defer saveVouches() // before the release (deferred calls run last first)
	cur, err := tree.ReadStamp()
	if err != nil {
		return nil, fmt.Errorf("re-reading the tree's stamp: %w", err)
	}
	if cur.Meta != stamp.Meta {
		return nil, fmt.Errorf("tree %s changed during the crawl (generation %d, now %d): nothing published, run crawl again", opts.Tree, stamp.Generation, cur.Generation)
	}
	// Before the first change (a crawl that stops above changes nothing).
	settled, removed, err := tree.Unsettle()
	if err != nil {
		return nil, err
	}
	// A crawl changes no content: no digest marker, no blob; the garbage the last
	// generate deleted after its publish is what changed since its file list.
	ch := publish.Change{Settled: settled, Changed: removed}
	published, err := publish.Publish(tree, meta, ch)
	if err != nil {
		return nil, fmt.Errorf("publishing crawl results: %w", err)
	}
	// Published. A crawl writes no blob: a tree settled before it is settled after it. One
	// that was not stays so (the next generate lists blobs/ for strays, which a crawl does
	// not look for); a record that cannot be written only makes the next run read the tree
	// whole.
	if settled {
		_ = tree.Settle(nil, tree.SettledPlain()) // the content, which they are of, is the same
	}
	return &Report{
		Tree:       opts.Tree,
		Generation: meta.Generation,
		Stamp:      published,
		Mirrors:    results,
		Stats:      stats,
		Duration:   time.Since(start),
		Sizes:      meta.FormatSubsetBytes(mirrors.FormatBytes),
	}, nil
}

// Check crawls meta.Mirrors and records the findings in them (Generation, Healthy, Status,
// Failures, Checked); it does not recompute regions. It returns one Result per mirror, in
// order. If ctx ends, the mirrors not yet checked keep their state.
func Check(ctx context.Context, meta *layout.Meta, opts Options) []Result {
	opts.defaults()
	blobs := newestFirst(meta, opts.Rand)
	results := make([]Result, len(meta.Mirrors))
	sem := make(chan struct{}, opts.Jobs)
	var wg sync.WaitGroup
	var mu sync.Mutex // guards opts.Rand
	for i, m := range meta.Mirrors {
		if !m.Enabled {
			m.Healthy = false
			m.Status = "disabled"
			results[i] = result(m, 0, 0)
			continue
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			results[i] = result(m, 0, 0)
			continue
		}
		mu.Lock()
		seed := opts.Rand.Uint64()
		mu.Unlock()
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			t0 := time.Now()
			c := &checker{opts: &opts, mirror: m, meta: meta, blobs: blobs, rnd: rand.New(rand.NewPCG(seed, uint64(i))),
				check: layout.BlobCheck{Client: opts.Client, UserAgent: opts.UserAgent}}
			f := c.run(ctx)
			if ctx.Err() != nil {
				results[i] = result(m, 0, time.Since(t0))
				return
			}
			m.Checked = opts.Now().UTC()
			if f.ok {
				back := m.Failures
				m.Healthy, m.Generation, m.Failures, m.Status = true, f.generation, 0, f.status
				if back >= opts.MaxFailures {
					m.Status += fmt.Sprintf(" (back after %d failed crawls)", back)
				}
			} else {
				m.Healthy = false
				m.Failures++
				if f.generation > 0 {
					m.Generation = f.generation
				}
				m.Status = f.status
				if m.Failures >= opts.MaxFailures {
					m.Status = fmt.Sprintf("dead, %d failed crawls in a row: %s", m.Failures, f.status)
				}
			}
			results[i] = result(m, c.checked, time.Since(t0))
			results[i].Subsets = f.subsets
		}()
	}
	wg.Wait()
	return results
}

func result(m *layout.Mirror, blobs int, d time.Duration) Result {
	return Result{Name: m.Name, URL: m.URL, Country: m.Country, Continent: m.Continent, Private: m.Private,
		Enabled: m.Enabled, Healthy: m.Healthy, Generation: m.Generation, Status: m.Status, Failures: m.Failures, Blobs: blobs, Duration: d,
		Content: m.Content}
}

// sampleBlob is a blob of the tree, in the crawl's check order.
type sampleBlob struct {
	digest  layout.Digest
	size    int64
	since   uint64
	subsets uint64 // layout.Blob.Subsets
}

// newestFirst lists the tree's blobs by Since, newest first, in random order within a
// generation.
func newestFirst(meta *layout.Meta, rnd *rand.Rand) []sampleBlob {
	out := make([]sampleBlob, 0, len(meta.Blobs))
	for d, b := range meta.Blobs {
		out = append(out, sampleBlob{d, b.Size, b.Since, b.Subsets})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].digest.String() < out[j].digest.String() })
	rnd.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	sort.SliceStable(out, func(i, j int) bool { return out[i].since > out[j].since })
	return out
}

type checker struct {
	opts    *Options
	mirror  *layout.Mirror
	meta    *layout.Meta
	blobs   []sampleBlob
	rnd     *rand.Rand
	check   layout.BlobCheck
	checked int
}

type finding struct {
	ok         bool
	generation uint64
	status     string
	subsets    []SubsetResult
}

// subsetsOf names the subsets mirror m carries in meta, each with its content mask: its
// content, or every architecture of the tree without one. One unnamed entry carrying
// everything when the tree records no subsets.
func subsetsOf(meta *layout.Meta, m *layout.Mirror) (names []string, masks []uint64) {
	if len(meta.Subsets) == 0 {
		return []string{""}, []uint64{^uint64(0)}
	}
	names = m.Content
	if len(names) == 0 {
		for _, s := range meta.SubsetNames() {
			if s != layout.ArchiveSubset {
				names = append(names, s)
			}
		}
		if len(names) == 0 { // a tree of artifacts only
			return []string{layout.AnyArchitecture}, []uint64{meta.ContentMask(nil)}
		}
	}
	for _, n := range names {
		masks = append(masks, meta.ContentMask([]string{n}))
	}
	return names, masks
}

func (c *checker) run(ctx context.Context) finding {
	stamp, err := c.stamp(ctx)
	if err != nil {
		return finding{status: err.Error()}
	}
	tree := c.meta.Generation
	gen := stamp.Generation
	var status string
	switch {
	case gen == tree:
		status = "up to date"
	case gen < tree:
		status = fmt.Sprintf("behind by %d generation%s", tree-gen, plural(tree-gen))
	default:
		status = fmt.Sprintf("ahead of the tree by %d generation%s", gen-tree, plural(gen-tree))
		gen = tree
	}
	n := c.opts.Sample
	if c.mirror.Failures >= c.opts.MaxFailures {
		n *= DeadSampleFactor
	}
	// Each subset the mirror carries is sampled on its own (a blob two subsets share is
	// fetched once): a mirror is checked for what it carries, and for nothing else.
	names, masks := subsetsOf(c.meta, c.mirror)
	f := finding{ok: true, generation: gen, status: status}
	done := map[layout.Digest]error{}
	for i, name := range names {
		sr := SubsetResult{Name: name}
		for _, b := range c.sample(gen, n, masks[i]) {
			err, seen := done[b.digest]
			if !seen {
				err = c.blob(ctx, b)
				done[b.digest] = err
			}
			sr.Blobs++
			if err != nil {
				sr.Err = err.Error()
				break
			}
		}
		if sr.Err != "" && f.ok {
			f.ok = false
			f.status = sr.Err
			if name != "" {
				f.status = name + ": " + sr.Err
			}
		}
		if name != "" {
			f.subsets = append(f.subsets, sr)
		}
	}
	return f
}

// sample picks the n newest blobs of the subsets in mask that a mirror at generation gen
// holds, and n random others.
func (c *checker) sample(gen uint64, n int, mask uint64) []sampleBlob {
	i := sort.Search(len(c.blobs), func(i int) bool { return layout.HeldAt(gen, c.blobs[i].since) })
	var held []sampleBlob
	for _, b := range c.blobs[i:] {
		if b.subsets == 0 || b.subsets&mask != 0 {
			held = append(held, b)
		}
	}
	if len(held) <= 2*n {
		return held
	}
	out := append([]sampleBlob(nil), held[:n]...)
	rest := held[n:]
	for _, j := range c.rnd.Perm(len(rest))[:n] {
		out = append(out, rest[j])
	}
	return out
}

func (c *checker) stamp(ctx context.Context) (layout.Stamp, error) {
	ctx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
	defer cancel()
	u := c.mirror.URL + layout.CurrentFile
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return layout.Stamp{}, fmt.Errorf("down: bad URL: %v", err)
	}
	req.Header.Set("User-Agent", c.opts.UserAgent)
	req.Header.Set("Cache-Control", "no-cache")
	resp, err := c.opts.Client.Do(req)
	if err != nil {
		return layout.Stamp{}, layout.RequestFailure(err, "reading "+layout.CurrentFile)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return layout.Stamp{}, fmt.Errorf("down: HTTP %d for %s", resp.StatusCode, layout.CurrentFile)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxStampSize+1))
	if err != nil {
		return layout.Stamp{}, layout.RequestFailure(err, "reading "+layout.CurrentFile)
	}
	if len(b) > maxStampSize {
		return layout.Stamp{}, fmt.Errorf("bad stamp: %s larger than %d bytes", layout.CurrentFile, maxStampSize)
	}
	s, err := layout.ParseStamp(b)
	if err != nil {
		return layout.Stamp{}, fmt.Errorf("bad stamp: %v", err)
	}
	if s.Generation == 0 {
		return layout.Stamp{}, errors.New("bad stamp: generation 0")
	}
	return s, nil
}

// blob checks that the mirror serves b whole and uncompressed.
func (c *checker) blob(ctx context.Context, b sampleBlob) error {
	c.checked++
	ctx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
	defer cancel()
	return c.check.Check(ctx, c.mirror.URL, b.digest, b.size)
}

// WriteTable prints the report as a table of mirrors and a summary line.
func (r *Report) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "MIRROR\tREGION\tCONTENT\tGENERATION\tHEALTHY\tBLOBS\tTIME\tSTATUS")
	for _, m := range r.Mirrors {
		gen := "-"
		if m.Generation > 0 {
			gen = strconv.FormatUint(m.Generation, 10)
		}
		healthy := "no"
		if m.Healthy {
			healthy = "yes"
		}
		region := m.Country + "/" + m.Continent
		if m.Country == "" && m.Continent == "" {
			region = "global" // a MirrorManager host without a country
		}
		if m.Private {
			region += " private"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", m.Name, region, contentCell(m), gen, healthy, m.Blobs,
			m.Duration.Round(time.Millisecond), m.Status)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if r.Sizes != "" {
		if _, err := fmt.Fprintf(w, "subsets: %s\n", r.Sizes); err != nil {
			return err
		}
	}
	_, err := fmt.Fprintf(w, "generation %d: %d of %d mirrors healthy; %v; published %s in %v\n",
		r.Generation, r.Healthy(), len(r.Mirrors), r.Stats, r.Stamp.Meta, r.Duration.Round(time.Millisecond))
	return err
}

func plural(n uint64) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// contentCell shows a mirror's subsets with what the crawl found of each: "amd64 ok,
// arm64 FAILED"; "all" for a mirror carrying every architecture of a tree without subsets.
func contentCell(m Result) string {
	if len(m.Subsets) == 0 {
		if len(m.Content) == 0 {
			return "all"
		}
		return strings.Join(m.Content, ",")
	}
	parts := make([]string, 0, len(m.Subsets))
	for _, s := range m.Subsets {
		state := "ok"
		switch {
		case s.Err != "":
			state = "FAILED"
		case s.Blobs == 0:
			state = "-"
		}
		parts = append(parts, s.Name+" "+state)
	}
	return strings.Join(parts, ",")
}
