package generator

import (
	"encoding/binary"
	"sort"

	"github.com/regmirror/regmirror/layout"
)

// unchanged returns the previous generation's record of repo when this run would publish it
// exactly as it stands, so that the run takes its manifests and blobs whole instead of
// reading and walking every manifest again (a no-op, or a promotion's untouched
// repositories, cost a HEAD per tag): every tag the source lists resolved (heads) to the
// digest the previous generation published, and no other; its records are plain (plainIn:
// taken on the settled record's word when it names the repository, r.plain); no
// Options.Verify or VerifyLayers; and the source has no referrers API (nothing to ask). nil
// otherwise: the tags are processed one by one.
func (r *run) unchanged(repo string, tags []string, heads []*head) *layout.Repository {
	pr := r.prev.Repositories[repo]
	if pr == nil || r.tree == nil || r.o.Verify || r.o.VerifyLayers || len(tags) != len(pr.Tags) {
		return nil
	}
	for i, tag := range tags {
		h := heads[i]
		if h == nil || h.err != nil || h.d != pr.Tags[tag] {
			return nil
		}
	}
	if r.plain[repo] {
		r.trusted.Add(1)
	} else if !plainIn(r.prev, pr) {
		return nil
	}
	if len(tags) > 0 && r.hasReferrersAPI(repo, heads[0].d) {
		return nil
	}
	return pr
}

// plainIn reports whether m's repository pr may be taken whole by a run whose tags resolve
// as pr's do (and that verifies nothing: unchanged): it has no referrers and no tag kept
// removed, every manifest it reaches is recorded (in m's manifests, and as a blob of its
// size, so the tree holds it: recordedIn) and may not hold a foreign layer (mayBeForeign,
// which the run counts), and every blob it reaches is recorded (with its own size: one
// lookup is the check). A function of m alone: the settled record keeps its verdicts for
// the next run (plainRepos).
func plainIn(m *layout.Meta, pr *layout.Repository) bool {
	if len(pr.Referrers) > 0 || len(pr.Removed) > 0 {
		return false
	}
	for _, d := range pr.Manifests {
		mf := m.Manifests[d]
		if mf == nil || mayBeForeign(mf.Data) {
			return false
		}
		if b := m.Blobs[d]; b == nil || b.Size != int64(len(mf.Data)) {
			return false
		}
	}
	for _, d := range pr.Blobs {
		if m.Blobs[d] == nil {
			return false
		}
	}
	return true
}

// plainRepos are m's plain repositories (plainIn), sorted: those this run took whole
// (whole), whose records it kept as they were, without a look; the others checked.
func plainRepos(m *layout.Meta, whole map[string]bool) []string {
	var plain []string
	for name, repo := range m.Repositories {
		if whole[name] || plainIn(m, repo) {
			plain = append(plain, name)
		}
	}
	sort.Strings(plain)
	return plain
}

// hasReferrersAPI reports whether the source answers the referrers API, asking it (about
// subject d of repo) when no query of the run has yet.
func (r *run) hasReferrersAPI(repo string, d layout.Digest) bool {
	r.refProbe.Lock()
	known, supported := r.refKnown, r.refSupported
	r.refProbe.Unlock()
	if !known {
		if _, err := r.referrersOf(r.ctx, repo, d); err != nil {
			return true // cancelled: say so, and let the tags stop on their own
		}
		r.refProbe.Lock()
		supported = r.refSupported
		r.refProbe.Unlock()
	}
	return supported
}

// mayBeForeign reports whether manifest bytes may list a foreign layer (layout.IsForeignLayer:
// urls, a foreign or non-distributable media type), conservatively: any escape or non-ASCII
// byte (JSON keys match case-insensitively, with Unicode folding), or any of those words in
// any case. It looks at eight bytes at a time, and a byte at a time only around the words
// that hold a byte every match holds: an escape or non-ASCII byte itself, or a 'u' ("urls",
// "nondistributable", in any case) or 'g' ("foreign"), rare in manifests.
func mayBeForeign(data []byte) bool {
	const ones, highs, lower = 0x0101010101010101, 0x8080808080808080, 0x2020202020202020
	// has reports whether a byte of w is c, and maybe when one is not (never the reverse).
	has := func(w, c uint64) bool {
		x := w ^ ones*c
		return (x-ones)&^x&highs != 0
	}
	// The longest word; its 'u' is 11 bytes after its start, "foreign"'s 'g' 5.
	const back = len("nondistributable")
	i := 0
	for ; i+8 <= len(data); i += 8 {
		w := binary.LittleEndian.Uint64(data[i:])
		if w&highs != 0 {
			return true
		}
		lw := w | lower // 'U' and 'u' alike; '\\' (0x5c) becomes '|' (0x7c)
		if (has(lw, '|') || has(lw, 'u') || has(lw, 'g')) && mayBeForeignAt(data, max(0, i-back), i+8) {
			return true
		}
	}
	return mayBeForeignAt(data, max(0, i-back), len(data))
}

// mayBeForeignAt is mayBeForeign's look at the bytes of data from index from to index to
// (the words it checks may run past to).
func mayBeForeignAt(data []byte, from, to int) bool {
	for i := from; i < to; i++ {
		c := data[i]
		if c == '\\' || c >= 0x80 {
			return true
		}
		switch c | 0x20 { // an ASCII letter in lower case
		case 'u':
			if hasFoldPrefix(data[i:], "urls") {
				return true
			}
		case 'f':
			if hasFoldPrefix(data[i:], "foreign") {
				return true
			}
		case 'n':
			if hasFoldPrefix(data[i:], "nondistributable") {
				return true
			}
		}
	}
	return false
}

// hasFoldPrefix reports whether data starts with the lower-case ASCII word w in any case.
func hasFoldPrefix(data []byte, w string) bool {
	if len(data) < len(w) {
		return false
	}
	for j := range len(w) {
		if data[j]|0x20 != w[j] {
			return false
		}
	}
	return true
}
