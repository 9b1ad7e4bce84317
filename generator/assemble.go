package generator

import (
	"encoding/json"
	"errors"
	"io"
	"maps"
	"os"
	"sort"
	"time"

	"github.com/regmirror/regmirror/layout"
)

// stats are the figures of one run and the details behind them.
type stats struct {
	Counts
	added, changed, removed []tagChange
	expired                 []layout.Digest
	retire                  []string // "retire repo@digest": manifests retiring from a repository now
	unchanged               int      // repositories taken whole from the previous generation
	// whole are the repositories taken whole.
	whole map[string]bool
	// kept are the repositories taken whole whose manifests m records as the previous
	// generation does (the same media types and generations): phase2.DiffKept's kept; nil
	// when not known (every repository is then compared).
	kept map[string]bool
}

type tagChange struct {
	ref      string
	old, new layout.Digest
}

// assemble builds the new generation's metadata from the outcomes, and works out orphans.
func (r *run) assemble(outs []outcome) (*layout.Meta, *stats) {
	st := &stats{}
	st.Failures = len(r.failures)
	m := layout.NewMeta(r.gen)
	m.Source, m.GCGrace = r.c.base.String(), r.o.GCGrace
	m.Orphans = map[layout.Digest]*layout.Orphan{}
	// The repositories taken whole: when they list most of the previous generation, m starts
	// from its maps (startWhole); else they are taken one by one (takeWhole), in maps sized
	// for what a generation like the previous one holds (a promotion changes little, and maps
	// grown insert by insert rehash every record on the way).
	whole := map[string]*layout.Repository{}
	taken := map[string]bool{} // whole's names
	for _, o := range outs {
		if o.reused != nil {
			whole[o.repo] = o.reused
			taken[o.repo] = true
		}
	}
	var started *carried
	if !r.oneByOne {
		started = r.startWhole(m, whole)
	}
	if started == nil {
		m.Manifests = make(map[layout.Digest]*layout.Manifest, len(r.prev.Manifests))
		m.Blobs = make(map[layout.Digest]*layout.Blob, len(r.prev.Blobs))
	}
	m.Repositories = make(map[string]*layout.Repository, len(r.prev.Repositories))
	sets := map[string]*repoSets{}
	counted := map[layout.Digest]bool{}
	// A blob's new record: the previous generation's carried over (layout.CarriedBlob), else
	// one with its Since, counted in fresh.
	fresh := 0
	record := func(d layout.Digest, size int64) *layout.Blob {
		if pb := r.prev.Blobs[d]; pb != nil {
			b := layout.CarriedBlob(pb)
			b.Size = size
			return &b
		}
		fresh++
		return &layout.Blob{Size: size, Since: r.since(d)}
	}
	for _, o := range outs {
		repo := m.Repositories[o.repo]
		if repo == nil {
			repo = &layout.Repository{Tags: map[string]layout.Digest{}}
			m.Repositories[o.repo] = repo
			sets[o.repo] = &repoSets{manifests: map[layout.Digest]bool{}, blobs: map[layout.Digest]bool{}, closures: map[*closure]bool{}, referrers: map[layout.Digest]map[layout.Digest]bool{}}
		}
		s := sets[o.repo]
		if o.cl != nil {
			repo.Tags[o.tag] = o.cl.root
		}
		if o.removed {
			if repo.Removed == nil {
				repo.Removed = map[string]time.Time{}
			}
			repo.Removed[o.tag] = o.removedAt
		}
		if o.removed || len(r.archive) > 0 && matchAny(r.archive, o.repo+":"+o.tag) {
			repo.Archived = append(repo.Archived, o.tag)
			st.Archived++
		}
		if o.reused != nil {
			repo.Tags[o.tag] = o.digest
			if !s.reused {
				s.reused = true
				if started != nil {
					s.whole = o.reused
				} else {
					s.takeWhole(m, r.prev, o.reused, record)
				}
				st.unchanged++
			}
			continue
		}
		o.cl.walk(s.closures, func(cl *closure) { s.take(m, repo, cl, record, counted, st) })
	}
	for name, repo := range m.Repositories {
		s := sets[name]
		sort.Strings(repo.Archived)
		repo.Manifests, repo.Blobs = s.lists()
		for _, descs := range repo.Referrers {
			sort.Slice(descs, func(i, j int) bool { return descs[i].Digest.String() < descs[j].Digest.String() })
		}
		st.Tags += len(repo.Tags)
	}
	st.Repositories = len(m.Repositories)
	st.Manifests = len(m.Manifests)

	// The blobs of the repositories taken whole: startWhole counted them as it went through
	// their lists, else they are counted on a goroutine of their own while the rest is
	// assembled (presentWhole).
	present := make(chan int, 1)
	if started != nil {
		present <- started.present
	} else {
		go func() { present <- r.presentWhole(sets) }()
	}
	r.countTransfers(m, st)
	r.tagChanges(m, st)

	rt := r.retire(m)
	st.RetiringManifests, st.RetiringBlobs, st.RetiringBytes = rt.manifests, rt.blobs, rt.bytes
	st.retire = rt.fresh
	sort.Strings(st.retire)
	st.whole = taken
	r.orphans(m, st, r.prevBlobsGone(m, taken, fresh))
	r.membership(m, st)
	// The repositories taken whole kept the manifests (startWhole took the previous
	// generation's, which a closure or retire never replaces) and, unless membership moved a
	// record, their generations: for phase2.DiffKept.
	if started != nil && !started.moved(r.gen) {
		st.kept = taken
	}
	st.BlobsPresent += <-present
	return m, st
}

