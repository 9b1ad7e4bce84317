// Package generator publishes the repositories of a source registry as a static tree: every
// blob once, every manifest, an OCI image layout index and the redirector's metadata, written
// in the order the layout package prescribes so that a crash at any point leaves the previous
// generation servable.
package generator

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/regmirror/regmirror/layout"
)

// Defaults for Options fields left zero.
const (
	DefaultJobs         = 8
	DefaultGCGrace      = 7 * 24 * time.Hour
	DefaultRetries      = 5
	DefaultRetryBackoff = 200 * time.Millisecond
	DefaultStallTimeout = 60 * time.Second
	DefaultLogInterval  = 5 * time.Second

	// MaxManifestSize is the largest manifest the generator accepts (layout.MaxManifestSize).
	MaxManifestSize = layout.MaxManifestSize

	// Limits on what a source may list, against a source that never stops (Options.MaxPages,
	// MaxEntries, MaxReferrers; flags --max-pages, --max-entries, --max-referrers).
	DefaultMaxPages     = 10000  // pages of one listing: the catalog, a tag list, a subject's referrers
	DefaultMaxEntries   = 100000 // repositories in the catalog; tags of one repository
	DefaultMaxReferrers = 1000   // referrers of one manifest

	// MaxDepth bounds how deep indexes nest and how deep referrers of referrers are followed.
	MaxDepth = 8
)

// BlobFile is a file being written atomically (a *layout.File by default).
type BlobFile = layout.AtomicFile

// Options configure one Run. Source and Out are required; zero values of the rest mean the
// defaults.
type Options struct {
	// Source is the registry base URL, http:// or https://, with no path.
	Source string
	// Out is the tree's root directory.
	Out string
	// CacheDir is --cache-dir: where the run keeps a decoded copy of the tree's large content
	// packs, for the next run to read its previous generation from (layout.Tree.UsePackCache),
	// and its vouches for the files it checked (layout.Tree.UseVouches). Outside the tree,
	// never published; empty keeps none.
	CacheDir string
	// Repos are --repo globs (see Glob); none selects every repository.
	Repos []string
	// MirrorsFile is --mirrors: the mirror network, recorded in the metadata with the
	// per-region data (crawl state carried over by mirror name). Empty keeps the previous
	// generation's mirror network, if any.
	MirrorsFile string
	// MMDirectory is --mm-directory: with MirrorsFile a MirrorManager mirrorlist cache, the
	// tree's directory in it.
	MMDirectory string
	// MinMirrors is --min-mirrors: the number of mirrors regional candidate lists are widened
	// to (layout.Meta.MinMirrors); 0 keeps the previous generation's, else the default.
	MinMirrors int

	// Archive are --archive globs (see Glob) over "repository:tag": matching tags are
	// archived (layout.Repository.Archived): still published, but the blobs only archived tags
	// reference form the archive subset.
	Archive []string
	// KeepRemoved is --keep-removed: a tag that disappeared from the source stays published,
	// archived, from its previous state; ArchiveMaxAge (--archive-max-age), when set, removes
	// it that long after a generation first found it gone.
	KeepRemoved   bool
	ArchiveMaxAge time.Duration

	// Jobs bounds concurrent blob transfers; small requests (tag lists, manifest HEADs and
	// GETs, referrers) and manifest writes run 4×Jobs at a time.
	Jobs int
	// DryRun computes and returns the plan and writes nothing.
	DryRun bool
	// GCGrace is how long content no longer referenced stays pullable by digest (retiring) and
	// its files in the tree; whatever its value, at least for the generation that retires it.
	GCGrace time.Duration
	// Verify re-hashes blobs already present instead of trusting the previous generation's
	// record of them (a file it records with the same size is not even looked at) or their size;
	// it also turns off taking unchanged repositories whole, recomputes subset membership
	// from every manifest rather than from the change (layout.MembershipSince), and lists
	// blobs/ for strays even when the tree is settled (layout.Tree.Unsettle), and hashes the
	// metadata and shared files it builds on even when CacheDir vouches for them
	// (layout.Tree.UseVouches).
	Verify bool
	// VerifyLayers decompresses every new layer and checks it against the config's diff_ids.
	VerifyLayers bool

	// Credentials: Auth when set, else Keychain (default: REGISTRY_AUTH_FILE, then the
	// docker config, see DefaultKeychain).
	Auth     authn.Authenticator
	Keychain authn.Keychain

	// TLS.
	InsecureSkipTLSVerify bool
	CAFile                string

	// Transport, when set, replaces the base HTTP transport (tests, fault injection); TLS
	// options are then ignored.
	Transport http.RoundTripper

	// Retries is how many times a failed request is retried (5xx, resets, timeouts, truncated
	// or corrupt bodies), with exponential backoff from RetryBackoff.
	Retries      int
	RetryBackoff time.Duration
	// StallTimeout aborts (and retries) a request whose body sends nothing for this long.
	StallTimeout time.Duration

	// MaxPages bounds the pages read of one listing (the catalog, one repository's tags, one
	// manifest's referrers), MaxEntries the repositories of the catalog and the tags of one
	// repository, MaxReferrers the referrers of one manifest. A source past a limit fails that
	// listing with an error naming the source and the limit: the run for the catalog, the
	// repository for its tags, the tag for referrers. Zero means the default.
	MaxPages, MaxEntries, MaxReferrers int

	// Logger receives warnings and progress records; nil is a text logger on Log.
	Logger *slog.Logger
	// Log is where the live progress bar is drawn (a terminal: os.Stderr in the CLI, which
	// Logger writes to too); nil discards.
	Log io.Writer
	// Live draws a progress bar rewritten in place on Log; otherwise a progress record is
	// logged every LogInterval.
	Live        bool
	LogInterval time.Duration

	// CreateFile opens a blob file for atomic writing; default layout.CreateFile. A hook for
	// tests (full disk).
	CreateFile func(path string) (BlobFile, error)
	// Now is the clock; default time.Now.
	Now func() time.Time

	pageSize int // n of list requests; tests set it small
}

