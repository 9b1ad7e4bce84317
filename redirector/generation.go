package redirector

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"strconv"
	"time"

	"github.com/regmirror/regmirror/internal/trunc"
	"github.com/regmirror/regmirror/layout"
)

// defaultWeight is the weight of a mirror that states no bandwidth, as if it had 100 Mbit/s.
const defaultWeight = 100

// generation is one loaded generation of the tree: immutable once built, with every answer's
// bytes and header values prepared, so that a request costs map lookups. A new generation
// replaces it whole (see watch.go); requests in flight keep the one they started with.
type generation struct {
	number  uint64
	created time.Time
	loaded  time.Time
	// grace is the generator's grace period (layout.Meta.GCGrace); 0: unknown (see lapsed).
	// retired holds layout.Blob.Retired of the blobs some repository retires, by digest; nil
	// when none (kept apart from the blob entries, which most blobs' records leave alone).
	grace    time.Duration
	retired  map[string]time.Time
	stampRef string // the stamp's meta reference, to notice a rewrite of the same generation
	// chain identifies the content the generation was built from (layout.ContentChange.Chain);
	// "" when unknown.
	chain string

	repos   map[string]*repoEntry
	catalog []string // sorted names of the published repositories
	// blobs holds every blob of the generation by digest, whatever the repository: a replica
	// a generation behind may be asked in one repository for a blob a newer generation put
	// there; known, it is checked (size) and sent to mirrors like the repository's own.
	blobs       map[string]*blobEntry
	catalogBody []byte
	// manifests holds every canonical manifest of the generation by digest, and repoSrc the
	// metadata each repository was built from: the next generation reuses what is unchanged.
	manifests map[string]*manifestEntry
	repoSrc   map[string]*layout.Repository

	// regions by key ("DE", "EU", "global"); empty without mirrors. Set them with setRegion.
	regions map[string]*regionEntry
	// global is regions["global"], looked up at every redirect otherwise.
	global *regionEntry
	// netblockMirrors are the candidate mirrors that have netblocks (the first tier).
	netblockMirrors []*mirrorEntry
	// asnMirrors are the candidate mirrors by the autonomous systems they serve (the second).
	asnMirrors map[uint32][]*mirrorEntry
	// anyMirrors are the mirrors any client may be sent to when no tier of its own holds a
	// blob: healthy and enabled, neither private nor restricted to some countries; by name.
	anyMirrors []*mirrorEntry
	// origin is the configured origin URL (ending in "/"), or "" to serve from the local tree.
	origin string
	// variants renders the regional variants on request; nil without variant sets.
	variants *variantView
	// probes are what the health probes check on each usable mirror.
	probes []probeTarget

	manifestCount, variantSetCount, blobCount int

	// status is what the status page shows of the generation.
	status *statusInfo
}

// answer is a prepared response: body and header values.
type answer struct {
	digest      string
	body        []byte
	contentType []string
	digestHdr   []string
	etag        []string
	length      []string
}

func newAnswer(digest, mediaType string, body []byte) answer {
	return answer{
		digest:      digest,
		body:        body,
		contentType: []string{mediaType},
		digestHdr:   []string{digest},
		etag:        []string{`"` + digest + `"`},
		length:      []string{strconv.Itoa(len(body))},
	}
}

// manifestEntry is a manifest (canonical or regional variant) ready to serve.
type manifestEntry struct {
	answer
	d         layout.Digest
	mediaType string
	isList    bool
	// defaultChild is the linux/amd64 image of a list, for clients that accept no list.
	defaultChild *manifestEntry
	// of is the canonical manifest's digest, for a regional variant.
	of string
	// view is the variant view that rendered a regional variant; persist is set when that view
	// left mirrors out of rotation: such a variant stays answerable by digest while cached (a
	// client mid-pull that read an index before the mirrors came back).
	view    *variantView
	persist bool
}

