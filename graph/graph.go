// Package graph is whocould's projection engine: the temporal permission graph of one tenant.
//
// It keeps, for every relation (membership, role permission, role inclusion, grant) and every
// principal, the events that concern it, and derives from them the intervals in event time during
// which the relation holds and the principal is active, exactly as access/query.go specifies.
// Events may be applied in any order: a late event re-derives only the relations and principals
// it touches, so the graph is always the projection of the set of events applied so far.
// Every event also carries its recorded time; a question asked "as known at" K is answered from
// the events recorded at or before K (bitemporal history).
//
// Graph implements access.Querier. Apply and the queries may be called concurrently.
package graph

import (
	"math"
	"sync"

	"github.com/whocould/whocould/event"
)

// forever is the end of an interval that has not ended, and the known-at of "now".
const forever = math.MaxInt64

type relKind uint8

const (
	relMember      relKind = iota + 1 // a = group, b = member
	relPerm                           // a = role, b = action pattern
	relInclude                        // a = role, b = included role
	relGrantRole                      // a = subject, b = role, c = resource
	relGrantAction                    // a = subject, b = action pattern, c = resource
)

type relKey struct {
	kind    relKind
	a, b, c uint32
}

type op uint8

const (
	opAdd op = iota + 1
	opRemove
	opDelete // an endpoint's deletion, only while deriving

	// principal lifecycle
	opCreated
	opUpdated
	opDisabled
	opEnabled
	opDeleted
	opUse // an add naming the principal, which creates it if needed
)

// stamp places an event: event-time order (time, tie) and recorded time.
type stamp struct {
	time int64
	tie  uint64
	rec  int64
}

func (s stamp) less(t stamp) bool {
	if s.time != t.time {
		return s.time < t.time
	}
	return s.tie < t.tie
}

type relEvent struct {
	stamp
	expires int64 // grant.added: expires_at, 0 for none
	op      op
}

// End says why an interval ended.
type End uint8

// Why intervals end.
const (
	EndOpen    End = iota // has not ended
	EndRemoved            // a remove event
	EndExpired            // a grant's expiry
	EndDeleted            // the deletion of one of its ends
	EndRenewed            // an add replaced its expiry: the next interval carries on
)

type interval struct {
	from, to int64
	expires  int64
	end      End
}

type relation struct {
	relKey
	maxRec int64 // the latest recorded time of its events
	events []relEvent
	ivs    []interval // derived from every event applied
}

type lifeEvent struct {
	stamp
	op    op
	attrs map[string]string
}

type statusIv struct {
	from, to int64
	state    uint8
}

const (
	stActive uint8 = iota + 1
	stDisabled
	stDeleted
)

type entity struct {
	life   []lifeEvent // principals: lifecycle events and uses, in event-time order
	status []statusIv  // principals: derived from life

	dels      []stamp // deletions, in event-time order
	maxDelRec int64

	memberOf   []int32 // membership relations where it is the member
	members    []int32 // membership relations where it is the group
	grants     []int32 // grant relations where it is the subject
	perms      []int32 // role: permission relations
	includes   []int32 // role: inclusion relations from it
	includedBy []int32 // role: inclusion relations to it
	grantsOf   []int32 // role: grant relations of it
}

// Graph is the temporal permission graph of one tenant.
type Graph struct {
	mu sync.RWMutex

	ids   map[string]uint32
	names []string

	ents     []*entity    // by name id; nil for a name that is no entity
	kinds    []event.Kind // by name id
	relIdx   map[relKey]int32
	rels     []relation
	resGrant map[uint32][]int32 // grant relations by resource

	applied  int64  // change events applied
	position uint64 // the highest log position applied
	lastRec  int64
}

// New returns an empty graph.
func New() *Graph {
	return &Graph{
		ids:      map[string]uint32{},
		relIdx:   map[relKey]int32{},
		resGrant: map[uint32][]int32{},
	}
}

func (g *Graph) intern(s string) uint32 {
	if id, ok := g.ids[s]; ok {
		return id
	}
	id := uint32(len(g.names))
	g.ids[s] = id
	g.names = append(g.names, s)
	g.ents = append(g.ents, nil)
	g.kinds = append(g.kinds, event.KindOf(s))
	return id
}

func (g *Graph) lookup(s string) (uint32, bool) {
	id, ok := g.ids[s]
	return id, ok
}

