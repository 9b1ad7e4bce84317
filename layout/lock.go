package layout

import "errors"

// ErrLocked is returned by Tree.Lock when another process holds the tree's lock.
var ErrLocked = errors.New("another regmirror generate or crawl holds the tree's lock")
