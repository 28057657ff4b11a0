package analyzer

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/whocould/whocould/event"
	"github.com/whocould/whocould/finding"
	"github.com/whocould/whocould/graph"
	"github.com/whocould/whocould/internal/synth"
)

// sodRecords makes log records of evs, in order, recorded at their event time.
func sodRecords(evs ...event.Event) []event.Record {
	recs := make([]event.Record, len(evs))
	for i, e := range evs {
		if e.ID == "" {
			e.ID = fmt.Sprintf("e%d", i+1)
		}
		if e.Source == "" {
			e.Source = "test"
		}
		recs[i] = event.Record{Event: e, Position: uint64(i + 1), Recorded: e.Time}
	}
	return recs
}

// TestSeparationOfDutiesRetroactive: a history analyzed with no pair finds nothing; the pair
// added to the config later finds the violation that ended before, resolved at its end, with its
// intervals; analyzing again changes nothing.
func TestSeparationOfDutiesRetroactive(t *testing.T) {
	day := time.Date(2026, 1, 5, 0, 0, 0, 0, time.UTC)
	h := func(n int) time.Time { return day.Add(time.Duration(n) * time.Hour) }
	recs := sodRecords(
		event.Event{Type: event.RolePermissionAdded, Time: h(0), Data: event.Data{Role: "role:payer", Action: "payment.create"}},
		event.Event{Type: event.MembershipAdded, Time: h(1), Data: event.Data{Group: "group:finance", Member: "user:ivan"}},
		event.Event{Type: event.GrantAdded, Time: h(1), Data: event.Data{Subject: "group:finance", Role: "role:payer", Resource: "fin:payments"}},
		event.Event{Type: event.GrantAdded, Time: h(10), Data: event.Data{Subject: "user:ivan", Action: "payment.approve", Resource: "fin:payments/eu"}},
		event.Event{Type: event.PrincipalDisabled, Time: h(12), Data: event.Data{Principal: "user:ivan"}},
		event.Event{Type: event.PrincipalEnabled, Time: h(14), Data: event.Data{Principal: "user:ivan"}},
		event.Event{Type: event.MembershipRemoved, Time: h(20), Data: event.Data{Group: "group:finance", Member: "user:ivan"}},
	)
	ctx := context.Background()
	st := memStore(t, recs)
	cfg := &Config{}
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	a := &Analyzer{Store: st, Config: cfg}
	now := day.AddDate(0, 1, 0)
	opts := Options{Rules: []string{finding.SeparationOfDuties}, Now: now}
	res, err := a.Run(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Findings) != 0 {
		t.Fatalf("no pair configured: got %d findings", len(res.Findings))
	}

	cfg.SeparationOfDuties = []SoDPair{{Name: "payments", Actions: []string{"payment.create", "payment.approve"}}}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	opts.Now = now.Add(24 * time.Hour)
	res, err = a.Run(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Findings) != 1 {
		t.Fatalf("pair added: got %d findings, want 1", len(res.Findings))
	}
	f := res.Findings[0]
	if f.Principal != "user:ivan" || f.Severity != finding.High || f.Status != finding.Resolved {
		t.Errorf("finding %s %s %s, want user:ivan high resolved", f.Principal, f.Severity, f.Status)
	}
	if !f.Since.Equal(h(10)) || f.Ended == nil || !f.Ended.Equal(h(20)) || f.ResolvedAt == nil || !f.ResolvedAt.Equal(h(20)) {
		t.Errorf("since %v, ended %v, resolved at %v; want %v, %v, %v", f.Since, f.Ended, f.ResolvedAt, h(10), h(20), h(20))
	}
	if f.Details["intervals"] != 2 || f.Details["total_hours"] != 8.0 || f.Details["ongoing"] != false {
		t.Errorf("details %v, want 2 intervals, 8 hours, not ongoing", f.Details)
	}
	var ivs []string
	for _, e := range f.Evidence {
		if e.Kind == "interval" {
			ivs = append(ivs, e.Time.Format("15:04")+"-"+e.Until.Format("15:04"))
		}
		if e.Kind == "path" && e.Path == nil {
			t.Errorf("path evidence without its path: %s", e.Text)
		}
	}
	if got := strings.Join(ivs, " "); got != "10:00-12:00 14:00-20:00" {
		t.Errorf("interval evidence %q, want 10:00-12:00 14:00-20:00", got)
	}

	again, err := a.Run(ctx, Options{Rules: opts.Rules, Now: opts.Now.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if len(again.Findings) != 1 || again.Findings[0].ID != f.ID || again.Findings[0].Status != finding.Resolved || again.Runs[0].New != 0 {
		t.Errorf("analyzed again: %+v", again.Runs)
	}
}

// TestSeparationOfDutiesPrune: the candidates are those who could ever reach both actions,
// whatever the times; a principal reaching only one is never looked at closely.
func TestSeparationOfDutiesPrune(t *testing.T) {
	day := time.Date(2026, 1, 5, 0, 0, 0, 0, time.UTC)
	g := graph.New()
	g.ApplyBatch(sodRecords(
		event.Event{Type: event.RolePermissionAdded, Time: day, Data: event.Data{Role: "role:a", Action: "x.a"}},
		event.Event{Type: event.RoleIncludeAdded, Time: day, Data: event.Data{Role: "role:top", Includes: "role:a"}},
		event.Event{Type: event.GrantAdded, Time: day, Data: event.Data{Subject: "group:g", Role: "role:top", Resource: "r:x"}},
		event.Event{Type: event.MembershipAdded, Time: day, Data: event.Data{Group: "group:g", Member: "group:h"}},
		event.Event{Type: event.MembershipAdded, Time: day, Data: event.Data{Group: "group:h", Member: "user:p"}},
		event.Event{Type: event.MembershipAdded, Time: day, Data: event.Data{Group: "group:h", Member: "user:q"}},
		// p: x.b later, after leaving; q never
		event.Event{Type: event.MembershipRemoved, Time: day.Add(time.Hour), Data: event.Data{Group: "group:h", Member: "user:p"}},
		event.Event{Type: event.GrantAdded, Time: day.Add(2 * time.Hour), Data: event.Data{Subject: "user:p", Action: "x.b", Resource: "r:x/y"}},
	))
	s := newSoDState(g, event.Micros(day.Add(24*time.Hour)))
	c := s.candidates("x.a", "x.b", "*")
	if len(c) != 1 || !c["user:p"] {
		t.Fatalf("candidates %v, want user:p", c)
	}
	if got := s.candidates("x.a", "x.b", "r:z"); len(got) != 0 {
		t.Errorf("scope r:z: candidates %v, want none", got)
	}
	if v := s.violations(s.principal("user:p"), "x.a", "x.b", "*"); len(v) != 0 {
		t.Errorf("user:p never held both at once: %d violations", len(v))
	}
}

// synthModel is a synthetic organisation at the benchmark's scale: 10k principals, 1k groups,
// 200k grants.
func synthModel(tb testing.TB) (*Model, *synth.Org) {
	tb.Helper()
	o := synth.Generate(synth.Options{Seed: 1, Principals: 10_000, Groups: 1_000, Grants: 200_000})
	recs := o.Records(1)
	g := graph.New()
	g.ApplyBatch(recs)
	return &Model{Tenant: event.DefaultTenant, Graph: g, Events: recs}, o
}

// TestSeparationOfDutiesScale runs the rule over the synthetic organisation with pairs that
// nearly every principal violates, and reports how long it took (it must stay well inside the
// whole analyzer pass's budget of 60 s for every rule).
func TestSeparationOfDutiesScale(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a 200k-grant organisation")
	}
	m, o := synthModel(t)
	cfg := &Config{SeparationOfDuties: []SoDPair{
		{Name: "write-and-drop", Actions: []string{"db.table.insert", "db.table.drop"}},
		{Name: "scoped", Actions: []string{"db.table.select", "db.table.truncate"}, Resource: "db:prod7"},
	}}
	cfg.Defaults()
	in := &Input{Tenant: m.Tenant, Now: o.Start.Add(o.Span), Config: cfg, Model: m}
	start := time.Now()
	fs, err := checkSeparationOfDuties(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	t.Logf("separation-of-duties over 10k principals: %d findings in %v", len(fs), took)
	if len(fs) == 0 {
		t.Error("no findings on an organisation where nearly everyone violates")
	}
	if took > 20*time.Second {
		t.Errorf("took %v: too slow for the analyzer pass", took)
	}
}
