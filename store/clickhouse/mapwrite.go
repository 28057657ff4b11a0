package clickhouse

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"

	"github.com/whocould/whocould/event"
	"github.com/whocould/whocould/graph"
)

// The permission map's writing side.
//
// The projector keeps the engine's graph of every tenant (graph.Graph), fed every change record
// it applies. Records come in groups of one recorded time (the log's frames): after applying a
// group, the principals whose answers it could have changed (graph.ApplyTouched) are exported
// twice — as known before the group, and now — and the rows that differ are written: present 1
// for a row the map now holds, present 0 for one it no longer does, all stamped with the group's
// recorded time (known_us) and last position (version). So the map as known at K is the rows of
// the highest version up to K, and answers as known at any recorded time are exact.
//
// "Before the group" is the export as known at the previous group's recorded time; when a group
// continues the previous one's recorded time (a frame split between two Applies), it is what the
// previous part wrote (kept in tail), or, for a principal that part did not touch, the export as
// known just before that recorded time.
//
// The graphs are rebuilt from the archive (the events table, whose change events are every one
// applied) when the projector first needs them, and again after an Apply failed: rows of a failed
// Apply (versions past the position applied) are deleted before the stretch is written again.

// mapState is the graphs and what the last group wrote.
type mapState struct {
	graphs  map[string]*graph.Graph
	lastRec int64                            // recorded time (µs) of the last group applied; 0: none
	tail    map[tenantPrincipal]graph.Export // what the groups at lastRec wrote
}

type tenantPrincipal struct{ tenant, principal string }

func newMapState() *mapState {
	return &mapState{graphs: map[string]*graph.Graph{}, tail: map[tenantPrincipal]graph.Export{}}
}

func (m *mapState) graph(tenant string) *graph.Graph {
	g, ok := m.graphs[tenant]
	if !ok {
		g = graph.New()
		m.graphs[tenant] = g
	}
	return g
}

// derive applies change records (in log order) to the graphs and appends to out the rows that
// changed.
func (m *mapState) derive(changes []event.Record, out *[]mapRow) {
	for i := 0; i < len(changes); {
		rec := max(event.Micros(changes[i].Recorded), m.lastRec)
		j := i + 1
		for j < len(changes) && max(event.Micros(changes[j].Recorded), m.lastRec) == rec {
			j++
		}
		m.group(changes[i:j], rec, out)
		i = j
	}
}

// group applies one group of records recorded at rec.
func (m *mapState) group(recs []event.Record, rec int64, out *[]mapRow) {
	version := recs[len(recs)-1].Position
	continues := rec == m.lastRec
	if !continues {
		clear(m.tail)
	}
	var seq uint32
	// By tenant, each tenant's records in log order.
	var tenants []string
	byTenant := map[string][]event.Record{}
	for _, r := range recs {
		t := r.TenantOrDefault()
		if _, ok := byTenant[t]; !ok {
			tenants = append(tenants, t)
		}
		byTenant[t] = append(byTenant[t], r)
	}
	for _, t := range tenants {
		g := m.graph(t)
		for _, p := range g.ApplyTouched(byTenant[t]) {
			k := tenantPrincipal{t, p}
			var before graph.Export
			switch {
			case m.lastRec == 0:
			case continues:
				var ok bool
				if before, ok = m.tail[k]; !ok {
					at := event.FromMicros(rec - 1)
					before = g.Export(p, &at)
				}
			default:
				at := event.FromMicros(m.lastRec)
				before = g.Export(p, &at)
			}
			now := g.Export(p, nil)
			diffExports(t, p, before, now, rec, version, &seq, out)
			m.tail[k] = now
		}
	}
	m.lastRec = rec
}

// mapRow is a row of access_map.
type mapRow struct {
	tenant    string
	kind      uint8
	resource  string
	action    string
	principal string
	key       uint64
	from, to  int64
	status    string
	groups    []string
	subject   string
	role      string
	grantAct  string
	expires   int64
	roles     []string
	known     int64
	version   uint64
	seq       uint32
	present   uint8
}

// Kinds of access_map rows.
const (
	kindPath      = 0
	kindStatus    = 1
	kindTruncated = 2
)

const mapColumns = "tenant, kind, resource, action, principal, key, from_us, to_us, status, groups, grant_subject, grant_role, " +
	"grant_action, grant_expires_us, roles, known_us, version, seq, present"

