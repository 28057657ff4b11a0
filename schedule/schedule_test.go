package schedule_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/whocould/whocould/schedule"
)

// gate is a job whose runs start, announce themselves, and wait for the test to let them go.
type gate struct {
	started chan context.Context // each run sends its context when it begins
	release chan error           // each run returns what it receives here
	cur     atomic.Int32         // runs in progress
	max     atomic.Int32         // most runs ever in progress at once
}

func newGate() *gate {
	return &gate{started: make(chan context.Context, 100), release: make(chan error)}
}

func (g *gate) run(ctx context.Context) (schedule.Result, error) {
	n := g.cur.Add(1)
	defer g.cur.Add(-1)
	for {
		m := g.max.Load()
		if n <= m || g.max.CompareAndSwap(m, n) {
			break
		}
	}
	g.started <- ctx
	err := <-g.release
	return schedule.Result{Counts: map[string]int64{"findings": 12, "resolved": 3}, Summary: "12 findings"}, err
}

func TestOverlapIsSkippedNeverConcurrent(t *testing.T) {
	g := newGate()
	f := newFixture(t, schedule.Config{}, schedule.Job{Name: "analyze", Spec: "@every 1s", Run: g.run})
	f.start(t)

	first := f.clk.tick(t)
	recv(t, g.started, "first run to start")
	// Two more ticks while it runs: each is recorded as skipped, none is queued.
	second := f.clk.tick(t)
	third := f.clk.tick(t)
	for _, want := range []time.Time{second, third} {
		r := f.nextRun(t)
		if r.Status != schedule.StatusSkipped || r.Trigger != schedule.TriggerSchedule || !r.Scheduled.Equal(want) {
			t.Fatalf("tick at %s: got %+v, want a skipped scheduled run", want, r)
		}
		if !strings.HasPrefix(r.Error, "previous schedule run, started 2026-05-04T10:00:01Z, still running") {
			t.Errorf("skip reason %q", r.Error)
		}
	}
	if st := f.s.Jobs()[0]; !st.Running || !st.RunningSince.Equal(first) || st.RunningTrigger != schedule.TriggerSchedule {
		t.Errorf("status while running: %+v", st)
	}

	g.release <- nil
	r := f.nextRun(t)
	if r.Status != schedule.StatusOK || !r.Scheduled.Equal(first) || !r.Started.Equal(first) || r.Duration != third.Sub(first) {
		t.Fatalf("first run: %+v", r)
	}
	if r.Result.Counts["findings"] != 12 || r.Result.Summary != "12 findings" {
		t.Errorf("result: %+v", r.Result)
	}

	// The next tick runs again: skipping is not sticky.
	fourth := f.clk.tick(t)
	recv(t, g.started, "run after the skips")
	g.release <- nil
	if r := f.nextRun(t); r.Status != schedule.StatusOK || !r.Scheduled.Equal(fourth) {
		t.Fatalf("run after the skips: %+v", r)
	}

	if got := statuses(f.s.Runs("analyze")); got != "ok,ok,skipped,skipped" {
		t.Errorf("history (newest first) = %s", got)
	}
	if m := g.max.Load(); m != 1 {
		t.Errorf("%d runs at once", m)
	}
	if v, _ := metric(t, f.reg, "whocould_schedule_runs_total", map[string]string{"job": "analyze", "status": "skipped"}); v != 2 {
		t.Errorf("skipped runs metric = %v", v)
	}
	if recs := f.logs.find("job run skipped"); len(recs) != 2 || recs[0]["level"] != "WARN" || recs[0]["job"] != "analyze" {
		t.Errorf("skip logs: %v", recs)
	}
}

