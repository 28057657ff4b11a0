package graph

import (
	"maps"
	"slices"
	"time"

	"github.com/whocould/whocould/event"
)

// The catalog: every relation and principal the graph knows, with their intervals, for the
// analyzers, which judge the map as a whole (which grants exist, who moved, what a baseline
// says should hold) rather than ask it one question at a time.

// RelKind is what a relation relates.
type RelKind uint8

// The relations of DESIGN.md §1.
const (
	Membership  RelKind = RelKind(relMember)      // A: group, B: member
	Permission  RelKind = RelKind(relPerm)        // A: role, B: action pattern
	Inclusion   RelKind = RelKind(relInclude)     // A: role, B: included role
	RoleGrant   RelKind = RelKind(relGrantRole)   // A: subject, B: role, C: resource
	ActionGrant RelKind = RelKind(relGrantAction) // A: subject, B: action pattern, C: resource
)

// RelationSpans is one relation and the intervals over which it held (Expires and End are a
// grant's; zero for the others).
type RelationSpans struct {
	Kind    RelKind
	A, B, C string
	Spans   []GrantSpan
}

// Relations calls fn with every relation of the given kinds that ever held, as known at
// knownAt, in the order they first appeared in the log.
func (g *Graph) Relations(knownAt *time.Time, fn func(RelationSpans), kinds ...RelKind) {
	g.mu.RLock()
	defer g.mu.RUnlock()
	qs := g.ask(knownAt)
	defer qs.done()
	v := qs.view(0)
	for i := range int32(g.rels.len()) {
		r := g.rels.at(i)
		if len(kinds) > 0 && !slices.Contains(kinds, RelKind(r.kind)) {
			continue
		}
		var spans []GrantSpan
		for _, iv := range v.ivs(i) {
			if iv.from < iv.to {
				spans = append(spans, GrantSpan{From: iv.from, To: iv.to, Expires: iv.expires, End: iv.end})
			}
		}
		if len(spans) == 0 {
			continue
		}
		rs := RelationSpans{Kind: RelKind(r.kind), A: g.names[r.a], B: g.names[r.b], Spans: spans}
		if r.kind == relGrantRole || r.kind == relGrantAction {
			rs.C = g.names[r.c]
		}
		fn(rs)
	}
}

// Principals lists every principal the graph knows (whatever its status), sorted.
func (g *Graph) Principals() []string {
	g.mu.RLock()
	defer g.mu.RUnlock()
	var out []string
	for id, e := range g.ents {
		if e != nil && len(e.life) > 0 && g.kind(uint32(id)) == event.KindPrincipal {
			out = append(out, g.names[id])
		}
	}
	slices.Sort(out)
	return out
}

// AttributeSpan is a stretch of time over which a principal's attributes were Attrs.
type AttributeSpan struct {
	From, To int64
	Attrs    map[string]string
}

// AttributeSpans exports principal's attributes over time, as known at knownAt: a span starts
// at each event that changed them (principal.created, principal.updated, a deletion, or the
// first event that made the principal exist); no span covers a time the principal did not
// exist.
func (g *Graph) AttributeSpans(principal string, knownAt *time.Time) []AttributeSpan {
	g.mu.RLock()
	defer g.mu.RUnlock()
	p, ok := g.lookup(principal)
	if !ok || g.ents[p] == nil {
		return nil
	}
	known := int64(forever)
	if knownAt != nil {
		known = event.Micros(*knownAt)
	}
	var (
		out    []AttributeSpan
		attrs  map[string]string
		exists bool
	)
	open := func(t int64) {
		if n := len(out); n > 0 && out[n-1].To == forever {
			out[n-1].To = t
			if out[n-1].From >= t {
				out = out[:n-1]
			}
		}
	}
	for _, le := range g.ents[p].life {
		if le.rec > known {
			continue
		}
		switch le.op {
		case opCreated, opUpdated, opUse, opDisabled, opEnabled:
			changed := !exists
			if !exists {
				exists, attrs = true, map[string]string{}
			}
			g.eachAttr(le.attrs, func(k, v string) {
				if old, had := attrs[k]; v == "" && had {
					delete(attrs, k)
					changed = true
				} else if v != "" && old != v {
					attrs[k] = v
					changed = true
				}
			})
			if changed {
				open(le.time)
				out = append(out, AttributeSpan{From: le.time, To: forever, Attrs: maps.Clone(attrs)})
			}
		case opDeleted:
			if exists {
				open(le.time)
			}
			exists, attrs = false, nil
		}
	}
	return out
}
