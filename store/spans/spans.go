// Package spans answers the questions of access.Querier from a materialised map: each
// principal's status and the paths it held and when, joined (Parts.Principal) from the map's
// parts (graph.Chains and the others). A store that keeps the parts as rows (store/clickhouse)
// fetches the rows a question needs, as known at its known-at, and hands them here; what it
// fetches may be a superset (every filter is applied again here), never a subset.
//
// The answers are exactly the engine's (graph.Graph): the same paths in the same order, the
// same caps (graph.MaxPaths, graph.MaxAnswerPaths), the same statuses. Explain's reason, when an
// active principal has no path, is built from the paths that ended before the question's time
// rather than from every grant of every group the principal was ever in, so its wording can
// differ from the engine's; whether it could, and its paths, cannot.
package spans

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/whocould/whocould/access"
	"github.com/whocould/whocould/event"
	"github.com/whocould/whocould/graph"
)

// Principal is what is known of one principal, or the part of it a question needs.
type Principal struct {
	Name   string
	Status []graph.StatusSpan
	Paths  []graph.PathSpan
}

func holdsAt(from, to, t int64) bool { return from <= t && t < to }

// statusAt is the principal's status at t and since when it holds.
func (p *Principal) statusAt(t int64) (string, int64) {
	for _, s := range p.Status {
		if holdsAt(s.From, s.To, t) {
			return s.Status, s.From
		}
	}
	return access.StatusUnknown, 0
}

// matching lists the paths holding at t that give action on resource, sorted.
func (p *Principal) matching(t int64, action, resource string) []access.Path {
	var paths []access.Path
	for _, s := range p.Paths {
		if holdsAt(s.From, s.To, t) && event.Matches(s.Action, action) && event.Covers(s.Resource, resource) {
			paths = append(paths, s.Path)
		}
	}
	access.SortPaths(paths)
	return paths
}

// WhoCould answers who could do q.Action on q.Resource at q.At, from ps (any order).
func WhoCould(q access.Query, ps []Principal) access.WhoCould {
	ans := access.WhoCould{Action: q.Action, Resource: q.Resource, At: q.At.UTC(), KnownAt: access.UTC(q.KnownAt),
		Principals: []access.PrincipalPaths{}}
	t := event.Micros(q.At)
	slices.SortFunc(ps, func(a, b Principal) int { return cmp.Compare(a.Name, b.Name) })
	total := 0
	for i := range ps {
		p := &ps[i]
		if st, _ := p.statusAt(t); st != access.StatusActive {
			continue
		}
		paths := p.matching(t, q.Action, q.Resource)
		truncated := false
		if len(paths) == 0 {
			continue
		}
		limit := graph.MaxPaths
		if total >= graph.MaxAnswerPaths {
			limit = 1
		}
		if len(paths) > limit {
			paths, truncated = paths[:limit], true
		}
		ans.PathsTruncated = ans.PathsTruncated || truncated
		total += len(paths)
		ans.Principals = append(ans.Principals, access.PrincipalPaths{Principal: p.Name, Paths: paths})
	}
	return ans
}

// WhatCould answers what p could do at q.At.
func WhatCould(q access.Query, p Principal) access.WhatCould {
	ans := access.WhatCould{Principal: q.Principal, At: q.At.UTC(), KnownAt: access.UTC(q.KnownAt),
		Status: access.StatusUnknown, Entitlements: []access.Entitlement{}}
	t := event.Micros(q.At)
	ans.Status, _ = p.statusAt(t)
	if ans.Status != access.StatusActive {
		return ans
	}
	type key struct{ action, resource string }
	idx := map[key]int{}
	for _, s := range p.Paths {
		if !holdsAt(s.From, s.To, t) {
			continue
		}
		k := key{s.Action, s.Resource}
		i, ok := idx[k]
		if !ok {
			i = len(ans.Entitlements)
			idx[k] = i
			ans.Entitlements = append(ans.Entitlements, access.Entitlement{Action: s.Action, Resource: s.Resource})
		}
		ans.Entitlements[i].Paths = append(ans.Entitlements[i].Paths, s.Path)
	}
	for i := range ans.Entitlements {
		access.SortPaths(ans.Entitlements[i].Paths)
		if ps := ans.Entitlements[i].Paths; len(ps) > graph.MaxPaths {
			ans.Entitlements[i].Paths, ans.PathsTruncated = ps[:graph.MaxPaths], true
		}
	}
	slices.SortFunc(ans.Entitlements, func(a, b access.Entitlement) int {
		if c := cmp.Compare(a.Action, b.Action); c != 0 {
			return c
		}
		return cmp.Compare(a.Resource, b.Resource)
	})
	return ans
}

