package demo

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"sort"
	"time"

	"github.com/whocould/whocould/event"
)

type stint struct {
	from time.Time
	unit string
}

type person struct {
	id, first, last, dept, unit, title, manager, location string
	contractor                                            bool
	joined, left, moved                                   time.Time
	stints                                                []stint
	keepOld                                               bool // a mover who kept the old team
	weight                                                float64
}

// unitAt is the team (or department group) p belonged to at t, by HR's record.
func (p *person) unitAt(t time.Time) string {
	u := p.stints[0].unit
	for _, s := range p.stints {
		if !t.Before(s.from) {
			u = s.unit
		}
	}
	return u
}

func (p *person) employedAt(t time.Time) bool {
	return !t.Before(p.joined) && (p.left.IsZero() || t.Before(p.left))
}

type unitDef struct {
	dept, group, parent string
	share               float64
	min                 int
	mgrTitle            string
	titles              []string
	weight              float64 // how many decisions its people make, relative
}

var units = []unitDef{
	{"Engineering", "team:payments", "group:engineering", .10, 7, "Engineering Manager", []string{"Software Engineer", "Senior Software Engineer", "Backend Engineer"}, 1.6},
	{"Engineering", "team:platform", "group:engineering", .10, 10, "Engineering Manager", []string{"Platform Engineer", "Senior Platform Engineer", "Site Reliability Engineer"}, 1.6},
	{"Engineering", "team:data", "group:engineering", .09, 6, "Engineering Manager", []string{"Data Engineer", "Senior Data Engineer", "Analytics Engineer"}, 1.6},
	{"Engineering", "team:web", "group:engineering", .13, 5, "Engineering Manager", []string{"Frontend Engineer", "Software Engineer", "Senior Software Engineer"}, 1.4},
	{"Security", "team:appsec", "group:security", .03, 3, "Application Security Lead", []string{"Application Security Engineer", "Security Engineer"}, 1.3},
	{"Security", "team:secops", "group:security", .03, 3, "Security Operations Lead", []string{"Security Analyst", "Detection Engineer"}, 1.0},
	{"Finance", "team:accounts-payable", "group:finance", .04, 4, "Accounts Payable Manager", []string{"Accounts Payable Specialist", "Payments Clerk"}, 1.2},
	{"Finance", "team:fpa", "group:finance", .04, 3, "Finance Manager", []string{"Financial Analyst", "Senior Financial Analyst"}, 0.8},
	{"Sales", "group:sales", "", .19, 4, "Sales Manager", []string{"Account Executive", "Sales Development Representative", "Solutions Engineer"}, 0.35},
	{"Support", "group:support", "", .16, 4, "Support Manager", []string{"Support Engineer", "Customer Support Specialist"}, 0.8},
	{"IT", "group:it", "", .05, 4, "IT Manager", []string{"IT Administrator", "Systems Administrator", "IT Support Specialist"}, 0.6},
}

func unitDefOf(group string) *unitDef {
	for i := range units {
		if units[i].group == group {
			return &units[i]
		}
	}
	return nil
}

var deptGroups = []string{"group:engineering", "group:security", "group:finance", "group:sales", "group:support", "group:it", "group:leadership"}

var firstNames = []string{"anna", "ben", "carla", "david", "elena", "felix", "grace", "hugo", "ines", "jonas",
	"karin", "liam", "maya", "noah", "olivia", "paul", "quinn", "rosa", "samir", "tara", "umar", "vera",
	"william", "xenia", "yusuf", "zoe", "aisha", "bruno", "chloe", "daniel", "emma", "farid", "gustav",
	"hannah", "ivan", "julia", "kenji", "lena", "marco", "nina", "oscar", "priya", "rafael", "sofia",
	"tomas", "ursula", "victor", "wei", "yara", "adam", "bianca", "conor", "dalia", "erik", "fatima",
	"georg", "helena", "isaac", "jana", "kofi", "lucia", "mateo", "nora", "pedro", "ruth", "sven"}

