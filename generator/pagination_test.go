package generator

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/random"
)

// paged answers a list endpoint two entries at a time with Link headers, as
// docker-distribution does.
func paged(field string, all []string) func(http.ResponseWriter, *http.Request, http.Handler) {
	return func(w http.ResponseWriter, r *http.Request, _ http.Handler) {
		last := r.URL.Query().Get("last")
		i := sort.SearchStrings(all, last)
		if last != "" && i < len(all) && all[i] == last {
			i++
		}
		end := min(i+2, len(all))
		if end < len(all) {
			w.Header().Set("Link", fmt.Sprintf(`<%s?n=2&last=%s>; rel="next"`, r.URL.Path, all[end-1]))
		}
		json.NewEncoder(w).Encode(map[string][]string{field: all[i:end]})
	}
}

func TestPagination(t *testing.T) {
	src := newSource(t)
	var repos []string
	var tags []string
	for i := range 5 {
		tags = append(tags, "t"+strconv.Itoa(i))
	}
	img, err := random.Image(100, 1)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		repo := fmt.Sprintf("r%d", i)
		repos = append(repos, repo)
		for _, tag := range tags {
			src.pushImage(repo, tag, img)
		}
	}
	src.addFault(&fault{method: "GET", match: pathHas("/_catalog"), do: paged("repositories", repos)})
	src.addFault(&fault{method: "GET", match: pathHas("/tags/list"), do: paged("tags", tags)})
	out := t.TempDir()
	sum := mustRun(t, src.opts(out))
	if sum.Repositories != len(repos) || sum.Tags != len(repos)*len(tags) {
		t.Errorf("got %d repositories, %d tags; want %d, %d", sum.Repositories, sum.Tags, len(repos), len(repos)*len(tags))
	}
	c := src.resetCounts()
	pages := (len(repos) + 1) / 2
	if c["GET catalog"] != pages || c["GET tags"] != pages*len(repos) {
		t.Errorf("pages: got %d catalog, %d tag list requests; want %d, %d", c["GET catalog"], c["GET tags"], pages, pages*len(repos))
	}
	checkTree(t, out)
}

// TestPaginationWithoutLink: a source that honours n and last but sends no Link header (as
// go-containerregistry's registry does for tags) is asked again from the last entry while
// pages come back full.
func TestPaginationWithoutLink(t *testing.T) {
	src := newSource(t)
	img, err := random.Image(100, 1)
	if err != nil {
		t.Fatal(err)
	}
	var tags []string
	for i := range 7 {
		tag := "v" + strconv.Itoa(i)
		tags = append(tags, tag)
		src.pushImage("paged", tag, img)
	}
	out := t.TempDir()
	o := src.opts(out)
	o.pageSize = 3
	sum := mustRun(t, o)
	if sum.Tags != len(tags) {
		t.Errorf("tags: got %d, want %d", sum.Tags, len(tags))
	}
	// Pages of 3, 3 and 1 entries.
	if c := src.resetCounts(); c["GET tags"] != 3 {
		t.Errorf("tag list requests: got %d, want 3", c["GET tags"])
	}
	checkTree(t, out)
}

// TestNoopWithoutReferrersAPI: against a source without the referrers API (docker-distribution
// 2.8), a no-op run asks once whether it has one, then one HEAD per tag.
func TestNoopWithoutReferrersAPI(t *testing.T) {
	src := newSourceWith(t)
	t.Cleanup(src.srv.Close)
	want := src.demo()
	out := t.TempDir()
	mustRun(t, src.opts(out))
	src.resetCounts()
	mustRun(t, src.opts(out))
	c := src.resetCounts()
	repos := map[string]bool{}
	for ref := range want {
		repo, _, _ := strings.Cut(ref, ":")
		repos[repo] = true
	}
	total := 0
	for _, n := range c {
		total += n
	}
	// ping twice (reachability, then auth handshake), the catalog, a tag list per
	// repository, a HEAD per tag, one referrers probe.
	if wantTotal := 2 + 1 + len(repos) + len(want) + 1; total != wantTotal {
		t.Errorf("requests: got %d (%v), want %d", total, c, wantTotal)
	}
	checkTree(t, out)
}

func TestProgress(t *testing.T) {
	tests := []struct {
		name, want string
		live       bool
	}{
		{"log lines", `msg=progress tags=1/2 blobs=0/3 bytes="1.0 KiB"`, false},
		{"live bar", "\rtags 1/2  blobs 0/3  1.0 KiB", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var buf syncBuffer
			p := newProgress(slog.New(slog.NewTextHandler(&buf, nil)), &buf, tc.live, 10*time.Millisecond)
			p.tagsTotal.Add(2)
			p.tagsDone.Add(1)
			p.blobsTotal.Add(3)
			p.bytes.Add(1024)
			deadline := time.Now().Add(5 * time.Second)
			for !strings.Contains(buf.String(), tc.want) && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			p.warnf("careful")
			p.stop()
			out := buf.String()
			if !strings.Contains(out, tc.want) {
				t.Errorf("got %q, want %q", out, tc.want)
			}
			if !strings.Contains(out, "level=WARN msg=careful\n") {
				t.Errorf("got %q, want the warning on its own line", out)
			}
			if tc.live && !strings.HasSuffix(out, "\r\x1b[K") && !strings.HasSuffix(out, "careful\n") {
				t.Errorf("live bar not cleared at the end: %q", out)
			}
		})
	}
}
