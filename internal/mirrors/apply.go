package mirrors

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/regmirror/regmirror/layout"
)

// StatusNotCrawled is the status of a mirror no crawl has checked yet (or whose URL changed
// since): it is not a candidate until a crawl finds it healthy.
const StatusNotCrawled = "not crawled yet"

// Stats describes one precompute.
type Stats struct {
	Mirrors    int // mirrors in the network
	Candidates int // enabled mirrors the last crawl found healthy
	Regions    int
	// VariantSets counts the distinct candidate lists with at least one candidate. Their
	// variants are rendered by the redirector when asked for, never here (layout.Renderer).
	VariantSets int
}

func (s Stats) String() string {
	return fmt.Sprintf("%d mirrors (%d candidates), %d regions, %d variant sets",
		s.Mirrors, s.Candidates, s.Regions, s.VariantSets)
}

// Apply records the mirrors file f in meta and recomputes the region data: meta.Origin,
// meta.Mirrors, meta.Regions and meta.VariantSets. Crawl state (Generation, Healthy, Status,
// Failures, Checked) is carried over from prev, the mirrors of the tree's previous metadata
// (nil for none), for every mirror whose name and URL are unchanged; a new mirror, or one whose
// URL changed, is not crawled yet and so not a candidate. generate calls it with the file of
// --mirrors and the previous generation's mirrors; crawl with its own findings.
func Apply(meta *layout.Meta, f *File, prev []*layout.Mirror) (Stats, error) {
	SetMirrors(meta, f, prev)
	return Precompute(meta)
}

// ApplyFile loads the mirror network of src (a mirrors file, or MirrorManager's mirrorlist
// cache with src.MMDirectory; see LoadSource) and applies it to next, carrying crawl state
// over from prev (nil for a first generation), with src.MinMirrors (when positive) or else
// prev's recorded. It is what `generate --mirrors FILE` calls.
func ApplyFile(ctx context.Context, src Source, prev, next *layout.Meta) error {
	f, err := LoadSource(src)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	var old []*layout.Mirror
	if prev != nil {
		old = prev.Mirrors
		next.MinMirrors = prev.MinMirrors
	}
	if src.MinMirrors > 0 {
		next.MinMirrors = src.MinMirrors
	}
	if _, err := Apply(next, f, old); err != nil {
		return fmt.Errorf("applying mirrors file %s: %w", src.Path, err)
	}
	return nil
}

// SetMirrors records f in meta (Origin and Mirrors, crawl state carried over from prev as in
// Apply) without recomputing the region data.
func SetMirrors(meta *layout.Meta, f *File, prev []*layout.Mirror) {
	old := make(map[string]*layout.Mirror, len(prev))
	for _, m := range prev {
		old[m.Name] = m
	}
	meta.Origin = f.Origin
	meta.Mirrors = make([]*layout.Mirror, 0, len(f.Mirrors))
	for _, m := range f.Mirrors {
		lm := &layout.Mirror{
			Name:      m.Name,
			URL:       m.URL,
			Country:   m.Country,
			Continent: m.Continent,
			Bandwidth: m.Bandwidth,
			Enabled:   m.Enabled,
			Private:   m.Private,
			Status:    StatusNotCrawled,
		}
		lm.ASNs = slices.Clone(m.ASNs)
		lm.AllowedCountries = slices.Clone(m.AllowedCountries)
		lm.Content = slices.Clone(m.Content)
		for _, b := range m.Netblocks {
			lm.Netblocks = append(lm.Netblocks, b.String())
		}
		// The crawl state stays with the same URL and content (a mirror that changed what it
		// carries is crawled again before anyone is sent to it).
		if p := old[m.Name]; p != nil && p.URL == m.URL && slices.Equal(p.Content, m.Content) {
			lm.Generation, lm.Healthy, lm.Status, lm.Failures, lm.Checked = p.Generation, p.Healthy, p.Status, p.Failures, p.Checked
		}
		meta.Mirrors = append(meta.Mirrors, lm)
	}
}

