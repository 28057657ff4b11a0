package demo

import (
	"time"

	"github.com/whocould/whocould/event"
)

func date(mo time.Month, d, h, mi, s int) time.Time {
	return time.Date(2026, mo, d, h, mi, s, 0, time.UTC)
}

func isEng(unit string) bool {
	ud := unitDefOf(unit)
	return ud != nil && ud.dept == "Engineering"
}

// Sources of change events, by what they change.
const (
	srcOkta      = "okta"
	srcGitHub    = "github"
	srcPGProd    = "postgres-prod"
	srcPGStaging = "postgres-staging"
	srcWarehouse = "warehouse"
	srcCodesec   = "codesec"
	srcPayments  = "payments"
	srcBreak     = "breakglass"
	srcOPA       = "opa"
)

func grantSource(resource string) string {
	switch k, p, _ := cutKind(resource); k {
	case "db":
		switch {
		case p == "prod" || len(p) > 5 && p[:5] == "prod/":
			return srcPGProd
		case len(p) >= 9 && p[:9] == "analytics":
			return srcWarehouse
		}
		return srcPGStaging
	case "codesec":
		return srcCodesec
	case "payments":
		return srcPayments
	case "repo":
		return srcGitHub
	}
	return srcOPA
}

func cutKind(r string) (kind, path string, ok bool) {
	for i := 0; i < len(r); i++ {
		if r[i] == ':' {
			return r[:i], r[i+1:], true
		}
	}
	return r, "", false
}

type roleDef struct {
	src, role string
	perms     []string
	includes  []string
}

var roleDefs = []roleDef{
	{srcCodesec, "role:developer", []string{"scan.view", "scan.run", "finding.view", "finding.triage"}, nil},
	{srcCodesec, "role:security-engineer", []string{"finding.dismiss", "policy.edit"}, []string{"role:developer"}},
	{srcCodesec, "role:manager", []string{"project.create", "member.invite"}, []string{"role:developer"}},
	{srcCodesec, "role:admin", []string{"role.assign", "member.remove", "project.delete"}, []string{"role:manager", "role:security-engineer"}},
	{srcCodesec, "role:owner", []string{"billing.manage", "org.settings"}, []string{"role:admin"}},
	{srcPGProd, "role:db-reader", []string{"db.table.select"}, nil},
	{srcPGProd, "role:db-writer", []string{"db.table.insert", "db.table.update", "db.table.delete"}, []string{"role:db-reader"}},
	{srcPGProd, "role:db-admin", []string{"db.table.create", "db.table.alter"}, []string{"role:db-writer"}},
	{srcPGProd, "role:db-owner", []string{"db.table.drop", "db.table.truncate"}, []string{"role:db-admin"}},
	{srcWarehouse, "role:legacy-reporting", []string{"db.table.select"}, nil},
	{srcGitHub, "role:repo-write", []string{"repo.pull", "repo.push"}, nil},
	{srcGitHub, "role:repo-admin", []string{"repo.admin", "repo.delete"}, []string{"role:repo-write"}},
	{srcPayments, "role:payment-clerk", []string{"payment.create", "payment.view"}, nil},
	{srcPayments, "role:payment-approver", []string{"payment.approve", "payment.view"}, nil},
}

func (g *gen) grant(src string, t time.Time, subject, role, action, resource, actor, approval string, expires *time.Time) event.Event {
	d := event.Data{Subject: subject, Role: role, Action: action, Resource: resource, Actor: actor, Approval: approval, ExpiresAt: expires}
	g.emit(src, t, event.GrantAdded, d)
	return event.Event{Type: event.GrantAdded, Data: d}
}

func (g *gen) revoke(t time.Time, subject, role, action, resource, actor string) {
	g.emit(grantSource(resource), t, event.GrantRemoved, event.Data{Subject: subject, Role: role, Action: action, Resource: resource, Actor: actor})
}

func (g *gen) member(src string, t time.Time, group, member, actor, approval string) {
	g.emit(src, t, event.MembershipAdded, event.Data{Group: group, Member: member, Actor: actor, Approval: approval})
}

