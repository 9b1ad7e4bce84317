package generator

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"

	"github.com/regmirror/regmirror/layout"
)

// pageSize is the n of catalog and tag list requests.
const pageSize = 1000

// listRepos reads the catalog, every page, and keeps valid names matching --repo.
func (r *run) listRepos(ctx context.Context) ([]string, error) {
	var repos []string
	err := r.paginate(ctx, "/v2/_catalog", "repositories", beginning(0), func(name string) {
		if err := layout.ValidateName(name); err != nil {
			r.prog.warnf("skipping repository from the catalog: %v", err)
			return
		}
		if matchAny(r.globs, name) {
			repos = append(repos, name)
		}
	})
	if err != nil {
		return nil, fmt.Errorf("listing repositories at %s: %w", r.c.base, err)
	}
	sort.Strings(repos)
	return repos, nil
}

// listTags reads a repository's tags, every page, keeping valid ones; its requests wait for
// a slot at rank (slots).
func (r *run) listTags(ctx context.Context, repo string, rank int) ([]string, error) {
	var tags []string
	err := r.paginate(ctx, "/v2/"+repo+"/tags/list", "tags", rank, func(tag string) {
		if err := layout.ValidateTag(tag); err != nil {
			r.prog.warnf("%s: skipping tag: %v", repo, err)
			return
		}
		tags = append(tags, tag)
	})
	if statusOf(err) == http.StatusNotFound {
		// In the catalog but without tags (docker-distribution after deletions).
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	sort.Strings(tags)
	return tags, nil
}

// limitError is a source going past one of the run's limits (Options.MaxPages, MaxEntries,
// MaxReferrers); the caller's context names the source.
type limitError struct {
	what   string // "tags", "pages of tags", "referrers"
	limit  int
	option string // the Options field
}

func (e *limitError) Error() string {
	return fmt.Sprintf("more than %d %s (limit: Options.%s %d; raise it if the source really has more)", e.limit, e.what, e.option, e.limit)
}

// paginate GETs a list endpoint page by page, calling each once per distinct entry of the
// JSON array field. It follows Link rel="next"; a source that sends a full page without a Link
// is asked again with last=<final entry> until a page brings nothing new. More than MaxPages
// pages or MaxEntries distinct entries is an error.
func (r *run) paginate(ctx context.Context, base, field string, rank int, each func(string)) error {
	seen := map[string]bool{}
	n := r.o.pageSize
	if n <= 0 {
		n = pageSize
	}
	path := base + "?n=" + strconv.Itoa(n)
	visited := map[string]bool{}
	for pages := 0; path != "" && !visited[path]; pages++ {
		if pages == r.o.MaxPages {
			return &limitError{what: "pages of " + field, limit: r.o.MaxPages, option: "MaxPages"}
		}
		visited[path] = true
		var page map[string]json.RawMessage
		if err := r.reqs.take(ctx, rank); err != nil {
			return err
		}
		link, err := r.c.getJSON(ctx, path, 64<<20, &page)
		r.reqs.give()
		if err != nil {
			return err
		}
		var items []string
		if raw, ok := page[field]; ok && string(raw) != "null" {
			if err := json.Unmarshal(raw, &items); err != nil {
				return fmt.Errorf("GET %s: %s: %w", path, field, err)
			}
		}
		fresh := 0
		for _, it := range items {
			if seen[it] {
				continue
			}
			if len(seen) == r.o.MaxEntries {
				return &limitError{what: field, limit: r.o.MaxEntries, option: "MaxEntries"}
			}
			seen[it] = true
			fresh++
			each(it)
		}
		next, err := nextLink(link)
		if err != nil {
			return err
		}
		if next == "" && len(items) >= n && fresh > 0 {
			next = base + "?n=" + strconv.Itoa(n) + "&last=" + url.QueryEscape(items[len(items)-1])
		}
		if fresh == 0 {
			break
		}
		path = next
	}
	return nil
}
