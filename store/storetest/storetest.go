// Package storetest is the conformance suite of store.Store: every backend runs it, from a
// short test file, and must pass all of it except what it lists in Capabilities, each with the
// reason. A new backend is thus fully covered by default.
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) store.Store { return openEmpty(t) }, storetest.Capabilities{
//			Reopen: func(t *testing.T, st store.Store) store.Store { return openAgain(t, st) },
//		})
//	}
//
// The permission map itself (who-could, what-could, explain, history) is pinned down by the
// scenarios and the differential test; the suite checks the store's own side of it: that a
// backend answers, and that replay changes nothing.
package storetest

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/whocould/whocould/access"
	"github.com/whocould/whocould/event"
	"github.com/whocould/whocould/store"
)

// Capabilities says how the suite reopens a backend's store, and lists what the backend cannot
// do yet. With Reopen set and nothing else: everything.
type Capabilities struct {
	// NoPermissionMap, when set, is why the backend does not answer WhoCould, WhatCould,
	// Explain and History yet. The suite then checks that each of them returns an error (an
	// empty answer would read as "nobody could"), and skips the rest with this reason.
	NoPermissionMap string
	// Reopen opens again the storage a store of open was opened on (the same directory, the
	// same database), after the suite closed that store: what a process restarted on it finds.
	// The suite fails without it, unless NoReopen says why the backend cannot reopen.
	Reopen func(t *testing.T, closed store.Store) store.Store
	// NoReopen, when set, is why the backend has no Reopen: the tests of what a reopened store
	// answers are skipped with this reason.
	NoReopen string
}

// Run runs the suite. open returns a new, empty store for one test; the suite closes it when
// the test ends (cleanups open registers run after that).
func Run(t *testing.T, open func(t *testing.T) store.Store, caps Capabilities) {
	s := &suite{caps: caps, closed: map[store.Store]bool{}}
	s.open = func(t *testing.T) store.Store {
		t.Helper()
		st := open(t)
		s.closeAtEnd(t, st)
		return st
	}
	t.Run("Empty", s.testEmpty)
	t.Run("Decisions", s.testDecisions)
	t.Run("DecisionsStopEarly", s.testDecisionsStopEarly)
	t.Run("Usage", s.testUsage)
	t.Run("UsageBounds", s.testUsageBounds)
	t.Run("Events", s.testEvents)
	t.Run("EventsStopEarly", s.testEventsStopEarly)
	t.Run("EventsAfterCrash", s.testEventsAfterCrash)
	t.Run("Findings", s.testFindings)
	t.Run("FindingsReopened", s.testFindingsReopened)
	t.Run("Approvals", s.testApprovals)
	t.Run("Tenants", s.testTenants)
	t.Run("Positions", s.testPositions)
	t.Run("Replay", s.testReplay)
	t.Run("PermissionMap", s.testPermissionMap)
}

type suite struct {
	open func(t *testing.T) store.Store
	caps Capabilities

	mu     sync.Mutex
	closed map[store.Store]bool // closed by the suite before the test ended
}

