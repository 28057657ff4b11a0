package analyzer

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/whocould/whocould/access"
	"github.com/whocould/whocould/event"
	"github.com/whocould/whocould/finding"
	"github.com/whocould/whocould/graph"
	"github.com/whocould/whocould/store"
)

// The unused-grant rule (DESIGN.md §5): a grant nobody used in the window, and the unused part
// of a role grant that was used (right-sizing).
//
// Judged: every grant (of a role or of an action pattern, to a principal or a group) that holds
// at Now and has held without a break since Now−Window or earlier (an interval that began exactly
// at Now−Window is judged; a younger one is not: nobody has had a whole window to use it).
//
// Used: an allowed decision of principal P doing A on R at T used grant G when, at T, G was on one
// of P's paths (DESIGN.md §1) that allow A on R: P active, P reaching G's subject through
// memberships that all held at T (or being it), G covering R, and G's action pattern, or a
// permission of G's role (through its inclusions as they stood at T), matching A.
//
// How: the store aggregates the allowed decisions per (principal, action, resource) — for the
// window, and for all time (a running total the store keeps) — and, per principal that has any,
// the rule joins them with the parts of the map the graph exports (graph.Chains, the grants'
// intervals, graph.Tails, graph.StatusSpans): a use is credited to every judged grant that was on
// one of its paths. This is the join History would do, but without evaluating every instant of
// the window and without History's path limit (History follows only the first graph.MaxPaths
// paths per entitlement, PathsTruncated; the parts are complete up to graph.MaxChains
// membership chains per principal and inclusion chains per role, which only a structure built to
// multiply chains reaches).
//
// Admin rights are used by changes rather than decisions: a change event's actor used, at the
// change's time, each admin action its type asks of it (unauthorised_change.checks, the same
// checks the unauthorised-change rule judges by) on the check's resource — so the grant that
// let an IT admin add members counts as used by the memberships it added.
//
// Approximations, both on the side of "used": a use is an aggregate (first, last, count), so when
// a path held over only part of [first, last] the rule counts the grant as used if that part
// overlaps [first, last] (it never calls a grant unused that may have been used), and the last
// use through it is then known only to be no later than the end of the overlap (said so in the
// evidence, and last_used_exact false). The uses are read in two stretches, the window and
// before it, so that a use before the window is known up to its last time there, whether or not
// it was used since.

var ugAlways = []Span{{-1 << 62, graph.Forever}}

// ugLastUse is the latest instant of [first, last] (micros, inclusive) that ss covers, if any.
func ugLastUse(ss []Span, first, last int64) (int64, bool) {
	best, ok := int64(0), false
	for _, s := range ss {
		if s.From <= last && s.To > first {
			if t := min(last, s.To-1); !ok || t > best {
				best, ok = t, true
			}
		}
	}
	return best, ok
}

// ugUse is the last use credited to a grant: when (exactly, or at the latest), and by whom
// doing what where.
type ugUse struct {
	at    int64 // micros; 0: none
	exact bool
	u     *ugUseRange
}

func (x *ugUse) later(at int64, exact bool, u *ugUseRange) {
	if x.at == 0 || at > x.at || (at == x.at && exact && !x.exact) {
		*x = ugUse{at, exact, u}
	}
}

// text says when the use was, and what it was.
func (x *ugUse) text() string {
	when := "at"
	if !x.exact {
		when = "at or before" // within an aggregate's [first, last] whose last was not on the path
	}
	return fmt.Sprintf("last used %s %s: %s did %s on %s through it", when, stamp(event.FromMicros(x.at)), x.u.principal,
		x.u.action, x.u.resource)
}

// ugGrant is one grant the rule judges.
type ugGrant struct {
	subject, role, action, resource string
	// start is when the grant's current interval began (renewals and touching intervals merged).
	start int64
	spans []Span // every interval of the grant
	// In the window: whether it was used, the permission patterns (of role grants) and the
	// actions used, and the last use.
	used        bool
	usedPerms   map[string]bool
	usedActions map[string]bool
	lastIn      ugUse
	// Before the window: the last use, and per permission pattern (role grants).
	lastBefore ugUse
	lastPerm   map[string]int64
}