// Explain answers whether p could do q.Action on q.Resource at q.At, and why (not). known says
// whether any event names p.
func Explain(q access.Query, p Principal, known bool) access.Explain {
	ans := access.Explain{Principal: q.Principal, Action: q.Action, Resource: q.Resource, At: q.At.UTC(),
		KnownAt: access.UTC(q.KnownAt), Status: access.StatusUnknown, Paths: []access.Path{}}
	if !known {
		ans.Reason = fmt.Sprintf("%s is not known: no event names it", q.Principal)
		return ans
	}
	t := event.Micros(q.At)
	status, since := p.statusAt(t)
	ans.Status = status
	paths := p.matching(t, q.Action, q.Resource)
	truncated := len(paths) > graph.MaxPaths
	if truncated {
		paths = paths[:graph.MaxPaths]
	}
	if paths != nil {
		ans.Paths = paths
	}
	ans.PathsTruncated = truncated
	ans.Could = status == access.StatusActive && len(paths) > 0
	if ans.Could {
		return ans
	}
	if ans.Reason = access.InactiveReason(q.Principal, status, q.At, event.FromMicros(since), len(paths), truncated); ans.Reason != "" {
		return ans
	}
	at := q.At.UTC().Format(time.RFC3339Nano)
	ans.Reason = fmt.Sprintf("no grant to %s or to a group it is in gives %s on %s at %s", q.Principal, q.Action, q.Resource, at)
	// The path that gave it last, if one ended by t.
	var last *graph.PathSpan
	for i := range p.Paths {
		s := &p.Paths[i]
		if s.To <= t && event.Matches(s.Action, q.Action) && event.Covers(s.Resource, q.Resource) &&
			(last == nil || s.To > last.To || s.To == last.To && access.ComparePaths(s.Path, last.Path) < 0) {
			last = s
		}
	}
	if last != nil {
		end := event.FromMicros(last.To).Format(time.RFC3339Nano)
		if x := last.Path.Grant.ExpiresAt; x != nil && event.Micros(*x) == last.To {
			ans.Reason += fmt.Sprintf("; the last grant that did, %s, expired at %s", last.Path.Grant, end)
		} else {
			ans.Reason += fmt.Sprintf("; the last path that did, %s, ended at %s", last.Path, end)
		}
	}
	return ans
}

// History answers how the access of q.Principal, or to q.Resource, changed in [q.From, q.To),
// from ps: for a principal, only it; for a resource, every principal that may hold something on
// it (any order).
func History(q access.Query, ps []Principal) access.History {
	ans := access.History{Principal: q.Principal, Resource: q.Resource, From: q.From.UTC(), To: q.To.UTC(),
		KnownAt: access.UTC(q.KnownAt), Intervals: []access.Interval{}}
	from, to := event.Micros(q.From), event.Micros(q.To)
	if from >= to {
		return ans
	}
	for i := range ps {
		p := &ps[i]
		if q.Principal != "" && p.Name != q.Principal {
			continue
		}
		// The stretches of [from, to) over which p is active.
		var active [][2]int64
		for _, s := range p.Status {
			if s.Status != access.StatusActive {
				continue
			}
			lo, hi := max(s.From, from), min(s.To, to)
			if lo >= hi {
				continue
			}
			if n := len(active); n > 0 && active[n-1][1] == lo {
				active[n-1][1] = hi
			} else {
				active = append(active, [2]int64{lo, hi})
			}
		}
		if len(active) == 0 {
			continue
		}
		relevant := func(resource string) bool { return q.Resource == "" || event.Covers(resource, q.Resource) }
		// Pieces clipped to the active stretches, then merged where they touch: an interval is
		// one entitlement and path (whatever its expiry) held without a break.
		type piece struct {
			from, to int64
			span     *graph.PathSpan
		}
		byKey := map[string][]piece{}
		var keys []string
		for j := range p.Paths {
			s := &p.Paths[j]
			if !relevant(s.Resource) {
				continue
			}
			k := pathKey(s)
			for _, a := range active {
				lo, hi := max(s.From, a[0]), min(s.To, a[1])
				if lo >= hi {
					continue
				}
				if _, ok := byKey[k]; !ok {
					keys = append(keys, k)
				}
				byKey[k] = append(byKey[k], piece{lo, hi, s})
			}
		}
		for _, k := range keys {
			pcs := byKey[k]
			slices.SortFunc(pcs, func(a, b piece) int { return cmp.Compare(a.from, b.from) })
			emit := func(lo, hi int64, s *graph.PathSpan) {
				iv := access.Interval{Principal: p.Name, Action: s.Action, Resource: s.Resource, From: event.FromMicros(lo), Path: s.Path}
				if hi < to {
					end := event.FromMicros(hi)
					iv.To = &end
				}
				ans.Intervals = append(ans.Intervals, iv)
			}
			lo, hi, last := pcs[0].from, pcs[0].to, pcs[0].span
			for _, pc := range pcs[1:] {
				if pc.from == hi {
					hi, last = pc.to, pc.span
					continue
				}
				emit(lo, hi, last)
				lo, hi, last = pc.from, pc.to, pc.span
			}
			emit(lo, hi, last)
		}
	}
	slices.SortFunc(ans.Intervals, access.CompareIntervals)
	return ans
}

