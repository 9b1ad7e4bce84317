package peers

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// Endpoint is a registry as the real clients address it: "localhost:PORT" (a hostname, not
// an IP literal), over plain HTTP, or over HTTPS with a certificate signed by TLS's CA.
type Endpoint struct {
	Host string
	TLS  *TLSFiles // nil: plain HTTP
}

// Ref is "HOST/name", name being "repo:tag" or "repo@digest".
func (e Endpoint) Ref(name string) string { return e.Host + "/" + name }

// URL is the endpoint's base URL, "http://HOST" or "https://HOST", without a trailing slash.
func (e Endpoint) URL() string {
	if e.TLS != nil {
		return "https://" + e.Host
	}
	return "http://" + e.Host
}

func (e Endpoint) String() string {
	if e.TLS != nil {
		return e.Host + " (TLS)"
	}
	return e.Host + " (plain HTTP)"
}

const clientTimeout = 3 * time.Minute

// containersFiles writes the private configuration every containers/image tool (skopeo,
// podman) gets, so the host's /etc/containers cannot change what a test does: no search
// registries, accept-anything policy, no signature lookaside, an auth file of its own.
// It returns the environment that points the tools at them.
func containersFiles(t testing.TB, dir string) []string {
	t.Helper()
	files := map[string]string{
		"registries.conf":           "unqualified-search-registries = []\n",
		"policy.json":               `{"default":[{"type":"insecureAcceptAnything"}]}` + "\n",
		"auth.json":                 `{"auths":{}}` + "\n",
		"registries.d/default.yaml": "default-docker:\n  use-sigstore-attachments: false\n",
	}
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tmp := filepath.Join(dir, "tmp")
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		t.Fatal(err)
	}
	return []string{
		"CONTAINERS_REGISTRIES_CONF=" + filepath.Join(dir, "registries.conf"),
		"REGISTRY_AUTH_FILE=" + filepath.Join(dir, "auth.json"),
		"TMPDIR=" + tmp,
	}
}

// Skopeo runs skopeo with a private configuration (see containersFiles).
type Skopeo struct {
	Bin string
	dir string
	env []string
}

// NewSkopeo finds skopeo and writes its private configuration in a temporary directory.
func NewSkopeo(t testing.TB) *Skopeo {
	t.Helper()
	s := &Skopeo{Bin: Require(t, "skopeo"), dir: t.TempDir()}
	s.env = containersFiles(t, s.dir)
	return s
}

func (s *Skopeo) global() []string {
	return []string{"--policy", filepath.Join(s.dir, "policy.json"), "--registries.d", filepath.Join(s.dir, "registries.d")}
}

func srcTLSArgs(prefix string, ep Endpoint) []string {
	if ep.TLS == nil {
		return []string{"--" + prefix + "tls-verify=false"}
	}
	return []string{"--" + prefix + "tls-verify=true", "--" + prefix + "cert-dir", ep.TLS.Dir}
}

// Copy runs "skopeo copy [extra] docker://HOST/name DEST" and returns DEST's OCI layout
// directory after verifying it (see VerifyOCILayout): the digest of the one manifest in its
// index.json must be want. extra may hold e.g. "--override-arch", "arm64".
func (s *Skopeo) Copy(t testing.TB, ep Endpoint, name, want string, extra ...string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "oci")
	args := append(s.global(), "copy", "--retry-times", "0")
	args = append(args, extra...)
	args = append(args, srcTLSArgs("src-", ep)...)
	args = append(args, "docker://"+ep.Ref(name), "oci:"+dir+":copied")
	if _, err := RunErr(clientTimeout, s.env, s.Bin, args...); err != nil {
		t.Fatalf("skopeo copy from %s: %v", ep, err)
	}
	got := VerifyOCILayout(t, dir)
	if len(got) != 1 || got[0] != want {
		t.Fatalf("skopeo copy %s: the OCI layout holds %v, want [%s]", ep.Ref(name), got, want)
	}
	return dir
}

// CopyDir runs "skopeo copy [extra] docker://HOST/name dir:DIR" and checks the copied
// manifest's digest (sha256 of DIR/manifest.json) is want and every blob matches its name.
func (s *Skopeo) CopyDir(t testing.TB, ep Endpoint, name, want string, extra ...string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "dir")
	got, err := s.CopyDirErr(ep, name, dir, extra...)
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Fatalf("skopeo copy %s to dir: manifest digest %s, want %s", ep.Ref(name), got, want)
	}
	return dir
}

