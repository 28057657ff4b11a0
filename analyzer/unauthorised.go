package analyzer

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/whocould/whocould/access"
	"github.com/whocould/whocould/event"
	"github.com/whocould/whocould/finding"
)

// checkUnauthorisedChange flags the changes whose actor was not allowed to make them: the
// projection checking its own admins.
//
// Every change event that names an actor is judged (one without an actor is not: there is
// nobody to judge; missing-approval still judges it). Its type's checks are
// Config.UnauthorisedChange.Checks[type], or DefaultChecks[type] when the config does not list
// the type (an empty list turns the type off). Each check's action and resource templates are
// filled with the change's fields; a check whose template names a field the change does not
// carry ({role} for a grant of an action) does not apply to it, and a template naming an unknown
// field fails the rule. The actor must be able, at the change's event time and as known now, to
// do every check that applies. The state at that time includes every event at that instant
// (intervals are [from, to)), so a right gained at exactly the change's time counts — except
// what the change did itself:
//   - a path that relies on what the change added (the grant, membership, permission or
//     inclusion it adds, or — for principal.created/updated/enabled of the actor itself — the
//     actor's own status) counts only if it held just before the change too: nobody authorises
//     their own change with the access it gives them (kind "self-authorised");
//   - a right the change took away (it removes the grant, membership, permission or inclusion,
//     deletes the group or role the path ran through, or disables or deletes the actor itself)
//     counts if it held just before the change.
//
// One finding per change event (key: its source and id), kind "not-allowed", "self-authorised"
// or "inactive-actor" (the actor was not active: disabled, deleted or unknown), severity high,
// open until a human acknowledges or suppresses it (the change stays made: it never clears by
// itself). Action and Resource are the first check the actor failed; details list them all.
func checkUnauthorisedChange(ctx context.Context, in *Input) ([]finding.Finding, error) {
	checks, err := adminChecks(in.Config)
	if err != nil {
		return nil, fmt.Errorf("unauthorised-change: %w", err)
	}
	x := newExplainer(in)
	var out []finding.Finding
	for i := range in.Model.Events {
		if i%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		r := &in.Model.Events[i]
		if !r.Type.IsChange() || r.Data.Actor == "" {
			continue
		}
		var failed []verdict
		for _, c := range checks[r.Type] {
			action, ok1, _ := expand(c.Action, &r.Data)
			resource, ok2, _ := expand(c.Resource, &r.Data)
			if !ok1 || !ok2 {
				continue
			}
			v, err := authorise(ctx, x, r, action, resource)
			if err != nil {
				return nil, fmt.Errorf("unauthorised-change: %w", err)
			}
			if v.kind != "" {
				failed = append(failed, v)
			}
		}
		if len(failed) == 0 {
			continue
		}
		f, err := unauthorisedFinding(ctx, in, x, r, failed)
		if err != nil {
			return nil, fmt.Errorf("unauthorised-change: %w", err)
		}
		out = append(out, f)
	}
	return out, nil
}

// adminChecks is the checks of every change type, the config's over DefaultChecks, with their
// templates checked.
func adminChecks(c *Config) (map[event.Type][]AdminCheck, error) {
	out := map[event.Type][]AdminCheck{}
	for t, cs := range DefaultChecks {
		out[event.Type(t)] = cs
	}
	for t, cs := range c.UnauthorisedChange.Checks {
		out[event.Type(t)] = cs
	}
	for t, cs := range out {
		for i, c := range cs {
			for _, tpl := range []string{c.Action, c.Resource} {
				if err := checkTemplate(tpl); err != nil {
					return nil, fmt.Errorf("checks: %s[%d]: %w", t, i, err)
				}
			}
			if c.Action == "" || c.Resource == "" {
				return nil, fmt.Errorf("checks: %s[%d]: needs an action and a resource", t, i)
			}
		}
	}
	return out, nil
}

// verdict is whether a change's actor could do one admin action.
type verdict struct {
	action, resource string
	// kind is why not: "not-allowed", "self-authorised" or "inactive-actor"; "" when allowed.
	kind string
	// ex is the answer at the change's time.
	ex access.Explain
	// own are the paths that held at the change's time only through the change itself.
	own []access.Path
}

