package layout

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/regmirror/regmirror/internal/trunc"
)

// FormatVersion is the version of the metadata format this package writes. A change that old
// readers would misread bumps it. This package also reads format 2 (one metadata file) and
// format 1 (which stored the regional variants' bytes; it drops them) and refuses any other
// version.
const FormatVersion = 3

// MaxMetaSize bounds a metadata file once decompressed, so a corrupt or hostile file cannot
// exhaust memory.
const MaxMetaSize = 4 << 30

// MaxManifestSize is the largest manifest a tree holds (the distribution spec's recommended
// limit): the generator refuses larger ones, readers need not read more.
const MaxManifestSize = 4 << 20

// ErrNoGeneration is returned when a tree has no current generation yet.
var ErrNoGeneration = errors.New("tree has no generation yet")

// Stamp is the content of regmirror/current (a link to the live publication's stamp): the
// generation the tree holds. rsync carries it to mirrors, where the crawler reads it.
type Stamp struct {
	Format     int       `json:"format"`
	Generation uint64    `json:"generation"`
	Meta       string    `json:"meta"` // "meta/<hex>.json.zst", relative to MetaDir
	Created    time.Time `json:"created"`
	// MetaFiles names the other metadata files the generation needs (format 3: the network
	// file and the content packs Meta names), like Meta and separated by spaces: for tools
	// that copy a generation and read no zstd (deploy/mirror-sync). Tree.MetaFiles reads them
	// from the root itself.
	MetaFiles string `json:"metaFiles,omitempty"`
}

// Meta is everything the redirector answers from. It is written once per generation by
// generate, and rewritten (same generation, new file) by crawl.
type Meta struct {
	Format     int       `json:"format"`
	Generation uint64    `json:"generation"`
	Created    time.Time `json:"created"`
	Source     string    `json:"source,omitempty"`
	// GCGrace is the generator's grace period (generate --gc-grace): how long retiring
	// content and orphans outlive the generation that stopped referencing them (see
	// GraceOver). 0 in metadata written before it was recorded: unknown.
	GCGrace time.Duration `json:"gcGrace,omitempty"`

	// Repositories by name.
	Repositories map[string]*Repository `json:"repositories"`
	// Manifests by digest: every manifest the generation references or retires (see
	// Repository.Retiring), with its bytes, once.
	Manifests map[Digest]*Manifest `json:"manifests"`
	// Blobs by digest: every file in blobs/ that the generation references or retires
	// (manifests included). Foreign layers the source does not hold are not here.
	Blobs map[Digest]*Blob `json:"blobs"`
	// Orphans are files still in blobs/ that the generation neither references nor retires;
	// they are deleted once unreferenced for longer than the grace period.
	Orphans map[Digest]*Orphan `json:"orphans,omitempty"`

	// Origin is the URL of a full copy of the tree (ending in "/") that serves blobs when no
	// mirror can; empty means the redirector serves them from its own tree. From the mirrors
	// file.
	Origin string `json:"origin,omitempty"`

	// Mirrors is the mirror network with the last crawl's findings; empty without --mirrors.
	Mirrors []*Mirror `json:"mirrors,omitempty"`
	// MinMirrors is the number of mirrors a regional candidate list is widened to, tier by
	// tier (see VariantSet.Mirrors); 0 means DefaultMinMirrors.
	MinMirrors int `json:"minMirrors,omitempty"`
	// Regions maps a region ("DE", "EU", "global") to its candidates.
	Regions map[string]*Region `json:"regions,omitempty"`
	// VariantSets describes the regional manifest variants; regions with identical candidate
	// lists share one set. Variants are rendered from it (Renderer), not stored.
	VariantSets []*VariantSet `json:"variantSets,omitempty"`

	// Subsets is the table the blobs' membership masks index (Blob.Subsets): architecture
	// names, AnyArchitecture, ArchiveSubset. Empty in metadata written before subsets: every
	// mirror then carries every blob. See Membership.
	Subsets []string `json:"subsets,omitempty"`

	// blobsCopy is the copy Blobs started from (StartBlobs), if any.
	blobsCopy *BlobsCopy
}