func TestTimeoutCancelsContext(t *testing.T) {
	type seen struct {
		err      error
		cause    error
		deadline bool
	}
	seenc := make(chan seen, 1)
	job := schedule.Job{Name: "report", Spec: "@every 1s", Timeout: 20 * time.Millisecond,
		Run: func(ctx context.Context) (schedule.Result, error) {
			_, ok := ctx.Deadline()
			<-ctx.Done()
			seenc <- seen{ctx.Err(), context.Cause(ctx), ok}
			return schedule.Result{Counts: map[string]int64{"rows": 7}}, ctx.Err()
		}}
	f := newFixture(t, schedule.Config{}, job)
	f.start(t)

	// Scheduled.
	f.clk.tick(t)
	r := f.nextRun(t)
	s := <-seenc
	if !errors.Is(s.err, context.DeadlineExceeded) || !errors.Is(s.cause, schedule.ErrTimeout) || !s.deadline {
		t.Errorf("job saw err=%v cause=%v deadline=%v", s.err, s.cause, s.deadline)
	}
	if r.Status != schedule.StatusTimeout || !strings.Contains(r.Error, "timeout after 20ms") || r.Result.Counts["rows"] != 7 {
		t.Errorf("scheduled run: %+v", r)
	}

	// Manual: the same wrapper, and the error says so.
	r, err := f.s.RunNow(t.Context(), "report")
	<-seenc
	var re *schedule.RunError
	if !errors.Is(err, schedule.ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) || !errors.As(err, &re) || re.Run.Status != schedule.StatusTimeout {
		t.Errorf("RunNow error = %v", err)
	}
	if r.Status != schedule.StatusTimeout || r.Trigger != schedule.TriggerManual {
		t.Errorf("manual run: %+v", r)
	}
	if v, _ := metric(t, f.reg, "whocould_schedule_runs_total", map[string]string{"job": "report", "status": "timeout"}); v != 2 {
		t.Errorf("timeout runs metric = %v", v)
	}
	if recs := f.logs.find("job run finished"); len(recs) != 2 || recs[0]["status"] != "timeout" || recs[0]["level"] != "WARN" || recs[0]["counts.rows"] != "7" {
		t.Errorf("logs: %v", recs)
	}
}

// A job that ignores its context: reported once CancelGrace has passed, counts as running (so
// ticks are skipped) until it returns, and is recorded as timed out with its overrun.
func TestTimeoutIgnoredIsReportedAndKeepsSkipping(t *testing.T) {
	g := newGate()
	f := newFixture(t, schedule.Config{CancelGrace: time.Millisecond},
		schedule.Job{Name: "mail", Spec: "* * * * * *", Timeout: time.Millisecond, Run: g.run})
	f.start(t)

	f.clk.tick(t)
	ctx := recv(t, g.started, "run to start")
	<-ctx.Done()
	f.logs.await(t, "job ignores its context")
	if st := f.s.Jobs()[0]; !st.Running || !st.Overrunning {
		t.Errorf("status: %+v", st)
	}
	rec := f.logs.find("job ignores its context")[0]
	if rec["level"] != "WARN" || rec["job"] != "mail" || rec["cause"] != "timeout" {
		t.Errorf("report: %v", rec)
	}

	skippedAt := f.clk.tick(t)
	if r := f.nextRun(t); r.Status != schedule.StatusSkipped || !r.Scheduled.Equal(skippedAt) {
		t.Fatalf("tick during overrun: %+v", r)
	}
	if _, err := f.s.RunNow(t.Context(), "mail"); !errors.Is(err, schedule.ErrRunning) {
		t.Errorf("RunNow during overrun: %v", err)
	}

	g.release <- nil // returns nil, but long after its deadline: still a timeout
	r := f.nextRun(t)
	if r.Status != schedule.StatusTimeout || r.Overrun < time.Second {
		t.Fatalf("overrun run: %+v", r)
	}
	if st := f.s.Jobs()[0]; st.Running || st.Overrunning {
		t.Errorf("status after return: %+v", st)
	}
	// Back to normal.
	f.clk.tick(t)
	recv(t, g.started, "next run")
	g.release <- nil
	if r := f.nextRun(t); r.Status != schedule.StatusTimeout && r.Status != schedule.StatusOK {
		t.Fatalf("next run: %+v", r)
	}
}

func TestPanicIsRecordedAndSchedulingGoesOn(t *testing.T) {
	var n atomic.Int32
	job := schedule.Job{Name: "sod", Spec: "@every 1s", Run: func(ctx context.Context) (schedule.Result, error) {
		if n.Add(1) == 1 {
			var m map[string]int
			m["boom"]++ // a real runtime panic: assignment to entry in nil map
		}
		return schedule.Result{Summary: "fine"}, nil
	}}
	f := newFixture(t, schedule.Config{}, job)
	f.start(t)

	f.clk.tick(t)
	r := f.nextRun(t)
	if r.Status != schedule.StatusPanic || !strings.Contains(r.Error, "panic: assignment to entry in nil map") {
		t.Fatalf("panicking run: %+v", r)
	}
	rec := f.logs.find("job run finished")[0]
	if rec["level"] != "ERROR" || rec["status"] != "panic" || !strings.Contains(rec["stack"], "schedule_test.TestPanicIsRecordedAndSchedulingGoesOn") {
		t.Errorf("panic log: %v", rec)
	}

	f.clk.tick(t)
	if r := f.nextRun(t); r.Status != schedule.StatusOK || r.Result.Summary != "fine" {
		t.Fatalf("run after the panic: %+v", r)
	}
	if st := f.s.Jobs()[0]; st.Running || st.Last == nil || st.Last.Status != schedule.StatusOK {
		t.Errorf("status: %+v", st)
	}

	// On demand, a panic is an error wrapping ErrPanic.
	n.Store(0)
	if _, err := f.s.RunNow(t.Context(), "sod"); !errors.Is(err, schedule.ErrPanic) {
		t.Errorf("RunNow panic error = %v", err)
	}
}