// addsAccess are the change types whose own effect may give their actor a path (see uses).
var addsAccess = []event.Type{event.GrantAdded, event.MembershipAdded, event.RolePermissionAdded, event.RoleIncludeAdded,
	event.PrincipalCreated, event.PrincipalUpdated, event.PrincipalEnabled}

// removesAccess are the change types whose own effect may take a path away from their actor.
var removesAccess = []event.Type{event.GrantRemoved, event.MembershipRemoved, event.RolePermissionRemoved,
	event.RoleIncludeRemoved, event.GroupDeleted, event.RoleDeleted, event.PrincipalDisabled, event.PrincipalDeleted}

// authorise judges whether r's actor could do action on resource when it made r.
func authorise(ctx context.Context, x *explainer, r *event.Record, action, resource string) (verdict, error) {
	actor := r.Data.Actor
	v := verdict{action: action, resource: resource}
	ex, err := x.explain(ctx, actor, action, resource, r.Time)
	if err != nil {
		return v, err
	}
	v.ex = ex
	before := func() (access.Explain, error) {
		return x.explain(ctx, actor, action, resource, r.Time.Add(-time.Microsecond))
	}
	if ex.Could {
		if ex.PathsTruncated || !slices.Contains(addsAccess, r.Type) {
			return v, nil
		}
		for _, p := range ex.Paths {
			if uses(r, p) {
				v.own = append(v.own, p)
			}
		}
		if len(v.own) < len(ex.Paths) {
			return v, nil
		}
		// Every path relies on what the change did: one that held just before counts.
		b, err := before()
		if err != nil {
			return v, err
		}
		if b.Could && slices.ContainsFunc(b.Paths, func(p access.Path) bool {
			return slices.ContainsFunc(v.own, func(q access.Path) bool { return access.ComparePaths(p, q) == 0 })
		}) {
			return v, nil
		}
		v.kind = "self-authorised"
		return v, nil
	}
	if slices.Contains(removesAccess, r.Type) {
		// A right the change itself took away held while it was made.
		b, err := before()
		if err != nil {
			return v, err
		}
		if b.Could && slices.ContainsFunc(b.Paths, func(p access.Path) bool { return uses(r, p) }) {
			return v, nil
		}
	}
	v.kind = "not-allowed"
	if ex.Status != access.StatusActive {
		v.kind = "inactive-actor"
	}
	// The reason, in the words of the change's time.
	v.ex, err = x.exact(ctx, actor, action, resource, r.Time)
	return v, err
}

// uses reports whether path p of r's actor relies on what change r adds or removes.
func uses(r *event.Record, p access.Path) bool {
	d := &r.Data
	switch r.Type {
	case event.GrantAdded, event.GrantRemoved:
		g := p.Grant
		return g.Subject == d.Subject && g.Role == d.Role && g.Action == d.Action && g.Resource == d.Resource
	case event.MembershipAdded, event.MembershipRemoved:
		chain := append([]string{d.Actor}, p.Groups...)
		for i := 0; i+1 < len(chain); i++ {
			if chain[i] == d.Member && chain[i+1] == d.Group {
				return true
			}
		}
	case event.RolePermissionAdded, event.RolePermissionRemoved:
		return len(p.Roles) > 0 && p.Roles[len(p.Roles)-1] == d.Role && p.Permission == d.Action
	case event.RoleIncludeAdded, event.RoleIncludeRemoved:
		for i := 0; i+1 < len(p.Roles); i++ {
			if p.Roles[i] == d.Role && p.Roles[i+1] == d.Includes {
				return true
			}
		}
	case event.GroupDeleted:
		return slices.Contains(p.Groups, d.Group)
	case event.RoleDeleted:
		return slices.Contains(p.Roles, d.Role)
	case event.PrincipalCreated, event.PrincipalUpdated, event.PrincipalEnabled, event.PrincipalDisabled, event.PrincipalDeleted:
		return d.Principal == d.Actor
	}
	return false
}

