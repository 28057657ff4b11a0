package analyzer

import (
	"context"
	"fmt"
	"math"
	"slices"

	"github.com/whocould/whocould/access"
	"github.com/whocould/whocould/event"
	"github.com/whocould/whocould/finding"
	"github.com/whocould/whocould/graph"
)

// checkMissingApproval flags privileged changes made without a granted approval before them.
//
// A change is privileged when it raises access to something Config.Privileged names, judged at
// the change's event time (as known now, the change included):
//   - grant.added of a privileged role, or of a role that includes one then (through any chain
//     of inclusions), or on a resource that a privileged resource pattern covers — or that
//     covers a privileged resource (a grant on db:* reaches db:prod);
//   - role.permission.added to a privileged role, or to a role a privileged role includes then;
//   - role.include.added whose role is privileged or included by a privileged role, or whose
//     included role is or includes a privileged role;
//   - membership.added to a group that holds then — itself or through the groups it is in —
//     a grant that would be privileged by the first point.
//
// Removals and the other changes take access away or create empty things: they are not judged,
// and neither is anything when no role or resource is privileged. Changes at or before the
// baseline's sign-off (Baseline.SignedOff.At, for the baseline's tenant) are not judged either:
// the state they built was approved as a whole — an initial import or a snapshot would
// otherwise flood the rule.
//
// A privileged change needs Data.Approval naming an approval request whose granted answers
// strictly before the change's event time come from at least Config.MissingApproval.Approvers
// distinct approvers, none of them the requester nor the change's actor; when ApproveAction is
// set, each counted approver must also have been able to do ApproveAction on the change's
// target (the grant's resource, the role, or the group) when answering. A rejection (from
// anyone) before the change cancels every grant before it: only grants after the last
// rejection count. A request whose approval.requested was never seen but that has answers is
// judged without a known requester.
//
// One finding per change event (key: its source and id), severity high, kind what failed:
// "no-approval" (no Data.Approval), "unknown-approval" (no event names the request),
// "not-granted-before" (no grant still standing before the change: never granted, granted only
// at or after it, or rejected since), "too-few-approvers" (fewer eligible approvers than
// required; details counted and required), "approver-not-allowed" (enough approvers, but not
// enough of them could do ApproveAction). Principal is who gains access (the grant's subject or
// the member, when a principal), else the actor. Open until a human reviews it.
func checkMissingApproval(ctx context.Context, in *Input) ([]finding.Finding, error) {
	priv := newPrivileges(in)
	if priv.none() {
		return nil, nil
	}
	approvals := in.Model.approvalIndex()
	x := newExplainer(in)
	signedOff := int64(math.MinInt64)
	if b := in.Config.baseline; b != nil && b.SignedOff != nil && (b.Tenant == "" || b.Tenant == in.Tenant) {
		signedOff = event.Micros(b.SignedOff.At)
	}
	var out []finding.Finding
	for i := range in.Model.Events {
		if i%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		r := &in.Model.Events[i]
		if event.Micros(r.Time) <= signedOff {
			continue
		}
		why, ok := priv.ofChange(r)
		if !ok {
			continue
		}
		f, bad, err := judgeApproval(ctx, in, x, approvals, r, why)
		if err != nil {
			return nil, fmt.Errorf("missing-approval: %w", err)
		}
		if bad {
			out = append(out, f)
		}
	}
	return out, nil
}

