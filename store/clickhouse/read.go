package clickhouse

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	ch "github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/ext"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/whocould/whocould/event"
	"github.com/whocould/whocould/store"
)

// externalSortBytes is how much memory sorting decisions may take on the server before it
// spills to disk.
const externalSortBytes = 1 << 30

func tenantName(t string) string {
	if t == "" {
		return event.DefaultTenant
	}
	return t
}

// keysTable names the external table that carries a query's Keys to the server.
const keysTable = "whocould_keys"

// withKeys is ctx carrying q.Keys, when it has any, as the external table keysTable of three
// String columns (principal, action, resource) for the filter where writes: a list of
// thousands of keys in the query's text would pass the server's max_query_size.
func withKeys(ctx context.Context, q store.DecisionQuery) (context.Context, error) {
	if len(q.Keys) == 0 {
		return ctx, nil
	}
	t, err := ext.NewTable(keysTable, ext.Column("principal", "String"), ext.Column("action", "String"),
		ext.Column("resource", "String"))
	if err != nil {
		return nil, fmt.Errorf("clickhouse: keys: %w", err)
	}
	for _, k := range q.Keys {
		if err := t.Append(k.Principal, k.Action, k.Resource); err != nil {
			return nil, fmt.Errorf("clickhouse: keys: %w", err)
		}
	}
	return ch.Context(ctx, ch.WithExternalTable(t)), nil
}

// where appends the equality filters of q that are set to a query that ends in a WHERE clause.
// Keys are matched against the external table withKeys sends, GLOBAL so that a distributed
// query sends it on to the shards; their principals are also listed, for the primary key.
func where(sql *strings.Builder, args []any, q store.DecisionQuery) []any {
	principalIn := func(ps []string) {
		sql.WriteString(" AND principal IN (" + strings.Repeat("?, ", len(ps)-1) + "?)")
		for _, p := range ps {
			args = append(args, p)
		}
	}
	if len(q.Keys) > 0 {
		sql.WriteString(" AND (principal, action, resource) GLOBAL IN " + keysTable)
		ps := make([]string, 0, len(q.Keys))
		for _, k := range q.Keys {
			ps = append(ps, k.Principal)
		}
		slices.Sort(ps)
		principalIn(slices.Compact(ps))
	}
	for _, f := range []struct{ col, v string }{{"principal", q.Principal}, {"action", q.Action}, {"resource", q.Resource}} {
		if f.v != "" {
			sql.WriteString(" AND " + f.col + " = ?")
			args = append(args, f.v)
		}
	}
	if len(q.Principals) > 0 {
		principalIn(q.Principals)
	}
	return args
}

// decisionsWhere appends to a query of the decisions table that ends in a WHERE clause the
// filters of q: the tenant, the equality filters, the effect and the time bounds. It reports
// false when no decision can match (an effect that is neither allow nor deny).
func decisionsWhere(sql *strings.Builder, q store.DecisionQuery) ([]any, bool) {
	sql.WriteString(" tenant = ?")
	args := where(sql, []any{tenantName(q.Tenant)}, q)
	switch q.Effect {
	case "":
	case event.Allow:
		sql.WriteString(" AND allow = 1")
	case event.Deny:
		sql.WriteString(" AND allow = 0")
	default:
		return nil, false // no decision has another effect
	}
	// The date bounds only narrow the partitions read: partTime never decreases, so
	// time >= From implies date >= date(From), and time < To implies date <= date(To).
	if !q.From.IsZero() {
		sql.WriteString(" AND date >= toDate(?) AND time_us >= ?")
		args = append(args, partDay(q.From), event.Micros(q.From))
	}
	if !q.To.IsZero() {
		sql.WriteString(" AND date <= toDate(?) AND time_us < ?")
		args = append(args, partDay(q.To), event.Micros(q.To))
	}
	return args, true
}

// Decisions implements store.Reader. Rows stream from the server as fn takes them; when fn
// returns an error the query is cancelled and that error returned.
func (s *Store) Decisions(ctx context.Context, q store.DecisionQuery, fn func(store.Decision) error) error {
	var sql strings.Builder
	sql.WriteString(qDecisions)
	args, ok := decisionsWhere(&sql, q)
	if !ok {
		return nil
	}
	sql.WriteString(qDecisionsOrder)

	// Sorting a large answer spills to disk rather than failing on the server's memory limit.
	ctx = ch.Context(ctx, ch.WithSettings(ch.Settings{"max_bytes_before_external_sort": externalSortBytes}))
	ctx, conn, err := s.keyedReader(ctx, q)
	if err != nil {
		return err
	}
	tenant := tenantName(q.Tenant)
	return streamRows(ctx, conn, "clickhouse: decisions", sql.String(), args, func(rows driver.Rows) error {
		d := store.Decision{Tenant: tenant}
		var allow uint8
		var us int64
		if err := rows.Scan(&d.Principal, &d.Action, &d.Resource, &allow, &us, &d.Reason, &d.Policy, &d.Request,
			&d.Source, &d.ID, &d.Position); err != nil {
			return fmt.Errorf("clickhouse: decisions: %w", err)
		}
		d.Effect, d.Time = event.Deny, event.FromMicros(us)
		if allow == 1 {
			d.Effect = event.Allow
		}
		return fn(d)
	})
}

