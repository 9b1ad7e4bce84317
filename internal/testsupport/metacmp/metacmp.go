// Package metacmp compares two generations' content for tests: the differential tests of a
// fast path (a run that takes from the previous generation) against the full one (walking
// every manifest).
package metacmp

import (
	"fmt"
	"reflect"

	"github.com/regmirror/regmirror/layout"
)

// Diff names the first part of the content (repositories, manifests, blobs, orphans,
// subsets) in which got and want differ, with both values; "" when they are the same.
func Diff(got, want *layout.Meta) string {
	for _, p := range []struct {
		name      string
		got, want any
	}{
		{"repositories", got.Repositories, want.Repositories},
		{"manifests", got.Manifests, want.Manifests},
		{"blobs", got.Blobs, want.Blobs},
		{"orphans", got.Orphans, want.Orphans},
		{"subsets", got.Subsets, want.Subsets},
	} {
		if !reflect.DeepEqual(p.got, p.want) {
			return fmt.Sprintf("%s:\ngot  %+v\nwant %+v", p.name, p.got, p.want)
		}
	}
	return ""
}
