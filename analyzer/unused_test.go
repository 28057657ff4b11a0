package analyzer_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/whocould/whocould/analyzer"
	"github.com/whocould/whocould/event"
	"github.com/whocould/whocould/finding"
	"github.com/whocould/whocould/store/embedded"
)

// ugRunRule applies evs (positions in order) to an embedded store and runs rule at now.
func ugRunRule(t *testing.T, rule string, cfg *analyzer.Config, now time.Time, evs []event.Event) []finding.Finding {
	t.Helper()
	st, err := embedded.Open(embedded.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	recs := make([]event.Record, len(evs))
	for i, e := range evs {
		if e.Source == "" {
			e.Source = "test"
		}
		if e.ID == "" {
			e.ID = fmt.Sprintf("e%d", i+1)
		}
		recs[i] = event.Record{Event: e, Position: uint64(i + 1), Recorded: now}
	}
	ctx := context.Background()
	if err := st.Apply(ctx, recs); err != nil {
		t.Fatal(err)
	}
	if cfg == nil {
		cfg = &analyzer.Config{}
	}
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	a := &analyzer.Analyzer{Store: st, Config: cfg}
	res, err := a.Run(ctx, analyzer.Options{Rules: []string{rule}, Now: now, Tenants: []string{event.DefaultTenant}})
	if err != nil {
		t.Fatal(err)
	}
	return res.Findings
}

func ugTime(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return t
}

// TestUnusedGrantWindowEdges pins the window [Now−Window, Now): a use at Now−Window counts, one at
// Now does not (the scenarios cannot say it: they run again a minute later).
func TestUnusedGrantWindowEdges(t *testing.T) {
	now := ugTime("2026-06-01T00:00:00Z")
	start := now.Add(-30 * 24 * time.Hour)
	granted := ugTime("2026-01-05T10:00:00Z")
	var evs []event.Event
	for _, c := range []struct {
		who string
		use time.Time
	}{{"user:alice", start}, {"user:bob", now}, {"user:carol", now.Add(-time.Microsecond)}, {"user:dave", start.Add(-time.Microsecond)}} {
		evs = append(evs,
			event.Event{Type: event.GrantAdded, Time: granted, Data: event.Data{Subject: c.who, Action: "db.read", Resource: "db:prod"}},
			event.Event{Type: event.Decision, Time: c.use, Data: event.Data{Principal: c.who, Action: "db.read", Resource: "db:prod/t", Effect: event.Allow}})
	}
	cfg := &analyzer.Config{UnusedGrant: analyzer.UnusedGrantConfig{Window: analyzer.Duration(30 * 24 * time.Hour)}}
	fs := ugRunRule(t, finding.UnusedGrant, cfg, now, evs)
	var got []string
	for _, f := range fs {
		got = append(got, f.Principal)
		if f.Kind != "unused" {
			t.Errorf("%s: kind %q, want unused", f.Principal, f.Kind)
		}
	}
	slices.Sort(got)
	if want := []string{"user:bob", "user:dave"}; !slices.Equal(got, want) {
		t.Fatalf("flagged %v, want %v", got, want)
	}
	for _, f := range fs {
		if f.Principal == "user:dave" {
			if !f.Since.Equal(start.Add(-time.Microsecond)) || f.Details["last_used"] != start.Add(-time.Microsecond).Format(time.RFC3339Nano) {
				t.Errorf("dave: since %v, last_used %v; want the use just before the window", f.Since, f.Details["last_used"])
			}
		}
	}
}

// TestUnusedGrantRightSize: a role used only in part gives a right-size finding naming the used
// and unused permissions and the smallest role that covers what was used.
func TestUnusedGrantRightSize(t *testing.T) {
	now := ugTime("2026-06-01T00:00:00Z")
	t0 := ugTime("2026-01-05T10:00:00Z")
	perm := func(role, action string) event.Event {
		return event.Event{Type: event.RolePermissionAdded, Time: t0, Data: event.Data{Role: role, Action: action}}
	}
	evs := []event.Event{
		perm("role:big", "db.read"), perm("role:big", "db.write"), perm("role:big", "db.drop"), perm("role:big", "db.grant"),
		perm("role:rw", "db.read"), perm("role:rw", "db.write"), perm("role:rw", "db.drop"),
		perm("role:rw2", "db.*"), perm("role:rw2", "metrics.read"), // two permissions, covers both: the smallest
		perm("role:ro", "db.read"),
		{ID: "g1", Type: event.GrantAdded, Time: t0, Data: event.Data{Subject: "group:eng", Role: "role:big", Resource: "db:prod"}},
		{Type: event.MembershipAdded, Time: t0, Data: event.Data{Group: "group:eng", Member: "user:alice"}},
		{Type: event.Decision, Time: ugTime("2026-05-01T00:00:00Z"), Data: event.Data{Principal: "user:alice", Action: "db.read", Resource: "db:prod/a", Effect: event.Allow}},
		{Type: event.Decision, Time: ugTime("2026-05-02T00:00:00Z"), Data: event.Data{Principal: "user:alice", Action: "db.write", Resource: "db:prod/b", Effect: event.Allow}},
	}
	fs := ugRunRule(t, finding.UnusedGrant, nil, now, evs)
	if len(fs) != 1 {
		t.Fatalf("%d findings, want 1: %+v", len(fs), fs)
	}
	f := fs[0]
	if f.Kind != "right-size" || f.Severity != finding.Low || f.Resource != "db:prod" || f.Principal != "" {
		t.Errorf("finding %+v", f)
	}
	if got := f.Details["suggested_role"]; got != "role:rw2" {
		t.Errorf("suggested_role %v, want role:rw2", got)
	}
	if got := fmt.Sprint(f.Details["used_permissions"], f.Details["unused_permissions"]); got != "[db.read db.write] [db.drop db.grant]" {
		t.Errorf("used, unused: %s", got)
	}
	if f.Details["principals"] != 1 || !f.Since.Equal(t0) {
		t.Errorf("principals %v, since %v", f.Details["principals"], f.Since)
	}
	if i := slices.IndexFunc(f.Evidence, func(e finding.Evidence) bool { return e.Event != nil }); i < 0 || f.Evidence[i].Event.ID != "g1" ||
		f.Evidence[i].Event.Type != string(event.GrantAdded) || f.Evidence[i].Event.Position != 11 {
		t.Errorf("no grant.added evidence: %+v", f.Evidence)
	}
}
