package analyzer_test

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/whocould/whocould/analyzer"
	"github.com/whocould/whocould/store/embedded"
)

func BenchmarkUGCreep(b *testing.B) {
	changes, decisions, now := benchHistory(b)
	st, _ := embedded.Open(embedded.Config{})
	ctx := context.Background()
	st.Apply(ctx, changes)
	for batch := range decisions {
		st.Apply(ctx, batch)
	}
	cfg := &analyzer.Config{}
	cfg.Defaults()
	cfg.Validate()
	a := &analyzer.Analyzer{Store: st, Config: cfg}
	rules := strings.Split(os.Getenv("UG_RULE"), ",")
	b.ResetTimer()
	res, err := a.Run(ctx, analyzer.Options{Now: now, Rules: rules})
	if err != nil {
		b.Fatal(err)
	}
	for _, r := range res.Runs {
		b.Logf("%-28s %7d findings  %v", r.Rule, r.Found, r.Took.Round(time.Millisecond))
	}
}
