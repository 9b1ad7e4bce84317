package main

import (
	"context"
	"fmt"
	"io"
	"runtime/debug"
)

// Set with -ldflags "-X main.version=... -X main.revision=..." when the build has no VCS
// information (GOFLAGS=-buildvcs=false, a source tarball).
var (
	version  string
	revision string
)

func runVersion(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("version", "version", stderr)
	if err := fs.Parse(args); err != nil {
		return err
	}
	fmt.Fprint(stdout, versionText())
	return nil
}

// moduleVersion is the module version ("(devel)" for a build from a work tree), or the -X
// override.
func moduleVersion() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "unknown"
}

// versionText is the module version, the VCS revision and the Go version, from the build
// information and the -X overrides.
func versionText() string {
	settings := map[string]string{}
	mod, goVersion := "(unknown)", "(unknown)"
	if bi, ok := debug.ReadBuildInfo(); ok {
		mod, goVersion = bi.Main.Version, bi.GoVersion
		for _, s := range bi.Settings {
			settings[s.Key] = s.Value
		}
	}
	if version != "" {
		mod = version
	}
	rev := settings["vcs.revision"]
	if revision != "" {
		rev = revision
	}
	if rev == "" {
		rev = "(unknown: built without VCS information; see 'make build')"
	} else if settings["vcs.modified"] == "true" {
		rev += " (modified)"
	}
	s := fmt.Sprintf("regmirror %s\n  revision: %s\n  go: %s\n", mod, rev, goVersion)
	for _, k := range []string{"vcs.time", "GOOS", "GOARCH"} {
		if v, ok := settings[k]; ok {
			s += fmt.Sprintf("  %s: %s\n", k, v)
		}
	}
	return s
}
