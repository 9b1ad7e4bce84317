package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/regmirror/regmirror/internal/phase2"
	"github.com/spf13/pflag"
)

const mirrorConfigSynopsis = "mirror-config --server nginx|apache --root PATH"

func runMirrorConfig(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("mirror-config", mirrorConfigSynopsis, stderr)
	server := fs.String("server", "", "the web server: nginx (directives for a server { } block) or apache (for a <VirtualHost>)")
	root := fs.String("root", "", "absolute `PATH` of the mirror's rsync copy of the tree")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: regmirror %s\n\n%s", mirrorConfigSynopsis, fs.FlagUsages())
		fmt.Fprint(stderr, `
Prints the directives with which a plain web server serving an rsync copy of the tree at PATH
answers pulls itself ('podman pull MIRROR/REPO:TAG', 'skopeo copy docker://MIRROR/REPO:TAG'):
/v2/, manifests by tag and by digest with their exact Content-Type and Docker-Content-Digest,
blobs by digest, tags/list. It reads the files the generator writes under regmirror/v2/.
`)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return err
		}
		return fmt.Errorf("mirror-config: %w (see 'regmirror mirror-config --help')", err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("mirror-config: unexpected argument %q (see 'regmirror mirror-config --help')", fs.Arg(0))
	}
	if *server == "" {
		return errors.New("mirror-config: --server is required: nginx or apache")
	}
	if *root == "" {
		return errors.New("mirror-config: --root is required, e.g. --root /srv/mirror/containers")
	}
	text, err := phase2.Config(*server, *root)
	if err != nil {
		return fmt.Errorf("mirror-config: %w", err)
	}
	_, err = io.WriteString(stdout, text)
	return err
}
