package mirrormanager

import (
	"os"
	"strings"
	"testing"
)

// FuzzDecode checks that Decode never panics, and that whatever it accepts yields hosts
// whose URLs are usable blob prefixes.
func FuzzDecode(f *testing.F) {
	good, boundaries := fixture().Encode()
	f.Add(good)
	packed := fixture()
	packed.Packed = true
	p, _ := packed.Encode()
	f.Add(p)
	for _, n := range boundaries[:len(boundaries)/2] {
		f.Add(good[:n])
	}
	if b, err := os.ReadFile("testdata/protoc-sample.bin"); err == nil {
		f.Add(b)
	}
	f.Add([]byte{})
	f.Add([]byte("garbage"))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := Decode(b)
		if err != nil {
			if s != nil {
				t.Fatalf("Decode returned a snapshot and an error: %v", err)
			}
			return
		}
		for _, d := range s.Directories() {
			hosts, err := s.Hosts(d)
			if err != nil {
				t.Fatalf("Hosts(%q) of a listed directory: %v", d, err)
			}
			for _, h := range hosts {
				if len(h.URLs) == 0 || h.Bandwidth < 1 {
					t.Fatalf("host %+v: no URL or bandwidth < 1", h)
				}
				for _, u := range h.URLs {
					if !strings.HasSuffix(u, "/") {
						t.Fatalf("URL %q does not end in /", u)
					}
				}
			}
		}
	})
}
