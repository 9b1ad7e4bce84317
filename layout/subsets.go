package layout

// Subsets: what part of the tree a mirror carries. The membership rules are part of the tree
// format (docs/tree-format.md, "Membership").

import (
	"cmp"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/regmirror/regmirror/internal/trunc"
)

// ArchiveSubset is the subset of the blobs only archived tags reference.
const ArchiveSubset = "archive"

// AnyArchitecture is the entry of Meta.Subsets that stands for every architecture subset,
// whether or not the tree has an image of it: the blobs no platform claims (indexes, artifacts,
// signatures, referrers).
const AnyArchitecture = "*"

// Architectures are the architecture subsets a mirror may name: the GOARCH values the OCI
// image index specification lists for platform.architecture.
var Architectures = []string{"386", "amd64", "arm", "arm64", "loong64", "mips", "mips64", "mips64le", "mipsle", "ppc64", "ppc64le", "riscv64", "s390x", "wasm"}

// MaxSubsets bounds Meta.Subsets: membership is a 64-bit mask.
const MaxSubsets = 64

// SubsetsDir is the directory of a publication holding one rsync filter file per subset,
// <name>.rsync-filter: "+ /blobs/sha256/<hex>" for every blob a mirror carrying the subset
// holds (members, and former members within the grace), then nothing else. A mirror carrying
// several subsets merges their files and excludes the rest of blobs/ (deploy/mirror-sync).
const SubsetsDir = "subsets"

// SubsetFilterPath is the path of subset name's filter file inside a publication.
func SubsetFilterPath(name string) string { return SubsetsDir + "/" + name + ".rsync-filter" }

// ValidSubset checks a subset name a mirror's content gives: an OCI architecture or archive.
func ValidSubset(name string) error {
	if name == ArchiveSubset {
		return nil
	}
	for _, a := range Architectures {
		if a == name {
			return nil
		}
	}
	hint := ""
	switch strings.ToLower(name) {
	case "x86_64", "x86-64", "x64":
		hint = " (x86_64 is amd64)"
	case "aarch64":
		hint = " (aarch64 is arm64)"
	case "i386", "i686", "x86":
		hint = " (i386 is 386)"
	case "armhfp", "armv7", "armv7l", "armhf":
		hint = " (32-bit ARM is arm)"
	}
	return fmt.Errorf("%q is not a subset: want an OCI architecture (%s) or %s%s", trunc.String(name), strings.Join(Architectures, " "), ArchiveSubset, hint)
}

// ContentMask is the membership mask over m.Subsets of what a mirror with content carries:
// every architecture when content is empty (and never the archive), else the named
// architectures and the blobs no platform claims, and the archive when named. Metadata
// without a subset table gives every bit: every mirror carries everything.
func (m *Meta) ContentMask(content []string) uint64 {
	if len(m.Subsets) == 0 {
		return ^uint64(0)
	}
	var mask uint64
	for i, s := range m.Subsets {
		switch {
		case s == ArchiveSubset:
			if contains(content, ArchiveSubset) {
				mask |= 1 << i
			}
		case len(content) == 0:
			mask |= 1 << i
		case s == AnyArchitecture:
			for _, c := range content {
				if c != ArchiveSubset {
					mask |= 1 << i
				}
			}
		case contains(content, s):
			mask |= 1 << i
		}
	}
	return mask
}

// Carries reports whether a mirror whose content has mask (ContentMask) carries b: b is a
// member of one of its subsets. A blob without membership (metadata written before subsets)
// is carried by every mirror.
func Carries(mask uint64, b *Blob) bool { return b != nil && (b.Subsets == 0 || b.Subsets&mask != 0) }

// Carries reports whether mirror mi carries blob b.
func (m *Meta) Carries(mi *Mirror, b *Blob) bool { return Carries(m.ContentMask(mi.Content), b) }

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// bitOf returns the bit of name in table, adding it.
func bitOf(table *[]string, name string) (uint64, error) {
	for i, s := range *table {
		if s == name {
			return 1 << i, nil
		}
	}
	if len(*table) == MaxSubsets {
		return 0, fmt.Errorf("more than %d subsets", MaxSubsets)
	}
	*table = append(*table, name)
	return 1 << (len(*table) - 1), nil
}

// membershipManifest is what membership reads of a manifest.
type membershipManifest struct {
	Manifests []struct {
		Digest   Digest `json:"digest"`
		Platform *struct {
			Architecture string `json:"architecture"`
		} `json:"platform"`
	} `json:"manifests"`
	Config *struct {
		Digest Digest `json:"digest"`
	} `json:"config"`
	Layers []struct {
		Digest Digest `json:"digest"`
	} `json:"layers"`
	Blobs []struct { // OCI artifact manifests (draft)
		Digest Digest `json:"digest"`
	} `json:"blobs"`
}