// blobEntry is a blob of the tree.
type blobEntry struct {
	digest layout.Digest
	size   int64
	since  uint64
	// subsets is the blob's membership (layout.Blob.Subsets): only mirrors whose content
	// includes one of them take it; 0: every mirror.
	subsets uint64
	// manifest: the blob is a manifest of the generation, which a GET answers from memory.
	manifest bool
	// retired: some repository retires the file (its time is in generation.retired).
	retired bool
	path    string // layout.BlobPath(digest): below the tree root and below a mirror URL
	answer         // headers for HEAD and local serving; no body
}

type repoEntry struct {
	name string
	// published: the repository has tags in this generation. One that only retires content
	// (gone from the source) serves it by digest and is absent from the catalog and tags/list.
	published bool
	tags      map[string]*manifestEntry
	tagList   []string // sorted
	// retiring holds the blobs (configs and layers) the repository only retires
	// (layout.Repository.RetiringBlobs); nil when none.
	retiring map[string]bool
	tagsBody []byte // the unpaginated tags/list answer
	// manifests holds every canonical manifest of the repository by digest, retiring ones
	// included; its regional variants are found through generation.variants.
	manifests map[string]*manifestEntry
	// blobs holds every blob of the repository by digest, retiring ones included.
	blobs     map[string]*blobEntry
	referrers map[string]*referrerSet
}

type referrerSet struct {
	descs []layout.Descriptor
	body  []byte
}

type mirrorEntry struct {
	name       string
	url        string // validated absolute http(s) URL ending in "/"
	weight     uint64
	generation uint64
	netblocks  []netip.Prefix
	// content is the mirror's content mask over the generation's subset table
	// (layout.Meta.ContentMask): which blobs it carries.
	content uint64
}

type tierEntry struct {
	mirrors []*mirrorEntry
	cum     []uint64 // cumulative weights
	total   uint64
	minGen  uint64 // lowest generation among the tier's mirrors
	// allContent is the subsets every mirror of the tier carries (the AND of their content).
	allContent uint64
}

// add appends m to the tier.
func (t *tierEntry) add(m *mirrorEntry) {
	t.mirrors = append(t.mirrors, m)
	t.total += m.weight
	t.cum = append(t.cum, t.total)
	if len(t.mirrors) == 1 || m.generation < t.minGen {
		t.minGen = m.generation
	}
	if len(t.mirrors) == 1 {
		t.allContent = m.content
	} else {
		t.allContent &= m.content
	}
}

type regionEntry struct {
	key   string
	tiers []tierEntry
	// variantSet indexes the generation's variant sets; -1 when the region has none.
	variantSet int
}

// loadGeneration builds a generation from a tree's metadata. It refuses metadata that is
// inconsistent (a tag or listing naming a manifest the metadata lacks, a manifest whose bytes
// do not match its digest), so that a broken generation never replaces a working one.
//
// prev, the generation serving now (nil at start), lends what has not changed: a manifest
// with the same digest and bytes, a blob with the same record and a repository with the same
// metadata and entries are the previous generation's (immutable) entries, so that a switch
// builds and holds only what changed besides the shared entries. change, what the metadata's
// content changed since the content prev was built from (layout.Loader), makes the switch
// look only at what it names (updateContent); without it, or when prev was built from other
// content, every record is looked at (loadContent).
func loadGeneration(m *layout.Meta, stamp layout.Stamp, prev *generation, change *layout.ContentChange, warn func(msg string, args ...any)) (*generation, error) {
	g := &generation{
		number:   m.Generation,
		created:  m.Created,
		grace:    m.GCGrace,
		loaded:   time.Now(),
		stampRef: stamp.Meta,
		regions:  map[string]*regionEntry{},
		status:   newStatusInfo(m),
	}
	if prev == nil {
		prev = &generation{}
	}
	var err error
	if change != nil && change.Base != "" && change.Base == prev.chain {
		err = g.updateContent(m, prev, change)
	} else {
		err = g.loadContent(m, prev)
	}
	if err != nil {
		return nil, err
	}
	if change != nil {
		g.chain = change.Chain
	}
	g.manifestCount = len(g.manifests)
	g.blobCount = len(g.blobs)
	if len(m.VariantSets) > 0 {
		// Nothing is rendered here: a variant is rendered when a client first asks for it.
		g.variants = newVariantView(layout.NewRenderer(m), nil)
		g.variantSetCount = len(m.VariantSets)
	}
	for name, re := range g.repos {
		if re.published {
			g.catalog = append(g.catalog, name)
		}
	}
	slices.Sort(g.catalog)
	g.catalogBody = catalogBody(g.catalog)
	if m.Origin != "" {
		u, err := checkMirrorURL(m.Origin)
		if err != nil {
			return nil, fmt.Errorf("origin: %w", err)
		}
		g.origin = u
	}
	usable := g.loadMirrors(m, warn)
	g.probes = probeTargets(m, usable)
	if err := g.loadRegions(m, usable); err != nil {
		return nil, err
	}
	return g, nil
}