// streamRows runs sql on conn and calls each with every row as it arrives. When each returns an
// error the query is cancelled (else closing the rows would read the rest of the answer) and
// that error returned; the query's own errors are prefixed with what.
func streamRows(ctx context.Context, conn driver.Conn, what, sql string, args []any, each func(driver.Rows) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	rows, err := conn.Query(ctx, sql, args...)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	defer rows.Close()
	for rows.Next() {
		if err := each(rows); err != nil {
			cancel() // before the deferred Close
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

// Usage implements store.Reader. The use of every allowed decision ever recorded is read from
// the usage aggregates; any other (the denied decisions, or a stretch of event time) is
// counted over the decisions table, the filters pushed into its WHERE clause.
func (s *Store) Usage(ctx context.Context, q store.DecisionQuery, fn func(store.Use) error) error {
	var sql strings.Builder
	var args []any
	q.Effect = cmp.Or(q.Effect, event.Allow)
	// On one server of the release we test on, FINAL merges the table's parts into one stream
	// in key order (checked below, as nothing asks it); a distributed read unions the shards'
	// streams, and later releases read FINAL in parallel ranges, so there a GROUP BY and ORDER
	// BY sort them.
	final := false
	if q.From.IsZero() && q.To.IsZero() && q.Effect == event.Allow {
		final = s.finalInKeyOrder
		head := qUsage
		if final {
			head = qUsageFinal
		}
		sql.WriteString(head)
		args = where(&sql, []any{tenantName(q.Tenant)}, q)
	} else {
		sql.WriteString(qUsageOfDecisions)
		var ok bool
		if args, ok = decisionsWhere(&sql, q); !ok {
			return nil
		}
		// A large grouping spills to disk rather than failing on the server's memory limit.
		ctx = ch.Context(ctx, ch.WithSettings(ch.Settings{"max_bytes_before_external_group_by": externalSortBytes}))
	}
	if !final {
		sql.WriteString(qUsageGroup)
	}
	ctx, conn, err := s.keyedReader(ctx, q)
	if err != nil {
		return err
	}
	var prev *store.Use
	return streamRows(ctx, conn, "clickhouse: usage", sql.String(), args, func(rows driver.Rows) error {
		var u store.Use
		var first, last int64
		var n uint64
		if err := rows.Scan(&u.Principal, &u.Action, &u.Resource, &first, &last, &n); err != nil {
			return fmt.Errorf("clickhouse: usage: %w", err)
		}
		if final {
			if prev != nil && compareUse(*prev, u) >= 0 {
				return fmt.Errorf("clickhouse: usage: the server read %s %s on %s after %s %s on %s: a FINAL read not in key order",
					u.Principal, u.Action, u.Resource, prev.Principal, prev.Action, prev.Resource)
			}
			prev = &u
		}
		u.First, u.Last, u.Count = event.FromMicros(first), event.FromMicros(last), int64(n)
		return fn(u)
	})
}

// keyedReader is the connection reads go to (reader), and ctx carrying q's keys (withKeys),
// attached after the reader's own lookup so that it need not carry them.
func (s *Store) keyedReader(ctx context.Context, q store.DecisionQuery) (context.Context, driver.Conn, error) {
	conn, err := s.reader(ctx)
	if err != nil {
		return nil, nil, err
	}
	ctx, err = withKeys(ctx, q)
	return ctx, conn, err
}

// compareUse orders uses by principal, action and resource.
func compareUse(a, b store.Use) int {
	return cmp.Or(strings.Compare(a.Principal, b.Principal), strings.Compare(a.Action, b.Action), strings.Compare(a.Resource, b.Resource))
}

// Approval implements store.Reader: the request's events replayed in log order, the answers
// sorted by event time (stably, so answers at the same instant stay in log order).
func (s *Store) Approval(ctx context.Context, tenant, request string) (store.Approval, error) {
	tenant = tenantName(tenant)
	conn, err := s.reader(ctx)
	if err != nil {
		return store.Approval{}, err
	}
	rows, err := conn.Query(ctx, qApproval, tenant, request)
	if err != nil {
		return store.Approval{}, fmt.Errorf("clickhouse: approval %q: %w", request, err)
	}
	defer rows.Close()
	a := store.Approval{Tenant: tenant, Request: request, Answers: []store.ApprovalAnswer{}}
	found := false
	for rows.Next() {
		var typ, requester, approver, reason, change string
		var us int64
		if err := rows.Scan(&typ, &us, &requester, &approver, &reason, &change); err != nil {
			return store.Approval{}, fmt.Errorf("clickhouse: approval %q: %w", request, err)
		}
		found = true
		at := event.FromMicros(us)
		switch event.Type(typ) {
		case event.ApprovalRequested:
			a.Requester, a.Requested, a.Reason = requester, &at, reason
			a.Change = nil
			if change != "" {
				a.Change = json.RawMessage(change)
			}
		case event.ApprovalGranted, event.ApprovalRejected:
			a.Answers = append(a.Answers, store.ApprovalAnswer{Approver: approver, Granted: typ == string(event.ApprovalGranted),
				Reason: reason, Time: at})
		}
	}
	if err := rows.Err(); err != nil {
		return store.Approval{}, fmt.Errorf("clickhouse: approval %q: %w", request, err)
	}
	if !found {
		return store.Approval{}, fmt.Errorf("approval %q: %w", request, store.ErrNotFound)
	}
	slices.SortStableFunc(a.Answers, func(x, y store.ApprovalAnswer) int { return x.Time.Compare(y.Time) })
	return a, nil
}

// Tenants implements store.Reader.
func (s *Store) Tenants(ctx context.Context) ([]string, error) {
	conn, err := s.reader(ctx)
	if err != nil {
		return nil, err
	}
	rows, err := conn.Query(ctx, qTenants)
	if err != nil {
		return nil, fmt.Errorf("clickhouse: tenants: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var t string
		if err := rows.Scan(&t); err != nil {
			return nil, fmt.Errorf("clickhouse: tenants: %w", err)
		}
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("clickhouse: tenants: %w", err)
	}
	return out, nil
}