func TestRunNowNeverOverlaps(t *testing.T) {
	g := newGate()
	f := newFixture(t, schedule.Config{}, schedule.Job{Name: "drift", Spec: "@every 1s", Run: g.run})
	f.start(t)

	// A scheduled run is in progress: RunNow refuses and records nothing.
	f.clk.tick(t)
	recv(t, g.started, "scheduled run")
	r, err := f.s.RunNow(t.Context(), "drift")
	if !errors.Is(err, schedule.ErrRunning) || r.Status != "" {
		t.Fatalf("RunNow while running: %+v, %v", r, err)
	}
	g.release <- nil
	f.nextRun(t)

	// A manual run is in progress: the scheduled tick is skipped.
	type result struct {
		r   schedule.Run
		err error
	}
	done := make(chan result, 1)
	go func() {
		r, err := f.s.RunNow(context.Background(), "drift")
		done <- result{r, err}
	}()
	recv(t, g.started, "manual run")
	f.clk.tick(t)
	if r := f.nextRun(t); r.Status != schedule.StatusSkipped || !strings.HasPrefix(r.Error, "previous manual run") {
		t.Fatalf("tick during a manual run: %+v", r)
	}
	if _, err := f.s.RunNow(t.Context(), "drift"); !errors.Is(err, schedule.ErrRunning) {
		t.Errorf("second RunNow: %v", err)
	}
	g.release <- errors.New("baseline unreadable")
	res := recv(t, done, "manual run to return")
	if res.r.Status != schedule.StatusFailed || res.r.Trigger != schedule.TriggerManual || res.r.Error != "baseline unreadable" {
		t.Errorf("manual run: %+v", res.r)
	}
	var re *schedule.RunError
	if !errors.As(res.err, &re) || re.Err.Error() != "baseline unreadable" || !strings.Contains(res.err.Error(), `job "drift" failed`) {
		t.Errorf("manual run error: %v", res.err)
	}
	if m := g.max.Load(); m != 1 {
		t.Errorf("%d runs at once", m)
	}
	if _, err := f.s.RunNow(t.Context(), "nope"); !errors.Is(err, schedule.ErrNotFound) {
		t.Errorf("RunNow unknown job: %v", err)
	}
}