func (g *Graph) entity(id uint32) *entity {
	e := g.ents[id]
	if e == nil {
		e = &entity{}
		g.ents[id] = e
	}
	return e
}

func (g *Graph) relation(k relKey) int32 {
	if i, ok := g.relIdx[k]; ok {
		return i
	}
	i := int32(len(g.rels))
	g.rels = append(g.rels, relation{relKey: k})
	g.relIdx[k] = i
	switch k.kind {
	case relMember:
		g.entity(k.a).members = append(g.entity(k.a).members, i)
		g.entity(k.b).memberOf = append(g.entity(k.b).memberOf, i)
	case relPerm:
		g.entity(k.a).perms = append(g.entity(k.a).perms, i)
	case relInclude:
		g.entity(k.a).includes = append(g.entity(k.a).includes, i)
		g.entity(k.b).includedBy = append(g.entity(k.b).includedBy, i)
	case relGrantRole:
		g.entity(k.a).grants = append(g.entity(k.a).grants, i)
		g.entity(k.b).grantsOf = append(g.entity(k.b).grantsOf, i)
		g.resGrant[k.c] = append(g.resGrant[k.c], i)
	case relGrantAction:
		g.entity(k.a).grants = append(g.entity(k.a).grants, i)
		g.resGrant[k.c] = append(g.resGrant[k.c], i)
	}
	return i
}

// Stats counts what the graph holds.
type Stats struct {
	Events    int64  // change events applied
	Position  uint64 // the highest log position applied
	Relations int
	Intervals int
	Entities  int
	Names     int
}

// Stats counts what the graph holds.
func (g *Graph) Stats() Stats {
	g.mu.RLock()
	defer g.mu.RUnlock()
	s := Stats{Events: g.applied, Position: g.position, Relations: len(g.rels), Names: len(g.names)}
	for _, e := range g.ents {
		if e != nil {
			s.Entities++
		}
	}
	for i := range g.rels {
		s.Intervals += len(g.rels[i].ivs)
	}
	return s
}

// Apply applies one record. Records that are not change events are ignored; applying a record
// is idempotent only together with the log's deduplication (the same event applied twice is
// two events). The record must be valid (event.Validate).
func (g *Graph) Apply(r *event.Record) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.apply(r)
}

// ApplyBatch applies records under one lock.
func (g *Graph) ApplyBatch(rs []event.Record) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for i := range rs {
		g.apply(&rs[i])
	}
}

func (g *Graph) apply(r *event.Record) {
	if r.Position > g.position {
		g.position = r.Position
	}
	if !r.Type.IsChange() {
		return
	}
	g.applied++
	o := r.OrderOf()
	rec := event.Micros(r.Recorded)
	if rec < g.lastRec { // the log's recorded times do not decrease; keep it so
		rec = g.lastRec
	}
	g.lastRec = rec
	st := stamp{time: o.Time, tie: o.Tie, rec: rec}
	d := &r.Data
	switch r.Type {
	case event.PrincipalCreated:
		g.life(d.Principal, lifeEvent{stamp: st, op: opCreated, attrs: d.Attributes})
	case event.PrincipalUpdated:
		g.life(d.Principal, lifeEvent{stamp: st, op: opUpdated, attrs: d.Attributes})
	case event.PrincipalDisabled:
		g.life(d.Principal, lifeEvent{stamp: st, op: opDisabled})
	case event.PrincipalEnabled:
		g.life(d.Principal, lifeEvent{stamp: st, op: opEnabled})
	case event.PrincipalDeleted:
		id := g.intern(d.Principal)
		g.life(d.Principal, lifeEvent{stamp: st, op: opDeleted})
		g.deleted(id, st)
	case event.GroupDeleted:
		g.deleted(g.intern(d.Group), st)
	case event.RoleDeleted:
		g.deleted(g.intern(d.Role), st)
	case event.GroupCreated, event.RoleCreated:
		// Groups and roles exist through their relations: nothing to derive.
		g.intern(firstNonEmpty(d.Group, d.Role))
	case event.MembershipAdded, event.MembershipRemoved:
		k := relKey{kind: relMember, a: g.intern(d.Group), b: g.intern(d.Member)}
		g.relEvent(k, r.Type == event.MembershipAdded, st, 0)
		if r.Type == event.MembershipAdded && event.KindOf(d.Member) == event.KindPrincipal {
			g.life(d.Member, lifeEvent{stamp: st, op: opUse})
		}
	case event.RolePermissionAdded, event.RolePermissionRemoved:
		k := relKey{kind: relPerm, a: g.intern(d.Role), b: g.intern(d.Action)}
		g.relEvent(k, r.Type == event.RolePermissionAdded, st, 0)
	case event.RoleIncludeAdded, event.RoleIncludeRemoved:
		k := relKey{kind: relInclude, a: g.intern(d.Role), b: g.intern(d.Includes)}
		g.relEvent(k, r.Type == event.RoleIncludeAdded, st, 0)
	case event.GrantAdded, event.GrantRemoved:
		k := relKey{kind: relGrantAction, a: g.intern(d.Subject), c: g.intern(d.Resource)}
		if d.Role != "" {
			k.kind, k.b = relGrantRole, g.intern(d.Role)
		} else {
			k.b = g.intern(d.Action)
		}
		var exp int64
		if d.ExpiresAt != nil {
			exp = event.Micros(*d.ExpiresAt)
		}
		g.relEvent(k, r.Type == event.GrantAdded, st, exp)
		if r.Type == event.GrantAdded && event.KindOf(d.Subject) == event.KindPrincipal {
			g.life(d.Subject, lifeEvent{stamp: st, op: opUse})
		}
	}
}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// relEvent records an add or remove of relation k and re-derives it.
func (g *Graph) relEvent(k relKey, add bool, st stamp, expires int64) {
	i := g.relation(k)
	r := &g.rels[i]
	e := relEvent{stamp: st, expires: expires, op: opRemove}
	if add {
		e.op = opAdd
	}
	r.events = insertSorted(r.events, e, func(x relEvent) stamp { return x.stamp })
	r.maxRec = max(r.maxRec, st.rec)
	r.ivs = g.deriveRel(r, forever, r.ivs[:0])
}

