package clickhouse

import (
	"context"
	"encoding/binary"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"
	"github.com/klauspost/compress/zstd"

	"github.com/whocould/whocould/demo"
	"github.com/whocould/whocould/event"
	"github.com/whocould/whocould/internal/chtest"
)

// archiveRecords is n records of change and approval events, as the archive keeps them: those
// of a generated organisation (demo) large enough to have n of them, in event-time order,
// recorded a second after they happened.
func archiveRecords(b testing.TB, n int) []event.Record {
	h := demo.Generate(1, demo.Options{People: n * 10 / 27, DecisionsPerDay: 1})
	recs := make([]event.Record, 0, n)
	for _, e := range h.Events {
		if e.Type == event.Decision {
			continue
		}
		if len(recs) == n {
			break
		}
		recs = append(recs, event.Record{Event: e, Position: uint64(len(recs) + 1), Recorded: e.Time.Add(time.Second)})
	}
	if len(recs) < n {
		b.Fatalf("the generated organisation has %d change and approval events, want %d", len(recs), n)
	}
	return recs
}

// BenchmarkSizing is the sizing note's measurement (deploy/clickhouse/README.md): 1M decisions
// (benchDecisions) and 1M archived change and approval events (archiveRecords), each written by
// Apply into fresh tables of the default schema and merged (OPTIMIZE ... FINAL). It reports
// bytes on disk per row (system.parts, active parts) and logs each column's compressed bytes per
// row (system.columns). Then, as far as ClickHouse 18.16 can show it, the LowCardinality part of
// the modern schema: the same rows copied into tables with the modern rendering's column types
// but without codecs or TTL, which 18.16 lacks (LowCardinality needs
// allow_experimental_low_cardinality_type there). And, since 18.16 has no Delta codec, an
// estimate of it: the time and position columns compressed here as ClickHouse would, with ZSTD
// and with Delta then ZSTD (a simulation, logged beside what the server measured).
//
//	go test -run '^$' -bench Sizing -benchtime 1x -timeout 30m ./store/clickhouse
func BenchmarkSizing(b *testing.B) {
	ctx := context.Background()
	const n = 1_000_000
	decisions := benchDecisions(n)
	archive := archiveRecords(b, n)
	for b.Loop() {
		for _, t := range []struct {
			name   string
			recs   []event.Record
			tables []string
		}{
			{"decision", decisions, []string{"decisions", "usage"}},
			{"event", archive, []string{"events", "approvals"}},
		} {
			s, err := Open(ctx, Config{Addr: chtest.Addr(b), Database: chtest.Database(b)})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			for i := 0; i < n; i += 100_000 {
				if err := s.Apply(ctx, t.recs[i:i+100_000]); err != nil {
					b.Fatal(err)
				}
			}
			for _, table := range t.tables {
				if err := s.conn.Exec(ctx, "OPTIMIZE TABLE "+table+" FINAL"); err != nil {
					b.Fatal(err)
				}
				bytes, rows := partBytes(b, s, table)
				b.Logf("%s: %d rows, %.1f B/row on disk; by column, compressed B/row: %s", table, rows, float64(bytes)/float64(rows),
					columnBytes(b, s, table, int(rows)))
			}
			main := t.tables[0]
			bytes, rows := partBytes(b, s, main)
			b.ReportMetric(float64(bytes)/float64(rows), "B/"+t.name)
			b.Logf("%s, simulated B/row (ZSTD / Delta+ZSTD): %s", main, codecEstimates(b, s, main))

			// The LowCardinality columns of the modern schema, on 18.16.
			lc, err := lowCardinalityCopy(ctx, s, main)
			if err != nil {
				b.Logf("%s with LowCardinality: not measured: %v", main, err)
				continue
			}
			bytes, rows = partBytes(b, s, lc)
			b.Logf("%s with LowCardinality (18.16, experimental): %.1f B/row on disk; by column: %s", main,
				float64(bytes)/float64(rows), columnBytes(b, s, lc, int(rows)))
			b.ReportMetric(float64(bytes)/float64(rows), "B/"+t.name+"_lowcardinality")
		}
	}
}

func partBytes(b *testing.B, s *Store, table string) (bytes, rows uint64) {
	if err := s.conn.QueryRow(context.Background(),
		"SELECT sum(bytes_on_disk), sum(rows) FROM system.parts WHERE active AND database = ? AND table = ?",
		s.cfg.Database, table).Scan(&bytes, &rows); err != nil {
		b.Fatal(err)
	}
	return bytes, rows
}

