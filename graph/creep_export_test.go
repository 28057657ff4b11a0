package graph

import (
	"context"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/whocould/whocould/access"
	"github.com/whocould/whocould/internal/synth"
)

// TestEntitlementIDs: the ids name exactly what-could's entitlements, for active principals and
// others, at many times.
func TestEntitlementIDs(t *testing.T) {
	o := synth.Generate(synth.Options{Principals: 300, Groups: 100, Grants: 3000, Roles: 10, Seed: 5})
	g := New()
	g.ApplyBatch(o.Records(5))
	r := rand.New(rand.NewPCG(1, 2))
	ctx := context.Background()
	principals := g.Principals()
	nonEmpty := 0
	for range 400 {
		p := principals[r.IntN(len(principals))]
		at := o.Start.Add(time.Duration(r.Int64N(int64(o.Span + 24*time.Hour))))
		want, err := g.WhatCould(ctx, access.Query{Principal: p, At: at})
		if err != nil {
			t.Fatal(err)
		}
		ids, active := g.EntitlementIDs(p, at, nil, nil)
		var got [][2]string
		for _, id := range ids {
			a, r := g.EntitlementNames(id)
			got = append(got, [2]string{a, r})
		}
		if active != (want.Status == access.StatusActive) {
			t.Fatalf("%s at %v: active %v, status %s", p, at, active, want.Status)
		}
		slices.SortFunc(got, func(a, b [2]string) int { return slices.Compare(a[:], b[:]) })
		var ws [][2]string
		for _, e := range want.Entitlements {
			ws = append(ws, [2]string{e.Action, e.Resource})
		}
		if len(ws) > 0 {
			nonEmpty++
		}
		if !slices.Equal(got, ws) {
			t.Fatalf("%s at %v: keys %v, what-could %v", p, at, got, ws)
		}
	}
	if nonEmpty < 100 {
		t.Errorf("only %d of the answers compared hold anything", nonEmpty)
	}
	if got, active := g.EntitlementIDs("user:nobody", o.Start, nil, nil); got != nil || active {
		t.Errorf("unknown principal: %v %v", got, active)
	}
}