var lastNames = []string{"schmidt", "mueller", "garcia", "smith", "jones", "rossi", "novak", "kowalski",
	"silva", "dubois", "jensen", "nakamura", "okafor", "patel", "chen", "kim", "larsen", "moreau", "weber",
	"fischer", "brown", "taylor", "wilson", "costa", "ferreira", "hansen", "berg", "lindqvist", "santos",
	"murphy", "oneill", "kelly", "walsh", "schneider", "becker", "hoffmann", "martin", "bernard", "romano",
	"ricci", "ivanova", "petrov", "horvat", "nagy", "svoboda", "andersen", "nielsen", "kaur", "singh",
	"ahmed", "hassan", "yilmaz", "demir", "tanaka", "suzuki", "wang", "li", "zhang", "lopez", "martinez",
	"gonzalez", "fernandez", "baker", "clarke", "wright", "hughes", "evans", "thomas", "roberts", "walker"}

var locations = []string{"Berlin", "Berlin", "London", "London", "Lisbon", "New York", "Remote"}

type cast struct {
	ceo, cto, cfo, vpEng, ciso, vpSales, vpSupport, itDirector *person

	dba1, dba2, leaverDBA        *person
	sre                          []*person
	breakGlass, oncall2, creep   *person
	jitUser, adhocDBA            *person
	webManager, unauthTarget     *person
	appsecLead                   *person
	sod, apManager, fpaManager   *person
	shadowUser                   *person
	itAdmin1, itAdmin2, newAdmin *person
	techLeads                    []*person
	contractors                  []*person
	deleted                      *person
	platformManager, dataManager *person
	mistaken                     *person
}

type gen struct {
	r      *rand.Rand
	o      Options
	evs    []event.Event
	people []*person
	byID   map[string]*person
	names  map[string]bool
	c      cast
	// bootstrap clock
	bt time.Time
	// the last approval request number per prefix
	reqSeq map[string]int
	// the change events in event-time order once finishChanges ran
	changes []event.Event
	// dev is who holds role:developer on codesec:acme directly
	dev map[string]bool
	// windows are just-in-time and break-glass grants, for the decisions that use them
	windows []window
}

func newGen(seed uint64, o Options) *gen {
	return &gen{
		r:      rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		o:      o,
		byID:   map[string]*person{},
		names:  map[string]bool{},
		bt:     Start.Add(time.Minute),
		reqSeq: map[string]int{},
		dev:    map[string]bool{},
	}
}

// emit appends an event; IDs are assigned in finish.
func (g *gen) emit(src string, t time.Time, typ event.Type, d event.Data) {
	t = t.UTC().Truncate(time.Microsecond)
	if t.Before(Start) || !t.Before(End) {
		panic(fmt.Sprintf("demo: %s event at %s outside the history", typ, t))
	}
	if g.o.Tenant != "" {
		d.Tenant = g.o.Tenant
	}
	g.evs = append(g.evs, event.Event{Source: src, Type: typ, Time: t, Data: d})
}

// boot emits a bootstrap event on the bootstrap clock (a second or so apart).
func (g *gen) boot(src string, typ event.Type, d event.Data) {
	g.emit(src, g.bt, typ, d)
	g.bt = g.bt.Add(time.Second + time.Duration(g.r.IntN(900_000))*time.Microsecond)
}

// jitter is t plus up to d, at microsecond resolution.
func (g *gen) jitter(t time.Time, d time.Duration) time.Time {
	return t.Add(time.Duration(g.r.Int64N(int64(d/time.Microsecond)+1)) * time.Microsecond)
}

