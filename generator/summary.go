package generator

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// Summary is the outcome of a Run.
type Summary struct {
	Generation uint64
	DryRun     bool
	Duration   time.Duration
	// Phases are where Duration went: the run's steps one after the other (PhaseDiscover to
	// PhaseSettle; a dry run ends at PhaseAssemble), then PhaseLoad, the previous
	// generation's load, which runs beside discovery (PhaseAwait is the wait for it after).
	Phases []Phase
	Plan   *Plan
	Counts
	// unchanged is how many repositories the run took whole from the previous generation;
	// trusted how many of those on the settled record's word (run.plain).
	unchanged, trusted int
}

// Phase is one step of a run and how long it took.
type Phase struct {
	Name string
	Took time.Duration
}

// Phase names, as Summary.Phases and the command's "phases" log record give them.
const (
	PhaseLoad     = "load_previous" // beside discovery: not one of the steps
	PhaseDiscover = "discover"      // from the run's start: the source listed, HEADed, blobs fetched
	PhaseAwait    = "await_previous"
	PhaseAssemble = "assemble"
	PhasePublish  = "publish" // metadata, files, publication, the switch
	PhaseSettle   = "settle"
)

// phaseClock records a run's steps, each from the end of the one before.
type phaseClock struct {
	last   time.Time
	phases []Phase
}

func newPhaseClock(start time.Time) *phaseClock { return &phaseClock{last: start} }

// done ends the step name now.
func (c *phaseClock) done(name string) {
	now := time.Now()
	c.phases = append(c.phases, Phase{name, now.Sub(c.last)})
	c.last = now
}

// Counts are the figures of a run.
type Counts struct {
	Repositories, Tags                  int
	TagsAdded, TagsChanged, TagsRemoved int
	Manifests                           int
	BlobsFetched                        int   // blobs the generation references, fetched this run
	BytesFetched                        int64 // their bytes
	BlobsPresent                        int   // already in the tree
	ForeignSkipped                      int   // foreign layers the source does not hold
	Orphaned                            int   // blobs unreferenced since this generation
	Orphans                             int   // unreferenced blobs kept for the grace period
	Deleted                             int   // unreferenced longer than the grace period
	RetiringManifests                   int   // manifests no longer referenced, still served by digest
	RetiringBlobs                       int   // configs and layers likewise
	RetiringBytes                       int64 // the retiring files' bytes (manifests included)
	DeletedBytes                        int64
	ManifestsWritten                    int   // manifests new to blobs/: written (to write, in a dry run)
	ToFetch                             int   // dry run: configs and layers to fetch, as BlobsFetched counts them
	ToFetchBytes                        int64 // dry run
	Failures                            int
	Archived                            int          // archived tags (--archive, --keep-removed)
	Subsets                             []SubsetSize // bytes a mirror carrying each subset alone holds
	TotalBytes                          int64        // every referenced blob's bytes
}

// SubsetSize is what carrying one subset costs: the bytes of the blobs a mirror carrying it
// alone holds (layout.Meta.SubsetBytes).
type SubsetSize struct {
	Name  string
	Bytes int64
}

// subsetsText is the subsets' part of the summary: "subsets: amd64 1.2 MiB, arm64 1.1 MiB,
// archive 300 KiB (of 2.6 MiB); 1 archived tag"; "" without subsets.
func (c Counts) subsetsText() string {
	if len(c.Subsets) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString("subsets: ")
	for i, s := range c.Subsets {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(s.Name + " " + humanBytes(s.Bytes))
	}
	fmt.Fprintf(&b, " (of %s); %d archived tag", humanBytes(c.TotalBytes), c.Archived)
	if c.Archived != 1 {
		b.WriteString("s")
	}
	return b.String()
}