// Repository is one published repository.
type Repository struct {
	// Tags maps each tag to the digest of its manifest.
	Tags map[string]Digest `json:"tags"`
	// Manifests lists every manifest reachable in the repository (tagged, children of
	// indexes, referrers), sorted.
	Manifests []Digest `json:"manifests"`
	// Blobs lists every config and layer the tree holds for the repository, sorted.
	Blobs []Digest `json:"blobs"`
	// Referrers maps a subject manifest to the descriptors of manifests that refer to it
	// (OCI 1.1), with artifactType and annotations as the referrers API returns them.
	Referrers map[Digest][]Descriptor `json:"referrers,omitempty"`

	// Retiring lists the manifests an earlier generation published in the repository that
	// this one no longer references but still serves by digest (a pull that spans a switch,
	// replicas a generation apart), sorted. Their bytes are in Meta.Manifests, their files in
	// Meta.Blobs (with Blob.Retired). Tags, tag lists and the catalog never name them; a
	// repository with retiring content only has no tags and is left out of the catalog.
	Retiring []Digest `json:"retiring,omitempty"`
	// RetiringBlobs lists the configs and layers of the retiring manifests that the
	// repository no longer references, sorted; served by digest like Retiring.
	RetiringBlobs []Digest `json:"retiringBlobs,omitempty"`
	// Archived lists the archived tags (generate --archive, --keep-removed), sorted: still
	// published, but the blobs only they reference form the archive subset.
	Archived []string `json:"archived,omitempty"`
	// Removed maps each tag kept after the source removed it (--keep-removed) to when a
	// generation first found it gone; such tags are archived.
	Removed map[string]time.Time `json:"removed,omitempty"`
}

// IsArchived reports whether tag is archived in r.
func (r *Repository) IsArchived(tag string) bool {
	i := sort.SearchStrings(r.Archived, tag)
	return i < len(r.Archived) && r.Archived[i] == tag
}

// Published reports whether the generation publishes the repository (it has a tag): only
// those are in the catalog and answer tags/list; the others only serve retiring content.
func (r *Repository) Published() bool { return len(r.Tags) > 0 }

// Manifest is a manifest's media type and exact bytes.
type Manifest struct {
	MediaType string `json:"mediaType"`
	Data      []byte `json:"data"`
}

// Blob is a file in blobs/.
type Blob struct {
	Size int64 `json:"size"`
	// Since is the generation the blob first appeared in. A mirror holding generation G holds
	// every blob with Since <= G.
	Since uint64 `json:"since"`
	// Retired is set while some repository retires the file (Repository.Retiring and
	// RetiringBlobs): when a repository last stopped referencing it. A repository's retiring
	// entry ends once Retired is older than the grace period, but never in the generation
	// that retired it; only then may the file become an orphan.
	Retired time.Time `json:"retired,omitzero"`
	// Subsets is the blob's membership: a mask over Meta.Subsets (bit i: Meta.Subsets[i]);
	// 0 means every subset (metadata written before subsets).
	Subsets uint64 `json:"subsets,omitempty"`
	// Former are the subsets the blob left at Left (a tag archived): mirrors carrying them
	// keep it until the grace period after Left; routing ignores them.
	Former uint64    `json:"former,omitempty"`
	Left   time.Time `json:"left,omitzero"`
}

// Orphan is a blob file no longer referenced.
type Orphan struct {
	Size         int64     `json:"size"`
	Since        uint64    `json:"since"`        // as in Blob, kept if the blob is referenced again
	Unreferenced time.Time `json:"unreferenced"` // when a generation first stopped referencing it
	// Subsets are the subsets (a mask over Meta.Subsets) it belonged to: mirrors carrying them
	// keep it until it is deleted.
	Subsets uint64 `json:"subsets,omitempty"`
}

