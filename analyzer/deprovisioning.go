package analyzer

// access-after-deprovisioning (DESIGN.md §5): a disabled or deleted principal that still holds
// grants, or whose decisions continue.
//
// A principal's leaving is a stretch: a maximal run of its status spans that are not active
// (disabled, deleted, or the one after the other), from the first disablement or deletion until
// it is enabled or re-created (or for ever). Per stretch the rule finds:
//
//   - still-holds (high): the principal is disabled at Now and still holds grants or
//     memberships (DESIGN §1: disabling keeps them, deleting ends them). Open while it holds.
//   - time-to-revoke (medium): every grant and membership it held during the stretch has ended,
//     but the last ended more than Config.AccessAfterDeprovisioning.RevokeWithin (24h) after the stretch began. Recorded resolved
//     at the moment the last one ended. still-holds and time-to-revoke are one condition (the
//     leaver kept access) at two moments, so they share one key: the finding opened while the
//     access was held is resolved at the moment it was revoked, rather than a second finding
//     appearing. A stretch that ends (enabled again, re-created) with the access still held is a
//     leave of absence, not a leaver: no time-to-revoke.
//   - decisions-after (critical): allowed decisions by the principal within the stretch (before
//     Now). Each stretch is one finding; it stays open even once the stretch has ended: a
//     leaver's request that was let through is an incident for a person to look at, which no
//     later change of the map makes good.

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/whocould/whocould/access"
	"github.com/whocould/whocould/event"
	"github.com/whocould/whocould/finding"
	"github.com/whocould/whocould/graph"
	"github.com/whocould/whocould/store"
)

// revokeWithin is the time-to-revoke threshold (access_after_deprovisioning.revoke_within).
func revokeWithin(in *Input) time.Duration {
	return in.Config.AccessAfterDeprovisioning.RevokeWithin.D()
}

// leaverStretch is a maximal run of a principal's non-active status spans: [from, to), to is
// graph.Forever while it lasts; spans are its status spans.
type leaverStretch struct {
	from, to int64
	spans    []graph.StatusSpan
}

// statusAt is the stretch's status at t (inside it).
func (s *leaverStretch) statusAt(t int64) string {
	for _, sp := range s.spans {
		if sp.From <= t && t < sp.To {
			return sp.Status
		}
	}
	return access.StatusActive
}

// leaverStretches groups status spans (in time order) into the stretches in which the principal
// was not active.
func leaverStretches(spans []graph.StatusSpan) []leaverStretch {
	var out []leaverStretch
	for _, sp := range spans {
		if sp.Status != access.StatusDisabled && sp.Status != access.StatusDeleted {
			continue
		}
		if n := len(out); n > 0 && out[n-1].to == sp.From {
			out[n-1].to = sp.To
			out[n-1].spans = append(out[n-1].spans, sp)
			continue
		}
		out = append(out, leaverStretch{from: sp.From, to: sp.To, spans: []graph.StatusSpan{sp}})
	}
	return out
}

// heldRelation is a membership of a principal (A the group, B the principal) or a grant to it
// (A the principal), with its spans; a span renewed with a new expiry runs on in one span.
type heldRelation struct {
	graph.RelationSpans
}

// name is the relation as evidence names it.
func (h *heldRelation) name() string {
	switch h.Kind {
	case graph.Membership:
		return fmt.Sprintf("membership of %s in %s", h.B, h.A)
	case graph.RoleGrant:
		return access.GrantRef{Subject: h.A, Role: h.B, Resource: h.C}.String()
	}
	return access.GrantRef{Subject: h.A, Action: h.B, Resource: h.C}.String()
}

// eventKey is the relationEvents key of the relation's add and remove events.
func (h *heldRelation) eventKey() string {
	switch h.Kind {
	case graph.Membership:
		return "m\x00" + h.A + "\x00" + h.B
	case graph.RoleGrant:
		return "g\x00" + h.A + "\x00" + h.B + "\x00\x00" + h.C
	}
	return "g\x00" + h.A + "\x00\x00" + h.B + "\x00" + h.C
}

