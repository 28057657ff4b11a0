package schedule

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

var (
	// ErrInvalid: Add refused the job (empty or duplicate name, bad spec, negative timeout, no Run).
	ErrInvalid = errors.New("invalid job")
	// ErrNotFound: no job has that name.
	ErrNotFound = errors.New("no such job")
	// ErrRunning: RunNow found the job running (scheduled or manual); nothing was started.
	ErrRunning = errors.New("job is running")
	// ErrStopped: the scheduler has been stopped; it starts no more runs. Also the cause of a
	// run's context cancelled by Stop.
	ErrStopped = errors.New("scheduler stopped")
	// ErrTimeout: the run's Timeout passed before it returned (the cause of its context).
	ErrTimeout = errors.New("timeout")
	// ErrPanic: the run panicked.
	ErrPanic = errors.New("panic")
)

// Job is work to run on a schedule and on demand.
type Job struct {
	// Name identifies the job: unique in a Scheduler, the "job" label of its metrics and logs.
	Name string
	// Spec is when it runs: 5 cron fields (minute hour day-of-month month day-of-week) or 6 with
	// a leading seconds field, optionally prefixed "CRON_TZ=Europe/Berlin "; or @yearly,
	// @monthly, @weekly, @daily, @hourly, @every <duration> (whole seconds, at least 1s). Specs
	// without a zone are read in Config.Location. See the package doc for DST days.
	Spec string
	// Timeout bounds each run: its context is cancelled with cause ErrTimeout when it passes
	// (0: no timeout).
	Timeout time.Duration
	// Run does the work. It must return soon after ctx is done; until it returns the job counts
	// as running, so scheduled ticks are skipped and RunNow gets ErrRunning. Counts and Summary
	// are kept even when it returns an error.
	Run func(ctx context.Context) (Result, error)
}

// Config configures a Scheduler. The zero value is usable.
type Config struct {
	// Location reads specs that have no CRON_TZ= prefix (default UTC).
	Location *time.Location
	// Logger receives a record for every run (default: discarded).
	Logger *slog.Logger
	// Registry receives the metrics (nil: they are kept but not registered).
	Registry prometheus.Registerer
	// History is how many runs are kept per job, skipped ones included (default 100).
	History int
	// CancelGrace is how long a run may keep going after its context is done (timeout, Stop)
	// before it is logged as ignoring its context and shown Overrunning (default 10s).
	CancelGrace time.Duration
	// Clock decides when runs are due and stamps Run times (default the system clock).
	Clock Clock
	// OnRun, if set, is called with every run after it is recorded, skipped ones included:
	// from the run's goroutine (the caller's, for RunNow), or for a skip from the scheduler's
	// loop, so it must return quickly.
	OnRun func(Run)
}

// Validate reports settings that cannot be used; zero values take their defaults.
func (c Config) Validate() error {
	if c.History < 0 {
		return fmt.Errorf("schedule: history %d: must be >= 0", c.History)
	}
	if c.CancelGrace < 0 {
		return fmt.Errorf("schedule: cancel grace %s: must be >= 0", c.CancelGrace)
	}
	return nil
}

// JobStatus is a job as Jobs lists it.
type JobStatus struct {
	Name    string
	Spec    string
	Timeout time.Duration
	// Next is the next scheduled tick; zero before Start, after Stop, or if the spec has no
	// further activation.
	Next time.Time
	// Last is the most recent recorded run (skipped ones included), nil if none.
	Last *Run
	// Running is true while a run is in progress; RunningSince and RunningTrigger describe it.
	Running        bool
	RunningSince   time.Time
	RunningTrigger Trigger
	// Overrunning: the running run's context has been done for longer than CancelGrace.
	Overrunning bool
}

// Scheduler runs jobs on their schedules and on demand, never two runs of one job at once.
// Its methods are safe for concurrent use.
type Scheduler struct {
	cfg   Config
	log   *slog.Logger
	clock Clock
	m     *metrics

	mu       sync.Mutex
	jobs     map[string]*entry
	started  bool
	stopped  bool
	wake     chan struct{} // Add after Start: recompute the timer
	quit     chan struct{} // closed by Stop
	loopDone chan struct{} // closed when the loop has returned
	wg       sync.WaitGroup
}

type entry struct {
	job     Job
	sched   Schedule
	next    time.Time
	active  *active // nil when not running
	history []Run   // oldest first, at most cfg.History
}

