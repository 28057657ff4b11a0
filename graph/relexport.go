package graph

import (
	"cmp"
	"math"
	"slices"
	"time"

	"github.com/whocould/whocould/access"
	"github.com/whocould/whocould/event"
)

// The map by its parts, for a store that keeps it as rows and joins them when asked
// (store/clickhouse): a path of principal P at T is a chain (P's memberships up to a group, or
// none), a grant whose subject is the chain's last group (or P), and a tail of the granted role
// (its inclusion chain to a role holding a permission; for a grant of an action, the action
// itself) — each holding at T. So the parts are:
//
//   - Chains: each membership chain of a principal and the stretches over which every one of
//     its memberships holds;
//   - GrantSpans: a grant's intervals, each with the expiry in force and why it ended;
//   - Tails: each inclusion chain of a role to a permission, and when all of it holds;
//   - StatusSpans: a principal's status.
//
// ApplyChanges names which of them records changed.

// Forever is the To of a span that has not ended.
const Forever = forever

// StatusSpan is a stretch of a principal's status (access.StatusActive, StatusDisabled or
// StatusDeleted); before its first span, and in gaps, the principal is unknown.
type StatusSpan struct {
	From, To int64
	Status   string
}

// PathSpan is a stretch of time over which a path held, whatever the principal's status: the
// principal could do Action (the path's permission) on Resource (its grant's resource) through it
// while also active. A path whose grant's expiry changes is one span per expiry, so that Path
// shows the expiry in force throughout. (store/spans joins them from the parts.)
type PathSpan struct {
	From, To int64
	Action   string
	Resource string
	Path     access.Path
}

// ChainSpan is a stretch over which principal is a member of Groups[0], Groups[0] of
// Groups[1], and so on (no group twice).
type ChainSpan struct {
	From, To int64
	Groups   []string
}

// GrantSpan is one interval of a grant: it holds over [From, To) with expiry Expires (0:
// none), and ended as End says.
type GrantSpan struct {
	From, To int64
	Expires  int64
	End      End
}

// TailSpan is a stretch over which Roles[0] includes Roles[1], and so on (no role twice), and
// the last holds Permission.
type TailSpan struct {
	From, To   int64
	Roles      []string
	Permission string
}

// MaxChains bounds the chains exported for one principal, and the tails for one role: past it
// the walk stops (only a structure built to multiply chains gets there).
const MaxChains = 1 << 14

type span struct{ from, to int64 }

// intersect is the stretches of a that some interval of ivs covers.
func intersect(a []span, ivs []interval) []span {
	var out []span
	for _, x := range a {
		for _, iv := range ivs {
			lo, hi := max(x.from, iv.from), min(x.to, iv.to)
			if lo < hi {
				out = append(out, span{lo, hi})
			}
		}
	}
	slices.SortFunc(out, func(x, y span) int { return cmp.Compare(x.from, y.from) })
	// Merge what touches: a relation removed and added again at one instant holds throughout.
	merged := out[:0]
	for _, s := range out {
		if n := len(merged); n > 0 && merged[n-1].to >= s.from {
			merged[n-1].to = max(merged[n-1].to, s.to)
			continue
		}
		merged = append(merged, s)
	}
	return merged
}

var always = []span{{math.MinInt64, forever}}

// Chains exports principal's membership chains as known at knownAt.
func (g *Graph) Chains(principal string, knownAt *time.Time) []ChainSpan {
	g.mu.RLock()
	defer g.mu.RUnlock()
	p, ok := g.lookup(principal)
	if !ok {
		return nil
	}
	qs := g.ask(knownAt)
	defer qs.done()
	v := qs.view(0)
	var out []ChainSpan
	chain := []uint32{p}
	var walk func(x uint32, cur []span)
	walk = func(x uint32, cur []span) {
		e := g.ents[x]
		if e == nil || len(out) >= MaxChains {
			return
		}
		for _, mi := range e.memberOf {
			grp := g.rels.at(mi).a
			if slices.Contains(chain, grp) {
				continue
			}
			next := intersect(cur, v.ivs(mi))
			if len(next) == 0 {
				continue
			}
			chain = append(chain, grp)
			names := make([]string, len(chain)-1)
			for i, id := range chain[1:] {
				names[i] = g.names[id]
			}
			for _, s := range next {
				out = append(out, ChainSpan{From: s.from, To: s.to, Groups: names})
			}
			walk(grp, next)
			chain = chain[:len(chain)-1]
		}
	}
	walk(p, always)
	return out
}

