//go:build !linux

package filelist

import "io/fs"

// changed is the file's mtime in seconds (ctime is read on Linux only).
func changed(fi fs.FileInfo) int64 { return fi.ModTime().Unix() }

// scanSkipping is Scan's listing, unsorted, without what lies below the directory skip (a
// slash path below root, listed itself; "" skips nothing).
func scanSkipping(root, skip string) ([]Entry, error) { return walkScan(root, skip) }