// weekday is a random weekday in [from, to) at hour h plus up to span of jitter.
func (g *gen) weekday(from, to time.Time, h int, span time.Duration) time.Time {
	days := int(to.Sub(from) / (24 * time.Hour))
	for {
		d := from.AddDate(0, 0, g.r.IntN(days))
		if wd := d.Weekday(); wd != time.Saturday && wd != time.Sunday {
			d = time.Date(d.Year(), d.Month(), d.Day(), h, 0, 0, 0, time.UTC)
			return g.jitter(d, span)
		}
	}
}

func (g *gen) pick(ps []*person) *person { return ps[g.r.IntN(len(ps))] }

func (g *gen) newPerson(unit, title, manager string, joined time.Time) *person {
	ud := unitDefOf(unit)
	dept := "Executive"
	if ud != nil {
		dept = ud.dept
	}
	var first, last, id string
	for {
		first, last = firstNames[g.r.IntN(len(firstNames))], lastNames[g.r.IntN(len(lastNames))]
		id = "user:" + first + "." + last
		if !g.names[id] {
			break
		}
		if g.r.IntN(4) == 0 { // a namesake: the IdP adds a digit
			for n := 2; ; n++ {
				if x := fmt.Sprintf("%s%d", id, n); !g.names[x] {
					id = x
					break
				}
			}
			break
		}
	}
	g.names[id] = true
	w := 1.0
	if ud != nil {
		w = ud.weight
	}
	p := &person{id: id, first: first, last: last, dept: dept, unit: unit, title: title, manager: manager,
		location: locations[g.r.IntN(len(locations))], joined: joined, stints: []stint{{joined, unit}}, weight: w}
	g.people = append(g.people, p)
	g.byID[id] = p
	return p
}

func (p *person) name() string { return capitalise(p.first) + " " + capitalise(p.last) }

func capitalise(s string) string {
	if s == "" {
		return s
	}
	return string(s[0]-'a'+'A') + s[1:]
}

func (p *person) email() string {
	local := p.id[len("user:"):]
	if p.contractor {
		return local + "@contractors.acme.io"
	}
	return local + "@acme.io"
}

func (p *person) attrs() map[string]string {
	a := map[string]string{
		"email":      p.email(),
		"name":       p.name(),
		"department": p.dept,
		"title":      p.title,
		"location":   p.location,
		"team":       p.unit,
		"employment": "employee",
	}
	if p.contractor {
		a["employment"] = "contractor"
	}
	if p.manager != "" {
		a["manager"] = p.manager
	}
	return a
}

// members lists the people whose first stint is unit, in creation order.
func (g *gen) members(unit string) []*person {
	var out []*person
	for _, p := range g.people {
		if p.stints[0].unit == unit && p.joined.Equal(Start) {
			out = append(out, p)
		}
	}
	return out
}

