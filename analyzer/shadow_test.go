package analyzer

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/whocould/whocould/access"
	"github.com/whocould/whocould/event"
	"github.com/whocould/whocould/finding"
	"github.com/whocould/whocould/graph"
	"github.com/whocould/whocould/internal/randhist"
	"github.com/whocould/whocould/store"
	"github.com/whocould/whocould/store/embedded"
)

// TestCouldMatchesExplain checks the shadow rule's stretches (couldEach) against the engine: on
// random histories, for every principal (and one the map does not know) and every (action,
// resource) asked about, a time lies in the could-stretches exactly when Explain says could, at
// every change boundary, one microsecond before it, and between boundaries.
func TestCouldMatchesExplain(t *testing.T) {
	seeds := 6
	if testing.Short() {
		seeds = 2
	}
	ctx := context.Background()
	for seed := range seeds {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			recs := randhist.Dedup(randhist.Generate(int64(seed), randhist.Options{Changes: 250, SingleTenant: true}))
			g := graph.New()
			var changes []event.Record
			times := map[int64]bool{}
			for _, r := range recs {
				if r.Type.IsChange() {
					changes = append(changes, r)
					ts := event.Micros(r.Time)
					times[ts], times[ts-1], times[ts+30_000_000] = true, true, true
					if x := r.Data.ExpiresAt; x != nil {
						times[event.Micros(*x)], times[event.Micros(*x)-1] = true, true
					}
				}
			}
			g.ApplyBatch(changes)
			var at []int64
			for ts := range times {
				at = append(at, ts)
			}
			slices.Sort(at)
			u := randhist.UniverseOf(1)
			var keys []entitlementKey
			for _, a := range u.Actions {
				for _, r := range u.QueryResources {
					keys = append(keys, entitlementKey{a, r})
				}
			}
			m := &Model{Graph: g}
			for _, p := range append(slices.Clone(u.Principals), "user:nobody") {
				could := couldEach(m, p, keys)
				for i, k := range keys {
					for _, ts := range at {
						ex, err := g.Explain(ctx, access.Query{Principal: p, Action: k.action, Resource: k.resource, At: event.FromMicros(ts)})
						if err != nil {
							t.Fatal(err)
						}
						if got := SpanAt(could[i], ts); got != ex.Could {
							t.Fatalf("%s %s on %s at %s: join says %v, Explain says %v (%s); stretches %v",
								p, k.action, k.resource, stamp(event.FromMicros(ts)), got, ex.Could, ex.Reason, could[i])
						}
					}
				}
			}
		})
	}
}

func TestComplementSpans(t *testing.T) {
	a := []Span{{1, 4}, {5, 9}, {10, 12}}
	for _, c := range []struct {
		w    Span
		want []Span
	}{
		{Span{0, 11}, []Span{{0, 1}, {4, 5}, {9, 10}}},
		{Span{5, 9}, nil},
		{Span{4, 5}, []Span{{4, 5}}},
		{Span{11, 20}, []Span{{12, 20}}},
		{Span{-5, 0}, []Span{{-5, 0}}},
	} {
		if got := complementSpans(a, c.w); !slices.Equal(got, c.want) {
			t.Errorf("complement within %v: %v, want %v", c.w, got, c.want)
		}
	}
}