// loadContent builds g's manifests, blobs and repositories from every record of m's content,
// reusing prev's entries where they are what it would build.
func (g *generation) loadContent(m *layout.Meta, prev *generation) error {
	manifests, err := loadManifests(m, prev.manifests)
	if err != nil {
		return err
	}
	g.manifests = manifests
	if g.blobs, g.retired, err = loadBlobs(m, prev.blobs); err != nil {
		return err
	}
	g.repos = make(map[string]*repoEntry, len(m.Repositories))
	g.repoSrc = make(map[string]*layout.Repository, len(m.Repositories))
	for name, r := range m.Repositories {
		re := prev.repos[name]
		if re == nil || !re.unchanged(r, prev.repoSrc[name], manifests, g.blobs) {
			if re, err = loadRepository(name, r, manifests, g.blobs); err != nil {
				return err
			}
		}
		g.repos[name] = re
		g.repoSrc[name] = r
	}
	return nil
}

// loadManifests verifies every manifest against its digest; lists learn their linux/amd64
// child. A manifest prev holds with the same bytes is prev's entry (verified when it was
// built), and the metadata is pointed at its bytes so that the decoded copy can go.
func loadManifests(m *layout.Meta, prev map[string]*manifestEntry) (map[string]*manifestEntry, error) {
	manifests := make(map[string]*manifestEntry, len(m.Manifests))
	var lists []*manifestEntry // new entries of lists, to learn their default child
	for d, mf := range m.Manifests {
		if mf == nil {
			return nil, fmt.Errorf("manifest %s has no data", d)
		}
		if e := prev[d.String()]; reuses(e, mf) {
			manifests[d.String()] = e
			continue
		}
		e, err := newManifestEntry(d, mf.MediaType, mf.Data)
		if err != nil {
			return nil, err
		}
		manifests[d.String()] = e
		if e.isList {
			lists = append(lists, e)
		}
	}
	// A reused list keeps the default child it was built with only if that child is this
	// generation's entry too; otherwise it is built anew (entries are never modified once
	// served).
	for d, e := range manifests {
		if e.isList && prev[d] == e && e.defaultChild != nil && manifests[e.defaultChild.digest] != e.defaultChild {
			ne := *e
			manifests[d] = &ne
			lists = append(lists, &ne)
		}
	}
	for _, e := range lists {
		e.defaultChild = findDefaultChild(e.body, manifests)
	}
	return manifests, nil
}

// reuses reports whether e, an entry of the previous generation (or nil), serves manifest
// record mf as it is: the same media type (or none recorded) and bytes. mf is then pointed at
// e's bytes, so that the decoded copy can go.
func reuses(e *manifestEntry, mf *layout.Manifest) bool {
	if e == nil || mf.MediaType != "" && mf.MediaType != e.mediaType || !bytes.Equal(e.body, mf.Data) {
		return false
	}
	if !sameArray(mf.Data, e.body) { // a Meta from layout.Loader may share mf: never write it then
		mf.Data = e.body
	}
	return true
}

// sameArray reports whether a and b are the same bytes in memory.
func sameArray(a, b []byte) bool {
	return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0])
}