// pathKey identifies a span's entitlement and path, whatever its expiry.
func pathKey(s *graph.PathSpan) string {
	return s.Action + "\x00" + s.Resource + "\x00" + s.Path.String() + "\x00" + strings.Join(s.Path.Roles, "\x00")
}

// Grant is one interval of a grant.
type Grant struct {
	graph.GrantKey
	graph.GrantSpan
}

// Parts is the map's parts (graph.Chains and the others) that a question needs, as known at its
// known-at: every part that could make a path the question is about, and maybe more.
type Parts struct {
	Status map[string][]graph.StatusSpan // by principal
	Chains map[string][]graph.ChainSpan  // by principal
	Grants map[string][]Grant            // by subject
	Tails  map[string][]graph.TailSpan   // by role
}

// NewParts returns empty parts.
func NewParts() *Parts {
	return &Parts{Status: map[string][]graph.StatusSpan{}, Chains: map[string][]graph.ChainSpan{},
		Grants: map[string][]Grant{}, Tails: map[string][]graph.TailSpan{}}
}

// Principal joins the parts into principal p's spans: its status, and the paths whose chain,
// grant and tail all hold, over the stretches they all hold, keeping only the entitlements keep
// accepts (nil: all). Stretches of one path and expiry that touch are one.
func (pt *Parts) Principal(p string, keep func(action, resource string) bool) Principal {
	out := Principal{Name: p}
	out.Status = pt.Status[p]
	chains := append([]graph.ChainSpan{{From: minTime, To: graph.Forever}}, pt.Chains[p]...)
	var spans []graph.PathSpan
	for _, c := range chains {
		subject := p
		if n := len(c.Groups); n > 0 {
			subject = c.Groups[n-1]
		}
		groups := c.Groups
		if groups == nil {
			groups = []string{}
		}
		for _, gr := range pt.Grants[subject] {
			lo, hi := max(c.From, gr.From), min(c.To, gr.To)
			if lo >= hi {
				continue
			}
			ref := access.GrantRef{Subject: gr.Subject, Role: gr.Role, Action: gr.Action, Resource: gr.Resource}
			if gr.Expires != 0 {
				x := event.FromMicros(gr.Expires)
				ref.ExpiresAt = &x
			}
			if gr.Role == "" {
				if keep == nil || keep(gr.Action, gr.Resource) {
					spans = append(spans, graph.PathSpan{From: lo, To: hi, Action: gr.Action, Resource: gr.Resource,
						Path: access.Path{Groups: groups, Grant: ref, Roles: []string{}, Permission: gr.Action}})
				}
				continue
			}
			for _, t := range pt.Tails[gr.Role] {
				l, h := max(lo, t.From), min(hi, t.To)
				if l >= h || keep != nil && !keep(t.Permission, gr.Resource) {
					continue
				}
				spans = append(spans, graph.PathSpan{From: l, To: h, Action: t.Permission, Resource: gr.Resource,
					Path: access.Path{Groups: groups, Grant: ref, Roles: t.Roles, Permission: t.Permission}})
			}
		}
	}
	// Merge the stretches of one path and expiry that touch.
	type keyed struct {
		key  string
		span graph.PathSpan
	}
	ks := make([]keyed, len(spans))
	for i := range spans {
		k := pathKey(&spans[i])
		if x := spans[i].Path.Grant.ExpiresAt; x != nil {
			k += "\x00" + x.String()
		}
		ks[i] = keyed{k, spans[i]}
	}
	slices.SortFunc(ks, func(a, b keyed) int { return cmp.Or(cmp.Compare(a.key, b.key), cmp.Compare(a.span.From, b.span.From)) })
	for i := range ks {
		if n := len(out.Paths); n > 0 && ks[i-1].key == ks[i].key && out.Paths[n-1].To >= ks[i].span.From {
			out.Paths[n-1].To = max(out.Paths[n-1].To, ks[i].span.To)
			continue
		}
		out.Paths = append(out.Paths, ks[i].span)
	}
	return out
}

// minTime is the From of what holds from the start of time.
const minTime = -1 << 63
