package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/regmirror/regmirror/generator"
	"github.com/regmirror/regmirror/internal/testsupport/testimages"
	"github.com/regmirror/regmirror/layout"
	"github.com/spf13/pflag"
)

// demoCounts are the demo set's tags, and its repositories and tags under fedora/.
func demoCounts(t *testing.T) (tags, subRepos, subTags int) {
	refs, err := testimages.Demo()
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range refs {
		tags += len(r.Tags)
		if strings.HasPrefix(r.Repo, "fedora/") {
			subRepos++
			subTags += len(r.Tags)
		}
	}
	return tags, subRepos, subTags
}

func demoSource(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	refs, err := testimages.Demo()
	if err != nil {
		t.Fatal(err)
	}
	if err := testimages.Push(context.Background(), strings.TrimPrefix(srv.URL, "http://"), refs); err != nil {
		t.Fatal(err)
	}
	return srv.URL
}

// noKeychain keeps the tests away from the user's docker config.
func noKeychain(o *generator.Options) {
	if o.Auth == nil {
		o.Keychain = authn.NewMultiKeychain()
	}
	o.Retries = 1
}

func TestGenerateFlagErrors(t *testing.T) {
	tests := []struct {
		name  string
		args  []string
		stdin string
		want  string
	}{
		{"no source", []string{"--out", "x"}, "", "--source is required"},
		{"no out", []string{"--source", "http://localhost:1"}, "", "--out is required"},
		{"unknown flag", []string{"--nope"}, "", "unknown flag: --nope"},
		{"stray argument", []string{"--source", "http://x", "--out", "y", "extra"}, "", `unexpected argument "extra"`},
		{"jobs zero", []string{"--source", "http://x", "--out", "y", "--jobs", "0"}, "", "--jobs 0"},
		{"negative grace", []string{"--source", "http://x", "--out", "y", "--gc-grace", "-1h"}, "", "--gc-grace"},
		{"user without password", []string{"--source", "http://x", "--out", "y", "--username", "u"}, "", "--username needs"},
		{"password without user", []string{"--source", "http://x", "--out", "y", "--password-stdin"}, "secret\n", "needs --username"},
		{"both passwords", []string{"--source", "http://x", "--out", "y", "--username", "u", "--password", "p", "--password-stdin"}, "s\n", "not both"},
		{"bad scheme", []string{"--source", "ftp://x", "--out", "y"}, "", "want http://"},
		{"mirrors file missing", []string{"--source", "http://x", "--out", "y", "--mirrors", "/nonexistent/m.yaml"}, "", "/nonexistent/m.yaml"},
		{"max entries zero", []string{"--source", "http://x", "--out", "y", "--max-entries", "0"}, "", "--max-entries 0: want at least 1"},
		{"max pages negative", []string{"--source", "http://x", "--out", "y", "--max-pages", "-1"}, "", "--max-pages -1: want at least 1"},
		{"max referrers zero", []string{"--source", "http://x", "--out", "y", "--max-referrers", "0"}, "", "--max-referrers 0: want at least 1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			err := generate(context.Background(), tc.args, strings.NewReader(tc.stdin), &stdout, &stderr, noKeychain)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error mentioning %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error is not one line: %q", err)
			}
		})
	}
}

func TestGenerateHelp(t *testing.T) {
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), []string{"generate", "--help"}, &stdout, &stderr)
	if !errors.Is(err, pflag.ErrHelp) {
		t.Fatalf("got %v, want pflag.ErrHelp", err)
	}
	for _, f := range []string{"--source", "--out", "--repo", "--mirrors", "--jobs", "--dry-run", "--gc-grace", "--verify", "--verify-layers", "--username", "--password-stdin", "--insecure-skip-tls-verify", "--ca-file"} {
		if !strings.Contains(stderr.String(), f) {
			t.Errorf("help lacks %s", f)
		}
	}
}

func TestGenerateRuns(t *testing.T) {
	src := demoSource(t)
	out := filepath.Join(t.TempDir(), "tree")

	var stdout, stderr bytes.Buffer
	dry := []string{"--source", src, "--out", out, "--dry-run"}
	if err := generate(context.Background(), dry, nil, &stdout, &stderr, noKeychain); err != nil {
		t.Fatal(err)
	}
	tags, subRepos, subTags := demoCounts(t)
	if !strings.Contains(stdout.String(), "+ fedora:42 sha256:") || !strings.Contains(stdout.String(), fmt.Sprintf("plan: %d tags added", tags)) {
		t.Errorf("dry run output: got %q, want the plan", stdout.String())
	}

	stdout.Reset()
	args := []string{"--source", src, "--out", out, "--repo", "fedora/**", "--jobs", "2", "--verify-layers"}
	if err := generate(context.Background(), args, nil, &stdout, &stderr, noKeychain); err != nil {
		t.Fatalf("%v; stderr %s", err, stderr.String())
	}
	if want := fmt.Sprintf("generation 1 published: %d repositories, %d tags", subRepos, subTags); !strings.HasPrefix(stdout.String(), want) {
		t.Errorf("summary: got %q", stdout.String())
	}
	m, _, err := layout.NewTree(out).Load()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := m.Repositories["fedora"]; ok {
		t.Errorf("--repo fedora/** published fedora")
	}

	stdout.Reset()
	if err := generate(context.Background(), append(args, "--verify"), nil, &stdout, &stderr, noKeychain); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stdout.String(), "0 blobs fetched") {
		t.Errorf("re-run summary: got %q, want nothing fetched", stdout.String())
	}
	if err := layout.NewTree(out).Verify(context.Background()); err != nil {
		t.Error(err)
	}
}