// loadBlobs indexes every blob of the generation by digest (one prev holds with the same record
// is prev's entry), and returns the retired times of those some repository retires (nil when
// none).
func loadBlobs(m *layout.Meta, prev map[string]*blobEntry) (map[string]*blobEntry, map[string]time.Time, error) {
	blobs := make(map[string]*blobEntry, len(m.Blobs))
	var retired map[string]time.Time
	for d, b := range m.Blobs {
		_, manifest := m.Manifests[d]
		be, err := blobEntryOf(d, b, manifest, prev[d.String()])
		if err != nil {
			return nil, nil, err
		}
		blobs[d.String()] = be
		if be.retired {
			if retired == nil {
				retired = map[string]time.Time{}
			}
			retired[d.String()] = b.Retired
		}
	}
	return blobs, retired, nil
}

// blobEntryOf returns the entry of blob d's record b (manifest: d is a manifest of the
// generation): prev when it has that record.
func blobEntryOf(d layout.Digest, b *layout.Blob, manifest bool, prev *blobEntry) (*blobEntry, error) {
	if b == nil || b.Size < 0 {
		return nil, fmt.Errorf("blob %s has no valid size", d)
	}
	isRetired := !b.Retired.IsZero()
	if prev != nil && prev.size == b.Size && prev.since == b.Since && prev.subsets == b.Subsets && prev.manifest == manifest && prev.retired == isRetired {
		return prev, nil
	}
	be := newBlobEntry(d, b.Size, b.Since)
	be.subsets = b.Subsets
	be.manifest = manifest
	be.retired = isRetired
	return be, nil
}

// loadRepository prepares one repository's answers, refusing names and references the
// metadata does not back.
func loadRepository(name string, r *layout.Repository, manifests map[string]*manifestEntry, blobs map[string]*blobEntry) (*repoEntry, error) {
	if err := layout.ValidateName(name); err != nil {
		return nil, err
	}
	if r == nil {
		return nil, fmt.Errorf("repository %s has no data", name)
	}
	re := &repoEntry{
		name:      name,
		published: r.Published(),
		tags:      make(map[string]*manifestEntry, len(r.Tags)),
		manifests: make(map[string]*manifestEntry, len(r.Manifests)+len(r.Retiring)),
		blobs:     make(map[string]*blobEntry, len(r.Blobs)+len(r.Manifests)+len(r.Retiring)+len(r.RetiringBlobs)),
		referrers: make(map[string]*referrerSet, len(r.Referrers)),
	}
	for tag, d := range r.Tags {
		if err := layout.ValidateTag(tag); err != nil {
			return nil, fmt.Errorf("repository %s: %w", name, err)
		}
		e, ok := manifests[d.String()]
		if !ok {
			return nil, fmt.Errorf("repository %s: tag %s names manifest %s, which the metadata lacks", name, tag, d)
		}
		re.tags[tag] = e
		re.tagList = append(re.tagList, tag)
	}
	slices.Sort(re.tagList)
	// Referenced and retiring content alike, by digest.
	for _, d := range slices.Concat(r.Manifests, r.Retiring) {
		e, ok := manifests[d.String()]
		if !ok {
			return nil, fmt.Errorf("repository %s lists manifest %s, which the metadata lacks", name, d)
		}
		re.manifests[d.String()] = e
		if b, ok := blobs[d.String()]; ok {
			re.blobs[d.String()] = b
		}
	}
	for _, t := range re.tags { // a tagged manifest belongs to its repository in any case
		re.manifests[t.digest] = t
	}
	for i, d := range slices.Concat(r.Blobs, r.RetiringBlobs) {
		b, ok := blobs[d.String()]
		if !ok {
			return nil, fmt.Errorf("repository %s lists blob %s, which the metadata lacks", name, d)
		}
		re.blobs[d.String()] = b
		if i >= len(r.Blobs) {
			if re.retiring == nil {
				re.retiring = make(map[string]bool, len(r.RetiringBlobs))
			}
			re.retiring[d.String()] = true
		}
	}
	for subj, descs := range r.Referrers {
		body, err := referrersBody(descs)
		if err != nil {
			return nil, fmt.Errorf("repository %s: referrers of %s: %w", name, subj, err)
		}
		re.referrers[subj.String()] = &referrerSet{descs: descs, body: body}
	}
	re.tagsBody = tagsBody(name, re.tagList)
	return re, nil
}

