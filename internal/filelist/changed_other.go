//go:build !linux

package filelist

import "io/fs"

// changed is the file's mtime in seconds (ctime is read on Linux only).
func changed(fi fs.FileInfo) int64 { return fi.ModTime().Unix() }

// scan is Scan's listing, unsorted.
func scan(root string) ([]Entry, error) { return walkScan(root) }
