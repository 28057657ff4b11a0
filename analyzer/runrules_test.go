package analyzer

import (
	"context"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/whocould/whocould/finding"
)

// TestRunRules: outcomes come back in the rules' order whatever order the checks end in, no
// more than concurrency run at once, and a check that panics fails alone.
func TestRunRules(t *testing.T) {
	var running, most, want atomic.Int32
	rule := func(name string, d time.Duration, panics bool) Rule {
		return Rule{Name: name, Check: func(ctx context.Context, in *Input) ([]finding.Finding, error) {
			n := running.Add(1)
			defer running.Add(-1)
			for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
			}
			// The first checks wait for each other (a while at most), so that the test sees as
			// many at once as may run on a busy machine too.
			for start := time.Now(); running.Load() < want.Load() && most.Load() < want.Load() && time.Since(start) < 5*time.Second; {
				time.Sleep(time.Millisecond)
			}
			time.Sleep(d)
			if panics {
				var m map[string]int
				m["boom"]++ // a nil map: a rule's bug
			}
			return []finding.Finding{{ID: name}}, nil
		}}
	}
	took := []time.Duration{30 * time.Millisecond, 10 * time.Millisecond, 0, 0} // at least
	rules := []Rule{rule("slow", took[0], false), rule("panics", took[1], true), rule("quick", took[2], false),
		rule("also-quick", took[3], false)}
	for _, concurrency := range []int{0, 1, 2, 4} {
		running.Store(0)
		most.Store(0)
		want.Store(int32(max(concurrency, 1)))
		out := runRules(context.Background(), &Input{Log: slog.New(slog.DiscardHandler)}, rules, concurrency)
		for i, o := range out {
			if o.took < took[i] {
				t.Errorf("concurrency %d: rule %s took %s, want at least %s", concurrency, rules[i].Name, o.took, took[i])
			}
			if rules[i].Name == "panics" {
				if o.err == nil || !strings.Contains(o.err.Error(), "panic: assignment to entry in nil map") || o.found != nil {
					t.Errorf("concurrency %d: the panicking rule gave %v, %v", concurrency, o.found, o.err)
				}
				continue
			}
			if o.err != nil || len(o.found) != 1 || o.found[0].ID != rules[i].Name {
				t.Errorf("concurrency %d: outcome %d is %v, %v; want rule %s's finding", concurrency, i, o.found, o.err, rules[i].Name)
			}
		}
		if most.Load() != want.Load() {
			t.Errorf("concurrency %d: %d checks ran at once, want %d", concurrency, most.Load(), want.Load())
		}
	}
}