func (g *gen) buildOrg() {
	c := &g.c
	c.ceo = g.newPerson("group:leadership", "Chief Executive Officer", "", Start)
	c.cto = g.newPerson("group:leadership", "Chief Technology Officer", c.ceo.id, Start)
	c.cfo = g.newPerson("group:leadership", "Chief Financial Officer", c.ceo.id, Start)
	c.vpEng = g.newPerson("group:engineering", "VP Engineering", c.cto.id, Start)
	c.ciso = g.newPerson("group:security", "Chief Information Security Officer", c.ceo.id, Start)
	c.vpSales = g.newPerson("group:sales", "VP Sales", c.ceo.id, Start)
	c.vpSupport = g.newPerson("group:support", "VP Support", c.ceo.id, Start)
	c.itDirector = g.newPerson("group:it", "IT Director", c.cto.id, Start)
	heads := map[string]*person{"Engineering": c.vpEng, "Security": c.ciso, "Finance": c.cfo, "Sales": c.vpSales,
		"Support": c.vpSupport, "IT": c.itDirector}

	joiners := g.o.People / 10
	base := g.o.People - joiners - len(g.people)
	total := 0.0
	for _, u := range units {
		total += u.share
	}
	managers := map[string]*person{}
	for _, u := range units {
		n := max(u.min, int(float64(base)*u.share/total+0.5))
		m := g.newPerson(u.group, u.mgrTitle, heads[u.dept].id, Start)
		managers[u.group] = m
		for i := 1; i < n; i++ {
			title := u.titles[g.r.IntN(len(u.titles))]
			if i == 1 && u.dept == "Engineering" {
				title = "Staff Engineer"
			}
			g.newPerson(u.group, title, m.id, Start)
		}
	}
	// Joiners, spread over February to June.
	for i := 0; i < joiners; i++ {
		u := g.pickUnit()
		t := g.weekday(time.Date(2026, 2, 2, 0, 0, 0, 0, time.UTC), time.Date(2026, 6, 27, 0, 0, 0, 0, time.UTC), 8, 90*time.Minute)
		ud := unitDefOf(u)
		g.newPerson(u, ud.titles[g.r.IntN(len(ud.titles))], managers[u].id, t)
	}

	// The cast.
	pay, plat, data, web := g.members("team:payments"), g.members("team:platform"), g.members("team:data"), g.members("team:web")
	c.platformManager, c.dataManager = plat[0], data[0]
	c.dba1, c.dba2, c.leaverDBA = plat[3], plat[4], plat[5]
	for _, p := range []*person{c.dba1, c.dba2, c.leaverDBA} {
		p.title = "Database Reliability Engineer"
	}
	c.sre = []*person{plat[6], plat[7], plat[8]}
	for _, p := range c.sre {
		p.title = "Site Reliability Engineer"
	}
	c.breakGlass, c.oncall2, c.creep = pay[2], pay[3], pay[4]
	c.jitUser, c.adhocDBA = data[2], data[3]
	c.adhocDBA.title = "Senior Data Engineer"
	c.webManager, c.unauthTarget = web[0], web[2]
	c.appsecLead = g.members("team:appsec")[0]
	ap := g.members("team:accounts-payable")
	c.apManager, c.sod = ap[0], ap[1]
	c.sod.title = "Senior Accounts Payable Specialist"
	c.fpaManager = g.members("team:fpa")[0]
	c.shadowUser = g.members("group:support")[1]
	c.mistaken = g.members("group:support")[2]
	it := g.members("group:it")
	c.itAdmin1, c.itAdmin2, c.newAdmin = it[1], it[2], it[3]
	c.itAdmin1.title, c.itAdmin2.title = "IT Administrator", "Senior IT Administrator"
	for _, team := range [][]*person{pay, plat, data, web} {
		c.techLeads = append(c.techLeads, team[1])
	}
	// Two contractors in team:web, known only from their first membership.
	for range 2 {
		p := g.newPerson("team:web", "Contract Frontend Developer", c.webManager.id, Start)
		p.contractor = true
		c.contractors = append(c.contractors, p)
	}

	g.planLeaversAndMovers()
}

func (g *gen) pickUnit() string {
	x := g.r.Float64() * 1.0
	total := 0.0
	for _, u := range units {
		total += u.share
	}
	x *= total
	for _, u := range units {
		if x < u.share {
			return u.group
		}
		x -= u.share
	}
	return units[len(units)-1].group
}

// inCast reports whether p plays a part in a scripted story (and so is no random leaver or
// mover).
func (g *gen) inCast(p *person) bool {
	c := &g.c
	for _, q := range []*person{c.ceo, c.cto, c.cfo, c.vpEng, c.ciso, c.vpSales, c.vpSupport, c.itDirector,
		c.dba1, c.dba2, c.leaverDBA, c.breakGlass, c.oncall2, c.creep, c.jitUser, c.adhocDBA, c.webManager,
		c.unauthTarget, c.appsecLead, c.sod, c.apManager, c.fpaManager, c.shadowUser, c.itAdmin1, c.itAdmin2,
		c.newAdmin, c.platformManager, c.dataManager, c.mistaken} {
		if p == q {
			return true
		}
	}
	for _, l := range [][]*person{c.sre, c.techLeads, c.contractors} {
		for _, q := range l {
			if p == q {
				return true
			}
		}
	}
	return false
}