func TestAddValidates(t *testing.T) {
	s, err := schedule.New(schedule.Config{})
	if err != nil {
		t.Fatal(err)
	}
	run := func(context.Context) (schedule.Result, error) { return schedule.Result{}, nil }
	for _, spec := range []string{
		"*/5 * * * *", "0 30 6 * * *", "CRON_TZ=Europe/Berlin 0 6 * * 1-5", "TZ=UTC 0 * * * *",
		"@daily", "@hourly", "CRON_TZ=Europe/Berlin @daily", "@every 90s", "@every 1s",
	} {
		if err := s.Add(schedule.Job{Name: spec, Spec: spec, Run: run}); err != nil {
			t.Errorf("Add(%q): %v", spec, err)
		}
	}
	for _, tc := range []struct {
		job  schedule.Job
		want string // in the error, besides the name
	}{
		{schedule.Job{Name: "bad-field", Spec: "61 * * * *", Run: run}, `spec "61 * * * *": end of range (61) above maximum (59)`},
		{schedule.Job{Name: "four-fields", Spec: "* * * *", Run: run}, `spec "* * * *": expected 5 to 6 fields`},
		{schedule.Job{Name: "seven-fields", Spec: "* * * * * * *", Run: run}, `spec "* * * * * * *"`},
		{schedule.Job{Name: "zone", Spec: "CRON_TZ=Mars/Olympus 0 * * * *", Run: run}, `spec "CRON_TZ=Mars/Olympus 0 * * * *": provided bad location`},
		{schedule.Job{Name: "zone-only", Spec: "CRON_TZ=Europe/Berlin", Run: run}, `spec "CRON_TZ=Europe/Berlin": time zone prefix without a schedule`},
		{schedule.Job{Name: "sub-second", Spec: "@every 50ms", Run: run}, `spec "@every 50ms": @every 50ms: must be a whole number of seconds`},
		{schedule.Job{Name: "fraction", Spec: "@every 1500ms", Run: run}, `must be a whole number of seconds`},
		{schedule.Job{Name: "never", Spec: "0 0 30 2 *", Run: run}, `spec "0 0 30 2 *": never fires`},
		{schedule.Job{Name: "descriptor", Spec: "@fortnightly", Run: run}, `spec "@fortnightly": unrecognized descriptor`},
		{schedule.Job{Name: "empty-spec", Spec: " ", Run: run}, `spec " ": empty spec`},
		{schedule.Job{Name: "neg", Spec: "@daily", Timeout: -time.Second, Run: run}, "timeout -1s is negative"},
		{schedule.Job{Name: "norun", Spec: "@daily"}, "no Run func"},
		{schedule.Job{Name: "@daily", Spec: "@daily", Run: run}, "a job with that name exists"},
		{schedule.Job{Name: "", Spec: "@daily", Run: run}, "empty name"},
	} {
		err := s.Add(tc.job)
		if err == nil || !errors.Is(err, schedule.ErrInvalid) || !strings.Contains(err.Error(), fmt.Sprintf("job %q", tc.job.Name)) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Add(%+v) = %v, want ErrInvalid naming the job and %q", tc.job, err, tc.want)
		}
	}
	if _, err := schedule.New(schedule.Config{History: -1}); err == nil {
		t.Error("negative History accepted")
	}
}

func TestHistoryIsBounded(t *testing.T) {
	var n atomic.Int64
	f := newFixture(t, schedule.Config{History: 3}, schedule.Job{Name: "count", Spec: "@daily",
		Run: func(context.Context) (schedule.Result, error) {
			return schedule.Result{Counts: map[string]int64{"n": n.Add(1)}}, nil
		}})
	for range 5 {
		if _, err := f.s.RunNow(t.Context(), "count"); err != nil {
			t.Fatal(err)
		}
	}
	runs := f.s.Runs("count")
	if len(runs) != 3 {
		t.Fatalf("%d runs kept, want 3", len(runs))
	}
	for i, want := range []int64{5, 4, 3} {
		if got := runs[i].Result.Counts["n"]; got != want {
			t.Errorf("runs[%d] is run %d, want %d (newest first)", i, got, want)
		}
	}
	runs[0].Result.Counts["n"] = 99 // the caller owns what Runs returns
	if got := f.s.Runs("count")[0].Result.Counts["n"]; got != 5 {
		t.Errorf("history changed through a returned map: %d", got)
	}
	if f.s.Runs("nope") != nil {
		t.Error("Runs of an unknown job")
	}
}

func TestStopWaitsForAndCancelsRunning(t *testing.T) {
	cancelled := make(chan error, 1)
	proceed := make(chan struct{})
	f := newFixture(t, schedule.Config{}, schedule.Job{Name: "slow", Spec: "@every 1s",
		Run: func(ctx context.Context) (schedule.Result, error) {
			<-ctx.Done()
			cancelled <- context.Cause(ctx)
			<-proceed // cleaning up after cancellation takes a while
			return schedule.Result{}, ctx.Err()
		}})
	f.start(t)
	f.clk.tick(t)

	stopped := make(chan error, 1)
	go func() { stopped <- f.s.Stop(context.Background()) }()
	if cause := recv(t, cancelled, "cancellation"); !errors.Is(cause, schedule.ErrStopped) {
		t.Errorf("cause = %v", cause)
	}
	select {
	case err := <-stopped:
		t.Fatalf("Stop returned (%v) before the running job did", err)
	default:
	}
	close(proceed)
	if err := recv(t, stopped, "Stop"); err != nil {
		t.Fatal(err)
	}
	// Stop returned after the run was recorded.
	runs := f.s.Runs("slow")
	if len(runs) != 1 || runs[0].Status != schedule.StatusCanceled || runs[0].Error != "scheduler stopped: context canceled" {
		t.Fatalf("runs: %+v", runs)
	}
	if _, err := f.s.RunNow(t.Context(), "slow"); !errors.Is(err, schedule.ErrStopped) {
		t.Errorf("RunNow after Stop: %v", err)
	}
	if err := f.s.Start(t.Context()); !errors.Is(err, schedule.ErrStopped) {
		t.Errorf("Start after Stop: %v", err)
	}
	if st := f.s.Jobs()[0]; !st.Next.IsZero() || st.Running {
		t.Errorf("status after Stop: %+v", st)
	}
}

