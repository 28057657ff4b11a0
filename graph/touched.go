package graph

import (
	"slices"

	"github.com/whocould/whocould/event"
)

// ApplyTouched applies records as ApplyBatch does and returns the principals (sorted, unique)
// whose History (principal histories, over any window, as known now or at any known-at) might
// have changed: a principal not returned has the same histories after as before.
//
// Every record is applied with its recorded time, which is never before one applied earlier, so
// as known at K a record either counts with every record applied before it (K at or after its
// recorded time) or not at all: a principal's histories can change only when the intervals of a
// relation, or a principal's status, derived from everything applied change. ApplyTouched
// compares, record by record, the intervals of the relations and the status the record can
// re-derive, and for each that changed touches, over the graph's structure (every relation ever
// applied, whether or not it holds, taken after the records apply):
//
//   - a membership (G, M): every principal at or below M (M, its members, theirs, ...);
//   - a grant: every principal at or below its subject;
//   - a permission or inclusion of role R: every principal at or below a subject of a grant of
//     R or of a role that includes R (transitively);
//   - a principal's status: that principal.
//
// So a remove of what does not hold, an add of what holds (but a grant's new expiry), deleting
// what never existed, group.created and role.created, and the records that are no change events
// touch nobody. Deletions compare every relation of the deleted id.
func (g *Graph) ApplyTouched(rs []event.Record) []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	var t touchRoots
	g.applyWatching(rs, t.rel, func(p string) {
		id, _ := g.lookup(p)
		t.down = append(t.down, id)
	})
	return g.touched(&t)
}

// touchRoots is what applied records touch, before closing over the structure: ids whose
// principals at or below are touched, and roles whose grantees are.
type touchRoots struct {
	down  []uint32
	roles []uint32
}

// watched is what one record can re-derive, as it stood before the record applied.
type watched struct {
	rec       *event.Record
	relBefore []interval // the intervals of the relation the record names (none if it was none)
	stBefore  []statusIv // the status of the principal whose status it can change
	dels      []watchedRel
}

type watchedRel struct {
	rel int32
	ivs []interval
}

// recordRel is the key of the relation record r adds or removes, when it names one and its
// names are interned.
func (g *Graph) recordRel(r *event.Record) (relKey, bool) {
	d := &r.Data
	switch r.Type {
	case event.MembershipAdded, event.MembershipRemoved:
		return g.keyOf(relMember, d.Group, d.Member, "")
	case event.RolePermissionAdded, event.RolePermissionRemoved:
		return g.keyOf(relPerm, d.Role, d.Action, "")
	case event.RoleIncludeAdded, event.RoleIncludeRemoved:
		return g.keyOf(relInclude, d.Role, d.Includes, "")
	case event.GrantAdded, event.GrantRemoved:
		if d.Role != "" {
			return g.keyOf(relGrantRole, d.Subject, d.Role, d.Resource)
		}
		return g.keyOf(relGrantAction, d.Subject, d.Action, d.Resource)
	}
	return relKey{}, false
}

// keyOf is the key of a relation between interned names (c only for grants).
func (g *Graph) keyOf(kind relKind, a, b, c string) (relKey, bool) {
	k := relKey{kind: kind}
	var ok bool
	if k.a, ok = g.lookup(a); !ok {
		return k, false
	}
	if k.b, ok = g.lookup(b); !ok {
		return k, false
	}
	if kind == relGrantRole || kind == relGrantAction {
		if k.c, ok = g.lookup(c); !ok {
			return k, false
		}
	}
	return k, true
}

// recordStatus is the principal whose status record r can change ("" for none).
func recordStatus(r *event.Record) string {
	d := &r.Data
	switch r.Type {
	case event.PrincipalCreated, event.PrincipalUpdated, event.PrincipalDisabled, event.PrincipalEnabled,
		event.PrincipalDeleted:
		return d.Principal
	case event.MembershipAdded:
		if event.KindOf(d.Member) == event.KindPrincipal {
			return d.Member
		}
	case event.GrantAdded:
		if event.KindOf(d.Subject) == event.KindPrincipal {
			return d.Subject
		}
	}
	return ""
}

// recordDeletes is the id whose relations record r re-derives by deleting it ("" for none).
func recordDeletes(r *event.Record) string {
	switch r.Type {
	case event.PrincipalDeleted:
		return r.Data.Principal
	case event.GroupDeleted:
		return r.Data.Group
	case event.RoleDeleted:
		return r.Data.Role
	}
	return ""
}

