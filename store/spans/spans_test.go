package spans_test

import (
	"context"
	"slices"
	"testing"

	"github.com/whocould/whocould/access"
	"github.com/whocould/whocould/event"
	"github.com/whocould/whocould/graph"
	"github.com/whocould/whocould/internal/difftest"
	"github.com/whocould/whocould/internal/randhist"
	"github.com/whocould/whocould/internal/scenario"
	"github.com/whocould/whocould/store/spans"
)

// joined answers every question by joining the map's parts (graph.Chains and the others) of
// everything the records name, as known at the question's known-at: what a store keeping the
// parts as rows answers when it fetches every row.
type joined struct {
	g          *graph.Graph
	principals []string
	roles      []string
	grants     []graph.GrantKey
}

func buildJoined(t *testing.T, recs []event.Record) access.Querier {
	j := &joined{g: graph.New()}
	j.g.ApplyBatch(recs)
	seen := map[graph.GrantKey]bool{}
	for _, r := range recs {
		d := &r.Data
		for _, s := range []string{d.Principal, d.Member, d.Subject} {
			if s != "" && event.KindOf(s) == event.KindPrincipal {
				j.principals = append(j.principals, s)
			}
		}
		if d.Role != "" {
			j.roles = append(j.roles, d.Role)
		}
		if d.Includes != "" {
			j.roles = append(j.roles, d.Includes)
		}
		if (r.Type == event.GrantAdded || r.Type == event.GrantRemoved) && !seen[graph.GrantKey{Subject: d.Subject, Role: d.Role, Action: d.Action, Resource: d.Resource}] {
			k := graph.GrantKey{Subject: d.Subject, Role: d.Role, Action: d.Action, Resource: d.Resource}
			if k.Role != "" {
				k.Action = ""
			}
			seen[k] = true
			j.grants = append(j.grants, k)
		}
	}
	slices.Sort(j.roles)
	j.roles = slices.Compact(j.roles)
	slices.Sort(j.principals)
	j.principals = slices.Compact(j.principals)
	return j
}

func (j *joined) parts(q access.Query) *spans.Parts {
	pt := spans.NewParts()
	for _, p := range j.principals {
		pt.Status[p] = j.g.StatusSpans(p, q.KnownAt)
		pt.Chains[p] = j.g.Chains(p, q.KnownAt)
	}
	for _, k := range j.grants {
		for _, s := range j.g.GrantSpans(k.Subject, k.Role, k.Action, k.Resource, q.KnownAt) {
			pt.Grants[k.Subject] = append(pt.Grants[k.Subject], spans.Grant{GrantKey: k, GrantSpan: s})
		}
	}
	for _, r := range j.roles {
		pt.Tails[r] = j.g.Tails(r, q.KnownAt)
	}
	return pt
}

func (j *joined) all(q access.Query) []spans.Principal {
	pt := j.parts(q)
	var out []spans.Principal
	for _, p := range j.principals {
		out = append(out, pt.Principal(p, nil))
	}
	return out
}

func (j *joined) WhoCould(_ context.Context, q access.Query) (access.WhoCould, error) {
	return spans.WhoCould(q, j.all(q)), nil
}

func (j *joined) WhatCould(_ context.Context, q access.Query) (access.WhatCould, error) {
	return spans.WhatCould(q, j.parts(q).Principal(q.Principal, nil)), nil
}

func (j *joined) Explain(_ context.Context, q access.Query) (access.Explain, error) {
	return spans.Explain(q, j.parts(q).Principal(q.Principal, nil), slices.Contains(j.principals, q.Principal)), nil
}

func (j *joined) History(_ context.Context, q access.Query) (access.History, error) {
	return spans.History(q, j.all(q)), nil
}

func TestDifferential(t *testing.T) {
	difftest.Run(t, buildJoined, difftest.Options{History: randhist.Options{SingleTenant: true}, CompareHistory: true,
		Questions: 200})
}

func TestScenarios(t *testing.T) {
	scenario.Run(t, "../../testdata/scenarios", func(t *testing.T, recs []event.Record) access.Querier {
		for _, r := range recs {
			if r.TenantOrDefault() != event.DefaultTenant {
				t.Skip("multi-tenant scenario: run by the store's tests")
			}
		}
		return buildJoined(t, recs)
	})
}
