package graph

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/whocould/whocould/access"
	"github.com/whocould/whocould/event"
)

var _ access.Querier = (*Graph)(nil)

// view answers at one event time t as known at recorded time k (forever: everything applied).
// It lives for one question, under the graph's read lock.
type view struct {
	g    *Graph
	t, k int64

	derived map[int32][]interval   // relations re-derived as known at k
	status  map[uint32][]statusIv  // principals re-derived as known at k
	tails   map[uint32][]tail      // role → permissions matching the question's action
	below   map[uint32][]memberOf  // group → principals below it
	filter  func(perm string) bool // which permissions count
	allRole map[uint32][]tail
}

// tail is the part of a path after the grant: the role chain and the permission.
type tail struct {
	roles []uint32
	perm  uint32
}

// memberOf is a principal below a group, with the chain of groups from the principal outwards.
type memberOf struct {
	principal uint32
	groups    []uint32
}

func (g *Graph) newView(at time.Time, knownAt *time.Time) *view {
	v := &view{g: g, t: event.Micros(at), k: forever,
		tails: map[uint32][]tail{}, below: map[uint32][]memberOf{}}
	if knownAt != nil {
		v.k = event.Micros(*knownAt)
		v.derived = map[int32][]interval{}
		v.status = map[uint32][]statusIv{}
	}
	return v
}

func (v *view) kind(id uint32) event.Kind { return v.g.kinds[id] }

// fresh reports whether everything behind r was recorded by k, so its derived intervals serve.
func (v *view) fresh(r *relation) bool {
	if v.k == forever {
		return true
	}
	if r.maxRec > v.k {
		return false
	}
	da, db := v.g.endsOf(r)
	return (len(da) == 0 || v.g.ents[r.a].maxDelRec <= v.k) && (len(db) == 0 || v.g.ents[r.b].maxDelRec <= v.k)
}

// ivs is the intervals of relation i as known at k.
func (v *view) ivs(i int32) []interval {
	r := &v.g.rels[i]
	if v.fresh(r) {
		return r.ivs
	}
	d, ok := v.derived[i]
	if !ok {
		d = v.g.deriveRel(r, v.k, nil)
		v.derived[i] = d
	}
	return d
}

// at finds the interval of relation i holding at t.
func (v *view) at(i int32) (interval, bool) { return ivAt(v.ivs(i), v.t) }

func ivAt(ivs []interval, t int64) (interval, bool) {
	for _, iv := range ivs {
		if iv.from > t {
			break
		}
		if t < iv.to {
			return iv, true
		}
	}
	return interval{}, false
}

// statusIvs is a principal's status intervals as known at k.
func (v *view) statusIvs(p uint32) []statusIv {
	e := v.g.ents[p]
	if e == nil {
		return nil
	}
	if v.k == forever {
		return e.status
	}
	s, ok := v.status[p]
	if !ok {
		s = deriveStatus(e.life, v.k, nil)
		v.status[p] = s
	}
	return s
}

// statusAt is a principal's status at t and since when it holds.
func (v *view) statusAt(p uint32) (string, int64) {
	ivs := v.statusIvs(p)
	for _, s := range ivs {
		if s.from > v.t {
			break
		}
		if v.t < s.to {
			switch s.state {
			case stActive:
				return access.StatusActive, s.from
			case stDisabled:
				return access.StatusDisabled, s.from
			default:
				return access.StatusDeleted, s.from
			}
		}
	}
	return access.StatusUnknown, 0
}

func (v *view) active(p uint32) bool {
	s, _ := v.statusAt(p)
	return s == access.StatusActive
}

