package demo

import (
	"fmt"
	"sort"
	"time"

	"github.com/whocould/whocould/access"
	"github.com/whocould/whocould/event"
)

// questions builds the telling questions and computes their expected answers from the final
// events.
func (g *gen) questions(evs []event.Event) []Question {
	c := &g.c
	night := date(3, 17, 2, 14, 0)
	q := func(kind, title, why string, query access.Query) Question {
		query.Tenant = g.o.Tenant
		return Question{Title: title, Kind: kind, Query: query, Why: why}
	}
	qs := []Question{
		q(WhoCould, "Who could drop the production orders table (db.table.drop on db:prod/orders) at 02:14 on 2026-03-17?",
			fmt.Sprintf("The table was dropped at 02:14:31 during an incident. role:db-owner on db:prod is granted to group:dba: "+
				"its direct members %s and %s, and team:sre nested in it (%s through team:sre → group:dba). %s holds break-glass "+
				"role:db-owner on db:prod from 01:52 until 05:51 (approved only the next morning). Not in the answer: %s, a DBA disabled "+
				"on 2026-02-20 who is still in group:dba, and %s, whose just-in-time role:db-owner on db:prod/orders expired at 02:00.",
				c.dba1.id, c.dba2.id, c.sre[0].id, c.breakGlass.id, c.leaverDBA.id, c.jitUser.id),
			access.Query{Action: "db.table.drop", Resource: "db:prod/orders", At: night}),
		q(Explain, fmt.Sprintf("Could %s drop db:prod/orders at 02:14 on 2026-03-17?", c.jitUser.id),
			"No: the just-in-time grant of role:db-owner on db:prod/orders (JIT request, approved by a DBA) expired at 02:00; "+
				"their drop attempt at 02:19:12 was denied. The reason should say the grant expired.",
			access.Query{Principal: c.jitUser.id, Action: "db.table.drop", Resource: "db:prod/orders", At: night}),
		q(Explain, fmt.Sprintf("Could %s drop db:prod/orders at 02:14 on 2026-03-17?", c.leaverDBA.id),
			"No, but only because the account is disabled (since 2026-02-20): the membership of group:dba and so the path to "+
				"role:db-owner are still there, and postgres kept allowing their nightly job until the end of April "+
				"(access after deprovisioning; allowed decisions the map says were impossible).",
			access.Query{Principal: c.leaverDBA.id, Action: "db.table.drop", Resource: "db:prod/orders", At: night}),
		q(Explain, fmt.Sprintf("Could %s drop db:prod/orders at 02:14 on 2026-03-17?", c.breakGlass.id),
			"Yes, through the break-glass grant of role:db-owner on db:prod (01:52 until 05:51), which they requested "+
				"themselves at 01:51 and the access broker granted at once; the request was approved only at about 09:00.",
			access.Query{Principal: c.breakGlass.id, Action: "db.table.drop", Resource: "db:prod/orders", At: night}),
		q(WhoCould, "Who could truncate db:prod/orders on 2026-04-01?",
			"Before 14 April only role:db-owner holds db.table.truncate: group:dba, with team:sre nested in it.",
			access.Query{Action: "db.table.truncate", Resource: "db:prod/orders", At: date(4, 1, 12, 0, 0)}),
		q(WhoCould, "Who could truncate db:prod/orders on 2026-05-01?",
			fmt.Sprintf("On 2026-04-14 %s added db.table.truncate to role:db-writer without any approval: now team:payments, "+
				"group:oncall (and the just-in-time writers of the moment) can truncate too. A privileged role changed without approval.", c.dba2.id),
			access.Query{Action: "db.table.truncate", Resource: "db:prod/orders", At: date(5, 1, 12, 0, 0)}),
		q(WhatCould, fmt.Sprintf("What could %s do on 2026-03-10?", c.sod.id),
			"Promoted on 2026-03-02 into group:payment-approvers while staying in team:accounts-payable: they can both "+
				"payment.create and payment.approve on payments:prod — a separation-of-duties conflict.",
			access.Query{Principal: c.sod.id, At: date(3, 10, 12, 0, 0)}),
		q(WhoCould, "Who could approve payments (payment.approve on payments:prod) on 2026-06-15?",
			fmt.Sprintf("group:payment-approvers: %s, %s, and since 2026-03-02 %s, who can also create payments.", c.cfo.id, c.fpaManager.id, c.sod.id),
			access.Query{Action: "payment.approve", Resource: "payments:prod", At: date(6, 15, 12, 0, 0)}),
		q(Explain, fmt.Sprintf("Was %s allowed to assign role:security-engineer in codesec when they did, on 2026-02-11 at 10:23:05?", c.webManager.id),
			fmt.Sprintf("No: engineering managers hold only iam.assign-role:role:developer on codesec:acme (and no iam.grant), yet "+
				"they granted role:security-engineer to %s — an unauthorised change.", c.unauthTarget.id),
			access.Query{Principal: c.webManager.id, Action: "iam.assign-role:role:security-engineer", Resource: "codesec:acme", At: date(2, 11, 10, 23, 5)}),
		q(WhoCould, "Who could manage billing in codesec (billing.manage on codesec:acme) on 2026-06-01?",
			fmt.Sprintf("role:owner: %s by design, and %s, who granted themself role:owner on 2026-05-19 without approval (self-service).",
				c.cto.id, c.appsecLead.id),
			access.Query{Action: "billing.manage", Resource: "codesec:acme", At: date(6, 1, 12, 0, 0)}),
		q(Explain, fmt.Sprintf("Could %s still change payments data (db.table.update on db:prod/payments) on 2026-06-01?", c.creep.id),
			"Yes: they moved from team:payments to team:data on 2026-04-06 and were never removed from team:payments "+
				"(privilege creep after a move).",
			access.Query{Principal: c.creep.id, Action: "db.table.update", Resource: "db:prod/payments", At: date(6, 1, 12, 0, 0)}),
		q(Explain, fmt.Sprintf("Could %s read db:prod/payments when postgres let them, on 2026-03-05 at 10:12:44?", c.shadowUser.id),
			"No: group:support may only select from db:prod/customers; a legacy pg_hba rule allowed the read anyway (shadow access).",
			access.Query{Principal: c.shadowUser.id, Action: "db.table.select", Resource: "db:prod/payments", At: date(3, 5, 10, 12, 44)}),
		q(WhoCould, "Who could administer the web-app repository (repo.admin on repo:acme/web-app) on 2026-06-15?",
			"role:repo-admin on repo:acme is granted to group:architecture, which contains group:tech-leads, which contains "+
				"group:architecture again (a nesting cycle): the CTO and VP Engineering directly, the tech leads one group further.",
			access.Query{Action: "repo.admin", Resource: "repo:acme/web-app", At: date(6, 15, 12, 0, 0)}),
		q(WhatCould, "What could the AI agent agent:copilot-7 do on 2026-06-15?",
			fmt.Sprintf("role:developer on codesec:acme, role:security-engineer on codesec:acme/payments-api since 2026-04-22 (it "+
				"dismisses findings there: requested by %s, approved by %s) and db.table.select on db:staging.", c.appsecLead.id, c.ciso.id),
			access.Query{Principal: "agent:copilot-7", At: date(6, 15, 12, 0, 0)}),
	}
	for i := range qs {
		qq := &qs[i]
		m := modelAt(evs, qq.Query.At)
		switch qq.Kind {
		case WhoCould:
			for _, p := range m.principals() {
				if ok, _ := m.could(p, qq.Query.Action, qq.Query.Resource, qq.Query.At); ok {
					qq.Principals = append(qq.Principals, p)
				}
			}
		case Explain:
			qq.Could, _ = m.could(qq.Query.Principal, qq.Query.Action, qq.Query.Resource, qq.Query.At)
			qq.Status = m.status(qq.Query.Principal)
		case WhatCould:
			qq.Status = m.status(qq.Query.Principal)
			qq.Entitlements = m.entitlements(qq.Query.Principal, qq.Query.At)
		}
	}
	return qs
}

func (m *model) status(p string) string {
	switch {
	case m.deleted[p]:
		return access.StatusDeleted
	case !m.exists[p]:
		return access.StatusUnknown
	case m.disabled[p]:
		return access.StatusDisabled
	}
	return access.StatusActive
}

// entitlements lists "action resource" for every (permission, grant resource) p holds at t,
// sorted by action, then resource.
func (m *model) entitlements(p string, t time.Time) []string {
	if !m.active(p) {
		return nil
	}
	ps, _ := m.paths(p, "", "", t)
	type ent struct{ a, r string }
	seen := map[ent]bool{}
	var es []ent
	for _, x := range ps {
		e := ent{x.permission, x.grant.resource}
		if !seen[e] {
			seen[e] = true
			es = append(es, e)
		}
	}
	sort.Slice(es, func(i, j int) bool {
		if es[i].a != es[j].a {
			return es[i].a < es[j].a
		}
		return es[i].r < es[j].r
	})
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = e.a + " " + e.r
	}
	return out
}
