package graph

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/whocould/whocould/access"
	"github.com/whocould/whocould/event"
)

// build applies events in the order given, recording each a second after the last.
func build(t testing.TB, evs ...event.Event) *Graph {
	t.Helper()
	g := New()
	rec := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range evs {
		if evs[i].Source == "" {
			evs[i].Source = "test"
		}
		if evs[i].ID == "" {
			evs[i].ID = "e" + string(rune('a'+i%26)) + strings.Repeat("x", i/26)
		}
		rec = rec.Add(time.Second)
		g.Apply(&event.Record{Event: evs[i], Position: uint64(i + 1), Recorded: rec})
	}
	return g
}

func ev(typ event.Type, at string, d event.Data) event.Event {
	tm, err := time.Parse(time.RFC3339, at)
	if err != nil {
		panic(err)
	}
	return event.Event{Type: typ, Time: tm, Data: d}
}

func TestContractExample(t *testing.T) {
	g := build(t,
		ev(event.MembershipAdded, "2026-01-01T00:00:00Z", event.Data{Group: "group:dba", Member: "user:alice"}),
		ev(event.MembershipAdded, "2026-01-01T00:00:00Z", event.Data{Group: "group:eng", Member: "group:dba"}),
		ev(event.GrantAdded, "2026-01-02T00:00:00Z", event.Data{Subject: "group:eng", Role: "role:db-owner", Resource: "db:prod"}),
		ev(event.RoleIncludeAdded, "2026-01-01T00:00:00Z", event.Data{Role: "role:db-owner", Includes: "role:db-writer"}),
		ev(event.RolePermissionAdded, "2026-01-01T00:00:00Z", event.Data{Role: "role:db-writer", Action: "db.table.*"}),
	)
	at := time.Date(2026, 1, 6, 2, 14, 0, 0, time.UTC)
	got, err := g.WhoCould(context.Background(), access.Query{Action: "db.table.drop", Resource: "db:prod/orders", At: at})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(got)
	want := `{"action":"db.table.drop","resource":"db:prod/orders","at":"2026-01-06T02:14:00Z","principals":[{"principal":"user:alice","paths":[{"groups":["group:dba","group:eng"],"grant":{"subject":"group:eng","role":"role:db-owner","resource":"db:prod"},"roles":["role:db-owner","role:db-writer"],"permission":"db.table.*"}]}]}`
	if string(b) != want {
		t.Fatalf("who-could:\n got %s\nwant %s", b, want)
	}
	// Before the grant: nobody, and explain says why.
	before := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	got, _ = g.WhoCould(context.Background(), access.Query{Action: "db.table.drop", Resource: "db:prod/orders", At: before})
	if len(got.Principals) != 0 {
		t.Fatalf("before the grant: %+v", got.Principals)
	}
	ex, _ := g.Explain(context.Background(), access.Query{Principal: "user:alice", Action: "db.table.drop", Resource: "db:prod/orders", At: before})
	if ex.Could || !strings.Contains(ex.Reason, "no grant") {
		t.Fatalf("explain before: %+v", ex)
	}
	// As known before the grant was recorded, even at a later event time: nobody.
	known := time.Date(2026, 1, 1, 0, 0, 2, 0, time.UTC)
	got, _ = g.WhoCould(context.Background(), access.Query{Action: "db.table.drop", Resource: "db:prod/orders", At: at, KnownAt: &known})
	if len(got.Principals) != 0 {
		t.Fatalf("known-at before the grant was recorded: %+v", got.Principals)
	}
	h, _ := g.History(context.Background(), access.Query{Principal: "user:alice", From: before, To: at})
	if len(h.Intervals) != 1 || h.Intervals[0].From != time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC) || h.Intervals[0].To != nil {
		t.Fatalf("history: %+v", h.Intervals)
	}
}