// GrantSpans exports the intervals of the grant of role (or of action, when role is "") to
// subject on resource, as known at knownAt.
func (g *Graph) GrantSpans(subject, role, action, resource string, knownAt *time.Time) []GrantSpan {
	g.mu.RLock()
	defer g.mu.RUnlock()
	kind, what := relGrantRole, role
	if role == "" {
		kind, what = relGrantAction, action
	}
	k, ok := g.keyOf(kind, subject, what, resource)
	if !ok {
		return nil
	}
	i, ok := g.relIdx.find(&g.rels, k)
	if !ok {
		return nil
	}
	qs := g.ask(knownAt)
	defer qs.done()
	var out []GrantSpan
	for _, iv := range qs.view(0).ivs(i) {
		if iv.from < iv.to {
			out = append(out, GrantSpan{From: iv.from, To: iv.to, Expires: iv.expires, End: iv.end})
		}
	}
	return out
}

// Tails exports role's inclusion chains to permissions, as known at knownAt.
func (g *Graph) Tails(role string, knownAt *time.Time) []TailSpan {
	g.mu.RLock()
	defer g.mu.RUnlock()
	r, ok := g.lookup(role)
	if !ok || g.kind(r) != event.KindRole {
		return nil
	}
	qs := g.ask(knownAt)
	defer qs.done()
	v := qs.view(0)
	var out []TailSpan
	chain := []uint32{r}
	var walk func(x uint32, cur []span)
	walk = func(x uint32, cur []span) {
		e := g.ents[x]
		if e == nil || e.roleRels == nil || len(out) >= MaxChains {
			return
		}
		var names []string // the chain's names, made when a tail needs them
		for _, pi := range e.perms {
			for _, s := range intersect(cur, v.ivs(pi)) {
				if names == nil {
					names = make([]string, len(chain))
					for i, id := range chain {
						names[i] = g.names[id]
					}
				}
				out = append(out, TailSpan{From: s.from, To: s.to, Roles: names, Permission: g.names[g.rels.at(pi).b]})
			}
		}
		for _, ii := range e.includes {
			inc := g.rels.at(ii).b
			if slices.Contains(chain, inc) {
				continue
			}
			next := intersect(cur, v.ivs(ii))
			if len(next) == 0 {
				continue
			}
			chain = append(chain, inc)
			walk(inc, next)
			chain = chain[:len(chain)-1]
		}
	}
	walk(r, always)
	return out
}

// StatusSpans exports principal's status as known at knownAt.
func (g *Graph) StatusSpans(principal string, knownAt *time.Time) []StatusSpan {
	g.mu.RLock()
	defer g.mu.RUnlock()
	p, ok := g.lookup(principal)
	if !ok || g.kind(p) != event.KindPrincipal {
		return nil
	}
	qs := g.ask(knownAt)
	defer qs.done()
	var out []StatusSpan
	for _, s := range qs.view(0).statusIvs(p) {
		if s.from < s.to {
			out = append(out, StatusSpan{From: s.from, To: s.to, Status: stateName(s.state)})
		}
	}
	return out
}

// GrantKey names a grant: Role or Action is set.
type GrantKey struct{ Subject, Role, Action, Resource string }

// Changes is what applied records changed, by part.
type Changes struct {
	Chains []string   // principals whose chains may have changed
	Status []string   // principals whose status changed
	Grants []GrantKey // grants whose intervals changed
	Tails  []string   // roles whose tails may have changed
}

// ApplyChanges applies records as ApplyBatch does and names the parts they changed (each list
// sorted, unique): as ApplyTouched, it compares, record by record, the intervals of the
// relations and the status each record can re-derive; a membership (G, M) that changed changes
// the chains of every principal at or below M, a permission or inclusion of role R the tails of
// R and of every role that includes it (transitively).
func (g *Graph) ApplyChanges(rs []event.Record) Changes {
	g.mu.Lock()
	defer g.mu.Unlock()
	var (
		down   []uint32
		roles  []uint32
		status []string
		grants = map[GrantKey]bool{}
	)
	g.applyWatching(rs, func(r *relation) {
		switch r.kind {
		case relMember:
			down = append(down, r.b)
		case relGrantRole:
			grants[GrantKey{Subject: g.names[r.a], Role: g.names[r.b], Resource: g.names[r.c]}] = true
		case relGrantAction:
			grants[GrantKey{Subject: g.names[r.a], Action: g.names[r.b], Resource: g.names[r.c]}] = true
		case relPerm, relInclude:
			roles = append(roles, r.a)
		}
	}, func(p string) { status = append(status, p) })
	var ch Changes
	ch.Chains = g.touched(&touchRoots{down: down})
	slices.Sort(status)
	ch.Status = slices.Compact(status)
	for k := range grants {
		ch.Grants = append(ch.Grants, k)
	}
	slices.SortFunc(ch.Grants, func(a, b GrantKey) int {
		return cmp.Or(cmp.Compare(a.Subject, b.Subject), cmp.Compare(a.Role, b.Role), cmp.Compare(a.Action, b.Action),
			cmp.Compare(a.Resource, b.Resource))
	})
	for _, r := range g.rolesIncluding(roles) {
		ch.Tails = append(ch.Tails, g.names[r])
	}
	slices.Sort(ch.Tails)
	return ch
}
