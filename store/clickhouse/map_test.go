package clickhouse_test

import (
	"context"
	"testing"

	"github.com/whocould/whocould/access"
	"github.com/whocould/whocould/event"
	"github.com/whocould/whocould/internal/chtest"
	"github.com/whocould/whocould/internal/difftest"
	"github.com/whocould/whocould/internal/scenario"
	"github.com/whocould/whocould/store/clickhouse"
)

// applied applies the records in stretches that cut the log's frames (groups of one recorded
// time) apart, with a checkpoint and a reopen in the middle — so the permission map is rebuilt
// from the archive and continues a split frame — and a replay of what was applied; every answer
// comes from ClickHouse.
func applied(t *testing.T, recs []event.Record) access.Querier {
	t.Helper()
	ctx := context.Background()
	db := chtest.Database(t)
	s := open(t, clickhouse.Config{Database: db})
	half := len(recs) / 2
	sizes := []int{1, 7, 3, 31, 2, 64}
	apply := func(s *clickhouse.Store, recs []event.Record) {
		for i, k := 0, 0; i < len(recs); k++ {
			j := min(i+sizes[k%len(sizes)], len(recs))
			if err := s.Apply(ctx, recs[i:j]); err != nil {
				t.Fatal(err)
			}
			i = j
		}
	}
	apply(s, recs[:half])
	if err := s.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = open(t, clickhouse.Config{Database: db})
	t.Cleanup(func() { s.Close() })
	apply(s, recs[:half+half/2]) // the first half again: skipped
	apply(s, recs[half+half/2:])
	if err := s.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	return s
}

func TestScenarios(t *testing.T) {
	scenario.Run(t, "../../testdata/scenarios", applied)
}

func TestDifferential(t *testing.T) {
	difftest.Run(t, applied, difftest.Options{CompareHistory: true, Questions: 200})
}