// Membership computes which subsets every blob of m belongs to, from m's tags, their
// manifests, m's archived tags and referrers:
//
//   - a blob referenced by a tag that is not archived belongs to the architecture of every
//     image of such a tag referencing it: an index's child by its platform.architecture
//     (children of a nested index inherit it when they name none), a single-arch image by its
//     config's architecture (configArch; "" when unknown); a blob no platform claims (the
//     index itself, artifacts, signatures, referrers, "unknown" platforms, architectures
//     that are not in Architectures) belongs to every architecture subset (AnyArchitecture);
//   - a blob only archived tags (and their referrers) reference belongs to ArchiveSubset only.
//
// It returns the subset table (sorted, AnyArchitecture and ArchiveSubset last when used) and
// each blob's mask over it. A blob of m.Blobs no tag reaches (retiring content) gets none: it
// keeps the membership it had (SetMembership). It reads m and changes nothing.
func Membership(m *Meta, configArch func(Digest) string) (table []string, masks map[Digest]uint64, err error) {
	w := newMemberWalk(m, configArch)
	names := make([]string, 0, len(m.Repositories))
	for name := range m.Repositories {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		r := m.Repositories[name]
		for tag, d := range r.Tags {
			w.walk(d, "", r.IsArchived(tag), 0)
		}
	}
	// Referrers follow their subjects: live if the subject is, archived if only archived tags
	// reach it; no platform claims them. A referrer may have referrers: repeat until stable.
	for changed, round := true, 0; changed && round < 16; round++ {
		changed = false
		for _, name := range names {
			for subj, descs := range m.Repositories[name].Referrers {
				for _, desc := range descs {
					d, err := ParseDigest(desc.Digest.String())
					if err != nil {
						continue
					}
					if w.live[subj] != 0 && !w.seen[walkKey{d, "", false}] {
						w.walk(d, "", false, 0)
						changed = true
					}
					if w.archived[subj] && !w.seen[walkKey{d, "", true}] {
						w.walk(d, "", true, 0)
						changed = true
					}
				}
			}
		}
	}
	return membershipMasks(m.Blobs, w.live, w.archived)
}

// MembershipSince is Membership(m, configArch) computed from the change since prev, the
// previous generation (with its membership recorded by SetMembership), rather than from every
// manifest of m: a root (a tag with its digest and whether it is archived) that m and prev
// share marks the same blobs in both, so only the roots that changed (prev's, over prev's
// manifests, and m's, over m's) are walked. A blob no changed root reaches keeps the
// membership prev records; one they reach gets prev's joined with what m's changed roots
// mark, unless prev's may hold what only a root that left gave it (a blob that lost an
// architecture) or a membership prev gave it without any root (retiring content): then every
// tag of the repositories of m that list the blob (Repository.Manifests and Blobs) is walked
// again for it. What SetMembership records from
// the result is what it records from Membership's; their tables and masks may differ only by
// the subsets of content no tag reaches (SetMembership gives it prev's). Without a previous
// membership, or with referrers in either generation (a referrer's membership follows its
// subject's, wherever that is), it is Membership.
//
// It relies on what a generation's metadata holds: the blobs of m.Blobs a tag's walk reaches
// are those its repository lists for it (the tag's closure), a blob of prev.Blobs without
// Retired is listed by a repository, and configArch answers for a digest what it answered for
// prev.
func MembershipSince(m, prev *Meta, configArch func(Digest) string) (table []string, masks map[Digest]uint64, err error) {
	if prev == nil || len(prev.Subsets) == 0 || len(prev.Subsets) > MaxSubsets || hasReferrers(prev) || hasReferrers(m) {
		return Membership(m, configArch)
	}
	c := newChangedRoots(m, prev, configArch)
	live, archived := make(map[Digest]uint32, len(m.Blobs)), map[Digest]bool{} // nearly every blob is live
	set := func(d Digest, l uint32, a bool) {
		if l != 0 {
			live[d] = l
		}
		if a {
			archived[d] = true
		}
	}
	redo := map[Digest]bool{}
	for d := range m.Blobs {
		if l, a, again := c.marks(d, prev.Blobs[d]); again {
			redo[d] = true
		} else {
			set(d, l, a)
		}
	}
	c.redo(redo, set)
	return membershipMasks(m.Blobs, live, archived)
}

// changedRoots are MembershipSince's walks of the roots that changed between prev and m: gone
// from m (over prev's manifests), or new in it (over m's).
type changedRoots struct {
	m, prev    *Meta
	configArch func(Digest) string
	gone, came *memberWalk
	// What a bit of prev's masks stands for, as walk marks it.
	bitLive     [MaxSubsets]uint32
	bitArchived uint64
}