// Mirror is one mirror from the mirrors file, with what the last crawl found.
type Mirror struct {
	Name      string   `json:"name"`
	URL       string   `json:"url"` // ends in "/"; blobs at URL + BlobPath(d)
	Country   string   `json:"country,omitempty"`
	Continent string   `json:"continent,omitempty"`
	Bandwidth int64    `json:"bandwidth,omitempty"`
	Netblocks []string `json:"netblocks,omitempty"`
	Enabled   bool     `json:"enabled"`
	// ASNs are autonomous systems whose clients go to this mirror before their country's
	// (the tier after netblocks).
	ASNs []uint32 `json:"asns,omitempty"`
	// AllowedCountries, when not empty, are the only client countries (upper case) that the
	// country, continent and global tiers send to this mirror; netblock and ASN matches are
	// not restricted.
	AllowedCountries []string `json:"allowedCountries,omitempty"`
	// Private mirrors are reached through their netblocks and ASNs only: no region lists them.
	Private bool `json:"private,omitempty"`
	// Content names the subsets the mirror carries (architectures, ArchiveSubset); empty
	// means every architecture and no archive. See Meta.ContentMask.
	Content []string `json:"content,omitempty"`

	// Crawl state.
	Generation uint64    `json:"generation,omitempty"` // generation found on the mirror; 0 unknown
	Healthy    bool      `json:"healthy"`
	Status     string    `json:"status,omitempty"` // reason, for people
	Failures   int       `json:"failures,omitempty"`
	Checked    time.Time `json:"checked,omitzero"`
}

// Region is one region's candidates. Region keys are ISO 3166-1 alpha-2 country codes ("DE"),
// continent codes ("EU", "NA", "SA", "AS", "AF", "OC", "AN") and "global". A client whose
// country has no region uses its continent's, then "global".
type Region struct {
	// Tiers names candidate mirrors, most preferred tier first (the country's, then the rest
	// of its continent, then the rest of the world). Within a tier the choice is random,
	// weighted by bandwidth. Only mirrors that were healthy and enabled at the last crawl are
	// listed, never a private one, and a mirror restricted to some client countries only in
	// those countries' regions; per blob, a mirror is a candidate only if its Generation >=
	// the blob's Since. Every tier is listed, whatever Meta.MinMirrors says: a blob goes to
	// the first tier that has a mirror holding it.
	Tiers [][]string `json:"tiers"`
	// VariantSet indexes Meta.VariantSets; -1 when the region has no variants.
	VariantSet int `json:"variantSet"`
}

// VariantSet is one set of regional manifest variants: what it takes to render them (the
// mirrors, in the order their urls appear). Variants are rendered, not recorded: see Renderer.
// The per-manifest records ("variants") earlier format 2 writers wrote are ignored.
type VariantSet struct {
	// Mirrors names the set's candidate mirrors in preference order: the tiers of the regions
	// sharing the set, in order, as far as the first tier that brings the list to
	// Meta.MinMirrors mirrors (the widened list; later tiers are left out).
	Mirrors []string `json:"mirrors"`
}

// NewMeta returns an empty Meta of the current format.
func NewMeta(generation uint64) *Meta {
	return &Meta{
		Format:       FormatVersion,
		Generation:   generation,
		Created:      time.Now().UTC(),
		Repositories: map[string]*Repository{},
		Manifests:    map[Digest]*Manifest{},
		Blobs:        map[Digest]*Blob{},
	}
}

