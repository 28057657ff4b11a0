// Package randhist generates random event histories for differential tests: a small universe of
// principals, groups, roles, resources and actions, so that collisions are frequent — nested
// groups with cycles and self-membership, role inclusion cycles, deletions and re-creations,
// disables and enables, expiring grants (re-added with a new expiry), removes of what does not
// hold, many events at identical timestamps, implicit creation, decisions and approvals among the
// changes, a second tenant — delivered in a shuffled order, some of it days late, and partly twice.
package randhist

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"time"

	"github.com/whocould/whocould/access"
	"github.com/whocould/whocould/event"
)

// Options scale a history. The zero value gives the defaults.
type Options struct {
	// Changes is the number of change events (default 300). About one event in twenty more is a
	// decision or an approval.
	Changes int
	// Slots is the number of distinct minutes event times are drawn from (default Changes/4, at
	// least 8): the fewer, the more events share a timestamp.
	Slots int
	// Scale multiplies the universe (default 1: 8 principals, 5 groups, 5 roles).
	Scale int
	// DuplicateRate is the share of deliveries that re-deliver an earlier event (default 0.06;
	// negative: none). A third of them carry different content under the same (source, id).
	DuplicateRate float64
	// LateRate is the share of events delivered hours to days late (default 0.1; negative: none).
	LateRate float64
	// SingleTenant keeps every event in the default tenant (by default about one in ten goes to
	// tenant "acme", and some name "default" explicitly).
	SingleTenant bool
	// ValidOnly drops the deliveries that event.Validate refuses (an expiry not after the add,
	// say), as ingest would: for tests whose events go through the real ingest path.
	ValidOnly bool
}

func (o Options) withDefaults() Options {
	if o.Changes <= 0 {
		o.Changes = 300
	}
	if o.Slots <= 0 {
		o.Slots = max(8, o.Changes/4)
	}
	if o.Scale <= 0 {
		o.Scale = 1
	}
	if o.DuplicateRate == 0 {
		o.DuplicateRate = 0.06
	}
	if o.LateRate == 0 {
		o.LateRate = 0.1
	}
	return o
}

// Base is the event time of slot 0.
var Base = time.Date(2026, 1, 5, 0, 0, 0, 0, time.UTC)

// Universe is what a history names.
type Universe struct {
	Principals, Groups, Roles []string
	// Resources are granted on; QueryResources are asked about (a superset).
	Resources, QueryResources []string
	// Patterns are granted or held by roles; Actions are asked about.
	Patterns, Actions []string
}

// UniverseOf is the universe of a scale (1 is the default).
func UniverseOf(scale int) Universe {
	u := Universe{
		Resources: []string{"*", "db:*", "db:prod", "db:pro", "db:prod/orders", "db:prod/orders/x",
			"db:staging", "repo:acme/api", "repo:*", "repo:acme"},
		QueryResources: []string{"db:prod", "db:pro", "db:prod/orders", "db:prod/orders/x", "db:prod/ordersx",
			"db:production", "db:staging/t", "repo:acme/api", "repo:acme/web", "repo:acme", "db:*", "*", "k8s:ns/a"},
		Patterns: []string{"db.table.insert", "db.table.drop", "db.table.*", "db.*", "*", "repo.push", "repo.*",
			"db.tables", "DB.table.drop", "db.table.select"},
		Actions: []string{"db.table.insert", "db.table.drop", "db.table.select", "db.tables", "db.table.x.y",
			"DB.table.drop", "db.TABLE.drop", "repo.push", "repo.admin", "k8s.pod.exec", "db.table.*"},
	}
	for i := range scale {
		sfx := ""
		if i > 0 {
			sfx = fmt.Sprint(i)
		}
		u.Principals = append(u.Principals, "user:alice"+sfx, "user:bob"+sfx, "user:carol"+sfx, "user:dave"+sfx,
			"user:erin"+sfx, "user:frank"+sfx, "service:ci-bot"+sfx, "agent:copilot-7"+sfx)
		u.Groups = append(u.Groups, "group:eng"+sfx, "group:dba"+sfx, "group:all"+sfx, "team:payments"+sfx, "team:sre"+sfx)
		u.Roles = append(u.Roles, "role:db-reader"+sfx, "role:db-writer"+sfx, "role:db-owner"+sfx, "role:admin"+sfx, "role:repo-dev"+sfx)
	}
	return u
}

type gen struct {
	r    *rand.Rand
	o    Options
	u    Universe
	evs  []event.Event
	next map[string]int
	// Relations added so far, so that removes often hit something that holds.
	added []event.Event
}

