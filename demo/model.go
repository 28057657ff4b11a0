package demo

import (
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/whocould/whocould/event"
)

// model is the generator's own small reading of DESIGN.md §1 (the semantics in the doc comment of
// access/query.go): it replays change events in event-time order and answers "could P do A on R
// at T". The generator uses it to make decisions consistent with the map (and the few
// deliberately inconsistent ones inconsistent), and to compute the expected answers of the
// questions. It is deliberately independent of the product's engine, so the two can check each
// other.
type model struct {
	exists   map[string]bool
	disabled map[string]bool
	deleted  map[string]bool            // principals deleted and not re-created since
	members  map[string]map[string]bool // group -> members
	memberOf map[string]map[string]bool // member -> groups
	perms    map[string]map[string]bool // role -> action patterns
	incl     map[string]map[string]bool // role -> included roles
	grants   map[string]map[grantKey]time.Time
}

type grantKey struct{ role, action, resource string }

func newModel() *model {
	return &model{
		exists:   map[string]bool{},
		disabled: map[string]bool{},
		deleted:  map[string]bool{},
		members:  map[string]map[string]bool{},
		memberOf: map[string]map[string]bool{},
		perms:    map[string]map[string]bool{},
		incl:     map[string]map[string]bool{},
		grants:   map[string]map[grantKey]time.Time{},
	}
}

func add[K comparable](m map[string]map[K]bool, a string, b K) {
	s := m[a]
	if s == nil {
		s = map[K]bool{}
		m[a] = s
	}
	s[b] = true
}