// newChangedRoots walks the roots that changed between prev (with at most MaxSubsets subsets)
// and m.
func newChangedRoots(m, prev *Meta, configArch func(Digest) string) *changedRoots {
	c := &changedRoots{m: m, prev: prev, configArch: configArch, gone: newMemberWalk(prev, configArch), came: newMemberWalk(m, configArch)}
	for i, s := range prev.Subsets {
		if s == ArchiveSubset {
			c.bitArchived |= 1 << i
		} else {
			c.bitLive[i] = archBit(s)
		}
	}
	for name, pr := range prev.Repositories {
		r := m.Repositories[name]
		for tag, d := range pr.Tags {
			if r == nil || !sameRoot(r, pr, tag, d) {
				c.gone.walk(d, "", pr.IsArchived(tag), 0)
			}
		}
	}
	for name, r := range m.Repositories {
		pr := prev.Repositories[name]
		for tag, d := range r.Tags {
			if pr == nil || !sameRoot(pr, r, tag, d) {
				c.came.walk(d, "", r.IsArchived(tag), 0)
			}
		}
	}
	return c
}

// prevMarks are the marks prev's mask stands for.
func (c *changedRoots) prevMarks(mask uint64) (live uint32, archived bool) {
	for i := range c.prev.Subsets {
		if mask&(1<<i) != 0 {
			live |= c.bitLive[i]
		}
	}
	return live, mask&c.bitArchived != 0
}

// marks are the marks MembershipSince gives blob d of m, whose record in prev is pb (nil for
// none); again when they are to be walked again (redo).
func (c *changedRoots) marks(d Digest, pb *Blob) (live uint32, archived, again bool) {
	gl, ga := c.gone.live[d], c.gone.archived[d]
	cl, ca := c.came.live[d], c.came.archived[d]
	switch {
	case gl == 0 && !ga && cl == 0 && !ca: // no changed root reaches it
		if pb == nil {
			return 0, false, true
		}
		live, archived = c.prevMarks(pb.Subsets)
		return live, archived, false
	case gl&^cl != 0 || pb == nil && (gl != 0 || ga):
		// A root that left gave it an architecture no new one does: do the others? (One
		// that left gave it the archive alone: it keeps prev's membership whether or not
		// another root reaches it, since content no root reaches keeps it too.)
		return 0, false, true
	case gl != 0 || ga:
		// Reached in prev: its membership there holds what the unchanged roots give it.
		pl, pa := c.prevMarks(pb.Subsets)
		return pl | cl, pa || ca, false
	case pb == nil: // new: no unchanged root reaches it
		return cl, ca, false
	case pb.Retired.IsZero():
		// Only new roots reach it, and prev lists it in a repository: its membership
		// there is the unchanged roots'.
		pl, pa := c.prevMarks(pb.Subsets)
		return pl | cl, pa || ca, false
	default:
		// Only new roots reach it, and prev retires it somewhere: its membership there is
		// the unchanged roots' when they reach it, else retiring content's. Either way
		// when it adds nothing.
		pl, pa := c.prevMarks(pb.Subsets)
		if reducedMarks(pl|cl, pa || ca) != reducedMarks(cl, ca) {
			return 0, false, true
		}
		return cl, ca, false
	}
}

// redo gives the blobs of set the marks of every tag of the repositories of m listing one of
// them, and of the new roots.
func (c *changedRoots) redo(blobs map[Digest]bool, set func(d Digest, live uint32, archived bool)) {
	if len(blobs) == 0 {
		return
	}
	again := newMemberWalk(c.m, c.configArch)
	for _, r := range c.m.Repositories {
		if !listsAny(r, blobs) {
			continue
		}
		for tag, d := range r.Tags {
			again.walk(d, "", r.IsArchived(tag), 0)
		}
	}
	for d := range blobs {
		set(d, again.live[d]|c.came.live[d], again.archived[d] || c.came.archived[d])
	}
}

// CarriedBlob is the record a generation starts with for a blob the previous generation
// records as pb: its size, Since and membership (Subsets, Former, Left), but not Retired
// (each generation retires anew). SetMembershipSince relies on it.
func CarriedBlob(pb *Blob) Blob {
	return Blob{Size: pb.Size, Since: pb.Since, Subsets: pb.Subsets, Former: pb.Former, Left: pb.Left}
}

