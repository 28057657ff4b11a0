package clickhouse_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/whocould/whocould/event"
	"github.com/whocould/whocould/eventlog"
	"github.com/whocould/whocould/internal/chtest"
	"github.com/whocould/whocould/projector"
	"github.com/whocould/whocould/store"
	"github.com/whocould/whocould/store/clickhouse"
)

// TestServerOutage: ClickHouse stops for 30 s while events keep arriving in the log; the
// projector waits, resumes when the server is back, and the store ends with every decision
// exactly once, exact usage, and the permission map the embedded store makes of the same
// change events.
func TestServerOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("stops ClickHouse for 30 s")
	}
	srv := chtest.StartServer(t)
	ctx := context.Background()
	st, err := clickhouse.Open(ctx, clickhouse.Config{Addr: srv.Addr, Database: "outage", DialTimeout: 2 * time.Second, ReadTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()

	dir := t.TempDir()
	nats, err := eventlog.StartEmbedded(eventlog.EmbeddedConfig{Dir: filepath.Join(dir, "nats")})
	if err != nil {
		t.Fatal(err)
	}
	defer nats.Shutdown()
	nc, err := nats.Connect()
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	log, err := eventlog.Open(ctx, nc, eventlog.Config{Dir: filepath.Join(dir, "eventlog")})
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	at := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	var changes []event.Record // for the embedded store
	appendDecisions := func(from, to int) (last uint64) {
		t.Helper()
		var es []eventlog.Entry
		for i := from; i < to; i++ {
			if i%7 == 0 || i%11 == 0 {
				typ := event.GrantAdded
				if i%11 == 0 {
					typ = event.GrantRemoved
				}
				c := event.Event{ID: fmt.Sprint("c", i), Source: "outage", Type: typ, Time: at.Add(time.Duration(i) * time.Second),
					Data: event.Data{Subject: fmt.Sprintf("user:u%d", i%50), Action: "db.table.read", Resource: fmt.Sprintf("db:t/%d", i%13)}}
				data, err := event.Marshal(&c)
				if err != nil {
					t.Fatal(err)
				}
				es = append(es, eventlog.Entry{Key: c.Key(), Kind: eventlog.KindChange, Data: data})
				changes = append(changes, event.Record{Position: uint64(len(changes) + 1), Recorded: at, Event: c})
			}
			effect := event.Allow
			if i%5 == 0 {
				effect = event.Deny
			}
			e := event.Event{ID: fmt.Sprint(i), Source: "outage", Type: event.Decision, Time: at.Add(time.Duration(i) * time.Second),
				Data: event.Data{Principal: fmt.Sprintf("user:u%d", i%50), Action: "db.table.read", Resource: "db:t", Effect: effect}}
			data, err := event.Marshal(&e)
			if err != nil {
				t.Fatal(err)
			}
			es = append(es, eventlog.Entry{Key: e.Key(), Kind: eventlog.KindDecision, Data: data})
		}
		app, err := log.Append(ctx, es)
		if err != nil {
			t.Fatal(err)
		}
		return app[len(app)-1].Position
	}

	p := projector.New(log, st, nil, projector.Config{Batch: 500, CheckpointEvery: 1000})
	var failures atomic.Int64
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- p.RunRetrying(rctx, func(error) { failures.Add(1) }) }()
	waitFor := func(what string, cond func() bool, limit time.Duration) {
		t.Helper()
		deadline := time.Now().Add(limit)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s (projection at %d)", what, p.Position())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	first := appendDecisions(0, 5000)
	waitFor("the first 5000", func() bool { return p.Position() >= first }, time.Minute)

	srv.Stop()
	all := appendDecisions(5000, 10000) // the log takes them while the store is away
	time.Sleep(30 * time.Second)
	if p.Position() > first {
		t.Fatalf("the projection moved to %d while ClickHouse was down", p.Position())
	}
	srv.Start()
	waitFor("all 10000 after the outage", func() bool { return p.Position() >= all }, 2*time.Minute)
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("RunRetrying: %v", err)
	}
	if failures.Load() == 0 {
		t.Fatal("the projector never saw the outage")
	}
	n, allowed := 0, 0
	err = st.Decisions(ctx, store.DecisionQuery{Tenant: event.DefaultTenant}, func(d store.Decision) error {
		n++
		if d.Effect == event.Allow {
			allowed++
		}
		return nil
	})
	if err != nil || n != 10000 || allowed != 8000 {
		t.Fatalf("decisions after the outage: %d (%d allowed), %v; want 10000 (8000)", n, allowed, err)
	}
	var uses []store.Use
	if err := st.Usage(ctx, store.DecisionQuery{Tenant: event.DefaultTenant}, func(u store.Use) error { uses = append(uses, u); return nil }); err != nil {
		t.Fatal(err)
	}
	var count int64
	for _, u := range uses {
		count += u.Count
	}
	if count != 8000 || len(uses) != 40 { // u0, u5, ... u45 only ever denied
		t.Fatalf("usage after the outage: %d uses over %d keys, want 8000 over 40", count, len(uses))
	}
	if got, want := mapDigest(t, st, changes, false), mapDigest(t, reference(t, changes), changes, false); got != want {
		t.Fatal("the permission map after the outage differs from the embedded store's")
	}
	t.Logf("%d failures seen and retried during the outage", failures.Load())
}
