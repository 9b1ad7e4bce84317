// Command regmirror publishes a registry's stable repositories as a static tree that mirrors
// copy with rsync, and answers pulls by sending every blob download to a mirror near the user.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/pflag"
)

// command is one subcommand. run parses its own flags from args; it returns an error for
// main to print as one line, and never exits the process itself.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

func commands() []command {
	return []command{
		{"generate", "write the static tree from a source registry", runGenerate},
		{"crawl", "check which mirrors hold the current tree and refresh the region data", runCrawl},
		{"serve", "answer pulls from the tree, sending blob downloads to mirrors", runServe},
		{"listen", "regenerate the tree when the source registry notifies a push", runListen},
		{"mirror-config", "print nginx or Apache directives with which a mirror answers pulls itself", runMirrorConfig},
		{"demo", "publish the demo images into a tree and serve it on localhost", runDemo},
		{"version", "print version and build information", runVersion},
	}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		if !errors.Is(err, pflag.ErrHelp) {
			fmt.Fprintf(os.Stderr, "regmirror: %v\n", err)
		}
		if errors.Is(err, pflag.ErrHelp) {
			os.Exit(0)
		}
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stdout)
		if len(args) == 0 {
			return errors.New("no command given: see the list above")
		}
		return nil
	}
	for _, c := range commands() {
		if c.name == args[0] {
			stop, err := startProfile(c.name)
			if err != nil {
				return err
			}
			defer stop()
			return withFlags(c.run(ctx, args[1:], stdout, stderr))
		}
	}
	return fmt.Errorf("unknown command %q: run 'regmirror --help' for the list", args[0])
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "Usage: regmirror <command> [flags]\n\nCommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-13s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nRun 'regmirror <command> --help' for a command's flags.")
}

// newFlagSet returns a flag set that reports errors instead of exiting and prints usage to
// stderr with the command's synopsis.
func newFlagSet(name, synopsis string, stderr io.Writer) *pflag.FlagSet {
	fs := pflag.NewFlagSet(name, pflag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.SortFlags = false
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: regmirror %s\n\n%s", synopsis, fs.FlagUsages())
	}
	return fs
}
