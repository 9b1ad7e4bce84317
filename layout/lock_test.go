//go:build unix

package layout

import (
	"errors"
	"testing"
	"time"
)

func TestLock(t *testing.T) {
	tree := NewTree(t.TempDir())
	release, err := tree.Lock(0)
	if err != nil {
		t.Fatal(err)
	}
	// flock locks belong to open file descriptions: a second Lock, even in this process, is
	// refused while the first is held.
	if _, err := tree.Lock(150 * time.Millisecond); !errors.Is(err, ErrLocked) {
		t.Fatalf("second Lock while held: got %v, want ErrLocked", err)
	}
	release()
	r2, err := tree.Lock(0)
	if err != nil {
		t.Fatalf("Lock after release: got %v, want nil", err)
	}
	r2()
}