// prevCopy is the previous generation's manifests and blobs copied (copyPrevious), for
// startWhole.
type prevCopy struct {
	manifests map[layout.Digest]*layout.Manifest
	blobs     *layout.BlobsCopy
}

// copyPrevious copies prev's manifests and blobs maps (maps.Clone copies a map's storage
// wholesale, where inserts hash every key into a fresh map), each blob record copied
// (layout.CopyBlobs). It only reads prev.
func copyPrevious(prev *layout.Meta) *prevCopy {
	return &prevCopy{manifests: maps.Clone(prev.Manifests), blobs: layout.CopyBlobs(prev.Blobs)}
}

// startWhole starts m's manifests and blobs from the previous generation's when the
// repositories taken whole (whole: the previous generation's records of them) list most of
// its records, and reports whether it did: from its copy (copyPrevious, made beside
// discovery, else now), less what only the other repositories list or what any retires.
// m then holds what takeWhole of every repository of whole would give, and the closures are
// taken after. It relies on every record of the previous generation being listed by one of
// its repositories, as in every generation assemble makes: it counts what the repositories
// taken whole list, and when m holds more it leaves m's maps nil and returns nil.
func (r *run) startWhole(m *layout.Meta, whole map[string]*layout.Repository) *carried {
	prev := r.prev
	listed := 0
	for _, pr := range whole {
		listed += len(pr.Manifests) + len(pr.Blobs)
	}
	if len(whole) == 0 || 2*listed < len(prev.Blobs) {
		return nil
	}
	var c *prevCopy
	if r.prevCopy != nil {
		c = <-r.prevCopy // taken once: startWhole changes its maps
	} else {
		c = copyPrevious(prev)
	}
	manifests, blobs, recs := c.manifests, c.blobs.Blobs, c.blobs.Records
	drop := func(list []layout.Digest) {
		for _, d := range list {
			delete(manifests, d)
			delete(blobs, d)
		}
	}
	for name, pr := range prev.Repositories {
		if pr == nil {
			continue
		}
		if whole[name] == nil {
			drop(pr.Manifests)
			drop(pr.Blobs)
		}
		drop(pr.Retiring)
		drop(pr.RetiringBlobs)
	}
	// Count what the repositories taken whole list, each once, and put back what they list of
	// what was dropped: a record seen is marked in Retired (which CarriedBlob leaves zero), as
	// a blob or as a manifest, and cleared after; a listed digest m lacks is noted (missing:
	// whether listed as a manifest) and put back after. A listed manifest or blob is recorded
	// in the previous generation (run.unchanged), so what they list is in m: m holds no more
	// when the counts are its sizes. The digests are counted in two halves side by side
	// (countListed), each marking only its own records and reading the maps only.
	counts := make(chan listedCount, 1)
	go func() { counts <- countListed(whole, blobs, r.blobs, 1) }()
	c0 := countListed(whole, blobs, r.blobs, 0)
	c1 := <-counts
	nBlobs, nManifests, ok := c0.blobs+c1.blobs, c0.manifests+c1.manifests, true
	var back []*layout.Blob
	for _, missing := range []map[layout.Digest]uint8{c0.missing, c1.missing} {
		for d, how := range missing {
			manifest := how&listedManifest != 0
			pb, mf := prev.Blobs[d], prev.Manifests[d]
			if pb == nil || manifest && mf == nil {
				ok = false
				continue
			}
			rec := layout.CarriedBlob(pb)
			blobs[d] = &rec
			back = append(back, &rec)
			if mf != nil {
				manifests[d] = mf
			}
		}
	}
	unmark := func(recs []layout.Blob) {
		for i := range recs {
			recs[i].Retired = time.Time{}
		}
	}
	unmarked := make(chan struct{})
	go func() { unmark(recs[len(recs)/2:]); close(unmarked) }()
	unmark(recs[:len(recs)/2])
	<-unmarked
	if !ok || nBlobs != len(blobs) || nManifests != len(manifests) {
		return nil
	}
	m.Manifests = manifests
	m.StartBlobs(c.blobs) // blobs, which its publish compares with prev's record by record
	return &carried{recs: recs, back: back, prev: prev.Generation, present: c0.present + c1.present}
}

