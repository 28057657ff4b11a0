package analyzer_test

import (
	"context"
	"testing"
	"time"

	"github.com/whocould/whocould/analyzer"
	"github.com/whocould/whocould/event"
	"github.com/whocould/whocould/finding"
	"github.com/whocould/whocould/store"
)

// TestAutoResolution: on both stores, a drift finding opens, is acknowledged, stays so while the
// extra grant holds, is resolved (at the run that sees it gone) once the grant is removed, and
// opens again, under the same id, when the grant comes back. A suppression that has run out
// opens the finding again.
func TestAutoResolution(t *testing.T) {
	t0 := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	rec := func(pos int, typ event.Type, at time.Time, d event.Data) event.Record {
		return event.Record{Position: uint64(pos), Recorded: at, Event: event.Event{ID: string(rune('a' + pos)), Source: "test", Type: typ, Time: at, Data: d}}
	}
	extra := event.Data{Subject: "user:eve", Role: "role:admin", Resource: "db:prod"}
	history := []event.Record{
		rec(1, event.RolePermissionAdded, t0, event.Data{Role: "role:admin", Action: "*"}),
		rec(2, event.GrantAdded, t0.Add(time.Hour), extra),
		rec(3, event.GrantRemoved, t0.Add(48*time.Hour), extra),
		rec(4, event.GrantAdded, t0.Add(96*time.Hour), extra),
	}
	cfg := &analyzer.Config{}
	cfg.Defaults()
	cfg.SetBaseline(&analyzer.Baseline{Roles: map[string]analyzer.BaselineRole{"role:admin": {Permissions: []string{"*"}}}})
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			ctx := context.Background()
			st := b.open(t, history[:2])
			svc := &analyzer.Service{Analyzer: &analyzer.Analyzer{Store: st, Config: cfg}}
			run := func(now time.Time) finding.Finding {
				t.Helper()
				svc.Now = func() time.Time { return now }
				if _, err := svc.Analyze(ctx, analyzer.Options{Rules: []string{finding.Drift}, Tenants: []string{"default"}}); err != nil {
					t.Fatal(err)
				}
				fs, err := svc.List(ctx, analyzer.Filter{Rules: []string{finding.Drift}})
				if err != nil || len(fs) != 1 {
					t.Fatalf("findings: %v %+v", err, fs)
				}
				return fs[0]
			}
			f := run(t0.Add(2 * time.Hour))
			if f.Status != finding.Open || f.Kind != "extra-grant" {
				t.Fatalf("first run: %s %s", f.Status, f.Kind)
			}
			if _, err := svc.Acknowledge(ctx, "", f.ID, "user:sec", "checking"); err != nil {
				t.Fatal(err)
			}
			if g := run(t0.Add(3 * time.Hour)); g.Status != finding.Acknowledged || g.ID != f.ID {
				t.Fatalf("acknowledged, still holds: %s", g.Status)
			}
			apply(t, st, history[2:3])
			resolvedAt := t0.Add(50 * time.Hour)
			if g := run(resolvedAt); g.Status != finding.Resolved || g.ResolvedAt == nil || !g.ResolvedAt.Equal(resolvedAt) {
				t.Fatalf("grant removed: %s at %v", g.Status, g.ResolvedAt)
			}
			apply(t, st, history[3:])
			g := run(t0.Add(97 * time.Hour))
			if g.Status != finding.Open || g.ID != f.ID {
				t.Fatalf("grant back: %s %s", g.ID, g.Status)
			}
			until := t0.Add(120 * time.Hour)
			if _, err := svc.Suppress(ctx, "", f.ID, "user:sec", "accepted until the migration", &until); err != nil {
				t.Fatal(err)
			}
			if g := run(t0.Add(119 * time.Hour)); g.Status != finding.Suppressed {
				t.Fatalf("suppressed: %s", g.Status)
			}
			if g := run(until); g.Status != finding.Open {
				t.Fatalf("suppression over: %s", g.Status)
			}
		})
	}
}

// apply applies recs to st and checkpoints them.
func apply(t *testing.T, st analyzer.Store, recs []event.Record) {
	t.Helper()
	w := st.(store.Writer)
	if err := w.Apply(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
	if err := w.Checkpoint(context.Background()); err != nil {
		t.Fatal(err)
	}
}
