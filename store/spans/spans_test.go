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

// exported answers every question from the export of every principal (as known at the
// question's known-at), through this package: what a store materialising the map answers when
// it fetches every row.
type exported struct {
	g          *graph.Graph
	principals []string
}

func build(t *testing.T, recs []event.Record) access.Querier {
	g := graph.New()
	g.ApplyBatch(recs)
	var ps []string
	for _, r := range recs {
		d := &r.Data
		for _, s := range []string{d.Principal, d.Member, d.Subject} {
			if s != "" && event.KindOf(s) == event.KindPrincipal {
				ps = append(ps, s)
			}
		}
	}
	slices.Sort(ps)
	return &exported{g: g, principals: slices.Compact(ps)}
}

func (e *exported) all(q access.Query) []spans.Principal {
	var out []spans.Principal
	for _, p := range e.principals {
		out = append(out, spans.Principal{Name: p, Export: e.g.Export(p, q.KnownAt)})
	}
	return out
}

func (e *exported) one(q access.Query) (spans.Principal, bool) {
	known := slices.Contains(e.principals, q.Principal)
	return spans.Principal{Name: q.Principal, Export: e.g.Export(q.Principal, q.KnownAt)}, known
}

func (e *exported) WhoCould(_ context.Context, q access.Query) (access.WhoCould, error) {
	return spans.WhoCould(q, e.all(q)), nil
}

func (e *exported) WhatCould(_ context.Context, q access.Query) (access.WhatCould, error) {
	p, _ := e.one(q)
	return spans.WhatCould(q, p), nil
}

func (e *exported) Explain(_ context.Context, q access.Query) (access.Explain, error) {
	p, known := e.one(q)
	return spans.Explain(q, p, known), nil
}

func (e *exported) History(_ context.Context, q access.Query) (access.History, error) {
	return spans.History(q, e.all(q)), nil
}

func TestDifferential(t *testing.T) {
	difftest.Run(t, build, difftest.Options{History: randhist.Options{SingleTenant: true}, CompareHistory: true,
		Questions: 200})
}

func TestScenarios(t *testing.T) {
	scenario.Run(t, "../../testdata/scenarios", func(t *testing.T, recs []event.Record) access.Querier {
		for _, r := range recs {
			if r.TenantOrDefault() != event.DefaultTenant {
				t.Skip("multi-tenant scenario: run by the store's tests")
			}
		}
		return build(t, recs)
	})
}