// listedCount is what countListed counts of one half of the digests.
type listedCount struct {
	blobs, manifests int
	// present is presentWhole's count of the half: the digests the repositories list as
	// blobs that no task of the run concerns.
	present int
	missing map[layout.Digest]uint8 // how listed (listedBlob, listedManifest)
}

// How a repository lists a digest: the bits of countListed's marks.
const (
	listedBlob     = 1 << iota // in its Blobs
	listedManifest             // in its Manifests
)

// listedMarks are the marks countListed leaves in a record's Retired, by how the record's
// digest was listed (0: not yet, the zero time).
var listedMarks = [4]time.Time{{}, time.Unix(1, 0), time.Unix(2, 0), time.Unix(3, 0)}

// listedHow is how a record marked t was listed.
func listedHow(t time.Time) uint8 {
	for how := 1; how < len(listedMarks); how++ {
		if t == listedMarks[how] {
			return uint8(how)
		}
	}
	return 0
}

// countListed counts, among the digests of one half (Digest.Half), those the
// repositories of whole list (each once, marking its record's Retired with listedMarks, as
// startWhole describes), those they list as manifests, and those they list as blobs that
// tasks lacks (presentWhole's count); it notes those blobs lacks. It writes only those
// digests' records and reads tasks: its two halves may run side by side.
func countListed(whole map[string]*layout.Repository, blobs map[layout.Digest]*layout.Blob, tasks map[layout.Digest]*blobTask, half byte) listedCount {
	c := listedCount{missing: map[layout.Digest]uint8{}}
	visit := func(d layout.Digest, as uint8) {
		if d.Half() != half {
			return
		}
		var was uint8
		b := blobs[d]
		if b == nil {
			was = c.missing[d]
			c.missing[d] = was | as
		} else {
			was = listedHow(b.Retired)
			b.Retired = listedMarks[was|as]
		}
		if was == 0 {
			c.blobs++
		}
		if was&as != 0 {
			return
		}
		switch as {
		case listedManifest:
			c.manifests++
		case listedBlob:
			if _, ok := tasks[d]; !ok {
				c.present++
			}
		}
	}
	for _, pr := range whole {
		for _, d := range pr.Manifests {
			visit(d, listedManifest)
		}
		for _, d := range pr.Blobs {
			visit(d, listedBlob)
		}
	}
	return c
}

// carried are the records startWhole copied from the previous generation's (generation
// prev); recs may also hold copies of records m lacks, which nothing changes.
type carried struct {
	recs []layout.Blob
	back []*layout.Blob
	prev uint64
	// present is presentWhole's count, made by countListed.
	present int
}

// moved reports whether a record may have a generation (Since) other than the previous
// generation's record of its digest: membership moves a carried blob that joins a subset to
// the generation gen (layout.Meta.SetMembership), and any other only records what it was.
func (c *carried) moved(gen uint64) bool {
	if gen <= c.prev {
		return true
	}
	for i := range c.recs {
		if c.recs[i].Since >= gen {
			return true
		}
	}
	for _, b := range c.back {
		if b.Since >= gen {
			return true
		}
	}
	return false
}