func mapCols(rows []mapRow) []any {
	n := len(rows)
	tenant, kind, resource, action, principal := make([]string, n), make([]uint8, n), make([]string, n), make([]string, n), make([]string, n)
	key, from, to, status, groups := make([]uint64, n), make([]int64, n), make([]int64, n), make([]string, n), make([][]string, n)
	subject, role, grantAct, expires, roles := make([]string, n), make([]string, n), make([]string, n), make([]int64, n), make([][]string, n)
	known, version, seq, present := make([]int64, n), make([]uint64, n), make([]uint32, n), make([]uint8, n)
	for i := range rows {
		r := &rows[i]
		tenant[i], kind[i], resource[i], action[i], principal[i] = r.tenant, r.kind, r.resource, r.action, r.principal
		key[i], from[i], to[i], status[i], groups[i] = r.key, r.from, r.to, r.status, nonNil(r.groups)
		subject[i], role[i], grantAct[i], expires[i], roles[i] = r.subject, r.role, r.grantAct, r.expires, nonNil(r.roles)
		known[i], version[i], seq[i], present[i] = r.known, r.version, r.seq, r.present
	}
	return []any{tenant, kind, resource, action, principal, key, from, to, status, groups, subject, role, grantAct, expires, roles,
		known, version, seq, present}
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// exportRows is the rows of an export, keyed, without their version.
func exportRows(tenant, principal string, ex graph.Export) []mapRow {
	var rows []mapRow
	for _, s := range ex.Status {
		rows = append(rows, mapRow{kind: kindStatus, from: s.From, to: s.To, status: s.Status})
	}
	for _, s := range ex.Paths {
		r := mapRow{kind: kindPath, from: s.From, to: s.To, action: s.Action, resource: s.Resource, groups: s.Path.Groups,
			subject: s.Path.Grant.Subject, role: s.Path.Grant.Role, grantAct: s.Path.Grant.Action, roles: s.Path.Roles}
		if x := s.Path.Grant.ExpiresAt; x != nil {
			r.expires = event.Micros(*x)
		}
		rows = append(rows, r)
	}
	for _, s := range ex.Truncated {
		rows = append(rows, mapRow{kind: kindTruncated, from: s.From, to: s.To, action: s.Action, resource: s.Resource})
	}
	for i := range rows {
		rows[i].tenant, rows[i].principal = tenant, principal
		rows[i].key = rows[i].hash()
	}
	return rows
}

// hash identifies a row's content (the principal's rows apart).
func (r *mapRow) hash() uint64 {
	h := fnv.New64a()
	var b [8]byte
	num := func(v int64) {
		binary.LittleEndian.PutUint64(b[:], uint64(v))
		h.Write(b[:])
	}
	str := func(s string) {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	list := func(ss []string) {
		num(int64(len(ss)))
		for _, s := range ss {
			str(s)
		}
	}
	h.Write([]byte{r.kind})
	num(r.from)
	num(r.to)
	str(r.status)
	str(r.action)
	str(r.resource)
	list(r.groups)
	str(r.subject)
	str(r.role)
	str(r.grantAct)
	num(r.expires)
	list(r.roles)
	return h.Sum64()
}

// diffExports appends the rows that take the map of principal from before to now.
func diffExports(tenant, principal string, before, now graph.Export, known int64, version uint64, seq *uint32, out *[]mapRow) {
	old, neu := exportRows(tenant, principal, before), exportRows(tenant, principal, now)
	inOld := make(map[uint64]bool, len(old))
	for _, r := range old {
		inOld[r.key] = true
	}
	inNew := make(map[uint64]bool, len(neu))
	for _, r := range neu {
		inNew[r.key] = true
	}
	emit := func(r mapRow, present uint8) {
		r.known, r.version, r.seq, r.present = known, version, *seq, present
		*seq++
		*out = append(*out, r)
	}
	for _, r := range old {
		if !inNew[r.key] {
			emit(r, 0)
		}
	}
	for _, r := range neu {
		if !inOld[r.key] {
			emit(r, 1)
		}
	}
}

// loadMap rebuilds the graphs from the archive's change events up to position (those applied),
// ending with the tail of their last recorded time.
func (s *Store) loadMap(ctx context.Context, position uint64) (*mapState, error) {
	start := time.Now()
	m := newMapState()
	if position == 0 {
		return m, nil
	}
	rows, err := s.conn.Query(ch.Context(ctx, ch.WithSettings(ch.Settings{"max_bytes_before_external_sort": externalSortBytes})),
		fmt.Sprintf(qArchivedChanges, inList(changeTypes())), position)
	if err != nil {
		return nil, fmt.Errorf("read the archive to rebuild the permission map: %w", err)
	}
	defer rows.Close()
	var (
		pending []event.Record // the records of the last recorded time read, not yet applied
		n       int
	)
	flush := func() {
		for _, r := range pending {
			m.graph(r.TenantOrDefault()).Apply(&r)
		}
		pending = pending[:0]
	}
	for rows.Next() {
		var (
			pos        uint64
			recordedUS int64
			js         string
		)
		if err := rows.Scan(&pos, &recordedUS, &js); err != nil {
			return nil, fmt.Errorf("read the archive to rebuild the permission map: %w", err)
		}
		e, err := decodeArchived([]byte(js))
		if err != nil {
			return nil, fmt.Errorf("archived event at position %d: %w", pos, err)
		}
		if len(pending) > 0 && event.Micros(pending[0].Recorded) != recordedUS {
			flush()
		}
		pending = append(pending, event.Record{Position: pos, Recorded: event.FromMicros(recordedUS), Event: e})
		n++
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read the archive to rebuild the permission map: %w", err)
	}
	// The last recorded time's records apply as a group would, so that what they wrote is the
	// tail a group continuing that recorded time starts from.
	if len(pending) > 0 {
		rec := event.Micros(pending[0].Recorded)
		byTenant := map[string][]event.Record{}
		var tenants []string
		for _, r := range pending {
			t := r.TenantOrDefault()
			if _, ok := byTenant[t]; !ok {
				tenants = append(tenants, t)
			}
			byTenant[t] = append(byTenant[t], r)
		}
		for _, t := range tenants {
			g := m.graph(t)
			for _, p := range g.ApplyTouched(byTenant[t]) {
				m.tail[tenantPrincipal{t, p}] = g.Export(p, nil)
			}
		}
		m.lastRec = rec
	}
	s.log.Info("permission map rebuilt from the archive", "position", position, "events", n, "took", time.Since(start).Round(time.Millisecond))
	return m, nil
}

// changeTypes lists the types of change events.
func changeTypes() []string {
	var out []string
	for _, t := range event.Types {
		if t.IsChange() {
			out = append(out, string(t))
		}
	}
	return out
}

// decodeArchived decodes an archived event: a CloudEvent that validates, or, for one archived
// although it did not (see eventJSON), its fields as encoding/json wrote them.
func decodeArchived(b []byte) (event.Event, error) {
	e, err := event.Unmarshal(b)
	if err == nil {
		return e, nil
	}
	var raw struct {
		ID     string     `json:"id"`
		Source string     `json:"source"`
		Type   string     `json:"type"`
		Time   time.Time  `json:"time"`
		Data   event.Data `json:"data"`
	}
	if jerr := json.Unmarshal(b, &raw); jerr != nil || raw.Type == "" {
		return event.Event{}, err
	}
	return event.Event{ID: raw.ID, Source: raw.Source, Type: event.Type(raw.Type), Time: raw.Time, Data: raw.Data}, nil
}

// deleteMapAfter deletes the map's rows of versions past position: what a failed Apply (or a
// crash) may have left. It waits until the server has done it.
func (s *Store) deleteMapAfter(ctx context.Context, position uint64) error {
	table := "access_map"
	sql := fmt.Sprintf("ALTER TABLE access_map DELETE WHERE version > %d", position)
	if s.cfg.Cluster != "" {
		table = "access_map_local"
		sql = fmt.Sprintf("ALTER TABLE %s.access_map_local ON CLUSTER %s DELETE WHERE version > %d", s.cfg.Database, s.cfg.Cluster, position)
	}
	var n uint64
	if err := s.conn.QueryRow(ctx, qMapRowsAfter, position).Scan(&n); err != nil {
		return fmt.Errorf("read the permission map's rows past %d: %w", position, err)
	}
	if n == 0 {
		return nil
	}
	if err := s.conn.Exec(ctx, sql); err != nil {
		return fmt.Errorf("delete the permission map's rows past %d: %w", position, err)
	}
	deadline := time.Now().Add(s.cfg.ReadTimeout)
	for {
		var running uint64
		if err := s.conn.QueryRow(ctx, qMutationsRunning, s.cfg.Database, table).Scan(&running); err != nil {
			return fmt.Errorf("wait for the deletion of the permission map's rows past %d: %w", position, err)
		}
		if running == 0 {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the deletion of the permission map's rows past %d still runs after %v", position, s.cfg.ReadTimeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	s.log.Info("permission map rows of a failed apply deleted", "past", position, "rows", n)
	return nil
}
