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
// Graph implements access.Querier. Apply and the queries may be called concurrently. Whether a
// principal could, and what it could, is always exact; the paths that say why are bounded (nested
// groups and roles can make exponentially many): an answer lists the first MaxPaths of each
// principal or entitlement in access.ComparePaths order, the shortest first, and sets
// PathsTruncated when it leaves some out.
package graph

import (
	"encoding/binary"
	"math"
	"slices"
	"sync"
	"sync/atomic"

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

// relEvent is an add or a remove of a relation.
type relEvent struct {
	stamp
	exp int64 // an add: expires_at (0: none); a remove: removeMark
}

// removeMark is relEvent.exp of a remove.
const removeMark = math.MinInt64

func (e *relEvent) op() op {
	if e.exp == removeMark {
		return opRemove
	}
	return opAdd
}

// expires is an add's expires_at, 0 for none.
func (e *relEvent) expires() int64 {
	if e.exp == removeMark {
		return 0
	}
	return e.exp
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

// relation is one relation: its events, and the intervals derived from every event applied. The
// usual relation (one event, one interval) holds them inline; more go to relStore.mores. A
// relation holds no pointer, so the collector never scans the relations.
type relation struct {
	kind     relKind
	nev, niv uint8 // events and intervals inline (0 or 1), or manyInline: in more
	a, b, c  uint32
	ev       [1]relEvent
	iv       [1]interval
	more     int32 // 1 + its index in relStore.mores; 0: none
}

const manyInline = 2

// relMore is the events and intervals of a relation that has more than one.
type relMore struct {
	maxRec int64
	events []relEvent
	ivs    []interval
}

// key is the relation's key. (A membership keeps in c its place in its group's members.)
func (r *relation) key() relKey {
	k := relKey{kind: r.kind, a: r.a, b: r.b, c: r.c}
	if k.kind == relMember {
		k.c = 0
	}
	return k
}

// memberRef is a membership relation of a group, with when it holds in short, so that walking
// a group's members needs no look at the relations: [from, to) when it has one interval (an
// empty one when none), from = manySpan when it has several.
type memberRef struct {
	rel      int32
	member   uint32
	from, to int64
}

const manySpan = math.MinInt64

// noteIvs updates what depends on the intervals of relation r: its memberRef.
func (g *Graph) noteIvs(r *relation) {
	if r.kind != relMember {
		return
	}
	m := &g.ents[r.a].members[r.c]
	switch ivs := g.rels.ivs(r); len(ivs) {
	case 0:
		m.from, m.to = 0, 0
	case 1:
		m.from, m.to = ivs[0].from, ivs[0].to
	default:
		m.from, m.to = manySpan, manySpan
	}
}

// events lists r's events, in event-time order.
func (s *relStore) events(r *relation) []relEvent {
	if r.nev == manyInline {
		return s.mores[r.more-1].events
	}
	return r.ev[:r.nev]
}

func (s *relStore) setEvents(r *relation, evs []relEvent) {
	if len(evs) <= 1 {
		if len(evs) == 1 {
			r.ev[0] = evs[0]
		}
		r.nev = uint8(len(evs))
		if r.more != 0 {
			s.mores[r.more-1].events = nil
		}
		return
	}
	m := s.moreOf(r)
	m.events, m.maxRec = evs, 0
	for i := range evs {
		m.maxRec = max(m.maxRec, evs[i].rec)
	}
	r.nev = manyInline
}

// maxRec is the latest recorded time of r's events.
func (s *relStore) maxRec(r *relation) int64 {
	switch r.nev {
	case manyInline:
		return s.mores[r.more-1].maxRec
	case 1:
		return r.ev[0].rec
	}
	return 0
}

// ivs lists r's intervals.
func (s *relStore) ivs(r *relation) []interval {
	if r.niv == manyInline {
		return s.mores[r.more-1].ivs
	}
	return r.iv[:r.niv]
}

// ivBuf is an empty buffer for deriving r's intervals anew.
func (s *relStore) ivBuf(r *relation) []interval {
	if r.niv == manyInline {
		return s.mores[r.more-1].ivs[:0]
	}
	return r.iv[:0]
}

func (s *relStore) setIvs(r *relation, ivs []interval) {
	if len(ivs) <= 1 {
		if len(ivs) == 1 {
			r.iv[0] = ivs[0]
		}
		r.niv = uint8(len(ivs))
		if r.more != 0 {
			s.mores[r.more-1].ivs = nil
		}
		return
	}
	s.moreOf(r).ivs = ivs
	r.niv = manyInline
}

// moreOf is r's relMore, made if needed; valid until the next is made.
func (s *relStore) moreOf(r *relation) *relMore {
	if r.more == 0 {
		s.mores = append(s.mores, relMore{})
		r.more = int32(len(s.mores))
	}
	return &s.mores[r.more-1]
}

type lifeEvent struct {
	stamp
	op    op
	attrs uint32 // principal.created, principal.updated: the attributes (packAttrs), 0 for none
}

// packAttrs packs attributes at the end of g.attrs and returns where they start, plus one (0
// when there are none): the length of what follows, then for each attribute in key order the
// key's length, the key, the value's length, the value (lengths as uvarints). One buffer for
// all, rather than a map for every event, keeps them small and out of the collector's way.
func (g *Graph) packAttrs(m map[string]string) uint32 {
	if len(m) == 0 {
		return 0
	}
	keys := make([]string, 0, len(m))
	size := 0
	for k := range m {
		keys = append(keys, k)
		size += 2*binary.MaxVarintLen64 + len(k) + len(m[k])
	}
	slices.Sort(keys)
	b := make([]byte, 0, size)
	for _, k := range keys {
		b = binary.AppendUvarint(b, uint64(len(k)))
		b = append(b, k...)
		b = binary.AppendUvarint(b, uint64(len(m[k])))
		b = append(b, m[k]...)
	}
	at := len(g.attrs)
	if at >= math.MaxUint32-1 {
		panic("graph: the attributes of one tenant exceed 4 GiB")
	}
	g.attrs = binary.AppendUvarint(g.attrs, uint64(len(b)))
	g.attrs = append(g.attrs, b...)
	return uint32(at + 1)
}

// eachAttr calls fn with each attribute packAttrs packed at a, in key order.
func (g *Graph) eachAttr(a uint32, fn func(k, v string)) {
	if a == 0 {
		return
	}
	b := g.attrs[a-1:]
	n, w := binary.Uvarint(b)
	b = b[w : w+int(n)]
	next := func() string {
		n, w := binary.Uvarint(b)
		x := string(b[w : w+int(n)])
		b = b[w+int(n):]
		return x
	}
	for len(b) > 0 {
		k := next()
		fn(k, next())
	}
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
	status []statusIv  // principals: derived from life, when statusHead is too short for it

	dels      []stamp // deletions, in event-time order
	maxDelRec int64

	memberOf  []int32     // membership relations where it is the member
	members   []memberRef // membership relations where it is the group
	grants    []int32     // grant relations where it is the subject
	*roleRels             // a role's (nil for another entity)
}

// roleRels is the relations of a role.
type roleRels struct {
	perms      []int32 // permission relations
	includes   []int32 // inclusion relations from it
	includedBy []int32 // inclusion relations to it
	grantsOf   []int32 // grant relations of it
}

// Graph is the temporal permission graph of one tenant.
type Graph struct {
	mu sync.RWMutex

	ids   map[string]uint32
	names []string
	attrs []byte // principals' attributes (packAttrs)

	statusBuf []statusIv // for deriving statuses

	ents     []*entity    // by name id; nil for a name that is no entity
	kinds    []uint8      // by name id: its event.Kind
	stat     []statusHead // by name id: a principal's status, for questions as known now
	relIdx   relIndex
	rels     relStore
	resGrant map[uint32][]int32 // grant relations by resource

	pool    scratchPool // the scratch memory of questions
	rank    atomic.Pointer[rankTable]
	ranking atomic.Bool // a rank table is being computed

	applied  int64  // change events applied
	position uint64 // the highest log position applied
	lastRec  int64
}

// New returns an empty graph.
func New() *Graph {
	return &Graph{
		ids:      map[string]uint32{},
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
	g.kinds = append(g.kinds, uint8(event.KindOf(s)))
	g.stat = append(g.stat, statusHead{})
	return id
}

// kind is what id names.
func (g *Graph) kind(id uint32) event.Kind { return event.Kind(g.kinds[id]) }

func (g *Graph) lookup(s string) (uint32, bool) {
	id, ok := g.ids[s]
	return id, ok
}

// role is the entity of id, which a relation uses as a role.
func (g *Graph) role(id uint32) *entity {
	e := g.entity(id)
	if e.roleRels == nil {
		e.roleRels = &roleRels{}
	}
	return e
}

func (g *Graph) entity(id uint32) *entity {
	e := g.ents[id]
	if e == nil {
		e = &entity{}
		if g.kind(id) == event.KindRole {
			e.roleRels = &roleRels{}
		}
		g.ents[id] = e
	}
	return e
}

func (g *Graph) relation(k relKey) int32 {
	if i, ok := g.relIdx.find(&g.rels, k); ok {
		return i
	}
	i := g.rels.add(relation{kind: k.kind, a: k.a, b: k.b, c: k.c})
	g.relIdx.insert(&g.rels, i)
	switch k.kind {
	case relMember:
		e := g.entity(k.a)
		g.rels.at(i).c = uint32(len(e.members))
		e.members = append(e.members, memberRef{rel: i, member: k.b})
		g.entity(k.b).memberOf = append(g.entity(k.b).memberOf, i)
	case relPerm:
		g.role(k.a).perms = append(g.role(k.a).perms, i)
	case relInclude:
		g.role(k.a).includes = append(g.role(k.a).includes, i)
		g.role(k.b).includedBy = append(g.role(k.b).includedBy, i)
	case relGrantRole:
		g.entity(k.a).grants = append(g.entity(k.a).grants, i)
		g.role(k.b).grantsOf = append(g.role(k.b).grantsOf, i)
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
	s := Stats{Events: g.applied, Position: g.position, Relations: g.rels.len(), Names: len(g.names)}
	for _, e := range g.ents {
		if e != nil {
			s.Entities++
		}
	}
	for i := range int32(g.rels.len()) {
		s.Intervals += len(g.rels.ivs(g.rels.at(i)))
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
		g.life(d.Principal, lifeEvent{stamp: st, op: opCreated, attrs: g.packAttrs(d.Attributes)})
	case event.PrincipalUpdated:
		g.life(d.Principal, lifeEvent{stamp: st, op: opUpdated, attrs: g.packAttrs(d.Attributes)})
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
	r := g.rels.at(i)
	e := relEvent{stamp: st, exp: removeMark}
	if add {
		e.exp = expires
	}
	g.rels.setEvents(r, insertSorted(g.rels.events(r), e, func(x relEvent) stamp { return x.stamp }))
	g.rederive(r)
}

// rederive derives r's intervals from every event applied.
func (g *Graph) rederive(r *relation) {
	g.rels.setIvs(r, g.deriveRel(r, forever, g.rels.ivBuf(r)))
	g.noteIvs(r)
}

// deleted records the deletion of id and re-derives every relation it is an end of.
func (g *Graph) deleted(id uint32, st stamp) {
	e := g.entity(id)
	e.dels = insertSorted(e.dels, st, func(x stamp) stamp { return x })
	e.maxDelRec = max(e.maxDelRec, st.rec)
	for _, i := range relsOf(e) {
		g.rederive(g.rels.at(i))
	}
}

// life records a principal lifecycle event or use and re-derives the principal's status.
func (g *Graph) life(principal string, le lifeEvent) {
	id := g.intern(principal)
	e := g.entity(id)
	n := len(e.life)
	if le.op == opUse && n > 0 && e.life[n-1].stamp.less(le.stamp) {
		if last, ok := g.lastStatus(id); ok && last.to == forever && last.state != stDeleted {
			// A use after everything else, of a principal that exists: changes nothing.
			e.life = append(e.life, le)
			return
		}
	}
	e.life = insertSorted(e.life, le, func(x lifeEvent) stamp { return x.stamp })
	g.setStatus(id, e, deriveStatus(e.life, forever, g.statusBuf[:0]))
}

// setStatus sets a principal's status: in short in g.stat, and in full in the entity only
// when that is too short for it.
func (g *Graph) setStatus(id uint32, e *entity, ivs []statusIv) {
	h := headOf(ivs)
	g.stat[id] = h
	if h.many {
		e.status = append(e.status[:0], ivs...)
	} else {
		e.status = nil
	}
	g.statusBuf = ivs[:0]
}

// statusOf is a principal's status intervals (made anew unless many).
func (g *Graph) statusOf(id uint32) []statusIv {
	if h := &g.stat[id]; !h.many {
		return h.ivs()
	}
	return g.ents[id].status
}

// lastStatus is a principal's last status interval.
func (g *Graph) lastStatus(id uint32) (statusIv, bool) {
	h := &g.stat[id]
	switch {
	case h.many:
		st := g.ents[id].status
		return st[len(st)-1], true
	case h.s2 != 0:
		return statusIv{from: h.mid, to: h.to, state: h.s2}, true
	case h.s1 != 0:
		return statusIv{from: h.from, to: h.to, state: h.s1}, true
	}
	return statusIv{}, false
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
	events := g.rels.events(r)
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
		for ie < len(events) && events[ie].rec > known {
			ie++
		}
		for ia < len(da) && da[ia].rec > known {
			ia++
		}
		for ib < len(db) && db[ib].rec > known {
			ib++
		}
		if ie < len(events) {
			next, ev, picked = events[ie].stamp, &events[ie], true
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
		case ev.op() == opAdd:
			exp := ev.expires()
			switch {
			case holding && exp != 0 && exp <= next.time:
				// Renewed with an expiry already past: it ends now, not retroactively.
				closeAt(next.time, EndExpired)
			case holding && exp != cur.expires:
				// Renewed with another expiry: a new interval, so that every instant shows the
				// expiry in force then.
				closeAt(next.time, EndRenewed)
				holding = true
				cur = interval{from: next.time, expires: exp}
			case holding:
			case exp != 0 && exp <= next.time:
				// Added already expired: never holds.
			default:
				holding = true
				cur = interval{from: next.time, expires: exp}
			}
		case ev.op() == opRemove:
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

// statusHead is a principal's status in short: its first interval [from, mid) in state s1 and,
// when s2 != 0, the next [mid, to) in state s2 (else the first ends at to); many when it has
// more (look at the entity's).
type statusHead struct {
	from, mid, to int64
	s1, s2        uint8 // 0: none
	many          bool
}

func headOf(ivs []statusIv) statusHead {
	switch {
	case len(ivs) == 0:
		return statusHead{}
	case len(ivs) == 1:
		return statusHead{from: ivs[0].from, mid: ivs[0].to, to: ivs[0].to, s1: ivs[0].state}
	case len(ivs) == 2 && ivs[0].to == ivs[1].from:
		return statusHead{from: ivs[0].from, mid: ivs[0].to, to: ivs[1].to, s1: ivs[0].state, s2: ivs[1].state}
	}
	return statusHead{many: true}
}

// ivs is the intervals of a head that is not many.
func (h *statusHead) ivs() []statusIv {
	switch {
	case h.s1 == 0:
		return nil
	case h.s2 == 0:
		return []statusIv{{from: h.from, to: h.to, state: h.s1}}
	}
	return []statusIv{{from: h.from, to: h.mid, state: h.s1}, {from: h.mid, to: h.to, state: h.s2}}
}

// at is the state at t and since when it holds (0: none).
func (h *statusHead) at(t int64) (uint8, int64) {
	switch {
	case h.s1 == 0 || t < h.from || t >= h.to:
		return 0, 0
	case t < h.mid:
		return h.s1, h.from
	}
	return h.s2, h.mid
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
func (g *Graph) attributesAt(life []lifeEvent, t, known int64) map[string]string {
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
			g.eachAttr(le.attrs, func(k, v string) {
				if v == "" {
					delete(attrs, k)
				} else {
					attrs[k] = v
				}
			})
		case opDeleted:
			exists, attrs = false, nil
		}
	}
	return attrs
}