// since is the generation blob d, which the previous generation does not record, first
// appeared in: an orphan's, else this one.
func (r *run) since(d layout.Digest) uint64 {
	if o, ok := r.prev.Orphans[d]; ok {
		return o.Since
	}
	return r.gen
}

// membership records which subsets every blob belongs to (a single-arch image's architecture
// from its config in the tree) and the bytes per subset: from the change since the previous
// generation (layout.Meta.SetMembershipSince: the records assemble carried over from it keep
// theirs unless the change reaches them), or from every manifest (layout.Membership) with
// Options.Verify or in a dry run, which reads no config. A failure (more than
// layout.MaxSubsets subsets) leaves the metadata without subsets, with a warning: every
// mirror then carries everything.
func (r *run) membership(m *layout.Meta, st *stats) {
	now := r.o.Now().UTC()
	var err error
	if r.tree == nil || r.o.Verify {
		var table []string
		var masks map[layout.Digest]uint64
		if table, masks, err = layout.Membership(m, r.configArch); err == nil {
			err = m.SetMembership(table, masks, r.prev, now, r.o.GCGrace)
		}
	} else {
		err = m.SetMembershipSince(r.prev, r.configArch, now, r.o.GCGrace)
	}
	if err != nil {
		r.prog.warnf("subsets not recorded, every mirror carries every blob: %v", err)
		m.Subsets = nil
		for _, b := range m.Blobs {
			b.Subsets, b.Former, b.Left = 0, 0, time.Time{}
		}
		return
	}
	per, total := m.SubsetBytes()
	for _, name := range m.SubsetNames() {
		st.Subsets = append(st.Subsets, SubsetSize{Name: name, Bytes: per[name]})
	}
	st.TotalBytes = total
}

// maxConfigSize bounds the config read for its architecture.
const maxConfigSize = 4 << 20

// configArch reads the architecture of the image config d from the tree; "" when it is not
// there (a dry run that would fetch it) or names none.
func (r *run) configArch(d layout.Digest) string {
	if r.tree == nil {
		return ""
	}
	f, err := os.Open(r.blobPath(d))
	if err != nil {
		return ""
	}
	defer f.Close()
	var c struct {
		Architecture string `json:"architecture"`
	}
	if json.NewDecoder(io.LimitReader(f, maxConfigSize)).Decode(&c) != nil {
		return ""
	}
	return c.Architecture
}

// orphans fills m.Orphans: blobs the previous generation referenced or retired and this one
// neither references nor retires (gone, prevBlobsGone), earlier orphans, and files in blobs/
// that no generation references (left by a failed run). Orphans unreferenced for longer than
// the grace period (a retired file counts from its Retired time) are listed in st.expired for
// deletion and left out of m.Orphans. Nothing in m.Blobs, retiring files included, is ever an orphan.
func (r *run) orphans(m *layout.Meta, st *stats, gone []layout.Digest) {
	now := r.o.Now().UTC()
	expired := map[layout.Digest]bool{}
	add := func(d layout.Digest, o *layout.Orphan) {
		if _, ok := m.Blobs[d]; ok {
			return
		}
		if _, ok := m.Orphans[d]; ok {
			return
		}
		if layout.GraceOver(o.Unreferenced, r.o.GCGrace, now) {
			st.expired = append(st.expired, d)
			expired[d] = true
			st.Deleted++
			st.DeletedBytes += o.Size
			return
		}
		m.Orphans[d] = o
	}
	for d, o := range r.prev.Orphans {
		oc := *o
		add(d, &oc)
	}
	for _, d := range gone {
		b := r.prev.Blobs[d]
		if _, ok := m.Orphans[d]; !ok {
			st.Orphaned++
		}
		unref := now
		if !b.Retired.IsZero() && b.Retired.Before(now) {
			unref = b.Retired
		}
		add(d, &layout.Orphan{Size: b.Size, Since: b.Since, Unreferenced: unref})
	}
	// Files no generation references: those listed when the run started that the previous
	// generation does not record, and those fetched by this run for tags that then failed.
	for _, e := range r.strayFiles() {
		d, err := layout.ParseDigest("sha256:" + e.Name())
		if err != nil {
			continue
		}
		if _, ok := m.Blobs[d]; ok {
			continue
		}
		if _, ok := m.Orphans[d]; ok {
			continue
		}
		if expired[d] {
			continue
		}
		var size int64
		if fi, err := e.Info(); err == nil {
			size = fi.Size()
		}
		add(d, &layout.Orphan{Size: size, Since: r.gen, Unreferenced: now})
	}
	for d, t := range r.blobs {
		select {
		case <-t.done:
		default:
			r.mu.Lock()
			r.unclean = true // still running for a failed tag: the next run's listing finds it
			r.mu.Unlock()
			continue
		}
		if t.state != blobFetched || expired[d] {
			continue
		}
		if _, ok := m.Blobs[d]; ok {
			continue
		}
		if _, ok := m.Orphans[d]; ok {
			continue
		}
		add(d, &layout.Orphan{Size: t.size, Since: r.gen, Unreferenced: now})
	}
	sort.Slice(st.expired, func(i, j int) bool { return st.expired[i].String() < st.expired[j].String() })
	st.Orphans = len(m.Orphans)
	if len(m.Orphans) == 0 {
		m.Orphans = nil
	}
}

