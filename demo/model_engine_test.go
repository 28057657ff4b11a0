package demo

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/whocould/whocould/access"
	"github.com/whocould/whocould/event"
	"github.com/whocould/whocould/store/embedded"
)

// TestModelAgreesWithEngine checks the generator's model, which computes the questions' expected
// answers, against the engine well beyond the questions: every principal's status and
// entitlements, and who could do each action decided on each resource decided on, at weekly
// times, around grant expiries and around change events.
func TestModelAgreesWithEngine(t *testing.T) {
	if testing.Short() {
		t.Skip("slow")
	}
	ctx := context.Background()
	h := defaultHistory
	s, err := embedded.Open(embedded.Config{})
	if err != nil {
		t.Fatal(err)
	}
	recs := make([]event.Record, len(h.Events))
	for i := range h.Events {
		recs[i] = event.Record{Event: h.Events[i], Position: uint64(i + 1), Recorded: h.End}
	}
	if err := s.Apply(ctx, recs); err != nil {
		t.Fatal(err)
	}
	ps, as, rs := map[string]bool{}, map[string]bool{}, map[string]bool{}
	var times []time.Time
	for d := Start; d.Before(End); d = d.Add(7 * 24 * time.Hour) {
		times = append(times, d)
	}
	changes := 0
	for i := range h.Events {
		e := &h.Events[i]
		for _, id := range []string{e.Data.Principal, e.Data.Member, e.Data.Subject} {
			if id != "" && event.KindOf(id) == event.KindPrincipal {
				ps[id] = true
			}
		}
		switch {
		case e.Type == event.Decision:
			as[e.Data.Action], rs[e.Data.Resource] = true, true
		case e.Type == event.GrantAdded && e.Data.ExpiresAt != nil:
			times = append(times, *e.Data.ExpiresAt, e.Data.ExpiresAt.Add(-time.Microsecond))
		case e.Type.IsChange():
			if changes++; changes%97 == 0 || e.Type == event.PrincipalDeleted || e.Type == event.GroupDeleted || e.Type == event.RoleDeleted {
				times = append(times, e.Time, e.Time.Add(-time.Microsecond))
			}
		}
	}
	principals, actions, resources := sortedKeys(ps), sortedKeys(as), sortedKeys(rs)
	bad := 0
	fail := func(format string, args ...any) {
		t.Helper()
		if bad++; bad <= 20 {
			t.Errorf(format, args...)
		}
	}
	for ti, at := range times {
		m := modelAt(h.Events, at)
		for _, p := range principals {
			wc, err := s.WhatCould(ctx, access.Query{Principal: p, At: at})
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, e := range wc.Entitlements {
				got = append(got, e.Action+" "+e.Resource)
			}
			if st, want := m.status(p), m.entitlements(p, at); st != wc.Status || !slices.Equal(got, want) {
				fail("what-could %s at %s:\n  engine: %s %v\n  model:  %s %v", p, at.Format(time.RFC3339Nano), wc.Status, got, st, want)
			}
		}
		if ti%2 != 0 {
			continue
		}
		// m.could, for every principal at once: the active principals' paths, matched here.
		existing := m.principals()
		held := map[string][]path{}
		for _, p := range existing {
			if m.active(p) {
				held[p], _ = m.paths(p, "", "", at)
			}
		}
		for _, a := range actions {
			for _, r := range resources {
				wc, err := s.WhoCould(ctx, access.Query{Action: a, Resource: r, At: at})
				if err != nil {
					t.Fatal(err)
				}
				var got, want []string
				for _, p := range wc.Principals {
					got = append(got, p.Principal)
				}
				for _, p := range existing {
					if slices.ContainsFunc(held[p], func(x path) bool {
						return event.Matches(x.permission, a) && event.Covers(x.grant.resource, r)
					}) {
						want = append(want, p)
					}
				}
				if !slices.Equal(got, want) {
					fail("who-could %s on %s at %s:\n  engine: %v\n  model:  %v", a, r, at.Format(time.RFC3339Nano), got, want)
				}
			}
		}
	}
	if bad > 20 {
		t.Errorf("... %d disagreements in all", bad)
	}
	t.Logf("%d times, %d principals, %d actions, %d resources", len(times), len(principals), len(actions), len(resources))
}