func TestStopGivesUpAtItsDeadline(t *testing.T) {
	g := newGate()
	f := newFixture(t, schedule.Config{}, schedule.Job{Name: "stubborn", Spec: "@every 1s", Run: g.run})
	f.start(t)
	f.clk.tick(t)
	ctx := recv(t, g.started, "run")

	stopCtx, cancel := context.WithCancel(context.Background())
	stopped := make(chan error, 1)
	go func() { stopped <- f.s.Stop(stopCtx) }()
	<-ctx.Done() // cancelled by Stop, ignored by the job
	cancel()
	err := recv(t, stopped, "Stop")
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "still running: stubborn") {
		t.Fatalf("Stop = %v", err)
	}
	g.release <- nil // the cleanup Stop then finds it done
}

func TestMetrics(t *testing.T) {
	g := newGate()
	f := newFixture(t, schedule.Config{}, schedule.Job{Name: "creep", Spec: "@every 1s", Run: g.run})
	lbl := map[string]string{"job": "creep"}
	// Series exist from Add, at zero.
	if v, ok := metric(t, f.reg, "whocould_schedule_runs_total", map[string]string{"job": "creep", "status": "panic"}); !ok || v != 0 {
		t.Errorf("runs_total{panic} before any run: %v %v", v, ok)
	}
	if _, ok := metric(t, f.reg, "whocould_schedule_last_success_timestamp_seconds", lbl); ok {
		t.Error("last success before any success")
	}
	f.start(t)

	f.clk.tick(t)
	recv(t, g.started, "run")
	if v, _ := metric(t, f.reg, "whocould_schedule_running", lbl); v != 1 {
		t.Errorf("running = %v while running", v)
	}
	f.clk.tick(t) // skipped
	f.nextRun(t)
	f.clk.advance(500 * time.Millisecond) // to 2.5s: short of the next tick at 3s
	g.release <- nil
	ok := f.nextRun(t)
	if v, _ := metric(t, f.reg, "whocould_schedule_running", lbl); v != 0 {
		t.Errorf("running = %v after", v)
	}
	if v, _ := metric(t, f.reg, "whocould_schedule_last_success_timestamp_seconds", lbl); v != float64(ok.Finished.UnixNano())/1e9 || !ok.Finished.Equal(t0.Add(2500*time.Millisecond)) {
		t.Errorf("last success = %v, finished %s", v, ok.Finished)
	}

	f.clk.tick(t)
	recv(t, g.started, "failing run")
	g.release <- errors.New("store down")
	f.nextRun(t)

	for status, want := range map[string]float64{"ok": 1, "failed": 1, "skipped": 1, "timeout": 0} {
		if v, _ := metric(t, f.reg, "whocould_schedule_runs_total", map[string]string{"job": "creep", "status": status}); v != want {
			t.Errorf("runs_total{%s} = %v, want %v", status, v, want)
		}
	}
	if v, _ := metric(t, f.reg, "whocould_schedule_run_duration_seconds", lbl); v != 2 {
		t.Errorf("duration observations = %v, want 2 (skips excluded)", v)
	}
	mfs, _ := f.reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() == "whocould_schedule_run_duration_seconds" {
			if sum := mf.GetMetric()[0].GetHistogram().GetSampleSum(); sum != 1.5 {
				t.Errorf("duration sum = %v, want 1.5 (1s..2.5s, then 0s on the fake clock)", sum)
			}
		}
	}

	// Registering twice on one registry is an error, not a panic.
	if _, err := schedule.New(schedule.Config{Registry: f.reg}); err == nil {
		t.Error("second scheduler registered on the same registry")
	}
	var are prometheus.AlreadyRegisteredError
	if _, err := schedule.New(schedule.Config{Registry: f.reg}); !errors.As(err, &are) {
		t.Errorf("error = %v", err)
	}
}

