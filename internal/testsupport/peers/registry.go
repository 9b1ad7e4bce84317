package peers

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/regmirror/regmirror/internal/testsupport/testimages"
)

// Registry is a private Debian docker-registry (docker-distribution 2.8) on loopback, with
// filesystem storage in a temporary directory and deletes enabled.
type Registry struct {
	// Host is "localhost:PORT": address it by hostname, not 127.0.0.1 (go-containerregistry
	// refuses redirects to loopback IP literals).
	Host string
	// URL is "http://localhost:PORT", the value for regmirror's --source.
	URL string
	// Port is the TCP port on 127.0.0.1.
	Port int
	// Root is the storage directory; Config the registry's YAML configuration file.
	Root, Config string
	// User and Password are set when the registry requires basic authentication.
	User, Password string

	Proc *Process
}

// RegistryOption changes how StartRegistry configures the registry.
type RegistryOption func(*registryOptions)

type registryOptions struct {
	user, password string
	root           string
	redirectBase   string
	debianDefaults bool
	command        func(bin string, args ...string) *exec.Cmd
}

// WithStorage puts the registry's storage at root (created if missing) instead of a fresh
// temporary directory, so that two registries can serve the same content.
func WithStorage(root string) RegistryOption {
	return func(o *registryOptions) { o.root = root }
}

// WithRedirect adds distribution's redirect storage middleware: blob GETs answer a 307 to
// base. Empty means none.
func WithRedirect(base string) RegistryOption {
	return func(o *registryOptions) { o.redirectBase = base }
}

// WithDebianDefaults adds what Debian's packaged configuration has besides storage: the
// inmemory blob descriptor cache and the nosniff header (benchmarks measure the registry as
// shipped).
func WithDebianDefaults() RegistryOption {
	return func(o *registryOptions) { o.debianDefaults = true }
}

// WithCommand builds the registry's command line (to pin it to CPUs, set its environment);
// default exec.Command.
func WithCommand(command func(bin string, args ...string) *exec.Cmd) RegistryOption {
	return func(o *registryOptions) { o.command = command }
}

// WithHtpasswd makes the registry require HTTP basic authentication with this one account
// (htpasswd file, bcrypt, written with Apache's htpasswd).
func WithHtpasswd(user, password string) RegistryOption {
	return func(o *registryOptions) { o.user, o.password = user, password }
}

// StartRegistry starts docker-registry with its own configuration, listening on 127.0.0.1 on
// a free port, and waits until /v2/ answers. The registry stops when the test ends.
func StartRegistry(t testing.TB, opts ...RegistryOption) *Registry {
	t.Helper()
	var o registryOptions
	for _, opt := range opts {
		opt(&o)
	}
	bin := Require(t, "docker-registry")
	dir := t.TempDir()
	root := o.root
	if root == "" {
		root = filepath.Join(dir, "storage")
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatal(err)
	}
	port := FreePort(t)
	r := &Registry{
		Host:   "localhost:" + strconv.Itoa(port),
		URL:    "http://localhost:" + strconv.Itoa(port),
		Port:   port,
		Root:   root,
		Config: filepath.Join(dir, "config.yml"),
	}
	auth := ""
	if o.user != "" {
		htpasswd := Require(t, "htpasswd")
		out := Run(t, 30*time.Second, htpasswd, "-Bbn", o.user, o.password)
		pwFile := filepath.Join(dir, "htpasswd")
		if err := os.WriteFile(pwFile, []byte(out), 0o600); err != nil {
			t.Fatal(err)
		}
		r.User, r.Password = o.user, o.password
		auth = fmt.Sprintf("auth:\n  htpasswd:\n    realm: regmirror-test\n    path: %s\n", pwFile)
	}
	cache, headers, middleware := "", "", ""
	if o.debianDefaults {
		cache = "  cache:\n    blobdescriptor: inmemory\n"
		headers = "  headers:\n    X-Content-Type-Options: [nosniff]\n"
	}
	if o.redirectBase != "" {
		middleware = fmt.Sprintf("middleware:\n  storage:\n    - name: redirect\n      options:\n        baseurl: %s\n", o.redirectBase)
	}
	config := fmt.Sprintf(`version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
%s  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:%d
  secret: regmirror-test-secret
%s%s%s`, cache, root, port, headers, auth, middleware)
	if err := os.WriteFile(r.Config, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	command := o.command
	if command == nil {
		command = exec.Command
	}
	r.Proc = Start(t, "docker-registry", command(bin, "serve", r.Config), HTTPReady(r.URL+"/v2/"))
	return r
}

// RemoteOptions are the go-containerregistry options that reach this registry (its
// credentials, when it has some).
func (r *Registry) RemoteOptions(ctx context.Context) []remote.Option {
	opts := []remote.Option{remote.WithContext(ctx)}
	if r.User != "" {
		opts = append(opts, remote.WithAuth(&authn.Basic{Username: r.User, Password: r.Password}))
	}
	return opts
}

// Push pushes refs (see internal/testsupport/testimages) into the registry over plain HTTP.
func (r *Registry) Push(t testing.TB, refs []testimages.Ref) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if err := testimages.Push(ctx, r.Host, refs, r.RemoteOptions(ctx)...); err != nil {
		t.Fatalf("pushing into docker-registry at %s: %v\n%s", r.Host, err, Tail(r.Proc.Log, 20))
	}
}

// DeleteTag removes repo:tag from the registry: it resolves the tag to its digest and deletes
// the manifest by digest, which in docker-distribution 2.8 also removes every other tag that
// points at the same manifest.
func (r *Registry) DeleteTag(t testing.TB, repo, tag string) {
	t.Helper()
	accept := strings.Join([]string{
		"application/vnd.oci.image.index.v1+json",
		"application/vnd.oci.image.manifest.v1+json",
		"application/vnd.docker.distribution.manifest.list.v2+json",
		"application/vnd.docker.distribution.manifest.v2+json",
	}, ", ")
	resp := r.do(t, http.MethodHead, "/v2/"+repo+"/manifests/"+tag, accept)
	digest := resp.Header.Get("Docker-Content-Digest")
	if resp.StatusCode != http.StatusOK || digest == "" {
		t.Fatalf("HEAD %s:%s at docker-registry: got %s (digest %q), want 200 with a digest", repo, tag, resp.Status, digest)
	}
	resp = r.do(t, http.MethodDelete, "/v2/"+repo+"/manifests/"+digest, "")
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("DELETE %s@%s at docker-registry: got %s, want 202 Accepted", repo, digest, resp.Status)
	}
}

func (r *Registry) do(t testing.TB, method, path, accept string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(method, r.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	if r.User != "" {
		req.SetBasicAuth(r.User, r.Password)
	}
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}
