package clickhouse

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"time"

	"github.com/whocould/whocould/event"
	"github.com/whocould/whocould/graph"
)

// The permission map's writing side.
//
// The projector keeps the engine's graph of every tenant (graph.Graph), fed every change record
// it applies. Records come in groups of one recorded time (the log's frames): after applying a
// group, each part of the map it changed (graph.ApplyChanges: a principal's status or
// membership chains, a grant's intervals, a role's tails) is exported twice — as known before
// the group, and now — and the rows that differ are written: present 1 for a row the map now
// holds, present 0 for one it no longer does, all stamped with the group's recorded time
// (known_us) and last position (version). So the map as known at K is the rows of the highest
// version up to K, and answers as known at any recorded time are exact. The questions join the
// parts (mapread.go); no path is stored, so a grant to a group of thousands writes one row.
//
// "Before the group" is the export as known at the previous group's recorded time; when a group
// continues the previous one's recorded time (a frame split between two Applies), it is what the
// previous part wrote (kept in tail), or, for a part that part did not change, the export as
// known just before that recorded time.
//
// The graphs are rebuilt from the archive (the events table, whose change events are every one
// applied) when the projector first needs them, and again after an Apply failed: rows of a failed
// Apply (versions past the position applied) are deleted before the stretch is written again.

// mapState is the graphs and what the last group wrote.
type mapState struct {
	graphs  map[string]*graph.Graph
	lastRec int64                // recorded time (µs) of the last group applied; 0: none
	tail    map[partKey][]mapRow // what the groups at lastRec wrote
}

// partKey names a part of one tenant's map.
type partKey struct {
	tenant string
	kind   uint8
	id     string // the principal, the grant's subject, the role
	grant  graph.GrantKey
}

