package demo

import (
	"fmt"
	"sort"
	"time"

	"github.com/whocould/whocould/event"
)

type activity struct {
	action, resource string
	w                int
}

var unitActivities = map[string][]activity{
	"team:payments": {{"db.table.select", "db:prod/orders", 6}, {"db.table.update", "db:prod/orders", 3},
		{"db.table.insert", "db:prod/payments", 2}, {"db.table.select", "db:prod/customers", 2},
		{"scan.view", "codesec:acme/payments-api", 3}, {"scan.run", "codesec:acme/payments-api", 1},
		{"finding.triage", "codesec:acme/payments-api", 2}, {"repo.push", "repo:acme/payments-api", 6},
		{"repo.pull", "repo:acme/payments-api", 4}, {"db.table.alter", "db:staging/orders", 1}, {"wiki.read", "wiki:acme/handbook", 1}},
	"team:platform": {{"repo.push", "repo:acme/infra", 6}, {"repo.admin", "repo:acme/infra", 1}, {"repo.pull", "repo:acme/web-app", 2},
		{"db.table.alter", "db:staging/payments", 2}, {"scan.view", "codesec:acme/infra", 2}, {"scan.run", "codesec:acme/infra", 1},
		{"db.table.select", "db:prod/orders", 1}, {"wiki.read", "wiki:acme/runbooks", 2}},
	"team:data": {{"db.table.select", "db:prod/orders", 5}, {"db.table.select", "db:prod/customers", 2},
		{"db.table.insert", "db:analytics/orders_daily", 3}, {"db.table.create", "db:analytics/churn_model", 1},
		{"repo.push", "repo:acme/data-pipeline", 4}, {"scan.view", "codesec:acme/data-pipeline", 1}, {"wiki.read", "wiki:acme/handbook", 1}},
	"team:web": {{"repo.push", "repo:acme/web-app", 6}, {"repo.pull", "repo:acme/web-app", 3}, {"scan.view", "codesec:acme/web-app", 2},
		{"finding.triage", "codesec:acme/web-app", 1}, {"db.table.select", "db:staging/orders", 2}, {"wiki.read", "wiki:acme/handbook", 1}},
	"team:appsec": {{"finding.triage", "codesec:acme/payments-api", 3}, {"finding.dismiss", "codesec:acme/web-app", 2},
		{"finding.dismiss", "codesec:acme/payments-api", 1}, {"scan.run", "codesec:acme/infra", 2}, {"scan.view", "codesec:acme/data-pipeline", 2},
		{"repo.pull", "repo:acme/payments-api", 1}},
	"team:secops": {{"finding.triage", "codesec:acme/infra", 2}, {"scan.view", "codesec:acme/web-app", 3}, {"repo.pull", "repo:acme/infra", 1},
		{"wiki.read", "wiki:acme/runbooks", 1}},
	"team:accounts-payable": {{"payment.create", "payments:prod", 6}, {"payment.view", "payments:prod", 4}, {"wiki.read", "wiki:acme/handbook", 1}},
	"team:fpa":              {{"payment.view", "payments:prod", 2}, {"db.table.select", "db:analytics/orders_daily", 4}, {"wiki.read", "wiki:acme/handbook", 1}},
	"group:sales":           {{"wiki.read", "wiki:acme/sales-playbook", 8}, {"db.table.select", "db:prod/customers", 1}},
	"group:support":         {{"db.table.select", "db:prod/customers", 5}, {"wiki.read", "wiki:acme/support-macros", 3}, {"db.table.update", "db:prod/customers", 1}},
	"group:it":              {{"wiki.read", "wiki:acme/runbooks", 3}, {"scan.view", "codesec:acme", 1}},
	"group:leadership":      {{"wiki.read", "wiki:acme/board", 3}},
	"group:engineering": {{"wiki.read", "wiki:acme/handbook", 2}, {"repo.pull", "repo:acme/web-app", 2},
		{"member.invite", "codesec:acme", 1}},
	"group:security": {{"finding.triage", "codesec:acme/payments-api", 2}, {"wiki.read", "wiki:acme/runbooks", 1}},
}

var dbaActivities = []activity{{"db.table.select", "db:prod/orders", 4}, {"db.table.update", "db:prod/payments", 2},
	{"db.table.alter", "db:prod/invoices", 2}, {"db.table.select", "db:prod/customers", 2}, {"db.table.create", "db:staging/orders", 1}}

