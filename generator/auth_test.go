package generator

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/registry"
)

// basicAuth refuses requests without user:pass.
func basicAuth(user, pass string) func(http.ResponseWriter, *http.Request) bool {
	return func(w http.ResponseWriter, r *http.Request) bool {
		u, p, ok := r.BasicAuth()
		if ok && u == user && p == pass {
			return true
		}
		w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
		http.Error(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`, http.StatusUnauthorized)
		return false
	}
}

// tokenAuth is a token server (at /token on the same host) and a registry that wants a
// bearer token carrying the scope of each request's repository.
type tokenAuth struct {
	user, pass string
	mu         sync.Mutex
	tokens     map[string]map[string]bool // token → scopes granted
	exchanges  int
}

func (a *tokenAuth) check(w http.ResponseWriter, r *http.Request) bool {
	if r.URL.Path == "/token" {
		u, p, ok := r.BasicAuth()
		if !ok || u != a.user || p != a.pass {
			http.Error(w, "bad credentials", http.StatusUnauthorized)
			return false
		}
		a.mu.Lock()
		a.exchanges++
		tok := fmt.Sprintf("tok%d", a.exchanges)
		a.tokens[tok] = map[string]bool{}
		for _, s := range r.URL.Query()["scope"] {
			for f := range strings.FieldsSeq(s) {
				a.tokens[tok][f] = true
			}
		}
		a.mu.Unlock()
		json.NewEncoder(w).Encode(map[string]string{"token": tok})
		return false
	}
	scope := ""
	if p := strings.TrimPrefix(r.URL.Path, "/v2/"); p != r.URL.Path && p != "" {
		if p == "_catalog" {
			scope = "registry:catalog:*"
		} else {
			for _, sep := range []string{"/manifests/", "/blobs/", "/tags/", "/referrers/"} {
				if i := strings.Index(p, sep); i >= 0 {
					scope = "repository:" + p[:i] + ":pull"
				}
			}
		}
	}
	tok := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	a.mu.Lock()
	granted := a.tokens[tok]
	a.mu.Unlock()
	if granted != nil && (scope == "" || granted[scope]) {
		return true
	}
	ch := fmt.Sprintf(`Bearer realm="http://%s/token",service="test"`, r.Host)
	if scope != "" {
		ch += fmt.Sprintf(`,scope="%s"`, scope)
	}
	w.Header().Set("WWW-Authenticate", ch)
	http.Error(w, `{"errors":[{"code":"UNAUTHORIZED","message":"token required"}]}`, http.StatusUnauthorized)
	return false
}

func TestCredentials(t *testing.T) {
	tests := []struct {
		name    string
		bearer  bool
		auth    authn.Authenticator
		authEnv string // REGISTRY_AUTH_FILE content, used through DefaultKeychain
		wantErr string
	}{
		{name: "basic, right", auth: &authn.Basic{Username: "u", Password: "p"}},
		{name: "basic, wrong", auth: &authn.Basic{Username: "u", Password: "nope"}, wantErr: "401"},
		{name: "basic, none", wantErr: "401"},
		{name: "basic, REGISTRY_AUTH_FILE", authEnv: "u:p"},
		{name: "basic, REGISTRY_AUTH_FILE wrong", authEnv: "u:nope", wantErr: "401"},
		{name: "bearer, right", bearer: true, auth: &authn.Basic{Username: "u", Password: "p"}},
		{name: "bearer, wrong", bearer: true, auth: &authn.Basic{Username: "x", Password: "p"}, wantErr: "401"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src := newSource(t)
			want := src.demo()
			if tc.bearer {
				ta := &tokenAuth{user: "u", pass: "p", tokens: map[string]map[string]bool{}}
				src.auth = ta.check
			} else {
				src.auth = basicAuth("u", "p")
			}
			out := t.TempDir()
			o := src.opts(out)
			o.Retries = 1
			o.Auth = tc.auth
			if tc.authEnv != "" {
				home := t.TempDir()
				t.Setenv("HOME", home)
				t.Setenv("DOCKER_CONFIG", filepath.Join(home, "none"))
				file := filepath.Join(home, "auth.json")
				content := fmt.Sprintf(`{"auths":{%q:{"auth":%q}}}`, src.host, base64.StdEncoding.EncodeToString([]byte(tc.authEnv)))
				if err := os.WriteFile(file, []byte(content), 0o600); err != nil {
					t.Fatal(err)
				}
				t.Setenv("REGISTRY_AUTH_FILE", file)
				o.Keychain = DefaultKeychain()
			}
			_, err := Run(context.Background(), o)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %v, want an error mentioning %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if m := checkTree(t, out); len(indexRefs(t, out)) != len(want) {
				t.Errorf("published %d tags, want %d (%v)", len(indexRefs(t, out)), len(want), m.Repositories)
			}
		})
	}
}

func TestTLSSource(t *testing.T) {
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewUnstartedServer(reg)
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	defer srv.Close()
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		caFile   string
		insecure bool
		source   string
		wantErr  string
	}{
		{name: "unknown CA", source: srv.URL, wantErr: "certificate"},
		{name: "--ca-file", source: srv.URL, caFile: caFile},
		{name: "--insecure-skip-tls-verify", source: srv.URL, insecure: true},
		{name: "http to a TLS server", source: strings.Replace(srv.URL, "https:", "http:", 1), wantErr: "HTTP 400"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := Options{Source: tc.source, Out: t.TempDir(), CAFile: tc.caFile, InsecureSkipTLSVerify: tc.insecure,
				Keychain: authn.NewMultiKeychain(), Retries: 1}
			_, err := Run(context.Background(), o)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				checkTree(t, o.Out)
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("got %v, want an error mentioning %q", err, tc.wantErr)
			}
		})
	}
}
