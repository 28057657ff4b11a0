package schedule

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"runtime/debug"
	"slices"
	"sync"
	"time"
)

// Trigger says why a run happened.
type Trigger string

const (
	TriggerSchedule Trigger = "schedule" // the job's spec came due
	TriggerManual   Trigger = "manual"   // RunNow
)

// Status is how a run ended.
type Status string

const (
	// StatusOK: Run returned a nil error within its timeout.
	StatusOK Status = "ok"
	// StatusFailed: Run returned an error (and neither timed out nor was cancelled).
	StatusFailed Status = "failed"
	// StatusTimeout: the job's Timeout passed before Run returned, whatever it returned.
	StatusTimeout Status = "timeout"
	// StatusPanic: Run panicked; Error holds the panic value, the log holds the stack.
	StatusPanic Status = "panic"
	// StatusCanceled: the run's context was cancelled (Stop, the context given to Start, or the
	// caller of RunNow) and Run returned an error. A job that returns nil when cancelled is ok.
	StatusCanceled Status = "canceled"
	// StatusSkipped: a scheduled tick came while the previous run was still running; the tick
	// is recorded and dropped, never queued.
	StatusSkipped Status = "skipped"
)

// Result is what a job reports about its work.
type Result struct {
	// Counts are the job's tallies, such as {"findings": 12, "resolved": 3}.
	Counts map[string]int64
	// Summary is one short line for logs and listings.
	Summary string
}

// Run is one entry of a job's history.
type Run struct {
	Job     string
	Trigger Trigger
	// Scheduled is the tick a scheduled run (or skip) was for; zero for manual runs.
	Scheduled time.Time
	Started   time.Time
	Finished  time.Time
	Duration  time.Duration
	Status    Status
	// Error is empty for ok runs; for skipped ones it says which run was still running.
	Error string
	// Result is what Run returned (also on failure and timeout; empty after a panic or skip).
	Result Result
	// Overrun is how long Run kept going after its context was done (timeout or
	// cancellation): about zero for a job that honours its context.
	Overrun time.Duration
}

// RunError is the error RunNow returns for a run that happened but did not succeed. It
// unwraps to the job's error, ErrTimeout, ErrPanic or the cancellation cause.
type RunError struct {
	Run Run
	Err error
}

func (e *RunError) Error() string {
	return fmt.Sprintf("schedule: job %q %s: %v", e.Run.Job, e.Run.Status, e.Err)
}

func (e *RunError) Unwrap() error { return e.Err }

// active is the run of a job in progress.
type active struct {
	trigger   Trigger
	scheduled time.Time
	started   time.Time
	ctx       context.Context
	cancel    context.CancelCauseFunc

	mu          sync.Mutex
	doneAt      time.Time // when the run's context was done, zero if it was not
	cause       error     // why it was done
	returned    bool
	grace       *time.Timer
	overrunning bool // guarded by Scheduler.mu
}

// beginLocked marks e as running and returns the run; the caller must then call execute.
func (s *Scheduler) beginLocked(parent context.Context, e *entry, trig Trigger, scheduled time.Time) *active {
	ctx, cancel := context.WithCancelCause(parent)
	a := &active{trigger: trig, scheduled: scheduled, started: s.clock.Now(), ctx: ctx, cancel: cancel}
	e.active = a
	s.wg.Add(1)
	s.m.running.WithLabelValues(e.job.Name).Set(1)
	return a
}

// execute runs a (begun by beginLocked) through the wrapper: timeout, recover, overrun
// report, history, metrics, log, OnRun. The error is nil for an ok run, else a *RunError.
func (s *Scheduler) execute(e *entry, a *active) (Run, error) {
	defer s.wg.Done()
	defer a.cancel(nil)
	job := e.job
	ctx := a.ctx
	if job.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, job.Timeout, ErrTimeout)
		defer cancel()
	}
	stopWatch := context.AfterFunc(ctx, func() { s.cancelled(e, a, context.Cause(ctx)) })

	s.log.Debug("job run started", slog.String("job", job.Name), slog.String("trigger", string(a.trigger)))
	res, err, panicked, pv, stack := call(ctx, job.Run)
	finished := s.clock.Now()
	stopWatch()

	a.mu.Lock()
	a.returned = true
	if a.grace != nil {
		a.grace.Stop()
	}
	doneAt := a.doneAt
	a.mu.Unlock()

	r := Run{
		Job: job.Name, Trigger: a.trigger, Scheduled: a.scheduled,
		Started: a.started, Finished: finished, Duration: finished.Sub(a.started),
		Result: Result{Counts: maps.Clone(res.Counts), Summary: res.Summary},
	}
	if !doneAt.IsZero() && finished.After(doneAt) {
		r.Overrun = finished.Sub(doneAt)
	}
	var runErr error
	switch cause := context.Cause(ctx); {
	case panicked:
		r.Status, r.Result = StatusPanic, Result{}
		runErr = fmt.Errorf("%w: %v", ErrPanic, pv)
	case ctx.Err() != nil && errors.Is(cause, ErrTimeout):
		r.Status = StatusTimeout
		runErr = fmt.Errorf("%w after %s", ErrTimeout, job.Timeout)
		if err != nil {
			runErr = fmt.Errorf("%w after %s: %w", ErrTimeout, job.Timeout, err)
		}
	case ctx.Err() != nil && err != nil:
		r.Status = StatusCanceled
		runErr = err
		if cause != nil && !errors.Is(err, cause) {
			runErr = fmt.Errorf("%w: %w", cause, err)
		}
	case err != nil:
		r.Status, runErr = StatusFailed, err
	default:
		r.Status = StatusOK
	}
	if runErr != nil {
		r.Error = runErr.Error()
	}

	s.mu.Lock()
	e.active = nil
	s.recordLocked(e, r)
	s.mu.Unlock()

	s.logRun(r, stack)
	if s.cfg.OnRun != nil {
		s.cfg.OnRun(r)
	}
	if runErr != nil {
		return r, &RunError{Run: r, Err: runErr}
	}
	return r, nil
}