// prevBlobsGone are the blobs of the previous generation that m lacks. It looks up only the
// digests the previous generation lists in a repository m did not take whole (whole: those
// of a repository taken whole are all in m) or retires, and takes what it finds when the
// count agrees: len(prev.Blobs) - (len(m.Blobs) - fresh), fresh being the records assemble
// made for blobs the previous generation lacks. A record counted twice makes the count too
// high, never too low; when it does not agree, every blob of the previous generation is
// looked up.
func (r *run) prevBlobsGone(m *layout.Meta, whole map[string]bool, fresh int) []layout.Digest {
	var gone []layout.Digest
	seen := map[layout.Digest]bool{}
	look := func(list []layout.Digest) {
		for _, d := range list {
			if seen[d] {
				continue
			}
			seen[d] = true
			if _, ok := r.prev.Blobs[d]; !ok {
				continue
			}
			if _, ok := m.Blobs[d]; !ok {
				gone = append(gone, d)
			}
		}
	}
	for name, pr := range r.prev.Repositories {
		if pr == nil {
			continue
		}
		if !whole[name] {
			look(pr.Manifests)
			look(pr.Blobs)
		}
		look(pr.Retiring)
		look(pr.RetiringBlobs)
	}
	if len(r.prev.Blobs)-(len(m.Blobs)-fresh) == len(gone) {
		return gone
	}
	gone = gone[:0]
	for d := range r.prev.Blobs {
		if _, ok := m.Blobs[d]; !ok {
			gone = append(gone, d)
		}
	}
	return gone
}

// strayFiles are the files of blobs/ the previous generation does not record: listed when
// the run started, or now (a dry run).
func (r *run) strayFiles() []os.DirEntry {
	if r.tree == nil {
		return nil
	}
	if r.strays != nil {
		return *r.strays
	}
	ents, err := readDirUnsorted(r.blobDir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		r.prog.warnf("listing %s for garbage collection: %v", r.blobDir, err)
	}
	var out []os.DirEntry
	for _, e := range ents {
		if isStray(r.prev, e) {
			out = append(out, e)
		}
	}
	return out
}

// recordedIn reports whether prev records d with size, and Options.Verify does not ask to
// check the disk: then the file is in place (presentIn).
func (r *run) recordedIn(prev *layout.Meta, d layout.Digest, size int64) bool {
	if r.tree == nil || r.o.Verify {
		return false
	}
	pb := prev.Blobs[d]
	return pb != nil && pb.Size == size
}

// present reports whether the tree holds d with the given size. A file the previous
// generation records with that size is there without a look (a generation's files are in
// place and synced before it is published, and only files it lacks are ever deleted), unless
// Options.Verify asks to check the disk; any other is looked up.
func (r *run) present(d layout.Digest, size int64) bool { return r.presentIn(r.prev, d, size) }

func (r *run) presentIn(prev *layout.Meta, d layout.Digest, size int64) bool {
	if r.tree == nil {
		return false
	}
	if r.recordedIn(prev, d, size) {
		return true
	}
	fi, err := os.Stat(r.blobPath(d))
	return err == nil && fi.Mode().IsRegular() && fi.Size() == size
}