// New returns a stopped Scheduler with no jobs; its metrics are registered with
// cfg.Registry, which fails if they already are.
func New(cfg Config) (*Scheduler, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Location == nil {
		cfg.Location = time.UTC
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.History == 0 {
		cfg.History = 100
	}
	if cfg.CancelGrace == 0 {
		cfg.CancelGrace = 10 * time.Second
	}
	if cfg.Clock == nil {
		cfg.Clock = realClock{}
	}
	m, err := newMetrics(cfg.Registry)
	if err != nil {
		return nil, err
	}
	return &Scheduler{
		cfg: cfg, log: cfg.Logger, clock: cfg.Clock, m: m,
		jobs: map[string]*entry{}, wake: make(chan struct{}, 1),
		quit: make(chan struct{}), loopDone: make(chan struct{}),
	}, nil
}

// Add validates j and adds it; after Start it is scheduled at once. Errors wrap ErrInvalid
// and name the job (and the spec, for a bad spec); ErrStopped after Stop.
func (s *Scheduler) Add(j Job) error {
	if strings.TrimSpace(j.Name) == "" {
		return fmt.Errorf("schedule: add job %q: %w: empty name", j.Name, ErrInvalid)
	}
	if j.Timeout < 0 {
		return fmt.Errorf("schedule: add job %q: %w: timeout %s is negative", j.Name, ErrInvalid, j.Timeout)
	}
	if j.Run == nil {
		return fmt.Errorf("schedule: add job %q: %w: no Run func", j.Name, ErrInvalid)
	}
	sched, err := parseSpec(j.Spec, s.clock.Now().In(s.cfg.Location))
	if err != nil {
		return fmt.Errorf("schedule: add job %q: %w: spec %q: %w", j.Name, ErrInvalid, j.Spec, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return fmt.Errorf("schedule: add job %q: %w", j.Name, ErrStopped)
	}
	if _, dup := s.jobs[j.Name]; dup {
		return fmt.Errorf("schedule: add job %q: %w: a job with that name exists", j.Name, ErrInvalid)
	}
	e := &entry{job: j, sched: sched}
	s.jobs[j.Name] = e
	s.m.addJob(j.Name)
	if s.started {
		e.next = sched.Next(s.clock.Now().In(s.cfg.Location))
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
	return nil
}

// Start begins running jobs on their schedules, in a goroutine, and returns. Scheduled runs
// get contexts derived from ctx: when it is done, no more ticks are taken and running runs are
// cancelled (Stop must still be called to wait for them). Start can be called once.
func (s *Scheduler) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.stopped:
		return fmt.Errorf("schedule: start: %w", ErrStopped)
	case s.started:
		return errors.New("schedule: start: already started")
	}
	s.started = true
	now := s.clock.Now().In(s.cfg.Location)
	for _, e := range s.jobs {
		e.next = e.sched.Next(now)
	}
	go s.loop(ctx)
	return nil
}

// Stop takes no more ticks and refuses new runs, cancels the context of every running run
// (cause ErrStopped), and waits until they have returned and been recorded, or until ctx is
// done, whichever is first; then the error wraps ctx's and names the jobs still running.
// Stop may be called more than once, also before Start.
func (s *Scheduler) Stop(ctx context.Context) error {
	s.mu.Lock()
	if !s.stopped {
		s.stopped = true
		close(s.quit)
	}
	started := s.started
	for _, e := range s.jobs {
		e.next = time.Time{}
		if e.active != nil {
			e.active.cancel(ErrStopped)
		}
	}
	s.mu.Unlock()

	done := make(chan struct{})
	go func() {
		if started {
			<-s.loopDone
		}
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		s.mu.Lock()
		var running []string
		for name, e := range s.jobs {
			if e.active != nil {
				running = append(running, name)
			}
		}
		s.mu.Unlock()
		slices.Sort(running)
		return fmt.Errorf("schedule: stop: %w; still running: %s", ctx.Err(), strings.Join(running, ", "))
	}
}

// RunNow runs the job now, in the caller's goroutine, through the same wrapper as scheduled
// runs (timeout, recover, history, metrics, log) with a context derived from ctx, and returns
// the recorded run. The error is ErrNotFound, ErrRunning (a run, scheduled or manual, is in
// progress: nothing is started or recorded) or ErrStopped when no run happened, a *RunError
// when the run did not succeed, nil when it did.
func (s *Scheduler) RunNow(ctx context.Context, name string) (Run, error) {
	s.mu.Lock()
	e, ok := s.jobs[name]
	switch {
	case !ok:
		s.mu.Unlock()
		return Run{}, fmt.Errorf("schedule: run %q: %w", name, ErrNotFound)
	case s.stopped:
		s.mu.Unlock()
		return Run{}, fmt.Errorf("schedule: run %q: %w", name, ErrStopped)
	case e.active != nil:
		since, trig := e.active.started, e.active.trigger
		s.mu.Unlock()
		return Run{}, fmt.Errorf("schedule: run %q: %w (%s run since %s)", name, ErrRunning, trig, since.Format(time.RFC3339Nano))
	}
	a := s.beginLocked(ctx, e, TriggerManual, time.Time{})
	s.mu.Unlock()
	return s.execute(e, a)
}

// Runs returns the job's recorded runs, newest first, at most Config.History (nil for an
// unknown job). The caller owns the returned slice and maps.
func (s *Scheduler) Runs(name string) []Run {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.jobs[name]
	if !ok {
		return nil
	}
	out := make([]Run, len(e.history))
	for i, r := range e.history {
		out[len(out)-1-i] = cloneRun(r)
	}
	return out
}

// Jobs returns every job's status, by name.
func (s *Scheduler) Jobs() []JobStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]JobStatus, 0, len(s.jobs))
	for _, name := range slices.Sorted(maps.Keys(s.jobs)) {
		e := s.jobs[name]
		st := JobStatus{Name: name, Spec: e.job.Spec, Timeout: e.job.Timeout, Next: e.next}
		if n := len(e.history); n > 0 {
			last := cloneRun(e.history[n-1])
			st.Last = &last
		}
		if a := e.active; a != nil {
			st.Running, st.RunningSince, st.RunningTrigger, st.Overrunning = true, a.started, a.trigger, a.overrunning
		}
		out = append(out, st)
	}
	return out
}

