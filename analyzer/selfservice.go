package analyzer

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/whocould/whocould/access"
	"github.com/whocould/whocould/event"
	"github.com/whocould/whocould/finding"
)

// checkSelfService flags actors who changed their own access, and approvals granted by their
// own requester. Two kinds, both severity high:
//
// "own-access": a change event whose actor is the one whose access it changes (key: the event's
// source and id; Principal the actor). That is, at the change's event time (as known now):
//   - grant.added or grant.removed whose subject is the actor, or a group the actor is a member
//     of then (directly or through nested groups; the evidence shows the chain);
//   - membership.added or membership.removed whose member is the actor, or a group the actor is
//     a member of then;
//   - principal.enabled or principal.updated of the actor itself;
//   - role.permission.added or role.include.added on a role the actor holds then: some path by
//     which the actor could do something at that time (so the actor is active) runs through the
//     role — and the change gave the actor something: an entitlement (action pattern, resource)
//     it holds at the change's time and did not hold a microsecond before. The state at the
//     change's time includes the change, so a role that held nothing before its first
//     permission counts too; an edit that only re-arranges what the actor already had does not.
//
// Changes without an actor are not judged. Removing a permission or an inclusion only takes
// access away and is not flagged.
//
// "own-approval": an approval.granted whose approver is the request's requester (key: the
// request and the approver, joined by a space, which neither holds; Since: the first such
// answer). A request whose approval.requested event was never seen has no known requester and
// is not judged. Whether a change counted such an approval is missing-approval's question (it
// never counts the requester).
//
// Both are past conditions a human must review: they stay open until acknowledged or
// suppressed.
func checkSelfService(ctx context.Context, in *Input) ([]finding.Finding, error) {
	chains := newChainCache(in.Model.Graph)
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
		f, ok, err := ownAccess(ctx, in, chains, x, r)
		if err != nil {
			return nil, fmt.Errorf("self-service: %w", err)
		}
		if ok {
			out = append(out, f)
		}
	}
	return append(out, ownApprovals(in)...), nil
}

// ownAccess is the finding about change r when its actor changed its own access.
func ownAccess(ctx context.Context, in *Input, chains *chainCache, x *explainer, r *event.Record) (finding.Finding, bool, error) {
	d := &r.Data
	actor := d.Actor
	t := event.Micros(r.Time)
	var (
		how      string             // what makes it the actor's own, for the summary
		evidence []finding.Evidence // beyond the change itself
		details  = map[string]any{"change_type": string(r.Type)}
	)
	// viaGroup says whether actor is in group at t, and how.
	viaGroup := func(group string) bool {
		if event.KindOf(group) != event.KindGroup {
			return false
		}
		cs, ok := chains.to(actor, group, t)
		if !ok {
			return false
		}
		chain := chainText(actor, cs.Groups)
		how = fmt.Sprintf(", and %s is a member of %s (%s)", actor, group, chain)
		evidence = append(evidence, finding.Evidence{Kind: "interval", Time: finding.Time(event.FromMicros(cs.From)), Until: spanUntil(cs.To),
			Text: fmt.Sprintf("%s is a member of %s through %s, from %s%s", actor, group, chain, stamp(event.FromMicros(cs.From)), untilText(cs.To))})
		details["via"], details["chain"] = "group", append([]string{actor}, cs.Groups...)
		return true
	}
	own := false
	switch r.Type {
	case event.GrantAdded, event.GrantRemoved:
		own = d.Subject == actor || viaGroup(d.Subject)
	case event.MembershipAdded, event.MembershipRemoved:
		own = d.Member == actor || viaGroup(d.Member)
	case event.PrincipalEnabled, event.PrincipalUpdated:
		own = d.Principal == actor
	case event.RolePermissionAdded, event.RoleIncludeAdded:
		wc, err := x.whatCould(ctx, actor, r.Time)
		if err != nil {
			return finding.Finding{}, false, err
		}
		p, ok := pathThroughRole(wc, d.Role)
		var gained []string
		if ok {
			before, err := x.whatCould(ctx, actor, r.Time.Add(-time.Microsecond))
			if err != nil {
				return finding.Finding{}, false, err
			}
			had := map[[2]string]bool{}
			for _, e := range before.Entitlements {
				had[[2]string{e.Action, e.Resource}] = true
			}
			for _, e := range wc.Entitlements {
				if !had[[2]string{e.Action, e.Resource}] {
					gained = append(gained, e.Action+" on "+e.Resource)
				}
			}
		}
		if ok && len(gained) > 0 {
			own = true
			details["gained"] = gained
			how = fmt.Sprintf(", a role %s held through %s", actor, p.Grant.String())
			evidence = append(evidence, finding.Evidence{Kind: "path", Time: finding.Time(r.Time), Path: ownPath(p),
				Text: fmt.Sprintf("%s held %s at %s through %s", actor, d.Role, stamp(r.Time), pathText(actor, p))})
			details["via"] = "role"
		}
	}
	if !own {
		return finding.Finding{}, false, nil
	}
	if _, ok := details["via"]; !ok {
		details["via"] = "direct"
	}
	f := in.New(finding.SelfService, "own-access", changeKey(r), finding.High)
	f.Principal, f.Resource = actor, changeTarget(r)
	if r.Type == event.GrantAdded || r.Type == event.GrantRemoved {
		f.Action = d.Action
	}
	f.Since = r.Time.UTC()
	f.Summary = fmt.Sprintf("%s changed its own access: it %s at %s%s", actor, describeChange(r), stamp(r.Time), how)
	f.Evidence = append(append(f.Evidence, changeEvidence(r)), evidence...)
	f.Details = details
	return f, true, nil
}