// roleTails lists the role chains from role to each permission that passes the view's filter,
// as they hold at t (no role twice in a chain).
func (v *view) roleTails(role uint32) []tail {
	if ts, ok := v.tails[role]; ok {
		return ts
	}
	var (
		out   []tail
		stack = []uint32{role}
		walk  func(r uint32)
	)
	walk = func(r uint32) {
		e := v.g.ents[r]
		if e == nil {
			return
		}
		for _, pi := range e.perms {
			if _, ok := v.at(pi); ok {
				perm := v.g.rels[pi].b
				if v.filter == nil || v.filter(v.g.names[perm]) {
					out = append(out, tail{roles: slices.Clone(stack), perm: perm})
				}
			}
		}
		for _, ii := range e.includes {
			if _, ok := v.at(ii); !ok {
				continue
			}
			next := v.g.rels[ii].b
			if slices.Contains(stack, next) {
				continue
			}
			stack = append(stack, next)
			walk(next)
			stack = stack[:len(stack)-1]
		}
	}
	walk(role)
	v.tails[role] = out
	return out
}

// grantTails is what grant relation i gives, as tails passing the filter.
func (v *view) grantTails(i int32) []tail {
	r := &v.g.rels[i]
	if r.kind == relGrantAction {
		if v.filter == nil || v.filter(v.g.names[r.b]) {
			return []tail{{perm: r.b}}
		}
		return nil
	}
	return v.roleTails(r.b)
}

// principalsBelow lists the principals that are members of group at t, directly or through
// nested groups, each with every chain (no group twice).
func (v *view) principalsBelow(group uint32) []memberOf {
	if ms, ok := v.below[group]; ok {
		return ms
	}
	var (
		out   []memberOf
		stack = []uint32{group}
		walk  func(gid uint32)
	)
	walk = func(gid uint32) {
		e := v.g.ents[gid]
		if e == nil {
			return
		}
		for _, mi := range e.members {
			if _, ok := v.at(mi); !ok {
				continue
			}
			m := v.g.rels[mi].b
			if v.kind(m) != event.KindGroup {
				chain := make([]uint32, len(stack))
				for j := range stack {
					chain[j] = stack[len(stack)-1-j]
				}
				out = append(out, memberOf{principal: m, groups: chain})
				continue
			}
			if slices.Contains(stack, m) {
				continue
			}
			stack = append(stack, m)
			walk(m)
			stack = stack[:len(stack)-1]
		}
	}
	walk(group)
	v.below[group] = out
	return out
}

// subject is a grant subject reachable from a principal, with the chain of groups to it.
type subject struct {
	id     uint32
	groups []uint32
}

// subjectsOf lists the principal itself and every group it is a member of at t, with every
// chain (no group twice).
func (v *view) subjectsOf(p uint32) []subject {
	out := []subject{{id: p}}
	var (
		stack []uint32
		walk  func(id uint32)
	)
	walk = func(id uint32) {
		e := v.g.ents[id]
		if e == nil {
			return
		}
		for _, mi := range e.memberOf {
			if _, ok := v.at(mi); !ok {
				continue
			}
			grp := v.g.rels[mi].a
			if slices.Contains(stack, grp) {
				continue
			}
			stack = append(stack, grp)
			out = append(out, subject{id: grp, groups: slices.Clone(stack)})
			walk(grp)
			stack = stack[:len(stack)-1]
		}
	}
	walk(p)
	return out
}

func (v *view) names(ids []uint32) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = v.g.names[id]
	}
	return out
}

func (v *view) grantRef(i int32, iv interval) access.GrantRef {
	r := &v.g.rels[i]
	ref := access.GrantRef{Subject: v.g.names[r.a], Resource: v.g.names[r.c]}
	if r.kind == relGrantRole {
		ref.Role = v.g.names[r.b]
	} else {
		ref.Action = v.g.names[r.b]
	}
	if iv.expires != 0 {
		t := event.FromMicros(iv.expires)
		ref.ExpiresAt = &t
	}
	return ref
}

func (v *view) path(groups []uint32, grant access.GrantRef, t tail) access.Path {
	roles := v.names(t.roles)
	if roles == nil {
		roles = []string{}
	}
	return access.Path{Groups: v.names(groups), Grant: grant, Roles: roles, Permission: v.g.names[t.perm]}
}

func matcher(action string) func(string) bool {
	return func(p string) bool { return event.Matches(p, action) }
}

func knownPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}

// WhoCould answers who could do q.Action on q.Resource at q.At.
func (g *Graph) WhoCould(ctx context.Context, q access.Query) (access.WhoCould, error) {
	g.mu.RLock()
	defer g.mu.RUnlock()
	ans := access.WhoCould{Action: q.Action, Resource: q.Resource, At: q.At.UTC(), KnownAt: knownPtr(q.KnownAt),
		Principals: []access.PrincipalPaths{}}
	v := g.newView(q.At, q.KnownAt)
	v.filter = matcher(q.Action)
	byP := map[uint32][]access.Path{}
	for _, res := range event.Ancestors(q.Resource) {
		rid, ok := g.lookup(res)
		if !ok {
			continue
		}
		for _, gi := range g.resGrant[rid] {
			iv, ok := v.at(gi)
			if !ok {
				continue
			}
			ts := v.grantTails(gi)
			if len(ts) == 0 {
				continue
			}
			ref := v.grantRef(gi, iv)
			subj := g.rels[gi].a
			if v.kind(subj) != event.KindGroup {
				if v.active(subj) {
					for _, t := range ts {
						byP[subj] = append(byP[subj], v.path(nil, ref, t))
					}
				}
				continue
			}
			for _, m := range v.principalsBelow(subj) {
				if !v.active(m.principal) {
					continue
				}
				for _, t := range ts {
					byP[m.principal] = append(byP[m.principal], v.path(m.groups, ref, t))
				}
			}
		}
		if err := ctx.Err(); err != nil {
			return ans, err
		}
	}
	for p, paths := range byP {
		access.SortPaths(paths)
		ans.Principals = append(ans.Principals, access.PrincipalPaths{Principal: g.names[p], Paths: paths})
	}
	slices.SortFunc(ans.Principals, func(a, b access.PrincipalPaths) int { return cmp.Compare(a.Principal, b.Principal) })
	return ans, nil
}

// holdings lists every path of principal p at the view's time whose grant covers resource
// (any resource when empty), grouped by (permission, grant resource).
func (v *view) holdings(p uint32, resource string) map[[2]uint32][]access.Path {
	out := map[[2]uint32][]access.Path{}
	for _, s := range v.subjectsOf(p) {
		e := v.g.ents[s.id]
		if e == nil {
			continue
		}
		for _, gi := range e.grants {
			iv, ok := v.at(gi)
			if !ok {
				continue
			}
			r := &v.g.rels[gi]
			if resource != "" && !event.Covers(v.g.names[r.c], resource) {
				continue
			}
			ts := v.grantTails(gi)
			if len(ts) == 0 {
				continue
			}
			ref := v.grantRef(gi, iv)
			for _, t := range ts {
				k := [2]uint32{t.perm, r.c}
				out[k] = append(out[k], v.path(s.groups, ref, t))
			}
		}
	}
	return out
}

// WhatCould answers what q.Principal could do at q.At: nothing unless it is active.
func (g *Graph) WhatCould(ctx context.Context, q access.Query) (access.WhatCould, error) {
	g.mu.RLock()
	defer g.mu.RUnlock()
	ans := access.WhatCould{Principal: q.Principal, At: q.At.UTC(), KnownAt: knownPtr(q.KnownAt),
		Status: access.StatusUnknown, Entitlements: []access.Entitlement{}}
	p, ok := g.lookup(q.Principal)
	if !ok {
		return ans, nil
	}
	v := g.newView(q.At, q.KnownAt)
	ans.Status, _ = v.statusAt(p)
	if ans.Status != access.StatusActive {
		return ans, nil
	}
	for k, paths := range v.holdings(p, "") {
		access.SortPaths(paths)
		ans.Entitlements = append(ans.Entitlements, access.Entitlement{Action: g.names[k[0]], Resource: g.names[k[1]], Paths: paths})
	}
	sortEntitlements(ans.Entitlements)
	return ans, ctx.Err()
}