// maxNearby bounds the nearby admin rights shown in one finding.
const maxNearby = 5

// unauthorisedFinding is the finding about change r whose actor failed checks failed.
func unauthorisedFinding(ctx context.Context, in *Input, x *explainer, r *event.Record, failed []verdict) (finding.Finding, error) {
	first := failed[0]
	f := in.New(finding.UnauthorisedChange, first.kind, changeKey(r), finding.High)
	f.Principal, f.Action, f.Resource = r.Data.Actor, first.action, first.resource
	f.Since = r.Time.UTC()
	f.Summary = fmt.Sprintf("%s %s at %s without being able to do %s on %s", r.Data.Actor, describeChange(r), stamp(r.Time), first.action, first.resource)
	switch first.kind {
	case "self-authorised":
		f.Summary += " before it (only the change itself gave that right)"
	case "inactive-actor":
		f.Summary += fmt.Sprintf(" (%s was %s)", r.Data.Actor, first.ex.Status)
	}
	if len(failed) > 1 {
		f.Summary += fmt.Sprintf(", nor %d other admin action(s) its type requires", len(failed)-1)
	}
	f.Evidence = append(f.Evidence, changeEvidence(r))
	missing := make([]string, 0, len(failed))
	for _, v := range failed {
		missing = append(missing, v.action+" on "+v.resource)
		if v.kind == "self-authorised" {
			f.Evidence = append(f.Evidence, finding.Evidence{Kind: "measure", Time: finding.Time(r.Time),
				Text: fmt.Sprintf("%s could do %s on %s at %s only through what this change did; it could not just before it",
					r.Data.Actor, v.action, v.resource, stamp(r.Time))})
			for _, p := range v.own {
				f.Evidence = append(f.Evidence, finding.Evidence{Kind: "path", Time: finding.Time(r.Time), Path: ownPath(p),
					Text: fmt.Sprintf("path created by the change itself: %s", pathText(r.Data.Actor, p))})
			}
			continue
		}
		f.Evidence = append(f.Evidence, finding.Evidence{Kind: "measure", Time: finding.Time(r.Time),
			Text: fmt.Sprintf("%s could not do %s on %s at %s: %s", r.Data.Actor, v.action, v.resource, stamp(r.Time), v.ex.Reason)})
	}
	near, err := nearbyRights(ctx, x, r.Data.Actor, r.Time, first.action, first.resource)
	if err != nil {
		return f, err
	}
	f.Evidence = append(f.Evidence, near...)
	f.Details = map[string]any{"change_type": string(r.Type), "missing_checks": missing, "actor_status": first.ex.Status}
	return f, nil
}

// nearbyRights is evidence of the admin rights actor did have at t near the one it lacked
// (action on resource): the same action (pattern) on other resources, or actions of the same
// family (the part before the first dot) on a resource covering or covered by resource.
func nearbyRights(ctx context.Context, x *explainer, actor string, t time.Time, action, resource string) ([]finding.Evidence, error) {
	wc, err := x.whatCould(ctx, actor, t)
	if err != nil {
		return nil, err
	}
	family, _, _ := strings.Cut(action, ".")
	var out []finding.Evidence
	for _, e := range wc.Entitlements {
		if len(out) == maxNearby {
			break
		}
		fam, _, _ := strings.Cut(e.Action, ".")
		matches, covers := event.Matches(e.Action, action), event.Covers(e.Resource, resource)
		if matches && covers {
			continue // the right itself (held only through the change): shown as such already
		}
		if !matches && (fam != family || !(covers || event.Covers(resource, e.Resource))) {
			continue
		}
		if len(e.Paths) == 0 {
			continue
		}
		p := e.Paths[0]
		out = append(out, finding.Evidence{Kind: "path", Time: finding.Time(t), Path: ownPath(p),
			Text: fmt.Sprintf("%s could do %s on %s at %s (a nearby right, not the one needed) through %s", actor, e.Action, e.Resource, stamp(t), pathText(actor, p))})
	}
	return out, nil
}