// SetMembershipSince records in m what SetMembership records from MembershipSince(m, prev,
// configArch), looking up and recording again only the blobs the change concerns: those a
// changed root reaches, and those whose record is not carried from prev. It relies on what
// MembershipSince relies on, and on m's records: one whose Subsets is not 0 is CarriedBlob of
// prev's record of its digest. Such a record no changed root reaches keeps the membership it
// carries (MembershipSince gives it prev's), and loses its Former subsets once the grace after
// Left is over, without a look at prev; a record with Subsets 0 (new, or made afresh) is
// looked up in prev. When the subset table is prev's, the records that keep their membership
// are the only ones not rewritten. Where MembershipSince is Membership (no previous
// membership, referrers), or prev's table names what no walk marks, it is SetMembership's
// from MembershipSince.
func (m *Meta) SetMembershipSince(prev *Meta, configArch func(Digest) string, now time.Time, grace time.Duration) error {
	valid, ok := carriedTable(prev)
	if !ok || hasReferrers(prev) || hasReferrers(m) {
		table, masks, err := MembershipSince(m, prev, configArch)
		if err != nil {
			return err
		}
		return m.SetMembership(table, masks, prev, now, grace)
	}
	c := newChangedRoots(m, prev, configArch)
	// Every carried record as if no changed root reached it: what SetMembership records
	// from prev's marks (its subsets; the subsets it left, within the grace), over prev's
	// table. kept are the subsets of prev those records name, which SetMembership adds to its
	// table (a blob's subsets in prev and, within the grace, its former ones). A mask mixing
	// the archive with architectures is not what marks give: looked up.
	var kept uint64
	touched := map[Digest]*Blob{}
	for d, b := range m.Blobs {
		sub := b.Subsets
		if sub == 0 || sub&^valid != 0 || sub&c.bitArchived != 0 && sub != c.bitArchived {
			touched[d] = b
			continue
		}
		kept |= sub
		if !b.Left.IsZero() && now.Sub(b.Left) < grace {
			kept |= b.Former & valid
			b.Former &= valid &^ sub
		} else {
			b.Former = 0
		}
		if b.Former == 0 {
			b.Left = time.Time{}
		}
	}
	touch := func(d Digest) {
		if b := m.Blobs[d]; b != nil {
			touched[d] = b
		}
	}
	for _, w := range []*memberWalk{c.gone, c.came} {
		for d := range w.live {
			touch(d)
		}
		for d := range w.archived {
			touch(d)
		}
	}
	// The touched blobs as SetMembership(MembershipSince) records them.
	live, archived := make(map[Digest]uint32, len(touched)), map[Digest]bool{}
	mark := func(d Digest, l uint32, a bool) {
		if l != 0 {
			live[d] = l
		}
		if a {
			archived[d] = true
		}
	}
	pbs := make(map[Digest]*Blob, len(touched))
	redo := map[Digest]bool{}
	for d := range touched {
		pb := prev.Blobs[d]
		pbs[d] = pb
		if l, a, again := c.marks(d, pb); again {
			redo[d] = true
		} else {
			mark(d, l, a)
		}
	}
	c.redo(redo, mark)
	var used uint32
	for _, l := range live {
		used |= l
	}
	mt := newMaskTable(used)
	type reach struct {
		mask uint64
		ok   bool
	}
	masks := make(map[Digest]reach, len(touched))
	for d := range touched {
		mask, ok, err := mt.mask(live[d], archived[d])
		if err != nil {
			return err
		}
		masks[d] = reach{mask, ok}
	}
	s := newMemberSetter(mt.table, prev, m.Generation, now, grace)
	for d, b := range touched {
		if err := s.blob(b, masks[d].mask, masks[d].ok, pbs[d]); err != nil {
			return err
		}
	}
	if err := s.orphans(m); err != nil {
		return err
	}
	if _, err := s.add(kept); err != nil {
		return err
	}
	sorted := canonicalTable(s.t)
	for _, b := range touched {
		b.Subsets, b.Former = remap(b.Subsets, s.t, sorted), remap(b.Former, s.t, sorted)
	}
	for _, o := range m.Orphans {
		o.Subsets = remap(o.Subsets, s.t, sorted)
	}
	if !equalStrings(sorted, prev.Subsets) {
		for d, b := range m.Blobs {
			if touched[d] == nil {
				b.Subsets, b.Former = remap(b.Subsets, prev.Subsets, sorted), remap(b.Former, prev.Subsets, sorted)
			}
		}
	}
	m.Subsets = sorted
	return nil
}

// carriedTable reports whether prev's subset table is one SetMembershipSince carries
// records over: at most MaxSubsets distinct subsets that marks give (architectures,
// AnyArchitecture, ArchiveSubset); valid has a bit for each.
func carriedTable(prev *Meta) (valid uint64, ok bool) {
	if prev == nil || len(prev.Subsets) == 0 || len(prev.Subsets) > MaxSubsets {
		return 0, false
	}
	for i, s := range prev.Subsets {
		if slices.Index(prev.Subsets, s) != i || s != AnyArchitecture && s != ArchiveSubset && !slices.Contains(Architectures, s) {
			return 0, false
		}
		valid |= 1 << i
	}
	return valid, true
}

