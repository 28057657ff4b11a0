// Package demo generates a realistic organisation and six months of its history as whocould
// events: an identity provider (okta), GitHub, production and staging Postgres, a warehouse, a
// code-security product (codesec), a payments system, an approval workflow, a break-glass tool
// and OPA, with joiners, movers, leavers, just-in-time and break-glass access, role changes,
// approvals and a steady stream of access decisions.
//
// The history is seeded with the failures whocould exists to find (a leaver who kept access and
// whose decisions continue, privilege creep after a move, a separation-of-duties conflict, an
// unauthorised change, someone changing their own access, an approval granted by its own
// requester, a privileged change without approval, grants nobody uses, shadow access) and comes
// with Questions whose answers tell those stories. Everything is a pure function of the seed and
// the options: the same seed and options give byte-identical events, and nothing depends on the
// wall clock.
package demo

import (
	"fmt"
	"strings"
	"time"

	"github.com/whocould/whocould/access"
	"github.com/whocould/whocould/event"
)

// The span of every history: six months of 2026, UTC.
var (
	Start = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	End   = time.Date(2026, 7, 1, 0, 0, 0, 0, time.UTC)
)

// Options shape a history. The zero value is the default organisation.
type Options struct {
	// People is how many people the organisation has over the whole history, joiners included
	// (default 300, at least 100).
	People int
	// DecisionsPerDay is the average number of access decisions per day (default 110, about 20k
	// over the six months); weekdays get more than weekends.
	DecisionsPerDay int
	// Tenant, when set, is written into every event (and every question); empty means the
	// default tenant.
	Tenant string
}

func (o Options) withDefaults() Options {
	if o.People <= 0 {
		o.People = 300
	}
	if o.People < 100 {
		o.People = 100
	}
	if o.DecisionsPerDay <= 0 {
		o.DecisionsPerDay = 110
	}
	return o
}

// Person is one person of the organisation as the history leaves them (or as they were when
// they left).
type Person struct {
	ID         string
	Name       string
	Email      string
	Department string
	Team       string // the group or team they belong to, e.g. team:payments
	Title      string
	Manager    string // principal id, empty for the CEO
	Location   string
	Joined     time.Time // Start for the initial staff
	Left       time.Time // zero while still employed (disabled at this time)
	Moved      time.Time // zero unless they changed team or department
}

// Org describes the generated organisation.
type Org struct {
	Name        string
	Domain      string
	People      []Person // sorted by ID
	Services    []string // service and agent principals
	Groups      []string
	Roles       []string
	Resources   []string // the resources grants and decisions name (parents included)
	Departments []string
	// Cast names the people and things the stories are about, e.g. "break-glass" →
	// "user:anna.schmidt". Keys: ceo, cto, cfo, ciso, vp-engineering, dba, dba-2,
	// sre-nested-dba (in team:sre, nested in group:dba), break-glass, expired-jit,
	// leaver-kept-access (disabled, never deprovisioned, decisions continue), deleted-leaver,
	// unused-direct-grant, privilege-creep, separation-of-duties, payments-approver,
	// unauthorised-actor, unauthorised-target, self-escalation, self-approver,
	// self-approved-for, shadow-access, it-admin, implicit-contractor, implicit-service,
	// ai-agent, group-cycle.
	Cast map[string]string
}

// Question kinds.
const (
	WhoCould  = "who-could"
	Explain   = "explain"
	WhatCould = "what-could"
)

// Question is a telling question to ask of the history, and the answer it was built to give.
// The expected answer comes from the generator's own small reading of DESIGN.md §1, independent
// of the product's engine.
type Question struct {
	Title string
	Kind  string // WhoCould, Explain or WhatCould
	Query access.Query
	Why   string
	// Principals is the expected who-could answer: exactly these principals, sorted.
	Principals []string
	// Could is the expected explain answer.
	Could bool
	// Status is the principal's expected status for explain and what-could (access.Status*).
	Status string
	// Entitlements is the expected what-could answer, as "action resource" in the answer's order
	// (by action, then resource).
	Entitlements []string
}

// History is a generated organisation and its events.
type History struct {
	Seed       uint64
	Options    Options
	Start, End time.Time
	Org        Org
	// Events are sorted by event time; change events all have distinct times. IDs are unique per
	// source.
	Events    []event.Event
	Questions []Question
}

// Generate builds the organisation and its six months of history.
func Generate(seed uint64, opts Options) *History {
	opts = opts.withDefaults()
	g := newGen(seed, opts)
	g.buildOrg()
	g.bootstrap()
	g.story()
	g.finishChanges()
	g.decisions()
	h := &History{Seed: seed, Options: opts, Start: Start, End: End}
	h.Events = g.finish()
	h.Org = g.org()
	h.Questions = g.questions(h.Events)
	return h
}

// Counts is the number of events of each type.
func (h *History) Counts() map[event.Type]int {
	c := map[event.Type]int{}
	for i := range h.Events {
		c[h.Events[i].Type]++
	}
	return c
}

// Summary is a few lines of counts: events per type and per source, people and questions.
func (h *History) Summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "demo history seed=%d people=%d decisions/day=%d %s .. %s\n", h.Seed, h.Options.People,
		h.Options.DecisionsPerDay, h.Start.Format(time.RFC3339), h.End.Format(time.RFC3339))
	c := h.Counts()
	for _, t := range event.Types {
		if c[t] > 0 {
			fmt.Fprintf(&b, "  %-24s %7d\n", t, c[t])
		}
	}
	fmt.Fprintf(&b, "  %-24s %7d\n", "total", len(h.Events))
	src := map[string]int{}
	var names []string
	for i := range h.Events {
		s := h.Events[i].Source
		if src[s] == 0 {
			names = append(names, s)
		}
		src[s]++
	}
	sortStrings(names)
	b.WriteString("  by source:")
	for _, s := range names {
		fmt.Fprintf(&b, " %s=%d", s, src[s])
	}
	b.WriteString("\n")
	left := 0
	for _, p := range h.Org.People {
		if !p.Left.IsZero() {
			left++
		}
	}
	fmt.Fprintf(&b, "  people=%d (left %d) services=%d groups=%d roles=%d questions=%d\n",
		len(h.Org.People), left, len(h.Org.Services), len(h.Org.Groups), len(h.Org.Roles), len(h.Questions))
	return b.String()
}
