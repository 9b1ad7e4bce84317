//go:build !unix

package crawl

// lockTree is a no-op where flock is unavailable.
func lockTree(string) (func(), error) { return func() {}, nil }