func (g *gen) bootGrant(subject, role, action, resource string) {
	g.boot(grantSource(resource), event.GrantAdded, event.Data{Subject: subject, Role: role, Action: action, Resource: resource})
}

// managerOf is the manager of unit (its first initial member).
func (g *gen) managerOf(unit string) *person {
	for _, p := range g.people {
		if p.stints[0].unit == unit && p.joined.Equal(Start) {
			return p
		}
	}
	return g.c.vpEng
}

// bootstrap is the state on 1 January: the import of every system's current state.
func (g *gen) bootstrap() {
	c := &g.c
	// Roles.
	for _, r := range roleDefs {
		if r.role != "role:payment-clerk" { // known only from its first permission
			g.boot(r.src, event.RoleCreated, event.Data{Role: r.role})
		}
		for _, a := range r.perms {
			g.boot(r.src, event.RolePermissionAdded, event.Data{Role: r.role, Action: a})
		}
		for _, inc := range r.includes {
			g.boot(r.src, event.RoleIncludeAdded, event.Data{Role: r.role, Includes: inc})
		}
	}
	// Groups (team:sre is known only from its memberships).
	groups := []string{"group:all-staff"}
	groups = append(groups, deptGroups...)
	for _, u := range units {
		if u.parent != "" {
			groups = append(groups, u.group)
		}
	}
	groups = append(groups, "group:dba", "group:oncall", "group:eng-managers", "group:codesec-admins",
		"group:payment-approvers", "group:it-admins", "group:tech-leads", "group:architecture", "group:hackathon-2025")
	for _, gr := range groups {
		g.boot(srcOkta, event.GroupCreated, event.Data{Group: gr})
	}
	for _, d := range deptGroups {
		g.boot(srcOkta, event.MembershipAdded, event.Data{Group: "group:all-staff", Member: d})
	}
	for _, u := range units {
		if u.parent != "" {
			g.boot(srcOkta, event.MembershipAdded, event.Data{Group: u.parent, Member: u.group})
		}
	}
	g.boot(srcOkta, event.MembershipAdded, event.Data{Group: "group:dba", Member: "team:sre"})
	g.boot(srcOkta, event.MembershipAdded, event.Data{Group: "group:oncall", Member: "team:sre"})
	// The cycle: someone nested the councils both ways.
	g.boot(srcOkta, event.MembershipAdded, event.Data{Group: "group:architecture", Member: "group:tech-leads"})
	g.boot(srcOkta, event.MembershipAdded, event.Data{Group: "group:tech-leads", Member: "group:architecture"})

	// Principals and their teams.
	for _, p := range g.people {
		if !p.joined.Equal(Start) || p.contractor {
			continue
		}
		g.boot(srcOkta, event.PrincipalCreated, event.Data{Principal: p.id, Attributes: p.attrs()})
	}
	g.boot(srcGitHub, event.PrincipalCreated, event.Data{Principal: "service:ci-bot", Attributes: map[string]string{
		"kind": "service", "owner": c.platformManager.id, "description": "CI pipelines"}})
	g.boot(srcGitHub, event.PrincipalCreated, event.Data{Principal: "agent:copilot-7", Attributes: map[string]string{
		"kind": "ai-agent", "owner": c.appsecLead.id, "description": "AI triage assistant for code-security findings"}})
	g.boot(srcOkta, event.PrincipalCreated, event.Data{Principal: "service:access-broker", Attributes: map[string]string{
		"kind": "service", "owner": c.itDirector.id, "description": "just-in-time access broker"}})
	for _, p := range g.people {
		if !p.joined.Equal(Start) {
			continue
		}
		g.boot(srcOkta, event.MembershipAdded, event.Data{Group: p.unit, Member: p.id})
	}
	for _, p := range []*person{c.vpEng, c.ciso, c.vpSales, c.vpSupport, c.itDirector} {
		g.boot(srcOkta, event.MembershipAdded, event.Data{Group: "group:leadership", Member: p.id})
	}
	extra := []struct {
		group string
		ps    []*person
	}{
		{"group:dba", []*person{c.dba1, c.dba2, c.leaverDBA}},
		{"team:sre", c.sre},
		{"group:oncall", []*person{c.breakGlass, c.oncall2}},
		{"group:eng-managers", []*person{c.vpEng, g.managerOf("team:payments"), g.managerOf("team:platform"), g.managerOf("team:data"), c.webManager}},
		{"group:codesec-admins", []*person{c.ciso, c.appsecLead}},
		{"group:payment-approvers", []*person{c.cfo, c.fpaManager}},
		{"group:it-admins", []*person{c.itDirector, c.itAdmin1, c.itAdmin2}},
		{"group:tech-leads", c.techLeads},
		{"group:architecture", []*person{c.cto, c.vpEng}},
		{"group:hackathon-2025", []*person{c.techLeads[0], c.techLeads[2], c.unauthTarget}},
	}
	for _, x := range extra {
		for _, p := range x.ps {
			g.boot(srcOkta, event.MembershipAdded, event.Data{Group: x.group, Member: p.id})
		}
	}
	for _, p := range c.contractors { // the contractors' accounts exist only through this
		g.boot(srcOkta, event.MembershipAdded, event.Data{Group: "team:web", Member: p.id})
	}

	// Grants.
	g.bootGrant("group:all-staff", "", "wiki.read", "wiki:acme")
	g.bootGrant("group:security", "role:security-engineer", "", "codesec:acme")
	g.bootGrant("group:eng-managers", "role:manager", "", "codesec:acme")
	g.bootGrant("group:eng-managers", "", "iam.assign-role:role:developer", "codesec:acme")
	g.bootGrant("group:codesec-admins", "role:admin", "", "codesec:acme")
	g.bootGrant("group:codesec-admins", "", "iam.*", "codesec:acme")
	g.bootGrant(c.cto.id, "role:owner", "", "codesec:acme")
	g.bootGrant("agent:copilot-7", "role:developer", "", "codesec:acme")
	g.bootGrant("service:ci-bot", "", "scan.run", "codesec:acme")
	g.bootGrant("service:ci-bot", "", "scan.view", "codesec:acme")
	for _, p := range g.people {
		if p.joined.Equal(Start) && isEng(p.unit) && !p.contractor {
			g.bootGrant(p.id, "role:developer", "", "codesec:acme")
			g.dev[p.id] = true
		}
	}
	g.bootGrant("group:dba", "role:db-owner", "", "db:prod")
	g.bootGrant("group:dba", "role:db-owner", "", "db:staging")
	g.bootGrant("group:dba", "", "iam.*", "db:*")
	g.bootGrant("service:access-broker", "", "iam.*", "db:prod")
	g.bootGrant("group:oncall", "role:db-writer", "", "db:prod")
	g.bootGrant("team:payments", "role:db-reader", "", "db:prod")
	g.bootGrant("team:payments", "role:db-writer", "", "db:prod/orders")
	g.bootGrant("team:payments", "role:db-writer", "", "db:prod/payments")
	g.bootGrant("team:data", "role:db-reader", "", "db:prod")
	g.bootGrant("team:data", "role:db-admin", "", "db:analytics")
	g.bootGrant("team:fpa", "role:legacy-reporting", "", "db:analytics")
	g.bootGrant("group:engineering", "role:db-admin", "", "db:staging")
	g.bootGrant("group:hackathon-2025", "role:db-admin", "", "db:staging")
	g.bootGrant("group:support", "", "db.table.select", "db:prod/customers")
	g.bootGrant("service:etl", "role:db-reader", "", "db:prod") // service:etl exists only through its grants
	g.bootGrant("service:etl", "role:db-writer", "", "db:analytics")
	g.bootGrant("service:ci-bot", "", "db.table.create", "db:prod")
	g.bootGrant("service:ci-bot", "", "db.table.alter", "db:prod")
	g.bootGrant("service:ci-bot", "role:db-admin", "", "db:staging")
	g.bootGrant("agent:copilot-7", "", "db.table.select", "db:staging")
	g.bootGrant("group:engineering", "role:repo-write", "", "repo:acme")
	g.bootGrant("team:platform", "role:repo-admin", "", "repo:acme/infra")
	g.bootGrant("group:architecture", "role:repo-admin", "", "repo:acme")
	g.bootGrant("group:security", "", "repo.pull", "repo:acme")
	g.bootGrant("service:ci-bot", "", "repo.push", "repo:acme")
	g.bootGrant("team:accounts-payable", "role:payment-clerk", "", "payments:prod")
	g.bootGrant("group:payment-approvers", "role:payment-approver", "", "payments:prod")
	g.bootGrant("team:fpa", "", "payment.view", "payments:prod")
	g.bootGrant(c.cfo.id, "", "iam.grant", "payments:prod")
	g.bootGrant("group:it-admins", "", "iam.*", "group:*")
	g.bootGrant("group:it-admins", "", "iam.*", "team:*")
}