func (g *ugGrant) ref() access.GrantRef {
	return access.GrantRef{Subject: g.subject, Role: g.role, Action: g.action, Resource: g.resource}
}

// what is the grant's role or action pattern.
func (g *ugGrant) what() string { return cmp.Or(g.role, g.action) }

// ugRole is a role's permissions over time: pattern → when the role (itself or through its
// inclusions) held it.
type ugRole struct {
	perms    map[string][]Span
	patterns []string // sorted
}

// ugCand is a judged grant within a principal's reach, and when the principal reached it while
// active.
type ugCand struct {
	g     *ugGrant
	spans []Span
}

// ugRun is one run of the rule.
type ugRun struct {
	in         *Input
	g          *graph.Graph
	now, start int64 // Now and Now−Window, micros
	grants     []*ugGrant
	bySubject  map[string][]*ugGrant
	roles      map[string]*ugRole
	ancestors  map[string][]string // event.Ancestors, by resource
}

// checkUnusedGrant flags grants not used in the window, and role grants used only in part.
func checkUnusedGrant(ctx context.Context, in *Input) ([]finding.Finding, error) {
	window := in.Config.UnusedGrant.Window.D()
	r := &ugRun{in: in, g: in.Model.Graph, now: event.Micros(in.Now), start: event.Micros(in.Now.Add(-window)),
		bySubject: map[string][]*ugGrant{}, roles: map[string]*ugRole{}, ancestors: map[string][]string{}}
	r.judged()
	if len(r.grants) == 0 {
		return nil, nil
	}
	// The use in the window, and before it: a use before the window is known up to its last
	// time there, whether or not it was used since.
	var within, earlier []ugUseRange
	err := in.Store.Usage(ctx, store.DecisionQuery{Tenant: in.Tenant, From: in.Now.Add(-window), To: in.Now}, func(u store.Use) error {
		within = append(within, ugUseRange{u.Principal, u.Action, u.Resource, event.Micros(u.First), event.Micros(u.Last), true})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("unused grants: usage in the window: %w", err)
	}
	err = in.Store.Usage(ctx, store.DecisionQuery{Tenant: in.Tenant, To: in.Now.Add(-window)}, func(u store.Use) error {
		earlier = append(earlier, ugUseRange{u.Principal, u.Action, u.Resource, event.Micros(u.First), event.Micros(u.Last), false})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("unused grants: usage before the window: %w", err)
	}
	admin, err := adminUses(in, r.start, r.now)
	if err != nil {
		return nil, fmt.Errorf("unused grants: %w", err)
	}
	if err := r.attributeAll(ctx, within, earlier, admin); err != nil {
		return nil, err
	}
	return r.findings(ctx)
}

// ugUseRange is the allowed use of one (principal, action, resource) over a stretch: at first,
// at last, and perhaps in between; in the window, or before it.
type ugUseRange struct {
	principal, action, resource string
	first, last                 int64
	inWindow                    bool
}

func ugByPrincipal(a, b ugUseRange) int { return cmp.Compare(a.principal, b.principal) }

// attributeAll credits the uses of runs, one principal at a time: each run is in principal
// order, and a principal's uses are its stretch of each run, in the order of the runs. The
// credits point into the runs.
func (r *ugRun) attributeAll(ctx context.Context, runs ...[]ugUseRange) error {
	parts := make([][]ugUseRange, len(runs))
	for n := 0; ; n++ {
		if n%64 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		p, found := "", false
		for _, run := range runs {
			if len(run) > 0 && (!found || run[0].principal < p) {
				p, found = run[0].principal, true
			}
		}
		if !found {
			return nil
		}
		for i, run := range runs {
			j := 0
			for j < len(run) && run[j].principal == p {
				j++
			}
			parts[i], runs[i] = run[:j], run[j:]
		}
		r.attribute(p, parts)
	}
}

// judged collects the grants the rule judges.
func (r *ugRun) judged() {
	r.g.Relations(nil, func(rs graph.RelationSpans) {
		spans := make([]Span, len(rs.Spans))
		for i, s := range rs.Spans {
			spans[i] = Span{s.From, s.To}
		}
		spans = mergeSpans(spans) // a renewal, or a remove and add at one instant, carries on
		i := slices.IndexFunc(spans, func(s Span) bool { return s.From <= r.now && r.now < s.To })
		if i < 0 || spans[i].From > r.start {
			return // not held at Now, or too young to judge
		}
		g := &ugGrant{subject: rs.A, resource: rs.C, start: spans[i].From, spans: spans}
		if rs.Kind == graph.RoleGrant {
			g.role = rs.B
		} else {
			g.action = rs.B
		}
		r.grants = append(r.grants, g)
		r.bySubject[g.subject] = append(r.bySubject[g.subject], g)
	}, graph.RoleGrant, graph.ActionGrant)
	slices.SortFunc(r.grants, func(a, b *ugGrant) int {
		return cmp.Or(cmp.Compare(a.subject, b.subject), cmp.Compare(a.role, b.role), cmp.Compare(a.action, b.action),
			cmp.Compare(a.resource, b.resource))
	})
}

// role is role's permissions over all time (cached).
func (r *ugRun) role(name string) *ugRole {
	if ro, ok := r.roles[name]; ok {
		return ro
	}
	ro := &ugRole{perms: map[string][]Span{}}
	for _, t := range r.g.Tails(name, nil) {
		ro.perms[t.Permission] = append(ro.perms[t.Permission], Span{t.From, t.To})
	}
	for p, ss := range ro.perms {
		ro.perms[p] = mergeSpans(ss)
		ro.patterns = append(ro.patterns, p)
	}
	slices.Sort(ro.patterns)
	r.roles[name] = ro
	return ro
}

// patternsAt are the permission patterns role holds at t.
func (ro *ugRole) patternsAt(t int64) []string {
	var out []string
	for _, p := range ro.patterns {
		if slices.ContainsFunc(ro.perms[p], func(s Span) bool { return s.From <= t && t < s.To }) {
			out = append(out, p)
		}
	}
	return out
}

// attribute credits principal's uses, in the window and before it, to the judged grants that
// were on its paths when it used them.
func (r *ugRun) attribute(principal string, parts [][]ugUseRange) {
	active := activeSpans(r.g.StatusSpans(principal, nil))
	if len(active) == 0 {
		return
	}
	// When the principal reached each subject: itself always, each group while a chain of
	// memberships to it held.
	reach := map[string][]Span{principal: ugAlways}
	for _, c := range r.g.Chains(principal, nil) {
		s := c.Groups[len(c.Groups)-1]
		if len(r.bySubject[s]) > 0 {
			reach[s] = append(reach[s], Span{c.From, c.To})
		}
	}
	cands := map[string][]ugCand{} // by the grant's resource
	for s, ss := range reach {
		on := IntersectSpans(mergeSpans(ss), active)
		for _, g := range r.bySubject[s] {
			if both := IntersectSpans(on, g.spans); len(both) > 0 {
				cands[g.resource] = append(cands[g.resource], ugCand{g, both})
			}
		}
	}
	if len(cands) == 0 {
		return
	}
	for _, uses := range parts {
		for i := range uses {
			r.attributeUse(cands, &uses[i])
		}
	}
}

// attributeUse credits use u to the candidates whose grant's resource covers its resource.
func (r *ugRun) attributeUse(cands map[string][]ugCand, u *ugUseRange) {
	anc, ok := r.ancestors[u.resource]
	if !ok {
		anc = event.Ancestors(u.resource)
		r.ancestors[u.resource] = anc
	}
	for _, res := range anc {
		for _, c := range cands[res] {
			r.credit(c, u)
		}
	}
}

// credit credits use u to c's grant, if c's path allowed it.
func (r *ugRun) credit(c ugCand, u *ugUseRange) {
	g := c.g
	mark := func(perm string, at int64) {
		exact := at == u.last // a use is known at its stretch's ends
		if u.inWindow {
			g.used = true
			g.lastIn.later(at, exact, u)
			if g.usedActions == nil {
				g.usedActions, g.usedPerms = map[string]bool{}, map[string]bool{}
			}
			g.usedActions[u.action] = true
			if perm != "" {
				g.usedPerms[perm] = true
			}
			return
		}
		g.lastBefore.later(at, exact, u)
		if perm != "" {
			if g.lastPerm == nil {
				g.lastPerm = map[string]int64{}
			}
			if last, ok := g.lastPerm[perm]; !ok || at > last {
				g.lastPerm[perm] = at
			}
		}
	}
	if g.role == "" {
		if event.Matches(g.action, u.action) {
			if at, ok := ugLastUse(c.spans, u.first, u.last); ok {
				mark("", at)
			}
		}
		return
	}
	ro := r.role(g.role)
	for _, p := range ro.patterns {
		if !event.Matches(p, u.action) {
			continue
		}
		if at, ok := ugLastUse(IntersectSpans(c.spans, ro.perms[p]), u.first, u.last); ok {
			mark(p, at)
		}
	}
}

// ugRoleSize is a role defined at Now and its permission patterns then.
type ugRoleSize struct {
	name     string
	patterns []string
}

// findings turns the judged grants into findings.
func (r *ugRun) findings(ctx context.Context) ([]finding.Finding, error) {
	in := r.in
	window := in.Config.UnusedGrant.Window
	days := window.D().Hours() / 24
	adds := r.grantAdds()
	reach := ugReach(r.g, in.Now)
	var sizes []ugRoleSize // every role defined at Now, smallest first; made when first needed
	var out []finding.Finding
	for i, g := range r.grants {
		if i%256 == 0 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		kind := "unused"
		var perms, unused []string
		if g.used {
			if g.role == "" {
				continue // an action grant is used or not
			}
			perms = r.role(g.role).patternsAt(r.now)
			for _, p := range perms {
				if !g.usedPerms[p] {
					unused = append(unused, p)
				}
			}
			if len(unused) == 0 {
				continue
			}
			kind = "right-size"
		}
		sev := finding.Low
		if kind == "unused" && (slices.Contains(in.Config.Privileged.Roles, g.role) ||
			slices.ContainsFunc(in.Config.Privileged.Resources, func(p string) bool { return event.Covers(p, g.resource) })) {
			sev = finding.Medium
		}
		grantedAt := event.FromMicros(g.start)
		f := in.New(finding.UnusedGrant, kind, kind+"\x00"+ugKey(g), sev)
		if event.KindOf(g.subject) == event.KindPrincipal {
			f.Principal = g.subject
		}
		f.Action, f.Resource = g.action, g.resource
		reached := reach.count(g.subject)
		f.Details = map[string]any{"window_days": days, "granted_at": stamp(grantedAt), "principals": reached}
		addEv := adds[ugAddKey(g.subject, g.role, g.action, g.resource, g.start)]
		evidence := func() {
			if addEv != nil {
				f.Evidence = append(f.Evidence, finding.Evidence{Kind: "event", Time: finding.Time(addEv.Time),
					Text: fmt.Sprintf("%s at %s gave %s %s on %s (event %s/%s)", addEv.Type, stamp(addEv.Time), g.subject,
						g.what(), g.resource, addEv.Source, addEv.ID),
					Event: eventRef(addEv)})
			} else {
				f.Evidence = append(f.Evidence, finding.Evidence{Kind: "interval", Time: finding.Time(grantedAt),
					Text: fmt.Sprintf("%s has held without a break since %s", g.ref().String(), stamp(grantedAt))})
			}
			if event.KindOf(g.subject) != event.KindPrincipal {
				f.Evidence = append(f.Evidence, finding.Evidence{Kind: "measure",
					Text: fmt.Sprintf("%s reaches %d active principal(s) now, directly or through nested groups", g.subject, reached)})
			}
		}
		if kind == "unused" {
			f.Since = grantedAt
			last := "it has not been used since it was granted on " + stamp(grantedAt)
			if u := g.lastBefore; u.at != 0 {
				lu := event.FromMicros(u.at)
				f.Since = event.FromMicros(max(g.start, u.at))
				f.Details["last_used"], f.Details["last_used_exact"] = stamp(lu), u.exact
				last = "last used " + stamp(lu)
				if !u.exact {
					last = "last used no later than " + stamp(lu)
				}
			}
			f.Summary = fmt.Sprintf("%s was not used by any allowed decision in the last %s (%s).", g.ref().String(), window, last)
			evidence()
			f.Evidence = append(f.Evidence, finding.Evidence{Kind: "interval", Time: finding.Time(event.FromMicros(r.start)),
				Until: finding.Time(in.Now),
				Text: fmt.Sprintf("no allowed decision between %s and %s went through %s", stamp(event.FromMicros(r.start)),
					stamp(in.Now), g.ref().String())})
			if u := g.lastBefore; u.at != 0 {
				f.Evidence = append(f.Evidence, finding.Evidence{Kind: "decision", Time: finding.Time(event.FromMicros(u.at)), Text: u.text()})
			}
			out = append(out, f)
			continue
		}
		used := ugSorted(g.usedPerms)
		actions := ugSorted(g.usedActions)
		since := g.start
		for _, p := range unused {
			since = max(since, g.lastPerm[p])
		}
		f.Since = event.FromMicros(since)
		f.Details["used_permissions"] = used
		f.Details["unused_permissions"] = unused
		f.Details["used_actions"] = actions
		f.Details["last_used"], f.Details["last_used_exact"] = stamp(event.FromMicros(g.lastIn.at)), g.lastIn.exact
		if sizes == nil {
			sizes = r.roleSizes()
		}
		suggested := ""
		for _, s := range sizes {
			if len(s.patterns) >= len(perms) {
				break
			}
			if s.name != g.role && ugCoversAll(s.patterns, actions) {
				suggested = s.name
				break
			}
		}
		tail := ""
		if suggested != "" {
			f.Details["suggested_role"] = suggested
			tail = fmt.Sprintf("; %s (%d permission(s)) would cover what was used", suggested,
				len(sizes[slices.IndexFunc(sizes, func(s ugRoleSize) bool { return s.name == suggested })].patterns))
		}
		f.Summary = fmt.Sprintf("%s used only %d of the role's %d permissions in the last %s (%s)%s.", g.ref().String(),
			len(perms)-len(unused), len(perms), window, strings.Join(used, ", "), tail)
		evidence()
		f.Evidence = append(f.Evidence, finding.Evidence{Kind: "measure", Time: finding.Time(event.FromMicros(r.start)),
			Until: finding.Time(in.Now),
			Text: fmt.Sprintf("between %s and %s, allowed decisions used %s of %s (actions %s); never %s",
				stamp(event.FromMicros(r.start)), stamp(in.Now), strings.Join(used, ", "), g.role, strings.Join(actions, ", "),
				strings.Join(unused, ", "))})
		if u := g.lastIn; u.at != 0 {
			f.Evidence = append(f.Evidence, finding.Evidence{Kind: "decision", Time: finding.Time(event.FromMicros(u.at)), Text: u.text()})
		}
		out = append(out, f)
	}
	return out, nil
}

// roleSizes lists every role defined at Now (holding a permission then), fewest permissions
// first, then by name.
func (r *ugRun) roleSizes() []ugRoleSize {
	names := map[string]bool{}
	r.g.Relations(nil, func(rs graph.RelationSpans) { names[rs.A] = true }, graph.Permission, graph.Inclusion)
	out := []ugRoleSize{}
	for n := range names {
		if ps := r.role(n).patternsAt(r.now); len(ps) > 0 {
			out = append(out, ugRoleSize{n, ps})
		}
	}
	slices.SortFunc(out, func(a, b ugRoleSize) int {
		return cmp.Or(cmp.Compare(len(a.patterns), len(b.patterns)), cmp.Compare(a.name, b.name))
	})
	return out
}

// ugCoversAll reports whether every action matches one of patterns.
func ugCoversAll(patterns, actions []string) bool {
	for _, a := range actions {
		if !slices.ContainsFunc(patterns, func(p string) bool { return event.Matches(p, a) }) {
			return false
		}
	}
	return true
}

// grantAdds indexes the model's grant.added events by grant and time.
func (r *ugRun) grantAdds() map[string]*event.Record {
	out := map[string]*event.Record{}
	evs := r.in.Model.Events
	for i := range evs {
		e := &evs[i]
		if e.Type != event.GrantAdded {
			continue
		}
		k := ugAddKey(e.Data.Subject, e.Data.Role, e.Data.Action, e.Data.Resource, event.Micros(e.Time))
		if _, dup := out[k]; !dup {
			out[k] = e
		}
	}
	return out
}

func ugAddKey(subject, role, action, resource string, at int64) string {
	return fmt.Sprintf("%s\x00%s\x00%s\x00%s\x00%d", subject, role, action, resource, at)
}

// ugKey identifies a grant within the rule: its subject, role or action, and resource.
func ugKey(g *ugGrant) string {
	what := "role=" + g.role
	if g.role == "" {
		what = "action=" + g.action
	}
	return g.subject + "\x00" + what + "\x00" + g.resource
}

func ugSorted(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// ugReached counts, per subject, the active principals a grant to it reaches at a time.
type ugReached struct {
	g       *graph.Graph
	at      int64
	members map[string][]string // group → members at the time
	active  map[string]bool
	counts  map[string]int
}

// ugReach prepares counting the principals grants reach at t.
func ugReach(g *graph.Graph, t time.Time) *ugReached {
	at := event.Micros(t)
	r := &ugReached{g: g, at: at, members: map[string][]string{}, active: map[string]bool{}, counts: map[string]int{}}
	g.Relations(nil, func(rs graph.RelationSpans) {
		if holdsAt(rs.Spans, at) {
			r.members[rs.A] = append(r.members[rs.A], rs.B)
		}
	}, graph.Membership)
	return r
}

func (r *ugReached) isActive(p string) bool {
	a, ok := r.active[p]
	if !ok {
		a = activeAt(r.g, p, r.at)
		r.active[p] = a
	}
	return a
}

// count is how many active principals subject is or has as members (through nested groups).
func (r *ugReached) count(subject string) int {
	if event.KindOf(subject) == event.KindPrincipal {
		if r.isActive(subject) {
			return 1
		}
		return 0
	}
	if n, ok := r.counts[subject]; ok {
		return n
	}
	seen := map[string]bool{subject: true}
	todo := []string{subject}
	n := 0
	for len(todo) > 0 {
		x := todo[len(todo)-1]
		todo = todo[:len(todo)-1]
		for _, m := range r.members[x] {
			if seen[m] {
				continue
			}
			seen[m] = true
			if event.KindOf(m) == event.KindPrincipal {
				if r.isActive(m) {
					n++
				}
			} else {
				todo = append(todo, m)
			}
		}
	}
	r.counts[subject] = n
	return n
}

// adminUses are the admin actions the change events' actors used (see the top of the file),
// before now; those from start on are in the window.
func adminUses(in *Input, start, now int64) ([]ugUseRange, error) {
	checks, err := adminChecks(in.Config)
	if err != nil {
		return nil, err
	}
	var out []ugUseRange
	for i := range in.Model.Events {
		ev := &in.Model.Events[i]
		t := event.Micros(ev.Time)
		if !ev.Type.IsChange() || ev.Data.Actor == "" || t >= now {
			continue
		}
		for _, c := range checks[ev.Type] {
			// adminChecks has checked the templates: expanding them cannot fail.
			action, ok1, _ := expand(c.Action, &ev.Data)
			resource, ok2, _ := expand(c.Resource, &ev.Data)
			if ok1 && ok2 {
				out = append(out, ugUseRange{ev.Data.Actor, action, resource, t, t, t >= start})
			}
		}
	}
	slices.SortStableFunc(out, ugByPrincipal) // as Usage gives its uses: see attributeAll
	return out, nil
}
