package demo_test

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/whocould/whocould/access"
	"github.com/whocould/whocould/demo"
	"github.com/whocould/whocould/event"
	"github.com/whocould/whocould/store/embedded"
)

// TestQuestionsAgainstEngine imports each generated history into the embedded store and checks
// that the engine gives every question exactly the answer the demo's own checker (its
// independent reading of DESIGN.md §1) expects.
func TestQuestionsAgainstEngine(t *testing.T) {
	seeds := []uint64{1, 2, 3, 42}
	if testing.Short() {
		seeds = seeds[:1]
	}
	for _, seed := range seeds {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			t.Parallel()
			h := demo.Generate(seed, demo.Options{})
			checkQuestions(t, h, importHistory(t, h))
		})
	}
}

// importHistory applies the history's events, in their order, to a memory-only embedded store.
func importHistory(t *testing.T, h *demo.History) access.Querier {
	t.Helper()
	s, err := embedded.Open(embedded.Config{})
	if err != nil {
		t.Fatal(err)
	}
	recs := make([]event.Record, len(h.Events))
	for i := range h.Events {
		// Every event was recorded after the history ended: no question asks as known at an
		// earlier time.
		recs[i] = event.Record{Event: h.Events[i], Position: uint64(i + 1), Recorded: h.End}
	}
	if err := s.Apply(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
	return s
}

func checkQuestions(t *testing.T, h *demo.History, q access.Querier) {
	t.Helper()
	ctx := context.Background()
	if len(h.Questions) == 0 {
		t.Fatal("no questions")
	}
	for _, qu := range h.Questions {
		switch qu.Kind {
		case demo.WhoCould:
			ans, err := q.WhoCould(ctx, qu.Query)
			if err != nil {
				t.Fatalf("%s: %v", qu.Title, err)
			}
			got := []string{}
			for _, p := range ans.Principals {
				got = append(got, p.Principal)
			}
			want := append([]string{}, qu.Principals...)
			if !slices.Equal(got, want) {
				t.Errorf("%s\n  engine:   %v\n  expected: %v\n  only engine: %v\n  only expected: %v",
					qu.Title, got, want, minus(got, want), minus(want, got))
			}
		case demo.Explain:
			ans, err := q.Explain(ctx, qu.Query)
			if err != nil {
				t.Fatalf("%s: %v", qu.Title, err)
			}
			if ans.Could != qu.Could || ans.Status != qu.Status {
				t.Errorf("%s\n  engine:   could=%v status=%s reason=%q paths=%v\n  expected: could=%v status=%s",
					qu.Title, ans.Could, ans.Status, ans.Reason, ans.Paths, qu.Could, qu.Status)
			}
		case demo.WhatCould:
			ans, err := q.WhatCould(ctx, qu.Query)
			if err != nil {
				t.Fatalf("%s: %v", qu.Title, err)
			}
			got := []string{}
			for _, e := range ans.Entitlements {
				got = append(got, e.Action+" "+e.Resource)
			}
			want := append([]string{}, qu.Entitlements...)
			if ans.Status != qu.Status || !slices.Equal(got, want) {
				t.Errorf("%s\n  engine:   status=%s %v\n  expected: status=%s %v\n  only engine: %v\n  only expected: %v",
					qu.Title, ans.Status, got, qu.Status, want, minus(got, want), minus(want, got))
			}
		default:
			t.Errorf("%s: unknown kind %q", qu.Title, qu.Kind)
		}
	}
}

// minus lists the elements of a that are not in b.
func minus(a, b []string) []string {
	var out []string
	for _, x := range a {
		if !slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	return out
}