// story is the six months after the bootstrap.
func (g *gen) story() {
	c := &g.c
	itActor := func() string {
		if g.r.IntN(3) == 0 {
			return c.itAdmin2.id
		}
		return c.itAdmin1.id
	}
	business := func(t time.Time, h int) time.Time {
		for t.Weekday() == time.Saturday || t.Weekday() == time.Sunday {
			t = t.AddDate(0, 0, 1)
		}
		return g.jitter(time.Date(t.Year(), t.Month(), t.Day(), h, 0, 0, 0, time.UTC), 3*time.Hour)
	}

	// Joiners.
	for _, p := range g.people {
		if p.joined.Equal(Start) {
			continue
		}
		actor := itActor()
		g.emit(srcOkta, p.joined, event.PrincipalCreated, event.Data{Principal: p.id, Attributes: p.attrs(), Actor: actor})
		g.member(srcOkta, g.jitter(p.joined.Add(time.Minute), 20*time.Minute), p.unit, p.id, actor, "")
		if isEng(p.unit) {
			t := business(p.joined.AddDate(0, 0, 1+g.r.IntN(3)), 10)
			g.grant(srcCodesec, t, p.id, "role:developer", "", "codesec:acme", g.managerOf(p.unit).id, "", nil)
			g.dev[p.id] = true
		}
	}

	// Movers.
	for _, p := range g.people {
		if p.moved.IsZero() || p == c.sod || p == c.creep {
			continue
		}
		from, to := p.stints[0].unit, p.stints[1].unit
		ud := unitDefOf(to)
		p.title = ud.titles[g.r.IntN(len(ud.titles))]
		p.dept, p.unit, p.manager = ud.dept, to, g.managerOf(to).id
		actor := itActor()
		g.emit(srcOkta, p.moved, event.PrincipalUpdated, event.Data{Principal: p.id, Actor: actor, Attributes: map[string]string{
			"department": p.dept, "team": to, "title": p.title, "manager": p.manager}})
		g.member(srcOkta, p.moved.Add(3*time.Minute), to, p.id, actor, "")
		if !p.keepOld {
			g.emit(srcOkta, business(p.moved.AddDate(0, 0, g.r.IntN(4)), 14), event.MembershipRemoved,
				event.Data{Group: from, Member: p.id, Actor: actor})
			if isEng(from) && !isEng(to) && g.dev[p.id] {
				g.revoke(business(p.moved.AddDate(0, 0, 2), 11), p.id, "role:developer", "", "codesec:acme", c.ciso.id)
				g.dev[p.id] = false
			}
		}
		if isEng(to) && !g.dev[p.id] {
			g.grant(srcCodesec, business(p.moved.AddDate(0, 0, 1), 10), p.id, "role:developer", "", "codesec:acme", p.manager, "", nil)
			g.dev[p.id] = true
		}
	}

	g.leavers()
	g.jitAndBreakGlass()
	g.scripted()
}

