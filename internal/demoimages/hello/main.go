// Command hello is the program in regmirror's demo images (internal/demoimages), built for
// each architecture of the demo set: it says which image and architecture it runs as, so a
// pull through a mirror can be checked by running what was pulled.
package main

import (
	"fmt"
	"os"
	"runtime"
)

func main() {
	fmt.Printf("Hello from regmirror's demo image (%s/%s).\n", runtime.GOOS, runtime.GOARCH)
	fmt.Println("These bytes were published by regmirror generate and pulled through regmirror serve.")
	if len(os.Args) > 1 {
		fmt.Fprintf(os.Stderr, "hello: no arguments expected, got %q\n", os.Args[1:])
		os.Exit(2)
	}
}
