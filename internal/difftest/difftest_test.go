package difftest

import (
	"context"
	"strings"
	"testing"

	"github.com/whocould/whocould/access"
	"github.com/whocould/whocould/event"
	"github.com/whocould/whocould/internal/reference"
)

func refBuild(t *testing.T, recs []event.Record) access.Querier { return reference.New(recs) }

// The reference agrees with itself: the harness runs end to end without false alarms.
func TestReferenceAgreesWithItself(t *testing.T) {
	Run(t, refBuild, Options{})
}

// With CompareHistory, history questions are compared too, and a history that loses an interval
// is caught.
func TestHistory(t *testing.T) {
	Run(t, refBuild, Options{Seeds: []int64{4}, Questions: 200, CompareHistory: true})
	build := func(t *testing.T, recs []event.Record) access.Querier { return dropInterval{reference.New(recs)} }
	m := FirstMismatch(t, 4, build, Options{Questions: 200, CompareHistory: true, NoShrink: true})
	if m == nil || !strings.HasPrefix(m.Kind, "history") {
		t.Fatalf("a history that drops an interval passed: %+v", m)
	}
	t.Logf("caught by %s", describe(m.Kind, m.Query))
}

type dropInterval struct{ access.Querier }

func (d dropInterval) History(ctx context.Context, q access.Query) (access.History, error) {
	h, err := d.Querier.History(ctx, q)
	if len(h.Intervals) > 0 {
		h.Intervals = h.Intervals[1:]
	}
	return h, err
}

// dropOne loses one path of every answer that has two or more.
type dropOne struct{ access.Querier }

func (d dropOne) WhoCould(ctx context.Context, q access.Query) (access.WhoCould, error) {
	a, err := d.Querier.WhoCould(ctx, q)
	for i := range a.Principals {
		if ps := a.Principals[i].Paths; len(ps) > 1 {
			a.Principals[i].Paths = ps[1:]
			break
		}
	}
	return a, err
}

func (d dropOne) Explain(ctx context.Context, q access.Query) (access.Explain, error) {
	a, err := d.Querier.Explain(ctx, q)
	if len(a.Paths) > 1 {
		a.Paths = a.Paths[1:]
	}
	return a, err
}

func (d dropOne) WhatCould(ctx context.Context, q access.Query) (access.WhatCould, error) {
	a, err := d.Querier.WhatCould(ctx, q)
	for i := range a.Entitlements {
		if ps := a.Entitlements[i].Paths; len(ps) > 1 {
			a.Entitlements[i].Paths = ps[1:]
			break
		}
	}
	return a, err
}

// The harness catches an implementation that loses one path, and reports it readably, with a
// shrunk history.
func TestCatchesDroppedPath(t *testing.T) {
	build := func(t *testing.T, recs []event.Record) access.Querier { return dropOne{reference.New(recs)} }
	m := FirstMismatch(t, 1, build, Options{})
	if m == nil {
		t.Fatal("a querier that drops a path passed the differential test")
	}
	rep := m.Report()
	t.Logf("the report:\n%s", rep)
	for _, want := range []string{"disagrees with the reference", "question:", "- ", "want (reference):", "got:"} {
		if !strings.Contains(rep, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	if !m.Shrunk || len(m.Records) > 12 {
		t.Errorf("history not shrunk to a few records: shrunk=%v, %d records (from %d)", m.Shrunk, len(m.Records), m.Original)
	}
}

// Every deliberate semantic bug of the reference is caught by the fixed seeds.
func TestCatchesMutants(t *testing.T) {
	mutants := map[string]reference.Mutation{
		"expiry inclusive":        reference.ExpiryInclusive,
		"events at T excluded":    reference.EventsAtTExcluded,
		"disabled can":            reference.DisabledCan,
		"known-at ignored":        reference.IgnoreKnownAt,
		"re-add keeps old expiry": reference.KeepFirstExpiry,
		"delete keeps grants":     reference.DeleteKeepsGrants,
		"delivery order":          reference.DeliveryOrder,
		"reference counted":       reference.RefCounted,
		"prefix covers":           reference.PrefixCovers,
	}
	for name, mu := range mutants {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			build := func(t *testing.T, recs []event.Record) access.Querier { return reference.NewMutant(recs, mu) }
			for _, seed := range DefaultSeeds {
				if m := FirstMismatch(t, seed, build, Options{NoShrink: true}); m != nil {
					t.Logf("caught on seed %d by %s", seed, describe(m.Kind, m.Query))
					return
				}
			}
			t.Errorf("mutant %q passed every default seed", name)
		})
	}
}

// An error from the system under test is a mismatch too.
type failing struct{ access.Querier }

func (failing) Explain(ctx context.Context, q access.Query) (access.Explain, error) {
	return access.Explain{}, context.DeadlineExceeded
}

func TestCatchesErrors(t *testing.T) {
	build := func(t *testing.T, recs []event.Record) access.Querier { return failing{reference.New(recs)} }
	m := FirstMismatch(t, 2, build, Options{NoShrink: true})
	if m == nil || m.Kind != "explain" || !strings.Contains(m.Report(), "deadline") {
		t.Fatalf("error not reported as a mismatch: %+v", m)
	}
}
