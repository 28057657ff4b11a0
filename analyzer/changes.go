package analyzer

// What the three rules about changes (unauthorised-change, self-service, missing-approval)
// share: naming a change event and what it changed, expanding the admin-check templates,
// indexing the approval events, and the graph questions they ask many times (cached).

import (
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
)

// changeKey is the key of a condition about one change event: the event's source and id (its
// identity), joined by a space, which a source never holds (event.Validate), so that no two pairs
// give one key.
func changeKey(r *event.Record) string { return r.Source + " " + r.ID }

// eventRef names r for evidence.
func eventRef(r *event.Record) *finding.EventRef {
	return &finding.EventRef{Source: r.Source, ID: r.ID, Type: string(r.Type), Position: r.Position}
}

// stamp writes t for a sentence: RFC 3339 in UTC, fractions only when there are some.
func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// grantOf is the grant a grant event names.
func grantOf(d *event.Data) access.GrantRef {
	return access.GrantRef{Subject: d.Subject, Role: d.Role, Action: d.Action, Resource: d.Resource, ExpiresAt: d.ExpiresAt}
}

// describeChange says what change event r did, as a verb phrase whose subject is its actor:
// "added grant(user:bob, role:admin, db:prod)".
func describeChange(r *event.Record) string {
	d := &r.Data
	switch r.Type {
	case event.GrantAdded:
		s := "added " + grantOf(d).String()
		if d.ExpiresAt != nil {
			s += " until " + stamp(*d.ExpiresAt)
		}
		return s
	case event.GrantRemoved:
		return "removed " + grantOf(d).String()
	case event.MembershipAdded:
		return fmt.Sprintf("added %s to %s", d.Member, d.Group)
	case event.MembershipRemoved:
		return fmt.Sprintf("removed %s from %s", d.Member, d.Group)
	case event.RolePermissionAdded:
		return fmt.Sprintf("added permission %s to %s", d.Action, d.Role)
	case event.RolePermissionRemoved:
		return fmt.Sprintf("removed permission %s from %s", d.Action, d.Role)
	case event.RoleIncludeAdded:
		return fmt.Sprintf("made %s include %s", d.Role, d.Includes)
	case event.RoleIncludeRemoved:
		return fmt.Sprintf("made %s stop including %s", d.Role, d.Includes)
	case event.RoleCreated:
		return "created " + d.Role
	case event.RoleDeleted:
		return "deleted " + d.Role
	case event.GroupCreated:
		return "created " + d.Group
	case event.GroupDeleted:
		return "deleted " + d.Group
	case event.PrincipalCreated:
		return "created " + d.Principal
	case event.PrincipalUpdated:
		keys := make([]string, 0, len(d.Attributes))
		for k := range d.Attributes {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		if len(keys) == 0 {
			return "updated " + d.Principal
		}
		return fmt.Sprintf("updated %s (%s)", d.Principal, strings.Join(keys, ", "))
	case event.PrincipalDisabled:
		return "disabled " + d.Principal
	case event.PrincipalEnabled:
		return "enabled " + d.Principal
	case event.PrincipalDeleted:
		return "deleted " + d.Principal
	}
	return string(r.Type)
}

// changeTarget is what change r was made to: the grant's resource, the role, the group, or the
// principal.
func changeTarget(r *event.Record) string {
	d := &r.Data
	switch r.Type {
	case event.GrantAdded, event.GrantRemoved:
		return d.Resource
	case event.RoleCreated, event.RoleDeleted, event.RolePermissionAdded, event.RolePermissionRemoved,
		event.RoleIncludeAdded, event.RoleIncludeRemoved:
		return d.Role
	case event.GroupCreated, event.GroupDeleted, event.MembershipAdded, event.MembershipRemoved:
		return d.Group
	}
	return d.Principal
}

// actorOrSomeone names r's actor in a sentence.
func actorOrSomeone(r *event.Record) string {
	if r.Data.Actor == "" {
		return "an unnamed actor"
	}
	return r.Data.Actor
}

// changeEvidence is the evidence of change event r itself.
func changeEvidence(r *event.Record) finding.Evidence {
	text := fmt.Sprintf("%s %s at %s (event %s from %s", actorOrSomeone(r), describeChange(r), stamp(r.Time), r.ID, r.Source)
	if r.Data.Approval != "" {
		text += ", citing approval request " + r.Data.Approval
	}
	return finding.Evidence{Kind: "event", Text: text + ")", Time: finding.Time(r.Time), Event: eventRef(r)}
}

// templateFields are the change fields an AdminCheck template may name, as {field}.
var templateFields = []string{"resource", "role", "action", "subject", "group", "member", "principal", "includes"}

// fieldOf is change field name of d ("" when the event does not carry it).
func fieldOf(d *event.Data, name string) string {
	switch name {
	case "resource":
		return d.Resource
	case "role":
		return d.Role
	case "action":
		return d.Action
	case "subject":
		return d.Subject
	case "group":
		return d.Group
	case "member":
		return d.Member
	case "principal":
		return d.Principal
	case "includes":
		return d.Includes
	}
	return ""
}

// checkTemplate reports a template that names a field templateFields does not list, or leaves a
// brace open.
func checkTemplate(tpl string) error {
	_, _, err := expand(tpl, &event.Data{})
	return err
}

// expand fills template tpl with d's fields. ok is false when tpl names a field d does not carry
// (an empty one): the check does not apply to that change.
func expand(tpl string, d *event.Data) (s string, ok bool, err error) {
	var b strings.Builder
	ok = true
	for {
		i := strings.IndexByte(tpl, '{')
		if i < 0 {
			b.WriteString(tpl)
			return b.String(), ok, nil
		}
		j := strings.IndexByte(tpl[i:], '}')
		if j < 0 {
			return "", false, fmt.Errorf("template %q: unclosed {", tpl)
		}
		name := tpl[i+1 : i+j]
		if !slices.Contains(templateFields, name) {
			return "", false, fmt.Errorf("template %q: unknown field {%s} (the fields are {%s})", tpl, name, strings.Join(templateFields, "}, {"))
		}
		v := fieldOf(d, name)
		if v == "" {
			ok = false
		}
		b.WriteString(tpl[:i])
		b.WriteString(v)
		tpl = tpl[i+j+1:]
	}
}

// approvalRecords are the events of one approval request.
type approvalRecords struct {
	request string
	// requested is the (last, in event time) approval.requested event; nil when none was seen.
	requested *event.Record
	// answers are the approval.granted and approval.rejected events, in event-time order.
	answers []*event.Record
	// citing are the change events whose approval is this request, in event-time order.
	citing []*event.Record
}

// requester is who asked for the approval ("" when the request event was not seen).
func (a *approvalRecords) requester() string {
	if a.requested == nil {
		return ""
	}
	return a.requested.Data.Requester
}

// indexApprovals groups the approval events of events (in event-time order), and the change
// events citing an approval, by request.
func indexApprovals(events []event.Record) map[string]*approvalRecords {
	out := map[string]*approvalRecords{}
	get := func(req string) *approvalRecords {
		a := out[req]
		if a == nil {
			a = &approvalRecords{request: req}
			out[req] = a
		}
		return a
	}
	for i := range events {
		r := &events[i]
		switch r.Type {
		case event.ApprovalRequested:
			get(r.Data.Request).requested = r
		case event.ApprovalGranted, event.ApprovalRejected:
			a := get(r.Data.Request)
			a.answers = append(a.answers, r)
		default:
			if r.Type.IsChange() && r.Data.Approval != "" {
				a := get(r.Data.Approval)
				a.citing = append(a.citing, r)
			}
		}
	}
	return out
}

// requestEvidence is the evidence of approval request a's request event.
func requestEvidence(a *approvalRecords) finding.Evidence {
	r := a.requested
	text := fmt.Sprintf("%s requested approval %s at %s", r.Data.Requester, a.request, stamp(r.Time))
	if r.Data.Reason != "" {
		text += fmt.Sprintf(" (reason: %q)", r.Data.Reason)
	}
	if len(r.Data.Change) > 0 {
		text += "; change asked for: " + string(r.Data.Change)
	}
	return finding.Evidence{Kind: "approval", Text: text, Time: finding.Time(r.Time), Event: eventRef(r)}
}

// answerText says what approval answer r was: "user:carol granted approval req-1 at T".
func answerText(r *event.Record) string {
	verb := "granted"
	if r.Type == event.ApprovalRejected {
		verb = "rejected"
	}
	s := fmt.Sprintf("%s %s approval %s at %s", r.Data.Approver, verb, r.Data.Request, stamp(r.Time))
	if r.Data.Reason != "" {
		s += fmt.Sprintf(" (reason: %q)", r.Data.Reason)
	}
	return s
}

// explainKey is one cached Explain question; at is the start of the stretch it was asked in.
type explainKey struct {
	principal, action, resource string
	at                          int64
}

// explainer asks the model's graph Explain questions (as known now), each once per stretch of
// time over which the principal's access does not change (graph.AccessInstants).
type explainer struct {
	g        *graph.Graph
	tenant   string
	cache    map[explainKey]access.Explain
	what     map[explainKey]access.WhatCould
	instants map[string][]int64
}

func newExplainer(in *Input) *explainer {
	return &explainer{g: in.Model.Graph, tenant: in.Tenant, cache: map[explainKey]access.Explain{},
		what: map[explainKey]access.WhatCould{}, instants: map[string][]int64{}}
}

// stretch is the start of the stretch of principal's access that holds at t (math.MinInt64
// before its first change).
func (x *explainer) stretch(principal string, t int64) int64 {
	ts, ok := x.instants[principal]
	if !ok {
		ts = x.g.AccessInstants(principal, nil)
		x.instants[principal] = ts
	}
	i, found := slices.BinarySearch(ts, t)
	switch {
	case found:
		return t
	case i == 0:
		return math.MinInt64
	}
	return ts[i-1]
}

// explain answers whether principal could do action on resource at at. Its Could, Status and
// Paths are those at at; its At and Reason may be of an earlier time with the same answer (ask
// exact for the words).
func (x *explainer) explain(ctx context.Context, principal, action, resource string, at time.Time) (access.Explain, error) {
	k := explainKey{principal, action, resource, x.stretch(principal, event.Micros(at))}
	if ex, ok := x.cache[k]; ok {
		return ex, nil
	}
	ex, err := x.exact(ctx, principal, action, resource, at)
	if err == nil {
		x.cache[k] = ex
	}
	return ex, err
}

// whatCould answers what principal could do at at (its At may be of an earlier time with the
// same answer).
func (x *explainer) whatCould(ctx context.Context, principal string, at time.Time) (access.WhatCould, error) {
	k := explainKey{principal: principal, at: x.stretch(principal, event.Micros(at))}
	if wc, ok := x.what[k]; ok {
		return wc, nil
	}
	wc, err := x.g.WhatCould(ctx, access.Query{Tenant: x.tenant, Principal: principal, At: at})
	if err != nil {
		return wc, fmt.Errorf("what-could %s at %s: %w", principal, stamp(at), err)
	}
	x.what[k] = wc
	return wc, nil
}

// exact asks the graph, at exactly at.
func (x *explainer) exact(ctx context.Context, principal, action, resource string, at time.Time) (access.Explain, error) {
	ex, err := x.g.Explain(ctx, access.Query{Tenant: x.tenant, Principal: principal, Action: action, Resource: resource, At: at})
	if err != nil {
		return ex, fmt.Errorf("explain %s %s on %s at %s: %w", principal, action, resource, stamp(at), err)
	}
	return ex, nil
}

// chainCache answers membership questions from the graph's exported chains, fetched once per
// member.
type chainCache struct {
	g      *graph.Graph
	chains map[string][]graph.ChainSpan
}

func newChainCache(g *graph.Graph) *chainCache {
	return &chainCache{g: g, chains: map[string][]graph.ChainSpan{}}
}

// of is member's membership chains (as known now).
func (c *chainCache) of(member string) []graph.ChainSpan {
	cs, ok := c.chains[member]
	if !ok {
		cs = c.g.Chains(member, nil)
		c.chains[member] = cs
	}
	return cs
}

// to is the shortest membership chain through which member is in group at t (Unix
// microseconds), and the stretch over which it holds; ok is false when member is not in group
// at t.
func (c *chainCache) to(member, group string, t int64) (graph.ChainSpan, bool) {
	var best graph.ChainSpan
	found := false
	for _, cs := range c.of(member) {
		if cs.From <= t && t < cs.To && cs.Groups[len(cs.Groups)-1] == group && (!found || len(cs.Groups) < len(best.Groups)) {
			best, found = cs, true
		}
	}
	return best, found
}

// groupsAt lists the groups member is in at t (directly or not), each once.
func (c *chainCache) groupsAt(member string, t int64) []string {
	var out []string
	for _, cs := range c.of(member) {
		if cs.From <= t && t < cs.To {
			if g := cs.Groups[len(cs.Groups)-1]; !slices.Contains(out, g) {
				out = append(out, g)
			}
		}
	}
	return out
}

// chainText renders member's chain: "user:bob → group:team → group:ops".
func chainText(member string, groups []string) string {
	return strings.Join(append([]string{member}, groups...), " → ")
}

// pathText renders principal's path p from the principal: "user:bob → group:ops → grant(...) ⇒
// role:x ∋ db.read".
func pathText(principal string, p access.Path) string { return principal + " → " + p.String() }

// spanUntil is the end of a span for evidence: nil for one that has not ended.
func spanUntil(to int64) *time.Time {
	if to >= graph.Forever {
		return nil
	}
	return finding.Time(event.FromMicros(to))
}
