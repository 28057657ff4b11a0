// Package synth generates large synthetic organisations for benchmarks: principals in nested
// groups, roles over database actions, and grants spread over six months, some expiring, some
// removed, a few principals disabled. Same options, same events.
package synth

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/whocould/whocould/event"
)

// Options sizes the organisation.
type Options struct {
	Principals int // default 100,000
	Groups     int // default 10,000 (at least 100)
	Grants     int // default 1,000,000
	Roles      int // default 50
	Seed       uint64
}

func (o Options) withDefaults() Options {
	if o.Principals <= 0 {
		o.Principals = 100_000
	}
	if o.Groups < 100 {
		o.Groups = 10_000
	}
	if o.Grants <= 0 {
		o.Grants = 1_000_000
	}
	if o.Roles <= 0 {
		o.Roles = 50
	}
	return o
}

// Org is a generated organisation.
type Org struct {
	Events    []event.Event // in event-time order
	Resources []string      // the leaf resources grants are on
	Actions   []string
	Start     time.Time
	Span      time.Duration
}

// Generate builds the organisation.
func Generate(opts Options) *Org {
	opts = opts.withDefaults()
	r := rand.New(rand.NewPCG(opts.Seed, 2))
	o := &Org{Start: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), Span: 180 * 24 * time.Hour}
	for _, v := range []string{"select", "insert", "update", "delete", "create", "alter", "drop", "truncate"} {
		o.Actions = append(o.Actions, "db.table."+v)
	}
	for i := 0; i < 100; i++ {
		for j := 0; j < 100; j++ {
			o.Resources = append(o.Resources, fmt.Sprintf("db:prod%d/t%d", i, j))
		}
	}
	evs := make([]event.Event, 0, opts.Grants*12/10+opts.Principals*4)
	at := func() time.Time {
		return o.Start.Add(time.Duration(r.Int64N(int64(o.Span)))).Truncate(time.Microsecond)
	}
	add := func(t event.Type, tm time.Time, d event.Data) {
		evs = append(evs, event.Event{ID: fmt.Sprintf("b%d", len(evs)), Source: "synth", Type: t, Time: tm, Data: d})
	}
	for i := 0; i < opts.Roles; i++ {
		role := fmt.Sprintf("role:r%d", i)
		for j := 0; j < 4; j++ {
			add(event.RolePermissionAdded, o.Start, event.Data{Role: role, Action: o.Actions[r.IntN(len(o.Actions))]})
		}
		if i > 0 && r.IntN(3) == 0 {
			add(event.RoleIncludeAdded, o.Start, event.Data{Role: role, Includes: fmt.Sprintf("role:r%d", r.IntN(i))})
		}
	}
	// Nested groups as in an organisation: 100 departments (g0..g99), each with a third of its
	// other groups nested in an earlier group of the same department; a few cycles.
	for i := 100; i < opts.Groups; i++ {
		if r.IntN(3) != 0 {
			continue
		}
		parent := i%100 + 100*r.IntN(i/100)
		add(event.MembershipAdded, at(), event.Data{Group: fmt.Sprintf("group:g%d", parent), Member: fmt.Sprintf("group:g%d", i)})
		if r.IntN(200) == 0 {
			add(event.MembershipAdded, at(), event.Data{Group: fmt.Sprintf("group:g%d", i), Member: fmt.Sprintf("group:g%d", parent)})
		}
	}
	for i := 0; i < opts.Principals; i++ {
		p := fmt.Sprintf("user:u%d", i)
		add(event.PrincipalCreated, o.Start, event.Data{Principal: p, Attributes: map[string]string{"department": fmt.Sprintf("d%d", i%20)}})
		for j := 0; j < 3; j++ {
			add(event.MembershipAdded, at(), event.Data{Group: fmt.Sprintf("group:g%d", r.IntN(opts.Groups)), Member: p})
		}
		if r.IntN(20) == 0 {
			add(event.PrincipalDisabled, at(), event.Data{Principal: p})
		}
	}
	for i := 0; i < opts.Grants; i++ {
		d := event.Data{Resource: o.Resources[r.IntN(len(o.Resources))]}
		if r.IntN(10) < 7 {
			d.Subject = fmt.Sprintf("group:g%d", r.IntN(opts.Groups))
		} else {
			d.Subject = fmt.Sprintf("user:u%d", r.IntN(opts.Principals))
		}
		if r.IntN(4) == 0 {
			d.Action = o.Actions[r.IntN(len(o.Actions))]
		} else {
			d.Role = fmt.Sprintf("role:r%d", r.IntN(opts.Roles))
		}
		if r.IntN(100) == 0 {
			d.Resource = d.Resource[:len("db:prodN")]
		}
		tm := at()
		if r.IntN(10) == 0 {
			exp := tm.Add(time.Duration(1+r.IntN(48)) * time.Hour)
			d.ExpiresAt = &exp
		}
		add(event.GrantAdded, tm, d)
		if r.IntN(10) == 0 {
			rm := d
			rm.ExpiresAt = nil
			add(event.GrantRemoved, tm.Add(time.Duration(1+r.IntN(1000))*time.Hour), rm)
		}
	}
	slices.SortStableFunc(evs, func(a, b event.Event) int { return a.Time.Compare(b.Time) })
	o.Events = evs
	return o
}

// Records delivers the events as log records: in event-time order, with one in fifty a day
// late (recorded a day after its event time, and so later in the log).
func (o *Org) Records(seed uint64) []event.Record {
	r := rand.New(rand.NewPCG(seed, 3))
	recs := make([]event.Record, len(o.Events))
	for i := range o.Events {
		rec := o.Events[i].Time
		if r.IntN(50) == 0 {
			rec = rec.Add(24 * time.Hour)
		}
		recs[i] = event.Record{Event: o.Events[i], Recorded: rec}
	}
	slices.SortStableFunc(recs, func(a, b event.Record) int { return a.Recorded.Compare(b.Recorded) })
	for i := range recs {
		recs[i].Position = uint64(i + 1)
	}
	return recs
}
