package testimages

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// TestDemoDeterministic: two builds give the same digests, and a push round-trips.
func TestDemoDeterministic(t *testing.T) {
	a, err := Demo()
	if err != nil {
		t.Fatal(err)
	}
	b, err := Demo()
	if err != nil {
		t.Fatal(err)
	}
	for i := range a {
		da, _ := a[i].Digest()
		db, _ := b[i].Digest()
		if da != db {
			t.Errorf("%s: got %s then %s, want the same digest", a[i].Repo, da, db)
		}
	}
	srv := httptest.NewServer(registry.New())
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	if err := Push(context.Background(), host, a); err != nil {
		t.Fatal(err)
	}
	for _, r := range a {
		want, _ := r.Digest()
		ref, _ := name.NewTag(host+"/"+r.Repo+":"+r.Tags[0], name.Insecure)
		desc, err := remote.Head(ref)
		if err != nil {
			t.Fatal(err)
		}
		if desc.Digest != want {
			t.Errorf("%s: got %s, want %s", ref, desc.Digest, want)
		}
	}
}