// CopyDirErr runs "skopeo copy [extra] docker://HOST/name dir:DIR", checks every copied
// blob matches its name, and returns the copied manifest's digest (sha256 of
// DIR/manifest.json). It returns the failure instead of failing a test, for pulls run from
// goroutines.
func (s *Skopeo) CopyDirErr(ep Endpoint, name, dir string, extra ...string) (string, error) {
	args := append(s.global(), "copy", "--retry-times", "0")
	args = append(args, extra...)
	args = append(args, srcTLSArgs("src-", ep)...)
	args = append(args, "docker://"+ep.Ref(name), "dir:"+dir)
	if _, err := RunErr(clientTimeout, s.env, s.Bin, args...); err != nil {
		return "", fmt.Errorf("skopeo copy from %s: %w", ep, err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if err != nil {
		return "", fmt.Errorf("skopeo copy %s to dir: %w", ep.Ref(name), err)
	}
	var m ociManifest
	if err := json.Unmarshal(b, &m); err != nil {
		return "", fmt.Errorf("skopeo copy %s to dir: manifest: %w", ep.Ref(name), err)
	}
	for _, d := range append([]ociDescriptor{m.Config}, m.Layers...) {
		hex := strings.TrimPrefix(d.Digest, "sha256:")
		got, err := FileDigest(filepath.Join(dir, hex))
		if err != nil {
			return "", fmt.Errorf("skopeo copy %s to dir: %w", ep.Ref(name), err)
		}
		if got != d.Digest {
			return "", fmt.Errorf("skopeo copy %s to dir: blob %s has digest %s", ep.Ref(name), d.Digest, got)
		}
	}
	return sha256Digest(b), nil
}

// InspectDigest returns the sha256 of the manifest bytes "skopeo inspect --raw" receives
// for HOST/name (for an index: the index itself, no platform chosen).
func (s *Skopeo) InspectDigest(t testing.TB, ep Endpoint, name string) string {
	t.Helper()
	d, err := s.InspectDigestErr(ep, name)
	if err != nil {
		t.Fatalf("skopeo inspect from %s: %v", ep, err)
	}
	return d
}

// InspectDigestErr is InspectDigest returning the failure (for tests that expect one, such
// as a TLS endpoint whose certificate the given CA did not sign).
func (s *Skopeo) InspectDigestErr(ep Endpoint, name string) (string, error) {
	args := append(s.global(), "inspect", "--raw", "--retry-times", "0")
	args = append(args, srcTLSArgs("", ep)...)
	args = append(args, "docker://"+ep.Ref(name))
	out, err := RunErr(clientTimeout, s.env, s.Bin, args...)
	if err != nil {
		return "", err
	}
	return sha256Digest([]byte(out)), nil
}

// Crane runs go-containerregistry's crane with an empty docker configuration of its own.
type Crane struct {
	Bin string
	env []string
}

// NewCrane finds crane (bin/tools) and gives it a private, empty DOCKER_CONFIG.
func NewCrane(t testing.TB) *Crane {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(`{"auths":{}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	return &Crane{Bin: Require(t, "crane"), env: []string{"DOCKER_CONFIG=" + dir, "HOME=" + dir}}
}

func (c *Crane) run(t testing.TB, ep Endpoint, args ...string) string {
	t.Helper()
	out, err := c.runErr(ep, args...)
	if err != nil {
		t.Fatalf("crane against %s: %v", ep, err)
	}
	return out
}

func (c *Crane) runErr(ep Endpoint, args ...string) (string, error) {
	env := c.env
	if ep.TLS == nil {
		args = append([]string{"--insecure"}, args...)
	} else {
		// Go reads the trusted roots from SSL_CERT_FILE on Linux.
		env = append(append([]string{}, env...), "SSL_CERT_FILE="+ep.TLS.CACert, "SSL_CERT_DIR="+ep.TLS.Dir)
	}
	return RunErr(clientTimeout, env, c.Bin, args...)
}

// Digest is "crane digest HOST/name".
func (c *Crane) Digest(t testing.TB, ep Endpoint, name string) string {
	t.Helper()
	return strings.TrimSpace(c.run(t, ep, "digest", ep.Ref(name)))
}

// DigestErr is Digest returning the failure.
func (c *Crane) DigestErr(ep Endpoint, name string) (string, error) {
	out, err := c.runErr(ep, "digest", ep.Ref(name))
	return strings.TrimSpace(out), err
}

// Pull runs "crane pull --format oci [extra] HOST/name DIR", verifies the layout and that
// its index.json names exactly want, and returns DIR.
func (c *Crane) Pull(t testing.TB, ep Endpoint, name, want string, extra ...string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "oci")
	got, err := c.PullErr(ep, name, dir, extra...)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0] != want {
		t.Fatalf("crane pull %s: the OCI layout holds %v, want [%s]", ep.Ref(name), got, want)
	}
	return dir
}

// PullErr runs "crane pull --format oci [extra] HOST/name DIR", verifies the layout (see
// VerifyOCILayout) and returns the digests its index.json names. It returns the failure
// instead of failing a test, for pulls run from goroutines.
func (c *Crane) PullErr(ep Endpoint, name, dir string, extra ...string) ([]string, error) {
	args := append([]string{"pull", "--format", "oci"}, extra...)
	if _, err := c.runErr(ep, append(args, ep.Ref(name), dir)...); err != nil {
		return nil, fmt.Errorf("crane against %s: %w", ep, err)
	}
	got, err := VerifyOCILayoutErr(dir)
	if err != nil {
		return nil, fmt.Errorf("crane pull %s: %w", ep.Ref(name), err)
	}
	return got, nil
}

// Regctl runs regclient's regctl with a configuration file of its own.
type Regctl struct {
	Bin string
	env []string

	mu         sync.Mutex
	configured map[string]bool
}

// NewRegctl finds regctl (bin/tools) and points its configuration at a temporary directory.
func NewRegctl(t testing.TB) *Regctl {
	t.Helper()
	dir := t.TempDir()
	return &Regctl{
		Bin:        Require(t, "regctl"),
		env:        []string{"HOME=" + dir, "REGCTL_CONFIG=" + filepath.Join(dir, "config.json"), "DOCKER_CONFIG=" + dir},
		configured: map[string]bool{},
	}
}

func (r *Regctl) run(t testing.TB, args ...string) string {
	t.Helper()
	out, err := RunErr(clientTimeout, r.env, r.Bin, args...)
	if err != nil {
		t.Fatalf("regctl: %v", err)
	}
	return out
}

// configure runs "regctl registry set" for the endpoint once: TLS disabled, or the CA.
func (r *Regctl) configure(t testing.TB, ep Endpoint) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.configured[ep.Host] {
		return
	}
	if ep.TLS == nil {
		r.run(t, "registry", "set", "--tls", "disabled", ep.Host)
	} else {
		ca, err := os.ReadFile(ep.TLS.CACert)
		if err != nil {
			t.Fatal(err)
		}
		r.run(t, "registry", "set", "--tls", "enabled", "--cacert", string(ca), ep.Host)
	}
	r.configured[ep.Host] = true
}

// Digest is "regctl image digest HOST/name".
func (r *Regctl) Digest(t testing.TB, ep Endpoint, name string) string {
	t.Helper()
	r.configure(t, ep)
	return strings.TrimSpace(r.run(t, "image", "digest", ep.Ref(name)))
}

// Copy runs "regctl image copy [extra] HOST/name ocidir://DIR:copied", verifies the layout
// and that its index.json names exactly want, and returns DIR.
func (r *Regctl) Copy(t testing.TB, ep Endpoint, name, want string, extra ...string) string {
	t.Helper()
	r.configure(t, ep)
	// regctl's ocidir:// accepts only plain path characters: not t.TempDir() (test names).
	base, err := os.MkdirTemp("", "regctl-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(base) })
	dir := filepath.Join(base, "oci")
	args := append([]string{"image", "copy"}, extra...)
	r.run(t, append(args, ep.Ref(name), "ocidir://"+dir+":copied")...)
	got := VerifyOCILayout(t, dir)
	if len(got) != 1 || got[0] != want {
		t.Fatalf("regctl image copy %s: the OCI layout holds %v, want [%s]", ep.Ref(name), got, want)
	}
	return dir
}

type ociDescriptor struct {
	MediaType string   `json:"mediaType"`
	Digest    string   `json:"digest"`
	Size      int64    `json:"size"`
	URLs      []string `json:"urls,omitempty"`
}

type ociManifest struct {
	MediaType string          `json:"mediaType"`
	Config    ociDescriptor   `json:"config"`
	Layers    []ociDescriptor `json:"layers"`
	Manifests []ociDescriptor `json:"manifests"`
}

// VerifyOCILayout checks an OCI image layout a client wrote: every file in blobs/sha256 has
// the digest of its name; every manifest its index.json names is present with the right
// size, and so are, recursively, the children of an index that the client copied (a client
// may copy one platform only) and every config and layer of an image manifest. It returns
// the digests index.json names, in order.
func VerifyOCILayout(t testing.TB, dir string) []string {
	t.Helper()
	names, err := VerifyOCILayoutErr(dir)
	if err != nil {
		t.Fatal(err)
	}
	return names
}

// VerifyOCILayoutErr is VerifyOCILayout returning the first problem instead of failing a
// test.
func VerifyOCILayoutErr(dir string) ([]string, error) {
	blobs := filepath.Join(dir, "blobs", "sha256")
	entries, err := os.ReadDir(blobs)
	if err != nil {
		return nil, fmt.Errorf("OCI layout %s: %w", dir, err)
	}
	have := map[string]bool{}
	for _, e := range entries {
		d := "sha256:" + e.Name()
		got, err := FileDigest(filepath.Join(blobs, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("OCI layout %s: %w", dir, err)
		}
		if got != d {
			return nil, fmt.Errorf("OCI layout %s: blob %s has digest %s", dir, d, got)
		}
		have[d] = true
	}
	b, err := os.ReadFile(filepath.Join(dir, "index.json"))
	if err != nil {
		return nil, fmt.Errorf("OCI layout %s: %w", dir, err)
	}
	var idx ociManifest
	if err := json.Unmarshal(b, &idx); err != nil {
		return nil, fmt.Errorf("OCI layout %s: index.json: %w", dir, err)
	}
	var walk func(d ociDescriptor, top bool) error
	walk = func(d ociDescriptor, top bool) error {
		if !have[d.Digest] {
			if top || !isIndexChild(d) {
				return fmt.Errorf("OCI layout %s: %s (%s) is missing", dir, d.Digest, d.MediaType)
			}
			return nil // one platform of an index: the others may be left out
		}
		p := filepath.Join(blobs, strings.TrimPrefix(d.Digest, "sha256:"))
		fi, err := os.Stat(p)
		if err != nil {
			return err
		}
		if fi.Size() != d.Size {
			return fmt.Errorf("OCI layout %s: %s has %d bytes, its descriptor says %d", dir, d.Digest, fi.Size(), d.Size)
		}
		if !strings.Contains(d.MediaType, "manifest") && !strings.Contains(d.MediaType, "index") {
			return nil
		}
		mb, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		var m ociManifest
		if err := json.Unmarshal(mb, &m); err != nil {
			return fmt.Errorf("OCI layout %s: manifest %s: %w", dir, d.Digest, err)
		}
		for _, c := range m.Manifests {
			if err := walk(c, false); err != nil {
				return err
			}
		}
		if m.Config.Digest != "" {
			if err := walk(m.Config, true); err != nil {
				return err
			}
		}
		for _, l := range m.Layers {
			if err := walk(l, true); err != nil {
				return err
			}
		}
		return nil
	}
	var names []string
	for _, d := range idx.Manifests {
		if err := walk(d, true); err != nil {
			return nil, err
		}
		names = append(names, d.Digest)
	}
	return names, nil
}

func isIndexChild(d ociDescriptor) bool {
	return strings.Contains(d.MediaType, "manifest") || strings.Contains(d.MediaType, "index")
}

func sha256Digest(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// FileDigest is the sha256 digest ("sha256:<hex>") of the file at path, computed here and not
// by the product's code, so tests check the tree independently.
func FileDigest(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), nil
}

// refName is the repository part of "repo:tag" or "repo@digest".
func refName(name string) string {
	if i := strings.Index(name, "@"); i >= 0 {
		return name[:i]
	}
	if i := strings.LastIndex(name, ":"); i >= 0 && !strings.Contains(name[i:], "/") {
		return name[:i]
	}
	return name
}

// repoDigestOK says whether a client's list of repo digests ("HOST/repo@sha256:…") holds
// the one for name and want.
func repoDigestOK(digests []string, ep Endpoint, name, want string) bool {
	wantRD := ep.Host + "/" + refName(name) + "@" + want
	for _, d := range digests {
		if d == wantRD {
			return true
		}
	}
	return false
}

func fmtList(l []string) string { return fmt.Sprintf("%q", l) }