// closeAtEnd closes st when the test ends, unless the suite closed it before.
func (s *suite) closeAtEnd(t *testing.T, st store.Store) {
	t.Cleanup(func() {
		s.mu.Lock()
		closed := s.closed[st]
		delete(s.closed, st)
		s.mu.Unlock()
		if closed {
			return
		}
		if err := st.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
}

// reopen closes st and opens its storage again: after a checkpoint, or, with crash, as a
// process killed after its last Apply finds it (what was applied since the last checkpoint may
// or may not be there; Position says up to where it is).
func (s *suite) reopen(t *testing.T, st store.Store, crash bool) store.Store {
	t.Helper()
	if s.caps.Reopen == nil {
		if s.caps.NoReopen != "" {
			t.Skip("reopen: " + s.caps.NoReopen)
		}
		t.Fatal("the backend gives no Capabilities.Reopen, and no NoReopen saying why it cannot")
	}
	if !crash {
		checkpoint(t, st)
	}
	if err := st.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	s.mu.Lock()
	s.closed[st] = true
	s.mu.Unlock()
	again := s.caps.Reopen(t, st)
	s.closeAtEnd(t, again)
	return again
}

// The history every test draws from.

var base = time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)

func at(d time.Duration) time.Time { return base.Add(d) }

// history builds records in delivery order: positions 1, 2, ...; recorded one second apart.
type history struct{ recs []event.Record }

func (h *history) add(typ event.Type, tm time.Time, d event.Data) *history {
	n := len(h.recs) + 1
	h.recs = append(h.recs, event.Record{
		Event:    event.Event{ID: fmt.Sprintf("e%d", n), Source: "storetest", Type: typ, Time: tm, Data: d},
		Position: uint64(n),
		Recorded: base.Add(time.Duration(n) * time.Second),
	})
	return h
}

func (h *history) decision(tenant, principal, action, resource, effect string, tm time.Time) *history {
	return h.add(event.Decision, tm, event.Data{Tenant: tenant, Principal: principal, Action: action, Resource: resource, Effect: effect})
}

// decisions is a history of decisions: two tenants, delivered out of event-time order, ties in
// event time, every optional field, times far in the past and the future, and a few other
// events in between.
func decisions() *history {
	h := &history{}
	h.add(event.Decision, at(10*time.Hour), event.Data{Principal: "user:a", Action: "db.read", Resource: "db:x", Effect: "allow",
		Reason: "rule 7", Policy: "policy.rego", Request: "req-77"})
	h.decision("", "user:a", "db.read", "db:x", "allow", at(9*time.Hour))
	h.decision("", "user:a", "db.drop", "db:x", "deny", at(11*time.Hour))
	h.decision("", "user:b", "db.read", "db:y", "allow", at(10*time.Hour)) // same instant as the first
	h.decision("", "user:b", "db.read", "db:x", "deny", at(10*time.Hour+time.Microsecond))
	h.add(event.GrantAdded, at(8*time.Hour), event.Data{Subject: "user:a", Action: "db.read", Resource: "db:x"})
	h.decision("acme", "user:a", "db.read", "db:x", "allow", at(10*time.Hour))
	h.decision("default", "user:c", "db.read", "db:x", "allow", at(8*time.Hour)) // the default tenant, named
	h.decision("", "user:a", "db.read", "db:x", "allow", at(40*24*time.Hour))    // another month
	h.decision("", "user:a", "db.read", "db:y", "allow", time.Date(1970, 1, 1, 0, 0, 0, 1000, time.UTC))
	h.decision("", "user:a", "db.read", "db:y", "allow", time.Date(2199, 12, 31, 23, 59, 59, 999999000, time.UTC))
	h.decision("acme", "user:b", "db.write", "db:z", "deny", at(12*time.Hour))
	h.add(event.ApprovalRequested, at(7*time.Hour), event.Data{Request: "r1", Requester: "user:a"})
	h.decision("", "user:a", "db.read", "db:x", "allow", at(10*time.Hour)) // a third at 10:00
	return h
}

func tenantOf(t string) string {
	if t == "" {
		return event.DefaultTenant
	}
	return t
}

// uk is a store.UseKey.
func uk(principal, action, resource string) store.UseKey {
	return store.UseKey{Principal: principal, Action: action, Resource: resource}
}

// keyed reports whether decision d is of one of q's keys (true when it names none).
func keyed(q store.DecisionQuery, d event.Data) bool {
	return len(q.Keys) == 0 || slices.Contains(q.Keys, store.UseKey{Principal: d.Principal, Action: d.Action, Resource: d.Resource})
}

// wantDecisions is what Decisions must answer for q, by brute force.
func wantDecisions(recs []event.Record, q store.DecisionQuery) []store.Decision {
	out := []store.Decision{}
	for _, r := range recs {
		d := r.Data
		if r.Type != event.Decision || r.TenantOrDefault() != tenantOf(q.Tenant) {
			continue
		}
		tm := event.FromMicros(event.Micros(r.Time))
		if (q.Principal != "" && d.Principal != q.Principal) || (len(q.Principals) > 0 && !slices.Contains(q.Principals, d.Principal)) ||
			!keyed(q, d) || (q.Action != "" && d.Action != q.Action) ||
			(q.Resource != "" && d.Resource != q.Resource) || (q.Effect != "" && d.Effect != q.Effect) ||
			(!q.From.IsZero() && tm.Before(q.From)) || (!q.To.IsZero() && !tm.Before(q.To)) {
			continue
		}
		out = append(out, store.Decision{Tenant: r.TenantOrDefault(), Principal: d.Principal, Action: d.Action, Resource: d.Resource,
			Effect: d.Effect, Time: tm, Reason: d.Reason, Policy: d.Policy, Request: d.Request, Source: r.Source, ID: r.ID,
			Position: r.Position})
	}
	slices.SortStableFunc(out, func(a, b store.Decision) int { return a.Time.Compare(b.Time) })
	return out
}

// wantUsage is what Usage must answer for q, by brute force: the decisions of q's effect (allow
// when it names none) within [q.From, q.To).
func wantUsage(recs []event.Record, q store.DecisionQuery) []store.Use {
	type key struct{ p, a, r string }
	effect := cmp.Or(q.Effect, event.Allow)
	m := map[key]*store.Use{}
	for _, r := range recs {
		d := r.Data
		tm := event.FromMicros(event.Micros(r.Time))
		if r.Type != event.Decision || d.Effect != effect || r.TenantOrDefault() != tenantOf(q.Tenant) ||
			(q.Principal != "" && d.Principal != q.Principal) || (len(q.Principals) > 0 && !slices.Contains(q.Principals, d.Principal)) ||
			!keyed(q, d) || (q.Action != "" && d.Action != q.Action) || (q.Resource != "" && d.Resource != q.Resource) ||
			(!q.From.IsZero() && tm.Before(q.From)) || (!q.To.IsZero() && !tm.Before(q.To)) {
			continue
		}
		k := key{d.Principal, d.Action, d.Resource}
		if u := m[k]; u != nil {
			u.Count++
			if tm.Before(u.First) {
				u.First = tm
			}
			if tm.After(u.Last) {
				u.Last = tm
			}
		} else {
			m[k] = &store.Use{Principal: k.p, Action: k.a, Resource: k.r, First: tm, Last: tm, Count: 1}
		}
	}
	out := []store.Use{}
	for _, u := range m {
		out = append(out, *u)
	}
	slices.SortFunc(out, func(a, b store.Use) int {
		return cmp.Or(cmp.Compare(a.Principal, b.Principal), cmp.Compare(a.Action, b.Action), cmp.Compare(a.Resource, b.Resource))
	})
	return out
}

func apply(t *testing.T, s store.Writer, recs []event.Record) {
	t.Helper()
	if err := s.Apply(context.Background(), recs); err != nil {
		t.Fatalf("apply: %v", err)
	}
}

func checkpoint(t *testing.T, s store.Writer) {
	t.Helper()
	if err := s.Checkpoint(context.Background()); err != nil {
		t.Fatalf("checkpoint: %v", err)
	}
}

func getDecisions(t *testing.T, s store.Reader, q store.DecisionQuery) []store.Decision {
	t.Helper()
	out := []store.Decision{}
	if err := s.Decisions(context.Background(), q, func(d store.Decision) error { out = append(out, d); return nil }); err != nil {
		t.Fatalf("decisions %+v: %v", q, err)
	}
	return out
}

func getUsage(t *testing.T, s store.Reader, q store.DecisionQuery) []store.Use {
	t.Helper()
	us := []store.Use{}
	if err := s.Usage(context.Background(), q, func(u store.Use) error { us = append(us, u); return nil }); err != nil {
		t.Fatalf("usage %+v: %v", q, err)
	}
	return us
}

func position(t *testing.T, s store.Reader) uint64 {
	t.Helper()
	p, err := s.Position(context.Background())
	if err != nil {
		t.Fatalf("position: %v", err)
	}
	return p
}

// same fails the test when got and want differ as JSON, showing both.
func same(t *testing.T, what string, got, want any) {
	t.Helper()
	g, _ := json.MarshalIndent(got, "", "  ")
	w, _ := json.MarshalIndent(want, "", "  ")
	if string(g) != string(w) {
		t.Errorf("%s:\ngot  %s\nwant %s", what, g, w)
	}
}

func (s *suite) testEmpty(t *testing.T) {
	st := s.open(t)
	ctx := context.Background()
	if p := position(t, st); p != 0 {
		t.Errorf("position of an empty store: %d", p)
	}
	if ts, err := st.Tenants(ctx); err != nil || len(ts) != 0 {
		t.Errorf("tenants of an empty store: %v, %v", ts, err)
	}
	if ds := getDecisions(t, st, store.DecisionQuery{}); len(ds) != 0 {
		t.Errorf("decisions of an empty store: %v", ds)
	}
	if us := getUsage(t, st, store.DecisionQuery{}); len(us) != 0 {
		t.Errorf("usage of an empty store: %v", us)
	}
	if _, err := st.Approval(ctx, "", "r1"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("approval of an empty store: %v, want ErrNotFound", err)
	}
	checkpoint(t, st) // nothing to checkpoint is fine
	apply(t, st, nil)
}

func (s *suite) testDecisions(t *testing.T) {
	st := s.open(t)
	h := decisions()
	apply(t, st, h.recs)

	// A few answers written out, so that the suite and a store cannot agree on a wrong rule.
	all := getDecisions(t, st, store.DecisionQuery{})
	var ids []string
	for _, d := range all {
		ids = append(ids, d.ID)
	}
	if got, want := strings.Join(ids, " "), "e10 e8 e2 e1 e4 e14 e5 e3 e9 e11"; got != want {
		t.Errorf("decisions of the default tenant in event-time order (ties in log order): %s, want %s", got, want)
	}
	if len(all) > 3 {
		same(t, "every field of a decision", all[3], store.Decision{Tenant: "default", Principal: "user:a", Action: "db.read",
			Resource: "db:x", Effect: "allow", Time: at(10 * time.Hour), Reason: "rule 7", Policy: "policy.rego",
			Request: "req-77", Source: "storetest", ID: "e1", Position: 1})
	}

	tenAM, elevenAM := at(10*time.Hour), at(11*time.Hour)
	far := time.Date(2199, 12, 31, 23, 59, 59, 999999000, time.UTC)
	queries := []store.DecisionQuery{
		{},
		{Tenant: "default"},
		{Tenant: "acme"},
		{Tenant: "nobody"},
		{Principal: "user:a"},
		{Principal: "user:nobody"},
		{Action: "db.read"},
		{Resource: "db:y"},
		{Effect: "allow"},
		{Effect: "deny"},
		{Effect: "maybe"},
		{From: tenAM},               // inclusive
		{To: tenAM},                 // exclusive
		{From: tenAM, To: elevenAM}, // [10:00, 11:00)
		{From: tenAM, To: tenAM.Add(time.Microsecond)}, // one microsecond
		{From: tenAM.Add(time.Microsecond), To: elevenAM.Add(time.Microsecond)},
		{From: at(24 * time.Hour)}, // later days and months
		{From: far},                // the last microsecond event times reach
		{To: time.Date(1970, 1, 1, 0, 0, 0, 2000, time.UTC)},
		{From: time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC), To: time.Date(2199, 1, 1, 0, 0, 0, 0, time.UTC)},
		{Tenant: "acme", Principal: "user:b", Action: "db.write", Resource: "db:z", Effect: "deny", From: base, To: at(24 * time.Hour)},
		{Principal: "user:a", Action: "db.read", Resource: "db:x", Effect: "allow", From: tenAM, To: at(41 * 24 * time.Hour)},
		{Principal: "user:b", Resource: "db:x"},
		{Principals: []string{"user:a", "user:b"}}, // a set of principals, merged in event-time order
		{Principals: []string{"user:b", "user:c", "user:nobody"}},
		{Principals: []string{"user:nobody"}},
		{Principals: []string{"user:a", "user:b"}, Effect: "allow", From: tenAM, To: elevenAM},
		{Principal: "user:a", Principals: []string{"user:a", "user:c"}}, // both: user:a
		{Principal: "user:b", Principals: []string{"user:a", "user:c"}}, // both: none
		{Tenant: "acme", Principals: []string{"user:a", "user:b"}},
		// Keys: of several principals, one never seen, with other filters.
		{Keys: []store.UseKey{uk("user:a", "db.read", "db:x"), uk("user:b", "db.read", "db:y"), uk("user:nobody", "db.read", "db:x")}},
		{Keys: []store.UseKey{uk("user:a", "db.read", "db:x"), uk("user:b", "db.read", "db:y")}, Effect: "allow", From: tenAM},
		{Keys: []store.UseKey{uk("user:a", "db.read", "db:x"), uk("user:b", "db.read", "db:y")}, Principals: []string{"user:b", "user:c"}},
		{Keys: []store.UseKey{uk("user:a", "db.read", "db:x")}, Principal: "user:b"},
		{Keys: []store.UseKey{uk("user:a", "db.read", "db:y"), uk("user:a", "db.read", "db:x")}, Resource: "db:y"},
		{Keys: []store.UseKey{uk("user:a", "db.drop", "db:x")}},
		{Keys: []store.UseKey{uk("user:b", "db.write", "db:z")}, Tenant: "acme"},
	}
	for _, q := range queries {
		same(t, fmt.Sprintf("decisions %+v", q), getDecisions(t, st, q), wantDecisions(h.recs, q))
	}
}

