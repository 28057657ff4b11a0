package clickhouse_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/whocould/whocould/access"
	"github.com/whocould/whocould/event"
	"github.com/whocould/whocould/finding"
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

// Findings are not rebuilt from the log: they live in the catalog database, and survive
// rebuilds — the catalog's own generation dropped, then a rebuilt one — unchanged, seen alike
// from every store on the catalog, the generation being rebuilt included.
func TestFindingsSurviveRebuilds(t *testing.T) {
	ctx := context.Background()
	recs := mapHistory(5)
	db := chtest.Database(t)
	s := open(t, clickhouse.Config{Database: db})
	defer s.Close()
	if err := s.Apply(ctx, recs); err != nil {
		t.Fatal(err)
	}
	if err := s.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	since := time.Date(2026, 1, 5, 0, 0, 0, 123456789, time.UTC)
	put := []finding.Finding{
		{ID: finding.IDOf("default", finding.Drift, "a"), Rule: finding.Drift, Severity: finding.High, Status: finding.Acknowledged,
			Principal: "user:a", Summary: "Drift.", Since: since, Key: "a", Details: map[string]any{"extra": []any{"x"}},
			Evidence: []finding.Evidence{{Kind: "baseline", Text: "Not in the baseline.", Time: finding.Time(since)}}},
		{ID: finding.IDOf("default", finding.ShadowAccess, "b"), Rule: finding.ShadowAccess, Severity: finding.Critical,
			Status: finding.Open, Summary: "Shadow.", Since: since, Key: "b"},
	}
	if err := s.PutFindings(ctx, "", put); err != nil {
		t.Fatal(err)
	}
	findingsOf := func(st *clickhouse.Store) string {
		t.Helper()
		fs, err := st.Findings(ctx, "default")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(fs)
		return string(b)
	}
	eventsOf := func(st *clickhouse.Store) string {
		t.Helper()
		var rs []event.Record
		if err := st.Events(ctx, "", func(r event.Record) error { rs = append(rs, r); return nil }); err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(rs)
		return string(b)
	}
	want, wantEvents := findingsOf(s), eventsOf(s)
	if !strings.Contains(want, `"status":"acknowledged"`) || strings.Count(want, `"rule"`) != 2 {
		t.Fatalf("findings before the rebuild: %s", want)
	}

	for round := 1; round <= 2; round++ {
		g, err := s.NewGeneration(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := g.Apply(ctx, recs); err != nil {
			t.Fatal(err)
		}
		if err := g.Checkpoint(ctx); err != nil {
			t.Fatal(err)
		}
		if got := findingsOf(g); got != want {
			t.Fatalf("round %d: findings seen from the generation being rebuilt:\n%s\nwant\n%s", round, got, want)
		}
		old, err := s.Promote(ctx, g)
		if err != nil {
			t.Fatal(err)
		}
		g.Close()
		if err := s.DropGeneration(ctx, old); err != nil {
			t.Fatal(err)
		}
		if got := findingsOf(s); got != want {
			t.Fatalf("round %d: findings after the rebuild (%s dropped):\n%s\nwant\n%s", round, old, got, want)
		}
		if got := eventsOf(s); got != wantEvents {
			t.Fatalf("round %d: events after the rebuild differ", round)
		}
		again := open(t, clickhouse.Config{Database: db})
		if got := findingsOf(again); got != want {
			t.Fatalf("round %d: findings from a store opened after the rebuild:\n%s\nwant\n%s", round, got, want)
		}
		again.Close()
		live := fmt.Sprintf("%s_g%d", db, round)
		if got := sqlOf(t, "", "SELECT count() FROM "+live+".findings"); got != "0" {
			t.Fatalf("round %d: %s.findings holds %s rows: findings belong to the catalog", round, live, got)
		}
	}
	// And they are still written where they are read.
	next := put[1]
	next.Status = finding.Resolved
	if err := s.PutFindings(ctx, "default", []finding.Finding{next}); err != nil {
		t.Fatal(err)
	}
	if got := findingsOf(s); !strings.Contains(got, `"status":"resolved"`) || strings.Count(got, `"rule"`) != 2 {
		t.Fatalf("findings replaced after the rebuilds: %s", got)
	}
}
