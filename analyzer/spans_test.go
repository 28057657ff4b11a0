package analyzer

import (
	"context"
	"testing"

	"github.com/whocould/whocould/access"
	"github.com/whocould/whocould/event"
	"github.com/whocould/whocould/graph"
	"github.com/whocould/whocould/internal/randhist"
)

// TestCouldSpansAgreeWithExplain checks the all-time spans the history rules judge by against
// the engine's Explain, at every instant a random history changes (and just before it), for
// every principal, action and resource of the universe.
func TestCouldSpansAgreeWithExplain(t *testing.T) {
	ctx := context.Background()
	u := randhist.UniverseOf(1)
	checked, could := 0, 0
	for seed := int64(1); seed <= 6; seed++ {
		recs := randhist.Dedup(randhist.Generate(seed, randhist.Options{SingleTenant: true, Changes: 200}))
		g := graph.New()
		var times []int64
		for i := range recs {
			g.Apply(&recs[i])
			if recs[i].Type.IsChange() {
				us := event.Micros(recs[i].Time)
				times = append(times, us-1, us)
				if x := recs[i].Data.ExpiresAt; x != nil {
					times = append(times, event.Micros(*x)-1, event.Micros(*x))
				}
			}
		}
		m := &Model{Tenant: event.DefaultTenant, Graph: g}
		for _, p := range u.Principals {
			paths := m.Paths(p, nil)
			for _, a := range u.Actions {
				for _, r := range u.QueryResources {
					ss := CouldSpans(paths, a, r)
					for i, at := range times {
						if i%5 != int(seed)%5 { // a fifth of the instants per seed keeps it quick
							continue
						}
						want, err := g.Explain(ctx, access.Query{Principal: p, Action: a, Resource: r, At: event.FromMicros(at)})
						if err != nil {
							t.Fatal(err)
						}
						checked++
						if want.Could {
							could++
						}
						if got := SpanAt(ss, at); got != want.Could {
							t.Fatalf("seed %d: %s %s %s at %s: spans say %v, explain %v (%s)", seed, p, a, r,
								event.FromMicros(at), got, want.Could, want.Reason)
						}
					}
				}
			}
		}
	}
	if could == 0 || could == checked {
		t.Fatalf("%d of %d checks could: the histories do not tell anything apart", could, checked)
	}
	t.Logf("%d checks, %d could", checked, could)
}

func TestSpanHelpers(t *testing.T) {
	a := []Span{{0, 10}, {20, 30}}
	b := []Span{{5, 25}}
	got := IntersectSpans(a, b)
	if len(got) != 2 || got[0] != (Span{5, 10}) || got[1] != (Span{20, 25}) {
		t.Fatalf("intersect: %v", got)
	}
	m := mergeSpans([]Span{{20, 30}, {0, 10}, {10, 12}, {5, 5}})
	if len(m) != 2 || m[0] != (Span{0, 12}) || m[1] != (Span{20, 30}) {
		t.Fatalf("merge: %v", m)
	}
	for _, c := range []struct {
		t    int64
		want bool
	}{{-1, false}, {0, true}, {9, true}, {10, false}, {19, false}, {20, true}, {29, true}, {30, false}} {
		if got := SpanAt(a, c.t); got != c.want {
			t.Errorf("SpanAt(%d) = %v", c.t, got)
		}
	}
}
