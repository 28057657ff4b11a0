package clickhouse

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/whocould/whocould/access"
	"github.com/whocould/whocould/event"
	"github.com/whocould/whocould/graph"
	"github.com/whocould/whocould/internal/chtest"
	"github.com/whocould/whocould/internal/synth"
)

// benchDecisions is n decision records like an enforcement point's: 10,000 principals, 8
// actions, 10,000 resources, over 30 days, 3% denied, most with a policy and a request id.
func benchDecisions(n int) []event.Record {
	r := rand.New(rand.NewPCG(1, 2))
	actions := []string{"select", "insert", "update", "delete", "create", "alter", "drop", "truncate"}
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	recs := make([]event.Record, n)
	for i := range recs {
		// The step first: i × 30 days overflows int64 nanoseconds past i = 3,558.
		tm := base.Add(time.Duration(i) * (30 * 24 * time.Hour / time.Duration(n))).Add(time.Duration(r.IntN(5000)) * time.Millisecond)
		d := event.Data{Principal: fmt.Sprintf("user:u%d", r.IntN(10000)), Action: "db.table." + actions[r.IntN(len(actions))],
			Resource: fmt.Sprintf("db:prod%d/t%d", r.IntN(100), r.IntN(100)), Effect: event.Allow, Policy: "authz.rego",
			Request: fmt.Sprintf("req-%016x", r.Uint64())}
		if r.IntN(100) < 3 {
			d.Effect, d.Reason = event.Deny, "no grant matches"
		}
		recs[i] = event.Record{Position: uint64(i + 1), Recorded: tm.Add(time.Second), Event: event.Event{
			ID: fmt.Sprintf("%d", i+1), Source: "opa://prod", Type: event.Decision, Time: tm, Data: d}}
	}
	return recs
}

func bytesPerRow(b *testing.B, s *Store, table string) float64 {
	var bytes, rows uint64
	if err := s.conn.QueryRow(context.Background(),
		"SELECT sum(bytes_on_disk), sum(rows) FROM system.parts WHERE active AND database = ? AND table = ?",
		s.cfg.Database, table).Scan(&bytes, &rows); err != nil {
		b.Fatal(err)
	}
	return float64(bytes) / float64(rows)
}

// BenchmarkApplyDecisions writes 1M decisions three ways, each into fresh tables, three times in
// turn (each reports its median): Apply in calls of 100,000 records; raw PrepareBatch of the same
// rows, appended row by row (batch.Append), one INSERT per 100,000; and raw PrepareBatch
// appended column by column. It reports rows/s of each, Apply's ratio to both, and bytes per
// decision on disk (system.parts), as inserted and after OPTIMIZE ... FINAL, and what one more
// copy of each decision in the archive as JSON would cost.
//
//	go test -run '^$' -bench ApplyDecisions -benchtime 1x ./store/clickhouse
func BenchmarkApplyDecisions(b *testing.B) {
	ctx := context.Background()
	const n, chunk = 1_000_000, 100_000
	recs := benchDecisions(n)
	var rows decisionRows
	for i := range recs {
		rows.add(&recs[i])
	}
	open := func() *Store {
		s, err := Open(ctx, Config{Addr: chtest.Addr(b), Database: chtest.Database(b)})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { s.Close() })
		return s
	}
	rate := func(f func()) float64 {
		start := time.Now()
		f()
		return n / time.Since(start).Seconds()
	}
	rawAppend := func(s *Store) {
		for i := 0; i < n; i += chunk {
			batch, err := s.conn.PrepareBatch(ctx, "INSERT INTO decisions ("+decisionColumns+")")
			if err != nil {
				b.Fatal(err)
			}
			r := &rows
			for k := i; k < i+chunk; k++ {
				if err := batch.Append(r.tenant[k], r.date[k], r.timeUS[k], r.position[k], r.principal[k], r.action[k], r.resource[k],
					r.allow[k], r.reason[k], r.policy[k], r.request[k], r.source[k], r.id[k], r.recordedUS[k]); err != nil {
					b.Fatal(err)
				}
			}
			if err := batch.Send(); err != nil {
				b.Fatal(err)
			}
			batch.Close()
		}
	}
	rawColumns := func(s *Store) {
		for i := 0; i < n; i += chunk {
			if err := insert(ctx, s, "decisions", decisionColumns, chunk, func(a, b int) []any { return rows.cols(i+a, i+b) }); err != nil {
				b.Fatal(err)
			}
		}
	}
	apply := func(s *Store) {
		for i := 0; i < n; i += chunk {
			if err := s.Apply(ctx, recs[i:i+chunk]); err != nil {
				b.Fatal(err)
			}
		}
		if err := s.Checkpoint(ctx); err != nil {
			b.Fatal(err)
		}
	}
	// Each way runs in turn, rounds times, into fresh tables; each reports its median.
	median := func(xs []float64) float64 { slices.Sort(xs); return xs[len(xs)/2] }
	rounds := 3
	for b.Loop() {
		var applyR, rawR, colR []float64
		var st, rawc *Store
		for range rounds {
			s := open()
			rawR = append(rawR, rate(func() { rawAppend(s) }))
			st = open()
			applyR = append(applyR, rate(func() { apply(st) }))
			rawc = open()
			colR = append(colR, rate(func() { rawColumns(rawc) }))
		}
		applyRows, rawRows, rawCols := median(applyR), median(rawR), median(colR)
		b.Logf("rows/s: apply %.0f, raw append %.0f, raw columns %.0f", applyR, rawR, colR)
		b.ReportMetric(applyRows, "apply_rows/s")
		b.ReportMetric(rawRows, "raw_append_rows/s")
		b.ReportMetric(rawCols, "raw_column_rows/s")
		b.ReportMetric(applyRows/rawRows, "apply/raw_append")
		b.ReportMetric(applyRows/rawCols, "apply/raw_column")
		b.ReportMetric(bytesPerRow(b, st, "decisions"), "B/decision")
		if err := st.conn.Exec(ctx, "OPTIMIZE TABLE decisions FINAL"); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(bytesPerRow(b, st, "decisions"), "B/decision_merged")
		b.Logf("bytes per decision by column, compressed: %s", columnBytes(b, st, "decisions", n))

		// What archiving each decision again, as JSON, would add.
		evs := make([]eventRow, n)
		for i := range recs {
			evs[i] = newEventRow(&recs[i])
		}
		if err := insert(ctx, rawc, "events", eventColumns, n, colsOf(evs, eventCols)); err != nil {
			b.Fatal(err)
		}
		if err := rawc.conn.Exec(ctx, "OPTIMIZE TABLE events FINAL"); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(bytesPerRow(b, rawc, "events"), "B/archived_decision_json")
	}
}

