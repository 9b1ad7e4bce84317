package main

import (
	"context"
	"fmt"
	"io"
	"runtime/debug"
)

func runVersion(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("version", "version", stderr)
	if err := fs.Parse(args); err != nil {
		return err
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		fmt.Fprintln(stdout, "regmirror (no build information)")
		return nil
	}
	version := bi.Main.Version
	settings := map[string]string{}
	for _, s := range bi.Settings {
		settings[s.Key] = s.Value
	}
	fmt.Fprintf(stdout, "regmirror %s\n  go: %s\n", version, bi.GoVersion)
	for _, k := range []string{"vcs.revision", "vcs.time", "vcs.modified", "GOOS", "GOARCH"} {
		if v, ok := settings[k]; ok {
			fmt.Fprintf(stdout, "  %s: %s\n", k, v)
		}
	}
	return nil
}
