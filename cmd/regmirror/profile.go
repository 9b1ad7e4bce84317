package main

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"runtime/trace"
	"strconv"
	"time"
)

// profileEnv names a directory into which a run writes a CPU profile, a heap profile and an
// execution trace (cpu.<command>.<pid>.pprof, heap.<command>.<pid>.pprof, the heap at its
// largest of the run's samples, and trace.<command>.<pid>.trace, for go tool trace, which
// shows where the run waited): a debugging aid for the scale benchmark, unset in normal use.
const profileEnv = "REGMIRROR_PROFILE_DIR"

// startProfile starts profiling the command when profileEnv is set; the returned function
// stops it and writes the profiles.
func startProfile(command string) (func(), error) {
	dir := os.Getenv(profileEnv)
	if dir == "" {
		return func() {}, nil
	}
	name := func(kind, ext string) string {
		return filepath.Join(dir, kind+"."+command+"."+strconv.Itoa(os.Getpid())+ext)
	}
	f, err := os.Create(name("cpu", ".pprof"))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", profileEnv, err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", profileEnv, err)
	}
	tf, err := os.Create(name("trace", ".trace"))
	if err != nil {
		pprof.StopCPUProfile()
		f.Close()
		return nil, fmt.Errorf("%s: %w", profileEnv, err)
	}
	if err := trace.Start(tf); err != nil {
		tf.Close()
		pprof.StopCPUProfile()
		f.Close()
		return nil, fmt.Errorf("%s: %w", profileEnv, err)
	}
	// The heap profile shows what is live when taken: take it when the heap is at its
	// largest among samples every 100 ms.
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		var peak uint64
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
			}
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak+peak/20 {
				peak = ms.HeapInuse
				if hf, err := os.Create(name("heap", ".pprof")); err == nil {
					_ = pprof.WriteHeapProfile(hf)
					hf.Close()
				}
			}
		}
	}()
	return func() {
		close(done)
		<-stopped
		trace.Stop()
		tf.Close()
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}