func del(m map[string]map[string]bool, a, b string) {
	if s := m[a]; s != nil {
		delete(s, b)
	}
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// ensure makes id exist (an active principal when it is one).
func (m *model) ensure(id string) {
	if !m.exists[id] {
		m.exists[id] = true
		delete(m.disabled, id)
		delete(m.deleted, id)
	}
}

func (m *model) endMemberships(id string) {
	for g := range m.memberOf[id] {
		del(m.members, g, id)
	}
	delete(m.memberOf, id)
}

func (m *model) apply(e *event.Event) {
	d := &e.Data
	switch e.Type {
	case event.PrincipalCreated, event.PrincipalUpdated, event.PrincipalEnabled:
		m.ensure(d.Principal)
		if e.Type == event.PrincipalEnabled {
			delete(m.disabled, d.Principal)
		}
	case event.PrincipalDisabled:
		m.ensure(d.Principal)
		m.disabled[d.Principal] = true
	case event.PrincipalDeleted, event.GroupDeleted:
		id := d.Principal
		if e.Type == event.GroupDeleted {
			id = d.Group
			for mem := range m.members[id] {
				del(m.memberOf, mem, id)
			}
			delete(m.members, id)
		}
		if !m.exists[id] {
			return
		}
		m.endMemberships(id)
		delete(m.grants, id)
		delete(m.exists, id)
		delete(m.disabled, id)
		if e.Type == event.PrincipalDeleted {
			m.deleted[id] = true
		}
	case event.GroupCreated:
		m.ensure(d.Group)
	case event.MembershipAdded:
		m.ensure(d.Group)
		m.ensure(d.Member)
		add(m.members, d.Group, d.Member)
		add(m.memberOf, d.Member, d.Group)
	case event.MembershipRemoved:
		del(m.members, d.Group, d.Member)
		del(m.memberOf, d.Member, d.Group)
	case event.RoleCreated:
		m.ensure(d.Role)
	case event.RolePermissionAdded:
		m.ensure(d.Role)
		add(m.perms, d.Role, d.Action)
	case event.RolePermissionRemoved:
		del(m.perms, d.Role, d.Action)
	case event.RoleIncludeAdded:
		m.ensure(d.Role)
		m.ensure(d.Includes)
		add(m.incl, d.Role, d.Includes)
	case event.RoleIncludeRemoved:
		del(m.incl, d.Role, d.Includes)
	case event.RoleDeleted:
		if !m.exists[d.Role] {
			return
		}
		delete(m.perms, d.Role)
		delete(m.incl, d.Role)
		for _, s := range m.incl {
			delete(s, d.Role)
		}
		for _, gs := range m.grants {
			for k := range gs {
				if k.role == d.Role {
					delete(gs, k)
				}
			}
		}
		delete(m.exists, d.Role)
	case event.GrantAdded:
		m.ensure(d.Subject)
		if d.Role != "" {
			m.ensure(d.Role)
		}
		gs := m.grants[d.Subject]
		if gs == nil {
			gs = map[grantKey]time.Time{}
			m.grants[d.Subject] = gs
		}
		var exp time.Time
		if d.ExpiresAt != nil {
			exp = *d.ExpiresAt
		}
		gs[grantKey{d.Role, d.Action, d.Resource}] = exp
	case event.GrantRemoved:
		delete(m.grants[d.Subject], grantKey{d.Role, d.Action, d.Resource})
	}
}

// path is one reason a principal could do something.
type path struct {
	groups     []string
	grant      grantKey
	subject    string
	roles      []string
	permission string
}

func (p path) String() string {
	var b strings.Builder
	what := p.grant.role
	if what == "" {
		what = p.grant.action
	}
	b.WriteString(what + " on " + p.grant.resource)
	if len(p.groups) > 0 {
		b.WriteString(" via " + strings.Join(p.groups, " > "))
	}
	return b.String()
}

// subjects lists the principal and every group it is in at present, each with its membership
// chain (the first found in sorted breadth-first order; no group twice).
func (m *model) subjects(p string) [][]string {
	out := [][]string{{}}
	seen := map[string]bool{p: true}
	queue := [][]string{{}}
	for len(queue) > 0 {
		chain := queue[0]
		queue = queue[1:]
		last := p
		if len(chain) > 0 {
			last = chain[len(chain)-1]
		}
		for _, g := range sortedKeys(m.memberOf[last]) {
			if seen[g] {
				continue
			}
			seen[g] = true
			c := append(slices.Clip(chain), g)
			out = append(out, c)
			queue = append(queue, c)
		}
	}
	return out
}

// rolePerms lists (role chain, permission) for role r and the roles it includes.
func (m *model) rolePerms(r string, chain []string, visit func(roles []string, perm string)) {
	if slices.Contains(chain, r) {
		return
	}
	chain = append(slices.Clip(chain), r)
	for _, a := range sortedKeys(m.perms[r]) {
		visit(chain, a)
	}
	for _, inc := range sortedKeys(m.incl[r]) {
		m.rolePerms(inc, chain, visit)
	}
}

func sortedGrants(gs map[grantKey]time.Time) []grantKey {
	out := make([]grantKey, 0, len(gs))
	for k := range gs {
		out = append(out, k)
	}
	slices.SortFunc(out, func(a, b grantKey) int {
		return strings.Compare(a.role+"\x00"+a.action+"\x00"+a.resource, b.role+"\x00"+b.action+"\x00"+b.resource)
	})
	return out
}

// paths lists every path of p at t whose permission matches action a (any action when a is "")
// on resource r (any resource when r is ""). expired reports whether an expired grant would
// otherwise have given one.
func (m *model) paths(p, a, r string, t time.Time) (out []path, expired bool) {
	if !m.exists[p] {
		return nil, false
	}
	for _, chain := range m.subjects(p) {
		subj := p
		if len(chain) > 0 {
			subj = chain[len(chain)-1]
		}
		gs := m.grants[subj]
		for _, k := range sortedGrants(gs) {
			if r != "" && !event.Covers(k.resource, r) {
				continue
			}
			exp := gs[k]
			live := exp.IsZero() || t.Before(exp)
			emit := func(roles []string, perm string) {
				if a != "" && !event.Matches(perm, a) {
					return
				}
				if !live {
					expired = true
					return
				}
				out = append(out, path{groups: chain, grant: k, subject: subj, roles: roles, permission: perm})
			}
			if k.action != "" {
				emit(nil, k.action)
			} else {
				m.rolePerms(k.role, nil, emit)
			}
		}
	}
	return out, expired
}

// could answers whether p could do a on r at t, with a reason an enforcement point might log.
func (m *model) could(p, a, r string, t time.Time) (bool, string) {
	ps, expired := m.paths(p, a, r, t)
	switch {
	case !m.exists[p]:
		return false, "unknown principal"
	case m.disabled[p]:
		return false, "account disabled"
	case len(ps) > 0:
		return true, "granted: " + ps[0].String()
	case expired:
		return false, "grant expired"
	}
	return false, "no grant of " + a + " on " + r
}

// active reports whether p exists and is not disabled.
func (m *model) active(p string) bool { return m.exists[p] && !m.disabled[p] }

// principals lists every existing principal, sorted.
func (m *model) principals() []string {
	var out []string
	for id := range m.exists {
		if event.KindOf(id) == event.KindPrincipal {
			out = append(out, id)
		}
	}
	sort.Strings(out)
	return out
}

// modelAt replays the change events with time at or before t (events must be in event-time
// order).
func modelAt(evs []event.Event, t time.Time) *model {
	m := newModel()
	for i := range evs {
		if evs[i].Time.After(t) {
			break
		}
		if evs[i].Type.IsChange() {
			m.apply(&evs[i])
		}
	}
	return m
}