func sortEntitlements(es []access.Entitlement) {
	slices.SortFunc(es, func(a, b access.Entitlement) int {
		if c := cmp.Compare(a.Action, b.Action); c != 0 {
			return c
		}
		return cmp.Compare(a.Resource, b.Resource)
	})
}

// Explain answers whether q.Principal could do q.Action on q.Resource at q.At, with every path
// that holds (even for a principal that is not active) and, when it could not, why.
func (g *Graph) Explain(ctx context.Context, q access.Query) (access.Explain, error) {
	g.mu.RLock()
	defer g.mu.RUnlock()
	ans := access.Explain{Principal: q.Principal, Action: q.Action, Resource: q.Resource, At: q.At.UTC(),
		KnownAt: knownPtr(q.KnownAt), Status: access.StatusUnknown, Paths: []access.Path{}}
	p, ok := g.lookup(q.Principal)
	if !ok {
		ans.Reason = fmt.Sprintf("%s is not known: no event names it", q.Principal)
		return ans, nil
	}
	v := g.newView(q.At, q.KnownAt)
	v.filter = matcher(q.Action)
	var since int64
	ans.Status, since = v.statusAt(p)
	for _, paths := range v.holdings(p, q.Resource) {
		ans.Paths = append(ans.Paths, paths...)
	}
	access.SortPaths(ans.Paths)
	ans.Could = ans.Status == access.StatusActive && len(ans.Paths) > 0
	if !ans.Could {
		ans.Reason = v.whyNot(p, q, ans.Status, since, len(ans.Paths))
	}
	return ans, ctx.Err()
}

func stamp2s(us int64) string { return event.FromMicros(us).Format(time.RFC3339Nano) }

// whyNot says what is missing for p to do the question's action.
func (v *view) whyNot(p uint32, q access.Query, status string, since int64, paths int) string {
	switch status {
	case access.StatusUnknown:
		return fmt.Sprintf("%s does not exist yet at %s", q.Principal, q.At.UTC().Format(time.RFC3339Nano))
	case access.StatusDeleted:
		return fmt.Sprintf("%s was deleted at %s", q.Principal, stamp2s(since))
	case access.StatusDisabled:
		if paths > 0 {
			return fmt.Sprintf("%s has been disabled since %s (it still holds %d path(s) that would apply if enabled)", q.Principal, stamp2s(since), paths)
		}
		return fmt.Sprintf("%s has been disabled since %s", q.Principal, stamp2s(since))
	}
	// Active, no path: find the most recent matching grant that ended by t.
	var (
		best    interval
		bestRef access.GrantRef
		found   bool
	)
	for _, sid := range v.everSubjects(p) {
		e := v.g.ents[sid]
		if e == nil {
			continue
		}
		for _, gi := range e.grants {
			r := &v.g.rels[gi]
			if !event.Covers(v.g.names[r.c], q.Resource) {
				continue
			}
			for _, iv := range v.ivs(gi) {
				if iv.end == EndRenewed || iv.to > v.t || (found && iv.to <= best.to) {
					continue
				}
				then := &view{g: v.g, t: iv.to - 1, k: v.k, derived: v.derived, status: v.status,
					tails: map[uint32][]tail{}, below: map[uint32][]memberOf{}, filter: v.filter}
				if len(then.grantTails(gi)) > 0 {
					best, bestRef, found = iv, v.grantRef(gi, iv), true
				}
			}
		}
	}
	none := fmt.Sprintf("no grant to %s or to a group it is in gives %s on %s at %s", q.Principal, q.Action, q.Resource, q.At.UTC().Format(time.RFC3339Nano))
	if !found {
		return none
	}
	how := map[End]string{EndExpired: "expired", EndRemoved: "was removed", EndDeleted: "ended when its subject or role was deleted"}[best.end]
	return fmt.Sprintf("%s; the last grant that did, %s, %s at %s", none, refString(bestRef), how, stamp2s(best.to))
}

func refString(r access.GrantRef) string {
	what := r.Role
	if what == "" {
		what = r.Action
	}
	return fmt.Sprintf("grant(%s, %s, %s)", r.Subject, what, r.Resource)
}