// sameRoot reports whether tag is a root of r as it is of other, where it names d: the same
// digest, archived or not alike.
func sameRoot(r, other *Repository, tag string, d Digest) bool {
	rd, ok := r.Tags[tag]
	return ok && rd == d && r.IsArchived(tag) == other.IsArchived(tag)
}

// reducedMarks is the membership marks give: the architectures when any, else the archive
// or nothing.
func reducedMarks(live uint32, archived bool) uint64 {
	if live != 0 {
		return uint64(live)
	}
	if archived {
		return 1 << 32
	}
	return 0
}

func hasReferrers(m *Meta) bool {
	for _, r := range m.Repositories {
		if len(r.Referrers) > 0 {
			return true
		}
	}
	return false
}

// listsAny reports whether r lists one of set among its manifests or blobs.
func listsAny(r *Repository, set map[Digest]bool) bool {
	for _, l := range [][]Digest{r.Manifests, r.Blobs} {
		for _, d := range l {
			if set[d] {
				return true
			}
		}
	}
	return false
}

// memberWalk is Membership's walk from roots (tags, referrers) down their manifests: what
// it marks, per digest.
type memberWalk struct {
	m          *Meta
	configArch func(Digest) string
	live       map[Digest]uint32 // the architectures claiming a blob (archBit)
	archived   map[Digest]bool   // reached from an archived root
	seen       map[walkKey]bool
}

type walkKey struct {
	d        Digest
	arch     string
	archived bool
}

func newMemberWalk(m *Meta, configArch func(Digest) string) *memberWalk {
	return &memberWalk{m: m, configArch: configArch, live: map[Digest]uint32{}, archived: map[Digest]bool{}, seen: map[walkKey]bool{}}
}

func (w *memberWalk) mark(d Digest, arch string, arc bool) {
	if arc {
		w.archived[d] = true
		return
	}
	// No platform, or one that is no subset a mirror may name (a hostile source's
	// invention as well): every architecture mirror carries it.
	w.live[d] |= archBit(arch)
}

// walk marks manifest d, reached with architecture arch (from an index; "" for none) from a
// root archived or not, and what it references.
func (w *memberWalk) walk(d Digest, arch string, arc bool, depth int) {
	k := walkKey{d, arch, arc}
	if w.seen[k] || depth > 16 {
		return
	}
	w.seen[k] = true
	mf := w.m.Manifests[d]
	if mf == nil {
		return
	}
	var p membershipManifest
	if json.Unmarshal(mf.Data, &p) != nil {
		w.mark(d, "", arc)
		return
	}
	if p.Manifests != nil {
		w.mark(d, "", arc) // an index: no platform claims it
		for _, c := range p.Manifests {
			ca := arch
			if c.Platform != nil && c.Platform.Architecture != "" {
				ca = c.Platform.Architecture
				if ca == "unknown" { // attestations: no platform
					ca = ""
				}
			}
			w.walk(c.Digest, ca, arc, depth+1)
		}
		return
	}
	a := arch
	if a == "" && p.Config != nil && w.configArch != nil {
		a = w.configArch(p.Config.Digest)
	}
	w.mark(d, a, arc)
	if p.Config != nil {
		w.mark(p.Config.Digest, a, arc)
	}
	for _, l := range p.Layers {
		w.mark(l.Digest, a, arc)
	}
	for _, b := range p.Blobs {
		w.mark(b.Digest, a, arc)
	}
}

// membershipMasks turns the marks of the blobs of a generation (live: architectures,
// archBit; archived) into Membership's subset table and masks.
func membershipMasks(blobs map[Digest]*Blob, live map[Digest]uint32, archived map[Digest]bool) (table []string, masks map[Digest]uint64, err error) {
	var used uint32
	for _, set := range live {
		used |= set
	}
	t := newMaskTable(used)
	masks = make(map[Digest]uint64, len(blobs))
	for d := range blobs {
		mask, ok, err := t.mask(live[d], archived[d])
		if err != nil {
			return nil, nil, err
		}
		if ok { // else not reached from any tag (retiring content): see SetMembership
			masks[d] = mask
		}
	}
	table = t.table
	// AnyArchitecture and ArchiveSubset last, whatever order the blobs came in.
	sorted := canonicalTable(table)
	if !equalStrings(sorted, table) {
		for d, mask := range masks {
			masks[d] = remap(mask, table, sorted)
		}
		table = sorted
	}
	return table, masks, nil
}

