package main

import (
	"context"
	"errors"
	"io"
)

func runCrawl(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return errors.New("crawl: not built yet")
}