type leaver struct {
	p       *person
	cleanup time.Time // zero: never cleaned up
	deleted time.Time
}

type mover struct {
	p    *person
	to   string
	at   time.Time
	keep bool
}

func (g *gen) planLeaversAndMovers() {
	var pool []*person
	for _, p := range g.people {
		if p.joined.Equal(Start) && !g.inCast(p) && p.manager != "" && unitDefOf(p.unit) != nil &&
			unitDefOf(p.unit).mgrTitle != p.title {
			pool = append(pool, p)
		}
	}
	g.r.Shuffle(len(pool), func(i, j int) { pool[i], pool[j] = pool[j], pool[i] })
	nLeave := g.o.People * 7 / 100
	nMove := g.o.People * 5 / 100
	for i := 0; i < nLeave && len(pool) > 0; i++ {
		p := pool[0]
		pool = pool[1:]
		p.left = g.weekday(time.Date(2026, 1, 12, 0, 0, 0, 0, time.UTC), time.Date(2026, 6, 20, 0, 0, 0, 0, time.UTC), 17, 2*time.Hour)
	}
	for i := 0; i < nMove && len(pool) > 0; i++ {
		p := pool[0]
		pool = pool[1:]
		to := p.unit
		for to == p.unit {
			to = g.pickUnit()
		}
		p.moved = g.weekday(time.Date(2026, 2, 2, 0, 0, 0, 0, time.UTC), time.Date(2026, 6, 20, 0, 0, 0, 0, time.UTC), 9, 2*time.Hour)
		p.stints = append(p.stints, stint{p.moved, to})
		p.keepOld = g.r.IntN(2) == 0
	}
	// The scripted leaver and mover.
	c := &g.c
	c.leaverDBA.left = time.Date(2026, 2, 20, 17, 5, 12, 0, time.UTC)
	c.creep.moved = time.Date(2026, 4, 6, 9, 12, 40, 0, time.UTC)
	c.creep.stints = append(c.creep.stints, stint{c.creep.moved, "team:data"})
	c.creep.keepOld = true
	c.sod.moved = time.Date(2026, 3, 2, 10, 4, 9, 0, time.UTC) // a promotion, same team
}

// finish sorts the events by time (change events at distinct times) and assigns the IDs.
func (g *gen) finish() []event.Event {
	evs := g.evs
	sort.SliceStable(evs, func(i, j int) bool { return evs[i].Time.Before(evs[j].Time) })
	seq := map[string]int{}
	for i := range evs {
		seq[evs[i].Source]++
		evs[i].ID = fmt.Sprintf("%s-%s-%07d", idPrefix[evs[i].Source], evs[i].Time.Format("200601"), seq[evs[i].Source])
	}
	return evs
}

var idPrefix = map[string]string{
	"okta": "okta", "github": "gh", "postgres-prod": "pgprod", "postgres-staging": "pgstg", "warehouse": "wh",
	"codesec": "cs", "payments": "pay", "approvals": "chg", "breakglass": "bg", "opa": "opa",
}

// finishChanges sorts the change events, gives each a distinct time, and keeps them for the
// decision generator.
func (g *gen) finishChanges() {
	evs := g.evs
	sort.SliceStable(evs, func(i, j int) bool { return evs[i].Time.Before(evs[j].Time) })
	for i := 1; i < len(evs); i++ {
		if !evs[i].Time.After(evs[i-1].Time) {
			evs[i].Time = evs[i-1].Time.Add(time.Microsecond)
		}
	}
	g.changes = nil
	for _, e := range evs {
		if e.Type.IsChange() {
			g.changes = append(g.changes, e)
		}
	}
}