// maskTable is the subset table membershipMasks builds as it gives blobs their masks: the
// architectures used (sorted), then AnyArchitecture and ArchiveSubset as blobs need them.
type maskTable struct{ table []string }

// archBitNames are the names of archBit's bits.
var archBitNames = append(slices.Clone(Architectures), AnyArchitecture)

// newMaskTable starts a table with the architectures of used (archBit's bits).
func newMaskTable(used uint32) *maskTable {
	t := &maskTable{}
	for i, a := range Architectures {
		if used&(1<<i) != 0 {
			t.table = append(t.table, a)
		}
	}
	sort.Strings(t.table)
	return t
}

// mask is the mask over the table that marks (live: architectures, archBit; archived) give a
// blob, adding the subsets the table lacks; ok is false without marks (not reached).
func (t *maskTable) mask(live uint32, archived bool) (mask uint64, ok bool, err error) {
	switch {
	case live != 0:
		for i, a := range archBitNames {
			if live&(1<<i) == 0 {
				continue
			}
			bit, err := bitOf(&t.table, a)
			if err != nil {
				return 0, false, err
			}
			mask |= bit
		}
		return mask, true, nil
	case archived:
		mask, err = bitOf(&t.table, ArchiveSubset)
		return mask, err == nil, err
	}
	return 0, false, nil
}

// archBit is arch's bit in Membership's per-blob set: 1 << its index in Architectures, or
// 1 << len(Architectures) (AnyArchitecture) for "" and names that are not in Architectures.
func archBit(arch string) uint32 {
	i := slices.Index(Architectures, arch)
	if i < 0 {
		i = len(Architectures)
	}
	return 1 << i
}