// Tree is a tree on disk, addressed by its root directory.
type Tree struct {
	dir  string
	base updateBase // the content LoadForUpdate loaded, for the next publish
	// shared is what was written or removed under SharedDir through this Tree since its last
	// publish's file list was rendered (SharedChanged).
	shared sharedLog
	// packCache is the directory of decoded copies of large content packs (UsePackCache).
	packCache string
	// mapped unmaps each pack cache copy a load read (UsePackCache's release).
	mappedMu sync.Mutex
	mapped   []func()
	// plainRepos are the plain repositories of the settled record Unsettle last read
	// (SettledPlain).
	plainRepos []string
	// early is the content diff StartDiff started, for the publish of its Meta.
	early atomic.Pointer[earlyDiff]
	// vouches are what the last run found its files to hold (UseVouches); nil: none.
	vouches *vouches
}

// NewTree returns the tree rooted at dir. Nothing is read or created.
func NewTree(dir string) *Tree { return &Tree{dir: dir} }

// Dir is the tree's root directory.
func (t *Tree) Dir() string { return t.dir }

// Path turns a tree-relative slash path (from the helpers in this package) into an OS path.
func (t *Tree) Path(rel string) string { return filepath.Join(t.dir, filepath.FromSlash(rel)) }

// ReadStamp reads regmirror/current. It returns ErrNoGeneration when there is none.
func (t *Tree) ReadStamp() (Stamp, error) {
	b, err := os.ReadFile(t.Path(CurrentFile))
	if errors.Is(err, os.ErrNotExist) {
		return Stamp{}, ErrNoGeneration
	}
	if err != nil {
		return Stamp{}, fmt.Errorf("reading generation stamp: %w", err)
	}
	return ParseStamp(b)
}

// ParseStamp parses the content of a current stamp, as read from a tree or a mirror.
func ParseStamp(b []byte) (Stamp, error) {
	var s Stamp
	if err := json.Unmarshal(b, &s); err != nil {
		return Stamp{}, fmt.Errorf("parsing generation stamp: %w", err)
	}
	if s.Format < 1 || s.Format > FormatVersion { // older stamps read the same
		return Stamp{}, fmt.Errorf("generation stamp has format %d, this regmirror reads formats 1 to %d: upgrade regmirror", s.Format, FormatVersion)
	}
	if _, err := metaDigestFromRef(s.Meta); err != nil {
		return Stamp{}, err
	}
	for _, f := range strings.Fields(s.MetaFiles) {
		if _, err := metaDigestFromRef(f); err != nil {
			return Stamp{}, err
		}
	}
	return s, nil
}

func metaDigestFromRef(ref string) (Digest, error) {
	const prefix, suffix = "meta/", ".json.zst"
	if len(ref) != len(prefix)+64+len(suffix) || ref[:len(prefix)] != prefix || ref[len(ref)-len(suffix):] != suffix {
		return Digest{}, fmt.Errorf("generation stamp names metadata %q, want meta/<sha256 hex>.json.zst", trunc.String(ref))
	}
	return ParseDigest("sha256:" + ref[len(prefix):len(prefix)+64])
}

// Load reads the current generation's metadata.
func (t *Tree) Load() (*Meta, Stamp, error) {
	m, s, _, _, err := t.load(nil)
	return m, s, err
}

// load reads the current generation's metadata: see loadMeta. c and ch are the format 3
// chain read and its change against from (nil for formats 1 and 2).
func (t *Tree) load(from *loadedChain) (m *Meta, s Stamp, c *loadedChain, ch *ContentChange, err error) {
	if s, err = t.ReadStamp(); err != nil {
		return nil, Stamp{}, nil, nil, err
	}
	d, err := metaDigestFromRef(s.Meta)
	if err != nil {
		return nil, Stamp{}, nil, nil, err
	}
	if m, c, ch, err = t.loadMeta(d, from); err != nil {
		return nil, Stamp{}, nil, nil, err
	}
	if m.Generation != s.Generation {
		return nil, Stamp{}, nil, nil, fmt.Errorf("metadata %s is generation %d, stamp says %d", s.Meta, m.Generation, s.Generation)
	}
	return m, s, c, ch, nil
}