func newMapState() *mapState {
	return &mapState{graphs: map[string]*graph.Graph{}, tail: map[partKey][]mapRow{}}
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

// byTenant splits records by tenant, each tenant's in log order.
func byTenant(recs []event.Record) (tenants []string, by map[string][]event.Record) {
	by = map[string][]event.Record{}
	for _, r := range recs {
		t := r.TenantOrDefault()
		if _, ok := by[t]; !ok {
			tenants = append(tenants, t)
		}
		by[t] = append(by[t], r)
	}
	return tenants, by
}

// partsChanged lists the parts ch names.
func partsChanged(tenant string, ch graph.Changes) []partKey {
	var ks []partKey
	for _, p := range ch.Status {
		ks = append(ks, partKey{tenant: tenant, kind: kindStatus, id: p})
	}
	for _, p := range ch.Chains {
		ks = append(ks, partKey{tenant: tenant, kind: kindChain, id: p})
	}
	for _, gk := range ch.Grants {
		ks = append(ks, partKey{tenant: tenant, kind: kindGrant, id: gk.Subject, grant: gk})
	}
	for _, r := range ch.Tails {
		ks = append(ks, partKey{tenant: tenant, kind: kindTail, id: r})
	}
	return ks
}

// group applies one group of records recorded at rec.
func (m *mapState) group(recs []event.Record, rec int64, out *[]mapRow) {
	version := recs[len(recs)-1].Position
	continues := rec == m.lastRec
	if !continues {
		clear(m.tail)
	}
	var seq uint32
	tenants, by := byTenant(recs)
	for _, t := range tenants {
		g := m.graph(t)
		for _, k := range partsChanged(t, g.ApplyChanges(by[t])) {
			var before []mapRow
			switch {
			case m.lastRec == 0:
			case continues:
				var ok bool
				if before, ok = m.tail[k]; !ok {
					at := event.FromMicros(rec - 1)
					before = exportPart(g, k, &at)
				}
			default:
				at := event.FromMicros(m.lastRec)
				before = exportPart(g, k, &at)
			}
			now := exportPart(g, k, nil)
			diffRows(before, now, rec, version, &seq, out)
			m.tail[k] = now
		}
	}
	m.lastRec = rec
}

// mapRow is a row of access_map.
type mapRow struct {
	tenant   string
	kind     uint8
	scope    string
	lookup   string
	ref      string
	resource string
	id       string
	key      uint64
	from, to int64
	path     []string
	status   string
	isRole   uint8
	expires  int64
	end      uint8
	known    int64
	version  uint64
	seq      uint32
	present  uint8
}

// Kinds of access_map rows (see the migration): each part, and the parts found by a second
// lookup again, as their mirror.
const (
	kindStatus        = 1
	kindChain         = 2 // by last group
	kindGrant         = 3 // by role or action
	kindTail          = 4 // by permission
	kindChainOf       = 5 // by principal
	kindGrantOf       = 6 // by subject
	kindTailOf        = 7 // by role
	mirror      uint8 = kindChainOf - kindChain
)

const mapColumns = "tenant, kind, scope, lookup, ref, resource, id, key, from_us, to_us, path, status, is_role, expires_us, end_reason, " +
	"known_us, version, seq, present"

func mapCols(rows []mapRow) []any {
	n := len(rows)
	tenant, kind, ref, resource, id := make([]string, n), make([]uint8, n), make([]string, n), make([]string, n), make([]string, n)
	lookup, scope := make([]string, n), make([]string, n)
	key, from, to, path, status := make([]uint64, n), make([]int64, n), make([]int64, n), make([][]string, n), make([]string, n)
	isRole, expires, end := make([]uint8, n), make([]int64, n), make([]uint8, n)
	known, version, seq, present := make([]int64, n), make([]uint64, n), make([]uint32, n), make([]uint8, n)
	for i := range rows {
		r := &rows[i]
		tenant[i], kind[i], scope[i], lookup[i], ref[i], resource[i], id[i] = r.tenant, r.kind, r.scope, r.lookup, r.ref, r.resource, r.id
		key[i], from[i], to[i], path[i], status[i] = r.key, r.from, r.to, nonNil(r.path), r.status
		isRole[i], expires[i], end[i] = r.isRole, r.expires, r.end
		known[i], version[i], seq[i], present[i] = r.known, r.version, r.seq, r.present
	}
	return []any{tenant, kind, scope, lookup, ref, resource, id, key, from, to, path, status, isRole, expires, end, known, version, seq, present}
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// exportPart is the rows of part k as known at knownAt (nil: now), keyed, without a version.
func exportPart(g *graph.Graph, k partKey, knownAt *time.Time) []mapRow {
	var rows []mapRow
	switch k.kind {
	case kindStatus:
		for _, s := range g.StatusSpans(k.id, knownAt) {
			rows = append(rows, mapRow{from: s.From, to: s.To, status: s.Status, ref: k.id})
		}
	case kindChain:
		for _, c := range g.Chains(k.id, knownAt) {
			rows = append(rows, mapRow{from: c.From, to: c.To, path: c.Groups, ref: c.Groups[len(c.Groups)-1]})
		}
	case kindGrant:
		gk := k.grant
		for _, s := range g.GrantSpans(gk.Subject, gk.Role, gk.Action, gk.Resource, knownAt) {
			r := mapRow{from: s.From, to: s.To, ref: gk.Action, resource: gk.Resource, expires: s.Expires, end: uint8(s.End)}
			if gk.Role != "" {
				r.ref, r.isRole = gk.Role, 1
			}
			rows = append(rows, r)
		}
	case kindTail:
		for _, t := range g.Tails(k.id, knownAt) {
			rows = append(rows, mapRow{from: t.From, to: t.To, path: t.Roles, ref: t.Permission})
		}
	}
	n := len(rows)
	for i := range n {
		r := &rows[i]
		r.tenant, r.kind, r.id = k.tenant, k.kind, k.id
		r.lookup = r.ref
		if k.kind == kindGrant {
			r.scope = r.resource
		}
		if k.kind != kindStatus { // found by id too: a mirror
			m := *r
			m.kind, m.scope, m.lookup = k.kind+mirror, "", k.id
			rows = append(rows, m)
		}
	}
	for i := range rows {
		rows[i].key = rows[i].hash()
	}
	return rows
}

// hash identifies a row's content within its part.
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
	h.Write([]byte{r.kind, r.isRole, r.end})
	num(r.from)
	num(r.to)
	num(r.expires)
	str(r.scope)
	str(r.lookup)
	str(r.ref)
	str(r.resource)
	str(r.status)
	num(int64(len(r.path)))
	for _, s := range r.path {
		str(s)
	}
	return h.Sum64()
}

// diffRows appends the rows that take a part from before to now.
func diffRows(before, now []mapRow, known int64, version uint64, seq *uint32, out *[]mapRow) {
	inOld := make(map[uint64]bool, len(before))
	for _, r := range before {
		inOld[r.key] = true
	}
	inNew := make(map[uint64]bool, len(now))
	for _, r := range now {
		inNew[r.key] = true
	}
	emit := func(r mapRow, present uint8) {
		r.known, r.version, r.seq, r.present = known, version, *seq, present
		*seq++
		*out = append(*out, r)
	}
	for _, r := range before {
		if !inNew[r.key] {
			emit(r, 0)
		}
	}
	for _, r := range now {
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
	var (
		pending []event.Record // the records of the last recorded time read, not yet applied
		n       int
	)
	flush := func() {
		tenants, by := byTenant(pending)
		for _, t := range tenants {
			m.graph(t).ApplyBatch(by[t])
		}
		pending = pending[:0]
	}
	err := readArchive(ctx, s.conn, "", position, changeTypes(), func(r event.Record) error {
		if len(pending) > 0 && !pending[0].Recorded.Equal(r.Recorded) {
			flush()
		}
		pending = append(pending, r)
		if n++; n%1_000_000 == 0 {
			s.log.Info("rebuilding the permission map from the archive", "events", n, "position", r.Position, "of", position,
				"took", time.Since(start).Round(time.Millisecond))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("rebuild the permission map: %w", err)
	}
	// The last recorded time's records apply as a group would, so that what they wrote is the
	// tail a group continuing that recorded time starts from.
	if len(pending) > 0 {
		tenants, by := byTenant(pending)
		for _, t := range tenants {
			g := m.graph(t)
			for _, k := range partsChanged(t, g.ApplyChanges(by[t])) {
				m.tail[k] = exportPart(g, k, nil)
			}
		}
		m.lastRec = event.Micros(pending[0].Recorded)
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
