package analyzer_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/whocould/whocould/analyzer"
	"github.com/whocould/whocould/finding"
	"github.com/whocould/whocould/internal/chtest"
	"github.com/whocould/whocould/store/clickhouse"
	"github.com/whocould/whocould/store/embedded"
)

// TestConcurrentRulesAgree: every rule over a small synthetic organisation (the benchmark's, at
// a hundredth of its size) finds the same, run one rule at a time or four at once, on the
// embedded store and on ClickHouse. What it guards against is shared state the rules write
// while running side by side: run it with -race (TestRunRules checks that as many run at once
// as the concurrency says).
func TestConcurrentRulesAgree(t *testing.T) {
	t.Setenv("WHOCOULD_BENCH_SCALE", "0.01")
	changes, decisions, now, baseline := benchHistory(t)
	ctx := context.Background()
	run := func(st analyzer.Store, concurrency int) (string, int) {
		t.Helper()
		res, err := (&analyzer.Analyzer{Store: st, Config: benchConfig(t, baseline, concurrency)}).Run(ctx, analyzer.Options{Now: now})
		if err != nil {
			t.Fatal(err)
		}
		// The runs are reported in the rules' order, each with its own count.
		counts := map[string]int{}
		for _, f := range res.Findings {
			counts[f.Rule]++
		}
		for i, r := range res.Runs {
			if r.Rule != analyzer.Rules[i].Name || r.Found != counts[r.Rule] || r.Error != "" {
				t.Fatalf("%d at once: run %d is %s (found %d, error %q), want %s with %d", concurrency, i, r.Rule, r.Found, r.Error,
					analyzer.Rules[i].Name, counts[analyzer.Rules[i].Name])
			}
		}
		js, err := json.Marshal(res.Findings)
		if err != nil {
			t.Fatal(err)
		}
		return string(js), len(res.Findings)
	}
	// Dry runs on the embedded store: each finds everything anew.
	st := dryRun{benchEmbedded(t, changes, decisions)}
	one, n := run(st, 1)
	if n < 100 {
		t.Fatalf("%d findings: too few for the comparison to mean much", n)
	}
	if four, m := run(st, 4); four != one {
		t.Fatalf("four rules at once found %d findings, one at a time %d, and they differ", m, n)
	}
	t.Run("clickhouse", func(t *testing.T) {
		db := chtest.Database(t)
		ch, err := clickhouse.Open(ctx, clickhouse.Config{Addr: chtest.Addr(t), Database: db})
		if err != nil {
			t.Fatal(err)
		}
		defer ch.Close()
		benchLoad(t, ch, changes, decisions)
		if four, m := run(ch, 4); four != one {
			t.Fatalf("ClickHouse, four rules at once, found %d findings, the embedded store %d, and they differ", m, n)
		}
	})
}

// dryRun is a store whose findings are never written.
type dryRun struct{ *embedded.Store }

func (dryRun) PutFindings(context.Context, string, []finding.Finding) error { return nil }
