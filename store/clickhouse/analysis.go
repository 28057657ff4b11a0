package clickhouse

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/whocould/whocould/event"
	"github.com/whocould/whocould/finding"
)

// What the analyzers read besides decisions and the map: the archive of change and approval
// events (Events), and their own findings (Findings, PutFindings).
//
// Where the findings live. Everything else in the store is a projection of the log, rebuilt
// into a fresh generation by a rebuild (generation.go); the findings are not: they carry their
// lifecycle (first seen, acknowledged, suppressed until ...), which no replay of the log can
// give back. So they live in the catalog database (Config.Database), beside store_generation:
// a rebuild neither copies them nor drops them, and every generation's questions see the same
// findings. (The migrations also make an empty findings table in each generation's database;
// nothing reads or writes it.)

// Events implements store.Reader: the tenant's archived events (the archive holds no decision)
// in log order, up to the position of the live generation, whose rows past it (written by an
// Apply not yet done, or by one a crash cut short) are not read. Rows stream from the server as
// fn takes them; when fn returns an error the query is cancelled and that error returned.
func (s *Store) Events(ctx context.Context, tenant string, fn func(event.Record) error) error {
	conn, err := s.reader(ctx)
	if err != nil {
		return err
	}
	pos, err := s.positionOn(ctx, conn)
	if err != nil {
		return err
	}
	if err := readArchive(ctx, conn, tenantName(tenant), pos, archivedTypes(), fn); err != nil {
		return fmt.Errorf("clickhouse: events of %s: %w", tenantName(tenant), err)
	}
	return nil
}

// archivedTypes lists the types of the events the archive holds: every type but decisions.
func archivedTypes() []string {
	var out []string
	for _, t := range event.Types {
		if t != event.Decision {
			out = append(out, string(t))
		}
	}
	return out
}

// readArchive calls fn with each event archived on conn up to position whose type is one of
// types, in log order: of tenant, or of every tenant when tenant is "". Each record has its
// position and recorded time. Rows stream; when fn returns an error the query is cancelled
// and that error returned, wrapped in nothing.
func readArchive(ctx context.Context, conn driver.Conn, tenant string, position uint64, types []string,
	fn func(event.Record) error) (err error) {
	if position == 0 || len(types) == 0 {
		return nil
	}
	sql, args := qArchived, []any{position}
	if tenant != "" {
		sql += " AND tenant = ?"
		args = append(args, tenant)
	}
	sql = fmt.Sprintf(sql+qArchivedOrder, inList(types))
	// Sorting a large answer spills to disk rather than failing on the server's memory limit.
	ctx = ch.Context(ctx, ch.WithSettings(ch.Settings{"max_bytes_before_external_sort": externalSortBytes}))
	return streamRows(ctx, conn, "read the archive", sql, args, func(rows driver.Rows) error {
		var (
			pos        uint64
			recordedUS int64
			js         string
		)
		if err := rows.Scan(&pos, &recordedUS, &js); err != nil {
			return fmt.Errorf("read the archive: %w", err)
		}
		e, err := decodeArchived([]byte(js))
		if err != nil {
			return fmt.Errorf("archived event at position %d: %w", pos, err)
		}
		return fn(event.Record{Event: e, Position: pos, Recorded: event.FromMicros(recordedUS)})
	})
}

// Findings implements store.Reader: the newest row of each of the tenant's findings.
func (s *Store) Findings(ctx context.Context, tenant string) ([]finding.Finding, error) {
	tenant = tenantName(tenant)
	// The database is an identifier (Validate), so it needs no quoting.
	rows, err := s.catalog.Query(ctx, fmt.Sprintf(qFindings, s.findingsDB), tenant)
	if err != nil {
		return nil, fmt.Errorf("clickhouse: findings of %s: %w", tenant, err)
	}
	defer rows.Close()
	out := []finding.Finding{}
	for rows.Next() {
		var js string
		if err := rows.Scan(&js); err != nil {
			return nil, fmt.Errorf("clickhouse: findings of %s: %w", tenant, err)
		}
		var f finding.Finding
		if err := json.Unmarshal([]byte(js), &f); err != nil {
			return nil, fmt.Errorf("clickhouse: findings of %s: %w", tenant, err)
		}
		out = append(out, f)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("clickhouse: findings of %s: %w", tenant, err)
	}
	return out, nil
}

// findingsBlockBytes is about how much finding JSON PutFindings sends in one block.
var findingsBlockBytes = 16 << 20 // a variable for the tests

// PutFindings implements store.FindingWriter: one insert of a row per finding, each of a version
// above every one this store wrote before, so that it replaces the finding's older rows (and
// of two findings of one id in fs, the later wins). It is durable when it returns: an insert
// returns once its parts are written. The insert's blocks are written one by one: one that
// fails part way may leave some findings new and the others as they were, each whole; the next
// run writes them all again.
func (s *Store) PutFindings(ctx context.Context, tenant string, fs []finding.Finding) error {
	if len(fs) == 0 {
		return nil
	}
	tenant = tenantName(tenant)
	s.findingsMu.Lock()
	defer s.findingsMu.Unlock()
	b, err := s.catalog.PrepareBatch(ctx, fmt.Sprintf("INSERT INTO %s.findings (%s)", s.findingsDB, findingColumns))
	if err != nil {
		return fmt.Errorf("clickhouse: store findings of %s: %w", tenant, err)
	}
	defer b.Close()
	now := time.Now().UTC()
	v := max(s.findingsVersion, uint64(now.UnixNano()))
	// The versions used are used, even when the insert fails after sending some blocks.
	defer func() { s.findingsVersion = v }()
	pending := 0 // bytes of JSON in the block not sent yet
	for _, f := range fs {
		f.Tenant = tenant
		js, err := json.Marshal(f)
		if err != nil {
			return fmt.Errorf("clickhouse: store finding %s: %w", f.ID, err)
		}
		v++
		if err := b.Append(tenant, f.ID, v, f.Rule, f.Kind, f.Severity, f.Status, f.Principal, f.Resource, partTime(f.Since),
			now, string(js)); err != nil {
			return fmt.Errorf("clickhouse: store finding %s: %w", f.ID, err)
		}
		// A block at a time: a pass's hundreds of megabytes of findings in one block would be
		// copied over and over as it grows, and held whole here. (The server squashes small
		// blocks into parts of up to min_insert_block_size_rows or _bytes.)
		if pending += len(js); pending >= findingsBlockBytes {
			if err := b.Flush(); err != nil {
				return fmt.Errorf("clickhouse: store findings of %s: %w", tenant, err)
			}
			pending = 0
		}
	}
	if err := b.Send(); err != nil {
		return fmt.Errorf("clickhouse: store findings of %s: %w", tenant, err)
	}
	return nil
}
