package reference

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/whocould/whocould/access"
	"github.com/whocould/whocould/event"
	"github.com/whocould/whocould/internal/randhist"
)

// The four questions agree with each other on random histories: P is in who-could(A, R) exactly
// when explain(P, A, R) could, with the same paths, and exactly when some what-could entitlement
// of P matches A and covers R; and the history of P, at any instant, holds exactly the paths
// what-could lists then.
func TestQuestionsAgree(t *testing.T) {
	ctx := context.Background()
	for _, seed := range []int64{1, 2, 3} {
		recs := randhist.Dedup(randhist.Generate(seed, randhist.Options{Changes: 150}))
		r := New(recs)
		qs := randhist.Questions(seed, recs, 150)
		for _, q := range qs {
			who, _ := r.WhoCould(ctx, q)
			ex, _ := r.Explain(ctx, q)
			what, _ := r.WhatCould(ctx, q)
			i := slices.IndexFunc(who.Principals, func(p access.PrincipalPaths) bool { return p.Principal == q.Principal })
			if (i >= 0) != ex.Could {
				t.Fatalf("seed %d %+v: who-could has principal=%v, explain could=%v", seed, q, i >= 0, ex.Could)
			}
			if i >= 0 && !slices.EqualFunc(who.Principals[i].Paths, ex.Paths, func(a, b access.Path) bool { return a.String() == b.String() }) {
				t.Fatalf("seed %d %+v: who-could and explain paths differ", seed, q)
			}
			var fromWhat []access.Path
			for _, e := range what.Entitlements {
				if event.Matches(e.Action, q.Action) && event.Covers(e.Resource, q.Resource) {
					fromWhat = append(fromWhat, e.Paths...)
				}
			}
			access.SortPaths(fromWhat)
			if ex.Could != (len(fromWhat) > 0) || (ex.Could && !slices.EqualFunc(fromWhat, ex.Paths, func(a, b access.Path) bool { return a.String() == b.String() })) {
				t.Fatalf("seed %d %+v: what-could gives %d paths, explain %d (could=%v)", seed, q, len(fromWhat), len(ex.Paths), ex.Could)
			}
		}
		// History against point questions.
		for _, q := range qs[:30] {
			hq := q
			hq.From, hq.To, hq.Resource = q.At.Add(-40*time.Minute), q.At.Add(40*time.Minute), ""
			h, err := r.History(ctx, hq)
			if err != nil {
				t.Fatal(err)
			}
			for _, dt := range []time.Duration{-40 * time.Minute, -time.Microsecond, 0, time.Microsecond, 17 * time.Minute} {
				at := q.At.Add(dt)
				pq := q
				pq.At = at
				what, _ := r.WhatCould(ctx, pq)
				var want, got []string
				for _, e := range what.Entitlements {
					for _, p := range e.Paths {
						p.Grant.ExpiresAt = nil
						want = append(want, p.String())
					}
				}
				for _, iv := range h.Intervals {
					if !iv.From.After(at) && (iv.To == nil || at.Before(*iv.To)) {
						p := iv.Path
						p.Grant.ExpiresAt = nil
						got = append(got, p.String())
					}
				}
				slices.Sort(want)
				slices.Sort(got)
				if !slices.Equal(want, got) {
					t.Fatalf("seed %d: history of %s at %s:\n got %q\nwant %q", seed, q.Principal, at, got, want)
				}
			}
		}
	}
}

// Answers do not depend on the order records are given in, and duplicates are dropped (first
// position wins).
func TestOrderAndDuplicates(t *testing.T) {
	ctx := context.Background()
	raw := randhist.Generate(7, randhist.Options{Changes: 120})
	a := New(raw)
	rev := slices.Clone(raw)
	slices.Reverse(rev)
	b := New(rev)
	c := New(randhist.Dedup(raw))
	for _, q := range randhist.Questions(7, raw, 100) {
		x, _ := a.WhoCould(ctx, q)
		y, _ := b.WhoCould(ctx, q)
		q2 := q
		z, _ := c.WhoCould(ctx, q2)
		if len(x.Principals) != len(y.Principals) || len(x.Principals) != len(z.Principals) {
			t.Fatalf("%+v: %d / %d / %d principals", q, len(x.Principals), len(y.Principals), len(z.Principals))
		}
	}
}

// A tiny hand-checked history, to pin the basics without YAML.
func TestBasics(t *testing.T) {
	at := func(h, m int) time.Time { return time.Date(2026, 1, 5, h, m, 0, 0, time.UTC) }
	exp := at(12, 0)
	recs := []event.Record{
		{Position: 1, Event: event.Event{ID: "1", Source: "t", Type: event.MembershipAdded, Time: at(10, 0), Data: event.Data{Group: "group:eng", Member: "user:alice"}}},
		{Position: 2, Event: event.Event{ID: "2", Source: "t", Type: event.GrantAdded, Time: at(10, 0), Data: event.Data{Subject: "group:eng", Action: "db.*", Resource: "db:prod", ExpiresAt: &exp}}},
		{Position: 3, Event: event.Event{ID: "3", Source: "t", Type: event.PrincipalDisabled, Time: at(11, 0), Data: event.Data{Principal: "user:alice"}}},
	}
	r := New(recs)
	ctx := context.Background()
	for _, c := range []struct {
		at     time.Time
		could  bool
		status string
		paths  int
	}{
		{at(9, 59), false, access.StatusUnknown, 0},
		{at(10, 0), true, access.StatusActive, 1},
		{at(11, 0), false, access.StatusDisabled, 1},
	} {
		ex, _ := r.Explain(ctx, access.Query{Principal: "user:alice", Action: "db.table.drop", Resource: "db:prod/orders", At: c.at})
		if ex.Could != c.could || ex.Status != c.status || len(ex.Paths) != c.paths {
			t.Errorf("at %s: got could=%v status=%s paths=%d, want %v %s %d", c.at, ex.Could, ex.Status, len(ex.Paths), c.could, c.status, c.paths)
		}
		if len(ex.Paths) == 1 && (ex.Paths[0].Grant.ExpiresAt == nil || !ex.Paths[0].Grant.ExpiresAt.Equal(exp)) {
			t.Errorf("at %s: path lacks the expiry: %+v", c.at, ex.Paths[0])
		}
	}
}
