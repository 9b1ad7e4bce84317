//go:build !linux

package filelist

import "errors"

func syscallMkfifo(string) error { return errors.New("fifos are made on Linux only") }
