//go:build !linux

package filelist

import (
	"io/fs"
	"time"
)

// changed is the file's mtime in seconds (ctime is read on Linux only).
func changed(fi fs.FileInfo) int64 { return fi.ModTime().Unix() }

// scanSkipping is Scan's listing, unsorted, without what lies below the directories in skip
// (slash paths below root, listed themselves), each path below base (root's slash path in
// the tree, "" for the tree's root).
func scanSkipping(root, base string, skip map[string]bool) ([]Entry, error) {
	return walkScan(root, base, skip)
}

// fsNow is the current time in seconds, as files written next are stamped.
func fsNow() int64 { return time.Now().Unix() }
