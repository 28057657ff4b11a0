package schedule_test

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/whocould/whocould/schedule"
)

// wait bounds every blocking step of a test: reaching it means the behaviour under test is
// broken (a deadlock, a tick that never came), not that the machine is slow.
const wait = 10 * time.Second

// fakeClock is a schedule.Clock moved only by the test. Timers due when the time is set fire
// at once; waitArmed blocks until the scheduler's loop is waiting on a timer again, which is
// how a test knows a tick has been fully processed (skips recorded, runs begun).
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	armed   []*fakeTimer
	changed chan struct{} // closed and replaced whenever armed changes
}

type fakeTimer struct {
	clk  *fakeClock
	when time.Time
	c    chan time.Time
}

func newFakeClock(t time.Time) *fakeClock { return &fakeClock{now: t, changed: make(chan struct{})} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) NewTimer(d time.Duration) schedule.Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{clk: c, when: c.now.Add(d), c: make(chan time.Time, 1)}
	if d <= 0 {
		t.c <- c.now
		return t
	}
	c.armed = append(c.armed, t)
	c.notifyLocked()
	return t
}

func (t *fakeTimer) C() <-chan time.Time { return t.c }

func (t *fakeTimer) Stop() bool {
	c := t.clk
	c.mu.Lock()
	defer c.mu.Unlock()
	i := slices.Index(c.armed, t)
	if i < 0 {
		return false
	}
	c.armed = slices.Delete(c.armed, i, i+1)
	c.notifyLocked()
	return true
}

func (c *fakeClock) notifyLocked() {
	close(c.changed)
	c.changed = make(chan struct{})
}

// set moves the clock to t and fires the timers due by then.
func (c *fakeClock) set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
	kept := c.armed[:0]
	for _, tm := range c.armed {
		if tm.when.After(t) {
			kept = append(kept, tm)
			continue
		}
		tm.c <- t
	}
	c.armed = kept
	c.notifyLocked()
}

func (c *fakeClock) advance(d time.Duration) { c.set(c.Now().Add(d)) }

// waitArmed waits until a timer is armed and returns the earliest deadline.
func (c *fakeClock) waitArmed(t *testing.T) time.Time {
	t.Helper()
	return c.waitArmedUntil(t, func(time.Time) bool { return true })
}

// waitArmedUntil waits until the earliest armed timer's deadline satisfies ok, and returns it.
func (c *fakeClock) waitArmedUntil(t *testing.T, ok func(time.Time) bool) time.Time {
	t.Helper()
	deadline := time.After(wait)
	for {
		c.mu.Lock()
		if len(c.armed) > 0 {
			when := c.armed[0].when
			for _, tm := range c.armed[1:] {
				if tm.when.Before(when) {
					when = tm.when
				}
			}
			if ok(when) {
				c.mu.Unlock()
				return when
			}
		}
		ch := c.changed
		c.mu.Unlock()
		select {
		case <-ch:
		case <-deadline:
			t.Fatal("scheduler loop never armed the expected timer")
		}
	}
}

// waitDisarmed waits until no timer is armed: the scheduler's loop has stopped waiting on one.
func (c *fakeClock) waitDisarmed(t *testing.T) {
	t.Helper()
	deadline := time.After(wait)
	for {
		c.mu.Lock()
		n, ch := len(c.armed), c.changed
		c.mu.Unlock()
		if n == 0 {
			return
		}
		select {
		case <-ch:
		case <-deadline:
			t.Fatal("scheduler loop never disarmed its timer")
		}
	}
}

// tick waits for the loop to be waiting, moves the clock to its deadline, and waits until
// the loop has processed the tick and armed its next timer. It returns the tick's time.
func (c *fakeClock) tick(t *testing.T) time.Time {
	t.Helper()
	when := c.waitArmed(t)
	c.set(when)
	c.waitArmed(t)
	return when
}