// LoadMeta reads and verifies the metadata whose root (format 3) or file (formats 1 and 2) has
// digest d: a format 3 root with the network file and content packs it names, each checked
// against its name. A file missing or corrupt is a *MetaFileError naming it.
func (t *Tree) LoadMeta(d Digest) (*Meta, error) {
	m, _, _, err := t.loadMeta(d, nil)
	return m, err
}

// loadMeta is LoadMeta, reading a format 3 chain from from (a Loader's, or nil) as loadChain
// does; it also returns the chain read and its change (nil for formats 1 and 2).
func (t *Tree) loadMeta(d Digest, from *loadedChain) (*Meta, *loadedChain, *ContentChange, error) {
	js, err := t.readMetaFile(metaRef(d), 0)
	if err != nil {
		return nil, nil, nil, err
	}
	if h := peekHeader(js); h.Format == 3 && h.Kind == metaKindRoot {
		r, err := decodeRoot(js)
		if err != nil {
			return nil, nil, nil, &MetaFileError{MetaPath(d), 0, err}
		}
		m, c, ch, err := t.loadChain(r, from)
		if err != nil {
			return nil, nil, nil, err
		}
		if err := m.validateNames(); err != nil {
			return nil, nil, nil, err
		}
		return m, c, ch, nil
	}
	m, err := decodeMetaJSON(js)
	return m, nil, nil, err
}

// DecodeMeta decodes the compressed bytes of a whole metadata document: a format 1 or 2
// metadata file, or EncodeMeta's encoding. A format 3 tree's metadata (a root, the files it
// names) is read with Tree.LoadMeta.
func DecodeMeta(raw []byte) (*Meta, error) {
	js, err := decompressMeta(raw)
	if err != nil {
		return nil, err
	}
	return decodeMetaJSON(js)
}

func decodeMetaJSON(js []byte) (*Meta, error) {
	if h := peekHeader(js); h.Kind != "" {
		return nil, fmt.Errorf("decoding metadata: a format %d %s, not a whole metadata document", h.Format, trunc.String(h.Kind))
	}
	var m Meta
	if err := json.Unmarshal(js, &m); err != nil {
		return nil, fmt.Errorf("decoding metadata: %w", err)
	}
	switch m.Format {
	case 2, 3: // 3: EncodeMeta's whole document
		m.Format = FormatVersion
	case 1:
		// Format 1 stored the variants' bytes where format 2 records their digests and sizes:
		// drop them (regions point at no set), generate and crawl recompute them.
		m.Format, m.VariantSets = FormatVersion, nil
		for _, r := range m.Regions {
			if r != nil {
				r.VariantSet = -1
			}
		}
	default:
		return nil, fmt.Errorf("metadata has format %d, this regmirror reads formats 1 to %d: upgrade regmirror", m.Format, FormatVersion)
	}
	if m.Repositories == nil {
		m.Repositories = map[string]*Repository{}
	}
	if m.Manifests == nil {
		m.Manifests = map[Digest]*Manifest{}
	}
	if m.Blobs == nil {
		m.Blobs = map[Digest]*Blob{}
	}
	if err := m.validateNames(); err != nil {
		return nil, err
	}
	return &m, nil
}

// validateNames checks the repository names and tags of decoded metadata.
func (m *Meta) validateNames() error {
	for name, r := range m.Repositories {
		if err := ValidateName(name); err != nil {
			return fmt.Errorf("metadata: %w", err)
		}
		if r == nil {
			return fmt.Errorf("metadata: repository %s is null", name)
		}
		for tag := range r.Tags {
			if err := ValidateTag(tag); err != nil {
				return fmt.Errorf("metadata: repository %s: %w", name, err)
			}
		}
	}
	return nil
}

// EncodeMeta returns the compressed bytes of m as one whole document (what DecodeMeta reads)
// and their digest: for measuring and copying; a tree stores format 3 (Tree.PublishWith).
func EncodeMeta(m *Meta) ([]byte, Digest, error) { return encodeMetaDoc(m) }