// mergeRenewed joins the spans of a relation that touch (an add that replaced the expiry ends
// one span where the next begins).
func mergeRenewed(spans []graph.GrantSpan) []graph.GrantSpan {
	out := make([]graph.GrantSpan, 0, len(spans))
	for _, s := range spans {
		if n := len(out); n > 0 && out[n-1].To == s.From {
			out[n-1].To, out[n-1].Expires, out[n-1].End = s.To, s.Expires, s.End
			continue
		}
		out = append(out, s)
	}
	return out
}

// relationEvents indexes change events by what they are about, in event-time order, to name the
// event behind an interval's start or end.
type relationEvents map[string][]*event.Record

// indexRelationEvents indexes the events about the principals in who: their status events, the
// memberships and grants of which they are the member or subject, and every group and role
// deletion.
func indexRelationEvents(evs []event.Record, who map[string][]leaverStretch) relationEvents {
	idx := relationEvents{}
	for i := range evs {
		r := &evs[i]
		d := &r.Data
		var k string
		switch r.Type {
		case event.PrincipalCreated, event.PrincipalDisabled, event.PrincipalEnabled, event.PrincipalDeleted:
			if _, ok := who[d.Principal]; ok {
				k = "p\x00" + d.Principal
			}
		case event.MembershipAdded, event.MembershipRemoved:
			if _, ok := who[d.Member]; ok {
				k = "m\x00" + d.Group + "\x00" + d.Member
			}
		case event.GrantAdded, event.GrantRemoved:
			if _, ok := who[d.Subject]; ok {
				k = "g\x00" + d.Subject + "\x00" + d.Role + "\x00" + d.Action + "\x00" + d.Resource
			}
		case event.GroupDeleted:
			k = "G\x00" + d.Group
		case event.RoleDeleted:
			k = "R\x00" + d.Role
		}
		if k != "" {
			idx[k] = append(idx[k], r)
		}
	}
	return idx
}

// at is the last event under key of one of types at t (exact) or, when latest is set, at or
// before t; nil when there is none.
func (idx relationEvents) at(key string, t int64, latest bool, types ...event.Type) *event.Record {
	rs := idx[key]
	for i := len(rs) - 1; i >= 0; i-- {
		r := rs[i]
		rt := event.Micros(r.Time)
		if rt > t || !slices.Contains(types, r.Type) {
			continue
		}
		if rt == t || latest {
			return r
		}
		return nil
	}
	return nil
}

// added is the event that started span s of h.
func (idx relationEvents) added(h *heldRelation, s graph.GrantSpan) *event.Record {
	typ := event.GrantAdded
	if h.Kind == graph.Membership {
		typ = event.MembershipAdded
	}
	return idx.at(h.eventKey(), s.From, true, typ)
}

// ended is the event that ended span s of h (nil for an expiry, or when none is found).
func (idx relationEvents) ended(h *heldRelation, s graph.GrantSpan) *event.Record {
	switch s.End {
	case graph.EndRemoved:
		typ := event.GrantRemoved
		if h.Kind == graph.Membership {
			typ = event.MembershipRemoved
		}
		return idx.at(h.eventKey(), s.To, false, typ)
	case graph.EndDeleted: // the principal's deletion, or its group's or the granted role's
		principal, other := h.A, "R\x00"+h.B
		if h.Kind == graph.Membership {
			principal, other = h.B, "G\x00"+h.A
		}
		if r := idx.at("p\x00"+principal, s.To, false, event.PrincipalDeleted); r != nil {
			return r
		}
		return idx.at(other, s.To, false, event.GroupDeleted, event.RoleDeleted)
	}
	return nil
}

// endWord says how a span ended.
func endWord(e graph.End) string {
	switch e {
	case graph.EndRemoved:
		return "removed"
	case graph.EndExpired:
		return "expired"
	case graph.EndDeleted:
		return "ended by a deletion"
	}
	return "ended"
}