// unchanged reports whether re, built from src, is what r would build now: the same metadata,
// and every manifest and blob it answers is the entry of the new generation.
func (re *repoEntry) unchanged(r, src *layout.Repository, manifests map[string]*manifestEntry, blobs map[string]*blobEntry) bool {
	if r == nil || src == nil || !reflect.DeepEqual(r, src) {
		return false
	}
	for d, e := range re.manifests {
		if manifests[d] != e {
			return false
		}
	}
	for d, b := range re.blobs {
		if blobs[d] != b {
			return false
		}
	}
	return true
}

// loadMirrors takes the mirrors the last crawl found healthy (and enabled), with a usable
// URL, into the netblock, ASN and any-mirror lists; it returns them by name.
func (g *generation) loadMirrors(m *layout.Meta, warn func(msg string, args ...any)) map[string]*mirrorEntry {
	usable := map[string]*mirrorEntry{}
	for _, mi := range m.Mirrors {
		if !mi.Usable() {
			continue
		}
		u, err := checkMirrorURL(mi.URL)
		if err != nil {
			warn("ignoring mirror with an unusable URL", "mirror", mi.Name, "err", err)
			continue
		}
		me := &mirrorEntry{name: mi.Name, url: u, weight: defaultWeight, generation: mi.Generation, content: m.ContentMask(mi.Content)}
		if mi.Bandwidth > 0 {
			me.weight = uint64(mi.Bandwidth)
		}
		for _, nb := range mi.Netblocks {
			p, err := netip.ParsePrefix(nb)
			if err != nil {
				warn("ignoring a mirror's invalid netblock", "mirror", mi.Name, "netblock", trunc.String(nb))
				continue
			}
			me.netblocks = append(me.netblocks, p.Masked())
		}
		usable[mi.Name] = me
		if !mi.Private && len(mi.AllowedCountries) == 0 {
			g.anyMirrors = append(g.anyMirrors, me)
		}
		if len(me.netblocks) > 0 {
			g.netblockMirrors = append(g.netblockMirrors, me)
		}
		for _, a := range mi.ASNs {
			if a == 0 {
				continue
			}
			if g.asnMirrors == nil {
				g.asnMirrors = map[uint32][]*mirrorEntry{}
			}
			if !slices.Contains(g.asnMirrors[a], me) {
				g.asnMirrors[a] = append(g.asnMirrors[a], me)
			}
		}
	}
	byName := func(a, b *mirrorEntry) int { return cmp.Compare(a.name, b.name) }
	slices.SortFunc(g.netblockMirrors, byName)
	slices.SortFunc(g.anyMirrors, byName)
	for _, ms := range g.asnMirrors {
		slices.SortFunc(ms, byName)
	}
	return usable
}

// loadRegions builds each region's tiers from the usable mirrors (an unhealthy, disabled or
// unknown one is never a candidate) and checks its variant set.
func (g *generation) loadRegions(m *layout.Meta, usable map[string]*mirrorEntry) error {
	for key, reg := range m.Regions {
		if reg == nil {
			continue
		}
		re := &regionEntry{key: key, variantSet: -1}
		for _, names := range reg.Tiers {
			var t tierEntry
			for _, n := range names {
				if me, ok := usable[n]; ok {
					t.add(me)
				}
			}
			if len(t.mirrors) > 0 {
				re.tiers = append(re.tiers, t)
			}
		}
		switch {
		case reg.VariantSet >= len(m.VariantSets):
			return fmt.Errorf("region %s names variant set %d of %d", key, reg.VariantSet, len(m.VariantSets))
		case reg.VariantSet >= 0 && m.VariantSets[reg.VariantSet] != nil:
			re.variantSet = reg.VariantSet
		}
		g.setRegion(key, re)
	}
	return nil
}

