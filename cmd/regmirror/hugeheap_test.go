package main

import "testing"

func TestTHPDisabled(t *testing.T) {
	for _, tc := range []struct {
		name, godebug string
		want          bool
	}{
		{"empty", "", false},
		{"set", "disablethp=1", true},
		{"among others", "gctrace=1,disablethp=1,madvdontneed=1", true},
		{"space before the name, as the runtime reads it", "gctrace=1, disablethp=1", false},
		{"zero", "disablethp=0", false},
		{"last counts", "disablethp=1,disablethp=0", false},
		{"last counts on", "disablethp=0,disablethp=1", true},
		{"any number but 0", "disablethp=2", true},
		{"not a number is ignored", "disablethp=1,disablethp=yes", true},
		{"not a number alone", "disablethp=yes", false},
		{"similar name", "xdisablethp=1", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := thpDisabled(tc.godebug); got != tc.want {
				t.Errorf("thpDisabled(%q) = %v, want %v", tc.godebug, got, tc.want)
			}
		})
	}
}

func TestHugeHeapSize(t *testing.T) {
	for _, tc := range []struct {
		name string
		want int
		ram  uint64
		got  int
	}{
		{"large machine", 448 << 20, 24 << 30, 448 << 20},
		{"quarter exactly", 448 << 20, 1792 << 20, 448 << 20},
		{"small machine", 448 << 20, 1 << 30, 256 << 20},
		{"tiny machine", 448 << 20, 256 << 20, 64 << 20},
		{"unknown memory", 448 << 20, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := hugeHeapSize(tc.want, tc.ram); got != tc.got {
				t.Errorf("hugeHeapSize(%d, %d) = %d, want %d", tc.want, tc.ram, got, tc.got)
			}
		})
	}
}