// checkAccessAfterDeprovisioning is the rule: see the top of the file.
func checkAccessAfterDeprovisioning(ctx context.Context, in *Input) ([]finding.Finding, error) {
	g := in.Model.Graph
	now := event.Micros(in.Now)
	// The leavers: every principal that was ever disabled or deleted before Now.
	leavers := map[string][]leaverStretch{}
	for _, p := range g.Principals() {
		var ss []leaverStretch
		for _, s := range leaverStretches(g.StatusSpans(p, nil)) {
			if s.from <= now {
				ss = append(ss, s)
			}
		}
		if len(ss) > 0 {
			leavers[p] = ss
		}
	}
	if len(leavers) == 0 {
		return nil, nil
	}
	held := map[string][]*heldRelation{}
	g.Relations(nil, func(rs graph.RelationSpans) {
		p := rs.A
		if rs.Kind == graph.Membership {
			p = rs.B
		}
		if _, ok := leavers[p]; ok {
			rs.Spans = mergeRenewed(rs.Spans)
			held[p] = append(held[p], &heldRelation{rs})
		}
	}, graph.Membership, graph.RoleGrant, graph.ActionGrant)
	idx := indexRelationEvents(in.Model.Events, leavers)

	names := make([]string, 0, len(leavers))
	for p := range leavers {
		names = append(names, p)
	}
	slices.Sort(names)
	var out []finding.Finding
	for _, p := range names {
		for _, s := range leavers[p] {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			if f, ok := leaverFinding(in, idx, p, s, held[p]); ok {
				out = append(out, f)
			}
		}
	}
	after, err := decisionsAfter(ctx, in, idx, names, leavers)
	if err != nil {
		return nil, err
	}
	return append(out, after...), nil
}

// leftWord is how stretch s began: "disabled" or "deleted".
func (s *leaverStretch) leftWord() string { return s.spans[0].Status }

// leaving is the evidence of the event that began stretch s of principal p.
func leaving(idx relationEvents, p string, s leaverStretch) finding.Evidence {
	typ := event.PrincipalDisabled
	if s.leftWord() == access.StatusDeleted {
		typ = event.PrincipalDeleted
	}
	if r := idx.at("p\x00"+p, s.from, false, typ); r != nil {
		return changeEvidence(r)
	}
	at := event.FromMicros(s.from)
	return finding.Evidence{Kind: "interval", Text: fmt.Sprintf("%s has been %s since %s", p, s.leftWord(), stamp(at)),
		Time: finding.Time(at), Until: spanUntil(s.to)}
}

