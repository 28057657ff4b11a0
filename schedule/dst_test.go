package schedule_test

import (
	"context"
	"strings"
	"testing"
	"time"
	_ "time/tzdata" // the zone database, whatever the machine has

	"github.com/robfig/cron/v3"

	"github.com/whocould/whocould/schedule"
)

// Europe/Berlin in 2026: on Sunday 29 March clocks jump from 02:00 CET to 03:00 CEST (01:00
// UTC), so 02:00-02:59 does not exist; on Sunday 25 October they fall back from 03:00 CEST to
// 02:00 CET (01:00 UTC), so 02:00-02:59 happens twice. The package doc states these results.
func berlin(t *testing.T) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

// activations lists sched's activations during the local calendar day of day, as
// "15:04 MST" (local) each.
func activations(sched schedule.Schedule, day time.Time) []string {
	from := time.Date(day.Year(), day.Month(), day.Day(), 0, 0, 0, 0, day.Location())
	to := from.AddDate(0, 0, 1)
	var out []string
	for t := sched.Next(from.Add(-time.Nanosecond)); !t.IsZero() && t.Before(to); t = sched.Next(t) {
		out = append(out, t.In(day.Location()).Format("15:04 MST"))
	}
	return out
}

func TestDSTParsedSchedules(t *testing.T) {
	loc := berlin(t)
	spring := time.Date(2026, 3, 29, 12, 0, 0, 0, loc)
	fall := time.Date(2026, 10, 25, 12, 0, 0, 0, loc)
	for _, tc := range []struct {
		spec         string
		spring, fall string // activations that local day, "|" separated
	}{
		// A daily job inside the hour that is skipped / repeated: no run in spring, two in fall.
		{"30 2 * * *", "", "02:30 CEST|02:30 CET"},
		{"0 2 * * *", "", "02:00 CEST|02:00 CET"},
		{"0 0 2 * * *", "", "02:00 CEST|02:00 CET"}, // with seconds: the same
		{"30 2 * * 0", "", "02:30 CEST|02:30 CET"},  // both days are Sundays: weekly jobs too
		{"0 2-3 * * *", "03:00 CEST", "02:00 CEST|02:00 CET|03:00 CET"},
		// Outside that hour: once, as on any other day.
		{"59 1 * * *", "01:59 CET", "01:59 CEST"},
		{"0 3 * * *", "03:00 CEST", "03:00 CET"},
		{"30 3 * * *", "03:30 CEST", "03:30 CET"},
		{"@daily", "00:00 CET", "00:00 CEST"},
		// Sub-daily fields step through real time: every existing instant once.
		{"*/30 1-3 * * *", "01:00 CET|01:30 CET|03:00 CEST|03:30 CEST",
			"01:00 CEST|01:30 CEST|02:00 CEST|02:30 CEST|02:00 CET|02:30 CET|03:00 CET|03:30 CET"},
	} {
		sched, err := schedule.ParseSpec("CRON_TZ=Europe/Berlin " + tc.spec)
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Join(activations(sched, spring), "|"); got != tc.spring {
			t.Errorf("%q on 2026-03-29: %q, want %q", tc.spec, got, tc.spring)
		}
		if got := strings.Join(activations(sched, fall), "|"); got != tc.fall {
			t.Errorf("%q on 2026-10-25: %q, want %q", tc.spec, got, tc.fall)
		}
	}

	// The skipped run is not made up later: the next one is the following day's.
	sched, _ := schedule.ParseSpec("CRON_TZ=Europe/Berlin 30 2 * * *")
	if prev := sched.Next(time.Date(2026, 3, 28, 0, 0, 0, 0, loc)); !prev.Equal(time.Date(2026, 3, 28, 2, 30, 0, 0, loc)) || prev.Format("MST") != "CET" {
		t.Errorf("before the spring gap: %s", prev)
	}
	if next := sched.Next(time.Date(2026, 3, 29, 0, 0, 0, 0, loc)); !next.Equal(time.Date(2026, 3, 30, 2, 30, 0, 0, loc)) {
		t.Errorf("after the spring gap: %s", next)
	}
	// Hourly jobs: 23 runs on the short day, 25 on the long one, exactly an hour apart;
	// @every counts real time and ignores the zone.
	for _, spec := range []string{"CRON_TZ=Europe/Berlin 0 * * * *", "CRON_TZ=Europe/Berlin @hourly", "@every 1h"} {
		sched, _ := schedule.ParseSpec(spec)
		for day, want := range map[time.Time]int{spring: 23, fall: 25} {
			got := activations(sched, day)
			if len(got) != want {
				t.Errorf("%q on %s: %d runs %v, want %d", spec, day.Format(time.DateOnly), len(got), got, want)
			}
			prev := sched.Next(day.Add(-12 * time.Hour))
			for range 30 {
				if next := sched.Next(prev); next.Sub(prev) != time.Hour {
					t.Errorf("%q: %s then %s", spec, prev, next)
				} else {
					prev = next
				}
			}
		}
	}
	// Zones without DST, and a spec without a zone read in UTC, are unaffected.
	sched, _ = schedule.ParseSpec("CRON_TZ=UTC 30 2 * * *")
	if got := strings.Join(activations(sched, fall.In(time.UTC)), "|"); got != "02:30 UTC" {
		t.Errorf("UTC: %q", got)
	}

	// ParseSpec is robfig/cron's parser with these options: the same answers.
	direct, err := cron.NewParser(cron.SecondOptional | cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor).
		Parse("CRON_TZ=Europe/Berlin 30 2 * * *")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(activations(direct, fall), "|"); got != "02:30 CEST|02:30 CET" {
		t.Errorf("robfig/cron directly on 2026-10-25: %q", got)
	}
	if got := activations(direct, spring); len(got) != 0 {
		t.Errorf("robfig/cron directly on 2026-03-29: %q", got)
	}
}