// judgeApproval is the finding about privileged change r (privileged because of why), when its
// approval does not authorise it.
func judgeApproval(ctx context.Context, in *Input, x *explainer, approvals map[string]*approvalRecords, r *event.Record, why string) (finding.Finding, bool, error) {
	d := &r.Data
	cfg := in.Config.MissingApproval
	need := max(cfg.Approvers, 1)
	target := changeTarget(r)
	var (
		kind     string
		counted  int
		evidence []finding.Evidence
	)
	a := approvals[d.Approval]
	switch {
	case d.Approval == "":
		kind = "no-approval"
	case a == nil || (a.requested == nil && len(a.answers) == 0):
		kind = "unknown-approval"
	default:
		if a.requested != nil {
			evidence = append(evidence, requestEvidence(a))
		} else {
			evidence = append(evidence, finding.Evidence{Kind: "approval",
				Text: fmt.Sprintf("no approval.requested event names %s: its requester is unknown", d.Approval)})
		}
		requester := a.requester()
		type vote struct {
			ans  *event.Record
			note string
		}
		var votes []vote
		standing := map[string]int{} // eligible approver → index in votes of its counted grant
		allowed := map[string]bool{} // of those, who could do ApproveAction
		anyStanding := false         // a grant (from anyone) before the change, after the last rejection
		for _, ans := range a.answers {
			who := ans.Data.Approver
			v := vote{ans: ans}
			switch {
			case !ans.Time.Before(r.Time):
				v.note = "does not count: not before the change"
			case ans.Type == event.ApprovalRejected:
				v.note = "cancels every grant before it"
				for _, j := range standing {
					votes[j].note = "does not count: cancelled by the rejection at " + stamp(ans.Time)
				}
				clear(standing)
				clear(allowed)
				anyStanding = false
			case who == requester:
				v.note = "does not count: the approver is the requester"
				anyStanding = true
			case who == d.Actor:
				v.note = "does not count: the approver made the change"
				anyStanding = true
			default:
				anyStanding = true
				if _, dup := standing[who]; dup {
					v.note = "does not count again: " + who + " has already granted it"
					break
				}
				standing[who] = len(votes)
				v.note = "counts"
				if cfg.ApproveAction != "" {
					ex, err := x.explain(ctx, who, cfg.ApproveAction, target, ans.Time)
					if err != nil {
						return finding.Finding{}, false, err
					}
					if !ex.Could {
						// The reason, in the words of the answer's time.
						if ex, err = x.exact(ctx, who, cfg.ApproveAction, target, ans.Time); err != nil {
							return finding.Finding{}, false, err
						}
					}
					if ex.Could {
						allowed[who] = true
						v.note = fmt.Sprintf("counts (%s could do %s on %s)", who, cfg.ApproveAction, target)
					} else {
						v.note = fmt.Sprintf("does not count: %s could not do %s on %s then: %s", who, cfg.ApproveAction, target, ex.Reason)
					}
				}
			}
			votes = append(votes, v)
		}
		counted = len(standing)
		if cfg.ApproveAction != "" {
			counted = len(allowed)
		}
		switch {
		case counted >= need:
			return finding.Finding{}, false, nil
		case len(standing) >= need:
			kind = "approver-not-allowed"
		case !anyStanding:
			kind = "not-granted-before"
		default:
			kind = "too-few-approvers"
		}
		for _, v := range votes {
			evidence = append(evidence, finding.Evidence{Kind: "approval", Text: answerText(v.ans) + ": " + v.note,
				Time: finding.Time(v.ans.Time), Event: eventRef(v.ans)})
		}
	}
	f := in.New(finding.MissingApproval, kind, changeKey(r), finding.High)
	f.Principal = d.Actor
	switch {
	case (r.Type == event.GrantAdded) && event.KindOf(d.Subject) == event.KindPrincipal:
		f.Principal = d.Subject
	case r.Type == event.MembershipAdded && event.KindOf(d.Member) == event.KindPrincipal:
		f.Principal = d.Member
	}
	f.Resource = target
	if r.Type == event.GrantAdded {
		f.Action = d.Action
	}
	f.Since = r.Time.UTC()
	what := fmt.Sprintf("%s %s at %s", actorOrSomeone(r), describeChange(r), stamp(r.Time))
	switch kind {
	case "no-approval":
		f.Summary = fmt.Sprintf("%s, a privileged change, without citing any approval", what)
	case "unknown-approval":
		f.Summary = fmt.Sprintf("%s, a privileged change, citing approval %s, which no event names", what, d.Approval)
	case "not-granted-before":
		f.Summary = fmt.Sprintf("%s, a privileged change, before approval %s was granted", what, d.Approval)
	case "too-few-approvers":
		f.Summary = fmt.Sprintf("%s, a privileged change, with approval %s granted by %d eligible approver(s) of the %d required", what, d.Approval, counted, need)
	case "approver-not-allowed":
		f.Summary = fmt.Sprintf("%s, a privileged change, with approval %s granted by only %d approver(s) able to do %s on %s, of the %d required",
			what, d.Approval, counted, cfg.ApproveAction, target, need)
	}
	f.Evidence = append(f.Evidence, changeEvidence(r), finding.Evidence{Kind: "measure", Time: finding.Time(r.Time), Text: "privileged: " + why})
	f.Evidence = append(f.Evidence, evidence...)
	f.Details = map[string]any{"change_type": string(r.Type), "required": need, "counted": counted}
	if d.Approval != "" {
		f.Details["request"] = d.Approval
	}
	return f, true, nil
}

// privileges says which changes are privileged (see checkMissingApproval), asking the graph for
// role inclusions, group nesting and grants once each.
type privileges struct {
	g         *graph.Graph
	roles     []string
	resources []string
	tails     map[string][]graph.TailSpan
	chains    *chainCache
	// grants are every grant, by subject (built when first needed).
	grants map[string][]graph.RelationSpans
}

