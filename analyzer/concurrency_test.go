package analyzer_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/whocould/whocould/analyzer"
	"github.com/whocould/whocould/finding"
	"github.com/whocould/whocould/store/embedded"
)

// TestConcurrentRulesAgree: every rule over a small synthetic organisation (the benchmark's, at
// a hundredth of its size) finds the same, run one rule at a time or four at once.
func TestConcurrentRulesAgree(t *testing.T) {
	t.Setenv("WHOCOULD_BENCH_SCALE", "0.01")
	changes, decisions, now, baseline := benchHistory(t)
	st := benchEmbedded(t, changes, decisions)
	ctx := context.Background()
	run := func(concurrency int) (string, int) {
		cfg := benchConfig(t, baseline, concurrency)
		// A dry run: each run finds everything anew.
		res, err := (&analyzer.Analyzer{Store: dryRun{st}, Config: cfg}).Run(ctx, analyzer.Options{Now: now})
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
	one, n := run(1)
	if n < 100 {
		t.Fatalf("%d findings: too few for the comparison to mean much", n)
	}
	if four, m := run(4); four != one {
		t.Fatalf("four rules at once found %d findings, one at a time %d, and they differ", m, n)
	}
}

// dryRun is a store whose findings are never written.
type dryRun struct{ *embedded.Store }

func (dryRun) PutFindings(context.Context, string, []finding.Finding) error { return nil }
