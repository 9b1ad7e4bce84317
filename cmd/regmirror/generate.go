package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/regmirror/regmirror/generator"
)

func runGenerate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	_ = hugeHeapFor(generateHugeHeap) // a hint: without it generate runs the same, slower
	if os.Getenv("GOMEMLIMIT") == "" {
		limitCtx, stop := context.WithCancel(ctx)
		defer stop()
		go adaptMemoryLimit(limitCtx, generateMemoryLimit, 100*time.Millisecond)
	}
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
	addGeneratorFlags(fs, &o)
	logFormat := addLogFormatFlag(fs)
	fs.BoolVar(&o.DryRun, "dry-run", false, "print the plan (tags added, changed, removed; manifests that start retiring; blobs to fetch, manifests to write, blobs to delete; the retiring set) and write nothing")
	fs.StringVar(&user, "username", "", "registry user name (default: REGISTRY_AUTH_FILE, then the docker config)")
	fs.StringVar(&pass, "password", "", "registry password (prefer --password-stdin)")
	fs.BoolVar(&passwordStdin, "password-stdin", false, "read the password from the first line of standard input")
	if err := parseFlags("generate", fs, args); err != nil {
		return err
	}
	if err := checkGeneratorFlags("generate", fs, &o); err != nil {
		return err
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
	logger, err := newLogger("generate", *logFormat, stderr)
	if err != nil {
		return err
	}
	o.Logger, o.Log = logger, stderr
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
		logPhases(logger, sum.Phases)
	}
	if err != nil {
		return fmt.Errorf("generate: %w", err)
	}
	return nil
}

// logPhases logs where a run's time went: one record "phases", a duration per step
// (generator.Summary.Phases), for an operator asking why a generation took long.
func logPhases(logger *slog.Logger, phases []generator.Phase) {
	if len(phases) == 0 {
		return
	}
	attrs := make([]any, 0, len(phases))
	for _, p := range phases {
		attrs = append(attrs, slog.Duration(p.Name, p.Took.Round(time.Millisecond)))
	}
	logger.Info("phases", attrs...)
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