// String is the last line of a run.
func (s *Summary) String() string {
	rate := float64(s.BytesFetched) / max(s.Duration.Seconds(), 1e-9)
	verb := "published"
	if s.DryRun {
		verb = "planned"
	}
	line := fmt.Sprintf("generation %d %s: %d repositories, %d tags (%d added, %d changed, %d removed), %d manifests (%d new); "+
		"%d blobs fetched (%s), %d present; %d foreign layers skipped; %s; %d orphans kept, %d deleted (%s); %s, %s/s",
		s.Generation, verb, s.Repositories, s.Tags, s.TagsAdded, s.TagsChanged, s.TagsRemoved, s.Manifests, s.ManifestsWritten,
		s.BlobsFetched, humanBytes(s.BytesFetched), s.BlobsPresent, s.ForeignSkipped, s.retiringText(),
		s.Orphans, s.Deleted, humanBytes(s.DeletedBytes), s.Duration.Round(time.Millisecond), humanBytes(int64(rate)))
	if t := s.subsetsText(); t != "" {
		line += "; " + t
	}
	if s.Failures > 0 {
		line += fmt.Sprintf("; %d failed", s.Failures)
	}
	return line
}

// retiringText is the retiring set's part of the summary.
func (c Counts) retiringText() string {
	return fmt.Sprintf("retiring %d manifests, %d blobs (%s) served by digest",
		c.RetiringManifests, c.RetiringBlobs, humanBytes(c.RetiringBytes))
}

// Plan is what a dry run would do.
type Plan struct {
	Added, Changed, Removed []string // "+ repo:tag digest", "~ repo:tag old -> new", "- repo:tag digest"
	Retire                  []string // "retire repo@digest": manifests that start retiring
	BlobsToFetch            int      // configs and layers, as the run's "blobs fetched"
	ManifestsToWrite        int      // manifests new to blobs/, as the run's "(N new)"
	BytesToFetch            int64
	BlobsToDelete           int
	BytesToDelete           int64
	Delete                  []string // digests
	Retiring                Counts   // the retiring set after the run (Retiring* fields), and the subsets' sizes
}

func (r *run) plan(st *stats) *Plan {
	p := &Plan{BlobsToFetch: st.ToFetch, BytesToFetch: st.ToFetchBytes, ManifestsToWrite: st.ManifestsWritten, BlobsToDelete: st.Deleted, BytesToDelete: st.DeletedBytes,
		Retire: st.retire}
	p.Retiring.RetiringManifests, p.Retiring.RetiringBlobs, p.Retiring.RetiringBytes = st.RetiringManifests, st.RetiringBlobs, st.RetiringBytes
	p.Retiring.Subsets, p.Retiring.TotalBytes, p.Retiring.Archived = st.Subsets, st.TotalBytes, st.Archived
	for _, c := range st.added {
		p.Added = append(p.Added, fmt.Sprintf("+ %s %s", c.ref, c.new))
	}
	for _, c := range st.changed {
		p.Changed = append(p.Changed, fmt.Sprintf("~ %s %s -> %s", c.ref, c.old, c.new))
	}
	for _, c := range st.removed {
		p.Removed = append(p.Removed, fmt.Sprintf("- %s %s", c.ref, c.old))
	}
	for _, d := range st.expired {
		p.Delete = append(p.Delete, d.String())
	}
	return p
}

// Print writes the plan, one line per change, then a total.
func (p *Plan) Print(w io.Writer) {
	for _, l := range [][]string{p.Added, p.Changed, p.Removed, p.Retire} {
		for _, s := range l {
			fmt.Fprintln(w, s)
		}
	}
	for _, d := range p.Delete {
		fmt.Fprintf(w, "delete %s\n", d)
	}
	fmt.Fprintf(w, "plan: %d tags added, %d changed, %d removed; %d blobs to fetch (%s), %d manifests to write; %s; %d blobs to delete (%s)\n",
		len(p.Added), len(p.Changed), len(p.Removed), p.BlobsToFetch, humanBytes(p.BytesToFetch), p.ManifestsToWrite, p.Retiring.retiringText(),
		p.BlobsToDelete, humanBytes(p.BytesToDelete))
	if t := p.Retiring.subsetsText(); t != "" {
		fmt.Fprintln(w, t)
	}
}
