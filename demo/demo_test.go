package demo

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/whocould/whocould/access"
	"github.com/whocould/whocould/event"
)

var defaultHistory = Generate(1, Options{})

func marshal(t *testing.T, h *History) []byte {
	t.Helper()
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	for i := range h.Events {
		if err := enc.Encode(&h.Events[i]); err != nil {
			t.Fatal(err)
		}
	}
	q, err := json.Marshal(h.Questions)
	if err != nil {
		t.Fatal(err)
	}
	b.Write(q)
	return b.Bytes()
}

func TestDeterministic(t *testing.T) {
	opts := Options{People: 150, DecisionsPerDay: 30}
	a, b := marshal(t, Generate(42, opts)), marshal(t, Generate(42, opts))
	if !bytes.Equal(a, b) {
		t.Fatal("two runs with the same seed and options differ")
	}
	if c := marshal(t, Generate(43, opts)); bytes.Equal(a, c) {
		t.Fatal("different seeds give the same history")
	}
	if d := marshal(t, Generate(1, Options{})); !bytes.Equal(d, marshal(t, defaultHistory)) {
		t.Fatal("the default history is not reproducible")
	}
}

func TestVolumes(t *testing.T) {
	for _, tc := range []struct {
		opts   Options
		people int
		dec    int
	}{
		{Options{}, 300, 110},
		{Options{People: 1000, DecisionsPerDay: 400}, 1000, 400},
		{Options{People: 10, DecisionsPerDay: 5}, 100, 5},
	} {
		h := defaultHistory
		if tc.opts != (Options{}) {
			h = Generate(7, tc.opts)
		}
		c := h.Counts()
		n := tc.people
		days := int(End.Sub(Start) / (24 * time.Hour))
		ranges := map[event.Type][2]int{
			event.PrincipalCreated:    {n - 5, n + 10},
			event.PrincipalUpdated:    {n / 30, n/10 + 5},
			event.PrincipalDisabled:   {n / 20, n/10 + 3},
			event.PrincipalEnabled:    {1, 1},
			event.PrincipalDeleted:    {1, 1},
			event.GroupCreated:        {20, 30},
			event.GroupDeleted:        {1, 1},
			event.MembershipAdded:     {n, 2*n + 50},
			event.MembershipRemoved:   {n / 30, n / 5},
			event.RoleCreated:         {10, 20},
			event.RoleDeleted:         {1, 1},
			event.RolePermissionAdded: {30, 45},
			event.GrantAdded:          {n / 3, n + 100},
			event.GrantRemoved:        {n / 60, n / 10},
			event.Decision:            {tc.dec * days * 85 / 100, tc.dec*days*115/100 + 400},
			event.ApprovalRequested:   {30, 100},
			event.ApprovalGranted:     {25, 90},
			event.ApprovalRejected:    {2, 30},
		}
		for typ, r := range ranges {
			if c[typ] < r[0] || c[typ] > r[1] {
				t.Errorf("people=%d: %d %s events, want %d..%d", n, c[typ], typ, r[0], r[1])
			}
		}
		if len(h.Org.People) < n || len(h.Org.People) > n+5 {
			t.Errorf("people=%d: the org has %d people", n, len(h.Org.People))
		}
	}
	if s := defaultHistory.Summary(); !strings.Contains(s, "decision") || !strings.Contains(s, "grant.added") {
		t.Errorf("summary lacks counts:\n%s", s)
	}
	t.Log("\n" + defaultHistory.Summary())
}

