package ingest

import (
	"context"
	"time"
)

// Backoff spaces out retries: 50ms, 100ms, ... up to 5s. Sources use it between failed
// attempts; Reset after a success. The zero value is ready.
type Backoff struct{ d time.Duration }

// Reset starts again from the shortest wait.
func (b *Backoff) Reset() { b.d = 0 }

// Wait sleeps the current delay and doubles it; false when ctx ended first.
func (b *Backoff) Wait(ctx context.Context) bool {
	if b.d == 0 {
		b.d = 50 * time.Millisecond
	}
	t := time.NewTimer(b.d)
	defer t.Stop()
	b.d = min(2*b.d, 5*time.Second)
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
