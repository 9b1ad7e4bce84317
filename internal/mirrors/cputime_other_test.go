//go:build !unix

package mirrors

import "time"

// cpuTime is not measured here.
func cpuTime() time.Duration { return 0 }
