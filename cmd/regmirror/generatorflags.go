package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/pflag"

	"github.com/regmirror/regmirror/generator"
	"github.com/regmirror/regmirror/internal/mirrors"
)

// addGeneratorFlags registers the flags that configure a generator run, shared by generate
// and listen (which runs generate on notifications).
func addGeneratorFlags(fs *pflag.FlagSet, o *generator.Options) {
	fs.StringVar(&o.Source, "source", "", "source registry base `URL`, http:// or https://")
	fs.StringVar(&o.Out, "out", "", "the tree's root `DIR` (created if missing)")
	fs.StringVar(&o.CacheDir, "cache-dir", defaultCacheDir(), "keep decoded copies of the tree's large metadata packs in `DIR`, outside the tree, so that the next run reads its previous generation faster, and vouches for the files the run checked; \"\" keeps none")
	fs.StringArrayVar(&o.Repos, "repo", nil, "publish repositories matching `GLOB` ('*' within a path segment, '**' across); repeatable; default all")
	fs.StringVar(&o.MirrorsFile, "mirrors", "", "mirrors `FILE` describing the mirror network: YAML, or MirrorManager's mirrorlist cache with --mm-directory")
	fs.StringVar(&o.MMDirectory, "mm-directory", "", "the tree's directory in MirrorManager (`PATH`, like pub/containers) when --mirrors is its mirrorlist cache")
	fs.IntVar(&o.MinMirrors, "min-mirrors", 0, "widen regional mirror lists tier by tier to at least `N` mirrors (default: the previous generation's, else 5)")
	fs.StringArrayVar(&o.Archive, "archive", nil, "archive tags matching `GLOB` over repo:tag (like fedora:3[0-9]): still published, their own blobs only on mirrors carrying archive; repeatable")
	fs.BoolVar(&o.KeepRemoved, "keep-removed", false, "keep tags that disappeared from the source published, archived, instead of removing them")
	fs.DurationVar(&o.ArchiveMaxAge, "archive-max-age", 0, "with --keep-removed: remove a kept tag this `DURATION` after the source removed it (default: never)")
	fs.IntVar(&o.Jobs, "jobs", generator.DefaultJobs, "concurrent blob transfers (small requests run 4x as many)")
	fs.DurationVar(&o.GCGrace, "gc-grace", generator.DefaultGCGrace, "keep content no longer referenced pullable by digest (and its files) this long; at least one generation")
	fs.BoolVar(&o.Verify, "verify", false, "re-hash blobs already in the tree instead of trusting the previous generation's record or their size, hash the metadata and shared files even when --cache-dir vouches for them, and recompute subset membership from every manifest")
	fs.BoolVar(&o.VerifyLayers, "verify-layers", false, "decompress each new layer and check it against the image config's diff_ids")
	fs.BoolVar(&o.InsecureSkipTLSVerify, "insecure-skip-tls-verify", false, "accept any TLS certificate from the source")
	fs.StringVar(&o.CAFile, "ca-file", "", "trust the PEM certificates in `FILE` for the source, besides the system's")
	fs.IntVar(&o.MaxEntries, "max-entries", generator.DefaultMaxEntries, "refuse a catalog or a repository's tag list of more than `N` entries")
	fs.IntVar(&o.MaxPages, "max-pages", generator.DefaultMaxPages, "refuse a catalog, tag list or referrers list of more than `N` pages")
	fs.IntVar(&o.MaxReferrers, "max-referrers", generator.DefaultMaxReferrers, "refuse a manifest with more than `N` referrers")
}

// checkGeneratorFlags validates what addGeneratorFlags registered, naming the command in its
// errors; the mirrors file is read now, so a typo fails before any transfer.
func checkGeneratorFlags(cmd string, fs *pflag.FlagSet, o *generator.Options) error {
	if fs.NArg() > 0 {
		return fmt.Errorf("%s: unexpected argument %q (see 'regmirror %s --help')", cmd, fs.Arg(0), cmd)
	}
	if o.Source == "" {
		return fmt.Errorf("%s: --source is required, e.g. --source http://localhost:5000", cmd)
	}
	if o.Out == "" && !o.DryRun {
		return fmt.Errorf("%s: --out is required: the tree's root directory", cmd)
	}
	if o.Jobs < 1 {
		return fmt.Errorf("%s: --jobs %d: want at least 1", cmd, o.Jobs)
	}
	if o.GCGrace <= 0 {
		return fmt.Errorf("%s: --gc-grace %s: want a positive duration such as 168h", cmd, o.GCGrace)
	}
	for _, l := range []struct {
		flag string
		v    int
	}{{"max-entries", o.MaxEntries}, {"max-pages", o.MaxPages}, {"max-referrers", o.MaxReferrers}} {
		if l.v < 1 {
			return fmt.Errorf("%s: --%s %d: want at least 1", cmd, l.flag, l.v)
		}
	}
	for _, p := range o.Archive {
		if _, err := generator.CompileGlob(p); err != nil || !strings.Contains(p, ":") {
			return fmt.Errorf("%s: --archive %q: want a repository:tag pattern, like fedora:3[0-9]", cmd, p)
		}
	}
	if o.ArchiveMaxAge < 0 || o.ArchiveMaxAge > 0 && !o.KeepRemoved {
		return fmt.Errorf("%s: --archive-max-age %s: want a positive duration, with --keep-removed", cmd, o.ArchiveMaxAge)
	}
	if fs.Changed("min-mirrors") && o.MinMirrors < 1 {
		return fmt.Errorf("%s: --min-mirrors %d: want at least 1", cmd, o.MinMirrors)
	}
	if o.MMDirectory != "" && o.MirrorsFile == "" {
		return fmt.Errorf("%s: --mm-directory needs --mirrors naming MirrorManager's mirrorlist cache (mirrorlist_cache.proto)", cmd)
	}
	if o.MirrorsFile != "" {
		if _, err := mirrors.LoadSource(mirrors.Source{Path: o.MirrorsFile, MMDirectory: o.MMDirectory}); err != nil {
			return fmt.Errorf("%s: %w", cmd, err)
		}
	}
	return nil
}

// parseFlags parses args, wrapping errors with the command and a pointer to --help; --help
// itself comes back as pflag.ErrHelp.
func parseFlags(cmd string, fs *pflag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%s: %w (see 'regmirror %s --help')", cmd, err, cmd)
	}
	return nil
}

// defaultCacheDir is --cache-dir's default: packs in the unit's cache directory under systemd
// (CacheDirectory=, which sets CACHE_DIRECTORY), else regmirror/packs in the user's cache
// directory ($XDG_CACHE_HOME, else ~/.cache), else none.
func defaultCacheDir() string {
	if dirs := os.Getenv("CACHE_DIRECTORY"); dirs != "" {
		first, _, _ := strings.Cut(dirs, ":")
		return filepath.Join(first, "packs")
	}
	dir, err := os.UserCacheDir()
	if err != nil {
		return ""
	}
	return filepath.Join(dir, "regmirror", "packs")
}