func (o *Options) setDefaults() error {
	if o.Source == "" {
		return errors.New("no source registry: give Options.Source http://HOST:PORT or https://HOST")
	}
	if o.Out == "" && !o.DryRun {
		return errors.New("no output directory: give Options.Out DIR")
	}
	if o.Jobs <= 0 {
		o.Jobs = DefaultJobs
	}
	if o.GCGrace < 0 {
		return fmt.Errorf("Options.GCGrace %s is negative", o.GCGrace)
	}
	if o.GCGrace == 0 {
		o.GCGrace = DefaultGCGrace
	}
	if o.ArchiveMaxAge < 0 {
		return fmt.Errorf("Options.ArchiveMaxAge %s is negative", o.ArchiveMaxAge)
	}
	if o.ArchiveMaxAge > 0 && !o.KeepRemoved {
		return errors.New("Options.ArchiveMaxAge without Options.KeepRemoved: it ages out removed tags that Options.KeepRemoved keeps")
	}
	if o.Retries < 0 {
		o.Retries = 0
	} else if o.Retries == 0 {
		o.Retries = DefaultRetries
	}
	if o.RetryBackoff <= 0 {
		o.RetryBackoff = DefaultRetryBackoff
	}
	if o.StallTimeout <= 0 {
		o.StallTimeout = DefaultStallTimeout
	}
	for _, l := range []struct {
		v    *int
		def  int
		flag string
	}{{&o.MaxPages, DefaultMaxPages, "Options.MaxPages"}, {&o.MaxEntries, DefaultMaxEntries, "Options.MaxEntries"}, {&o.MaxReferrers, DefaultMaxReferrers, "Options.MaxReferrers"}} {
		switch {
		case *l.v < 0:
			return fmt.Errorf("%s %d: want a positive number", l.flag, *l.v)
		case *l.v == 0:
			*l.v = l.def
		}
	}
	if o.LogInterval <= 0 {
		o.LogInterval = DefaultLogInterval
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(o.Log, nil))
	}
	if o.CreateFile == nil {
		o.CreateFile = func(path string) (BlobFile, error) { return layout.CreateFile(path) }
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return nil
}

// parseSource checks a --source URL and returns it as scheme://host.
func parseSource(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("Options.Source %q is not a URL: %w", s, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("Options.Source %q: want http://HOST[:PORT] or https://HOST[:PORT]", s)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("Options.Source %q has no host", s)
	}
	if u.User != nil {
		return nil, fmt.Errorf("Options.Source: put credentials in Options.Auth or the docker config, not in the URL")
	}
	if p := strings.TrimSuffix(u.Path, "/"); p != "" && p != "/v2" {
		return nil, fmt.Errorf("Options.Source %q has a path: registries answer at the root (/v2/)", s)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("Options.Source %q has a query or fragment", s)
	}
	return &url.URL{Scheme: u.Scheme, Host: u.Host}, nil
}