// pathThroughRole is the first path of wc that runs through role.
func pathThroughRole(wc access.WhatCould, role string) (access.Path, bool) {
	for _, e := range wc.Entitlements {
		for _, p := range e.Paths {
			if slices.Contains(p.Roles, role) {
				return p, true
			}
		}
	}
	return access.Path{}, false
}

// untilText is ", until T" for a span that ended at to, "" for one that has not.
func untilText(to int64) string {
	if u := spanUntil(to); u != nil {
		return " until " + stamp(*u)
	}
	return " (still)"
}

// ownApprovals are the findings about approvals granted by their own requester, in the order of
// those answers.
func ownApprovals(in *Input) []finding.Finding {
	idx := in.Model.approvalIndex()
	var out []finding.Finding
	for _, a := range idx {
		requester := a.requester()
		if requester == "" {
			continue // never requested (or only cited): nobody to compare with
		}
		var self *event.Record
		for _, ans := range a.answers {
			if ans.Type == event.ApprovalGranted && ans.Data.Approver == requester {
				self = ans
				break
			}
		}
		if self == nil {
			continue
		}
		f := in.New(finding.SelfService, "own-approval", a.request+" "+requester, finding.High)
		f.Principal = requester
		f.Since = self.Time.UTC()
		f.Summary = fmt.Sprintf("%s approved its own approval request %s at %s", requester, a.request, stamp(self.Time))
		f.Evidence = append(f.Evidence, requestEvidence(a),
			finding.Evidence{Kind: "approval", Text: answerText(self) + ": the approver is the requester", Time: finding.Time(self.Time), Event: eventRef(self)})
		for _, r := range a.citing {
			e := changeEvidence(r)
			e.Text = "a change citing it: " + e.Text
			f.Evidence = append(f.Evidence, e)
		}
		f.Details = map[string]any{"request": a.request}
		out = append(out, f)
	}
	slices.SortFunc(out, func(a, b finding.Finding) int { return cmp.Or(a.Since.Compare(b.Since), cmp.Compare(a.Key, b.Key)) })
	return out
}
