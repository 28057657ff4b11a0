// Package reference is a deliberately simple, brute-force implementation of access.Querier,
// written straight from the semantics in the doc comment of access/query.go. It is optimised for
// obviousness, not speed: every question replays the whole history up to the asked time into
// plain maps and enumerates paths by depth-first search. The fast engine (package graph) and every
// store are tested against it (internal/difftest, internal/scenario).
//
// Choices where the semantics leave room (each is also stated where it is implemented):
//   - Times are compared in Unix microseconds (event.Micros), the resolution of every stored time.
//     A query at T sees every change event whose time is <= T ("the state at T includes events
//     at T"); a grant with an expiry holds at T only when T < expires_at.
//   - A path's Grant.ExpiresAt is the expiry in force at the asked time (nil: none).
//   - WhatCould lists entitlements only while the principal is active (what it COULD do, the same
//     rule as WhoCould), and Status says why the list is empty otherwise. Explain lists paths even
//     for a disabled principal.
//   - Records are deduplicated by (source, id) keeping the lowest Position (the first delivery),
//     whatever the content of later deliveries.
//   - Events belong to the tenant Data.Tenant ("" is event.DefaultTenant); a query's Tenant ""
//     is event.DefaultTenant too. Tenants never see each other's events.
//   - Attributes are not tracked: no answer carries them.
package reference

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/whocould/whocould/access"
	"github.com/whocould/whocould/event"
)

// Ref answers questions by replaying its records. It never changes after New, so it is safe for
// concurrent use.
type Ref struct {
	recs []event.Record // deduplicated, in position order
	bug  Mutation
}

var _ access.Querier = (*Ref)(nil)

// New builds a reference over recs (in any order; duplicates by (source, id) are dropped, the
// record with the lowest Position wins). recs is copied.
func New(recs []event.Record) *Ref {
	return &Ref{recs: dedup(recs)}
}

// Mutation is a deliberate bug, for testing that the tests built on the reference can fail.
// Never use one outside tests.
type Mutation int

// The mutations.
const (
	NoMutation Mutation = iota
	// ExpiryInclusive: a grant still holds at exactly its expires_at.
	ExpiryInclusive
	// EventsAtTExcluded: the state at T leaves out the events at exactly T.
	EventsAtTExcluded
	// DisabledCan: a disabled principal can still act.
	DisabledCan
	// IgnoreKnownAt: KnownAt is ignored.
	IgnoreKnownAt
	// KeepFirstExpiry: re-adding a grant that holds keeps the old expiry.
	KeepFirstExpiry
	// DeleteKeepsGrants: principal.deleted does not end the principal's grants.
	DeleteKeepsGrants
	// DeliveryOrder: events apply in log (position) order instead of event-time order.
	DeliveryOrder
	// RefCounted: adds and removes are counted, so two adds need two removes.
	RefCounted
	// PrefixCovers: resources cover by string prefix, not whole segments.
	PrefixCovers
)

// NewMutant is New with a deliberate bug, for tests of the tests.
func NewMutant(recs []event.Record, m Mutation) *Ref {
	return &Ref{recs: dedup(recs), bug: m}
}

func dedup(recs []event.Record) []event.Record {
	sorted := slices.Clone(recs)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].Position < sorted[j].Position })
	seen := map[event.Key]bool{}
	var out []event.Record
	for _, r := range sorted {
		k := r.Key()
		if seen[k] {
			continue
		}
		seen[k] = true
		out = append(out, r)
	}
	return out
}

func tenantOf(t string) string {
	if t == "" {
		return event.DefaultTenant
	}
	return t
}

// changes is the change events of the tenant that count as known at knownAt (nil: all), sorted
// in event order.
func (r *Ref) changes(tenant string, knownAt *time.Time) []event.Event {
	var evs []event.Event
	for _, rec := range r.recs {
		if !rec.Type.IsChange() || rec.TenantOrDefault() != tenantOf(tenant) {
			continue
		}
		if knownAt != nil && r.bug != IgnoreKnownAt && event.Micros(rec.Recorded) > event.Micros(*knownAt) {
			continue
		}
		evs = append(evs, rec.Event)
	}
	if r.bug != DeliveryOrder {
		sort.SliceStable(evs, func(i, j int) bool { return evs[i].OrderOf().Less(evs[j].OrderOf()) })
	}
	return evs
}

