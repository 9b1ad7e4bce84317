package main

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"
)

func TestVersion(t *testing.T) {
	cases := []struct {
		name              string
		version, revision string
		want              []string
	}{
		{name: "build information only", want: []string{"regmirror ", "\n  revision: ", "\n  go: go1."}},
		{name: "ldflags", version: "v1.2.3", revision: "0123abcd", want: []string{"regmirror v1.2.3\n", "  revision: 0123abcd", "\n  go: go1."}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			oldV, oldR := version, revision
			version, revision = c.version, c.revision
			defer func() { version, revision = oldV, oldR }()
			var out bytes.Buffer
			if err := runVersion(context.Background(), nil, &out, io.Discard); err != nil {
				t.Fatal(err)
			}
			for _, w := range c.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("got %q, want it to contain %q", out.String(), w)
				}
			}
		})
	}
}