func (s *suite) testDecisionsStopEarly(t *testing.T) {
	st := s.open(t)
	h := &history{}
	for i := range 5000 {
		h.decision("", "user:a", "db.read", "db:x", "allow", at(time.Duration(i)*time.Second))
	}
	apply(t, st, h.recs)
	stop := errors.New("enough")
	calls := 0
	err := st.Decisions(context.Background(), store.DecisionQuery{}, func(store.Decision) error {
		calls++
		if calls == 3 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || calls != 3 {
		t.Errorf("fn stopping at the third decision: %d calls, %v; want 3 calls and its error", calls, err)
	}
	// The store still answers.
	if n := len(getDecisions(t, st, store.DecisionQuery{})); n != 5000 {
		t.Errorf("decisions after stopping early: %d, want 5000", n)
	}
}

func (s *suite) testUsage(t *testing.T) {
	st := s.open(t)
	h := decisions()
	apply(t, st, h.recs)
	all := getUsage(t, st, store.DecisionQuery{})
	same(t, "usage of the default tenant, allowed decisions only", all, []store.Use{
		{Principal: "user:a", Action: "db.read", Resource: "db:x", First: at(9 * time.Hour), Last: at(40 * 24 * time.Hour), Count: 4},
		{Principal: "user:a", Action: "db.read", Resource: "db:y", First: time.Date(1970, 1, 1, 0, 0, 0, 1000, time.UTC),
			Last: time.Date(2199, 12, 31, 23, 59, 59, 999999000, time.UTC), Count: 2},
		{Principal: "user:b", Action: "db.read", Resource: "db:y", First: at(10 * time.Hour), Last: at(10 * time.Hour), Count: 1},
		{Principal: "user:c", Action: "db.read", Resource: "db:x", First: at(8 * time.Hour), Last: at(8 * time.Hour), Count: 1},
	})
	for _, q := range []store.DecisionQuery{
		{}, {Tenant: "default"}, {Tenant: "acme"}, {Tenant: "nobody"},
		{Principal: "user:a"}, {Principal: "user:b"}, {Action: "db.read"}, {Action: "db.drop"}, {Resource: "db:y"},
		{Principal: "user:a", Action: "db.read", Resource: "db:x"},
		{Tenant: "acme", Principal: "user:b"},
		{Principals: []string{"user:a", "user:c"}}, {Principals: []string{"user:nobody"}},
		{Principal: "user:b", Principals: []string{"user:a"}},
		{Keys: []store.UseKey{uk("user:a", "db.read", "db:x"), uk("user:b", "db.read", "db:y"), uk("user:nobody", "db.read", "db:x")}},
		{Keys: []store.UseKey{uk("user:a", "db.read", "db:x"), uk("user:b", "db.read", "db:y")}, Principals: []string{"user:b"}},
		{Keys: []store.UseKey{uk("user:a", "db.read", "db:y")}, From: base},
		{Keys: []store.UseKey{uk("user:b", "db.write", "db:z")}, Effect: event.Deny, Tenant: "acme"},
		{Keys: []store.UseKey{uk("user:a", "db.read", "db:x")}, Principal: "user:c"},
		{Keys: []store.UseKey{uk("user:a", "db.read", "db:x")}, Effect: event.Deny}, // not user:a's denied db.drop on db:x
	} {
		same(t, fmt.Sprintf("usage %+v", q), getUsage(t, st, q), wantUsage(h.recs, q))
	}
	same(t, "usage of allowed decisions, named", getUsage(t, st, store.DecisionQuery{Effect: event.Allow}), all)
	// fn stopping: Usage stops, and returns its error, on every path.
	stop := errors.New("enough")
	for _, q := range []store.DecisionQuery{{}, {Principal: "user:a"}, {From: base}, {Effect: event.Deny}} {
		calls := 0
		err := st.Usage(context.Background(), q, func(store.Use) error {
			calls++
			return stop
		})
		if !errors.Is(err, stop) || calls != 1 {
			t.Errorf("usage %+v with fn stopping at the first use: %d calls, %v; want 1 call and its error", q, calls, err)
		}
	}
}

// Usage honours the effect and the bounds of event time, [From, To), like Decisions.
func (s *suite) testUsageBounds(t *testing.T) {
	st := s.open(t)
	h := decisions()
	apply(t, st, h.recs)

	// A few answers written out, so that the suite and a store cannot agree on a wrong rule.
	same(t, "usage of denied decisions", getUsage(t, st, store.DecisionQuery{Effect: event.Deny}), []store.Use{
		{Principal: "user:a", Action: "db.drop", Resource: "db:x", First: at(11 * time.Hour), Last: at(11 * time.Hour), Count: 1},
		{Principal: "user:b", Action: "db.read", Resource: "db:x", First: at(10*time.Hour + time.Microsecond),
			Last: at(10*time.Hour + time.Microsecond), Count: 1},
	})
	same(t, "usage within [10:00, 11:00)", getUsage(t, st, store.DecisionQuery{From: at(10 * time.Hour), To: at(11 * time.Hour)}), []store.Use{
		{Principal: "user:a", Action: "db.read", Resource: "db:x", First: at(10 * time.Hour), Last: at(10 * time.Hour), Count: 2},
		{Principal: "user:b", Action: "db.read", Resource: "db:y", First: at(10 * time.Hour), Last: at(10 * time.Hour), Count: 1},
	})

	tenAM, elevenAM := at(10*time.Hour), at(11*time.Hour)
	far := time.Date(2199, 12, 31, 23, 59, 59, 999999000, time.UTC)
	for _, q := range []store.DecisionQuery{
		{Effect: event.Deny},
		{Effect: event.Allow},
		{Effect: "maybe"},
		{Tenant: "acme", Effect: event.Deny},
		{From: tenAM},                                  // inclusive
		{To: tenAM},                                    // exclusive
		{From: tenAM, To: elevenAM},                    // [10:00, 11:00)
		{From: tenAM, To: tenAM},                       // empty
		{From: tenAM, To: tenAM.Add(time.Microsecond)}, // one microsecond
		{From: tenAM.Add(time.Microsecond), To: elevenAM.Add(time.Microsecond)},
		{Effect: event.Deny, From: tenAM, To: elevenAM},                             // both: 10:00:00.000001 only
		{Effect: event.Deny, From: tenAM.Add(time.Microsecond), To: elevenAM},       // From on the decision
		{Effect: event.Deny, From: tenAM, To: tenAM.Add(time.Microsecond)},          // To on the decision
		{Effect: event.Deny, From: elevenAM, To: elevenAM.Add(time.Microsecond)},    // the one at 11:00
		{Effect: event.Allow, From: at(9 * time.Hour), To: at(41 * 24 * time.Hour)}, // across months
		{Principal: "user:a", From: at(24 * time.Hour)},                             // later days and months
		{From: far}, // the last microsecond event times reach
		{To: time.Date(1970, 1, 1, 0, 0, 0, 2000, time.UTC)},                               // the first
		{From: time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC), To: far.Add(time.Microsecond)}, // beyond the partitions
		{Principal: "user:a", Action: "db.read", Resource: "db:x", From: tenAM},
		{Tenant: "acme", From: base, To: at(24 * time.Hour)},
		{Tenant: "nobody", Effect: event.Deny, From: base},
		{Principals: []string{"user:a", "user:b"}, Effect: event.Deny, From: tenAM},
		{Principals: []string{"user:b", "user:c"}, To: at(24 * time.Hour)},
	} {
		same(t, fmt.Sprintf("usage %+v", q), getUsage(t, st, q), wantUsage(h.recs, q))
	}
}

func (s *suite) testApprovals(t *testing.T) {
	st := s.open(t)
	ctx := context.Background()
	change := json.RawMessage(`{"type":"grant.added","data":{"subject":"user:a","role":"role:dba","resource":"db:prod"}}`)
	h := &history{}
	h.add(event.ApprovalRequested, at(10*time.Hour), event.Data{Request: "r1", Requester: "user:a", Change: change, Reason: "on call"})
	h.add(event.ApprovalGranted, at(10*time.Hour+30*time.Minute), event.Data{Request: "r1", Approver: "user:b", Reason: "ok"})
	h.add(event.ApprovalRejected, at(10*time.Hour+15*time.Minute), event.Data{Request: "r1", Approver: "user:c", Reason: "no ticket"})
	h.add(event.ApprovalGranted, at(10*time.Hour+15*time.Minute), event.Data{Request: "r1", Approver: "user:d"}) // same instant: log order
	h.add(event.ApprovalGranted, at(9*time.Hour), event.Data{Request: "r2", Approver: "user:b"})                 // an answer, no request seen
	h.add(event.ApprovalRequested, at(11*time.Hour), event.Data{Tenant: "acme", Request: "r1", Requester: "user:z"})
	h.decision("", "user:a", "db.read", "db:x", "allow", at(10*time.Hour))
	apply(t, st, h.recs)

	requested := at(10 * time.Hour)
	want := store.Approval{Tenant: "default", Request: "r1", Requester: "user:a", Requested: &requested, Change: change, Reason: "on call",
		Answers: []store.ApprovalAnswer{
			{Approver: "user:c", Granted: false, Reason: "no ticket", Time: at(10*time.Hour + 15*time.Minute)},
			{Approver: "user:d", Granted: true, Time: at(10*time.Hour + 15*time.Minute)},
			{Approver: "user:b", Granted: true, Reason: "ok", Time: at(10*time.Hour + 30*time.Minute)},
		}}
	for _, tenant := range []string{"", "default"} {
		a, err := st.Approval(ctx, tenant, "r1")
		if err != nil {
			t.Fatalf("approval r1 of tenant %q: %v", tenant, err)
		}
		same(t, "approval r1, answers in event-time order", a, want)
	}
	a, err := st.Approval(ctx, "", "r2")
	if err != nil {
		t.Fatalf("approval r2: %v", err)
	}
	same(t, "approval r2: answered, never requested", a, store.Approval{Tenant: "default", Request: "r2",
		Answers: []store.ApprovalAnswer{{Approver: "user:b", Granted: true, Time: at(9 * time.Hour)}}})
	requestedAcme := at(11 * time.Hour)
	a, err = st.Approval(ctx, "acme", "r1")
	if err != nil {
		t.Fatalf("approval r1 of acme: %v", err)
	}
	same(t, "approval r1 of acme", a, store.Approval{Tenant: "acme", Request: "r1", Requester: "user:z", Requested: &requestedAcme,
		Answers: []store.ApprovalAnswer{}})
	for _, q := range [][2]string{{"", "r3"}, {"acme", "r2"}, {"nobody", "r1"}, {"", "req-77"}} {
		if _, err := st.Approval(ctx, q[0], q[1]); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("approval %s of tenant %q: %v, want ErrNotFound", q[1], q[0], err)
		}
	}
}