// The scheduler's own loop does what the parsed schedule says: runs twice on the fall-back
// day, not at all on the spring-forward day, whether the zone comes from CRON_TZ or from
// Config.Location.
func TestDSTScheduler(t *testing.T) {
	loc := berlin(t)
	run := func(context.Context) (schedule.Result, error) { return schedule.Result{}, nil }
	for _, tc := range []struct {
		name string
		cfg  schedule.Config
		spec string
	}{
		{"CRON_TZ", schedule.Config{}, "CRON_TZ=Europe/Berlin 30 2 * * *"},
		{"Location", schedule.Config{Location: loc}, "30 2 * * *"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, tc.cfg, schedule.Job{Name: "nightly", Spec: tc.spec, Run: run})
			f.clk.set(time.Date(2026, 10, 25, 0, 0, 0, 0, loc))
			f.start(t)
			for _, want := range []time.Time{
				time.Date(2026, 10, 25, 0, 30, 0, 0, time.UTC), // 02:30 CEST
				time.Date(2026, 10, 25, 1, 30, 0, 0, time.UTC), // 02:30 CET, an hour later
			} {
				f.clk.tick(t)
				if r := f.nextRun(t); !r.Scheduled.Equal(want) || r.Status != schedule.StatusOK {
					t.Fatalf("run %+v, want one scheduled at %s", r, want)
				}
			}
			if next := f.clk.waitArmed(t); !next.Equal(time.Date(2026, 10, 26, 1, 30, 0, 0, time.UTC)) {
				t.Errorf("after the fall-back day the next tick is %s", next.In(loc))
			}

			g := newFixture(t, tc.cfg, schedule.Job{Name: "nightly", Spec: tc.spec, Run: run})
			g.clk.set(time.Date(2026, 3, 29, 0, 0, 0, 0, loc))
			g.start(t)
			if next := g.clk.waitArmed(t); !next.Equal(time.Date(2026, 3, 30, 2, 30, 0, 0, loc)) {
				t.Errorf("on the spring-forward day the next tick is %s, want 2026-03-30 02:30 CEST", next.In(loc))
			}
			if st := g.s.Jobs()[0]; !st.Next.Equal(time.Date(2026, 3, 30, 2, 30, 0, 0, loc)) {
				t.Errorf("Jobs says next %s", st.Next)
			}
		})
	}
}