// state is the permission map at one instant.
type state struct {
	at       int64 // the instant, Unix microseconds
	bug      Mutation
	exists   map[string]bool // principals, groups and roles that exist
	deleted  map[string]bool // ids whose last existence ended by deletion
	disabled map[string]bool // principals that are disabled
	members  map[[2]string]int
	perms    map[[2]string]int
	includes map[[2]string]int
	grants   map[grantKey]grantVal
}

type grantKey struct {
	Subject, Role, Action, Resource string
}

type grantVal struct {
	count   int
	expires *int64 // Unix microseconds; nil: no expiry
}

// holdsAt reports whether a grant in the map holds at instant t (it stops holding at its expiry).
func (s *state) holdsAt(v grantVal, t int64) bool {
	if v.expires == nil {
		return true
	}
	if s.bug == ExpiryInclusive {
		return t <= *v.expires
	}
	return t < *v.expires
}

// stateAt replays evs (sorted) up to and including instant t.
func (r *Ref) stateAt(evs []event.Event, t int64) *state {
	s := &state{
		at: t, bug: r.bug,
		exists: map[string]bool{}, deleted: map[string]bool{}, disabled: map[string]bool{},
		members: map[[2]string]int{}, perms: map[[2]string]int{}, includes: map[[2]string]int{},
		grants: map[grantKey]grantVal{},
	}
	for _, e := range evs {
		et := event.Micros(e.Time)
		if et > t || (r.bug == EventsAtTExcluded && et == t) {
			if r.bug == DeliveryOrder {
				continue
			}
			break
		}
		s.apply(e)
	}
	return s
}

// touch makes id exist; an id that did not exist starts empty and (for a principal) active.
func (s *state) touch(id string) {
	if id == "" || s.exists[id] {
		return
	}
	s.exists[id] = true
	delete(s.deleted, id)
	delete(s.disabled, id)
}

func addRel[K comparable](m map[K]int, k K, bug Mutation) {
	if bug == RefCounted {
		m[k]++
		return
	}
	m[k] = 1 // adding what holds changes nothing
}

func removeRel[K comparable](m map[K]int, k K, bug Mutation) {
	if bug == RefCounted && m[k] > 1 {
		m[k]--
		return
	}
	delete(m, k) // removing what does not hold changes nothing
}

func (s *state) apply(e event.Event) {
	d := e.Data
	t := event.Micros(e.Time)
	switch e.Type {
	case event.PrincipalCreated, event.PrincipalUpdated:
		s.touch(d.Principal)
	case event.PrincipalDisabled:
		s.touch(d.Principal)
		s.disabled[d.Principal] = true
	case event.PrincipalEnabled:
		s.touch(d.Principal)
		delete(s.disabled, d.Principal)
	case event.PrincipalDeleted:
		p := d.Principal
		if !s.exists[p] {
			return
		}
		delete(s.exists, p)
		delete(s.disabled, p)
		s.deleted[p] = true
		for k := range s.members {
			if k[1] == p {
				delete(s.members, k)
			}
		}
		if s.bug != DeleteKeepsGrants {
			for k := range s.grants {
				if k.Subject == p {
					delete(s.grants, k)
				}
			}
		}
	case event.GroupCreated:
		s.touch(d.Group)
	case event.GroupDeleted:
		g := d.Group
		if !s.exists[g] {
			return
		}
		delete(s.exists, g)
		s.deleted[g] = true
		for k := range s.members {
			if k[0] == g || k[1] == g {
				delete(s.members, k)
			}
		}
		for k := range s.grants {
			if k.Subject == g {
				delete(s.grants, k)
			}
		}
	case event.MembershipAdded:
		s.touch(d.Group)
		s.touch(d.Member)
		addRel(s.members, [2]string{d.Group, d.Member}, s.bug)
	case event.MembershipRemoved:
		removeRel(s.members, [2]string{d.Group, d.Member}, s.bug)
	case event.RoleCreated:
		s.touch(d.Role)
	case event.RoleDeleted:
		ro := d.Role
		if !s.exists[ro] {
			return
		}
		delete(s.exists, ro)
		s.deleted[ro] = true
		for k := range s.perms {
			if k[0] == ro {
				delete(s.perms, k)
			}
		}
		for k := range s.includes {
			if k[0] == ro || k[1] == ro {
				delete(s.includes, k)
			}
		}
		for k := range s.grants {
			if k.Role == ro {
				delete(s.grants, k)
			}
		}
	case event.RolePermissionAdded:
		s.touch(d.Role)
		addRel(s.perms, [2]string{d.Role, d.Action}, s.bug)
	case event.RolePermissionRemoved:
		removeRel(s.perms, [2]string{d.Role, d.Action}, s.bug)
	case event.RoleIncludeAdded:
		s.touch(d.Role)
		s.touch(d.Includes)
		addRel(s.includes, [2]string{d.Role, d.Includes}, s.bug)
	case event.RoleIncludeRemoved:
		removeRel(s.includes, [2]string{d.Role, d.Includes}, s.bug)
	case event.GrantAdded:
		s.touch(d.Subject)
		s.touch(d.Role)
		k := keyOf(d)
		var exp *int64
		if d.ExpiresAt != nil {
			us := event.Micros(*d.ExpiresAt)
			exp = &us
		}
		old, present := s.grants[k]
		if present && s.holdsAt(old, t) {
			// Adding what holds changes nothing but the expiry, which the add replaces.
			if s.bug == KeepFirstExpiry {
				exp = old.expires
			}
			n := 1
			if s.bug == RefCounted {
				n = old.count + 1
			}
			s.grants[k] = grantVal{count: n, expires: exp}
		} else {
			// A new interval starts here (an expired grant no longer holds).
			s.grants[k] = grantVal{count: 1, expires: exp}
		}
	case event.GrantRemoved:
		k := keyOf(d)
		old, present := s.grants[k]
		if !present || !s.holdsAt(old, t) {
			delete(s.grants, k) // it does not hold: nothing changes (an expired entry is dropped)
			return
		}
		if s.bug == RefCounted && old.count > 1 {
			old.count--
			s.grants[k] = old
			return
		}
		delete(s.grants, k)
	}
}