// deleted records the deletion of id and re-derives every relation it is an end of.
func (g *Graph) deleted(id uint32, st stamp) {
	e := g.entity(id)
	e.dels = insertSorted(e.dels, st, func(x stamp) stamp { return x })
	e.maxDelRec = max(e.maxDelRec, st.rec)
	for _, list := range [][]int32{e.memberOf, e.members, e.grants, e.perms, e.includes, e.includedBy, e.grantsOf} {
		for _, i := range list {
			r := &g.rels[i]
			r.ivs = g.deriveRel(r, forever, r.ivs[:0])
		}
	}
}

// life records a principal lifecycle event or use and re-derives the principal's status.
func (g *Graph) life(principal string, le lifeEvent) {
	e := g.entity(g.intern(principal))
	n := len(e.life)
	if le.op == opUse && n > 0 && e.life[n-1].stamp.less(le.stamp) && len(e.status) > 0 &&
		e.status[len(e.status)-1].to == forever && e.status[len(e.status)-1].state != stDeleted {
		// A use after everything else, of a principal that exists: changes nothing.
		e.life = append(e.life, le)
		return
	}
	e.life = insertSorted(e.life, le, func(x lifeEvent) stamp { return x.stamp })
	e.status = deriveStatus(e.life, forever, e.status[:0])
}

// insertSorted inserts v into s, kept in event-time order; equal stamps keep arrival order.
func insertSorted[T any](s []T, v T, key func(T) stamp) []T {
	s = append(s, v)
	k := key(v)
	i := len(s) - 1
	for i > 0 && k.less(key(s[i-1])) {
		s[i] = s[i-1]
		i--
	}
	s[i] = v
	return s
}

// endsOf lists the deletion stamps of the ends of r, merged in event-time order.
func (g *Graph) endsOf(r *relation) (a, b []stamp) {
	if e := g.ents[r.a]; e != nil {
		a = e.dels
	}
	switch r.kind {
	case relMember, relInclude, relGrantRole:
		if e := g.ents[r.b]; e != nil && r.b != r.a {
			b = e.dels
		}
	}
	return a, b
}