func newPrivileges(in *Input) *privileges {
	return &privileges{g: in.Model.Graph, roles: in.Config.Privileged.Roles, resources: in.Config.Privileged.Resources,
		tails: map[string][]graph.TailSpan{}, chains: newChainCache(in.Model.Graph)}
}

func (p *privileges) none() bool { return len(p.roles) == 0 && len(p.resources) == 0 }

// tailsOf is role's inclusion chains (as known now).
func (p *privileges) tailsOf(role string) []graph.TailSpan {
	ts, ok := p.tails[role]
	if !ok {
		ts = p.g.Tails(role, nil)
		p.tails[role] = ts
	}
	return ts
}

// role says why role is privileged at t: it is a privileged role, or includes one then.
func (p *privileges) role(role string, t int64) (string, bool) {
	if role == "" || len(p.roles) == 0 {
		return "", false
	}
	if slices.Contains(p.roles, role) {
		return role + " is a privileged role", true
	}
	for _, ts := range p.tailsOf(role) {
		if ts.From <= t && t < ts.To {
			for i, r := range ts.Roles {
				if slices.Contains(p.roles, r) {
					return fmt.Sprintf("%s includes the privileged role %s (%s)", role, r, chainText(ts.Roles[0], ts.Roles[1:i+1])), true
				}
			}
		}
	}
	return "", false
}

// includedBy says why role's definition is a privileged role's at t: it is privileged, or a
// privileged role includes it then.
func (p *privileges) includedBy(role string, t int64) (string, bool) {
	if slices.Contains(p.roles, role) {
		return role + " is a privileged role", true
	}
	for _, pr := range p.roles {
		for _, ts := range p.tailsOf(pr) {
			if ts.From <= t && t < ts.To {
				if i := slices.Index(ts.Roles, role); i > 0 {
					return fmt.Sprintf("the privileged role %s includes %s (%s)", pr, role, chainText(pr, ts.Roles[1:i+1])), true
				}
			}
		}
	}
	return "", false
}

// resource says why a grant on resource is privileged: a privileged resource pattern covers it,
// or it covers a privileged resource.
func (p *privileges) resource(resource string) (string, bool) {
	for _, pr := range p.resources {
		if event.Covers(pr, resource) {
			return fmt.Sprintf("%s is covered by the privileged resource %s", resource, pr), true
		}
		if event.Covers(resource, pr) {
			return fmt.Sprintf("%s covers the privileged resource %s", resource, pr), true
		}
	}
	return "", false
}

// grant says why a grant of role (or of an action, role "") on resource is privileged at t.
func (p *privileges) grant(role, resource string, t int64) (string, bool) {
	if why, ok := p.role(role, t); ok {
		return why, true
	}
	return p.resource(resource)
}

// ofChange says why change r is privileged.
func (p *privileges) ofChange(r *event.Record) (string, bool) {
	d := &r.Data
	t := event.Micros(r.Time)
	switch r.Type {
	case event.GrantAdded:
		return p.grant(d.Role, d.Resource, t)
	case event.RolePermissionAdded:
		return p.includedBy(d.Role, t)
	case event.RoleIncludeAdded:
		if why, ok := p.includedBy(d.Role, t); ok {
			return why, true
		}
		if why, ok := p.role(d.Includes, t); ok {
			return why, true
		}
	case event.MembershipAdded:
		return p.group(d.Group, t)
	}
	return "", false
}

// group says why membership of group is privileged at t: group, or a group it is in then,
// holds a privileged grant then.
func (p *privileges) group(group string, t int64) (string, bool) {
	if p.grants == nil {
		p.grants = map[string][]graph.RelationSpans{}
		p.g.Relations(nil, func(rs graph.RelationSpans) {
			if event.KindOf(rs.A) == event.KindGroup {
				p.grants[rs.A] = append(p.grants[rs.A], rs)
			}
		}, graph.RoleGrant, graph.ActionGrant)
	}
	for _, g := range append([]string{group}, p.chains.groupsAt(group, t)...) {
		for _, rs := range p.grants[g] {
			if !holdsAt(rs.Spans, t) {
				continue
			}
			ref := access.GrantRef{Subject: rs.A, Resource: rs.C}
			role := ""
			if rs.Kind == graph.RoleGrant {
				ref.Role, role = rs.B, rs.B
			} else {
				ref.Action = rs.B
			}
			if why, ok := p.grant(role, rs.C, t); ok {
				via := ""
				if g != group {
					via = fmt.Sprintf(" (%s is in %s)", group, g)
				}
				return fmt.Sprintf("%s holds %s%s, and %s", g, ref.String(), via, why), true
			}
		}
	}
	return "", false
}

// holdsAt reports whether one of spans holds at t.
func holdsAt(spans []graph.GrantSpan, t int64) bool {
	_, ok := heldAt(spans, t)
	return ok
}
