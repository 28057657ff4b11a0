package analyzer

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/whocould/whocould/access"
	"github.com/whocould/whocould/event"
	"github.com/whocould/whocould/finding"
	"github.com/whocould/whocould/graph"
)

func TestExpand(t *testing.T) {
	d := &event.Data{Subject: "user:bob", Role: "role:admin", Resource: "db:prod"}
	for _, c := range []struct {
		tpl, want string
		ok        bool
		err       string
	}{
		{"iam.grant", "iam.grant", true, ""},
		{"{resource}", "db:prod", true, ""},
		{"iam.assign-role:{role}", "iam.assign-role:role:admin", true, ""},
		{"{subject}/{resource}", "user:bob/db:prod", true, ""},
		{"{action}", "", false, ""}, // a role grant carries no action: the check does not apply
		{"{rol}", "", false, "unknown field {rol}"},
		{"iam.{role", "", false, "unclosed {"},
	} {
		got, ok, err := expand(c.tpl, d)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("expand(%q): error %v, want one containing %q", c.tpl, err, c.err)
			}
			continue
		}
		if err != nil || ok != c.ok || (ok && got != c.want) {
			t.Errorf("expand(%q) = %q, %v, %v; want %q, %v", c.tpl, got, ok, err, c.want, c.ok)
		}
	}
}

func TestUnauthorisedChangeRejectsBadTemplates(t *testing.T) {
	cfg := &Config{UnauthorisedChange: UnauthorisedChangeConfig{Checks: map[string][]AdminCheck{
		"grant.added": {{Action: "iam.grant", Resource: "{resourse}"}}}}}
	cfg.Defaults()
	in := &Input{Tenant: "default", Config: cfg, Model: &Model{Graph: graph.New()}}
	_, err := checkUnauthorisedChange(context.Background(), in)
	if err == nil || !strings.Contains(err.Error(), "grant.added[0]") || !strings.Contains(err.Error(), "{resourse}") {
		t.Fatalf("err = %v, want one naming grant.added[0] and {resourse}", err)
	}
}

func TestUses(t *testing.T) {
	path := access.Path{Groups: []string{"group:team", "group:ops"},
		Grant: access.GrantRef{Subject: "group:ops", Role: "role:ops", Resource: "db:prod"},
		Roles: []string{"role:ops", "role:helper"}, Permission: "db.read"}
	rec := func(typ event.Type, d event.Data) *event.Record {
		d.Actor = "user:bob"
		return &event.Record{Event: event.Event{Type: typ, Data: d}}
	}
	for _, c := range []struct {
		r    *event.Record
		want bool
	}{
		{rec(event.GrantAdded, event.Data{Subject: "group:ops", Role: "role:ops", Resource: "db:prod"}), true},
		{rec(event.GrantAdded, event.Data{Subject: "group:ops", Role: "role:ops", Resource: "db:prod/x"}), false},
		{rec(event.MembershipAdded, event.Data{Group: "group:team", Member: "user:bob"}), true},
		{rec(event.MembershipAdded, event.Data{Group: "group:ops", Member: "group:team"}), true},
		{rec(event.MembershipAdded, event.Data{Group: "group:ops", Member: "user:bob"}), false},
		{rec(event.RolePermissionAdded, event.Data{Role: "role:helper", Action: "db.read"}), true},
		{rec(event.RolePermissionAdded, event.Data{Role: "role:ops", Action: "db.read"}), false},
		{rec(event.RoleIncludeAdded, event.Data{Role: "role:ops", Includes: "role:helper"}), true},
		{rec(event.RoleIncludeRemoved, event.Data{Role: "role:helper", Includes: "role:ops"}), false},
		{rec(event.GroupDeleted, event.Data{Group: "group:team"}), true},
		{rec(event.RoleDeleted, event.Data{Role: "role:helper"}), true},
		{rec(event.PrincipalEnabled, event.Data{Principal: "user:bob"}), true},
		{rec(event.PrincipalEnabled, event.Data{Principal: "user:eve"}), false},
	} {
		if got := uses(c.r, path); got != c.want {
			t.Errorf("uses(%s %s) = %v, want %v", c.r.Type, describeChange(c.r), got, c.want)
		}
	}
}