func cloneRun(r Run) Run {
	r.Result.Counts = maps.Clone(r.Result.Counts)
	return r
}

// loop fires due jobs until Stop or ctx is done. Like robfig/cron's own runner it waits for
// the earliest next tick, runs every job due at the wake-up time, and computes each one's
// next tick from that time (so ticks missed while the process was suspended fire once).
func (s *Scheduler) loop(ctx context.Context) {
	defer close(s.loopDone)
	for {
		s.mu.Lock()
		var next time.Time
		for _, e := range s.jobs {
			if !e.next.IsZero() && (next.IsZero() || e.next.Before(next)) {
				next = e.next
			}
		}
		s.mu.Unlock()
		var timer Timer
		var fire <-chan time.Time
		if !next.IsZero() {
			timer = s.clock.NewTimer(next.Sub(s.clock.Now()))
			fire = timer.C()
		}
		select {
		case <-fire:
			s.tick(ctx)
		case <-s.wake:
		case <-s.quit:
		case <-ctx.Done():
		}
		if timer != nil {
			timer.Stop()
		}
		select {
		case <-s.quit:
			return
		case <-ctx.Done():
			return
		default:
		}
	}
}

// tick starts or skips every job due at the clock's present time.
func (s *Scheduler) tick(ctx context.Context) {
	now := s.clock.Now().In(s.cfg.Location)
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return
	}
	var due []*entry
	for _, e := range s.jobs {
		if !e.next.IsZero() && !e.next.After(now) {
			due = append(due, e)
		}
	}
	slices.SortFunc(due, func(a, b *entry) int {
		return cmp.Or(a.next.Compare(b.next), strings.Compare(a.job.Name, b.job.Name))
	})
	var skipped []Run
	type start struct {
		e *entry
		a *active
	}
	var starts []start
	for _, e := range due {
		scheduled := e.next
		e.next = e.sched.Next(now)
		if e.active != nil {
			skipped = append(skipped, s.skippedLocked(e, scheduled, now))
			continue
		}
		starts = append(starts, start{e, s.beginLocked(ctx, e, TriggerSchedule, scheduled)})
	}
	s.mu.Unlock()
	for _, st := range starts {
		go func() { _, _ = s.execute(st.e, st.a) }()
	}
	for _, r := range skipped {
		s.logRun(r, nil)
		if s.cfg.OnRun != nil {
			s.cfg.OnRun(r)
		}
	}
}