func keyOf(d event.Data) grantKey {
	if d.Role != "" {
		return grantKey{Subject: d.Subject, Role: d.Role, Resource: d.Resource}
	}
	return grantKey{Subject: d.Subject, Action: d.Action, Resource: d.Resource}
}

func (s *state) status(p string) string {
	switch {
	case s.exists[p] && s.disabled[p]:
		return access.StatusDisabled
	case s.exists[p]:
		return access.StatusActive
	case s.deleted[p]:
		return access.StatusDeleted
	}
	return access.StatusUnknown
}

func (s *state) active(p string) bool {
	if s.bug == DisabledCan {
		return s.exists[p]
	}
	return s.exists[p] && !s.disabled[p]
}

// paths is every path of principal p at the state's instant, for every action and resource. With
// ignoreExpiry, grants that have expired count too (only used to explain a "no").
func (s *state) paths(p string, ignoreExpiry bool) []access.Path {
	var out []access.Path
	var fromSubject func(subject string, groups []string)
	fromSubject = func(subject string, groups []string) {
		// The grants whose subject is `subject`.
		for k, v := range s.grants {
			if k.Subject != subject || (!ignoreExpiry && !s.holdsAt(v, s.at)) {
				continue
			}
			ref := access.GrantRef{Subject: k.Subject, Role: k.Role, Action: k.Action, Resource: k.Resource}
			if v.expires != nil {
				t := event.FromMicros(*v.expires)
				ref.ExpiresAt = &t
			}
			if k.Role == "" {
				out = append(out, access.Path{Groups: slices.Clone(groups), Grant: ref, Roles: []string{}, Permission: k.Action})
				continue
			}
			var fromRole func(roles []string)
			fromRole = func(roles []string) {
				last := roles[len(roles)-1]
				for pk := range s.perms {
					if pk[0] == last {
						out = append(out, access.Path{Groups: slices.Clone(groups), Grant: ref, Roles: slices.Clone(roles), Permission: pk[1]})
					}
				}
				for ik := range s.includes {
					if ik[0] == last && !slices.Contains(roles, ik[1]) { // no role twice
						fromRole(append(slices.Clone(roles), ik[1]))
					}
				}
			}
			fromRole([]string{k.Role})
		}
		// The groups `subject` is a direct member of.
		for mk := range s.members {
			if mk[1] == subject && !slices.Contains(groups, mk[0]) { // no group twice
				fromSubject(mk[0], append(slices.Clone(groups), mk[0]))
			}
		}
	}
	fromSubject(p, []string{})
	return out
}

