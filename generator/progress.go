package generator

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// progress reports a run as it goes: on a terminal a bar rewritten in place, otherwise a line
// every interval. Warnings go through it so that they do not tear the bar.
type progress struct {
	w        io.Writer
	live     bool
	interval time.Duration
	start    time.Time

	bytes      atomic.Int64
	blobsDone  atomic.Int64
	blobsTotal atomic.Int64
	tagsDone   atomic.Int64
	tagsTotal  atomic.Int64

	mu       sync.Mutex
	drawn    bool
	quit     chan struct{}
	finished chan struct{}
	once     sync.Once
}

func newProgress(w io.Writer, live bool, interval time.Duration) *progress {
	p := &progress{w: w, live: live, interval: interval, start: time.Now(), quit: make(chan struct{}), finished: make(chan struct{})}
	if live {
		interval = 200 * time.Millisecond
	}
	go func() {
		defer close(p.finished)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-p.quit:
				return
			case <-t.C:
				p.draw()
			}
		}
	}()
	return p
}

func (p *progress) line() string {
	el := time.Since(p.start)
	rate := float64(p.bytes.Load()) / el.Seconds()
	return fmt.Sprintf("tags %d/%d  blobs %d/%d  %s  %s/s  %s",
		p.tagsDone.Load(), p.tagsTotal.Load(), p.blobsDone.Load(), p.blobsTotal.Load(),
		humanBytes(p.bytes.Load()), humanBytes(int64(rate)), el.Round(time.Second))
}

func (p *progress) draw() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.live {
		fmt.Fprintf(p.w, "\r%s\x1b[K", p.line())
		p.drawn = true
		return
	}
	fmt.Fprintf(p.w, "regmirror: progress: %s\n", p.line())
}

// warnf writes one warning line, clearing the bar first.
func (p *progress) warnf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.drawn {
		fmt.Fprint(p.w, "\r\x1b[K")
		p.drawn = false
	}
	fmt.Fprintf(p.w, "regmirror: warning: %s\n", strings.TrimSpace(msg))
}

// stop ends the reports and clears the bar. Safe to call twice.
func (p *progress) stop() {
	p.once.Do(func() {
		close(p.quit)
		<-p.finished
		p.mu.Lock()
		if p.drawn {
			fmt.Fprint(p.w, "\r\x1b[K")
			p.drawn = false
		}
		p.mu.Unlock()
	})
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