// changeHistory is a large synthetic history for the change rules: admins (in an admin group)
// grant roles on resources to many users, citing approvals; some grants need approval, some
// actors are not allowed, some grant to themselves.
func changeHistory(users, grants int) []event.Record {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var recs []event.Record
	add := func(at time.Time, typ event.Type, d event.Data) {
		recs = append(recs, event.Record{Event: event.Event{ID: fmt.Sprintf("e%d", len(recs)), Source: "bench", Type: typ, Time: at, Data: d},
			Position: uint64(len(recs) + 1), Recorded: at})
	}
	add(t0, event.RolePermissionAdded, event.Data{Role: "role:admin", Action: "*"})
	add(t0, event.GrantAdded, event.Data{Subject: "group:admins", Role: "role:admin", Resource: "*"})
	for i := range 20 {
		add(t0, event.MembershipAdded, event.Data{Group: "group:admins", Member: fmt.Sprintf("user:admin%d", i)})
	}
	for i := range 50 {
		add(t0, event.RolePermissionAdded, event.Data{Role: fmt.Sprintf("role:r%d", i), Action: fmt.Sprintf("app%d.*", i)})
	}
	for i := range grants {
		at := t0.Add(time.Duration(i) * time.Second)
		actor := fmt.Sprintf("user:admin%d", i%20)
		if i%1000 == 0 {
			actor = fmt.Sprintf("user:u%d", i%users) // not an admin
		}
		req := ""
		if i%10 == 0 {
			req = fmt.Sprintf("req-%d", i)
			add(at.Add(-time.Hour), event.ApprovalRequested, event.Data{Request: req, Requester: actor})
			add(at.Add(-time.Minute), event.ApprovalGranted, event.Data{Request: req, Approver: fmt.Sprintf("user:admin%d", (i+1)%20)})
		}
		add(at, event.GrantAdded, event.Data{Subject: fmt.Sprintf("user:u%d", i%users), Role: fmt.Sprintf("role:r%d", i%50),
			Resource: fmt.Sprintf("db:d%d/t%d", i%7, i%100), Actor: actor, Approval: req})
	}
	return recs
}

func changeModel(recs []event.Record) *Model {
	m := &Model{Tenant: "default", Graph: graph.New()}
	var changes []event.Record
	for _, r := range recs {
		if r.Type.IsChange() {
			changes = append(changes, r)
		}
	}
	m.Graph.ApplyBatch(changes)
	m.Events = recs
	return m
}

// TestChangeRulesAtScale runs the three change rules over 200k grant changes (a share of the
// benchmark's size) and checks what they find and that they stay fast.
func TestChangeRulesAtScale(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: skips the 200k-change run")
	}
	const grants = 200_000
	m := changeModel(changeHistory(10_000, grants))
	cfg := &Config{Privileged: Privileged{Resources: []string{"db:d0"}}}
	cfg.Defaults()
	in := &Input{Tenant: "default", Now: time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC), Config: cfg, Model: m}
	for _, c := range []struct {
		name  string
		check func(context.Context, *Input) ([]finding.Finding, error)
		want  int
	}{
		// every 1000th change's actor is a plain user
		{"unauthorised-change", checkUnauthorisedChange, grants / 1000},
		// a plain user granting itself: i%1000 == 0 and i%users == i%10000 → subject is the actor
		{"self-service", checkSelfService, grants / 1000},
		// privileged: resource db:d0/... (i%7 == 0); approved: i%10 == 0
		// (and the setup: the admin group's grant on *, and its 20 members)
		{"missing-approval", checkMissingApproval, countUnapproved(grants) + 1 + 20},
	} {
		start := time.Now()
		fs, err := c.check(context.Background(), in)
		took := time.Since(start)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		t.Logf("%s: %d findings in %v", c.name, len(fs), took)
		if len(fs) != c.want {
			t.Errorf("%s: %d findings, want %d", c.name, len(fs), c.want)
		}
		if took > 20*time.Second {
			t.Errorf("%s took %v over %d changes", c.name, took, grants)
		}
	}
}

func countUnapproved(grants int) int {
	n := 0
	for i := range grants {
		if i%7 == 0 && i%10 != 0 {
			n++
		}
	}
	return n
}