// leaverFinding judges the access principal p kept through stretch s: still-holds or
// time-to-revoke, or nothing.
func leaverFinding(in *Input, idx relationEvents, p string, s leaverStretch, rels []*heldRelation) (finding.Finding, bool) {
	now := event.Micros(in.Now)
	current := s.from <= now && now < s.to
	type heldSpan struct {
		rel  *heldRelation
		span graph.GrantSpan
	}
	var during []heldSpan // the spans held at some time of the stretch (up to Now)
	end := min(s.to, now+1)
	for _, h := range rels {
		for _, sp := range h.Spans {
			if sp.From < end && s.from < sp.To {
				during = append(during, heldSpan{h, sp})
			}
		}
	}
	if len(during) == 0 {
		return finding.Finding{}, false
	}
	slices.SortFunc(during, func(a, b heldSpan) int {
		return cmp.Or(cmp.Compare(a.span.From, b.span.From), cmp.Compare(a.rel.name(), b.rel.name()))
	})
	count := func(hs []heldSpan) (grants, memberships int) {
		seen := map[*heldRelation]bool{}
		for _, h := range hs {
			if seen[h.rel] {
				continue // removed and added again within the stretch
			}
			seen[h.rel] = true
			if h.rel.Kind == graph.Membership {
				memberships++
			} else {
				grants++
			}
		}
		return grants, memberships
	}
	disabledAt := event.FromMicros(s.from)
	key := fmt.Sprintf("%q leaving %s", p, stamp(disabledAt))
	leaveEv := leaving(idx, p, s)

	if current && s.statusAt(now) == access.StatusDisabled {
		var still []heldSpan
		for _, h := range during {
			if h.span.From <= now && now < h.span.To {
				still = append(still, h)
			}
		}
		if len(still) > 0 {
			grants, memberships := count(still)
			days := int((now - s.from) / int64(24*time.Hour/time.Microsecond))
			f := in.New(finding.AccessAfterDeprovisioning, "still-holds", key, finding.High)
			f.Principal, f.Since = p, disabledAt
			later := "less than a day later"
			if days > 0 {
				later = plural(days, "day", "days") + " later"
			}
			f.Summary = fmt.Sprintf("%s was %s at %s but still holds %s, %s.", p, s.leftWord(), stamp(disabledAt),
				holdingsText(grants, memberships), later)
			f.Details = map[string]any{"disabled_at": stamp(disabledAt), "grants": grants, "memberships": memberships,
				"days_since_disabled": days}
			f.Evidence = append(f.Evidence, leaveEv)
			for _, h := range still {
				e := finding.Evidence{Kind: "event", Time: finding.Time(event.FromMicros(h.span.From)), Until: spanUntil(h.span.To)}
				text := fmt.Sprintf("%s held since %s", h.rel.name(), stamp(event.FromMicros(h.span.From)))
				if r := idx.added(h.rel, h.span); r != nil {
					e.Event = eventRef(r)
					text += fmt.Sprintf(" (added by event %s from %s)", r.ID, r.Source)
				}
				if h.span.Expires != 0 {
					text += ", expires " + stamp(event.FromMicros(h.span.Expires))
				}
				e.Text = text + ", still held at " + stamp(in.Now)
				f.Evidence = append(f.Evidence, e)
			}
			return f, true
		}
	}
	// Every span held in the stretch has ended by now; one that ran on past the stretch's end
	// (enabled again with its access) was never revoked.
	revoked := int64(math.MinInt64)
	for _, h := range during {
		if h.span.To >= s.to || h.span.To > now {
			return finding.Finding{}, false
		}
		revoked = max(revoked, h.span.To)
	}
	took := time.Duration(revoked-s.from) * time.Microsecond
	if took <= revokeWithin(in) {
		return finding.Finding{}, false
	}
	grants, memberships := count(during)
	revokedAt := event.FromMicros(revoked)
	hours := math.Round(took.Hours()*10) / 10
	word := s.leftWord()
	f := in.New(finding.AccessAfterDeprovisioning, "time-to-revoke", key, finding.Medium)
	f.Principal, f.Since, f.Ended = p, disabledAt, finding.Time(revokedAt)
	f.Summary = fmt.Sprintf("%s was %s at %s but kept %s until %s (%s hours later, more than the %s hours allowed).", p, word,
		stamp(disabledAt), holdingsText(grants, memberships), stamp(revokedAt), trimFloat(hours), trimFloat(revokeWithin(in).Hours()))
	f.Details = map[string]any{"disabled_at": stamp(disabledAt), "revoked_at": stamp(revokedAt), "hours_to_revoke": hours,
		"grants": grants, "memberships": memberships}
	f.Evidence = append(f.Evidence, leaveEv)
	for _, h := range during {
		from, to := event.FromMicros(h.span.From), event.FromMicros(h.span.To)
		e := finding.Evidence{Kind: "interval", Time: finding.Time(from), Until: finding.Time(to)}
		text := fmt.Sprintf("%s held from %s until %s (%s", h.rel.name(), stamp(from), stamp(to), endWord(h.span.End))
		if r := idx.ended(h.rel, h.span); r != nil {
			e.Event = eventRef(r)
			text += fmt.Sprintf(" by event %s from %s", r.ID, r.Source)
		} else if r := idx.added(h.rel, h.span); r != nil {
			e.Event = eventRef(r)
		}
		e.Text = text + ")"
		f.Evidence = append(f.Evidence, e)
	}
	return f, true
}