// everSubjects lists p and every group p was ever (at any time, as known at k) a member of,
// directly or not.
func (v *view) everSubjects(p uint32) []uint32 {
	seen := map[uint32]bool{p: true}
	out := []uint32{p}
	for i := 0; i < len(out); i++ {
		e := v.g.ents[out[i]]
		if e == nil {
			continue
		}
		for _, mi := range e.memberOf {
			if len(v.ivs(mi)) == 0 {
				continue
			}
			grp := v.g.rels[mi].a
			if !seen[grp] {
				seen[grp] = true
				out = append(out, grp)
			}
		}
	}
	return out
}

// pathKey identifies an interval's entitlement and path, to follow it across evaluations.
func pathKey(principal, action, resource string, p access.Path) string {
	return principal + "\x00" + action + "\x00" + resource + "\x00" + p.String() + "\x00" + strings.Join(p.Roles, ",")
}

// History answers how q.Principal's access, or the access to q.Resource, changed in
// [q.From, q.To): one interval per entitlement and path, clipped to the window; To is nil when
// the interval still held at q.To.
func (g *Graph) History(ctx context.Context, q access.Query) (access.History, error) {
	g.mu.RLock()
	defer g.mu.RUnlock()
	ans := access.History{Principal: q.Principal, Resource: q.Resource, From: q.From.UTC(), To: q.To.UTC(),
		KnownAt: knownPtr(q.KnownAt), Intervals: []access.Interval{}}
	from, to := event.Micros(q.From), event.Micros(q.To)
	if from >= to {
		return ans, nil
	}
	base := g.newView(q.From, q.KnownAt)
	// The relations and principals whose changes can change the answer, and so the instants at
	// which to evaluate it.
	var (
		rels       []int32
		principals []uint32
	)
	if q.Principal != "" {
		p, ok := g.lookup(q.Principal)
		if !ok {
			return ans, nil
		}
		principals = []uint32{p}
		rels = g.reachUp(base, p)
	} else {
		rels, principals = g.reachDown(base, q.Resource)
	}
	times := []int64{from}
	for _, i := range rels {
		for _, iv := range base.ivs(i) {
			times = append(times, iv.from, iv.to)
		}
	}
	for _, p := range principals {
		for _, s := range base.statusIvs(p) {
			times = append(times, s.from, s.to)
		}
	}
	slices.Sort(times)
	times = slices.Compact(times)

	open := map[string]*access.Interval{}
	for _, t := range times {
		if t < from || t >= to {
			continue
		}
		if err := ctx.Err(); err != nil {
			return ans, err
		}
		v := g.newView(event.FromMicros(t), q.KnownAt)
		v.derived, v.status = base.derived, base.status
		now := map[string]access.Interval{}
		if q.Principal != "" {
			p := principals[0]
			if v.active(p) {
				for k, paths := range v.holdings(p, "") {
					for _, path := range paths {
						iv := access.Interval{Principal: q.Principal, Action: g.names[k[0]], Resource: g.names[k[1]], Path: path}
						now[pathKey(iv.Principal, iv.Action, iv.Resource, path)] = iv
					}
				}
			}
		} else {
			for _, iv := range v.resourcePaths(q.Resource) {
				now[pathKey(iv.Principal, iv.Action, iv.Resource, iv.Path)] = iv
			}
		}
		at := event.FromMicros(t)
		for k, iv := range open {
			if _, ok := now[k]; !ok {
				end := at
				iv.To = &end
				ans.Intervals = append(ans.Intervals, *iv)
				delete(open, k)
			}
		}
		for k, iv := range now {
			if o, ok := open[k]; ok {
				o.Path = iv.Path // the path as it stands last, with the expiry then in force
				continue
			}
			iv.From = at
			open[k] = &iv
		}
	}
	for _, iv := range open {
		ans.Intervals = append(ans.Intervals, *iv)
	}
	slices.SortFunc(ans.Intervals, access.CompareIntervals)
	return ans, nil
}