func (g *gen) pick(xs []string) string { return xs[g.r.IntN(len(xs))] }

func (g *gen) chance(p float64) bool { return g.r.Float64() < p }

func (g *gen) slotTime(slot int) time.Time { return Base.Add(time.Duration(slot) * time.Minute) }

func (g *gen) eventTime() time.Time {
	t := g.slotTime(g.r.IntN(g.o.Slots))
	if g.chance(0.08) {
		t = t.Add(time.Duration(g.r.IntN(3)+1) * time.Microsecond)
	}
	return t
}

func (g *gen) subject() string {
	if g.chance(0.55) {
		return g.pick(g.u.Principals)
	}
	return g.pick(g.u.Groups)
}

func (g *gen) emit(typ event.Type, t time.Time, d event.Data) {
	src := "idp"
	if g.chance(0.35) {
		src = "db"
	}
	g.next[src]++
	// Ids repeat across sources (idp/e7 and db/e7 are different events).
	id := fmt.Sprintf("e%d", g.next[src])
	if !g.o.SingleTenant {
		switch x := g.r.Float64(); {
		case x < 0.1:
			d.Tenant = "acme"
		case x < 0.2:
			d.Tenant = event.DefaultTenant
		}
	}
	e := event.Event{ID: id, Source: src, Type: typ, Time: t, Data: d}
	g.evs = append(g.evs, e)
	switch typ {
	case event.MembershipAdded, event.RolePermissionAdded, event.RoleIncludeAdded, event.GrantAdded:
		g.added = append(g.added, e)
	}
}

func (g *gen) expiry(t time.Time) *time.Time {
	var x time.Time
	switch g.r.IntN(6) {
	case 0: // before or at the add: an empty interval
		x = t.Add(-time.Duration(g.r.IntN(2)) * time.Minute)
	case 1: // one microsecond after
		x = t.Add(time.Microsecond)
	default: // on a slot, where other events happen
		x = g.slotTime(g.r.IntN(g.o.Slots + 4))
	}
	return &x
}

// removeOf is a remove of an earlier add (same relation), or nil.
func (g *gen) removeOf(typ event.Type) *event.Data {
	want := map[event.Type]event.Type{
		event.MembershipRemoved: event.MembershipAdded, event.RolePermissionRemoved: event.RolePermissionAdded,
		event.RoleIncludeRemoved: event.RoleIncludeAdded, event.GrantRemoved: event.GrantAdded,
	}[typ]
	var cands []event.Event
	for _, e := range g.added {
		if e.Type == want {
			cands = append(cands, e)
		}
	}
	if len(cands) == 0 || g.chance(0.3) {
		return nil
	}
	d := cands[g.r.IntN(len(cands))].Data
	d.ExpiresAt = nil
	d.Tenant = ""
	return &d
}

