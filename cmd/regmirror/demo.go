package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"path/filepath"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"

	"github.com/regmirror/regmirror/generator"
	"github.com/regmirror/regmirror/internal/demoimages"
	"github.com/regmirror/regmirror/layout"
	"github.com/regmirror/regmirror/redirector"
)

const demoSynopsis = "demo [--out DIR] [--listen ADDR]"

// runDemo is the whole product on one machine: an in-process source registry filled with the
// demo images embedded in the binary (internal/demoimages), a generated tree, and the
// redirector serving it on localhost. It reads nothing but its flags: it works from any
// directory, with no checkout.
func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("demo", demoSynopsis, stderr)
	out := fs.String("out", "out/demo-tree", "directory of the generated tree")
	listen := fs.String("listen", "127.0.0.1:5000", "address the redirector listens on")
	once := fs.Bool("once", false, "generate and check the served tree, then exit (for tests)")
	logFormat := addLogFormatFlag(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	logOut, err := newLineBuffer(stderr) // the log and the access log write to it from many goroutines
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	defer logOut.Close()
	logger, err := newLogger("demo", *logFormat, logOut)
	if err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("demo: unexpected argument %q (flags only; see --help)", fs.Arg(0))
	}

	// The source: go-containerregistry's in-process registry on a loopback port.
	refs, err := demoimages.Demo()
	if err != nil {
		return fmt.Errorf("demo: building the demo images: %w", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("demo: starting the source registry: %w", err)
	}
	src := &http.Server{Handler: registry.New(registry.Logger(discardLogger())), ReadHeaderTimeout: 10 * time.Second}
	go src.Serve(ln)
	defer src.Close()
	srcHost := fmt.Sprintf("localhost:%d", ln.Addr().(*net.TCPAddr).Port)
	if err := demoimages.Push(ctx, srcHost, refs); err != nil {
		return fmt.Errorf("demo: filling the source registry: %w", err)
	}
	fmt.Fprintf(stdout, "source registry: http://%s (in-process), %d repositories of demo images (linux/amd64, linux/arm64)\n", srcHost, len(refs))

	// The tree.
	sum, err := generator.Run(ctx, generator.Options{
		Source: "http://" + srcHost,
		Out:    *out,
		Logger: logger,
	})
	if err != nil {
		return fmt.Errorf("demo: generating: %w", err)
	}
	abs, _ := filepath.Abs(*out)
	fmt.Fprintf(stdout, "tree: %s (generation %d)\n  %s\n", abs, sum.Generation, sum)

	// The redirector.
	access, err := redirector.NewAccessLog(logOut, *logFormat)
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	defer access.Close()
	srv, err := redirector.New(redirector.Options{
		Tree:      *out,
		Logger:    logger,
		AccessLog: access,
	})
	if err != nil {
		return fmt.Errorf("demo: loading the tree: %w", err)
	}
	defer srv.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ready := make(chan string, 1)
	errc := make(chan error, 1)
	go func() {
		errc <- srv.ListenAndServe(ctx, redirector.ServeConfig{
			Listen: *listen,
			Ready:  func(api, _ net.Addr) { ready <- api.String() },
		})
	}()
	var addr string
	select {
	case addr = <-ready:
	case err := <-errc:
		return fmt.Errorf("demo: serving on %s: %w (another program may hold the port: try --listen 127.0.0.1:5001)", *listen, err)
	}
	_, port, _ := net.SplitHostPort(addr)
	host := "localhost:" + port
	fmt.Fprintf(stdout, "redirector: http://%s serving %s\n\nTry:\n", host, abs)
	fmt.Fprintf(stdout, "  skopeo copy --src-tls-verify=false docker://%s/fedora:42 dir:/tmp/regmirror-demo-fedora\n", host)
	fmt.Fprintf(stdout, "  podman pull --tls-verify=false %s/fedora/toolbox:42\n", host)
	fmt.Fprintf(stdout, "  curl -s http://%s/v2/_catalog\n", host)

	if *once {
		if err := demoCheck(ctx, "http://"+host); err != nil {
			return fmt.Errorf("demo: checking the served tree: %w", err)
		}
		fmt.Fprintln(stdout, "demo check: catalog and a manifest answered")
		cancel()
		<-errc
		return nil
	}
	fmt.Fprintln(stdout, "\nCtrl-C stops the demo.")
	if err := <-errc; err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("demo: %w", err)
	}
	return nil
}

// demoCheck asks the served tree for its catalog and a manifest, as a client would.
func demoCheck(ctx context.Context, base string) error {
	for _, path := range []string{"/v2/", "/v2/_catalog", "/v2/fedora/manifests/42"} {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
		req.Header.Set("Accept", layout.MediaTypeOCIIndex)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s: %s", path, resp.Status)
		}
	}
	return nil
}

func discardLogger() *log.Logger { return log.New(io.Discard, "", 0) }
