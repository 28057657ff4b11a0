package analyzer

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/whocould/whocould/event"
	"github.com/whocould/whocould/finding"
	"github.com/whocould/whocould/graph"
)

// TestLeaverLifecycle follows one leaver across runs: the still-holds finding opened while the
// disabled principal kept its grant is the finding resolved, as time-to-revoke, at the moment the
// grant was removed three days on; the decisions-after finding stays open after the principal is
// enabled again.
func TestLeaverLifecycle(t *testing.T) {
	ctx := context.Background()
	day := func(d, h int) time.Time { return time.Date(2026, 1, d, h, 0, 0, 0, time.UTC) }
	var recs []event.Record
	add := func(typ event.Type, at time.Time, d event.Data) {
		recs = append(recs, event.Record{Position: uint64(len(recs) + 1), Recorded: at,
			Event: event.Event{ID: fmt.Sprint("e", len(recs)), Source: "test", Type: typ, Time: at, Data: d}})
	}
	add(event.GrantAdded, day(1, 9), event.Data{Subject: "user:alice", Action: "db.read", Resource: "db:prod"})
	add(event.PrincipalDisabled, day(1, 10), event.Data{Principal: "user:alice"})
	add(event.Decision, day(1, 11), event.Data{Principal: "user:alice", Action: "db.read", Resource: "db:prod", Effect: event.Allow})

	st := memStore(t, recs)
	a := &Analyzer{Store: st}
	run := func(now time.Time) map[string]finding.Finding {
		t.Helper()
		res, err := a.Run(ctx, Options{Rules: []string{finding.AccessAfterDeprovisioning}, Now: now})
		if err != nil {
			t.Fatal(err)
		}
		byKind := map[string]finding.Finding{}
		for _, f := range res.Findings {
			byKind[f.Kind] = f
		}
		return byKind
	}
	first := run(day(2, 0))
	held, ok := first["still-holds"]
	if !ok || held.Status != finding.Open || len(first) != 2 {
		t.Fatalf("first run: %+v, want still-holds and decisions-after open", first)
	}
	after := first["decisions-after"]

	n := len(recs)
	add(event.GrantRemoved, day(4, 10), event.Data{Subject: "user:alice", Action: "db.read", Resource: "db:prod"})
	add(event.PrincipalEnabled, day(5, 10), event.Data{Principal: "user:alice"})
	if err := st.Apply(ctx, recs[n:]); err != nil {
		t.Fatal(err)
	}
	second := run(day(6, 0))
	late, ok := second["time-to-revoke"]
	if !ok || late.ID != held.ID {
		t.Fatalf("second run: %+v, want the still-holds finding %s to have become time-to-revoke", second, held.ID)
	}
	if late.Status != finding.Resolved || late.ResolvedAt == nil || !late.ResolvedAt.Equal(day(4, 10)) || late.Severity != finding.Medium {
		t.Errorf("time-to-revoke: status %s resolved at %v severity %s, want resolved at the removal, medium", late.Status, late.ResolvedAt, late.Severity)
	}
	if got := late.Details["hours_to_revoke"]; got != 72.0 {
		t.Errorf("hours_to_revoke = %v, want 72", got)
	}
	if again := second["decisions-after"]; again.ID != after.ID || again.Status != finding.Open {
		t.Errorf("decisions-after: %s %s, want %s still open", again.ID, again.Status, after.ID)
	}
	if _, ok := second["still-holds"]; ok {
		t.Errorf("still-holds found after the grant was removed")
	}
}

func TestLeaverStretches(t *testing.T) {
	got := leaverStretches([]graph.StatusSpan{{From: 0, To: 10, Status: "active"}, {From: 10, To: 20, Status: "disabled"},
		{From: 20, To: 30, Status: "deleted"}, {From: 30, To: 40, Status: "active"}, {From: 40, To: graph.Forever, Status: "disabled"}})
	if len(got) != 2 || got[0].from != 10 || got[0].to != 30 || len(got[0].spans) != 2 || got[1].from != 40 {
		t.Fatalf("stretches %+v", got)
	}
	if s := got[0].statusAt(25); s != "deleted" {
		t.Errorf("status at 25: %s", s)
	}
}
