package embedded

import (
	"cmp"
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/whocould/whocould/event"
	"github.com/whocould/whocould/store"
)

// TestDecisionOrder applies decisions in batches that arrive out of order — mostly a little
// late, sometimes hours (past maxMerge, left to the sort at read) — and checks after each that
// the store reads back every decision, in event-time then log order, with its id and request,
// from a reopened snapshot too.
func TestDecisionOrder(t *testing.T) {
	defer func(m int) { maxMerge = m }(maxMerge)
	maxMerge = 50
	ctx := context.Background()
	dir := t.TempDir()
	s, err := Open(Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(1, 2))
	t0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	var all []store.Decision
	pos := uint64(0)
	for batch := range 60 {
		var recs []event.Record
		for range 1 + r.IntN(40) {
			pos++
			at := t0.Add(time.Duration(pos) * time.Second)
			switch r.IntN(10) {
			case 0:
				at = at.Add(-time.Duration(r.IntN(3600)) * time.Second) // hours late
			case 1, 2, 3:
				at = at.Add(-time.Duration(r.IntN(20)) * time.Second) // a little late
			case 4:
				at = t0.Add(time.Duration(pos-1) * time.Second) // at the same instant as another
			}
			d := event.Data{Principal: fmt.Sprintf("user:u%d", r.IntN(4)), Action: "db.read", Resource: "db:x", Effect: event.Allow}
			if r.IntN(4) == 0 {
				d.Effect = event.Deny
			}
			if r.IntN(3) == 0 {
				d.Request = fmt.Sprintf("req-%d", pos)
			}
			id := fmt.Sprintf("decision-%d-%s", pos, strings.Repeat("x", r.IntN(300))) // some ids longer than a varint byte
			recs = append(recs, event.Record{Position: pos, Event: event.Event{ID: id, Source: "test", Type: event.Decision, Time: at, Data: d}})
			all = append(all, store.Decision{Tenant: event.DefaultTenant, Principal: d.Principal, Action: d.Action, Resource: d.Resource,
				Effect: d.Effect, Time: at, Request: d.Request, Source: "test", ID: id, Position: pos})
		}
		if err := s.Apply(ctx, recs); err != nil {
			t.Fatal(err)
		}
		if batch%20 == 19 {
			if err := s.Checkpoint(ctx); err != nil {
				t.Fatal(err)
			}
			if s, err = Open(Config{Dir: dir}); err != nil {
				t.Fatal(err)
			}
		}
		want := slices.Clone(all)
		slices.SortFunc(want, func(a, b store.Decision) int {
			return cmp.Or(a.Time.Compare(b.Time), cmp.Compare(a.Position, b.Position))
		})
		var got []store.Decision
		if err := s.Decisions(ctx, store.DecisionQuery{}, func(d store.Decision) error { got = append(got, d); return nil }); err != nil {
			t.Fatal(err)
		}
		if !slices.EqualFunc(got, want, sameDecision) {
			t.Fatalf("after batch %d: %d decisions read, %d applied, or out of order", batch, len(got), len(want))
		}
		got = got[:0]
		q := store.DecisionQuery{Principal: "user:u1", Effect: event.Allow}
		if err := s.Decisions(ctx, q, func(d store.Decision) error { got = append(got, d); return nil }); err != nil {
			t.Fatal(err)
		}
		want = slices.DeleteFunc(want, func(d store.Decision) bool { return d.Principal != q.Principal || d.Effect != q.Effect })
		if !slices.EqualFunc(got, want, sameDecision) {
			t.Fatalf("after batch %d: user:u1's allowed decisions: %d read, %d applied, or out of order", batch, len(got), len(want))
		}
		var uses []store.Use
		if err := s.Usage(ctx, store.DecisionQuery{Principal: "user:u1"}, func(u store.Use) error { uses = append(uses, u); return nil }); err != nil {
			t.Fatal(err)
		}
		if len(want) > 0 && (len(uses) != 1 || uses[0].Count != int64(len(want)) || !uses[0].First.Equal(want[0].Time) ||
			!uses[0].Last.Equal(want[len(want)-1].Time)) {
			t.Fatalf("after batch %d: usage %+v, want %d decisions from %s to %s", batch, uses, len(want), want[0].Time, want[len(want)-1].Time)
		}
	}
}

// sameDecision compares decisions, their times as instants.
func sameDecision(a, b store.Decision) bool {
	ta, tb := a.Time, b.Time
	a.Time, b.Time = time.Time{}, time.Time{}
	return a == b && ta.Equal(tb)
}
