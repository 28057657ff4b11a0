package analyzer

import (
	"cmp"
	"slices"
	"sync"

	"github.com/whocould/whocould/access"
	"github.com/whocould/whocould/event"
	"github.com/whocould/whocould/graph"
	"github.com/whocould/whocould/store/spans"
)

// The map over all time, principal by principal: a rule that judges history (separation of
// duties, shadow access, use of grants) needs, for a principal, every path it ever had and when
// — the engine's History asks the whole map again at every instant something changed, which is
// far too slow for 10k principals; the parts (chains, grant intervals, role tails, statuses),
// joined by store/spans exactly as ClickHouse's answers are, give the same paths as stretches
// of time at the cost of one join.

// parts are the tenant's grant intervals and role tails, shared by every principal; chains and
// statuses are per principal.
type parts struct {
	once sync.Once
	p    *spans.Parts
}

func (m *Model) sharedParts() *spans.Parts {
	m.parts.once.Do(func() {
		p := spans.NewParts()
		roles := map[string]bool{}
		m.Graph.Relations(nil, func(r graph.RelationSpans) {
			k := graph.GrantKey{Subject: r.A, Resource: r.C}
			if r.Kind == graph.RoleGrant {
				k.Role = r.B
				roles[r.B] = true
			} else {
				k.Action = r.B
			}
			for _, s := range r.Spans {
				p.Grants[r.A] = append(p.Grants[r.A], spans.Grant{GrantKey: k, GrantSpan: s})
			}
		}, graph.RoleGrant, graph.ActionGrant)
		for role := range roles {
			p.Tails[role] = m.Graph.Tails(role, nil)
		}
		m.parts.p = p
	})
	return m.parts.p
}

// Paths is every path principal p ever had, as stretches of time (whatever its status then),
// and its status over time; keep (nil: all) selects the entitlements (action pattern, grant
// resource) wanted. Safe for concurrent use.
func (m *Model) Paths(p string, keep func(action, resource string) bool) spans.Principal {
	shared := m.sharedParts()
	mine := &spans.Parts{Grants: shared.Grants, Tails: shared.Tails,
		Chains: map[string][]graph.ChainSpan{p: m.Graph.Chains(p, nil)}, Status: map[string][]graph.StatusSpan{p: m.Graph.StatusSpans(p, nil)}}
	return mine.Principal(p, keep)
}

// Span is a stretch of time [From, To) in Unix microseconds (To graph.Forever: still holds).
type Span struct{ From, To int64 }

// ActiveSpans is when the principal was active.
func ActiveSpans(p spans.Principal) []Span { return activeSpans(p.Status) }

// activeSpans is the stretches of ss (a principal's status) in which it was active, merged.
func activeSpans(ss []graph.StatusSpan) []Span {
	var out []Span
	for _, s := range ss {
		if s.Status == access.StatusActive {
			out = append(out, Span{s.From, s.To})
		}
	}
	return mergeSpans(out)
}

// CouldSpans is when principal p could do action on resource (DESIGN.md §1): active, with a
// path whose permission matches action and whose grant covers resource.
func CouldSpans(p spans.Principal, action, resource string) []Span {
	var ss []Span
	for i := range p.Paths {
		ps := &p.Paths[i]
		if event.Matches(ps.Action, action) && event.Covers(ps.Resource, resource) {
			ss = append(ss, Span{ps.From, ps.To})
		}
	}
	return IntersectSpans(mergeSpans(ss), ActiveSpans(p))
}

// MergeSpans sorts spans and merges those that overlap or touch (in place).
func MergeSpans(ss []Span) []Span { return mergeSpans(ss) }

// mergeSpans sorts spans and merges those that overlap or touch.
func mergeSpans(ss []Span) []Span {
	slices.SortFunc(ss, func(a, b Span) int { return cmp.Compare(a.From, b.From) })
	out := ss[:0]
	for _, s := range ss {
		if s.From >= s.To {
			continue
		}
		if n := len(out); n > 0 && out[n-1].To >= s.From {
			out[n-1].To = max(out[n-1].To, s.To)
			continue
		}
		out = append(out, s)
	}
	return out
}

// IntersectSpans is the stretches both a and b (each sorted, disjoint) cover.
func IntersectSpans(a, b []Span) []Span {
	var out []Span
	for i, j := 0, 0; i < len(a) && j < len(b); {
		lo, hi := max(a[i].From, b[j].From), min(a[i].To, b[j].To)
		if lo < hi {
			out = append(out, Span{lo, hi})
		}
		if a[i].To < b[j].To {
			i++
		} else {
			j++
		}
	}
	return out
}

// SpanAt reports whether some span of ss (sorted, disjoint) holds at t.
func SpanAt(ss []Span, t int64) bool {
	i, _ := slices.BinarySearchFunc(ss, t, func(s Span, t int64) int {
		if s.To <= t {
			return -1
		}
		if s.From > t {
			return 1
		}
		return 0
	})
	return i < len(ss) && ss[i].From <= t && t < ss[i].To
}

// ownPath is a copy of p for a finding's evidence, sharing no memory with the answer it came
// from (access.Path.Clone).
func ownPath(p access.Path) *access.Path {
	p = p.Clone()
	return &p
}