// checkEvent is a local sanity check of DESIGN.md §2.
func checkEvent(e *event.Event) error {
	d := &e.Data
	id := func(field, v string, k *event.Kind) error {
		var err error
		if k == nil {
			err = event.CheckID(v)
		} else {
			err = event.CheckIDOfKind(v, *k)
		}
		if err != nil {
			return fmt.Errorf("%s %q: %v", field, v, err)
		}
		if v != strings.ToLower(v) {
			return fmt.Errorf("%s %q is not lower-case", field, v)
		}
		return nil
	}
	pk, gk, rk := event.KindPrincipal, event.KindGroup, event.KindRole
	var errs []error
	must := func(err error) { errs = append(errs, err) }
	if !e.Type.Known() {
		return fmt.Errorf("unknown type %q", e.Type)
	}
	switch e.Type {
	case event.PrincipalCreated, event.PrincipalUpdated:
		must(id("principal", d.Principal, &pk))
		if len(d.Attributes) == 0 {
			must(fmt.Errorf("no attributes"))
		}
	case event.PrincipalDisabled, event.PrincipalEnabled, event.PrincipalDeleted:
		must(id("principal", d.Principal, &pk))
	case event.GroupCreated, event.GroupDeleted:
		must(id("group", d.Group, &gk))
	case event.MembershipAdded, event.MembershipRemoved:
		must(id("group", d.Group, &gk))
		must(id("member", d.Member, nil))
		if event.KindOf(d.Member) == event.KindRole {
			must(fmt.Errorf("member %q is a role", d.Member))
		}
	case event.RoleCreated, event.RoleDeleted:
		must(id("role", d.Role, &rk))
	case event.RolePermissionAdded, event.RolePermissionRemoved:
		must(id("role", d.Role, &rk))
		must(event.CheckAction(d.Action))
	case event.RoleIncludeAdded, event.RoleIncludeRemoved:
		must(id("role", d.Role, &rk))
		must(id("includes", d.Includes, &rk))
	case event.GrantAdded, event.GrantRemoved:
		if event.KindOf(d.Subject) == event.KindRole {
			must(fmt.Errorf("subject %q is a role", d.Subject))
		}
		must(id("subject", d.Subject, nil))
		if (d.Role == "") == (d.Action == "") {
			must(fmt.Errorf("grant needs exactly one of role and action"))
		} else if d.Role != "" {
			must(id("role", d.Role, &rk))
		} else {
			must(event.CheckAction(d.Action))
		}
		must(event.CheckResource(d.Resource))
		if d.ExpiresAt != nil {
			if e.Type == event.GrantRemoved {
				must(fmt.Errorf("grant.removed with expires_at"))
			}
			if !d.ExpiresAt.After(e.Time) {
				must(fmt.Errorf("expires_at %s not after time", d.ExpiresAt))
			}
			if d.ExpiresAt.Location() != time.UTC || d.ExpiresAt.Nanosecond()%1000 != 0 {
				must(fmt.Errorf("expires_at %s not UTC microseconds", d.ExpiresAt))
			}
		}
	case event.Decision:
		must(id("principal", d.Principal, &pk))
		must(event.CheckAction(d.Action))
		if strings.Contains(d.Action, "*") {
			must(fmt.Errorf("decision on a pattern %q", d.Action))
		}
		must(event.CheckResource(d.Resource))
		if d.Effect != event.Allow && d.Effect != event.Deny {
			must(fmt.Errorf("effect %q", d.Effect))
		}
	case event.ApprovalRequested:
		must(id("requester", d.Requester, &pk))
		if d.Request == "" || !json.Valid(d.Change) {
			must(fmt.Errorf("request %q change %s", d.Request, d.Change))
		}
	case event.ApprovalGranted, event.ApprovalRejected:
		must(id("approver", d.Approver, &pk))
		if d.Request == "" {
			must(fmt.Errorf("no request"))
		}
	}
	if d.Actor != "" {
		must(id("actor", d.Actor, &pk))
	}
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

func TestEventsValid(t *testing.T) {
	for _, h := range []*History{defaultHistory, Generate(9, Options{People: 120, DecisionsPerDay: 20, Tenant: "acme"})} {
		seen := map[[2]string]bool{}
		requested := map[string]bool{}
		var prev time.Time
		var prevChange time.Time
		for i := range h.Events {
			e := &h.Events[i]
			where := fmt.Sprintf("event %d (%s %s %s)", i, e.Source, e.ID, e.Type)
			if err := checkEvent(e); err != nil {
				t.Errorf("%s: %v", where, err)
			}
			if e.ID == "" || e.Source == "" {
				t.Errorf("%s: empty id or source", where)
			}
			k := [2]string{e.Source, e.ID}
			if seen[k] {
				t.Errorf("%s: duplicate (source, id)", where)
			}
			seen[k] = true
			if e.Time.Before(h.Start) || e.Time.After(h.End) {
				t.Errorf("%s: time %s outside [%s, %s]", where, e.Time, h.Start, h.End)
			}
			if e.Time.Location() != time.UTC || e.Time.Nanosecond()%1000 != 0 {
				t.Errorf("%s: time %s is not UTC microseconds", where, e.Time)
			}
			if e.Time.Before(prev) {
				t.Errorf("%s: not sorted by time", where)
			}
			prev = e.Time
			if e.Type.IsChange() {
				if !e.Time.After(prevChange) {
					t.Errorf("%s: change event at the time of the previous one", where)
				}
				prevChange = e.Time
			}
			if e.TenantOrDefault() != cmpOr(h.Options.Tenant, event.DefaultTenant) {
				t.Errorf("%s: tenant %q", where, e.Data.Tenant)
			}
			switch e.Type {
			case event.ApprovalRequested:
				requested[e.Data.Request] = true
			case event.ApprovalGranted, event.ApprovalRejected:
				if !requested[e.Data.Request] {
					t.Errorf("%s: decides request %q before it was made", where, e.Data.Request)
				}
			}
		}
	}
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// TestStories checks that the history holds the stories the questions are about.
func TestStories(t *testing.T) {
	h := defaultHistory
	cast := h.Org.Cast
	for _, k := range []string{"dba", "sre-nested-dba", "break-glass", "leaver-kept-access", "expired-jit",
		"separation-of-duties", "privilege-creep", "self-escalation", "unauthorised-actor", "shadow-access", "deleted-leaver"} {
		if cast[k] == "" {
			t.Fatalf("cast has no %q", k)
		}
	}
	// Some ids are never created explicitly.
	created := map[string]bool{}
	used := map[string]bool{}
	for _, e := range h.Events {
		switch e.Type {
		case event.PrincipalCreated:
			created[e.Data.Principal] = true
		case event.GroupCreated:
			created[e.Data.Group] = true
		case event.RoleCreated:
			created[e.Data.Role] = true
		case event.MembershipAdded:
			used[e.Data.Member], used[e.Data.Group] = true, true
		case event.GrantAdded:
			used[e.Data.Subject] = true
		case event.RolePermissionAdded:
			used[e.Data.Role] = true
		}
	}
	for _, id := range []string{"service:etl", "team:sre", "role:payment-clerk", cast["implicit-contractor"]} {
		if created[id] || !used[id] {
			t.Errorf("%s: want used without a .created event (created %v, used %v)", id, created[id], used[id])
		}
	}

	// Decisions against the map: the deliberate inconsistencies, and only those.
	var changes []event.Event
	for _, e := range h.Events {
		if e.Type.IsChange() {
			changes = append(changes, e)
		}
	}
	m := newModel()
	next := 0
	shadow := map[string]int{}
	reverse := 0
	allowed, denied := 0, 0
	for i := range h.Events {
		e := &h.Events[i]
		if e.Type != event.Decision {
			continue
		}
		for next < len(changes) && !changes[next].Time.After(e.Time) {
			m.apply(&changes[next])
			next++
		}
		ok, _ := m.could(e.Data.Principal, e.Data.Action, e.Data.Resource, e.Time)
		switch {
		case e.Data.Effect == event.Allow && !ok:
			shadow[e.Data.Principal]++
		case e.Data.Effect == event.Deny && ok:
			reverse++
		}
		if e.Data.Effect == event.Allow {
			allowed++
		} else {
			denied++
		}
	}
	if len(shadow) != 2 || shadow[cast["shadow-access"]] != 3 || shadow[cast["leaver-kept-access"]] < 30 {
		t.Errorf("allowed decisions the map says impossible: %v", shadow)
	}
	if reverse != 1 {
		t.Errorf("%d denied decisions the map says possible, want 1", reverse)
	}
	if frac := float64(denied) / float64(allowed+denied); frac < 0.01 || frac > 0.15 {
		t.Errorf("%.3f of decisions denied", frac)
	}
}

func TestQuestions(t *testing.T) {
	h := defaultHistory
	cast := h.Org.Cast
	byTitle := map[string]Question{}
	for _, q := range h.Questions {
		if q.Kind != WhoCould && q.Kind != Explain && q.Kind != WhatCould {
			t.Errorf("%q: kind %q", q.Title, q.Kind)
		}
		if q.Query.At.Before(h.Start) || !q.Query.At.Before(h.End) || q.Why == "" {
			t.Errorf("%q: at %s, why %q", q.Title, q.Query.At, q.Why)
		}
		if !slices.IsSorted(q.Principals) {
			t.Errorf("%q: principals not sorted", q.Title)
		}
		byTitle[q.Title] = q
		t.Logf("%s [%s]\n   principals=%v could=%v status=%s entitlements=%v", q.Title, q.Kind, q.Principals, q.Could, q.Status, q.Entitlements)
	}
	find := func(prefix string) Question {
		t.Helper()
		for _, q := range h.Questions {
			if strings.HasPrefix(q.Title, prefix) {
				return q
			}
		}
		t.Fatalf("no question %q", prefix)
		return Question{}
	}
	drop := find("Who could drop the production orders table")
	for _, k := range []string{"dba", "dba-2", "sre-nested-dba", "break-glass"} {
		if !slices.Contains(drop.Principals, cast[k]) {
			t.Errorf("drop: %s (%s) missing from %v", k, cast[k], drop.Principals)
		}
	}
	for _, k := range []string{"leaver-kept-access", "expired-jit"} {
		if slices.Contains(drop.Principals, cast[k]) {
			t.Errorf("drop: %s (%s) should not be in %v", k, cast[k], drop.Principals)
		}
	}
	if q := find("Could " + cast["expired-jit"] + " drop"); q.Could || q.Status != access.StatusActive {
		t.Errorf("expired JIT: could=%v status=%s", q.Could, q.Status)
	}
	if q := find("Could " + cast["leaver-kept-access"] + " drop"); q.Could || q.Status != access.StatusDisabled {
		t.Errorf("leaver: could=%v status=%s", q.Could, q.Status)
	}
	if q := find("Could " + cast["break-glass"] + " drop"); !q.Could {
		t.Errorf("break-glass: could=%v", q.Could)
	}
	before, after := find("Who could truncate db:prod/orders on 2026-04-01"), find("Who could truncate db:prod/orders on 2026-05-01")
	if len(after.Principals) < 3*len(before.Principals) {
		t.Errorf("truncate: %d before the role change, %d after", len(before.Principals), len(after.Principals))
	}
	sod := find("What could " + cast["separation-of-duties"])
	if !slices.Contains(sod.Entitlements, "payment.create payments:prod") || !slices.Contains(sod.Entitlements, "payment.approve payments:prod") {
		t.Errorf("separation of duties: %v", sod.Entitlements)
	}
	if q := find("Who could approve payments"); !slices.Contains(q.Principals, cast["separation-of-duties"]) || len(q.Principals) != 3 {
		t.Errorf("approvers: %v", q.Principals)
	}
	if q := find("Was " + cast["unauthorised-actor"]); q.Could {
		t.Error("unauthorised change: the actor could")
	}
	if q := find("Who could manage billing"); !slices.Equal(q.Principals, sortedOf(cast["cto"], cast["self-escalation"])) {
		t.Errorf("billing: %v", q.Principals)
	}
	if q := find("Could " + cast["privilege-creep"]); !q.Could {
		t.Error("privilege creep: could not")
	}
	if q := find("Could " + cast["shadow-access"]); q.Could {
		t.Error("shadow access: could")
	}
	if q := find("Who could administer the web-app"); len(q.Principals) < 5 || !slices.Contains(q.Principals, cast["cto"]) {
		t.Errorf("repo admins (group cycle): %v", q.Principals)
	}
	if q := find("What could the AI agent"); !slices.Contains(q.Entitlements, "finding.dismiss codesec:acme/payments-api") ||
		slices.Contains(q.Entitlements, "finding.dismiss codesec:acme") {
		t.Errorf("agent: %v", q.Entitlements)
	}
}

func sortedOf(s ...string) []string {
	slices.Sort(s)
	return s
}

// TestModel checks the generator's reference model on the rules the stories rely on.
func TestModel(t *testing.T) {
	at := func(h int) time.Time { return Start.Add(time.Duration(h) * time.Hour) }
	exp := at(5)
	evs := []event.Event{
		{Type: event.MembershipAdded, Time: at(1), Data: event.Data{Group: "team:sre", Member: "user:a"}},
		{Type: event.MembershipAdded, Time: at(1).Add(1), Data: event.Data{Group: "group:dba", Member: "team:sre"}},
		{Type: event.MembershipAdded, Time: at(1).Add(2), Data: event.Data{Group: "team:sre", Member: "group:dba"}}, // cycle
		{Type: event.RoleIncludeAdded, Time: at(1).Add(3), Data: event.Data{Role: "role:owner", Includes: "role:admin"}},
		{Type: event.RolePermissionAdded, Time: at(1).Add(4), Data: event.Data{Role: "role:admin", Action: "db.table.*"}},
		{Type: event.GrantAdded, Time: at(2), Data: event.Data{Subject: "group:dba", Role: "role:owner", Resource: "db:prod"}},
		{Type: event.GrantAdded, Time: at(2).Add(1), Data: event.Data{Subject: "user:b", Role: "role:owner", Resource: "db:prod/orders", ExpiresAt: &exp}},
		{Type: event.PrincipalDisabled, Time: at(6), Data: event.Data{Principal: "user:a"}},
	}
	for _, tc := range []struct {
		p, r string
		h    int
		want bool
	}{
		{"user:a", "db:prod/orders", 3, true}, {"user:a", "db:pro", 3, false}, {"user:a", "db:prod/orders", 1, false},
		{"user:b", "db:prod/orders", 4, true}, {"user:b", "db:prod/orders", 5, false}, {"user:b", "db:prod", 4, false},
		{"user:a", "db:prod/orders", 7, false},
	} {
		m := modelAt(evs, at(tc.h))
		if got, why := m.could(tc.p, "db.table.drop", tc.r, at(tc.h)); got != tc.want {
			t.Errorf("%s on %s at %dh: %v (%s), want %v", tc.p, tc.r, tc.h, got, why, tc.want)
		}
	}
	if _, why := modelAt(evs, at(5)).could("user:b", "db.table.drop", "db:prod/orders", at(5)); why != "grant expired" {
		t.Errorf("expired reason %q", why)
	}
}
