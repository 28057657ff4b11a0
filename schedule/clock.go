package schedule

import "time"

// Clock is the time source of a Scheduler: it decides when scheduled runs are due and stamps
// Run times. Timeouts and CancelGrace are context deadlines and real timers, not Clock's.
type Clock interface {
	Now() time.Time
	// NewTimer returns a timer that sends once on C after d; d <= 0 fires at once.
	NewTimer(d time.Duration) Timer
}

// Timer is the part of *time.Timer a Scheduler uses.
type Timer interface {
	C() <-chan time.Time
	// Stop prevents the timer from firing; false if it had already fired or been stopped.
	Stop() bool
}

var _ Clock = realClock{}

type realClock struct{}

func (realClock) Now() time.Time                 { return time.Now() }
func (realClock) NewTimer(d time.Duration) Timer { return realTimer{time.NewTimer(d)} }

type realTimer struct{ t *time.Timer }

func (t realTimer) C() <-chan time.Time { return t.t.C }
func (t realTimer) Stop() bool          { return t.t.Stop() }
