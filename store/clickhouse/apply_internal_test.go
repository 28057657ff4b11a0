package clickhouse

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"

	"github.com/whocould/whocould/event"
	"github.com/whocould/whocould/finding"
	"github.com/whocould/whocould/internal/chtest"
	"github.com/whocould/whocould/store"
)

func openTest(t *testing.T, cfg Config) *Store {
	t.Helper()
	cfg.Addr, cfg.Database = chtest.Addr(t), chtest.Database(t)
	s, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func decisionRecords(from, n int) []event.Record {
	base := time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)
	recs := make([]event.Record, n)
	for i := range recs {
		p := from + i
		recs[i] = event.Record{Position: uint64(p), Recorded: base.Add(time.Duration(p) * time.Millisecond), Event: event.Event{
			ID: fmt.Sprint(p), Source: "t", Type: event.Decision, Time: base.Add(time.Duration(p%1000) * time.Minute),
			Data: event.Data{Principal: fmt.Sprintf("user:%d", p%7), Action: "db.read", Resource: "db:x", Effect: event.Allow}}}
	}
	return recs
}

func count(t *testing.T, s *Store, q string) uint64 {
	t.Helper()
	var n uint64
	if err := s.conn.QueryRow(context.Background(), q).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// A batch with a row that cannot be converted fails, and the store's only connection is not
// left broken: the next Apply and the reads work, on a pool of one.
func TestBadRowDoesNotPoisonThePool(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, Config{MaxOpenConns: 1, DialTimeout: 5 * time.Second})
	var rows decisionRows
	for _, r := range decisionRecords(1, 2) {
		rows.add(&r)
	}
	for _, bad := range []func(i, j int) []any{
		func(i, j int) []any { // time_us as text
			cols := rows.cols(i, j)
			cols[2] = []string{"not a number", "2"}
			return cols
		},
		func(i, j int) []any { // a column short of rows
			cols := rows.cols(i, j)
			cols[4] = rows.principal[:1]
			return cols
		},
	} {
		if err := insert(ctx, s, "decisions", decisionColumns, rows.len(), bad); err == nil {
			t.Fatal("a batch with a bad row was accepted")
		}
	}
	recs := decisionRecords(1, 1000)
	if err := s.Apply(ctx, recs); err != nil {
		t.Fatalf("apply after a bad batch: %v", err)
	}
	var n int
	if err := s.Decisions(ctx, store.DecisionQuery{}, func(store.Decision) error { n++; return nil }); err != nil || n != 1000 {
		t.Fatalf("decisions after a bad batch: %d, %v", n, err)
	}
	if got := count(t, s, "SELECT count() FROM decisions"); got != 1000 {
		t.Fatalf("rows: %d, want 1000 (nothing of the bad batches)", got)
	}
}

// Applies cut short by their context, at any point of their inserts, leave the store exact
// once one succeeds, and the pool usable.
func TestCancelledApplies(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, Config{MaxOpenConns: 3, BlockRows: 2000})
	recs := decisionRecords(1, 60000)
	failed, partial := 0, 0
	for d := time.Millisecond; ; d += d / 4 {
		cctx, cancel := context.WithTimeout(ctx, d)
		err := s.Apply(cctx, recs)
		cancel()
		if err == nil {
			break
		}
		failed++
		if n := count(t, s, "SELECT count() FROM decisions"); n > 0 && n < 60000 {
			partial++
		}
	}
	t.Logf("%d applies cut short, %d of them after writing some rows", failed, partial)
	if failed == 0 {
		t.Error("no apply was cut short")
	}
	if got := count(t, s, "SELECT count() FROM decisions"); got != 60000 {
		t.Errorf("decisions: %d rows, want 60000", got)
	}
	if got := count(t, s, "SELECT uniqExact(position) FROM decisions"); got != 60000 {
		t.Errorf("decisions: %d positions, want 60000", got)
	}
	if got := count(t, s, "SELECT toUInt64(countMerge(uses)) FROM usage"); got != 60000 {
		t.Errorf("usage counts %d uses, want 60000", got)
	}
	if err := s.Apply(ctx, decisionRecords(60001, 10)); err != nil {
		t.Fatalf("apply after: %v", err)
	}
}

func TestSplitStatements(t *testing.T) {
	got := splitStatements("-- a comment; with a semicolon;\nCREATE TABLE a (x String) -- why\n  ENGINE = Memory;\n\n;\nSELECT 1;\nSELECT 2")
	want := []string{"CREATE TABLE a (x String) -- why\n  ENGINE = Memory", "SELECT 1", "SELECT 2"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestMigrationsLoad(t *testing.T) {
	ms, err := loadMigrations(migrationFiles, "migrations")
	if err != nil {
		t.Fatal(err)
	}
	for i, m := range ms {
		if m.version != uint32(i+1) || len(m.stmts) == 0 || len(m.sum) != 64 {
			t.Errorf("migration %d: %+v", i, m)
		}
		for _, st := range m.stmts {
			// What ClickHouse 18.16 does not run, or hangs on.
			up := strings.ToUpper(st)
			for _, bad := range []string{"VALUES", "DATETIME64", "LOWCARDINALITY", " TTL ", "CODEC(", "MAP(", "JSONEXTRACT", "BOOL "} {
				if strings.Contains(up, bad) {
					t.Errorf("migration %s uses %s, which ClickHouse 18.16 lacks or hangs on:\n%s", m.fileName, bad, st)
				}
			}
		}
	}
}

// TestPutFindingsInBlocks: findings sent in several blocks of one insert all arrive, whole.
func TestPutFindingsInBlocks(t *testing.T) {
	s := openTest(t, Config{})
	// One part per block sent (the server does not squash them), kept apart: what shows that
	// the findings went in several.
	ctx := ch.Context(context.Background(), ch.WithSettings(ch.Settings{"min_insert_block_size_rows": 1, "min_insert_block_size_bytes": 1}))
	if err := s.catalog.Exec(ctx, "SYSTEM STOP MERGES findings"); err != nil {
		t.Fatal(err)
	}
	defer func(n int) { findingsBlockBytes = n }(findingsBlockBytes)
	findingsBlockBytes = 4 << 10 // about 4 findings a block
	var fs []finding.Finding
	for i := range 100 {
		fs = append(fs, finding.Finding{ID: fmt.Sprintf("F%03d", i), Rule: finding.Drift, Kind: "extra", Severity: finding.Low,
			Status: finding.Open, Summary: strings.Repeat("x", 1000+i)})
	}
	if err := s.PutFindings(ctx, "", fs); err != nil {
		t.Fatal(err)
	}
	if n := count(t, s, "SELECT count() FROM findings"); n != 100 {
		t.Fatalf("%d rows written, want 100 (in about 25 blocks)", n)
	}
	if n := count(t, s, "SELECT count() FROM system.parts WHERE database = currentDatabase() AND table = 'findings' AND active"); n < 20 {
		t.Fatalf("the findings are in %d parts, want one per block of about 4 findings", n)
	}
	got, err := s.Findings(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 100 {
		t.Fatalf("%d findings read back, want 100", len(got))
	}
	for i, f := range got {
		if f.ID != fs[i].ID || f.Summary != fs[i].Summary {
			t.Fatalf("finding %d: %s with a summary of %d bytes, want %s with %d", i, f.ID, len(f.Summary), fs[i].ID, len(fs[i].Summary))
		}
	}
}
