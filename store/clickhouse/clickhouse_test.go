package clickhouse_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"

	"github.com/whocould/whocould/event"
	"github.com/whocould/whocould/internal/chtest"
	"github.com/whocould/whocould/store"
	"github.com/whocould/whocould/store/clickhouse"
	"github.com/whocould/whocould/store/storetest"
)

func open(t *testing.T, cfg clickhouse.Config) *clickhouse.Store {
	t.Helper()
	if cfg.Addr == "" {
		cfg.Addr = chtest.Addr(t)
	}
	if cfg.Database == "" {
		cfg.Database = chtest.Database(t)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := clickhouse.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestConformance(t *testing.T) {
	conformance(t, func(t *testing.T) string { return chtest.Database(t) },
		func(t *testing.T, db string) store.Store { return open(t, clickhouse.Config{Database: db}) })
}

// conformance runs the suite on stores open opens, each on a fresh database (newDB), reopened
// on theirs.
func conformance(t *testing.T, newDB func(t *testing.T) string, open func(t *testing.T, db string) store.Store) {
	var (
		mu  sync.Mutex
		dbs = map[store.Store]string{}
	)
	opened := func(t *testing.T, db string) store.Store {
		s := open(t, db)
		mu.Lock()
		dbs[s] = db
		mu.Unlock()
		return s
	}
	storetest.Run(t, func(t *testing.T) store.Store { return opened(t, newDB(t)) }, storetest.Capabilities{
		Reopen: func(t *testing.T, closed store.Store) store.Store {
			mu.Lock()
			db := dbs[closed]
			mu.Unlock()
			return opened(t, db)
		},
	})
}

// sqlOf runs a query on the test server and returns its rows, each as a line of tab-separated
// values.
func sqlOf(t *testing.T, db, query string, args ...any) string {
	t.Helper()
	conn, err := ch.Open(&ch.Options{Addr: []string{chtest.Addr(t)}, Auth: ch.Auth{Database: db}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	rows, err := conn.Query(context.Background(), query, args...)
	if err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		vals := make([]any, len(rows.ColumnTypes()))
		for i, c := range rows.ColumnTypes() {
			vals[i] = newOf(c.ScanType())
		}
		if err := rows.Scan(vals...); err != nil {
			t.Fatal(err)
		}
		var line []string
		for _, v := range vals {
			line = append(line, fmt.Sprint(deref(v)))
		}
		out = append(out, strings.Join(line, "\t"))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return strings.Join(out, "\n")
}

func exec(t *testing.T, db, stmt string) {
	t.Helper()
	conn, err := ch.Open(&ch.Options{Addr: []string{chtest.Addr(t)}, Auth: ch.Auth{Database: db}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.Exec(context.Background(), stmt); err != nil {
		t.Fatalf("%s: %v", stmt, err)
	}
}

// The schema and the migrations table after a second Open are what they were after the first.
func TestMigrationsTwice(t *testing.T) {
	db := chtest.Database(t)
	const tables = `SELECT name, engine, create_table_query FROM system.tables WHERE database = ? ORDER BY name`
	const migrations = `SELECT version, name, checksum, applied_at FROM schema_migrations ORDER BY version`
	s := open(t, clickhouse.Config{Database: db})
	s.Close()
	schema, applied := sqlOf(t, db, tables, db), sqlOf(t, db, migrations)
	for _, want := range []string{"approvals\tMergeTree", "decisions\tMergeTree", "events\tMergeTree",
		"projector_checkpoint\tReplacingMergeTree", "schema_migrations\tReplacingMergeTree", "tenants\tReplacingMergeTree",
		"tenants_decisions_mv\tMaterializedView", "tenants_mv\tMaterializedView", "usage\tAggregatingMergeTree", "usage_mv\tMaterializedView",
		"access_map\tMergeTree", "store_generation\tMergeTree", "findings\tReplacingMergeTree"} {
		if !strings.Contains(schema, want) {
			t.Errorf("schema has no %q:\n%s", want, schema)
		}
	}
	if got := sqlOf(t, db, `SELECT version, name FROM schema_migrations ORDER BY version`); got != "1\tevents\n2\tdecisions\n3\tapprovals\n4\tcheckpoint\n5\taccess_map\n6\tgeneration\n7\tfindings" {
		t.Errorf("migrations recorded:\n%s", got)
	}
	time.Sleep(1100 * time.Millisecond) // a migration applied again would show a later applied_at
	s = open(t, clickhouse.Config{Database: db})
	s.Close()
	if got := sqlOf(t, db, tables, db); got != schema {
		t.Errorf("schema changed by a second Open:\n%s\nwas\n%s", got, schema)
	}
	if got := sqlOf(t, db, migrations); got != applied {
		t.Errorf("migrations table changed by a second Open:\n%s\nwas\n%s", got, applied)
	}
}

func TestOpenCreatesTheDatabase(t *testing.T) {
	db := chtest.Database(t) + "_new"
	t.Cleanup(func() { exec(t, "", "DROP DATABASE IF EXISTS "+db) })
	s := open(t, clickhouse.Config{Database: db})
	defer s.Close()
	if got := sqlOf(t, "", "SELECT count() FROM system.tables WHERE database = ? AND name = 'decisions'", db); got != "1" {
		t.Fatalf("decisions table in the new database: %s", got)
	}
}

func TestOpenFailsClearly(t *testing.T) {
	ctx := context.Background()
	_, err := clickhouse.Open(ctx, clickhouse.Config{Addr: "127.0.0.1:1", DialTimeout: time.Second})
	if err == nil || !strings.Contains(err.Error(), "127.0.0.1:1") {
		t.Errorf("open on a closed port: %v", err)
	}
	_, err = clickhouse.Open(ctx, clickhouse.Config{Database: "bad-name"})
	if err == nil || !strings.Contains(err.Error(), "database") {
		t.Errorf("open with a bad database name: %v", err)
	}
}

// history is decisions and approvals over several days, in delivery order.
func history(n int) []event.Record {
	base := time.Date(2026, 1, 30, 0, 0, 0, 0, time.UTC)
	recs := make([]event.Record, 0, n)
	for i := range n {
		r := event.Record{Position: uint64(i + 1), Recorded: base.Add(time.Duration(i) * time.Minute)}
		tm := base.Add(time.Duration((i*7919)%(n+1)) * time.Hour) // out of order, across months
		switch {
		case i%10 == 3:
			r.Event = event.Event{Type: event.ApprovalRequested, Data: event.Data{Request: fmt.Sprintf("r%d", i%40), Requester: "user:a"}}
		case i%10 == 6:
			r.Event = event.Event{Type: event.ApprovalGranted, Data: event.Data{Request: fmt.Sprintf("r%d", (i-3)%40), Approver: "user:b"}}
		case i%10 == 9:
			r.Event = event.Event{Type: event.GrantAdded, Data: event.Data{Subject: "user:a", Action: "db.read", Resource: "db:x"}}
		default:
			effect := event.Allow
			if i%7 == 0 {
				effect = event.Deny
			}
			r.Event = event.Event{Type: event.Decision, Data: event.Data{Principal: fmt.Sprintf("user:%d", i%5), Action: "db.read",
				Resource: fmt.Sprintf("db:t%d", i%3), Effect: effect}}
		}
		r.ID, r.Source, r.Time = fmt.Sprintf("e%d", i+1), "test", tm
		if i%4 == 0 {
			r.Data.Tenant = "acme"
		}
		recs = append(recs, r)
	}
	return recs
}

type state struct {
	decisions map[string][]store.Decision
	usage     map[string][]store.Use
	approvals map[string]store.Approval
	rows      string
}

func stateOf(t *testing.T, s *clickhouse.Store, db string, recs []event.Record) state {
	t.Helper()
	ctx := context.Background()
	st := state{decisions: map[string][]store.Decision{}, usage: map[string][]store.Use{}, approvals: map[string]store.Approval{}}
	for _, tn := range []string{"default", "acme"} {
		if err := s.Decisions(ctx, store.DecisionQuery{Tenant: tn}, func(d store.Decision) error {
			st.decisions[tn] = append(st.decisions[tn], d)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		var us []store.Use
		if err := s.Usage(ctx, store.DecisionQuery{Tenant: tn}, func(u store.Use) error { us = append(us, u); return nil }); err != nil {
			t.Fatal(err)
		}
		st.usage[tn] = us
	}
	for _, r := range recs {
		if r.Data.Request != "" {
			a, err := s.Approval(ctx, r.TenantOrDefault(), r.Data.Request)
			if err != nil {
				t.Fatal(err)
			}
			st.approvals[r.TenantOrDefault()+"/"+r.Data.Request] = a
		}
	}
	st.rows = sqlOf(t, db, `SELECT * FROM (
		SELECT 'events' AS t, count(), uniqExact(position) FROM events UNION ALL
		SELECT 'decisions' AS t, count(), uniqExact(position) FROM decisions UNION ALL
		SELECT 'approvals' AS t, count(), uniqExact(position) FROM approvals UNION ALL
		SELECT 'usage' AS t, toUInt64(countMerge(uses)), toUInt64(0) FROM usage) ORDER BY t`)
	return st
}

func sameState(t *testing.T, what string, got, want state) {
	t.Helper()
	if fmt.Sprint(got.decisions) != fmt.Sprint(want.decisions) {
		t.Errorf("%s: decisions differ", what)
	}
	if fmt.Sprint(got.usage) != fmt.Sprint(want.usage) {
		t.Errorf("%s: usage differs:\n%v\nwant\n%v", what, got.usage, want.usage)
	}
	if fmt.Sprint(got.approvals) != fmt.Sprint(want.approvals) {
		t.Errorf("%s: approvals differ", what)
	}
	if got.rows != want.rows {
		t.Errorf("%s: rows (table, rows, distinct positions):\n%s\nwant\n%s", what, got.rows, want.rows)
	}
}

// The projector killed after its rows were written but before its checkpoint: the restarted
// store replays from the checkpoint, and nothing is doubled (decisions, usage, approvals,
// archive).
func TestReplayAfterCrashBeforeCheckpoint(t *testing.T) {
	ctx := context.Background()
	recs := history(3000)
	refDB := chtest.Database(t)
	ref := open(t, clickhouse.Config{Database: refDB})
	defer ref.Close()
	if err := ref.Apply(ctx, recs); err != nil {
		t.Fatal(err)
	}
	want := stateOf(t, ref, refDB, recs)

	db := chtest.Database(t)
	s := open(t, clickhouse.Config{Database: db})
	if err := s.Apply(ctx, recs[:1000]); err != nil {
		t.Fatal(err)
	}
	if err := s.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Apply(ctx, recs[1000:2000]); err != nil {
		t.Fatal(err)
	}
	s.Close() // killed: 1001-2000 written, not checkpointed

	s = open(t, clickhouse.Config{Database: db})
	defer s.Close()
	if p, err := s.Position(ctx); err != nil || p != 1000 {
		t.Fatalf("position after the crash: %d, %v; want the checkpoint, 1000", p, err)
	}
	// The projector replays from 1001, in other stretches than before.
	for _, part := range [][]event.Record{recs[1000:1500], recs[1500:2500], recs[2500:]} {
		if err := s.Apply(ctx, part); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	sameState(t, "after the crash and the replay", stateOf(t, s, db, recs), want)
}

// An insert that fails on the server after part of the rows were written (here: a
// materialized view that throws, on the archive only) fails Apply; once the cause is gone, the
// same Apply writes exactly the missing rows, on the same pool.
func TestFailedApplyIsRetriedExactly(t *testing.T) {
	ctx := context.Background()
	recs := history(2000)
	refDB := chtest.Database(t)
	ref := open(t, clickhouse.Config{Database: refDB})
	defer ref.Close()
	if err := ref.Apply(ctx, recs); err != nil {
		t.Fatal(err)
	}
	want := stateOf(t, ref, refDB, recs)

	db := chtest.Database(t)
	s := open(t, clickhouse.Config{Database: db, MaxOpenConns: 3})
	defer s.Close()
	if err := s.Apply(ctx, recs[:500]); err != nil {
		t.Fatal(err)
	}
	exec(t, db, `CREATE MATERIALIZED VIEW poison ENGINE = Memory AS SELECT throwIf(position = 1234) AS x FROM events`)
	err := s.Apply(ctx, recs[500:])
	if err == nil || !strings.Contains(err.Error(), "throwIf") {
		t.Fatalf("apply with a poisoned row: %v", err)
	}
	if p, _ := s.Position(ctx); p != 500 {
		t.Fatalf("position after a failed apply: %d, want 500", p)
	}
	if got := sqlOf(t, db, "SELECT count() FROM decisions"); got == "350" {
		t.Fatalf("the failed apply wrote no decision: the test does not test what it should")
	}
	exec(t, db, `DROP TABLE poison`)
	if err := s.Apply(ctx, recs); err != nil {
		t.Fatal(err)
	}
	sameState(t, "after the failed apply and its retry", stateOf(t, s, db, recs), want)
}

func TestConfig(t *testing.T) {
	if err := (clickhouse.Config{}).WithDefaults().Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	err := clickhouse.Config{Addr: "nohostport", Database: "1x", Username: "u", DialTimeout: -1, ReadTimeout: 1,
		MaxOpenConns: 2, MaxIdleConns: 3, ConnMaxLifetime: 1, BlockRows: 0}.Validate()
	for _, field := range []string{"addr", "database", "dial_timeout", "max_idle_conns", "block_rows"} {
		if err == nil || !strings.Contains(err.Error(), "clickhouse config: "+field+":") {
			t.Errorf("validate names %s: %v", field, err)
		}
	}
	if err != nil && strings.Contains(err.Error(), "read_timeout") {
		t.Errorf("read_timeout is fine: %v", err)
	}
	var zero clickhouse.Config
	if d := zero.WithDefaults(); d.Addr != clickhouse.DefaultAddr || d.Database != "whocould" || d.BlockRows <= 0 {
		t.Errorf("defaults: %+v", d)
	}
}
