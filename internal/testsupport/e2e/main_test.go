package e2e

import (
	"os"
	"testing"
)

// TestMain runs the package's tests and benchmarks, or, with floorChildEnv set, only the scale
// benchmarks' floor, as a process of their own (scaleFloorProcess).
func TestMain(m *testing.M) {
	if spec := os.Getenv(floorChildEnv); spec != "" {
		os.Exit(floorChild(spec, os.Stderr))
	}
	os.Exit(m.Run())
}