func (g *gen) change() {
	t := g.eventTime()
	u := g.u
	x := g.r.IntN(100)
	switch {
	case x < 18:
		member := g.pick(u.Principals)
		grp := g.pick(u.Groups)
		if g.chance(0.4) {
			member = g.pick(u.Groups) // nested, and sometimes itself
			if g.chance(0.1) {
				member = grp
			}
		}
		g.emit(event.MembershipAdded, t, event.Data{Group: grp, Member: member})
	case x < 25:
		d := g.removeOf(event.MembershipRemoved)
		if d == nil {
			d = &event.Data{Group: g.pick(u.Groups), Member: g.pick(append(slices.Clone(u.Principals), u.Groups...))}
		}
		g.emit(event.MembershipRemoved, t, *d)
	case x < 43:
		d := event.Data{Subject: g.subject(), Resource: g.pick(u.Resources)}
		if g.chance(0.7) {
			d.Role = g.pick(u.Roles)
		} else {
			d.Action = g.pick(u.Patterns)
		}
		if g.chance(0.3) {
			d.ExpiresAt = g.expiry(t)
		}
		g.emit(event.GrantAdded, t, d)
		if g.chance(0.15) { // re-add, later or at the same time, with another expiry (or none)
			d2 := d
			d2.ExpiresAt = nil
			if g.chance(0.6) {
				d2.ExpiresAt = g.expiry(t)
			}
			g.emit(event.GrantAdded, t.Add(time.Duration(g.r.IntN(3))*time.Minute), d2)
		}
	case x < 49:
		d := g.removeOf(event.GrantRemoved)
		if d == nil {
			d = &event.Data{Subject: g.subject(), Resource: g.pick(u.Resources)}
			if g.chance(0.7) {
				d.Role = g.pick(u.Roles)
			} else {
				d.Action = g.pick(u.Patterns)
			}
		}
		g.emit(event.GrantRemoved, t, *d)
	case x < 60:
		g.emit(event.RolePermissionAdded, t, event.Data{Role: g.pick(u.Roles), Action: g.pick(u.Patterns)})
	case x < 64:
		d := g.removeOf(event.RolePermissionRemoved)
		if d == nil {
			d = &event.Data{Role: g.pick(u.Roles), Action: g.pick(u.Patterns)}
		}
		g.emit(event.RolePermissionRemoved, t, *d)
	case x < 71:
		r1 := g.pick(u.Roles)
		r2 := g.pick(u.Roles)
		g.emit(event.RoleIncludeAdded, t, event.Data{Role: r1, Includes: r2})
	case x < 74:
		d := g.removeOf(event.RoleIncludeRemoved)
		if d == nil {
			d = &event.Data{Role: g.pick(u.Roles), Includes: g.pick(u.Roles)}
		}
		g.emit(event.RoleIncludeRemoved, t, *d)
	case x < 79:
		g.emit(event.PrincipalDisabled, t, event.Data{Principal: g.pick(u.Principals)})
	case x < 84:
		g.emit(event.PrincipalEnabled, t, event.Data{Principal: g.pick(u.Principals)})
	case x < 87:
		g.emit(event.PrincipalDeleted, t, event.Data{Principal: g.pick(u.Principals)})
	case x < 89:
		g.emit(event.PrincipalCreated, t, event.Data{Principal: g.pick(u.Principals), Attributes: map[string]string{"department": "eng"}})
	case x < 90:
		g.emit(event.PrincipalUpdated, t, event.Data{Principal: g.pick(u.Principals), Attributes: map[string]string{"title": ""}})
	case x < 92:
		g.emit(event.GroupCreated, t, event.Data{Group: g.pick(u.Groups)})
	case x < 95:
		g.emit(event.GroupDeleted, t, event.Data{Group: g.pick(u.Groups)})
	case x < 97:
		g.emit(event.RoleCreated, t, event.Data{Role: g.pick(u.Roles)})
	default:
		g.emit(event.RoleDeleted, t, event.Data{Role: g.pick(u.Roles)})
	}
}

func (g *gen) noise() {
	t := g.eventTime()
	switch g.r.IntN(3) {
	case 0:
		g.emit(event.Decision, t, event.Data{Principal: g.pick(g.u.Principals), Action: g.pick(g.u.Actions),
			Resource: g.pick(g.u.QueryResources), Effect: event.Allow})
	case 1:
		g.emit(event.ApprovalRequested, t, event.Data{Request: "req-1", Requester: g.pick(g.u.Principals)})
	default:
		g.emit(event.ApprovalGranted, t, event.Data{Request: "req-1", Approver: g.pick(g.u.Principals)})
	}
}

// Generate is a random history of seed: records with positions (1, 2, ...) and recorded times
// (non-decreasing, often equal) in a delivery order that is shuffled relative to event time, with
// some events days late and some delivered again (same source and id, later position; some with
// different content). Run Dedup on it to get what the log holds.
func Generate(seed int64, opts Options) []event.Record {
	o := opts.withDefaults()
	g := &gen{r: rand.New(rand.NewPCG(uint64(seed), 0x9e3779b97f4a7c15)), o: o, u: UniverseOf(o.Scale), next: map[string]int{}}
	for range o.Changes {
		g.change()
		if g.chance(0.05) {
			g.noise()
		}
	}

	// Delivery order: roughly event time, jittered by a few minutes, some events hours to days late.
	type delivery struct {
		e   event.Event
		key float64
	}
	ds := make([]delivery, len(g.evs))
	for i, e := range g.evs {
		k := float64(e.Time.Sub(Base)/time.Minute) + g.r.Float64()*6 - 3
		if o.LateRate > 0 && g.chance(o.LateRate) {
			k += float64(g.r.IntN(3*24*60) + 60)
		}
		ds[i] = delivery{e, k}
	}
	sort.SliceStable(ds, func(i, j int) bool { return ds[i].key < ds[j].key })
	order := make([]event.Event, len(ds))
	for i, d := range ds {
		order[i] = d.e
	}

	// Duplicates: an earlier delivery again, later in the log.
	if o.DuplicateRate > 0 {
		n := int(float64(len(order)) * o.DuplicateRate)
		for range n {
			i := g.r.IntN(len(order))
			dup := order[i]
			if g.chance(1.0 / 3) { // same (source, id), other content: still the same event
				dup.Time = dup.Time.Add(time.Duration(g.r.IntN(5)+1) * time.Minute)
				dup.Data.Resource = "db:prod"
				dup.Data.Member = "user:alice"
			}
			j := i + 1 + g.r.IntN(len(order)-i)
			order = slices.Insert(order, j, dup)
		}
	}

	recs := make([]event.Record, 0, len(order))
	rec := Base.Add(time.Hour)
	for i, e := range order {
		if i > 0 && !g.chance(0.25) {
			rec = rec.Add(time.Duration(g.r.IntN(40)+1) * time.Second)
		}
		if o.ValidOnly && event.Validate(&e) != nil {
			continue
		}
		recs = append(recs, event.Record{Event: e, Position: uint64(len(recs) + 1), Recorded: rec})
	}
	return recs
}