var serviceActivities = map[string][]activity{
	"service:ci-bot": {{"scan.run", "codesec:acme/payments-api", 3}, {"scan.run", "codesec:acme/web-app", 3}, {"scan.run", "codesec:acme/infra", 2},
		{"repo.push", "repo:acme/infra", 2}, {"db.table.alter", "db:staging/orders", 2}, {"db.table.alter", "db:prod/orders", 1}},
	"service:etl": {{"db.table.select", "db:prod/orders", 5}, {"db.table.select", "db:prod/payments", 3}, {"db.table.insert", "db:analytics/orders_daily", 5}},
	"agent:copilot-7": {{"scan.view", "codesec:acme/payments-api", 4}, {"finding.triage", "codesec:acme/payments-api", 3},
		{"finding.dismiss", "codesec:acme/payments-api", 2}, {"db.table.select", "db:staging/orders", 2}, {"db.table.select", "db:prod/orders", 1}},
}

func policyOf(resource string) string {
	switch k, _, _ := cutKind(resource); k {
	case "db":
		if grantSource(resource) == srcWarehouse {
			return "warehouse-rbac"
		}
		return "pg-privileges"
	case "codesec":
		return "codesec-rbac"
	case "payments":
		return "payments.authz"
	case "repo":
		return "repo-permissions"
	}
	return "wiki.authz"
}

func decisionSource(resource string) string {
	switch k, _, _ := cutKind(resource); k {
	case "payments", "wiki":
		return srcOPA
	}
	return grantSource(resource)
}

// pending is a decision before the map is consulted. A forced decision ignores the map (the
// deliberate inconsistencies).
type pending struct {
	t                      time.Time
	principal, action, res string
	forced                 bool
	effect, reason, policy string
}

func pickActivity(g *gen, as []activity) activity {
	total := 0
	for _, a := range as {
		total += a.w
	}
	x := g.r.IntN(total)
	for _, a := range as {
		if x < a.w {
			return a
		}
		x -= a.w
	}
	return as[len(as)-1]
}

func (g *gen) activitiesFor(p *person, t time.Time) []activity {
	c := &g.c
	u := p.unitAt(t)
	as := unitActivities[u]
	if ud := unitDefOf(u); ud != nil && ud.parent != "" && g.r.IntN(6) == 0 {
		as = unitActivities[ud.parent]
	}
	switch {
	case p == c.dba1 || p == c.dba2 || p == c.sre[0] || p == c.sre[1] || p == c.sre[2]:
		if g.r.IntN(2) == 0 {
			as = dbaActivities
		}
	case p == c.cfo || p == c.fpaManager || (p == c.sod && !t.Before(c.sod.moved)):
		if g.r.IntN(2) == 0 {
			as = []activity{{"payment.approve", "payments:prod", 1}}
		}
	case p == c.creep && !t.Before(p.moved):
		if g.r.IntN(4) == 0 { // still doing payments work now and then
			as = unitActivities["team:payments"]
		}
	}
	if len(as) == 0 {
		as = unitActivities["group:leadership"]
	}
	return as
}

// decisions adds the decision events: a daily stream from people and services, the uses of
// just-in-time and break-glass grants, and the scripted ones; each checked against the map at its
// time.
func (g *gen) decisions() {
	c := &g.c
	var ps []pending
	var humans []*person
	for _, p := range g.people {
		if p != c.leaverDBA { // their activity is the scripted cron job below
			humans = append(humans, p)
		}
	}
	total := 0.0
	for _, p := range humans {
		total += p.weight
	}
	for day := Start; day.Before(End); day = day.AddDate(0, 0, 1) {
		f := 1.25
		if wd := day.Weekday(); wd == time.Saturday || wd == time.Sunday {
			f = 0.375
		}
		n := int(float64(g.o.DecisionsPerDay)*f*(0.85+0.3*g.r.Float64()) + 0.5)
		for range n {
			u := g.r.Float64()
			var who string
			var as []activity
			var t time.Time
			switch {
			case u < 0.13:
				who = "service:ci-bot"
			case u < 0.23:
				who = "service:etl"
			case u < 0.27:
				who = "agent:copilot-7"
			}
			if who != "" {
				as = serviceActivities[who]
				t = g.jitter(day, 24*time.Hour-time.Microsecond)
				if t.Before(g.bt) {
					continue
				}
			} else {
				t = g.jitter(day.Add(7*time.Hour+30*time.Minute), 12*time.Hour)
				var p *person
				for try := 0; try < 20 && p == nil; try++ {
					x := g.r.Float64() * total
					for _, q := range humans {
						if x < q.weight {
							p = q
							break
						}
						x -= q.weight
					}
					if p == nil || !p.employedAt(t.Add(-2*time.Hour)) {
						p = nil
					}
				}
				if p == nil {
					continue
				}
				who, as = p.id, g.activitiesFor(p, t)
			}
			a := pickActivity(g, as)
			ps = append(ps, pending{t: t, principal: who, action: a.action, res: a.resource})
		}
	}
	// Uses of just-in-time and break-glass grants.
	for _, w := range g.windows {
		span := w.to.Sub(w.from)
		for range 2 + g.r.IntN(4) {
			ps = append(ps, pending{t: g.jitter(w.from.Add(2*time.Minute), span*3/4), principal: w.p, action: w.action, res: w.resource})
		}
		if w.after {
			ps = append(ps, pending{t: g.jitter(w.to.Add(10*time.Minute), 50*time.Minute), principal: w.p, action: w.action, res: w.resource})
		}
	}
	ps = append(ps, g.scriptedDecisions()...)
	sort.SliceStable(ps, func(i, j int) bool { return ps[i].t.Before(ps[j].t) })

	m := newModel()
	next := 0
	for _, d := range ps {
		for next < len(g.changes) && !g.changes[next].Time.After(d.t) {
			m.apply(&g.changes[next])
			next++
		}
		effect, reason, policy := d.effect, d.reason, d.policy
		if !d.forced {
			ok, why := m.could(d.principal, d.action, d.res, d.t)
			effect, reason, policy = event.Deny, why, policyOf(d.res)
			if ok {
				effect = event.Allow
			}
		}
		g.emit(decisionSource(d.res), d.t, event.Decision, event.Data{Principal: d.principal, Action: d.action,
			Resource: d.res, Effect: effect, Reason: reason, Policy: policy, Request: fmt.Sprintf("%016x", g.r.Uint64())})
	}
}

