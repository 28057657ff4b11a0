package clickhouse_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/whocould/whocould/access"
	"github.com/whocould/whocould/event"
	"github.com/whocould/whocould/internal/chtest"
	"github.com/whocould/whocould/internal/difftest"
	"github.com/whocould/whocould/internal/randhist"
	"github.com/whocould/whocould/internal/scenario"
	"github.com/whocould/whocould/store/clickhouse"
	"github.com/whocould/whocould/store/embedded"
)

// applied applies the records in stretches that cut the log's frames (groups of one recorded
// time) apart, with a checkpoint and a reopen in the middle — so the permission map is rebuilt
// from the archive and continues a split frame — and a replay of what was applied; every answer
// comes from ClickHouse.
func applied(t *testing.T, recs []event.Record) access.Querier {
	t.Helper()
	ctx := context.Background()
	db := chtest.Database(t)
	s := open(t, clickhouse.Config{Database: db})
	half := len(recs) / 2
	sizes := []int{1, 7, 3, 31, 2, 64}
	apply := func(s *clickhouse.Store, recs []event.Record) {
		for i, k := 0, 0; i < len(recs); k++ {
			j := min(i+sizes[k%len(sizes)], len(recs))
			if err := s.Apply(ctx, recs[i:j]); err != nil {
				t.Fatal(err)
			}
			i = j
		}
	}
	apply(s, recs[:half])
	if err := s.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = open(t, clickhouse.Config{Database: db})
	t.Cleanup(func() { s.Close() })
	apply(s, recs[:half+half/2]) // the first half again: skipped
	apply(s, recs[half+half/2:])
	if err := s.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	return s
}

func TestScenarios(t *testing.T) {
	scenario.Run(t, "../../testdata/scenarios", applied)
}

func TestDifferential(t *testing.T) {
	difftest.Run(t, applied, difftest.Options{CompareHistory: true, Questions: 200})
}

// mapDigest is every principal's whole history, as known now and at a few recorded times, and
// what each could do at a few times: the permission map, to compare stores.
func mapDigest(t *testing.T, q access.Querier, recs []event.Record, knownAts bool) string {
	t.Helper()
	ctx := context.Background()
	from, to := time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC)
	var b strings.Builder
	known := []*time.Time{nil}
	for _, i := range []int{len(recs) / 3, len(recs) / 2, len(recs) - 2} {
		if !knownAts {
			break
		}
		k := recs[i].Recorded
		known = append(known, &k)
	}
	for _, tenant := range []string{event.DefaultTenant, "acme"} {
		for _, p := range principalsOf(recs) {
			for _, k := range known {
				h, err := q.History(ctx, access.Query{Tenant: tenant, Principal: p, From: from, To: to, KnownAt: k})
				if err != nil {
					t.Fatal(err)
				}
				js, _ := json.Marshal(h)
				b.Write(js)
			}
			for _, r := range recs[:20] {
				w, err := q.WhatCould(ctx, access.Query{Tenant: tenant, Principal: p, At: r.Time})
				if err != nil {
					t.Fatal(err)
				}
				js, _ := json.Marshal(w)
				b.Write(js)
			}
		}
	}
	return b.String()
}

func principalsOf(recs []event.Record) []string {
	var ps []string
	for _, r := range recs {
		for _, s := range []string{r.Data.Principal, r.Data.Member, r.Data.Subject} {
			if s != "" && event.KindOf(s) == event.KindPrincipal {
				ps = append(ps, s)
			}
		}
	}
	slices.Sort(ps)
	return slices.Compact(ps)
}

// reference is the embedded store's answers to the same records.
func reference(t *testing.T, recs []event.Record) access.Querier {
	t.Helper()
	st, err := embedded.Open(embedded.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Apply(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
	return st
}

// mapHistory is a random history whose records come in frames of up to five records of one
// recorded time, as the log delivers them.
func mapHistory(seed int64) []event.Record {
	recs := randhist.Dedup(randhist.Generate(seed, randhist.Options{Changes: 600}))
	for i := range recs {
		recs[i].Recorded = recs[i-i%5].Recorded
	}
	return recs
}

// An insert of the map's rows that fails on the server after some of its blocks were written
// fails Apply; the retry deletes what it left, rebuilds the graphs from the archive and ends
// with the map the embedded store has.
func TestMapFailedApplyIsRetriedExactly(t *testing.T) {
	ctx := context.Background()
	recs := mapHistory(7)
	want := mapDigest(t, reference(t, recs), recs, true)
	db := chtest.Database(t)
	s := open(t, clickhouse.Config{Database: db, BlockRows: 40})
	defer s.Close()
	half := len(recs) / 2
	if err := s.Apply(ctx, recs[:half]); err != nil {
		t.Fatal(err)
	}
	before := sqlOf(t, db, "SELECT count() FROM access_map")
	poisoned := recs[half+(len(recs)-half)/2].Position // rows of earlier versions go in earlier blocks
	exec(t, db, fmt.Sprintf(`CREATE MATERIALIZED VIEW poison ENGINE = Memory AS SELECT throwIf(version >= %d) AS x FROM access_map`, poisoned))
	err := s.Apply(ctx, recs[half:])
	if err == nil || !strings.Contains(err.Error(), "throwIf") {
		t.Fatalf("apply with a poisoned row: %v", err)
	}
	if after := sqlOf(t, db, "SELECT count() FROM access_map"); after == before {
		t.Fatalf("the failed apply left no row of the map (%s): the test does not test what it should", after)
	}
	exec(t, db, `DROP TABLE poison`)
	if err := s.Apply(ctx, recs[half-10:]); err != nil {
		t.Fatal(err)
	}
	if got := mapDigest(t, s, recs, true); got != want {
		t.Fatalf("the map after a failed apply and its retry differs from the embedded store's")
	}
}

// The projector killed after writing rows of the map but before its checkpoint: reopened, the
// store deletes them and replays from the checkpoint, in other stretches than before.
func TestMapReplayAfterCrashBeforeCheckpoint(t *testing.T) {
	ctx := context.Background()
	recs := mapHistory(8)
	want := mapDigest(t, reference(t, recs), recs, true)
	db := chtest.Database(t)
	s := open(t, clickhouse.Config{Database: db})
	n := len(recs)
	if err := s.Apply(ctx, recs[:n/3]); err != nil {
		t.Fatal(err)
	}
	if err := s.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Apply(ctx, recs[n/3:2*n/3]); err != nil {
		t.Fatal(err)
	}
	s.Close() // killed
	s = open(t, clickhouse.Config{Database: db})
	defer s.Close()
	for _, part := range [][]event.Record{recs[n/3 : n/2], recs[n/2 : n-5], recs[n-5:]} {
		if err := s.Apply(ctx, part); err != nil {
			t.Fatal(err)
		}
	}
	if got := mapDigest(t, s, recs, true); got != want {
		t.Fatalf("the map after a crash and the replay differs from the embedded store's")
	}
}