// Dedup is what the log holds: records in position order, the first delivery of each (source,
// id) kept and every later one dropped whatever its content, positions renumbered 1, 2, ... in
// order (the log never stored the duplicates); recorded times are kept. recs is not changed.
func Dedup(recs []event.Record) []event.Record {
	sorted := slices.Clone(recs)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].Position < sorted[j].Position })
	seen := map[event.Key]bool{}
	out := make([]event.Record, 0, len(sorted))
	for _, r := range sorted {
		k := r.Key()
		if seen[k] {
			continue
		}
		seen[k] = true
		r.Position = uint64(len(out) + 1)
		out = append(out, r)
	}
	return out
}

// Questions is n questions about recs, each with Principal, Action and Resource all set (ask it
// as who-could, what-could and explain). Query times land exactly on change boundaries (event
// times and grant expiries), one microsecond before them, between them, and outside the history;
// KnownAt is sometimes set, on a recorded time or one microsecond before it. Tenant is "" mostly,
// and sometimes another tenant that occurs in recs or "default".
func Questions(seed int64, recs []event.Record, n int) []access.Query {
	r := rand.New(rand.NewPCG(uint64(seed), 0x51ed270b27a3c2d1))
	pick := func(xs []string) string { return xs[r.IntN(len(xs))] }

	bset := map[int64]bool{}
	var recorded []time.Time
	tenants := map[string]bool{}
	principals := map[string]bool{"user:nobody": true}
	actions := map[string]bool{}
	resources := map[string]bool{}
	scale := 1
	for _, rec := range recs {
		recorded = append(recorded, rec.Recorded)
		tenants[rec.TenantOrDefault()] = true
		d := rec.Data
		if rec.Type.IsChange() {
			bset[event.Micros(rec.Time)] = true
		}
		if d.ExpiresAt != nil {
			bset[event.Micros(*d.ExpiresAt)] = true
		}
		for _, id := range []string{d.Principal, d.Member, d.Subject} {
			if id != "" && event.KindOf(id) == event.KindPrincipal {
				principals[id] = true
			}
		}
		if d.Action != "" {
			actions[d.Action] = true
		}
		if d.Resource != "" {
			resources[d.Resource] = true
		}
	}
	u := UniverseOf(scale)
	for _, a := range u.Actions {
		actions[a] = true
	}
	for _, res := range u.QueryResources {
		resources[res] = true
	}
	keys := func(m map[string]bool) []string {
		var out []string
		for k := range m {
			out = append(out, k)
		}
		slices.Sort(out)
		return out
	}
	bounds := make([]int64, 0, len(bset))
	for b := range bset {
		bounds = append(bounds, b)
	}
	slices.Sort(bounds)
	if len(bounds) == 0 {
		bounds = []int64{event.Micros(Base)}
	}
	ps, as, rs, ts := keys(principals), keys(actions), keys(resources), keys(tenants)

	qs := make([]access.Query, 0, n)
	for range n {
		var at int64
		i := r.IntN(len(bounds))
		switch x := r.IntN(100); {
		case x < 45:
			at = bounds[i]
		case x < 70:
			at = bounds[i] - 1
		case x < 85 && i+1 < len(bounds):
			at = bounds[i] + (bounds[i+1]-bounds[i])/2
		case x < 92:
			at = bounds[0] - 1 - int64(r.IntN(1e9))
		default:
			at = bounds[len(bounds)-1] + 1 + int64(r.IntN(1e9))
		}
		q := access.Query{Principal: pick(ps), Action: pick(as), Resource: pick(rs), At: event.FromMicros(at)}
		if r.IntN(100) < 30 && len(recorded) > 0 {
			k := recorded[r.IntN(len(recorded))]
			if r.IntN(3) == 0 {
				k = k.Add(-time.Microsecond)
			}
			q.KnownAt = &k
		}
		if x := r.IntN(100); x < 12 {
			q.Tenant = pick(ts)
		}
		qs = append(qs, q)
	}
	return qs
}