func sortedDigests(set map[layout.Digest]bool) []layout.Digest {
	out := make([]layout.Digest, 0, len(set))
	for d := range set {
		out = append(out, d)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return out
}

// presentWhole counts the blobs the repositories taken whole list, each once, that no task
// of the run concerns: present (countTransfers counts the others). It only reads the
// previous generation's records of those repositories and r.blobs, which discovery no longer
// changes.
func (r *run) presentWhole(sets map[string]*repoSets) int {
	n := 0
	for _, s := range sets {
		if s.reused {
			n += len(s.whole.Blobs)
		}
	}
	whole := make(map[layout.Digest]bool, n) // sized: grown insert by insert, it rehashes
	present := 0
	for _, s := range sets {
		if !s.reused {
			continue
		}
		for _, d := range s.whole.Blobs {
			if _, ok := r.blobs[d]; !ok && !whole[d] {
				whole[d] = true
				present++
			}
		}
	}
	return present
}

// countTransfers counts the blobs m references by what this run did with them (fetched,
// present, to fetch in a dry run), but for the blobs of the repositories taken whole that no
// task concerns (presentWhole), and, in a dry run, the manifests to write.
func (r *run) countTransfers(m *layout.Meta, st *stats) {
	for d, t := range r.blobs {
		if _, ok := m.Blobs[d]; !ok {
			continue
		}
		switch t.state {
		case blobFetched:
			st.BlobsFetched++
			st.BytesFetched += t.size
		case blobPresent:
			st.BlobsPresent++
		case blobWouldFetch:
			st.ToFetch++
			st.ToFetchBytes += t.size
		}
	}
	if r.o.DryRun {
		for d, mf := range m.Manifests {
			if !r.present(d, int64(len(mf.Data))) {
				st.ManifestsWritten++
			}
		}
	}
}

// manifestsToWrite are the manifests of m that blobs/ lacks (or, with Options.Verify, holds
// corrupt). The manifests that only repositories taken whole (whole) reference are not
// looked at: run.unchanged found each recorded, so present, as Options.Verify is off.
func (r *run) manifestsToWrite(m *layout.Meta, whole map[string]bool) []layout.Digest {
	var out []layout.Digest
	if len(whole) > 0 && !r.o.Verify {
		seen := map[layout.Digest]bool{}
		for name, repo := range m.Repositories {
			lists := [][]layout.Digest{repo.Retiring}
			if !whole[name] {
				lists = append(lists, repo.Manifests)
			}
			for _, l := range lists {
				for _, d := range l {
					if seen[d] {
						continue
					}
					seen[d] = true
					if mf := m.Manifests[d]; mf != nil && !r.present(d, int64(len(mf.Data))) {
						out = append(out, d)
					}
				}
			}
		}
		return out
	}
	for d, mf := range m.Manifests {
		if r.present(d, int64(len(mf.Data))) && (!r.o.Verify || r.tree.VerifyBlob(d, -1) == nil) {
			continue
		}
		out = append(out, d)
	}
	return out
}

// tagChanges records the tags m adds, changes and removes against the previous generation.
func (r *run) tagChanges(m *layout.Meta, st *stats) {
	for name, repo := range m.Repositories {
		pr := r.prev.Repositories[name]
		for tag, d := range repo.Tags {
			switch {
			case pr == nil || pr.Tags[tag].IsZero():
				st.added = append(st.added, tagChange{ref: name + ":" + tag, new: d})
			case pr.Tags[tag] != d:
				st.changed = append(st.changed, tagChange{ref: name + ":" + tag, old: pr.Tags[tag], new: d})
			}
		}
	}
	for name, pr := range r.prev.Repositories {
		for tag, d := range pr.Tags {
			if repo := m.Repositories[name]; repo == nil || repo.Tags[tag].IsZero() {
				st.removed = append(st.removed, tagChange{ref: name + ":" + tag, old: d})
			}
		}
	}
	for _, l := range [][]tagChange{st.added, st.changed, st.removed} {
		sort.Slice(l, func(i, j int) bool { return l[i].ref < l[j].ref })
	}
	st.TagsAdded, st.TagsChanged, st.TagsRemoved = len(st.added), len(st.changed), len(st.removed)
}

// repoSets is what one repository of the generation holds so far. Tags share closures (one
// per manifest, depth and repository in a run): each repository takes each closure once, and
// each referrer once per subject.
type repoSets struct {
	manifests, blobs map[layout.Digest]bool
	closures         map[*closure]bool
	referrers        map[layout.Digest]map[layout.Digest]bool
	reused           bool // the previous generation's record taken whole (takeWhole)
	// whole is that record: its Manifests and Blobs are the repository's, added to
	// manifests and blobs only if a closure is taken too (lists).
	whole *layout.Repository
}

// lists are the repository's manifests and blobs, sorted: a record taken whole (and
// nothing else) gives its lists as they are when they are sorted without duplicates, as
// every generation's are; else they are those of the sets.
func (s *repoSets) lists() (manifests, blobs []layout.Digest) {
	if w := s.whole; w != nil {
		if len(s.manifests) == 0 && len(s.blobs) == 0 && strictlySorted(w.Manifests) && strictlySorted(w.Blobs) {
			return append([]layout.Digest{}, w.Manifests...), append([]layout.Digest{}, w.Blobs...) // never nil, as sortedDigests
		}
		for _, d := range w.Manifests {
			s.manifests[d] = true
		}
		for _, d := range w.Blobs {
			s.blobs[d] = true
		}
	}
	return sortedDigests(s.manifests), sortedDigests(s.blobs)
}

// strictlySorted reports whether list is in sortedDigests' order, without duplicates.
func strictlySorted(list []layout.Digest) bool {
	for i := 1; i < len(list); i++ {
		if list[i-1].String() >= list[i].String() {
			return false
		}
	}
	return true
}

// takeWhole adds the manifests and blobs of pr, the previous generation's record of the
// repository (unchanged), to the repository and to m, as take would from their closures:
// each new to m with the previous generation's record carried over (layout.CarriedBlob).
func (s *repoSets) takeWhole(m, prev *layout.Meta, pr *layout.Repository, record func(layout.Digest, int64) *layout.Blob) {
	// The new records in one allocation: a repository taken whole adds most of its own.
	s.whole = pr
	recs := make([]layout.Blob, 0, len(pr.Manifests)+len(pr.Blobs))
	rec := func(d layout.Digest, pb *layout.Blob, size int64) *layout.Blob {
		if pb == nil { // not in a repository taken whole (run.unchanged): as take's
			return record(d, size)
		}
		recs = append(recs, layout.CarriedBlob(pb))
		b := &recs[len(recs)-1]
		b.Size = size
		return b
	}
	for _, d := range pr.Manifests {
		if _, ok := m.Manifests[d]; !ok {
			mf := prev.Manifests[d]
			m.Manifests[d] = mf
			m.Blobs[d] = rec(d, prev.Blobs[d], int64(len(mf.Data)))
		}
	}
	for _, d := range pr.Blobs {
		if _, ok := m.Blobs[d]; !ok {
			pb := prev.Blobs[d]
			m.Blobs[d] = rec(d, pb, pb.Size)
		}
	}
}

// take adds one closure's manifests, blobs and referrers to the repository and to m (a
// manifest or blob new to m with its record); foreign layers are counted once in st.
func (s *repoSets) take(m *layout.Meta, repo *layout.Repository, cl *closure, record func(layout.Digest, int64) *layout.Blob, counted map[layout.Digest]bool, st *stats) {
	for d, n := range cl.nodes {
		s.manifests[d] = true
		if _, ok := m.Manifests[d]; !ok {
			m.Manifests[d] = &layout.Manifest{MediaType: n.mediaType, Data: n.data}
			m.Blobs[d] = record(d, int64(len(n.data)))
		}
	}
	for d, t := range cl.blobs {
		if t.state == blobForeign {
			if !counted[d] {
				counted[d] = true
				st.ForeignSkipped++
			}
			continue
		}
		s.blobs[d] = true
		if _, ok := m.Blobs[d]; !ok {
			m.Blobs[d] = record(d, t.size)
		}
	}
	for subj, descs := range cl.referrers {
		if repo.Referrers == nil {
			repo.Referrers = map[layout.Digest][]layout.Descriptor{}
		}
		have := s.referrers[subj]
		if have == nil {
			have = map[layout.Digest]bool{}
			s.referrers[subj] = have
		}
		for _, desc := range descs {
			if !have[desc.Digest] {
				have[desc.Digest] = true
				repo.Referrers[subj] = append(repo.Referrers[subj], desc)
			}
		}
	}
}
