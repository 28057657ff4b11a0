package graph_test

import (
	"testing"

	"github.com/whocould/whocould/access"
	"github.com/whocould/whocould/event"
	"github.com/whocould/whocould/graph"
	"github.com/whocould/whocould/internal/difftest"
	"github.com/whocould/whocould/internal/randhist"
	"github.com/whocould/whocould/internal/scenario"
)

// build applies the records, in log order, to one graph: the graph is one tenant's, so the
// histories here are single-tenant (the store's tests mix tenants).
func build(t *testing.T, recs []event.Record) access.Querier {
	g := graph.New()
	g.ApplyBatch(recs)
	return g
}

func TestDifferential(t *testing.T) {
	difftest.Run(t, build, difftest.Options{History: randhist.Options{SingleTenant: true}, CompareHistory: true})
}

func TestScenarios(t *testing.T) {
	scenario.Run(t, "../testdata/scenarios", func(t *testing.T, recs []event.Record) access.Querier {
		for _, r := range recs {
			if r.TenantOrDefault() != event.DefaultTenant {
				t.Skip("multi-tenant scenario: run by the store's tests")
			}
		}
		return build(t, recs)
	})
}