func columnBytes(b *testing.B, s *Store, table string, n int) string {
	rows, err := s.conn.Query(context.Background(),
		"SELECT name, data_compressed_bytes FROM system.columns WHERE database = ? AND table = ? ORDER BY data_compressed_bytes DESC",
		s.cfg.Database, table)
	if err != nil {
		b.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var name string
		var bytes uint64
		if err := rows.Scan(&name, &bytes); err != nil {
			b.Fatal(err)
		}
		out = append(out, fmt.Sprintf("%s %.1f", name, float64(bytes)/float64(n)))
	}
	return strings.Join(out, ", ")
}

// benchOrg is a synthetic organisation (internal/synth) as the log delivers it: in frames of
// 1024 records of one recorded time. Sized by WHOCOULD_BENCH_PRINCIPALS, _GROUPS and _GRANTS
// (default 10,000, 1,000 and 100,000).
func benchOrg(b *testing.B) (*synth.Org, []event.Record) {
	size := func(env string, def int) int {
		if n, err := strconv.Atoi(os.Getenv(env)); err == nil && n > 0 {
			return n
		}
		return def
	}
	o := synth.Generate(synth.Options{Seed: 1, Principals: size("WHOCOULD_BENCH_PRINCIPALS", 10_000),
		Groups: size("WHOCOULD_BENCH_GROUPS", 1_000), Grants: size("WHOCOULD_BENCH_GRANTS", 100_000)})
	recs := o.Records(1)
	for i := range recs {
		recs[i].Recorded = recs[i-i%1024].Recorded
	}
	return o, recs
}

// BenchmarkMap projects a synthetic organisation's change events into the ClickHouse permission
// map (Apply in calls of 8192 records, as the projector does), then asks who-could and
// what-could at random past times. It reports events/s of the projection (and of the graph
// alone, for what the map's rows cost), rows and bytes on disk per row of access_map, and each
// question's p50 and p99.
//
//	go test -run '^$' -bench Map -benchtime 1x ./store/clickhouse
//	WHOCOULD_BENCH_PRINCIPALS=100000 WHOCOULD_BENCH_GROUPS=10000 WHOCOULD_BENCH_GRANTS=1000000 go test ...
func BenchmarkMap(b *testing.B) {
	ctx := context.Background()
	o, recs := benchOrg(b)
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		g := graph.New()
		g.ApplyBatch(recs)
		graphRate := float64(len(recs)) / time.Since(t0).Seconds()

		s, err := Open(ctx, Config{Addr: chtest.Addr(b), Database: chtest.Database(b)})
		if err != nil {
			b.Fatal(err)
		}
		t0 = time.Now()
		for j := 0; j < len(recs); j += 8192 {
			if err := s.Apply(ctx, recs[j:min(j+8192, len(recs))]); err != nil {
				b.Fatal(err)
			}
		}
		took := time.Since(t0)
		var rows uint64
		if err := s.conn.QueryRow(ctx, "SELECT count() FROM access_map").Scan(&rows); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(len(recs))/took.Seconds(), "events/s")
		b.ReportMetric(graphRate, "graph-events/s")
		b.ReportMetric(float64(rows), "map-rows")
		b.ReportMetric(bytesPerRow(b, s, "access_map"), "B/map-row")

		r := rand.New(rand.NewPCG(3, 4))
		var who, what []time.Duration
		found := 0
		for range 300 {
			q := access.Query{Action: o.Actions[r.IntN(len(o.Actions))], Resource: o.Resources[r.IntN(len(o.Resources))] + "/rows",
				At: o.Start.Add(time.Duration(r.Int64N(int64(o.Span))))}
			t0 := time.Now()
			ans, err := s.WhoCould(ctx, q)
			who = append(who, time.Since(t0))
			if err != nil {
				b.Fatal(err)
			}
			found += len(ans.Principals)
			q.Principal = fmt.Sprintf("user:u%d", r.IntN(1000))
			t0 = time.Now()
			if _, err := s.WhatCould(ctx, q); err != nil {
				b.Fatal(err)
			}
			what = append(what, time.Since(t0))
		}
		slices.Sort(who)
		slices.Sort(what)
		b.ReportMetric(float64(who[len(who)/2].Microseconds()), "who-p50-µs")
		b.ReportMetric(float64(who[len(who)*99/100].Microseconds()), "who-p99-µs")
		b.ReportMetric(float64(what[len(what)/2].Microseconds()), "what-p50-µs")
		b.ReportMetric(float64(what[len(what)*99/100].Microseconds()), "what-p99-µs")
		b.ReportMetric(float64(found)/300, "principals/answer")
		s.Close()
	}
}