// holdingsText counts grants and memberships in words: "2 grants and 1 group membership".
func holdingsText(grants, memberships int) string {
	var parts []string
	if grants > 0 {
		parts = append(parts, plural(grants, "grant", "grants"))
	}
	if memberships > 0 {
		parts = append(parts, plural(memberships, "group membership", "group memberships"))
	}
	return strings.Join(parts, " and ")
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

// trimFloat writes f without a trailing ".0".
func trimFloat(f float64) string { return strings.TrimSuffix(fmt.Sprintf("%.1f", f), ".0") }

// decisionsAfter finds the allowed decisions of each leaver within each of its stretches
// (before Now): one read of the leavers' allowed decisions (principals, effect and time pushed
// down), each counted in the stretch that holds it. Unlike shadow-access, it does not settle
// keys from Usage: the decisions it reads are the ones it reports, and a tenant-wide Usage
// costs more than reading a few leavers' decisions. names are the leavers, sorted.
func decisionsAfter(ctx context.Context, in *Input, idx relationEvents, names []string, leavers map[string][]leaverStretch) ([]finding.Finding, error) {
	now := event.Micros(in.Now)
	type stretch struct {
		s     leaverStretch
		to    int64
		tally *decisionTally
	}
	stretches := map[string][]*stretch{} // each leaver's, in time order (leaverStretches')
	from, to := int64(math.MaxInt64), int64(math.MinInt64)
	for p, ss := range leavers {
		for _, s := range ss {
			if end := min(s.to, now); s.from < end {
				stretches[p] = append(stretches[p], &stretch{s, end, &decisionTally{}})
				from, to = min(from, s.from), max(to, end)
			}
		}
	}
	names = slices.DeleteFunc(slices.Clone(names), func(p string) bool { return len(stretches[p]) == 0 })
	if len(names) == 0 {
		return nil, nil
	}
	q := store.DecisionQuery{Tenant: in.Tenant, Principals: names, Effect: event.Allow, From: event.FromMicros(from), To: event.FromMicros(to)}
	err := in.Store.Decisions(ctx, q, func(d store.Decision) error {
		at, k := event.Micros(d.Time), useKey{d.Effect, d.Action, d.Resource}
		for _, s := range stretches[d.Principal] {
			if at < s.s.from || at >= s.to {
				continue
			}
			t := s.tally
			if t.n == 0 {
				t.first, t.firstKey = at, k
			}
			t.n++
			t.last, t.lastKey = at, k
			t.witness(d)
			break // the stretches do not overlap
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("decisions of %s from %s: %w", plural(len(names), "leaver", "leavers"), stamp(q.From), err)
	}
	var out []finding.Finding
	for _, p := range names {
		for _, s := range stretches[p] {
			if s.tally.n > 0 {
				out = append(out, decisionsAfterFinding(in, idx, p, s.s, s.tally))
			}
		}
	}
	return out, nil
}

// decisionsAfterFinding is the finding of tally t: the allowed decisions of principal p within
// stretch s.
func decisionsAfterFinding(in *Input, idx relationEvents, p string, s leaverStretch, t *decisionTally) finding.Finding {
	leftAt := event.FromMicros(s.from)
	status, since := s.spans[0].Status, s.spans[0].From
	for _, sp := range s.spans {
		if sp.From <= t.first && t.first < sp.To {
			status, since = sp.Status, sp.From
		}
	}
	first, last := event.FromMicros(t.first), event.FromMicros(t.last)
	f := in.New(finding.AccessAfterDeprovisioning, "decisions-after", fmt.Sprintf("%q decisions after %s", p, stamp(leftAt)), finding.Critical)
	f.Principal, f.Since = p, first
	away := fmt.Sprintf("after being %s at %s", status, stamp(event.FromMicros(since)))
	if t.n == 1 {
		f.Summary = fmt.Sprintf("%s was allowed a request %s: %s on %s at %s.", p, away, t.firstKey.action, t.firstKey.resource, stamp(first))
	} else {
		f.Summary = fmt.Sprintf("%s was allowed %d requests %s, from %s (%s on %s) to %s (%s on %s).", p, t.n, away,
			stamp(first), t.firstKey.action, t.firstKey.resource, stamp(last), t.lastKey.action, t.lastKey.resource)
	}
	f.Details = map[string]any{"decisions": t.n, "first": stamp(first), "last": stamp(last), "disabled_at": stamp(leftAt)}
	f.Evidence = append(append(f.Evidence, leaving(idx, p, s)), t.evidence...)
	if int(t.n) > len(t.evidence) {
		f.Evidence = append(f.Evidence, moreDecisions(int(t.n)-len(t.evidence)))
	}
	return f
}
