package clickhouse

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"

	"github.com/whocould/whocould/event"
)

// Apply implements store.Writer: it writes the records' rows (the archive, decisions, approvals)
// in a few large inserts. Records at or below Position are skipped.
//
// Exactly once. ClickHouse has no transaction across inserts, and an insert of several blocks
// or partitions is not atomic either: a crash, or a failed Apply, can leave any subset of a
// batch's rows stored. So no row is ever inserted twice, and reads need no FINAL and no
// deduplication:
//   - before writing a stretch of the log, Apply records it as possibly written (the `written`
//     column of the checkpoint row; one tiny insert, only when the stretch goes beyond the last
//     one recorded);
//   - Checkpoint records the position applied; Open reads both;
//   - when a stretch of records to write overlaps (position applied, possibly written] — after
//     a crash, or after an Apply that failed — Apply first waits for this store's inserts still
//     running on the server, then reads which of those positions each table already holds
//     (narrowed to the partitions the rows fall in), and writes only the others.
//
// The usage aggregates are kept by a materialized view over the inserts into decisions, so they
// are exact exactly because no decision is inserted twice (count is not idempotent; min and max
// are).
func (s *Store) Apply(ctx context.Context, recs []event.Record) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.follow(ctx); err != nil {
		return err
	}
	from := s.applied.Load()
	last := from
	b := &s.batch
	defer b.reset() // holds no strings of recs after
	for i := range recs {
		r := &recs[i]
		if r.Position <= last {
			continue
		}
		last = r.Position
		b.add(r)
	}
	if last == from {
		return ctx.Err()
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if last > s.written {
		if err := s.writeCheckpoint(ctx, s.durable, last); err != nil {
			return fmt.Errorf("clickhouse: apply %d-%d: record the stretch to write: %w", from+1, last, err)
		}
		s.written = last
	}
	if s.dirty > from {
		if err := s.dropWritten(ctx, b, from, min(s.dirty, last)); err != nil {
			return fmt.Errorf("clickhouse: apply %d-%d: %w", from+1, last, err)
		}
	}
	if len(b.changes) > 0 {
		if err := s.deriveMap(ctx, b, from); err != nil {
			return fmt.Errorf("clickhouse: apply %d-%d: permission map: %w", from+1, last, err)
		}
	}
	if err := s.insertAll(ctx, b); err != nil {
		s.dirty = max(s.dirty, last)
		// The graphs hold records whose rows may be missing: rebuilt from the archive, and the
		// rows of this stretch deleted, before the next Apply writes it again.
		s.m, s.mapDirty = nil, true
		return fmt.Errorf("clickhouse: apply %d-%d: %w", from+1, last, err)
	}
	s.applied.Store(last)
	return nil
}

// deriveMap fills b.access with the permission map's rows that b.changes change, after deleting
// what a failed Apply left and rebuilding the graphs when needed.
func (s *Store) deriveMap(ctx context.Context, b *rowBatch, from uint64) error {
	if s.mapDirty {
		if err := s.waitInserts(ctx); err != nil {
			return err
		}
		if err := s.deleteMapAfter(ctx, from); err != nil {
			return err
		}
		s.mapDirty = false
	}
	if s.m == nil {
		m, err := s.loadMap(ctx, from)
		if err != nil {
			return err
		}
		s.m = m
	}
	s.m.derive(b.changes, &b.access)
	return nil
}

// rowBatch is the rows of one Apply.
type rowBatch struct {
	events    []eventRow
	decisions decisionRows
	approvals []approvalRow
	changes   []event.Record // the change records, for the permission map
	access    []mapRow
}

func (b *rowBatch) reset() {
	clear(b.events)
	clear(b.approvals)
	clear(b.changes)
	clear(b.access)
	b.events, b.approvals, b.changes, b.access = b.events[:0], b.approvals[:0], b.changes[:0], b.access[:0]
	b.decisions.truncate(0)
}

func (b *rowBatch) add(r *event.Record) {
	switch {
	case !r.Type.Known():
		// a log message the projector could not decode: dead-lettered there
	case r.Type == event.Decision:
		b.decisions.add(r)
	case r.Type.IsChange():
		b.events = append(b.events, newEventRow(r))
		b.changes = append(b.changes, *r)
	default: // approvals
		b.events = append(b.events, newEventRow(r))
		b.approvals = append(b.approvals, newApprovalRow(r))
	}
}

