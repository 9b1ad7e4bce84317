//go:build !unix

package layout

import "os"

// MapFile reads the file at path whole (no mapping on this system); unmap does nothing.
func MapFile(path string) (b []byte, unmap func(), err error) {
	b, err = os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	return b, func() {}, nil
}