// setRegion puts re in g's regions under key.
func (g *generation) setRegion(key string, re *regionEntry) {
	g.regions[key] = re
	if key == "global" {
		g.global = re
	}
}

// newBlobEntry prepares the answers about a blob of size bytes (-1: unknown).
func newBlobEntry(d layout.Digest, size int64, since uint64) *blobEntry {
	be := &blobEntry{digest: d, size: size, since: since, path: layout.BlobPath(d)}
	be.answer = newAnswer(d.String(), "application/octet-stream", nil)
	be.length = []string{strconv.FormatInt(size, 10)}
	return be
}

func newManifestEntry(d layout.Digest, mediaType string, data []byte) (*manifestEntry, error) {
	if err := verifyDigest(d, data); err != nil {
		return nil, err
	}
	if mediaType == "" {
		mediaType = sniffMediaType(data)
	}
	return &manifestEntry{
		answer:    newAnswer(d.String(), mediaType, data),
		d:         d,
		mediaType: mediaType,
		isList:    layout.IsIndex(mediaType),
	}, nil
}

// verifyDigest checks that data hashes to d.
func verifyDigest(d layout.Digest, data []byte) error {
	if err := layout.VerifyBytes(d, data); err != nil {
		return fmt.Errorf("manifest %s is corrupt: %w", d, err)
	}
	return nil
}

// sniffMediaType reads the mediaType field of a manifest that the metadata gave none.
func sniffMediaType(data []byte) string {
	var v struct {
		MediaType string `json:"mediaType"`
	}
	if json.Unmarshal(data, &v) == nil && v.MediaType != "" {
		return v.MediaType
	}
	return layout.MediaTypeOCIManifest
}

// findDefaultChild returns the linux/amd64 image of a list, as docker-distribution serves it
// to clients that do not accept lists; nil if the list has none or it is not in the tree.
func findDefaultChild(list []byte, byDigest map[string]*manifestEntry) *manifestEntry {
	var idx struct {
		Manifests []struct {
			Digest   string `json:"digest"`
			Platform *struct {
				OS           string `json:"os"`
				Architecture string `json:"architecture"`
			} `json:"platform"`
		} `json:"manifests"`
	}
	if err := json.Unmarshal(list, &idx); err != nil {
		return nil
	}
	for _, m := range idx.Manifests {
		if m.Platform != nil && m.Platform.OS == "linux" && m.Platform.Architecture == "amd64" {
			if e, ok := byDigest[m.Digest]; ok && !e.isList {
				return e
			}
		}
	}
	return nil
}

// checkMirrorURL applies layout.CheckMirrorURL to a URL from the metadata. Location headers
// are only ever built from URLs that passed here.
func checkMirrorURL(s string) (string, error) {
	if err := layout.CheckMirrorURL(s); err != nil {
		return "", fmt.Errorf("URL %q: %w", trunc.String(s), err)
	}
	return s, nil
}

func tagsBody(name string, tags []string) []byte {
	if tags == nil {
		tags = []string{}
	}
	b, _ := json.Marshal(struct {
		Name string   `json:"name"`
		Tags []string `json:"tags"`
	}{name, tags})
	return b
}

func catalogBody(repos []string) []byte {
	if repos == nil {
		repos = []string{}
	}
	b, _ := json.Marshal(struct {
		Repositories []string `json:"repositories"`
	}{repos})
	return b
}

// emptyReferrers is the answer for a subject without referrers.
var emptyReferrers = []byte(`{"schemaVersion":2,"mediaType":"` + layout.MediaTypeOCIIndex + `","manifests":[]}`)

func referrersBody(descs []layout.Descriptor) ([]byte, error) {
	if descs == nil {
		descs = []layout.Descriptor{}
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	err := enc.Encode(struct {
		SchemaVersion int                 `json:"schemaVersion"`
		MediaType     string              `json:"mediaType"`
		Manifests     []layout.Descriptor `json:"manifests"`
	}{2, layout.MediaTypeOCIIndex, descs})
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), err
}