func (g *gen) scriptedDecisions() []pending {
	c := &g.c
	var ps []pending
	// The incident night.
	for _, d := range []pending{
		{t: date(3, 16, 22, 31, 5), principal: c.jitUser.id, action: "db.table.alter", res: "db:prod/orders"},
		{t: date(3, 16, 23, 12, 48), principal: c.jitUser.id, action: "db.table.update", res: "db:prod/orders"},
		{t: date(3, 17, 1, 58, 20), principal: c.breakGlass.id, action: "db.table.select", res: "db:prod/orders"},
		{t: date(3, 17, 2, 5, 41), principal: c.breakGlass.id, action: "db.table.update", res: "db:prod/orders"},
		{t: date(3, 17, 2, 14, 31), principal: c.breakGlass.id, action: "db.table.drop", res: "db:prod/orders"},
		{t: date(3, 17, 2, 19, 12), principal: c.jitUser.id, action: "db.table.drop", res: "db:prod/orders"},
		{t: date(3, 17, 2, 31, 2), principal: c.breakGlass.id, action: "db.table.create", res: "db:prod/orders"},
	} {
		ps = append(ps, d)
	}
	// The DBA's nightly job keeps running after they left: Okta disabled them, the database
	// did not.
	for d := c.leaverDBA.left.AddDate(0, 0, 1); d.Before(date(5, 1, 0, 0, 0)); d = d.AddDate(0, 0, 1) {
		t := time.Date(d.Year(), d.Month(), d.Day(), 3, 0, 0, 0, time.UTC)
		ps = append(ps, pending{t: g.jitter(t, 5*time.Second), principal: c.leaverDBA.id, action: "db.table.select",
			res: "db:prod/orders", forced: true, effect: event.Allow, reason: "login role still valid in postgres", policy: "pg-privileges"})
	}
	// Before leaving, the same job, consistent with the map.
	for d := date(1, 2, 3, 0, 0); d.Before(c.leaverDBA.left); d = d.AddDate(0, 0, 1) {
		ps = append(ps, pending{t: g.jitter(d, 5*time.Second), principal: c.leaverDBA.id, action: "db.table.select", res: "db:prod/orders"})
	}
	// Shadow access: a legacy pg_hba rule lets a support engineer read payments.
	for _, t := range []time.Time{date(3, 5, 10, 12, 44), date(3, 12, 15, 3, 9), date(4, 2, 11, 47, 30)} {
		ps = append(ps, pending{t: t, principal: c.shadowUser.id, action: "db.table.select", res: "db:prod/payments",
			forced: true, effect: event.Allow, reason: "allowed by legacy rule support_ro", policy: "pg_hba:legacy-support-ro"})
	}
	// And the other way round: a stale policy bundle denies a legitimate approver.
	ps = append(ps, pending{t: date(5, 28, 10, 14, 7), principal: c.fpaManager.id, action: "payment.approve", res: "payments:prod",
		forced: true, effect: event.Deny, reason: "no rule matched (bundle payments/authz revision 41, stale)", policy: "payments.authz"})
	return ps
}
