package main

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"golang.org/x/term"
)

// progress draws a one-line progress bar on stderr when stderr is a terminal, and nothing
// otherwise.
type progress struct {
	mu    sync.Mutex
	w     io.Writer
	on    bool
	label string
	start time.Time
	last  time.Time
}

func newProgress() *progress {
	return &progress{w: os.Stderr, on: term.IsTerminal(int(os.Stderr.Fd())), start: time.Now()}
}

// set starts a new stage.
func (p *progress) set(label string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.label, p.start = label, time.Now()
}

// update redraws at most ten times a second; total 0 means unknown.
func (p *progress) update(done, total int64, unit string) {
	if !p.on {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	if now.Sub(p.last) < 100*time.Millisecond && (total == 0 || done < total) {
		return
	}
	p.last = now
	rate := float64(done) / max(now.Sub(p.start).Seconds(), 1e-3)
	if total > 0 {
		const width = 30
		filled := int(float64(width) * float64(done) / float64(total))
		filled = min(max(filled, 0), width)
		bar := make([]byte, width)
		for i := range bar {
			bar[i] = ' '
			if i < filled {
				bar[i] = '='
			}
		}
		fmt.Fprintf(p.w, "\r\033[K%s [%s] %3.0f%% %d %s (%.0f/s)", p.label, bar, 100*float64(done)/float64(total), done, unit, rate)
		return
	}
	fmt.Fprintf(p.w, "\r\033[K%s %d %s (%.0f/s)", p.label, done, unit, rate)
}

// done ends the line.
func (p *progress) done() {
	if !p.on {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprint(p.w, "\r\033[K")
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.n += int64(n)
	return n, err
}