// TestShadowMatchesBruteForce runs the rule on random histories with random decisions (many on
// change boundaries, one microsecond before them, by principals the map does not know) and
// checks each finding, and that there is no other, against asking Explain about every decision.
func TestShadowMatchesBruteForce(t *testing.T) {
	seeds := 6
	if testing.Short() {
		seeds = 2
	}
	ctx := context.Background()
	for seed := range seeds {
		// Scale 1 judges its principals in one batch, scale 3 three principals at a time (one
		// read of each batch's decisions).
		scale := 1 + 2*(seed%2)
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			if scale > 1 {
				defer func(n, u int) { shadowBatch, shadowBatchUses = n, u }(shadowBatch, shadowBatchUses)
				shadowBatch, shadowBatchUses = 3, 1000
			}
			recs := randhist.Dedup(randhist.Generate(int64(seed), randhist.Options{Changes: 200 * scale, Scale: scale, SingleTenant: true}))
			var bounds []time.Time
			for _, r := range recs {
				if r.Type.IsChange() {
					bounds = append(bounds, r.Time)
				}
			}
			u := randhist.UniverseOf(scale)
			rnd := rand.New(rand.NewPCG(uint64(seed), 7))
			pick := func(xs []string) string { return xs[rnd.IntN(len(xs))] }
			principals := append(slices.Clone(u.Principals), "user:nobody")
			actions, resources := u.Actions[:4], []string{"db:prod", "db:prod/orders", "repo:acme/api", "*"}
			for i := range 600 * scale {
				at := bounds[rnd.IntN(len(bounds))]
				switch rnd.IntN(3) {
				case 0:
					at = at.Add(-time.Microsecond)
				case 1:
					at = at.Add(time.Duration(rnd.IntN(600)) * time.Second)
				}
				effect := event.Allow
				if rnd.IntN(3) == 0 {
					effect = event.Deny
				}
				recs = append(recs, event.Record{Position: uint64(len(recs) + 1), Recorded: randhist.Base.Add(time.Hour),
					Event: event.Event{ID: fmt.Sprintf("d%d", i), Source: "diff", Type: event.Decision, Time: at,
						Data: event.Data{Principal: pick(principals), Action: pick(actions), Resource: pick(resources), Effect: effect,
							Policy: pick([]string{"", "p1", "p2"})}}})
			}
			st := memStore(t, recs)
			m, err := Load(ctx, st, event.DefaultTenant)
			if err != nil {
				t.Fatal(err)
			}
			now := randhist.Base.Add(30 * 24 * time.Hour)
			cfg := &Config{}
			cfg.Defaults()
			in := &Input{Tenant: event.DefaultTenant, Now: now, Config: cfg, Store: st, Model: m}
			got, err := checkShadowAccess(ctx, in)
			if err != nil {
				t.Fatal(err)
			}

			type want struct {
				n           int64
				first, last time.Time
				keys        map[string]bool
				ids         []string
			}
			wants := map[string]*want{}
			err = st.Decisions(ctx, store.DecisionQuery{}, func(d store.Decision) error {
				ex, err := m.Graph.Explain(ctx, access.Query{Principal: d.Principal, Action: d.Action, Resource: d.Resource, At: d.Time})
				if err != nil {
					return err
				}
				kind := ""
				switch {
				case d.Effect == event.Allow && !ex.Could:
					kind = shadowAllowed
				case d.Effect == event.Deny && ex.Could:
					kind = shadowDenied
				default:
					return nil
				}
				k := kind + " " + d.Principal
				w := wants[k]
				if w == nil {
					w = &want{first: d.Time, keys: map[string]bool{}}
					wants[k] = w
				}
				w.n++
				w.last = d.Time
				w.keys[d.Action+" "+d.Resource] = true
				if len(w.ids) < maxDecisionEvidence {
					w.ids = append(w.ids, d.ID)
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if len(wants) == 0 {
				t.Fatal("no disagreement at all: the test tests nothing")
			}
			for _, f := range got {
				k := f.Kind + " " + f.Principal
				w := wants[k]
				if w == nil {
					t.Errorf("unexpected finding %s: %s", k, f.Summary)
					continue
				}
				delete(wants, k)
				if f.Details["decisions"] != w.n || f.Details["keys"] != len(w.keys) || f.Details["first"] != stamp(w.first) ||
					f.Details["last"] != stamp(w.last) || !f.Since.Equal(w.first) {
					t.Errorf("%s: details %v since %s, want %d decisions on %d keys from %s to %s", k, f.Details, stamp(f.Since), w.n,
						len(w.keys), stamp(w.first), stamp(w.last))
				}
				var ids []string
				for _, e := range f.Evidence {
					if e.Kind == "decision" {
						ids = append(ids, e.Event.ID)
					}
				}
				if !slices.Equal(ids, w.ids) {
					t.Errorf("%s: evidence lists decisions %v, want the first %v", k, ids, w.ids)
				}
			}
			for k, w := range wants {
				t.Errorf("missing finding %s (%d decisions from %s)", k, w.n, stamp(w.first))
			}
		})
	}
}

// countingReader counts the decisions a store streams.
type countingReader struct {
	store.Reader
	reads, rows int
}

func (c *countingReader) Decisions(ctx context.Context, q store.DecisionQuery, fn func(store.Decision) error) error {
	c.reads++
	return c.Reader.Decisions(ctx, q, func(d store.Decision) error { c.rows++; return fn(d) })
}

// TestShadowReadsLittle checks that settled keys are counted without reading their decisions,
// and that a principal's reading stops once it has its evidence: a principal the map does not
// know, with 2000 allowed decisions over 200 keys, is one finding of 2000 decisions, read up to
// its first maxDecisionEvidence.
func TestShadowReadsLittle(t *testing.T) {
	var recs []event.Record
	base := time.Date(2026, 1, 5, 0, 0, 0, 0, time.UTC)
	for i := range 2000 {
		recs = append(recs, event.Record{Position: uint64(i + 1), Recorded: base, Event: event.Event{ID: fmt.Sprint(i), Source: "t",
			Type: event.Decision, Time: base.Add(time.Duration(i) * time.Minute),
			Data: event.Data{Principal: "user:ghost", Action: "db.read", Resource: fmt.Sprintf("db:prod/t%d", i%200), Effect: event.Allow}}})
	}
	fs, cr := shadowCounting(t, recs, base.Add(60*24*time.Hour))
	if len(fs) != 1 || fs[0].Details["decisions"] != int64(2000) || fs[0].Details["keys"] != 200 {
		t.Fatalf("findings %+v, want one of 2000 decisions on 200 keys", fs)
	}
	if cr.reads != 1 || cr.rows > maxDecisionEvidence+1 {
		t.Errorf("%d reads streamed %d decisions, want one read stopped after %d", cr.reads, cr.rows, maxDecisionEvidence)
	}
}

// shadowCounting runs shadow-access over recs at now, and counts what it reads.
func shadowCounting(t *testing.T, recs []event.Record, now time.Time) ([]finding.Finding, *countingReader) {
	t.Helper()
	ctx := context.Background()
	st := memStore(t, recs)
	m, err := Load(ctx, st, event.DefaultTenant)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &Config{}
	cfg.Defaults()
	cr := &countingReader{Reader: st}
	fs, err := checkShadowAccess(ctx, &Input{Tenant: event.DefaultTenant, Now: now, Config: cfg, Store: cr, Model: m})
	if err != nil {
		t.Fatal(err)
	}
	return fs, cr
}

// memStore is an embedded store in memory with recs applied, closed at the test's end.
func memStore(t *testing.T, recs []event.Record) *embedded.Store {
	t.Helper()
	st, err := embedded.Open(embedded.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if err := st.Apply(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
	return st
}

// TestShadowReadsOnlyItsKeys: of a principal's decisions, only those of keys that must be
// counted are read. user:k may always read db:prod/c, and db:prod/a from 10:10; it reads both
// every minute from 10:00, so its decisions on db:prod/a before 10:10 offend and must be
// counted, and those on db:prod/c, in the same stretch of time, are never read.
func TestShadowReadsOnlyItsKeys(t *testing.T) {
	base := time.Date(2026, 1, 5, 10, 0, 0, 0, time.UTC)
	var recs []event.Record
	add := func(at time.Time, typ event.Type, d event.Data) {
		recs = append(recs, event.Record{Position: uint64(len(recs) + 1), Recorded: at, Event: event.Event{ID: fmt.Sprint(len(recs)),
			Source: "t", Type: typ, Time: at, Data: d}})
	}
	add(base.Add(-24*time.Hour), event.GrantAdded, event.Data{Subject: "user:k", Action: "db.read", Resource: "db:prod/c"})
	add(base.Add(10*time.Minute), event.GrantAdded, event.Data{Subject: "user:k", Action: "db.read", Resource: "db:prod/a"})
	for i := 1; i < 20; i++ {
		at := base.Add(time.Duration(i) * time.Minute)
		add(at.Add(-30*time.Second), event.Decision, event.Data{Principal: "user:k", Action: "db.read", Resource: "db:prod/c", Effect: event.Allow})
		add(at, event.Decision, event.Data{Principal: "user:k", Action: "db.read", Resource: "db:prod/a", Effect: event.Allow})
	}
	fs, cr := shadowCounting(t, recs, base.Add(24*time.Hour))
	if len(fs) != 1 || fs[0].Details["decisions"] != int64(9) || fs[0].Resource != "db:prod/a" {
		t.Fatalf("findings %+v, want one of the 9 decisions on db:prod/a before 10:10", fs)
	}
	if cr.reads != 1 || cr.rows > 10 {
		t.Errorf("%d reads streamed %d decisions, want one read of db:prod/a's, up to the first at 10:10", cr.reads, cr.rows)
	}
}