func (g *gen) leavers() {
	c := &g.c
	var ls []*person
	for _, p := range g.people {
		if !p.left.IsZero() {
			ls = append(ls, p)
		}
	}
	deleted := false
	for i, p := range ls {
		actor := c.itAdmin1.id
		g.emit(srcOkta, p.left, event.PrincipalDisabled, event.Data{Principal: p.id, Actor: actor})
		if p == c.leaverDBA || i%5 == 4 { // never cleaned up: access after deprovisioning
			continue
		}
		t := g.jitter(p.left.AddDate(0, 0, 1+g.r.IntN(10)), 4*time.Hour)
		if !t.Before(End.Add(-time.Hour)) {
			continue
		}
		g.emit(srcOkta, t, event.MembershipRemoved, event.Data{Group: p.unitAt(p.left), Member: p.id, Actor: actor})
		if g.dev[p.id] {
			g.revoke(t.Add(17*time.Minute), p.id, "role:developer", "", "codesec:acme", c.ciso.id)
		}
		if d := t.AddDate(0, 0, 14); !deleted && d.Before(End) {
			deleted = true
			c.deleted = p
			g.emit(srcOkta, d, event.PrincipalDeleted, event.Data{Principal: p.id, Actor: actor})
		}
	}
}

type window struct {
	p        string
	action   string
	resource string
	from, to time.Time
	after    bool // also try once after the expiry
}

