package clickhouse_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/whocould/whocould/access"
	"github.com/whocould/whocould/event"
	"github.com/whocould/whocould/internal/chtest"
	"github.com/whocould/whocould/internal/randhist"
	"github.com/whocould/whocould/store"
	"github.com/whocould/whocould/store/clickhouse"
)

// A rebuild replays the log into a fresh generation while readers (another process, like an
// api-only serve) keep asking; the swap is one insert. Every answer before, during and after it
// is the one the store gave before the rebuild: never missing, never doubled, never an error.
// The projector writing into the old generation is told at its next Apply and goes on from the
// new one's checkpoint.
func TestRebuildUnderConcurrentQueries(t *testing.T) {
	ctx := context.Background()
	recs := mapHistory(11)
	n := len(recs) - 20
	db := chtest.Database(t)
	s := open(t, clickhouse.Config{Database: db})
	defer s.Close()
	if err := s.Apply(ctx, recs[:n]); err != nil {
		t.Fatal(err)
	}
	if err := s.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	reader := open(t, clickhouse.Config{Database: db})
	defer reader.Close()

	// The questions, and the answers before the rebuild.
	type question struct {
		kind string
		q    access.Query
	}
	var qs []question
	for i, q := range randhist.Questions(11, recs[:n], 40) {
		q.From, q.To = q.At.Add(-time.Hour), q.At.Add(time.Hour)
		qs = append(qs, question{[]string{"who", "what", "explain", "history", "decisions"}[i%5], q})
	}
	ask := func(st store.Reader, x question) (string, error) {
		var v any
		var err error
		switch x.kind {
		case "who":
			v, err = st.WhoCould(ctx, x.q)
		case "what":
			v, err = st.WhatCould(ctx, x.q)
		case "explain":
			v, err = st.Explain(ctx, x.q)
		case "history":
			v, err = st.History(ctx, access.Query{Tenant: x.q.Tenant, Principal: x.q.Principal, From: x.q.From, To: x.q.To})
		default:
			var ds []store.Decision
			err = st.Decisions(ctx, store.DecisionQuery{Tenant: x.q.Tenant}, func(d store.Decision) error {
				ds = append(ds, d)
				return nil
			})
			v = ds
		}
		b, _ := json.Marshal(v)
		return string(b), err
	}
	want := make([]string, len(qs))
	for i, x := range qs {
		var err error
		if want[i], err = ask(reader, x); err != nil {
			t.Fatal(err)
		}
	}

	var (
		asked, wrong atomic.Int64
		firstWrong   atomic.Value
		stop         = make(chan struct{})
		wg           sync.WaitGroup
	)
	for w := range 3 {
		wg.Go(func() {
			for i := w; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				x := qs[i%len(qs)]
				got, err := ask(reader, x)
				asked.Add(1)
				if err != nil || got != want[i%len(qs)] {
					wrong.Add(1)
					firstWrong.CompareAndSwap(nil, fmt.Sprintf("%s %+v: %v\n got %.300s\nwant %.300s", x.kind, x.q, err, got, want[i%len(qs)]))
				}
			}
		})
	}

	g, err := s.NewGeneration(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i += 50 {
		if err := g.Apply(ctx, recs[i:min(i+50, n)]); err != nil {
			t.Fatal(err)
		}
	}
	if err := g.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	before := asked.Load()
	old, err := s.Promote(ctx, g)
	if err != nil {
		t.Fatal(err)
	}
	g.Close()
	time.Sleep(500 * time.Millisecond) // the questions asked on the old generation end
	if err := s.DropGeneration(ctx, old); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	close(stop)
	wg.Wait()
	if wrong.Load() > 0 {
		t.Fatalf("%d of %d answers wrong during the rebuild; first:\n%s", wrong.Load(), asked.Load(), firstWrong.Load())
	}
	if before == 0 || asked.Load()-before < 10 {
		t.Fatalf("questions asked: %d before the swap, %d after: the test does not test what it should", before, asked.Load()-before)
	}
	if got := sqlOf(t, db, "SELECT argMax(database, version) FROM store_generation"); got != db+"_g1" {
		t.Fatalf("live generation %q, want %s_g1", got, db)
	}
	if got := sqlOf(t, db, "SELECT count() FROM system.tables WHERE database = ? AND name = 'decisions'", db); got != "0" {
		t.Fatalf("the old generation's tables are still there")
	}

	// The projector goes on, on the new generation.
	if err := s.Apply(ctx, recs[n:]); !errors.Is(err, clickhouse.ErrReplaced) {
		t.Fatalf("apply after the swap: %v, want ErrReplaced", err)
	}
	if p, err := s.Position(ctx); err != nil || p != recs[n-1].Position {
		t.Fatalf("position after the swap: %d, %v; want %d", p, err, recs[n-1].Position)
	}
	if err := s.Apply(ctx, recs[n:]); err != nil {
		t.Fatal(err)
	}
	if got, want := mapDigest(t, reader, recs, true), mapDigest(t, reference(t, recs), recs, true); got != want {
		t.Fatal("the map after the rebuild and the projector's next records differs from the embedded store's")
	}
	// A store opened now opens the live generation.
	again := open(t, clickhouse.Config{Database: db})
	defer again.Close()
	if again.Database() != db+"_g1" {
		t.Fatalf("reopened on %s", again.Database())
	}
	_ = event.DefaultTenant
}