// dropWritten removes from b the rows of positions in (lo, hi] that their table already holds.
func (s *Store) dropWritten(ctx context.Context, b *rowBatch, lo, hi uint64) error {
	if err := s.waitInserts(ctx); err != nil {
		return err
	}
	// The partitions the rows of (lo, hi] fall in.
	var minRecorded, minDate, maxDate time.Time
	in := func(p uint64) bool { return p > lo && p <= hi }
	for _, r := range b.events {
		if in(r.position) && (minRecorded.IsZero() || r.recorded.Before(minRecorded)) {
			minRecorded = r.recorded
		}
	}
	for _, r := range b.approvals {
		if in(r.position) && (minRecorded.IsZero() || r.recorded.Before(minRecorded)) {
			minRecorded = r.recorded
		}
	}
	for i, p := range b.decisions.position {
		if date := b.decisions.date[i]; in(p) {
			if minDate.IsZero() || date.Before(minDate) {
				minDate = date
			}
			if date.After(maxDate) {
				maxDate = date
			}
		}
	}
	var dropped int
	if !minRecorded.IsZero() {
		have, err := s.positions(ctx, qWrittenEvents, minRecorded.Unix(), lo, hi)
		if err != nil {
			return fmt.Errorf("read events written: %w", err)
		}
		dropped += drop(&b.events, have, func(r *eventRow) uint64 { return r.position })
		if have, err = s.positions(ctx, qWrittenApprovals, minRecorded.Unix(), lo, hi); err != nil {
			return fmt.Errorf("read approvals written: %w", err)
		}
		dropped += drop(&b.approvals, have, func(r *approvalRow) uint64 { return r.position })
	}
	if !minDate.IsZero() {
		have, err := s.positions(ctx, qWrittenDecisions, minDate.Format(time.DateOnly), maxDate.Format(time.DateOnly), lo, hi)
		if err != nil {
			return fmt.Errorf("read decisions written: %w", err)
		}
		dropped += b.decisions.keep(func(i int) bool { return !have[b.decisions.position[i]] })
	}
	s.log.Info("rows already written skipped", "from", lo+1, "to", hi, "rows", dropped)
	return nil
}

// waitInserts waits until no insert of this store's database runs on the server: an insert
// whose client gave up (a timeout, a lost connection) may still be writing.
func (s *Store) waitInserts(ctx context.Context) error {
	deadline := time.Now().Add(s.cfg.ReadTimeout)
	for {
		var n uint64
		if err := s.conn.QueryRow(ctx, qRunningInserts, s.queryIDPrefix()).Scan(&n); err != nil {
			return fmt.Errorf("read running inserts: %w", err)
		}
		if n == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d inserts still running on the server after %v", n, s.cfg.ReadTimeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (s *Store) positions(ctx context.Context, q string, args ...any) (map[uint64]bool, error) {
	rows, err := s.conn.Query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	have := map[uint64]bool{}
	for rows.Next() {
		var p uint64
		if err := rows.Scan(&p); err != nil {
			return nil, err
		}
		have[p] = true
	}
	return have, rows.Err()
}

func drop[R any](rows *[]R, have map[uint64]bool, pos func(*R) uint64) int {
	if len(have) == 0 {
		return 0
	}
	kept := (*rows)[:0]
	for i := range *rows {
		if !have[pos(&(*rows)[i])] {
			kept = append(kept, (*rows)[i])
		}
	}
	n := len(*rows) - len(kept)
	*rows = kept
	return n
}

// insertAll writes the batch's rows, one insert per table, the tables at once.
func (s *Store) insertAll(ctx context.Context, b *rowBatch) error {
	inserts := []func() error{
		func() error {
			return insert(ctx, s, "decisions", decisionColumns, b.decisions.len(), b.decisions.cols)
		},
		func() error {
			return insert(ctx, s, "events", eventColumns, len(b.events), colsOf(b.events, eventCols))
		},
		func() error {
			return insert(ctx, s, "approvals", approvalColumns, len(b.approvals), colsOf(b.approvals, approvalCols))
		},
		func() error {
			return insert(ctx, s, "access_map", mapColumns, len(b.access), colsOf(b.access, mapCols))
		},
	}
	if s.cfg.MaxOpenConns < len(inserts) {
		var errs []error
		for _, f := range inserts {
			errs = append(errs, f())
		}
		return errors.Join(errs...)
	}
	errs := make([]error, len(inserts))
	var wg sync.WaitGroup
	for i, f := range inserts {
		wg.Go(func() { errs[i] = f() })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// queryIDPrefix starts the query id of every insert of this store's database.
func (s *Store) queryIDPrefix() string { return "whocould:" + s.cfg.Database + ":insert:" }

var processID = func() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}()

// colsOf is cols over rows [i, j).
func colsOf[R any](rows []R, cols func([]R) []any) func(i, j int) []any {
	return func(i, j int) []any { return cols(rows[i:j]) }
}

// insert writes n rows into table in one INSERT of blocks of at most BlockRows rows, column by
// column. On any error the INSERT is ended without the rows not yet sent, and the connection
// is closed rather than returned to the pool.
func insert(ctx context.Context, s *Store, table, columns string, n int, cols func(i, j int) []any) error {
	if n == 0 {
		return nil
	}
	id := fmt.Sprintf("%s%s:%d", s.queryIDPrefix(), processID, s.inserts.Add(1))
	ctx = ch.Context(ctx, ch.WithQueryID(id))
	batch, err := s.conn.PrepareBatch(ctx, "INSERT INTO "+table+" ("+columns+")")
	if err != nil {
		return fmt.Errorf("insert into %s: %w", table, err)
	}
	// After Send this does nothing. Before it (an error), it ends the INSERT without the rows
	// not yet sent; after a failed Append or Send the batch has already closed its connection.
	defer batch.Close()
	for i := 0; i < n; i += s.cfg.BlockRows {
		j := min(i+s.cfg.BlockRows, n)
		for k, c := range cols(i, j) {
			if err := batch.Column(k).Append(c); err != nil {
				return fmt.Errorf("insert into %s: column %d: %w", table, k, err)
			}
		}
		if j < n {
			if err := batch.Flush(); err != nil {
				return fmt.Errorf("insert into %s: %w", table, err)
			}
		}
	}
	if err := batch.Send(); err != nil {
		return fmt.Errorf("insert into %s: %w", table, err)
	}
	return nil
}