// lowCardinalityCopy copies table into table_lc, made with the column types of the modern
// rendering (codecs, TTL and its settings removed), merged, and returns its name.
func lowCardinalityCopy(ctx context.Context, s *Store, table string) (string, error) {
	ms, err := loadMigrationsFor(migrationFiles, "migrations", schemaOptions{Modern: true})
	if err != nil {
		return "", err
	}
	create := regexp.MustCompile(`^CREATE TABLE IF NOT EXISTS ` + table + ` \(`)
	strip := regexp.MustCompile(` CODEC\([^)]*\)|\nTTL .*|\nSETTINGS .*`)
	var stmt string
	for _, m := range ms {
		for _, st := range m.stmts {
			if create.MatchString(st) {
				stmt = strings.Replace(strip.ReplaceAllString(st, ""), table+" (", table+"_lc (", 1)
			}
		}
	}
	if stmt == "" {
		return "", fmt.Errorf("no CREATE TABLE %s in the modern rendering", table)
	}
	ctx = ch.Context(ctx, ch.WithSettings(ch.Settings{"allow_experimental_low_cardinality_type": 1}))
	for _, st := range []string{stmt, "INSERT INTO " + table + "_lc SELECT * FROM " + table, "OPTIMIZE TABLE " + table + "_lc FINAL"} {
		if err := s.conn.Exec(ctx, st); err != nil {
			return "", fmt.Errorf("%s: %w", st, err)
		}
	}
	return table + "_lc", nil
}

// The columns whose Delta codec codecEstimates simulates, with the sort key of their table.
var deltaColumns = map[string]struct {
	orderBy string
	columns []string
}{
	"decisions": {"tenant, principal, time_us, position", []string{"time_us", "recorded_us", "position"}},
	"events":    {"tenant, position", []string{"position", "recorded", "recorded_us", "time_us"}},
}

// codecEstimates compresses each column of deltaColumns[table], in sort-key order and in
// blocks of one granule (8192 values, ClickHouse's 64 KiB min_compress_block_size for 8-byte
// values), with ZSTD, and with Delta then ZSTD: ClickHouse's Delta codec stores each value's
// difference from the one before it in the block. The encoder is klauspost/compress at its
// default level: on these columns its fastest level finds none of the matches ClickHouse's
// ZSTD(1) finds; its default level matches a server compressing with zstd on positions and is
// up to 40% off on times (deploy/clickhouse/README.md, sizing): a direction, not a size.
func codecEstimates(b *testing.B, s *Store, table string) string {
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderConcurrency(1))
	if err != nil {
		b.Fatal(err)
	}
	defer enc.Close()
	var out []string
	for _, col := range deltaColumns[table].columns {
		rows, err := s.conn.Query(context.Background(),
			"SELECT toInt64("+col+") FROM "+table+" ORDER BY "+deltaColumns[table].orderBy)
		if err != nil {
			b.Fatal(err)
		}
		var vals []int64
		for rows.Next() {
			var v int64
			if err := rows.Scan(&v); err != nil {
				b.Fatal(err)
			}
			vals = append(vals, v)
		}
		rows.Close()
		width := 8
		if col == "recorded" { // DateTime: 4 bytes
			width = 4
		}
		perBlock := 65536 / width
		var nZSTD, nDelta int
		raw, delta := make([]byte, 0, 65536), make([]byte, 0, 65536)
		for i := 0; i < len(vals); i += perBlock {
			raw, delta = raw[:0], delta[:0]
			for j := i; j < min(i+perBlock, len(vals)); j++ {
				d := vals[j]
				if j > i {
					d = vals[j] - vals[j-1]
				}
				if width == 8 {
					raw = binary.LittleEndian.AppendUint64(raw, uint64(vals[j]))
					delta = binary.LittleEndian.AppendUint64(delta, uint64(d))
				} else {
					raw = binary.LittleEndian.AppendUint32(raw, uint32(vals[j]))
					delta = binary.LittleEndian.AppendUint32(delta, uint32(d))
				}
			}
			nZSTD += len(enc.EncodeAll(raw, nil))
			nDelta += len(enc.EncodeAll(delta, nil))
		}
		f := func(n int) float64 { return float64(n) / float64(len(vals)) }
		out = append(out, fmt.Sprintf("%s %.1f / %.1f", col, f(nZSTD), f(nDelta)))
	}
	return strings.Join(out, ", ")
}