// logs is a slog.Handler that keeps every record and signals each message on a channel.
type logs struct {
	mu      sync.Mutex
	records []slog.Record
	msgs    chan string
}

func newLogs() *logs { return &logs{msgs: make(chan string, 1000)} }

func (l *logs) Enabled(context.Context, slog.Level) bool { return true }
func (l *logs) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *logs) WithGroup(string) slog.Handler            { return l }
func (l *logs) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	l.records = append(l.records, r.Clone())
	l.mu.Unlock()
	select {
	case l.msgs <- r.Message:
	default:
	}
	return nil
}

// await waits for a record with message msg.
func (l *logs) await(t *testing.T, msg string) {
	t.Helper()
	deadline := time.After(wait)
	for {
		select {
		case m := <-l.msgs:
			if m == msg {
				return
			}
		case <-deadline:
			t.Fatalf("no log record %q", msg)
		}
	}
}

// find returns the attributes (flattened, group.key) of the records with message msg.
func (l *logs) find(msg string) []map[string]string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]string
	for _, r := range l.records {
		if r.Message != msg {
			continue
		}
		m := map[string]string{"level": r.Level.String()}
		r.Attrs(func(a slog.Attr) bool {
			flatten(m, "", a)
			return true
		})
		out = append(out, m)
	}
	return out
}

func flatten(m map[string]string, prefix string, a slog.Attr) {
	if a.Value.Kind() == slog.KindGroup {
		for _, g := range a.Value.Group() {
			flatten(m, prefix+a.Key+".", g)
		}
		return
	}
	m[prefix+a.Key] = a.Value.String()
}

// fixture is a scheduler on a fake clock with a registry, logs and a channel of recorded runs.
type fixture struct {
	s    *schedule.Scheduler
	clk  *fakeClock
	reg  *prometheus.Registry
	logs *logs
	runs chan schedule.Run
}

var t0 = time.Date(2026, 5, 4, 10, 0, 0, 0, time.UTC)

func newFixture(t *testing.T, cfg schedule.Config, jobs ...schedule.Job) *fixture {
	t.Helper()
	f := &fixture{clk: newFakeClock(t0), reg: prometheus.NewRegistry(), logs: newLogs(), runs: make(chan schedule.Run, 1000)}
	cfg.Clock, cfg.Registry, cfg.Logger = f.clk, f.reg, slog.New(f.logs)
	cfg.OnRun = func(r schedule.Run) { f.runs <- r }
	s, err := schedule.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	f.s = s
	for _, j := range jobs {
		if err := s.Add(j); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		if err := s.Stop(ctx); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	return f
}

func (f *fixture) start(t *testing.T) {
	t.Helper()
	if err := f.s.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
}

// nextRun waits for the next recorded run.
func (f *fixture) nextRun(t *testing.T) schedule.Run {
	t.Helper()
	select {
	case r := <-f.runs:
		return r
	case <-time.After(wait):
		t.Fatal("no run recorded")
		return schedule.Run{}
	}
}

func statuses(runs []schedule.Run) string {
	var s []string
	for _, r := range runs {
		s = append(s, string(r.Status))
	}
	return strings.Join(s, ",")
}

func recv[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(wait):
		t.Fatalf("timed out waiting for %s", what)
		var zero T
		return zero
	}
}

// metric returns the value of the series name{labels} gathered from reg (counter, gauge, or a
// histogram's sample count), and whether it exists.
func metric(t *testing.T, reg prometheus.Gatherer, name string, labels map[string]string) (float64, bool) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if want, ok := labels[lp.GetName()]; ok && want != lp.GetValue() {
					continue series
				}
			}
			switch mf.GetType() {
			case dto.MetricType_COUNTER:
				return m.GetCounter().GetValue(), true
			case dto.MetricType_GAUGE:
				return m.GetGauge().GetValue(), true
			case dto.MetricType_HISTOGRAM:
				return float64(m.GetHistogram().GetSampleCount()), true
			}
		}
	}
	return 0, false
}