func (g *gen) jitAndBreakGlass() {
	c := &g.c
	var pool []*person
	for _, u := range []string{"team:payments", "team:data", "team:platform"} {
		for _, p := range g.members(u) {
			if p.manager != g.c.vpEng.id && p != c.dba1 && p != c.dba2 && p != c.leaverDBA {
				pool = append(pool, p)
			}
		}
	}
	targets := []struct{ role, action, resource string }{
		{"role:db-writer", "db.table.update", "db:prod/orders"},
		{"role:db-writer", "db.table.delete", "db:prod/payments"},
		{"role:db-admin", "db.table.alter", "db:prod/invoices"},
		{"role:db-writer", "db.table.update", "db:prod/customers"},
	}
	for week := 0; week < 25; week++ {
		ws := Start.AddDate(0, 0, 5+7*week)
		for range 1 + g.r.IntN(3) {
			t := g.weekday(ws, ws.AddDate(0, 0, 7), 10, 6*time.Hour)
			p := g.pick(pool)
			if !p.employedAt(t) || !p.employedAt(t.Add(12*time.Hour)) {
				continue
			}
			// Keep the incident night clean: the questions about it are about the cast.
			if t.After(date(3, 16, 0, 0, 0)) && t.Before(date(3, 18, 0, 0, 0)) {
				continue
			}
			tg := targets[g.r.IntN(len(targets))]
			approver := c.dba1
			if g.r.IntN(2) == 0 {
				approver = c.dba2
			}
			hours := time.Duration(2+g.r.IntN(7)) * time.Hour
			wait := time.Duration(5+g.r.IntN(35)) * time.Minute
			granted := g.r.IntN(7) != 0
			ch := event.Event{Type: event.GrantAdded, Data: event.Data{Subject: p.id, Role: tg.role, Resource: tg.resource}}
			req := g.request("JIT", t, p.id, ch, "data fix for a support ticket", approver.id, granted, wait)
			if !granted {
				continue
			}
			from := t.Add(wait + time.Minute)
			exp := from.Add(hours)
			g.grant(srcPGProd, from, p.id, tg.role, "", tg.resource, "service:access-broker", req, &exp)
			g.windows = append(g.windows, window{p.id, tg.action, tg.resource, from, exp, g.r.IntN(3) == 0})
		}
	}
	// Break-glass, about once a month, at night.
	for i, d := range []time.Time{date(1, 24, 1, 10, 0), date(2, 13, 3, 40, 0), date(4, 9, 0, 25, 0), date(5, 21, 2, 5, 0), date(6, 12, 23, 30, 0)} {
		holder := []*person{c.oncall2, c.sre[1], c.breakGlass, c.oncall2, c.sre[2]}[i]
		g.breakGlassAt(g.jitter(d, 20*time.Minute), holder, 4*time.Hour)
	}
}