func (s *state) covers(g, r string) bool {
	if s.bug == PrefixCovers {
		return g == "*" || strings.HasPrefix(r, strings.TrimSuffix(g, "*"))
	}
	return event.Covers(g, r)
}

// pathsFor is the paths of p that give action a on resource res.
func (s *state) pathsFor(p, a, res string, ignoreExpiry bool) []access.Path {
	out := []access.Path{}
	for _, path := range s.paths(p, ignoreExpiry) {
		if event.Matches(path.Permission, a) && s.covers(path.Grant.Resource, res) {
			out = append(out, path)
		}
	}
	access.SortPaths(out)
	return out
}

func (s *state) principals() []string {
	var ps []string
	for id := range s.exists {
		if event.KindOf(id) == event.KindPrincipal {
			ps = append(ps, id)
		}
	}
	slices.Sort(ps)
	return ps
}

func (r *Ref) at(q access.Query) *state {
	return r.stateAt(r.changes(q.Tenant, q.KnownAt), event.Micros(q.At))
}

// WhoCould lists every principal active at q.At with at least one path for q.Action on
// q.Resource, sorted, each with all its paths.
func (r *Ref) WhoCould(ctx context.Context, q access.Query) (access.WhoCould, error) {
	s := r.at(q)
	ans := access.WhoCould{Action: q.Action, Resource: q.Resource, At: q.At, KnownAt: q.KnownAt, Principals: []access.PrincipalPaths{}}
	for _, p := range s.principals() {
		if !s.active(p) {
			continue
		}
		if ps := s.pathsFor(p, q.Action, q.Resource, false); len(ps) > 0 {
			ans.Principals = append(ans.Principals, access.PrincipalPaths{Principal: p, Paths: ps})
		}
	}
	return ans, nil
}

// WhatCould lists, while q.Principal is active at q.At, every distinct (permission pattern, grant
// resource) it holds, with the paths that give it, sorted by action then resource. For a
// principal that is not active the list is empty and Status says why.
func (r *Ref) WhatCould(ctx context.Context, q access.Query) (access.WhatCould, error) {
	s := r.at(q)
	ans := access.WhatCould{Principal: q.Principal, At: q.At, KnownAt: q.KnownAt, Status: s.status(q.Principal), Entitlements: []access.Entitlement{}}
	if !s.active(q.Principal) {
		return ans, nil
	}
	byKey := map[[2]string][]access.Path{}
	for _, p := range s.paths(q.Principal, false) {
		k := [2]string{p.Permission, p.Grant.Resource}
		byKey[k] = append(byKey[k], p)
	}
	for _, k := range slices.SortedFunc(maps.Keys(byKey), func(a, b [2]string) int {
		if c := strings.Compare(a[0], b[0]); c != 0 {
			return c
		}
		return strings.Compare(a[1], b[1])
	}) {
		ps := byKey[k]
		access.SortPaths(ps)
		ans.Entitlements = append(ans.Entitlements, access.Entitlement{Action: k[0], Resource: k[1], Paths: ps})
	}
	return ans, nil
}

// Explain lists every path that holds at q.At (even for a disabled principal); Could is true
// exactly when the principal is active and there is at least one.
func (r *Ref) Explain(ctx context.Context, q access.Query) (access.Explain, error) {
	s := r.at(q)
	p := q.Principal
	ans := access.Explain{Principal: p, Action: q.Action, Resource: q.Resource, At: q.At, KnownAt: q.KnownAt,
		Status: s.status(p), Paths: s.pathsFor(p, q.Action, q.Resource, false)}
	ans.Could = s.active(p) && len(ans.Paths) > 0
	if ans.Could {
		return ans, nil
	}
	at := q.At.UTC().Format(time.RFC3339Nano)
	switch ans.Status {
	case access.StatusUnknown:
		ans.Reason = fmt.Sprintf("%s does not exist at %s", p, at)
	case access.StatusDeleted:
		ans.Reason = fmt.Sprintf("%s was deleted before %s", p, at)
	case access.StatusDisabled:
		if len(ans.Paths) > 0 {
			ans.Reason = fmt.Sprintf("%s is disabled at %s (%d path(s) would otherwise allow it)", p, at, len(ans.Paths))
		} else {
			ans.Reason = fmt.Sprintf("%s is disabled at %s, and no grant gives it %s on %s", p, at, q.Action, q.Resource)
		}
	default:
		if expired := s.pathsFor(p, q.Action, q.Resource, true); len(expired) > 0 {
			ans.Reason = fmt.Sprintf("no grant gives %s %s on %s at %s: %s expired at %s", p, q.Action, q.Resource, at,
				grantString(expired[0].Grant), expired[0].Grant.ExpiresAt.UTC().Format(time.RFC3339Nano))
		} else {
			ans.Reason = fmt.Sprintf("no grant gives %s %s on %s at %s", p, q.Action, q.Resource, at)
		}
	}
	return ans, nil
}