func (g *Graph) relIvs(k relKey, ok bool) []interval {
	if !ok {
		return nil
	}
	if i, ok := g.relIdx.find(&g.rels, k); ok {
		return g.rels.ivs(g.rels.at(i))
	}
	return nil
}

func (g *Graph) statusNamed(p string) []statusIv {
	if id, ok := g.lookup(p); ok && g.ents[id] != nil {
		return g.statusOf(id)
	}
	return nil
}

// relsOf lists every relation of entity e.
func relsOf(e *entity) []int32 {
	var out []int32
	for _, m := range e.members {
		out = append(out, m.rel)
	}
	out = append(out, e.memberOf...)
	out = append(out, e.grants...)
	if e.roleRels != nil {
		out = append(out, e.perms...)
		out = append(out, e.includes...)
		out = append(out, e.includedBy...)
		out = append(out, e.grantsOf...)
	}
	return out
}

// watch notes what record r can re-derive, before it applies.
func (g *Graph) watch(r *event.Record) *watched {
	if !r.Type.IsChange() {
		return nil
	}
	w := &watched{rec: r}
	w.relBefore = slices.Clone(g.relIvs(g.recordRel(r)))
	if p := recordStatus(r); p != "" {
		w.stBefore = slices.Clone(g.statusNamed(p))
	}
	if x := recordDeletes(r); x != "" {
		if id, ok := g.lookup(x); ok && g.ents[id] != nil {
			for _, i := range relsOf(g.ents[id]) {
				w.dels = append(w.dels, watchedRel{rel: i, ivs: slices.Clone(g.rels.ivs(g.rels.at(i)))})
			}
		}
	}
	return w
}

// applyWatching applies records as ApplyBatch does, with the write lock held, and hands rel each
// relation whose intervals a record changed and status each principal whose status it changed.
func (g *Graph) applyWatching(rs []event.Record, rel func(*relation), status func(principal string)) {
	for i := range rs {
		w := g.watch(&rs[i])
		g.apply(&rs[i])
		if w == nil {
			continue
		}
		r := w.rec
		if k, ok := g.recordRel(r); ok {
			if i, ok := g.relIdx.find(&g.rels, k); ok && !slices.Equal(w.relBefore, g.rels.ivs(g.rels.at(i))) {
				rel(g.rels.at(i))
			}
		}
		if p := recordStatus(r); p != "" && !slices.Equal(w.stBefore, g.statusNamed(p)) {
			status(p)
		}
		for _, d := range w.dels {
			if rl := g.rels.at(d.rel); !slices.Equal(d.ivs, g.rels.ivs(rl)) {
				rel(rl)
			}
		}
	}
}

// rel notes the roots of a change of relation r's intervals.
func (t *touchRoots) rel(r *relation) {
	switch r.kind {
	case relMember:
		t.down = append(t.down, r.b)
	case relGrantRole, relGrantAction:
		t.down = append(t.down, r.a)
	case relPerm, relInclude:
		t.roles = append(t.roles, r.a)
	}
}

// touched closes the roots over the structure: roles up their inclusions, to the subjects of
// their grants; subjects and groups down their members, to principals.
func (g *Graph) touched(t *touchRoots) []string {
	down := t.down
	for _, r := range g.rolesIncluding(t.roles) {
		for _, gi := range g.ents[r].grantsOf {
			down = append(down, g.rels.at(gi).a)
		}
	}
	seen := map[uint32]bool{}
	var stack []uint32
	for _, x := range down {
		if !seen[x] {
			seen[x] = true
			stack = append(stack, x)
		}
	}
	var out []string
	for len(stack) > 0 {
		x := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if g.kind(x) == event.KindPrincipal {
			out = append(out, g.names[x])
		}
		e := g.ents[x]
		if e == nil {
			continue
		}
		for _, m := range e.members {
			if !seen[m.member] {
				seen[m.member] = true
				stack = append(stack, m.member)
			}
		}
	}
	slices.Sort(out)
	return out
}

// rolesIncluding lists roots and every role that includes one of them, transitively, each once:
// the roles whose tails a change to the roots' permissions or inclusions can change.
func (g *Graph) rolesIncluding(roots []uint32) []uint32 {
	seen := map[uint32]bool{}
	var out []uint32
	add := func(r uint32) {
		if e := g.ents[r]; !seen[r] && e != nil && e.roleRels != nil {
			seen[r] = true
			out = append(out, r)
		}
	}
	for _, r := range roots {
		add(r)
	}
	for i := 0; i < len(out); i++ {
		for _, ri := range g.ents[out[i]].includedBy {
			add(g.rels.at(ri).a)
		}
	}
	return out
}