// deriveRel derives the intervals of r from its events and its ends' deletions recorded at or
// before known, appending them to out.
func (g *Graph) deriveRel(r *relation, known int64, out []interval) []interval {
	da, db := g.endsOf(r)
	var (
		holding    bool
		cur        interval
		ie, ia, ib int
	)
	closeAt := func(t int64, why End) {
		if t > cur.from {
			cur.to, cur.end = t, why
			out = append(out, cur)
		}
		holding = false
	}
	for {
		// The next item in event-time order: an event of r or a deletion of either end.
		var (
			next   stamp
			isDel  bool
			ev     *relEvent
			picked = false
		)
		for ie < len(r.events) && r.events[ie].rec > known {
			ie++
		}
		for ia < len(da) && da[ia].rec > known {
			ia++
		}
		for ib < len(db) && db[ib].rec > known {
			ib++
		}
		if ie < len(r.events) {
			next, ev, picked = r.events[ie].stamp, &r.events[ie], true
		}
		if ia < len(da) && (!picked || da[ia].less(next)) {
			next, ev, isDel, picked = da[ia], nil, true, true
		}
		if ib < len(db) && (!picked || db[ib].less(next)) {
			next, ev, isDel, picked = db[ib], nil, true, true
		}
		if !picked {
			break
		}
		switch {
		case ev != nil:
			ie++
		case ia < len(da) && next == da[ia]:
			ia++
		default:
			ib++
		}
		if holding && cur.expires != 0 && cur.expires <= next.time {
			closeAt(cur.expires, EndExpired)
		}
		switch {
		case isDel:
			if holding {
				closeAt(next.time, EndDeleted)
			}
		case ev.op == opAdd:
			switch {
			case holding && ev.expires != 0 && ev.expires <= next.time:
				// Renewed with an expiry already past: it ends now, not retroactively.
				closeAt(next.time, EndExpired)
			case holding && ev.expires != cur.expires:
				// Renewed with another expiry: a new interval, so that every instant shows the
				// expiry in force then.
				closeAt(next.time, EndRenewed)
				holding = true
				cur = interval{from: next.time, expires: ev.expires}
			case holding:
			case ev.expires != 0 && ev.expires <= next.time:
				// Added already expired: never holds.
			default:
				holding = true
				cur = interval{from: next.time, expires: ev.expires}
			}
		case ev.op == opRemove:
			if holding {
				closeAt(next.time, EndRemoved)
			}
		}
	}
	if holding {
		if cur.expires != 0 {
			closeAt(cur.expires, EndExpired)
		} else {
			cur.to, cur.end = forever, EndOpen
			out = append(out, cur)
		}
	}
	return out
}

// deriveStatus derives a principal's status intervals from its lifecycle events recorded at or
// before known. Before its first interval a principal is unknown; stDeleted intervals follow a
// deletion.
func deriveStatus(life []lifeEvent, known int64, out []statusIv) []statusIv {
	var (
		state uint8 // 0: never existed
		from  int64
	)
	set := func(t int64, s uint8) {
		if s == state {
			return
		}
		if state != 0 && t > from { // an empty stretch is none
			out = append(out, statusIv{from: from, to: t, state: state})
		}
		state, from = s, t
	}
	for i := range life {
		le := &life[i]
		if le.rec > known {
			continue
		}
		exists := state == stActive || state == stDisabled
		switch le.op {
		case opCreated, opUpdated, opUse, opEnabled:
			if !exists || le.op == opEnabled {
				set(le.time, stActive)
			}
		case opDisabled:
			set(le.time, stDisabled)
		case opDeleted:
			if exists {
				set(le.time, stDeleted)
			}
		}
	}
	if state != 0 {
		out = append(out, statusIv{from: from, to: forever, state: state})
	}
	// Merge neighbours of the same state (an empty stretch between them was dropped).
	merged := out[:0]
	for _, s := range out {
		if n := len(merged); n > 0 && merged[n-1].state == s.state && merged[n-1].to == s.from {
			merged[n-1].to = s.to
			continue
		}
		merged = append(merged, s)
	}
	return merged
}

// attributesAt replays a principal's attributes up to t, from events recorded at or before
// known.
func attributesAt(life []lifeEvent, t, known int64) map[string]string {
	var attrs map[string]string
	exists := false
	for i := range life {
		le := &life[i]
		if le.rec > known || le.time > t {
			continue
		}
		switch le.op {
		case opCreated, opUpdated, opUse, opDisabled, opEnabled:
			if !exists {
				exists, attrs = true, map[string]string{}
			}
			for k, v := range le.attrs {
				if v == "" {
					delete(attrs, k)
				} else {
					attrs[k] = v
				}
			}
		case opDeleted:
			exists, attrs = false, nil
		}
	}
	return attrs
}