func TestJobsAndAddAfterStart(t *testing.T) {
	run := func(context.Context) (schedule.Result, error) { return schedule.Result{}, nil }
	f := newFixture(t, schedule.Config{Location: time.UTC},
		schedule.Job{Name: "b-hourly", Spec: "0 * * * *", Timeout: time.Minute, Run: run})
	if st := f.s.Jobs()[0]; !st.Next.IsZero() {
		t.Errorf("Next before Start: %s", st.Next)
	}
	f.start(t)
	if err := f.s.Start(t.Context()); err == nil {
		t.Error("second Start accepted")
	}
	if err := f.s.Add(schedule.Job{Name: "a-every", Spec: "@every 10s", Run: run}); err != nil {
		t.Fatal(err)
	}
	// The loop re-arms for the new job's earlier tick.
	f.clk.waitArmedUntil(t, func(when time.Time) bool { return when.Equal(t0.Add(10 * time.Second)) })
	jobs := f.s.Jobs()
	if len(jobs) != 2 || jobs[0].Name != "a-every" || jobs[1].Name != "b-hourly" {
		t.Fatalf("jobs: %+v", jobs)
	}
	if !jobs[0].Next.Equal(t0.Add(10*time.Second)) || !jobs[1].Next.Equal(t0.Add(time.Hour)) || jobs[1].Timeout != time.Minute || jobs[1].Spec != "0 * * * *" {
		t.Errorf("jobs: %+v", jobs)
	}
	f.clk.tick(t)
	if r := f.nextRun(t); r.Job != "a-every" || r.Status != schedule.StatusOK {
		t.Errorf("run: %+v", r)
	}
	st := f.s.Jobs()[0]
	if st.Last == nil || st.Last.Status != schedule.StatusOK || !st.Next.Equal(t0.Add(20*time.Second)) {
		t.Errorf("status after a run: %+v", st)
	}
}

// Both jobs due at one tick run in the same tick.
func TestJobsDueTogether(t *testing.T) {
	run := func(context.Context) (schedule.Result, error) { return schedule.Result{}, nil }
	f := newFixture(t, schedule.Config{},
		schedule.Job{Name: "a", Spec: "0 * * * * *", Run: run}, schedule.Job{Name: "b", Spec: "@every 1m", Run: run})
	f.start(t)
	at := f.clk.tick(t)
	got := map[string]time.Time{}
	for range 2 {
		r := f.nextRun(t)
		got[r.Job] = r.Scheduled
	}
	if !got["a"].Equal(at) || !got["b"].Equal(at) || !at.Equal(t0.Add(time.Minute)) {
		t.Errorf("tick at %s ran %v", at, got)
	}
}

// Cancelling the context given to Start stops ticking and cancels running runs.
func TestStartContextCancelled(t *testing.T) {
	g := newGate()
	f := newFixture(t, schedule.Config{}, schedule.Job{Name: "j", Spec: "@every 1s", Run: g.run})
	ctx, cancel := context.WithCancel(context.Background())
	if err := f.s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	f.clk.tick(t)
	runCtx := recv(t, g.started, "run")
	cancel()
	<-runCtx.Done()
	g.release <- runCtx.Err()
	if r := f.nextRun(t); r.Status != schedule.StatusCanceled {
		t.Errorf("run: %+v", r)
	}
	// No more ticks: the loop lets go of its timer, and moving the clock past the next tick
	// starts nothing (Stop then joins the loop and any run it started).
	f.clk.waitDisarmed(t)
	f.clk.advance(2 * time.Second)
	stopCtx, stopCancel := context.WithTimeout(context.Background(), wait)
	defer stopCancel()
	if err := f.s.Stop(stopCtx); err != nil {
		t.Fatal(err)
	}
	if runs := f.s.Runs("j"); len(runs) != 1 {
		t.Errorf("runs after cancelling: %+v", runs)
	}
	select {
	case <-g.started:
		t.Error("a run started after the context was cancelled")
	default:
	}
}

// The real clock: a seconds spec fires within about a second.
func TestRealClock(t *testing.T) {
	if testing.Short() {
		t.Skip("waits up to a second on the real clock")
	}
	ran := make(chan time.Time, 10)
	s, err := schedule.New(schedule.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Add(schedule.Job{Name: "tick", Spec: "* * * * * *", Run: func(context.Context) (schedule.Result, error) {
		ran <- time.Now()
		return schedule.Result{}, nil
	}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	recv(t, ran, "a run on the real clock")
	if err := s.Stop(t.Context()); err != nil {
		t.Fatal(err)
	}
	if runs := s.Runs("tick"); len(runs) == 0 || runs[0].Scheduled.Nanosecond() != 0 {
		t.Errorf("runs: %+v", runs)
	}
}
