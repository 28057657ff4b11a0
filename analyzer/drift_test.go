package analyzer

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/whocould/whocould/event"
	"github.com/whocould/whocould/finding"
	"github.com/whocould/whocould/graph"
)

func driftInput(t testing.TB, b *Baseline, recs []event.Record, now time.Time) *Input {
	t.Helper()
	cfg := &Config{}
	cfg.Defaults()
	cfg.SetBaseline(b)
	g := graph.New()
	g.ApplyBatch(recs)
	return &Input{Tenant: event.DefaultTenant, Now: now, Config: cfg, Model: &Model{Tenant: event.DefaultTenant, Graph: g, Events: recs}}
}

func TestDriftWithoutBaseline(t *testing.T) {
	day := time.Date(2026, 1, 5, 0, 0, 0, 0, time.UTC)
	recs := sodRecords(event.Event{Type: event.GrantAdded, Time: day, Data: event.Data{Subject: "group:g", Role: "role:r", Resource: "db:x"}})
	fs, err := checkDrift(context.Background(), driftInput(t, nil, recs, day.Add(time.Hour)))
	if err != nil || len(fs) != 0 {
		t.Fatalf("no baseline: %d findings, %v", len(fs), err)
	}
	// An empty baseline: every grant is extra.
	fs, err = checkDrift(context.Background(), driftInput(t, &Baseline{}, recs, day.Add(time.Hour)))
	if err != nil || len(fs) != 1 || fs[0].Kind != DriftExtraGrant {
		t.Fatalf("empty baseline: %+v, %v", fs, err)
	}
}

func TestDriftInvalidBaselineFailsTheRule(t *testing.T) {
	b := &Baseline{Grants: []BaselineGrant{{Subject: "role:x", Role: "role:y", Resource: "db:x"}}}
	_, err := checkDrift(context.Background(), driftInput(t, b, nil, time.Now()))
	if err == nil || !strings.Contains(err.Error(), "grants[0]") {
		t.Fatalf("err %v, want one naming grants[0]", err)
	}
}

func TestAllowedDirectGrantPatterns(t *testing.T) {
	g := BaselineGrant{Subject: "user:a", Action: "db.read", Resource: "db:x"}
	r := BaselineGrant{Subject: "user:a", Role: "role:r", Resource: "db:x"}
	for _, c := range []struct {
		allow BaselineGrant
		g     BaselineGrant
		want  bool
	}{
		{BaselineGrant{Subject: "*", Action: "*", Resource: "*"}, g, true},
		{BaselineGrant{Subject: "*", Action: "*", Resource: "*"}, r, false}, // an action entry allows action grants only
		{BaselineGrant{Subject: "*", Role: "*", Resource: "*"}, r, true},
		{BaselineGrant{Subject: "user:a", Action: "db.read", Resource: "db:x"}, g, true},
		{BaselineGrant{Subject: "user:b", Action: "db.read", Resource: "db:x"}, g, false},
		{BaselineGrant{Subject: "user:a", Action: "db.*", Resource: "db:x"}, g, false}, // not a pattern match: exact or "*"
		{BaselineGrant{Subject: "user:a", Action: "db.read", Resource: "db"}, g, false},
		{BaselineGrant{Subject: "user:a", Action: "db.read", Resource: "db:*"}, g, false},
		{BaselineGrant{Subject: "user:a", Action: "*", Resource: "*"}, BaselineGrant{Subject: "user:a", Action: "*", Resource: "*"}, true},
	} {
		if got := c.allow.allows(c.g); got != c.want {
			t.Errorf("%s allows %s: %v, want %v", c.allow, c.g, got, c.want)
		}
	}
}

// TestDriftScale runs the rule over the synthetic organisation against a baseline that lists
// every other grant to a group and a third of the roles, and reports how long it took.
func TestDriftScale(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a 200k-grant organisation")
	}
	m, o := synthModel(t)
	b := &Baseline{Roles: map[string]BaselineRole{}, AllowedDirectGrants: []BaselineGrant{{Subject: "*", Action: "*", Resource: "*"}}}
	i := 0
	m.Graph.Relations(nil, func(r graph.RelationSpans) {
		if event.KindOf(r.A) == event.KindGroup && i%2 == 0 {
			bg := BaselineGrant{Subject: r.A, Resource: r.C}
			if r.Kind == graph.RoleGrant {
				bg.Role = r.B
			} else {
				bg.Action = r.B
			}
			b.Grants = append(b.Grants, bg)
		}
		i++
	}, graph.RoleGrant, graph.ActionGrant)
	for _, role := range []string{"role:r0", "role:r3", "role:r6", "role:r9"} {
		b.Roles[role] = BaselineRole{Permissions: []string{"db.table.select"}}
	}
	in := driftInput(t, b, nil, o.Start.Add(o.Span))
	in.Model = m
	start := time.Now()
	fs, err := checkDrift(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	kinds := map[string]int{}
	for _, f := range fs {
		kinds[f.Kind]++
		if f.Rule != finding.Drift || len(f.Evidence) == 0 {
			t.Fatalf("finding without evidence: %+v", f)
		}
	}
	t.Logf("drift over %d baseline grants: %v in %v", len(b.Grants), kinds, took)
	if kinds[DriftExtraGrant] == 0 || kinds[DriftMissingGrant] == 0 || kinds[DriftChangedRole] != 4 {
		t.Errorf("kinds %v: want extra and missing grants, and 4 changed roles", kinds)
	}
	if took > 20*time.Second {
		t.Errorf("took %v: too slow for the analyzer pass", took)
	}
}