func grantString(g access.GrantRef) string {
	what := g.Role
	if what == "" {
		what = g.Action
	}
	return fmt.Sprintf("grant(%s, %s, %s)", g.Subject, what, g.Resource)
}

// ErrBadHistory is returned for a history question without a principal or a resource.
var ErrBadHistory = errors.New("reference: history needs a principal or a resource")

// History is brute force: it evaluates the state at From and at every distinct event time and
// grant expiry inside (From, To) — the only instants where anything can change — and turns the
// evaluations into intervals.
//
//   - For Principal P: one interval per stretch during which P is active and has a path (Action =
//     the path's permission pattern, Resource = the grant's resource).
//   - For Resource R: the same, for every principal, restricted to paths whose grant resource
//     covers R (Action is the permission pattern, Resource the grant's resource, not R).
//   - With both set: the principal's intervals restricted to paths covering R.
//
// An interval is identified by (principal, permission, grant resource, path without the grant's
// expiry): re-adding a grant with a new expiry does not split it. Its Path carries the expiry in
// force at the last instant of the interval. Intervals are clipped to [From, To): From is the
// later of the start and q.From; To is nil when it still holds just before q.To.
func (r *Ref) History(ctx context.Context, q access.Query) (access.History, error) {
	if q.Principal == "" && q.Resource == "" {
		return access.History{}, ErrBadHistory
	}
	ans := access.History{Principal: q.Principal, Resource: q.Resource, From: q.From, To: q.To, KnownAt: q.KnownAt, Intervals: []access.Interval{}}
	from, to := event.Micros(q.From), event.Micros(q.To)
	if from >= to {
		return ans, nil
	}
	evs := r.changes(q.Tenant, q.KnownAt)
	instants := map[int64]bool{from: true}
	for _, e := range evs {
		if t := event.Micros(e.Time); t > from && t < to {
			instants[t] = true
		}
		if e.Type == event.GrantAdded && e.Data.ExpiresAt != nil {
			if t := event.Micros(*e.Data.ExpiresAt); t > from && t < to {
				instants[t] = true
			}
		}
	}
	points := slices.Sorted(maps.Keys(instants))

	type open struct{ iv access.Interval }
	current := map[string]*open{}
	for _, t := range points {
		s := r.stateAt(evs, t)
		now := map[string]access.Interval{}
		for _, p := range s.principals() {
			if (q.Principal != "" && p != q.Principal) || !s.active(p) {
				continue
			}
			for _, path := range s.paths(p, false) {
				if q.Resource != "" && !s.covers(path.Grant.Resource, q.Resource) {
					continue
				}
				noExp := path
				noExp.Grant.ExpiresAt = nil
				k := p + "\x00" + path.Permission + "\x00" + path.Grant.Resource + "\x00" + noExp.String()
				now[k] = access.Interval{Principal: p, Action: path.Permission, Resource: path.Grant.Resource, Path: path}
			}
		}
		for k, o := range current {
			if _, ok := now[k]; !ok {
				end := event.FromMicros(t)
				o.iv.To = &end
				ans.Intervals = append(ans.Intervals, o.iv)
				delete(current, k)
			}
		}
		for k, iv := range now {
			if o, ok := current[k]; ok {
				o.iv.Path = iv.Path // the latest expiry
				continue
			}
			iv.From = event.FromMicros(t)
			current[k] = &open{iv: iv}
		}
	}
	for _, o := range current {
		ans.Intervals = append(ans.Intervals, o.iv)
	}
	slices.SortFunc(ans.Intervals, access.CompareIntervals)
	return ans, nil
}
