// Package backoff spaces out retries: every loop in whocould that tries again after a failure
// (sources, the projector, serve's parts) waits through one.
package backoff

import (
	"context"
	"time"
)

// Backoff doubles its wait from Min up to Max. The zero value waits 50ms, 100ms, ... up to 5s.
// Reset after a success.
type Backoff struct {
	Min, Max time.Duration
	d        time.Duration
}

// Reset starts again from the shortest wait.
func (b *Backoff) Reset() { b.d = 0 }

// Next is the wait Wait would sleep now.
func (b *Backoff) Next() time.Duration {
	if b.d == 0 {
		b.d = b.Min
		if b.d <= 0 {
			b.d = 50 * time.Millisecond
		}
	}
	return b.d
}

// Wait sleeps the current delay and doubles it; false when ctx ended first.
func (b *Backoff) Wait(ctx context.Context) bool {
	t := time.NewTimer(b.Next())
	defer t.Stop()
	limit := b.Max
	if limit <= 0 {
		limit = 5 * time.Second
	}
	b.d = min(2*b.d, limit)
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// Forever runs run until ctx ends, starting it again after each failure (a return before ctx
// ended) once b's wait has passed; failed, when set, hears of each failure and the wait before
// the next run. It returns nil when ctx ends.
func Forever(ctx context.Context, b Backoff, run func(context.Context) error, failed func(err error, wait time.Duration)) error {
	for {
		err := run(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if failed != nil {
			failed(err, b.Next())
		}
		if !b.Wait(ctx) {
			return nil
		}
	}
}
