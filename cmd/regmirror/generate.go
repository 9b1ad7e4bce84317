package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"github.com/regmirror/regmirror/internal/mirrors"
	"io"
	"os"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/regmirror/regmirror/generator"
	"github.com/spf13/pflag"
)

func runGenerate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return generate(ctx, args, os.Stdin, stdout, stderr, nil)
}

// generate is runGenerate with its input and a hook to adjust the options (tests).
func generate(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, adjust func(*generator.Options)) error {
	fs := newFlagSet("generate", "generate --source URL --out DIR [--repo GLOB]... [--mirrors FILE [--mm-directory PATH]] [--min-mirrors N] [--jobs N] [--dry-run]", stderr)
	var (
		o             generator.Options
		user, pass    string
		passwordStdin bool
	)
	fs.StringVar(&o.Source, "source", "", "source registry base `URL`, http:// or https://")
	fs.StringVar(&o.Out, "out", "", "the tree's root `DIR` (created if missing)")
	fs.StringArrayVar(&o.Repos, "repo", nil, "publish repositories matching `GLOB` ('*' within a path segment, '**' across); repeatable; default all")
	fs.StringVar(&o.MirrorsFile, "mirrors", "", "mirrors `FILE` describing the mirror network: YAML, or MirrorManager's mirrorlist cache with --mm-directory")
	fs.StringVar(&o.MMDirectory, "mm-directory", "", "the tree's directory in MirrorManager (`PATH`, like pub/containers) when --mirrors is its mirrorlist cache")
	fs.IntVar(&o.MinMirrors, "min-mirrors", 0, "widen regional mirror lists tier by tier to at least `N` mirrors (default: the previous generation's, else 5)")
	fs.IntVar(&o.Jobs, "jobs", generator.DefaultJobs, "concurrent blob transfers (small requests run 4x as many)")
	fs.BoolVar(&o.DryRun, "dry-run", false, "print the plan (tags added, changed, removed; blobs to fetch and delete) and write nothing")
	fs.DurationVar(&o.GCGrace, "gc-grace", generator.DefaultGCGrace, "delete a blob only once unreferenced for this long")
	fs.BoolVar(&o.Verify, "verify", false, "re-hash blobs already in the tree instead of trusting their size")
	fs.BoolVar(&o.VerifyLayers, "verify-layers", false, "decompress each new layer and check it against the image config's diff_ids")
	fs.StringVar(&user, "username", "", "registry user name (default: REGISTRY_AUTH_FILE, then the docker config)")
	fs.StringVar(&pass, "password", "", "registry password (prefer --password-stdin)")
	fs.BoolVar(&passwordStdin, "password-stdin", false, "read the password from the first line of standard input")
	fs.BoolVar(&o.InsecureSkipTLSVerify, "insecure-skip-tls-verify", false, "accept any TLS certificate from the source")
	fs.StringVar(&o.CAFile, "ca-file", "", "trust the PEM certificates in `FILE` for the source, besides the system's")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return err
		}
		return fmt.Errorf("generate: %w (see 'regmirror generate --help')", err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("generate: unexpected argument %q (see 'regmirror generate --help')", fs.Arg(0))
	}
	if o.Source == "" {
		return errors.New("generate: --source is required, e.g. --source http://localhost:5000")
	}
	if o.Out == "" && !o.DryRun {
		return errors.New("generate: --out is required: the tree's root directory")
	}
	if o.Jobs < 1 {
		return fmt.Errorf("generate: --jobs %d: want at least 1", o.Jobs)
	}
	if o.GCGrace <= 0 {
		return fmt.Errorf("generate: --gc-grace %s: want a positive duration such as 168h", o.GCGrace)
	}
	if passwordStdin {
		if pass != "" {
			return errors.New("generate: give --password or --password-stdin, not both")
		}
		line, err := bufio.NewReader(stdin).ReadString('\n')
		if err != nil && !(errors.Is(err, io.EOF) && line != "") {
			return fmt.Errorf("generate: reading the password from standard input: %w", err)
		}
		pass = strings.TrimRight(line, "\r\n")
	}
	switch {
	case user != "" && pass == "":
		return errors.New("generate: --username needs --password or --password-stdin")
	case user == "" && pass != "":
		return errors.New("generate: a password needs --username")
	case user != "":
		o.Auth = authn.FromConfig(authn.AuthConfig{Username: user, Password: pass})
	}
	if fs.Changed("min-mirrors") && o.MinMirrors < 1 {
		return fmt.Errorf("generate: --min-mirrors %d: want at least 1", o.MinMirrors)
	}
	if o.MMDirectory != "" && o.MirrorsFile == "" {
		return errors.New("generate: --mm-directory needs --mirrors naming MirrorManager's mirrorlist cache (mirrorlist_cache.proto)")
	}
	if o.MirrorsFile != "" {
		// Fail before any transfer: a typo in the mirrors file should not cost a full sync.
		if _, err := mirrors.LoadSource(mirrors.Source{Path: o.MirrorsFile, MMDirectory: o.MMDirectory}); err != nil {
			return fmt.Errorf("generate: %w", err)
		}
	}
	o.Log = stderr
	o.Live = isTerminal(stderr)
	if adjust != nil {
		adjust(&o)
	}

	sum, err := generator.Run(ctx, o)
	if sum != nil {
		if sum.Plan != nil {
			sum.Plan.Print(stdout)
		}
		fmt.Fprintln(stdout, sum.String())
	}
	if err != nil {
		return fmt.Errorf("generate: %w", err)
	}
	return nil
}

// isTerminal reports whether w is a character device (a terminal), for the live bar.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
