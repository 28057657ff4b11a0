package analyzer_test

import (
	"context"
	"os"
	"testing"

	"github.com/whocould/whocould/analyzer"
	"github.com/whocould/whocould/store/embedded"
)

func TestUGDebugDump(t *testing.T) {
	file := os.Getenv("UG_DUMP")
	if file == "" {
		t.Skip()
	}
	s := loadScenario(t, file)
	st, _ := embedded.Open(embedded.Config{})
	st.Apply(context.Background(), s.recs)
	a := &analyzer.Analyzer{Store: st, Config: s.config}
	res, err := a.Run(context.Background(), analyzer.Options{Rules: s.file.Rules, Now: s.now, Tenants: tenantsOf(s.recs)})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range res.Findings {
		t.Logf("%s %s %s %s %s since=%s\n  %s\n  %v", f.Kind, f.Principal, f.Action, f.Resource, f.Severity, f.Since, f.Summary, f.Details)
		for _, e := range f.Evidence {
			t.Logf("    - [%s] %s", e.Kind, e.Text)
		}
	}
}
