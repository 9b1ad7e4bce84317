package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/regmirror/regmirror/layout"
)

// serveTree publishes a one-manifest tree.
func serveTree(t *testing.T) (dir string, manifest []byte, d layout.Digest) {
	t.Helper()
	dir, manifest, d = serveMetaOnly(t, "")
	if err := layout.WriteFile(filepath.Join(dir, layout.BlobPath(d)), manifest); err != nil {
		t.Fatal(err)
	}
	return dir, manifest, d
}

// serveMetaOnly publishes the tree of serveTree without blobs/, as a redirector host syncing
// regmirror/ only has it, with origin as the metadata's origin.
func serveMetaOnly(t *testing.T, origin string) (dir string, manifest []byte, d layout.Digest) {
	t.Helper()
	dir = t.TempDir()
	manifest = []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}`)
	sum := sha256.Sum256(manifest)
	d = layout.MustDigest("sha256:" + hex.EncodeToString(sum[:]))
	m := layout.NewMeta(1)
	m.Manifests[d] = &layout.Manifest{MediaType: "application/vnd.oci.image.manifest.v1+json", Data: manifest}
	m.Blobs[d] = &layout.Blob{Size: int64(len(manifest)), Since: 1}
	m.Repositories["demo/app"] = &layout.Repository{Tags: map[string]layout.Digest{"latest": d}, Manifests: []layout.Digest{d}}
	m.Origin = origin
	if _, err := layout.NewTree(dir).Publish(m); err != nil {
		t.Fatal(err)
	}
	return dir, manifest, d
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func TestServeErrors(t *testing.T) {
	dir, _, _ := serveTree(t)
	badGeo := filepath.Join(t.TempDir(), "bad.mmdb")
	if err := os.WriteFile(badGeo, []byte("\xab\xcd\xefMaxMind.com"), 0o644); err != nil {
		t.Fatal(err)
	}
	metaOnly, _, _ := serveMetaOnly(t, "")
	cases := []struct {
		args []string
		want string
	}{
		{nil, "--tree is required"},
		{[]string{"--tree", metaOnly}, "set origin: in the mirrors file"},
		{[]string{"--tree", dir, "extra"}, "unexpected argument"},
		{[]string{"--tree", dir, "--trusted-proxy", "10.0.0.0/33"}, "--trusted-proxy"},
		{[]string{"--tree", dir, "--log-format", "xml"}, "--log-format"},
		{[]string{"--tree", dir, "--tag-max-age", "-1s"}, "--tag-max-age"},
		{[]string{"--tree", t.TempDir()}, "no generation"},
		{[]string{"--tree", dir, "--geoip", badGeo}, "not a valid MaxMind DB"},
		{[]string{"--tree", dir, "--geoip", filepath.Join(dir, "missing.mmdb")}, "GeoIP"},
		{[]string{"--tree", dir, "--listen", freeAddr(t), "--tls-cert", filepath.Join(dir, "none.pem"), "--tls-key", filepath.Join(dir, "none.key")}, "TLS certificate"},
		{[]string{"--tree", dir, "--listen", freeAddr(t), "--tls-cert", "x.pem"}, "both --tls-cert and --tls-key"},
		{[]string{"--tree", dir, "--listen", "256.0.0.1:99999"}, "listening on"},
		{[]string{"--tree", dir, "--probe-interval", "1s", "--probe-timeout", "900ms"}, "--probe-timeout 900ms must be shorter than 0.8 × --probe-interval 1s"},
		{[]string{"--tree", dir, "--probe-failures", "0"}, "--probe-failures"},
		{[]string{"--tree", dir, "--probe-interval", "-1s"}, "--probe-interval"},
		{[]string{"--nope"}, "unknown flag"},
	}
	for _, c := range cases {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			var stderr bytes.Buffer
			err := run(context.Background(), append([]string{"serve"}, c.args...), io.Discard, &stderr)
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("error %q: want one line containing %q", err, c.want)
			}
		})
	}
}

func startServe(t *testing.T, args ...string) (cancel func() error) {
	t.Helper()
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- runServe(ctx, args, io.Discard, io.Discard) }()
	return func() error {
		stop()
		select {
		case err := <-done:
			return err
		case <-time.After(10 * time.Second):
			return fmt.Errorf("serve did not stop")
		}
	}
}

func waitFor(t *testing.T, c *http.Client, url string) *http.Response {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := c.Get(url)
		if err == nil {
			return resp
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", url, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestServeRuns(t *testing.T) {
	dir, manifest, d := serveTree(t)
	addr, maddr := freeAddr(t), freeAddr(t)
	stop := startServe(t, "--tree", dir, "--listen", addr, "--metrics-listen", maddr, "--log-format", "json",
		"--trusted-proxy", "127.0.0.1", "--trusted-proxy", "10.0.0.0/8,fd00::/8", "--country-header", "CF-IPCountry",
		"--regional-manifests", "--tag-max-age", "5m")
	c := &http.Client{}
	resp := waitFor(t, c, "http://"+addr+"/v2/")
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Docker-Distribution-API-Version") != "registry/2.0" {
		t.Fatalf("/v2/: %d %v", resp.StatusCode, resp.Header)
	}
	resp, err := c.Get("http://" + addr + "/v2/demo/app/manifests/latest")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !bytes.Equal(body, manifest) || resp.Header.Get("Docker-Content-Digest") != d.String() || resp.Header.Get("Cache-Control") != "private, max-age=300" {
		t.Fatalf("manifest: %d %v", resp.StatusCode, resp.Header)
	}
	resp = waitFor(t, c, "http://"+maddr+"/metrics")
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `regmirror_requests_total{code="200",endpoint="manifests"} 1`) {
		t.Errorf("metrics: %s", body)
	}
	resp = waitFor(t, c, "http://"+maddr+"/healthz")
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("healthz %d", resp.StatusCode)
	}
	if err := stop(); err != nil {
		t.Fatalf("stopping: %v", err)
	}
	if _, err := c.Get("http://" + addr + "/v2/"); err == nil {
		t.Error("still listening after the drain")
	}
}

func TestServeTLS(t *testing.T) {
	dir, _, _ := serveTree(t)
	certFile, keyFile := selfSigned(t)
	addr := freeAddr(t)
	stop := startServe(t, "--tree", dir, "--listen", addr, "--tls-cert", certFile, "--tls-key", keyFile)
	defer stop()
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, ForceAttemptHTTP2: true}}
	resp := waitFor(t, c, "https://"+addr+"/v2/demo/app/tags/list")
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.ProtoMajor != 2 || string(body) != `{"name":"demo/app","tags":["latest"]}` {
		t.Fatalf("%s %d %s", resp.Proto, resp.StatusCode, body)
	}
}

func selfSigned(t *testing.T) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "localhost"}, DNSNames: []string{"localhost"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

func TestProbeUserAgent(t *testing.T) {
	for _, tc := range []struct {
		name, replica, want string
	}{
		{"host name", "redirector-1.example.org", " (replica redirector-1.example.org)"},
		{"no name", "", ""},
		{"spaces, parentheses and control characters dropped", "a b(c)\x00d\n", " (replica abcd)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := probeUserAgent(tc.replica)
			if want := "regmirror-serve-probe/" + moduleVersion() + tc.want; got != want {
				t.Errorf("User-Agent %q, want %q", got, want)
			}
		})
	}
}
