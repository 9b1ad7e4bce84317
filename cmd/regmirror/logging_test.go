package main

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestWithFlags(t *testing.T) {
	base := errors.New("root cause")
	cases := []struct {
		name string
		err  error
		want string
	}{
		{"nil", nil, ""},
		{"no option", fmt.Errorf("reading: %w", base), "reading: root cause"},
		{"source", fmt.Errorf(`Options.Source "x" has no host: %w`, base), `--source "x" has no host: root cause`},
		{"listen's nested options", errors.New("give Options.Generate.Out DIR or Options.Generate.Source"), "give --out DIR or --source"},
		{"limit", errors.New("more than 5 referrers (limit: Options.MaxReferrers 5; raise it)"), "more than 5 referrers (limit: --max-referrers 5; raise it)"},
		{"mirrors", errors.New("Source.MMDirectory applies; Options.MirrorsFile FILE"), "--mm-directory applies; --mirrors FILE"},
		{"tls", errors.New("TLS needs both ServeConfig.TLSCert and ServeConfig.TLSKey"), "TLS needs both --tls-cert and --tls-key"},
		{"archive", errors.New("Options.ArchiveMaxAge without Options.KeepRemoved; Options.Archive: x"), "--archive-max-age without --keep-removed; --archive: x"},
		{"mirror-config", errors.New(`config server "iis": want nginx or apache; config root /`), `--server "iis": want nginx or apache; --root /`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := withFlags(c.err)
			if c.err == nil {
				if got != nil {
					t.Fatalf("got %v, want nil", got)
				}
				return
			}
			if got.Error() != c.want {
				t.Errorf("got %q, want %q", got.Error(), c.want)
			}
			if !errors.Is(got, c.err) {
				t.Errorf("errors.Is(%v, the library's error) = false", got)
			}
		})
	}
}

func TestLoggerNamesFlags(t *testing.T) {
	cases := []struct{ format, want string }{
		{"text", `level=WARN msg="limit: --max-pages 3" err="check --username/--password"`},
		{"json", `"msg":"limit: --max-pages 3","err":"check --username/--password"`},
	}
	for _, c := range cases {
		t.Run(c.format, func(t *testing.T) {
			var buf bytes.Buffer
			logger, err := newLogger("test", c.format, &buf)
			if err != nil {
				t.Fatal(err)
			}
			logger.Warn("limit: Options.MaxPages 3", "err", errors.New("check Options.Auth"))
			if !strings.Contains(buf.String(), c.want) {
				t.Errorf("got %q, want it to contain %q", buf.String(), c.want)
			}
		})
	}
	if _, err := newLogger("serve", "xml", nil); err == nil || err.Error() != `serve: --log-format "xml": want text or json` {
		t.Errorf("got %v, want the --log-format error", err)
	}
}