// request starts an approval: approval.requested now, then granted (or rejected) after wait.
func (g *gen) request(prefix string, t time.Time, requester string, ch event.Event, reason, approver string, granted bool, wait time.Duration) string {
	g.reqSeq[prefix]++
	id := fmt.Sprintf("%s-%04d", prefix, 1000+g.reqSeq[prefix])
	body, err := json.Marshal(struct {
		Type event.Type `json:"type"`
		Data event.Data `json:"data"`
	}{ch.Type, ch.Data})
	if err != nil {
		panic(err)
	}
	g.emit("approvals", t, event.ApprovalRequested, event.Data{Request: id, Requester: requester, Change: body, Reason: reason})
	typ := event.ApprovalGranted
	why := "approved"
	if !granted {
		typ, why = event.ApprovalRejected, "not justified; use the read replica"
	}
	g.emit("approvals", t.Add(wait), typ, event.Data{Request: id, Approver: approver, Reason: why})
	return id
}

func sortStrings(s []string) { sort.Strings(s) }

func (g *gen) org() Org {
	o := Org{Name: "Acme", Domain: "acme.io", Cast: map[string]string{}}
	for _, p := range g.people {
		team := p.stints[len(p.stints)-1].unit
		dept := p.dept
		if ud := unitDefOf(team); ud != nil {
			dept = ud.dept
		}
		o.People = append(o.People, Person{ID: p.id, Name: p.name(), Email: p.email(), Department: dept, Team: team,
			Title: p.title, Manager: p.manager, Location: p.location, Joined: p.joined, Left: p.left, Moved: p.moved})
	}
	sort.Slice(o.People, func(i, j int) bool { return o.People[i].ID < o.People[j].ID })
	o.Services = []string{"agent:copilot-7", "service:access-broker", "service:ci-bot", "service:etl"}
	seen := map[string]bool{}
	for _, e := range g.evs {
		for _, id := range []string{e.Data.Group, e.Data.Member, e.Data.Subject, e.Data.Role, e.Data.Includes} {
			if id == "" || seen[id] {
				continue
			}
			seen[id] = true
			switch event.KindOf(id) {
			case event.KindGroup:
				o.Groups = append(o.Groups, id)
			case event.KindRole:
				o.Roles = append(o.Roles, id)
			}
		}
		if r := e.Data.Resource; r != "" {
			for _, a := range event.Ancestors(r) {
				if a != "*" && !seen["res\x00"+a] && a[len(a)-1] != '*' {
					seen["res\x00"+a] = true
					o.Resources = append(o.Resources, a)
				}
			}
		}
	}
	sort.Strings(o.Groups)
	sort.Strings(o.Roles)
	sort.Strings(o.Resources)
	o.Departments = []string{"Engineering", "Executive", "Finance", "IT", "Sales", "Security", "Support"}
	c := &g.c
	for k, p := range map[string]*person{
		"ceo": c.ceo, "cto": c.cto, "cfo": c.cfo, "ciso": c.ciso, "vp-engineering": c.vpEng,
		"dba": c.dba1, "dba-2": c.dba2, "leaver-kept-access": c.leaverDBA, "sre-nested-dba": c.sre[0],
		"break-glass": c.breakGlass, "expired-jit": c.jitUser, "unused-direct-grant": c.adhocDBA,
		"privilege-creep": c.creep, "separation-of-duties": c.sod, "unauthorised-actor": c.webManager,
		"unauthorised-target": c.unauthTarget, "self-escalation": c.appsecLead, "self-approver": c.itAdmin2,
		"self-approved-for": c.newAdmin, "shadow-access": c.shadowUser, "it-admin": c.itAdmin1,
		"payments-approver": c.fpaManager, "deleted-leaver": c.deleted, "implicit-contractor": c.contractors[0],
	} {
		if p != nil {
			o.Cast[k] = p.id
		}
	}
	o.Cast["ai-agent"] = "agent:copilot-7"
	o.Cast["implicit-service"] = "service:etl"
	o.Cast["group-cycle"] = "group:tech-leads"
	return o
}
