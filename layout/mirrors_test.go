package layout

import (
	"testing"
	"time"
)

func TestMirrorUsable(t *testing.T) {
	checked := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tc := range []struct {
		name string
		m    *Mirror
		want bool
	}{
		{"crawled healthy", &Mirror{Enabled: true, Healthy: true, Generation: 3, Checked: checked}, true},
		{"disabled", &Mirror{Enabled: false, Healthy: true, Generation: 3, Checked: checked}, false},
		{"unhealthy", &Mirror{Enabled: true, Healthy: false, Generation: 3, Checked: checked}, false},
		{"no generation found", &Mirror{Enabled: true, Healthy: true, Generation: 0, Checked: checked}, false},
		{"never crawled", &Mirror{Enabled: true, Healthy: true, Generation: 3}, false},
		{"nil", nil, false},
	} {
		if got := tc.m.Usable(); got != tc.want {
			t.Errorf("%s: Usable() = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestMirrorHolds(t *testing.T) {
	m := &Mirror{Generation: 5}
	for _, tc := range []struct {
		name string
		b    *Blob
		want bool
	}{
		{"older blob", &Blob{Since: 4}, true},
		{"same generation", &Blob{Since: 5}, true},
		{"newer blob", &Blob{Since: 6}, false},
		{"no blob", nil, false},
	} {
		if got := m.Holds(tc.b); got != tc.want {
			t.Errorf("%s: Holds = %v, want %v", tc.name, got, tc.want)
		}
		if tc.b != nil {
			if got := HeldAt(m.Generation, tc.b.Since); got != tc.want {
				t.Errorf("%s: HeldAt = %v, want %v", tc.name, got, tc.want)
			}
		}
	}
}