// resourcePaths lists, at the view's time, every path of an active principal through a grant
// covering resource, for any permission.
func (v *view) resourcePaths(resource string) []access.Interval {
	var out []access.Interval
	for _, res := range event.Ancestors(resource) {
		rid, ok := v.g.lookup(res)
		if !ok {
			continue
		}
		for _, gi := range v.g.resGrant[rid] {
			iv, ok := v.at(gi)
			if !ok {
				continue
			}
			ts := v.grantTails(gi)
			if len(ts) == 0 {
				continue
			}
			ref := v.grantRef(gi, iv)
			subj := v.g.rels[gi].a
			var ms []memberOf
			if v.kind(subj) == event.KindGroup {
				ms = v.principalsBelow(subj)
			} else {
				ms = []memberOf{{principal: subj}}
			}
			for _, m := range ms {
				if !v.active(m.principal) {
					continue
				}
				for _, t := range ts {
					out = append(out, access.Interval{Principal: v.g.names[m.principal], Action: v.g.names[t.perm],
						Resource: res, Path: v.path(m.groups, ref, t)})
				}
			}
		}
	}
	return out
}

// reachUp lists every relation that could ever bear on p's access: memberships up from p,
// grants of p and those groups, and the permissions and inclusions of the roles they grant.
func (g *Graph) reachUp(v *view, p uint32) []int32 {
	var rels []int32
	subjects := []uint32{p}
	seen := map[uint32]bool{p: true}
	var roles []uint32
	for i := 0; i < len(subjects); i++ {
		e := g.ents[subjects[i]]
		if e == nil {
			continue
		}
		for _, mi := range e.memberOf {
			rels = append(rels, mi)
			if grp := g.rels[mi].a; !seen[grp] {
				seen[grp] = true
				subjects = append(subjects, grp)
			}
		}
		for _, gi := range e.grants {
			rels = append(rels, gi)
			if r := &g.rels[gi]; r.kind == relGrantRole && !seen[r.b] {
				seen[r.b] = true
				roles = append(roles, r.b)
			}
		}
	}
	return append(rels, g.roleReach(roles, seen)...)
}

// roleReach lists the permission and inclusion relations of roles and of the roles they ever
// include; seen marks roles already listed.
func (g *Graph) roleReach(roles []uint32, seen map[uint32]bool) []int32 {
	var rels []int32
	for i := 0; i < len(roles); i++ {
		e := g.ents[roles[i]]
		if e == nil {
			continue
		}
		rels = append(rels, e.perms...)
		for _, ii := range e.includes {
			rels = append(rels, ii)
			if r := g.rels[ii].b; !seen[r] {
				seen[r] = true
				roles = append(roles, r)
			}
		}
	}
	return rels
}

// reachDown lists every relation and principal that could ever bear on the access to resource.
func (g *Graph) reachDown(v *view, resource string) ([]int32, []uint32) {
	var (
		rels       []int32
		principals []uint32
		groups     []uint32
		roles      []uint32
		seen       = map[uint32]bool{}
	)
	add := func(id uint32) {
		if seen[id] {
			return
		}
		seen[id] = true
		if v.kind(id) == event.KindGroup {
			groups = append(groups, id)
		} else {
			principals = append(principals, id)
		}
	}
	for _, res := range event.Ancestors(resource) {
		rid, ok := g.lookup(res)
		if !ok {
			continue
		}
		for _, gi := range g.resGrant[rid] {
			rels = append(rels, gi)
			r := &g.rels[gi]
			add(r.a)
			if r.kind == relGrantRole && !seen[r.b] {
				seen[r.b] = true
				roles = append(roles, r.b)
			}
		}
	}
	for i := 0; i < len(groups); i++ {
		e := g.ents[groups[i]]
		if e == nil {
			continue
		}
		for _, mi := range e.members {
			rels = append(rels, mi)
			add(g.rels[mi].b)
		}
	}
	return append(rels, g.roleReach(roles, seen)...), principals
}