func (s *suite) testTenants(t *testing.T) {
	st := s.open(t)
	h := &history{}
	h.decision("zeta", "user:a", "db.read", "db:x", "allow", at(time.Hour))                                             // decisions only
	h.add(event.GrantAdded, at(time.Hour), event.Data{Tenant: "ops", Subject: "user:a", Action: "x", Resource: "db:x"}) // changes only
	h.add(event.ApprovalGranted, at(time.Hour), event.Data{Tenant: "acme", Request: "r", Approver: "user:b"})           // approvals only
	h.decision("", "user:a", "db.read", "db:x", "deny", at(time.Hour))
	h.recs = append(h.recs, event.Record{Position: uint64(len(h.recs) + 1), Recorded: base, // a message nobody could decode
		Event: event.Event{ID: "x", Source: "storetest", Type: "no.such.type", Data: event.Data{Tenant: "ghost"}}})
	apply(t, st, h.recs)
	ts, err := st.Tenants(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	same(t, "tenants, sorted", ts, []string{"acme", "default", "ops", "zeta"})
}

func (s *suite) testPositions(t *testing.T) {
	st := s.open(t)
	h := decisions()
	recs := h.recs
	apply(t, st, recs[:3])
	if p := position(t, st); p != 3 {
		t.Errorf("position after applying 1-3: %d", p)
	}
	checkpoint(t, st)
	if p := position(t, st); p != 3 {
		t.Errorf("position after the checkpoint: %d", p)
	}
	apply(t, st, recs[:3])  // at or below the position: skipped
	apply(t, st, recs[1:6]) // overlapping: only 4-6 apply
	if p := position(t, st); p != 6 {
		t.Errorf("position after applying 2-6: %d", p)
	}
	apply(t, st, nil)
	same(t, "decisions after overlapping applies", getDecisions(t, st, store.DecisionQuery{}), wantDecisions(recs[:6], store.DecisionQuery{}))
	same(t, "usage after overlapping applies", getUsage(t, st, store.DecisionQuery{}), wantUsage(recs[:6], store.DecisionQuery{}))

	// A record nobody could decode still moves the position.
	ghost := event.Record{Position: 7, Recorded: base, Event: event.Event{ID: "x", Source: "storetest", Type: "no.such.type"}}
	apply(t, st, []event.Record{ghost})
	if p := position(t, st); p != 7 {
		t.Errorf("position after an undecodable record: %d, want 7", p)
	}
	// Positions may skip (the log may hold messages that are not events).
	next := recs[6]
	next.Position = 20
	apply(t, st, []event.Record{next})
	checkpoint(t, st)
	if p := position(t, st); p != 20 {
		t.Errorf("position after a gap: %d, want 20", p)
	}
}

// answers is everything the store's readers can be asked about a history, to compare stores.
type answers struct {
	Position  uint64
	Tenants   []string
	Decisions map[string][]store.Decision
	Usage     map[string][]store.Use
	Approvals map[string]store.Approval
}

func snapshot(t *testing.T, st store.Reader, recs []event.Record) answers {
	t.Helper()
	ctx := context.Background()
	a := answers{Position: position(t, st), Decisions: map[string][]store.Decision{}, Usage: map[string][]store.Use{},
		Approvals: map[string]store.Approval{}}
	var err error
	if a.Tenants, err = st.Tenants(ctx); err != nil {
		t.Fatal(err)
	}
	for _, tn := range a.Tenants {
		a.Decisions[tn] = getDecisions(t, st, store.DecisionQuery{Tenant: tn})
		a.Usage[tn] = getUsage(t, st, store.DecisionQuery{Tenant: tn})
	}
	for _, r := range recs {
		if r.Data.Request != "" && r.Type != event.Decision {
			ap, err := st.Approval(ctx, r.TenantOrDefault(), r.Data.Request)
			if err != nil {
				t.Fatal(err)
			}
			a.Approvals[r.TenantOrDefault()+"/"+r.Data.Request] = ap
		}
	}
	return a
}

func (s *suite) testReplay(t *testing.T) {
	h := decisions()
	h.add(event.ApprovalGranted, at(12*time.Hour), event.Data{Request: "r1", Approver: "user:b"})
	recs := h.recs

	once := s.open(t)
	apply(t, once, recs)
	want := snapshot(t, once, recs)

	st := s.open(t)
	apply(t, st, recs[:5])
	checkpoint(t, st)
	apply(t, st, recs[:9])
	apply(t, st, recs) // without a checkpoint between
	checkpoint(t, st)
	apply(t, st, recs) // all of it again
	apply(t, st, recs[4:])
	checkpoint(t, st)
	same(t, "answers after replaying the log in overlapping stretches", snapshot(t, st, recs), want)
}

func (s *suite) testPermissionMap(t *testing.T) {
	st := s.open(t)
	ctx := context.Background()
	h := &history{}
	h.add(event.GrantAdded, at(10*time.Hour), event.Data{Subject: "user:a", Action: "db.read", Resource: "db:x"})
	apply(t, st, h.recs)
	q := access.Query{Principal: "user:a", Action: "db.read", Resource: "db:x/t", At: at(11 * time.Hour), From: base, To: at(24 * time.Hour)}
	if s.caps.NoPermissionMap != "" {
		_, err1 := st.WhoCould(ctx, q)
		_, err2 := st.WhatCould(ctx, q)
		_, err3 := st.Explain(ctx, q)
		_, err4 := st.History(ctx, q)
		for i, err := range []error{err1, err2, err3, err4} {
			if err == nil {
				t.Errorf("%s answered without an error on a backend without the permission map: never answer a guess",
					[]string{"WhoCould", "WhatCould", "Explain", "History"}[i])
			}
		}
		t.Skip("permission map: " + s.caps.NoPermissionMap)
	}
	w, err := st.WhoCould(ctx, q)
	if err != nil || len(w.Principals) != 1 || w.Principals[0].Principal != "user:a" {
		t.Errorf("who could read db:x/t: %+v, %v", w, err)
	}
	wc, err := st.WhatCould(ctx, q)
	if err != nil || len(wc.Entitlements) != 1 {
		t.Errorf("what could user:a do: %+v, %v", wc, err)
	}
	e, err := st.Explain(ctx, q)
	if err != nil || !e.Could {
		t.Errorf("explain: %+v, %v", e, err)
	}
	hist, err := st.History(ctx, access.Query{Principal: "user:a", From: base, To: at(24 * time.Hour)})
	if err != nil || len(hist.Intervals) != 1 {
		t.Errorf("history: %+v, %v", hist, err)
	}
	// Replaying the grant changes nothing.
	apply(t, st, h.recs)
	checkpoint(t, st)
	w2, err := st.WhoCould(ctx, q)
	if err != nil {
		t.Fatal(err)
	}
	same(t, "who could, after a replay", w2, w)
}