// Precompute recomputes meta.Regions and meta.VariantSets from meta.Mirrors, meta.MinMirrors,
// meta.Origin, meta.Manifests and meta.Blobs. It reads nothing else and touches no other field.
//
// Regions: one per country that has a mirror in the network (usable or not) or that a mirror
// is restricted to (AllowedCountries), one per continent (all seven) and "global". A country's
// tiers are its own usable mirrors, then the rest of its continent (the continent GeoIP gives
// the country), then the rest of the world; a continent's are its mirrors (by the mirror's
// continent field), then the rest; global's is every usable mirror. A region lists only the
// mirrors that serve it (layout.Mirror.ServesRegion): never a private mirror (those are
// reached through netblocks and ASNs only), and a mirror restricted to some client countries
// only in those countries' regions. Empty tiers are dropped; within a tier mirrors are sorted
// by bandwidth (highest first) then name, which is also the order of a variant's urls.
//
// Variants: a region's candidate list is its tiers in order, widened tier by tier while it
// holds fewer than meta.MinMirrors mirrors (default layout.DefaultMinMirrors): a country with
// five mirrors of its own lists those, one with two lists its continent's too, and so on.
// Regions with identical lists share one VariantSet; a region without any candidate has
// VariantSet -1. Variants are not rendered here: see the package documentation for their
// content.
//
// Without any mirror, meta has no regions and no variants: the single-machine tree.
func Precompute(meta *layout.Meta) (Stats, error) {
	st := Stats{Mirrors: len(meta.Mirrors)}
	if len(meta.Mirrors) == 0 {
		meta.Regions, meta.VariantSets = nil, nil
		return st, nil
	}
	usable := make([]*layout.Mirror, 0, len(meta.Mirrors))
	for _, m := range meta.Mirrors {
		if m.Usable() {
			usable = append(usable, m)
		}
	}
	st.Candidates = len(usable)
	sort.SliceStable(usable, func(i, j int) bool {
		a, b := usable[i], usable[j]
		if a.Bandwidth != b.Bandwidth {
			return a.Bandwidth > b.Bandwidth
		}
		return a.Name < b.Name
	})

	countries := map[string]bool{}
	for _, m := range meta.Mirrors {
		if m.Country != "" {
			countries[m.Country] = true
		}
		for _, c := range m.AllowedCountries {
			countries[c] = true
		}
	}
	regions := map[string][][]string{}
	for c := range countries {
		cont, ok := layout.ContinentOf(c)
		if !ok {
			continue
		}
		regions[c] = tiers(usable, c,
			func(u *layout.Mirror) bool { return u.Country == c },
			func(u *layout.Mirror) bool { return u.Continent == cont },
			func(*layout.Mirror) bool { return true })
	}
	for _, k := range layout.Continents {
		regions[k] = tiers(usable, "",
			func(u *layout.Mirror) bool { return u.Continent == k },
			func(*layout.Mirror) bool { return true })
	}
	regions["global"] = tiers(usable, "", func(*layout.Mirror) bool { return true })
	minimum := meta.MinMirrorsOf()
	masks := make(map[string]uint64, len(usable))
	for _, m := range usable {
		masks[m.Name] = meta.ContentMask(m.Content)
	}
	bits := subsetBits(meta)

	// Group regions by candidate lists, in sorted region order for stable set numbers.
	names := make([]string, 0, len(regions))
	for r := range regions {
		names = append(names, r)
	}
	sort.Strings(names)
	byKey := map[string]int{}
	var sets [][][]string
	meta.Regions = make(map[string]*layout.Region, len(regions))
	for _, r := range names {
		t := regions[r]
		idx := -1
		if len(t) > 0 {
			w := widen(t, minimum, masks, bits)
			key := tiersKey(w)
			var ok bool
			if idx, ok = byKey[key]; !ok {
				idx = len(sets)
				byKey[key] = idx
				sets = append(sets, w)
			}
		}
		meta.Regions[r] = &layout.Region{Tiers: t, VariantSet: idx}
	}
	st.Regions = len(meta.Regions)
	st.VariantSets = len(sets)

	meta.VariantSets = make([]*layout.VariantSet, len(sets))
	for i, t := range sets {
		vs := &layout.VariantSet{Mirrors: []string{}}
		for _, tier := range t {
			vs.Mirrors = append(vs.Mirrors, tier...)
		}
		meta.VariantSets[i] = vs
	}
	return st, nil
}

// tiers builds the tiers of the region of clients from country ("" for a continent's or the
// global region): tier i holds the usable mirrors serving that region that match preds[i] and
// no earlier predicate. usable is sorted already.
func tiers(usable []*layout.Mirror, country string, preds ...func(*layout.Mirror) bool) [][]string {
	out := [][]string{}
	placed := map[string]bool{}
	for _, pred := range preds {
		var tier []string
		for _, m := range usable {
			if !placed[m.Name] && m.ServesRegion(country) && pred(m) {
				placed[m.Name] = true
				tier = append(tier, m.Name)
			}
		}
		if len(tier) > 0 {
			out = append(out, tier)
		}
	}
	return out
}

// widen returns the first tiers of t that hold at least minimum mirrors carrying each subset
// (or every mirror of t carrying it, when t has fewer): the candidate list, widened tier by
// tier while it is short for some subset. masks are the mirrors' content masks, bits the
// subsets' bits (subsetBits).
func widen(t [][]string, minimum int, masks map[string]uint64, bits []uint64) [][]string {
	want := make([]int, len(bits))
	for j, bit := range bits {
		for _, tier := range t {
			for _, name := range tier {
				if masks[name]&bit != 0 {
					want[j]++
				}
			}
		}
		want[j] = min(want[j], minimum)
	}
	n := make([]int, len(bits))
	for i, tier := range t {
		short := false
		for j, bit := range bits {
			for _, name := range tier {
				if masks[name]&bit != 0 {
					n[j]++
				}
			}
			short = short || n[j] < want[j]
		}
		if !short {
			return t[:i+1]
		}
	}
	return t
}

// subsetBits returns one bit per subset of meta.Subsets that some blob belongs to (every bit
// when meta has no subsets: one list for all), for widening.
func subsetBits(meta *layout.Meta) []uint64 {
	if len(meta.Subsets) == 0 {
		return []uint64{^uint64(0)}
	}
	var used uint64
	for _, b := range meta.Blobs {
		used |= b.Subsets
	}
	var bits []uint64
	for i := range meta.Subsets {
		if used&(1<<i) != 0 {
			bits = append(bits, 1<<i)
		}
	}
	if len(bits) == 0 {
		return []uint64{^uint64(0)}
	}
	return bits
}

func tiersKey(t [][]string) string {
	var b strings.Builder
	for _, tier := range t {
		for _, n := range tier {
			b.WriteString(n)
			b.WriteByte(0)
		}
		b.WriteByte(1)
	}
	return b.String()
}

// FormatBytes renders a byte count for people: "1.5 GiB", "12.0 MiB", "3.2 KiB", "17 B".
func FormatBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