// call runs fn, turning a panic into (panicked, value, stack).
func call(ctx context.Context, fn func(context.Context) (Result, error)) (res Result, err error, panicked bool, pv any, stack []byte) {
	defer func() {
		if v := recover(); v != nil {
			panicked, pv, stack = true, v, debug.Stack()
		}
	}()
	res, err = fn(ctx)
	return res, err, false, nil, nil
}

// cancelled runs when a run's context is done: it notes when, and reports the run if it is
// still going CancelGrace later.
func (s *Scheduler) cancelled(e *entry, a *active, cause error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.returned {
		return
	}
	a.doneAt, a.cause = s.clock.Now(), cause
	a.grace = time.AfterFunc(s.cfg.CancelGrace, func() { s.overrun(e, a) })
}

func (s *Scheduler) overrun(e *entry, a *active) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a.mu.Lock()
	returned, doneAt, cause := a.returned, a.doneAt, a.cause
	a.mu.Unlock()
	if returned || e.active != a {
		return
	}
	a.overrunning = true
	s.log.Warn("job ignores its context", slog.String("job", e.job.Name), slog.String("trigger", string(a.trigger)),
		slog.Time("started", a.started), slog.Time("context_done", doneAt),
		slog.String("cause", fmt.Sprint(cause)), slog.Duration("timeout", e.job.Timeout),
		slog.Duration("grace", s.cfg.CancelGrace))
}

// skippedLocked records a scheduled tick that found the job running.
func (s *Scheduler) skippedLocked(e *entry, scheduled, now time.Time) Run {
	r := Run{
		Job: e.job.Name, Trigger: TriggerSchedule, Scheduled: scheduled, Started: now, Finished: now,
		Status: StatusSkipped,
		Error: fmt.Sprintf("previous %s run, started %s, still running", e.active.trigger,
			e.active.started.Format(time.RFC3339Nano)),
	}
	s.recordLocked(e, r)
	return r
}

func (s *Scheduler) recordLocked(e *entry, r Run) {
	if len(e.history) < s.cfg.History {
		e.history = append(e.history, r)
	} else {
		copy(e.history, e.history[1:])
		e.history[len(e.history)-1] = r
	}
	s.m.record(r)
}

func (s *Scheduler) logRun(r Run, stack []byte) {
	attrs := []slog.Attr{
		slog.String("job", r.Job), slog.String("trigger", string(r.Trigger)), slog.String("status", string(r.Status)),
	}
	if !r.Scheduled.IsZero() {
		attrs = append(attrs, slog.Time("scheduled", r.Scheduled))
	}
	if r.Status == StatusSkipped {
		s.log.LogAttrs(context.Background(), slog.LevelWarn, "job run skipped", append(attrs, slog.String("reason", r.Error))...)
		return
	}
	attrs = append(attrs, slog.Time("started", r.Started), slog.Duration("duration", r.Duration))
	if len(r.Result.Counts) > 0 {
		counts := make([]any, 0, len(r.Result.Counts))
		for _, k := range slices.Sorted(maps.Keys(r.Result.Counts)) {
			counts = append(counts, slog.Int64(k, r.Result.Counts[k]))
		}
		attrs = append(attrs, slog.Group("counts", counts...))
	}
	if r.Result.Summary != "" {
		attrs = append(attrs, slog.String("summary", r.Result.Summary))
	}
	if r.Overrun > 0 {
		attrs = append(attrs, slog.Duration("overrun", r.Overrun))
	}
	level := slog.LevelInfo
	switch r.Status {
	case StatusFailed, StatusPanic:
		level = slog.LevelError
	case StatusTimeout, StatusCanceled:
		level = slog.LevelWarn
	}
	if r.Error != "" {
		attrs = append(attrs, slog.String("error", r.Error))
	}
	if stack != nil {
		attrs = append(attrs, slog.String("stack", string(stack)))
	}
	s.log.LogAttrs(context.Background(), level, "job run finished", attrs...)
}