// canonicalTable orders a subset table: architectures sorted, then AnyArchitecture, then
// ArchiveSubset.
func canonicalTable(t []string) []string {
	out := append([]string(nil), t...)
	rank := func(s string) int {
		switch s {
		case AnyArchitecture:
			return 1
		case ArchiveSubset:
			return 2
		}
		return 0
	}
	sort.Slice(out, func(i, j int) bool {
		if ri, rj := rank(out[i]), rank(out[j]); ri != rj {
			return ri < rj
		}
		return out[i] < out[j]
	})
	return out
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// remap translates mask over table from into table to (names missing from to are dropped).
func remap(mask uint64, from, to []string) uint64 {
	var out uint64
	for i, s := range from {
		if mask&(1<<i) == 0 {
			continue
		}
		for j, t := range to {
			if t == s {
				out |= 1 << j
			}
		}
	}
	return out
}

// SetMembership records table and masks (from Membership) in m, carrying over from prev (the
// previous generation; nil for none) the membership of blobs no tag reaches (retiring content
// keeps its subsets; without any, AnyArchitecture), and what mirrors must keep for the grace
// period: an orphan
// keeps the subsets it belonged to, and a blob that left subsets (a tag archived) keeps them
// as Former until grace after it left, so that a mirror's sync deletes it only then.
func (m *Meta) SetMembership(table []string, masks map[Digest]uint64, prev *Meta, now time.Time, grace time.Duration) error {
	s := newMemberSetter(table, prev, m.Generation, now, grace)
	for d, b := range m.Blobs {
		mask, reached := masks[d]
		if err := s.blob(b, mask, reached, s.prevBlob(d)); err != nil {
			return err
		}
	}
	if err := s.orphans(m); err != nil {
		return err
	}
	sorted := canonicalTable(s.t)
	for _, b := range m.Blobs {
		b.Subsets, b.Former = remap(b.Subsets, s.t, sorted), remap(b.Former, s.t, sorted)
	}
	for _, o := range m.Orphans {
		o.Subsets = remap(o.Subsets, s.t, sorted)
	}
	m.Subsets = sorted
	return nil
}

// memberSetter is SetMembership's work on one blob or orphan at a time: masks over its table
// t, which grows with the subsets prev's records name.
type memberSetter struct {
	t     []string
	prev  *Meta // nil when prev has no membership to carry over
	gen   uint64
	now   time.Time
	grace time.Duration
}

func newMemberSetter(table []string, prev *Meta, gen uint64, now time.Time, grace time.Duration) *memberSetter {
	if prev != nil && len(prev.Subsets) == 0 {
		prev = nil
	}
	return &memberSetter{t: slices.Clone(table), prev: prev, gen: gen, now: now, grace: grace}
}

// prevBlob is prev's record of d: nil for none, or without membership in prev.
func (s *memberSetter) prevBlob(d Digest) *Blob {
	if s.prev == nil {
		return nil
	}
	return s.prev.Blobs[d]
}

// add turns a mask over prev's table into one over t, adding the subsets t lacks.
func (s *memberSetter) add(prevMask uint64) (uint64, error) {
	var out uint64
	for i, name := range s.prev.Subsets {
		if prevMask&(1<<i) != 0 {
			bit, err := bitOf(&s.t, name)
			if err != nil {
				return 0, err
			}
			out |= bit
		}
	}
	return out, nil
}

// blob records in b, a blob of the generation whose record in prev is pb (prevBlob), its
// mask (over t) when a tag reaches it, else prev's membership (retiring content), and what
// it left.
func (s *memberSetter) blob(b *Blob, mask uint64, reached bool, pb *Blob) error {
	if !reached { // retiring: keeps its membership, else every architecture
		var err error
		if pb != nil && pb.Subsets != 0 {
			mask, err = s.add(pb.Subsets)
		} else {
			mask, err = bitOf(&s.t, AnyArchitecture)
		}
		if err != nil {
			return err
		}
	}
	b.Subsets, b.Former, b.Left = mask, 0, time.Time{}
	if pb == nil {
		return nil
	}
	was, err := s.add(pb.Subsets)
	if err != nil {
		return err
	}
	if b.Subsets&^was != 0 && pb.Subsets != 0 {
		// Joined a subset: mirrors carrying it get the file with this generation.
		b.Since = max(b.Since, s.gen)
	}
	left := was &^ b.Subsets
	left0 := s.now
	if !pb.Left.IsZero() && s.now.Sub(pb.Left) < s.grace {
		f, err := s.add(pb.Former)
		if err != nil {
			return err
		}
		f &^= b.Subsets
		if f != 0 && left == 0 { // nothing left anew: the earlier departure's clock
			left0 = pb.Left
		}
		left |= f
	}
	if left != 0 {
		b.Former, b.Left = left, left0
	}
	return nil
}

// orphans records in m's orphans the subsets they belonged to (over t).
func (s *memberSetter) orphans(m *Meta) error {
	for d, o := range m.Orphans {
		o.Subsets = 0
		if s.prev == nil {
			continue
		}
		var was uint64
		if pb := s.prev.Blobs[d]; pb != nil {
			was = pb.Subsets | pb.Former
		} else if po := s.prev.Orphans[d]; po != nil {
			was = po.Subsets
		}
		mask, err := s.add(was)
		if err != nil {
			return err
		}
		o.Subsets = mask
	}
	return nil
}

// SubsetNames are the subsets m's blobs use: the architectures of its table, and ArchiveSubset
// when present (not AnyArchitecture, which is not a subset).
func (m *Meta) SubsetNames() []string {
	var out []string
	for _, s := range m.Subsets {
		if s != AnyArchitecture {
			out = append(out, s)
		}
	}
	return out
}

// AllSubsets are the names a mirror's content may give: Architectures and ArchiveSubset.
func AllSubsets() []string { return append(append([]string(nil), Architectures...), ArchiveSubset) }

// SubsetBytes returns, per subset of SubsetNames, the bytes a mirror carrying that subset
// alone holds (referenced blobs; orphans are not counted), and the bytes of every referenced
// blob.
func (m *Meta) SubsetBytes() (per map[string]int64, total int64) {
	names := m.SubsetNames()
	masks, sums := make([]uint64, len(names)), make([]int64, len(names))
	for i, s := range names {
		masks[i] = m.ContentMask([]string{s})
	}
	for _, b := range m.Blobs {
		total += b.Size
		for i, mask := range masks {
			if b.Subsets&mask != 0 {
				sums[i] += b.Size
			}
		}
	}
	per = make(map[string]int64, len(names))
	for i, s := range names {
		per[s] = sums[i]
	}
	return per, total
}

// FormatSubsetBytes renders SubsetBytes for a summary line: "amd64 12.0 MiB, arm64 11.9 MiB
// (of 24.1 MiB)"; "" when m has no subsets.
func (m *Meta) FormatSubsetBytes(human func(int64) string) string {
	per, total := m.SubsetBytes()
	if len(per) == 0 {
		return ""
	}
	parts := make([]string, 0, len(per))
	for _, s := range m.SubsetNames() {
		parts = append(parts, s+" "+human(per[s]))
	}
	return strings.Join(parts, ", ") + " (of " + human(total) + ")"
}

// SubsetFilters returns the publication's per-subset rsync filter files (SubsetFilterPath):
// for every name of AllSubsets (a mirror may name an architecture the tree has no image of:
// it carries the blobs no platform claims), "+ /blobs/sha256/<hex>" for each blob a mirror
// carrying only that subset holds (members, former members within the grace, orphans that
// were members), ordered by the generation the blob appeared in (Since), then by name: a
// promotion's new blobs gather at the end, so that rsync's delta transfer of the new file
// against the previous one sends little more than them. Metadata without membership lists
// every blob in every architecture. Names whose files are necessarily the same (the
// architectures the tree has no image of) share one slice: the files are read-only.
func (m *Meta) SubsetFilters() map[string][]byte {
	names := AllSubsets()
	lines := filterLines(m)
	// A file's lines are those of its mask; the archive's also leaves out the blobs without
	// membership. Each distinct file is rendered once, its size counted first.
	type file struct {
		mask    uint64
		archive bool
		size    int
		b       []byte
	}
	var files []*file
	of := make([]*file, len(names))
	for i, s := range names {
		k := file{mask: m.ContentMask([]string{s}), archive: s == ArchiveSubset}
		j := slices.IndexFunc(files, func(f *file) bool { return f.mask == k.mask && f.archive == k.archive })
		if j < 0 {
			j = len(files)
			files = append(files, &k)
		}
		of[i] = files[j]
	}
	for _, x := range lines.l {
		n := lines.lineLen(x)
		for _, f := range files {
			if x.mask&f.mask != 0 || x.mask == 0 && !f.archive {
				f.size += n
			}
		}
	}
	for _, f := range files {
		f.b = make([]byte, 0, f.size)
		for _, x := range lines.l {
			if x.mask&f.mask != 0 || x.mask == 0 && !f.archive {
				f.b = lines.appendLine(f.b, x)
			}
		}
	}
	out := make(map[string][]byte, len(names))
	for i, s := range names {
		out[SubsetFilterPath(s)] = of[i].b
	}
	return out
}

// filterLine is a blob's line of the subsets' filters: the blob's Since, the first eight
// bytes of its sort key (big-endian, zero-padded) to compare most lines without the key, the
// key and the blob's mask (members and former members).
type filterLine struct {
	since  uint64
	prefix uint64
	key    string
	mask   uint64
}

// filterList is the lines of every blob and orphan of a generation, sorted by Since, then
// by BlobPath. When every digest has the same algorithm (and makes a plain path), a line's key
// is its digest, which orders like its path and spares building it until the line is
// written; otherwise the key is the path.
type filterList struct {
	l      []filterLine
	prefix string // what a line has before its key's part from start: "+ /blobs/<algorithm>/" or "+ /"
	start  int    // where the part of a key its line shows starts
}

// filterLines is m's filterList.
func filterLines(m *Meta) filterList {
	ls := filterList{l: make([]filterLine, 0, len(m.Blobs)+len(m.Orphans))}
	uniform, first, algo := true, true, ""
	add := func(d Digest, since, mask uint64) {
		ls.l = append(ls.l, filterLine{since: since, key: d.s, mask: mask})
		if !uniform {
			return
		}
		a, hex, ok := strings.Cut(d.s, ":")
		if first {
			algo, first = a, false
		}
		uniform = ok && a == algo && plainSegment(a) && plainSegment(hex)
	}
	for d, b := range m.Blobs {
		add(d, b.Since, b.Subsets|b.Former)
	}
	for d, o := range m.Orphans {
		add(d, o.Since, o.Subsets)
	}
	if uniform && !first {
		ls.prefix, ls.start = "+ /"+BlobsDir+"/"+algo+"/", len(algo)+1
	} else {
		ls.prefix = "+ /"
		for i := range ls.l {
			ls.l[i].key = BlobPath(Digest{ls.l[i].key})
		}
	}
	for i := range ls.l {
		var p [8]byte
		copy(p[:], ls.l[i].key[ls.start:])
		ls.l[i].prefix = binary.BigEndian.Uint64(p[:])
	}
	// Keys share their first start bytes: the prefixes order them, the keys break ties.
	slices.SortFunc(ls.l, func(a, b filterLine) int {
		if c := cmp.Compare(a.since, b.since); c != 0 {
			return c
		}
		if c := cmp.Compare(a.prefix, b.prefix); c != 0 {
			return c
		}
		return strings.Compare(a.key, b.key)
	})
	return ls
}

// plainSegment reports whether s is a path segment path.Join leaves as it is.
func plainSegment(s string) bool {
	return s != "" && s != "." && s != ".." && !strings.Contains(s, "/")
}

// lineLen is the length of x's line, "+ /<path>\n".
func (ls filterList) lineLen(x filterLine) int {
	return len(ls.prefix) + len(x.key) - ls.start + 1
}

// appendLine appends x's line, "+ /<path>\n".
func (ls filterList) appendLine(b []byte, x filterLine) []byte {
	b = append(b, ls.prefix...)
	b = append(b, x.key[ls.start:]...)
	return append(b, '\n')
}