func (g *gen) breakGlassAt(t time.Time, p *person, d time.Duration) {
	c := &g.c
	ch := event.Event{Type: event.GrantAdded, Data: event.Data{Subject: p.id, Role: "role:db-owner", Resource: "db:prod"}}
	// Break-glass is approved afterwards, the next morning.
	morning := time.Date(t.Year(), t.Month(), t.Day(), 9, 0, 0, 0, time.UTC)
	if t.Hour() >= 9 {
		morning = morning.AddDate(0, 0, 1)
	}
	req := g.request("BG", t, p.id, ch, "break-glass: production incident", c.platformManager.id, true, g.jitter(morning, 30*time.Minute).Sub(t))
	exp := t.Add(d)
	g.grant(srcBreak, t.Add(time.Minute), p.id, "role:db-owner", "", "db:prod", "service:access-broker", req, &exp)
	g.windows = append(g.windows, window{p.id, "db.table.update", "db:prod/orders", t.Add(time.Minute), exp, false})
}

// scripted emits the stories the questions are about.
func (g *gen) scripted() {
	c := &g.c
	// A rejected request.
	sales := g.members("group:sales")[1]
	g.request("CHG", date(1, 8, 14, 2, 11), sales.id, event.Event{Type: event.GrantAdded,
		Data: event.Data{Subject: sales.id, Role: "role:db-reader", Resource: "db:prod/customers"}},
		"customer list for Q1 campaign", c.dba1.id, false, 3*time.Hour)

	// A direct, approved grant that nobody ever uses.
	t := date(1, 21, 10, 30, 4)
	ch := g.grantEvent(c.adhocDBA.id, "role:db-admin", "", "db:prod/customers")
	req := g.request("CHG", t, c.adhocDBA.id, ch, "GDPR erasure tooling", c.dba1.id, true, 41*time.Minute)
	g.grant(srcPGProd, t.Add(45*time.Minute), c.adhocDBA.id, "role:db-admin", "", "db:prod/customers", c.dba1.id, req, nil)

	// The hackathon group is cleaned up.
	g.emit(srcOkta, date(2, 3, 15, 12, 40), event.GroupDeleted, event.Data{Group: "group:hackathon-2025", Actor: c.itAdmin1.id})

	// A manager assigns a role managers may not assign.
	g.grant(srcCodesec, date(2, 11, 10, 23, 5), c.unauthTarget.id, "role:security-engineer", "", "codesec:acme", c.webManager.id, "", nil)

	// The DBA who leaves and keeps everything (disabled by the leavers loop).

	// A promotion: the accounts-payable specialist becomes an approver and stays a clerk.
	c.sod.title = "Accounts Payable Lead"
	g.emit(srcOkta, c.sod.moved, event.PrincipalUpdated, event.Data{Principal: c.sod.id, Actor: c.itAdmin1.id,
		Attributes: map[string]string{"title": c.sod.title}})
	ch = event.Event{Type: event.MembershipAdded, Data: event.Data{Group: "group:payment-approvers", Member: c.sod.id}}
	req = g.request("CHG", c.sod.moved.Add(-26*time.Hour), c.apManager.id, ch, "cover approvals during the close", c.cfo.id, true, 5*time.Hour)
	g.member(srcOkta, c.sod.moved.Add(10*time.Minute), "group:payment-approvers", c.sod.id, c.itAdmin1.id, req)

	// A product release adds a permission to role:developer.
	g.emit(srcCodesec, date(3, 3, 6, 0, 0), event.RolePermissionAdded, event.Data{Role: "role:developer", Action: "sbom.export"})

	// Someone is disabled by mistake and enabled again.
	oops := g.c.mistaken
	g.emit(srcOkta, date(3, 9, 9, 14, 2), event.PrincipalDisabled, event.Data{Principal: oops.id, Actor: c.itAdmin2.id})
	g.emit(srcOkta, date(3, 9, 9, 52, 40), event.PrincipalEnabled, event.Data{Principal: oops.id, Actor: c.itAdmin2.id})

	// The incident night, 16–17 March.
	t = date(3, 16, 21, 51, 30)
	ch = g.grantEvent(c.jitUser.id, "role:db-owner", "", "db:prod/orders")
	req = g.request("JIT", t, c.jitUser.id, ch, "orders table migration (INC-2291)", c.dba1.id, true, 7*time.Minute)
	exp := date(3, 17, 2, 0, 0)
	g.grant(srcPGProd, date(3, 16, 22, 0, 0), c.jitUser.id, "role:db-owner", "", "db:prod/orders", "service:access-broker", req, &exp)
	g.breakGlassAt(date(3, 17, 1, 51, 17), c.breakGlass, 4*time.Hour)

	// The creep: a payments engineer moves to data and keeps team:payments.
	p := c.creep
	p.title, p.unit, p.manager = "Data Engineer", "team:data", c.dataManager.id
	g.emit(srcOkta, p.moved, event.PrincipalUpdated, event.Data{Principal: p.id, Actor: c.itAdmin1.id, Attributes: map[string]string{
		"team": "team:data", "title": p.title, "manager": p.manager}})
	g.member(srcOkta, p.moved.Add(4*time.Minute), "team:data", p.id, c.itAdmin1.id, "")

	// A privileged role gains a permission, without approval.
	g.emit(srcPGProd, date(4, 14, 16, 42, 10), event.RolePermissionAdded, event.Data{Role: "role:db-writer", Action: "db.table.truncate", Actor: c.dba2.id})

	// The AI agent may now dismiss findings in one project.
	t = date(4, 22, 14, 5, 0)
	ch = g.grantEvent("agent:copilot-7", "role:security-engineer", "", "codesec:acme/payments-api")
	req = g.request("CHG", t, c.appsecLead.id, ch, "let the triage agent auto-dismiss false positives", c.ciso.id, true, 2*time.Hour)
	g.grant(srcCodesec, t.Add(2*time.Hour+3*time.Minute), "agent:copilot-7", "role:security-engineer", "", "codesec:acme/payments-api", c.appsecLead.id, req, nil)

	// The legacy reporting role is retired.
	g.grant(srcWarehouse, date(5, 4, 10, 0, 0), "team:fpa", "role:db-reader", "", "db:analytics", c.dba1.id, "", nil)
	g.emit(srcWarehouse, date(5, 4, 11, 0, 0), event.RoleDeleted, event.Data{Role: "role:legacy-reporting", Actor: c.dba1.id})

	// An approval granted by its own requester.
	t = date(5, 7, 11, 20, 9)
	ch = event.Event{Type: event.MembershipAdded, Data: event.Data{Group: "group:it-admins", Member: c.newAdmin.id}}
	req = g.request("CHG", t, c.itAdmin2.id, ch, "second on-call IT admin", c.itAdmin2.id, true, 2*time.Minute)
	g.member(srcOkta, t.Add(5*time.Minute), "group:it-admins", c.newAdmin.id, c.itAdmin2.id, req)

	// Someone changes their own access: the appsec lead makes themself owner.
	g.grant(srcCodesec, date(5, 19, 11, 2, 33), c.appsecLead.id, "role:owner", "", "codesec:acme", c.appsecLead.id, "", nil)

	// A role refactoring that changes nothing effective (a definition drift all the same).
	t = date(6, 2, 8, 30, 0)
	for i, a := range []string{"scan.view", "scan.run", "finding.view", "finding.triage"} {
		g.emit(srcCodesec, t.Add(time.Duration(i)*time.Second), event.RolePermissionAdded, event.Data{Role: "role:security-engineer", Action: a, Actor: c.appsecLead.id})
	}
	g.emit(srcCodesec, t.Add(10*time.Second), event.RoleIncludeRemoved, event.Data{Role: "role:security-engineer", Includes: "role:developer", Actor: c.appsecLead.id})
	g.emit(srcCodesec, t.Add(20*time.Second), event.RolePermissionRemoved, event.Data{Role: "role:security-engineer", Action: "policy.edit", Actor: c.appsecLead.id})
	g.emit(srcCodesec, t.Add(21*time.Second), event.RolePermissionAdded, event.Data{Role: "role:admin", Action: "policy.edit", Actor: c.appsecLead.id})
}

func (g *gen) grantEvent(subject, role, action, resource string) event.Event {
	return event.Event{Type: event.GrantAdded, Data: event.Data{Subject: subject, Role: role, Action: action, Resource: resource}}
}
