package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/regmirror/regmirror/internal/crawl"
	"github.com/spf13/pflag"
)

func runCrawl(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("crawl", "crawl --tree DIR [--mirrors FILE [--mm-directory PATH]] [--min-mirrors N] [--jobs N] [--timeout D] [--sample N] [--max-failures K]", stderr)
	var opts crawl.Options
	fs.StringVar(&opts.Tree, "tree", "", "the tree written by generate (required)")
	fs.StringVar(&opts.CacheDir, "cache-dir", defaultCacheDir(), "keep decoded copies of the tree's large metadata packs in `DIR`, outside the tree (as generate); \"\" keeps none")
	fs.StringVar(&opts.MirrorsFile, "mirrors", "", "mirrors `FILE` to apply first: YAML, or MirrorManager's mirrorlist cache with --mm-directory (default: the mirrors recorded in the tree)")
	fs.StringVar(&opts.MMDirectory, "mm-directory", "", "the tree's directory in MirrorManager (`PATH`, like pub/containers) when --mirrors is its mirrorlist cache")
	fs.IntVar(&opts.MinMirrors, "min-mirrors", 0, "widen regional mirror lists tier by tier to at least `N` mirrors (default: the tree's, else 5)")
	fs.IntVar(&opts.Jobs, "jobs", crawl.DefaultJobs, "mirrors checked at once")
	fs.DurationVar(&opts.Timeout, "timeout", crawl.DefaultTimeout, "timeout of every request to a mirror")
	fs.IntVar(&opts.Sample, "sample", crawl.DefaultSample, "newest blobs, and as many random others, each mirror must serve")
	logFormat := addLogFormatFlag(fs)
	fs.IntVar(&opts.MaxFailures, "max-failures", crawl.DefaultMaxFailures, "failed crawls in a row after which a mirror is dead (and must pass a larger check to come back)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return err
		}
		return fmt.Errorf("crawl: %w: see 'regmirror crawl --help'", err)
	}
	switch {
	case fs.NArg() > 0:
		return fmt.Errorf("crawl: unexpected argument %q: see 'regmirror crawl --help'", fs.Arg(0))
	case opts.Tree == "":
		return errors.New("crawl: --tree is required: give the directory generate wrote (--tree DIR)")
	case opts.Jobs < 1:
		return fmt.Errorf("crawl: --jobs %d: want at least 1", opts.Jobs)
	case opts.Timeout <= 0:
		return fmt.Errorf("crawl: --timeout %v: want a positive duration, like 10s", opts.Timeout)
	case opts.Sample < 1:
		return fmt.Errorf("crawl: --sample %d: want at least 1", opts.Sample)
	case opts.MaxFailures < 1:
		return fmt.Errorf("crawl: --max-failures %d: want at least 1", opts.MaxFailures)
	case fs.Changed("min-mirrors") && opts.MinMirrors < 1:
		return fmt.Errorf("crawl: --min-mirrors %d: want at least 1", opts.MinMirrors)
	case opts.MMDirectory != "" && opts.MirrorsFile == "":
		return errors.New("crawl: --mm-directory needs --mirrors naming MirrorManager's mirrorlist cache (mirrorlist_cache.proto)")
	}
	logger, err := newLogger("crawl", *logFormat, stderr)
	if err != nil {
		return err
	}
	rep, err := crawl.Run(ctx, opts)
	if err != nil {
		return fmt.Errorf("crawl: %w", err)
	}
	logCrawl(logger, rep)
	return rep.WriteTable(stdout)
}

// logCrawl logs one record per mirror and one for the crawl, for the journal; the table on
// standard output is for people.
func logCrawl(logger *slog.Logger, rep *crawl.Report) {
	for _, m := range rep.Mirrors {
		level := slog.LevelInfo
		if !m.Healthy && m.Enabled {
			level = slog.LevelWarn
		}
		logger.Log(context.Background(), level, "mirror", "name", m.Name, "country", m.Country, "continent", m.Continent,
			"generation", m.Generation, "healthy", m.Healthy, "blobs", m.Blobs, "failures", m.Failures,
			"duration", m.Duration.Round(time.Millisecond).String(), "status", m.Status)
	}
	logger.Info("crawled", "generation", rep.Generation, "healthy", rep.Healthy(), "mirrors", len(rep.Mirrors),
		"published", rep.Stamp.Meta, "duration", rep.Duration.Round(time.Millisecond).String())
}
