package analyzer

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/whocould/whocould/event"
	"github.com/whocould/whocould/finding"
	"github.com/whocould/whocould/graph"
)

// The kinds of drift finding.
const (
	DriftExtraGrant   = "extra-grant"
	DriftMissingGrant = "missing-grant"
	DriftChangedRole  = "changed-role"
)

// checkDrift compares the map at Now with the config's baseline (see Baseline; nothing without
// one, or when the baseline names another tenant):
//
//   - extra-grant (medium): a grant holding at Now that the baseline does not allow. Since is
//     the start of its current interval (renewals of its expiry continue it).
//   - missing-grant (medium): a grant of the baseline not holding at Now (a grant ending exactly
//     at Now does not hold). Since is when it last stopped holding, or the first event of the
//     history when it never held.
//   - changed-role (high for a privileged role, else medium): a baseline role whose permissions
//     or direct includes at Now differ from its baseline definition. Since is the change point
//     after the last stretch over which the definition equalled the baseline (the first change
//     point when it never did).
//
// Each finding is keyed by its kind and its grant or role, details drift_days (Now − Since, in
// days, one decimal) and the kind's fields, and evidence the events that made the drift.
func checkDrift(ctx context.Context, in *Input) ([]finding.Finding, error) {
	b := in.Config.baseline
	if b == nil || (b.Tenant != "" && b.Tenant != in.Tenant) {
		return nil, nil
	}
	if err := b.Validate(); err != nil {
		return nil, fmt.Errorf("baseline: %w", err)
	}
	d := &drift{in: in, b: b, now: event.Micros(in.Now), first: in.Now}
	if len(in.Model.Events) > 0 {
		d.first = in.Model.Events[0].Time.UTC()
	}
	// Every grant that ever held, in the order they first appeared.
	var grants []BaselineGrant
	spans := map[BaselineGrant][]graph.GrantSpan{}
	in.Model.Graph.Relations(nil, func(r graph.RelationSpans) {
		g := BaselineGrant{Subject: r.A, Resource: r.C}
		if r.Kind == graph.RoleGrant {
			g.Role = r.B
		} else {
			g.Action = r.B
		}
		grants = append(grants, g)
		spans[g] = r.Spans
	}, graph.RoleGrant, graph.ActionGrant)
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	listed := make(map[BaselineGrant]bool, len(b.Grants))
	for _, g := range b.Grants {
		listed[g] = true
	}
	// The allowed direct grants by subject ("*" for those of any subject).
	allowed := map[string][]BaselineGrant{}
	for _, a := range b.AllowedDirectGrants {
		allowed[a.Subject] = append(allowed[a.Subject], a)
	}
	for _, g := range grants {
		i, held := heldAt(spans[g], d.now)
		if !held || listed[g] {
			continue
		}
		allows := func(a BaselineGrant) bool { return a.allows(g) }
		if event.KindOf(g.Subject) == event.KindPrincipal &&
			(slices.ContainsFunc(allowed[g.Subject], allows) || slices.ContainsFunc(allowed["*"], allows)) {
			continue
		}
		d.extra(g, spans[g], i)
	}
	for _, g := range b.Grants {
		if _, held := heldAt(spans[g], d.now); !held {
			d.missing(g, spans[g])
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	d.roles()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	d.attachEvents()
	return d.out, nil
}

// drift is one run of the drift rule.
type drift struct {
	in    *Input
	b     *Baseline
	now   int64
	first time.Time // the first event of the history
	out   []finding.Finding
	// wants are the evidence each finding waits for from the event log.
	wants []eventWant
}

// eventWant asks for the events of key (see eventKey) whose time is in [from, to] (or, when at
// is set, one of those times) to be added to finding out[f], written by text.
type eventWant struct {
	f        int
	key      string
	from, to int64
	at       map[int64]bool
	text     func(r *event.Record) string
}

// heldAt is the index of the span of ss holding at t.
func heldAt(ss []graph.GrantSpan, t int64) (int, bool) {
	for i, s := range ss {
		if s.From <= t && t < s.To {
			return i, true
		}
	}
	return -1, false
}

func grantKey(g BaselineGrant) string {
	if g.Role != "" {
		return g.Subject + " role " + g.Role + " " + g.Resource
	}
	return g.Subject + " action " + g.Action + " " + g.Resource
}

// eventKey is what a change event is about, for the evidence index: "grant ..." (as grantKey),
// "role R" for a role's own events, "deleted X" for the deletion of X.
func eventKey(r *event.Record) []string {
	d := &r.Data
	switch r.Type {
	case event.GrantAdded, event.GrantRemoved:
		return []string{"grant " + grantKey(BaselineGrant{Subject: d.Subject, Role: d.Role, Action: d.Action, Resource: d.Resource})}
	case event.RolePermissionAdded, event.RolePermissionRemoved, event.RoleIncludeAdded, event.RoleIncludeRemoved:
		return []string{"role " + d.Role}
	case event.RoleDeleted:
		return []string{"role " + d.Role, "deleted " + d.Role}
	case event.PrincipalDeleted:
		return []string{"deleted " + d.Principal}
	case event.GroupDeleted:
		return []string{"deleted " + d.Group}
	}
	return nil
}

// newFinding starts a drift finding of kind about g (nil for a role) since since.
func (d *drift) newFinding(kind, key, severity string, g *BaselineGrant, since time.Time) *finding.Finding {
	f := d.in.New(finding.Drift, kind, kind+" "+key, severity)
	f.Since = since.UTC()
	days := math.Round(d.in.Now.Sub(since).Hours()/24*10) / 10
	f.Details = map[string]any{"drift_days": days}
	if g != nil {
		if event.KindOf(g.Subject) == event.KindPrincipal {
			f.Principal = g.Subject
		}
		f.Resource, f.Action = g.Resource, g.Action
		f.Details["subject"] = g.Subject
		f.Details["resource"] = g.Resource
		if g.Role != "" {
			f.Details["role"] = g.Role
		} else {
			f.Details["action"] = g.Action
		}
	}
	d.out = append(d.out, f)
	return &d.out[len(d.out)-1]
}

// signedOff is how the evidence names the baseline.
func (d *drift) signedOff() string {
	if so := d.b.SignedOff; so != nil {
		if so.At.IsZero() {
			return "the baseline signed off by " + so.By
		}
		return fmt.Sprintf("the baseline signed off by %s at %s", so.By, evidenceTime(so.At))
	}
	return "the baseline"
}

// extra records the extra grant g, holding at Now through ss[i].
func (d *drift) extra(g BaselineGrant, ss []graph.GrantSpan, i int) {
	start := i
	for start > 0 && ss[start-1].To == ss[start].From {
		start--
	}
	since := event.FromMicros(ss[start].From)
	f := d.newFinding(DriftExtraGrant, grantKey(g), finding.Medium, &g, since)
	why := "the baseline does not list it"
	if event.KindOf(g.Subject) == event.KindPrincipal {
		why = "neither the baseline's grants nor its allowed direct grants list this direct grant"
	}
	f.Summary = fmt.Sprintf("%s has held since %s but %s.", g, evidenceTime(since), why)
	if exp := ss[i].Expires; exp != 0 {
		f.Details["expires_at"] = evidenceTime(event.FromMicros(exp))
	}
	f.Evidence = append(f.Evidence, finding.Evidence{Kind: "baseline", Text: fmt.Sprintf("%s does not allow %s", d.signedOff(), g)})
	d.wants = append(d.wants, eventWant{f: len(d.out) - 1, key: "grant " + grantKey(g), from: ss[start].From, to: d.now,
		text: func(r *event.Record) string {
			return grantText(g, r.Data.ExpiresAt) + " added"
		}})
}

// missing records the baseline grant g, which does not hold at Now (ss: its spans).
func (d *drift) missing(g BaselineGrant, ss []graph.GrantSpan) {
	last := -1
	for i, s := range ss {
		if s.To <= d.now {
			last = i
		}
	}
	if last < 0 {
		f := d.newFinding(DriftMissingGrant, grantKey(g), finding.Medium, &g, d.first)
		f.Summary = fmt.Sprintf("%s, required by the baseline, has never held.", g)
		f.Details["ever_held"] = false
		f.Evidence = append(f.Evidence, finding.Evidence{Kind: "baseline", Time: finding.Time(d.first),
			Text: fmt.Sprintf("%s lists %s, which has not held at any time since the history began at %s", d.signedOff(), g, evidenceTime(d.first))})
		return
	}
	s := ss[last]
	end := event.FromMicros(s.To)
	f := d.newFinding(DriftMissingGrant, grantKey(g), finding.Medium, &g, end)
	f.Details["ever_held"] = true
	idx := len(d.out) - 1
	f.Evidence = append(f.Evidence, finding.Evidence{Kind: "baseline",
		Text: fmt.Sprintf("%s lists %s, which held from %s until %s", d.signedOff(), g, evidenceTime(event.FromMicros(s.From)), evidenceTime(end))})
	at := map[int64]bool{s.To: true}
	switch s.End {
	case graph.EndExpired:
		f.Details["ended_by"] = "expired"
		f.Summary = fmt.Sprintf("%s, required by the baseline, does not hold: it expired at %s.", g, evidenceTime(end))
		f.Evidence = append(f.Evidence, finding.Evidence{Kind: "interval", Time: finding.Time(event.FromMicros(s.From)), Until: finding.Time(end),
			Text: fmt.Sprintf("%s expired at %s", g, evidenceTime(end))})
		// The add that set the expiry: the last one before it ended.
		d.wants = append(d.wants, eventWant{f: idx, key: "grant " + grantKey(g), from: s.From, to: s.To - 1, text: func(r *event.Record) string {
			return grantText(g, r.Data.ExpiresAt) + " added"
		}})
	case graph.EndDeleted:
		f.Details["ended_by"] = "deleted"
		f.Summary = fmt.Sprintf("%s, required by the baseline, does not hold: it ended at %s when its subject or role was deleted.", g, evidenceTime(end))
		for _, who := range []string{g.Subject, g.Role} {
			if who != "" {
				d.wants = append(d.wants, eventWant{f: idx, key: "deleted " + who, at: at, text: func(r *event.Record) string {
					return fmt.Sprintf("%s deleted, ending %s", who, g)
				}})
			}
		}
	default:
		f.Details["ended_by"] = "removed"
		f.Summary = fmt.Sprintf("%s, required by the baseline, does not hold: it was removed at %s.", g, evidenceTime(end))
		d.wants = append(d.wants, eventWant{f: idx, key: "grant " + grantKey(g), at: at, text: func(r *event.Record) string {
			if r.Type == event.GrantRemoved {
				return g.String() + " removed"
			}
			return grantText(g, r.Data.ExpiresAt) + " added"
		}})
	}
}

// roleDef is a role's definition at one time.
type roleDef struct{ perms, includes []string }

func (r roleDef) equal(b BaselineRole) bool {
	return sameSet(r.perms, b.Permissions) && sameSet(r.includes, b.Includes)
}

// sameSet reports whether a and b hold the same strings (a sorted and unique).
func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for _, x := range b {
		if _, ok := slices.BinarySearch(a, x); !ok {
			return false
		}
	}
	return true
}

// minus is the strings of a not in b, sorted.
func minus(a, b []string) []string {
	out := []string{}
	for _, x := range a {
		if !slices.Contains(b, x) && !slices.Contains(out, x) {
			out = append(out, x)
		}
	}
	slices.Sort(out)
	return out
}

// roles records the baseline roles whose definition at Now differs from the baseline.
func (d *drift) roles() {
	if len(d.b.Roles) == 0 {
		return
	}
	rels := map[string][]graph.RelationSpans{}
	d.in.Model.Graph.Relations(nil, func(r graph.RelationSpans) {
		if _, ok := d.b.Roles[r.A]; ok {
			rels[r.A] = append(rels[r.A], r)
		}
	}, graph.Permission, graph.Inclusion)
	names := make([]string, 0, len(d.b.Roles))
	for r := range d.b.Roles {
		names = append(names, r)
	}
	slices.Sort(names)
	for _, role := range names {
		want := d.b.Roles[role]
		rs := rels[role]
		defAt := func(t int64) roleDef {
			def := roleDef{perms: []string{}, includes: []string{}}
			for _, r := range rs {
				if _, ok := heldAt(r.Spans, t); ok {
					if r.Kind == graph.Permission {
						def.perms = append(def.perms, r.B)
					} else {
						def.includes = append(def.includes, r.B)
					}
				}
			}
			slices.Sort(def.perms)
			slices.Sort(def.includes)
			def.perms, def.includes = slices.Compact(def.perms), slices.Compact(def.includes)
			return def
		}
		cur := defAt(d.now)
		if cur.equal(want) {
			continue
		}
		var points []int64
		for _, r := range rs {
			for _, s := range r.Spans {
				for _, p := range []int64{s.From, s.To} {
					if p <= d.now {
						points = append(points, p)
					}
				}
			}
		}
		slices.Sort(points)
		points = slices.Compact(points)
		since := d.first
		if len(points) > 0 {
			since = event.FromMicros(points[0])
			for j := len(points) - 2; j >= 0; j-- {
				if defAt(points[j]).equal(want) {
					since = event.FromMicros(points[j+1])
					break
				}
			}
		}
		severity := finding.Medium
		privileged := slices.Contains(d.in.Config.Privileged.Roles, role)
		if privileged {
			severity = finding.High
		}
		f := d.newFinding(DriftChangedRole, role, severity, nil, since)
		idx := len(d.out) - 1
		exists := len(cur.perms)+len(cur.includes) > 0
		addP, remP := minus(cur.perms, want.Permissions), minus(want.Permissions, cur.perms)
		addI, remI := minus(cur.includes, want.Includes), minus(want.Includes, cur.includes)
		for k, v := range map[string]any{"role": role, "exists": exists, "privileged": privileged,
			"added_permissions": addP, "removed_permissions": remP, "added_includes": addI, "removed_includes": remI} {
			f.Details[k] = v
		}
		if !exists {
			f.Summary = fmt.Sprintf("%s no longer exists as the baseline defines it: since %s it has held none of its permissions or includes.", role, evidenceTime(since))
		} else {
			var diffs []string
			for _, c := range []struct {
				what string
				xs   []string
			}{{"permissions added", addP}, {"permissions removed", remP}, {"includes added", addI}, {"includes removed", remI}} {
				if len(c.xs) > 0 {
					diffs = append(diffs, c.what+": "+strings.Join(c.xs, ", "))
				}
			}
			f.Summary = fmt.Sprintf("%s's definition has differed from the baseline since %s (%s).", role, evidenceTime(since), strings.Join(diffs, "; "))
		}
		f.Evidence = append(f.Evidence, finding.Evidence{Kind: "baseline",
			Text: fmt.Sprintf("%s defines %s with permissions [%s] and includes [%s]; at %s it has permissions [%s] and includes [%s]",
				d.signedOff(), role, strings.Join(want.Permissions, ", "), strings.Join(want.Includes, ", "), evidenceTime(d.in.Now),
				strings.Join(cur.perms, ", "), strings.Join(cur.includes, ", "))})
		for _, c := range []struct {
			xs   []string
			text string
		}{{addP, "permission %s added to %s: not in the baseline"}, {remP, "permission %s of the baseline missing from %s"},
			{addI, "include of %s added to %s: not in the baseline"}, {remI, "include of %s of the baseline missing from %s"}} {
			for _, x := range c.xs {
				f.Evidence = append(f.Evidence, finding.Evidence{Kind: "baseline", Text: fmt.Sprintf(c.text, x, role)})
			}
		}
		// The events at the change points since the drift began: the role's own, and the
		// deletions of roles it included.
		at := map[int64]bool{}
		for _, p := range points {
			if p >= event.Micros(since) {
				at[p] = true
			}
		}
		text := func(r *event.Record) string {
			dd := &r.Data
			switch r.Type {
			case event.RolePermissionAdded:
				return fmt.Sprintf("permission %s added to %s", dd.Action, dd.Role)
			case event.RolePermissionRemoved:
				return fmt.Sprintf("permission %s removed from %s", dd.Action, dd.Role)
			case event.RoleIncludeAdded:
				return fmt.Sprintf("%s made to include %s", dd.Role, dd.Includes)
			case event.RoleIncludeRemoved:
				return fmt.Sprintf("%s no longer includes %s", dd.Role, dd.Includes)
			}
			return dd.Role + " deleted"
		}
		d.wants = append(d.wants, eventWant{f: idx, key: "role " + role, at: at, text: text})
		var included []string
		for _, r := range rs {
			if r.Kind == graph.Inclusion && !slices.Contains(included, r.B) {
				included = append(included, r.B)
			}
		}
		for _, inc := range included {
			d.wants = append(d.wants, eventWant{f: idx, key: "deleted " + inc, at: at, text: func(r *event.Record) string {
				return fmt.Sprintf("%s deleted, ending its inclusion in %s", inc, role)
			}})
		}
	}
}

// attachEvents adds the events the findings wait for, in event-time order, in one pass over the
// model's events.
func (d *drift) attachEvents() {
	if len(d.wants) == 0 {
		return
	}
	byKey := map[string][]int{}
	for i, w := range d.wants {
		byKey[w.key] = append(byKey[w.key], i)
	}
	for i := range d.in.Model.Events {
		r := &d.in.Model.Events[i]
		for _, k := range eventKey(r) {
			for _, wi := range byKey[k] {
				w := &d.wants[wi]
				t := event.Micros(r.Time)
				if w.at != nil && !w.at[t] || w.at == nil && (t < w.from || t > w.to) {
					continue
				}
				f := &d.out[w.f]
				f.Evidence = append(f.Evidence, finding.Evidence{Kind: "event", Time: finding.Time(r.Time), Text: eventText(r, w.text(r)),
					Event: eventRef(r)})
			}
		}
	}
}

// eventText is what an event did, written as evidence: "<time>: <what> by <actor> with approval
// <request> (<type> <source>/<id>)".
func eventText(r *event.Record, what string) string {
	s := evidenceTime(r.Time) + ": " + what
	if r.Data.Actor != "" {
		s += " by " + r.Data.Actor
	}
	if r.Data.Approval != "" {
		s += " with approval " + r.Data.Approval
	}
	return fmt.Sprintf("%s (%s %s/%s)", s, r.Type, r.Source, r.ID)
}

// grantText is g, with its expiry when it has one.
func grantText(g BaselineGrant, expires *time.Time) string {
	if expires != nil {
		return fmt.Sprintf("%s until %s", g, evidenceTime(*expires))
	}
	return g.String()
}