// TestGeneratePhases checks the "phases" record generate logs: every step, in order, then the
// previous generation's load, and the steps adding up to no more than the run took.
func TestGeneratePhases(t *testing.T) {
	src := demoSource(t)
	out := filepath.Join(t.TempDir(), "tree")
	for _, c := range []struct {
		name  string
		args  []string
		steps []string
	}{
		{"dry run", []string{"--dry-run"}, []string{generator.PhaseDiscover, generator.PhaseAwait, generator.PhaseAssemble}},
		{"first generation", nil, []string{generator.PhaseDiscover, generator.PhaseAwait, generator.PhaseAssemble, generator.PhasePublish, generator.PhaseSettle}},
		{"no-op", nil, []string{generator.PhaseDiscover, generator.PhaseAwait, generator.PhaseAssemble, generator.PhasePublish, generator.PhaseSettle}},
	} {
		t.Run(c.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			args := append([]string{"--source", src, "--out", out, "--log-format", "json"}, c.args...)
			start := time.Now()
			if err := generate(context.Background(), args, nil, &stdout, &stderr, noKeychain); err != nil {
				t.Fatalf("%v; stderr %s", err, stderr.String())
			}
			took := time.Since(start)
			var rec map[string]any
			var recLine string // the record as logged, for its keys' order
			for line := range strings.Lines(stderr.String()) {
				var r map[string]any
				if json.Unmarshal([]byte(line), &r) == nil && r["msg"] == "phases" {
					rec, recLine = r, line
				}
			}
			if rec == nil {
				t.Fatalf("no phases record in stderr:\n%s", stderr.String())
			}
			var keys []string
			var sum time.Duration
			for _, k := range append(slices.Clone(c.steps), generator.PhaseLoad) {
				v, ok := rec[k].(float64) // slog's JSON: nanoseconds
				if !ok || v < 0 {
					t.Errorf("phases record: %s = %v, want a duration", k, rec[k])
					continue
				}
				keys = append(keys, k)
				if k != generator.PhaseLoad {
					sum += time.Duration(v)
				}
			}
			if got, want := len(rec)-3, len(keys); got != want { // time, level, msg
				t.Errorf("phases record %v: %d phases, want %d", rec, got, want)
			}
			// Each is logged rounded to the millisecond: half of one each at most.
			if slack := time.Duration(len(c.steps)) * time.Millisecond / 2; sum > took+slack {
				t.Errorf("phases add up to %v, more than the run's %v (and %v of rounding)", sum, took, slack)
			}
			last := -1
			for _, k := range keys {
				i := strings.Index(recLine, `"`+k+`":`)
				if i < last {
					t.Errorf("phases record: %s out of order in %s", k, strings.TrimSpace(recLine))
				}
				last = i
			}
		})
	}
}

func TestGenerateUnreachable(t *testing.T) {
	srv := httptest.NewServer(nil)
	url := srv.URL
	srv.Close()
	var stdout, stderr bytes.Buffer
	err := generate(context.Background(), []string{"--source", url, "--out", t.TempDir()}, nil, &stdout, &stderr, noKeychain)
	if err == nil || !strings.HasPrefix(err.Error(), "generate: connecting to "+url) || strings.Contains(err.Error(), "\n") {
		t.Errorf("got %q, want one line naming the source", err)
	}
}

func TestGeneratePasswordStdin(t *testing.T) {
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != "alice" || p != "s3cret" {
			w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		reg.ServeHTTP(w, r)
	}))
	defer srv.Close()
	tests := []struct {
		name, stdin, want string
	}{
		{"right", "s3cret\n", ""},
		{"right without newline", "s3cret", ""},
		{"wrong", "guess\n", "401"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			args := []string{"--source", srv.URL, "--out", t.TempDir(), "--username", "alice", "--password-stdin"}
			err := generate(context.Background(), args, strings.NewReader(tc.stdin), &stdout, &stderr, noKeychain)
			if tc.want == "" && err != nil {
				t.Fatal(err)
			}
			if tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Fatalf("got %v, want an error mentioning %q", err, tc.want)
			}
		})
	}
}
