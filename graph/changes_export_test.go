package graph

import (
	"context"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/whocould/whocould/access"
	"github.com/whocould/whocould/event"
)

func TestAccessInstants(t *testing.T) {
	g := build(t,
		ev(event.MembershipAdded, "2026-01-05T09:00:00Z", event.Data{Group: "group:eng", Member: "user:alice"}),
		ev(event.GrantAdded, "2026-01-05T10:00:00Z", event.Data{Subject: "group:eng", Role: "role:db", Resource: "db:prod"}),
		ev(event.RolePermissionAdded, "2026-01-05T08:00:00Z", event.Data{Role: "role:db", Action: "db.read"}),
		ev(event.RoleIncludeAdded, "2026-01-05T11:00:00Z", event.Data{Role: "role:db", Includes: "role:x"}),
		ev(event.RolePermissionAdded, "2026-01-05T11:30:00Z", event.Data{Role: "role:x", Action: "db.write"}),
		ev(event.PrincipalDisabled, "2026-01-05T12:00:00Z", event.Data{Principal: "user:alice"}),
		ev(event.GrantRemoved, "2026-01-05T13:00:00Z", event.Data{Subject: "group:eng", Role: "role:db", Resource: "db:prod"}),
		ev(event.GrantAdded, "2026-01-05T09:30:00Z", event.Data{Subject: "user:bob", Action: "*", Resource: "*"}), // not alice's
	)
	at := func(s string) int64 {
		tm, _ := time.Parse(time.RFC3339, "2026-01-05T"+s+"Z")
		return event.Micros(tm)
	}
	want := []int64{at("08:00:00"), at("09:00:00"), at("10:00:00"), at("11:00:00"), at("11:30:00"), at("12:00:00"), at("13:00:00")}
	if got := g.AccessInstants("user:alice", nil); !slices.Equal(got, want) {
		t.Fatalf("AccessInstants = %v, want %v", got, want)
	}
	if got := g.AccessInstants("user:nobody", nil); got != nil {
		t.Fatalf("AccessInstants of an unknown id = %v, want nil", got)
	}
	// Between two instants, every answer is the same.
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(1, 2))
	for _, action := range []string{"db.read", "db.write"} {
		for i := 0; i+1 < len(want); i++ {
			q := access.Query{Principal: "user:alice", Action: action, Resource: "db:prod/t", At: event.FromMicros(want[i])}
			first, _ := g.Explain(ctx, q)
			q.At = event.FromMicros(want[i] + rng.Int64N(want[i+1]-want[i]))
			later, _ := g.Explain(ctx, q)
			if first.Could != later.Could || first.Status != later.Status || len(first.Paths) != len(later.Paths) {
				t.Errorf("%s at %v and %v differ: %+v, %+v", action, first.At, later.At, first, later)
			}
		}
	}
}
