package main

import (
	"context"
	"errors"
	"io"
)

func runGenerate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return errors.New("generate: not built yet")
}
