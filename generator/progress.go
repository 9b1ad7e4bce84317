package generator

import (
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// progress reports a run as it goes: on a terminal a bar rewritten in place on w, otherwise a
// log record every interval. Warnings go through it so that they do not tear the bar.
type progress struct {
	w        io.Writer
	log      *slog.Logger
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

func newProgress(log *slog.Logger, w io.Writer, live bool, interval time.Duration) *progress {
	p := &progress{w: w, log: log, live: live, interval: interval, start: time.Now(), quit: make(chan struct{}), finished: make(chan struct{})}
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

func (p *progress) draw() {
	el := time.Since(p.start)
	tags := fmt.Sprintf("%d/%d", p.tagsDone.Load(), p.tagsTotal.Load())
	blobs := fmt.Sprintf("%d/%d", p.blobsDone.Load(), p.blobsTotal.Load())
	bytes, rate := humanBytes(p.bytes.Load()), humanBytes(int64(float64(p.bytes.Load())/el.Seconds()))+"/s"
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.live {
		fmt.Fprintf(p.w, "\rtags %s  blobs %s  %s  %s  %s\x1b[K", tags, blobs, bytes, rate, el.Round(time.Second))
		p.drawn = true
		return
	}
	p.log.Info("progress", "tags", tags, "blobs", blobs, "bytes", bytes, "rate", rate, "elapsed", el.Round(time.Second).String())
}

// warnf logs one warning, clearing the bar first.
func (p *progress) warnf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.drawn {
		fmt.Fprint(p.w, "\r\x1b[K")
		p.drawn = false
	}
	p.log.Warn(strings.TrimSpace(msg))
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
