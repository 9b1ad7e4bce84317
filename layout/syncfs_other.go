//go:build !linux

package layout

import "errors"

// haveSyncFS tells whether syncFS syncs a whole filesystem in one call: not here, so
// EmptyFiles fsyncs each directory.
const haveSyncFS = false

// syncFS is not available here.
func syncFS(string) error { return errors.New("syncfs is not available on this system") }

// deviceOf is not needed here (haveSyncFS is false).
func deviceOf(string) (uint64, error) { return 0, errors.New("not available on this system") }
