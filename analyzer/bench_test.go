package analyzer_test

import (
	"bufio"
	"cmp"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/whocould/whocould/analyzer"
	"github.com/whocould/whocould/event"
	"github.com/whocould/whocould/graph"
	"github.com/whocould/whocould/internal/chtest"
	"github.com/whocould/whocould/internal/synth"
	"github.com/whocould/whocould/store/clickhouse"
	"github.com/whocould/whocould/store/embedded"
)

// benchSize is the organisation of the full pass: the 10k principals, 1k groups, 200k
// grants and 10M decisions; WHOCOULD_BENCH_SCALE (a fraction, e.g. 0.1) shrinks it for a quick
// look.
func benchSize() (principals, groups, grants, decisions int) {
	scale := 1.0
	if v := os.Getenv("WHOCOULD_BENCH_SCALE"); v != "" {
		scale, _ = strconv.ParseFloat(v, 64)
	}
	s := func(n int) int { return max(1, int(float64(n)*scale)) }
	return s(10_000), max(100, s(1_000)), s(200_000), s(10_000_000)
}

// benchHistory is the synthetic organisation's changes and its decisions: each decision is by
// a random principal, on an entitlement it holds at the end of the history (a concrete action
// of the pattern, on the grant's resource or below), at a random time in the last 120 days —
// so most are allowed and possible, some fall before their grant (shadow access), 4% are
// denied; a few principals disabled mid-history keep deciding.
func benchHistory(tb testing.TB) (changes []event.Record, decisions func(yield func([]event.Record) bool), now time.Time, baseline *analyzer.Baseline) {
	principals, groups, grants, nd := benchSize()
	org := synth.Generate(synth.Options{Principals: principals, Groups: groups, Grants: grants, Roles: 50, Seed: 7})
	changes = org.Records(7)
	g := graph.New()
	g.ApplyBatch(changes)
	end := org.Start.Add(org.Span)
	// The baseline is the state signed off a month before the end: the role definitions and
	// the grants that held then (those to principals allowed as direct grants).
	signed := event.Micros(end.Add(-30 * 24 * time.Hour))
	baseline = &analyzer.Baseline{Roles: map[string]analyzer.BaselineRole{}}
	holds := func(rs graph.RelationSpans) bool {
		return slices.ContainsFunc(rs.Spans, func(s graph.GrantSpan) bool { return s.From <= signed && signed < s.To })
	}
	g.Relations(nil, func(rs graph.RelationSpans) {
		if !holds(rs) {
			return
		}
		switch rs.Kind {
		case graph.Permission:
			r := baseline.Roles[rs.A]
			r.Permissions = append(r.Permissions, rs.B)
			baseline.Roles[rs.A] = r
		case graph.Inclusion:
			r := baseline.Roles[rs.A]
			r.Includes = append(r.Includes, rs.B)
			baseline.Roles[rs.A] = r
		case graph.RoleGrant, graph.ActionGrant:
			bg := analyzer.BaselineGrant{Subject: rs.A, Resource: rs.C}
			if rs.Kind == graph.RoleGrant {
				bg.Role = rs.B
			} else {
				bg.Action = rs.B
			}
			if event.KindOf(rs.A) == event.KindGroup {
				baseline.Grants = append(baseline.Grants, bg)
			} else {
				baseline.AllowedDirectGrants = append(baseline.AllowedDirectGrants, bg)
			}
		}
	})
	// Each principal's entitlements with when it could use them (active, with a path): a
	// decision picks one that holds at its time, as an enforcement point that agrees with the
	// map would allow.
	type ent struct {
		action, resource string
		could            []analyzer.Span
	}
	m := &analyzer.Model{Graph: g}
	ents := make([][]ent, principals)
	for i := range principals {
		ps := m.Paths(fmt.Sprintf("user:u%d", i), nil)
		byKey := map[[2]string][]analyzer.Span{}
		for _, p := range ps.Paths {
			k := [2]string{p.Action, p.Resource}
			byKey[k] = append(byKey[k], analyzer.Span{From: p.From, To: p.To})
		}
		active := analyzer.ActiveSpans(ps)
		for k, ss := range byKey {
			a := k[0]
			if strings.HasSuffix(a, "*") {
				a = strings.TrimSuffix(a, "*") + "select"
				if a == "select" {
					a = "db.table.select"
				}
			}
			ents[i] = append(ents[i], ent{a, k[1], analyzer.IntersectSpans(analyzer.MergeSpans(ss), active)})
		}
		slices.SortFunc(ents[i], func(x, y ent) int {
			return cmp.Or(cmp.Compare(x.action, y.action), cmp.Compare(x.resource, y.resource))
		})
	}
	decisions = func(yield func([]event.Record) bool) {
		// The same decisions, at the same positions, each time it is called.
		pos := uint64(len(changes))
		r := rand.New(rand.NewPCG(7, 8))
		span := int64(120 * 24 * time.Hour)
		batch := make([]event.Record, 0, 100_000)
		for i := range nd {
			// In arrival order, as enforcement points send them: i-th of nd over the last 120
			// days, give or take a minute (span/nd first: span*i overflows int64).
			tm := end.Add(-time.Duration(span-span/int64(nd)*int64(i)) + time.Duration(r.Int64N(int64(time.Minute)))).Truncate(time.Microsecond)
			us := event.Micros(tm)
			d := event.Data{Effect: event.Allow, Policy: "authz.rego"}
			if r.IntN(100) < 4 {
				// Denied: a random action on a random table, which the principal can rarely do.
				d.Principal = fmt.Sprintf("user:u%d", r.IntN(principals))
				d.Action, d.Resource = org.Actions[r.IntN(len(org.Actions))], org.Resources[r.IntN(len(org.Resources))]
				d.Effect, d.Reason = event.Deny, "no grant matches"
			} else {
				// Allowed: an entitlement that holds then, found in a few tries (else one that
				// does not: the rare disagreement shadow access is about).
				for try := 0; try < 16; try++ {
					p := r.IntN(principals)
					es := ents[p]
					if len(es) == 0 {
						continue
					}
					e := es[r.IntN(len(es))]
					d.Principal, d.Action, d.Resource = fmt.Sprintf("user:u%d", p), e.action, e.resource
					if analyzer.SpanAt(e.could, us) {
						break
					}
				}
				if d.Principal == "" {
					d.Principal, d.Action, d.Resource = "user:u0", "db.table.select", org.Resources[0]
				}
			}
			pos++
			batch = append(batch, event.Record{Position: pos, Recorded: end, Event: event.Event{ID: strconv.Itoa(i), Source: "opa://bench",
				Type: event.Decision, Time: tm, Data: d}})
			if len(batch) == cap(batch) {
				if !yield(batch) {
					return
				}
				batch = batch[:0]
			}
		}
		if len(batch) > 0 {
			yield(batch)
		}
	}
	return changes, decisions, end, baseline
}

// peakRSS is the process's peak resident set (VmHWM) in bytes, 0 where /proc does not say.
func peakRSS() uint64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb * 1024
		}
	}
	return 0
}

// heapPeak samples the live heap while fn runs and returns its peak. With
// WHOCOULD_BENCH_HEAPPROFILE=FILE it also writes a heap profile to FILE each time the peak grows
// by a tenth (the last one is the peak's).
func heapPeak(fn func()) uint64 {
	profile := os.Getenv("WHOCOULD_BENCH_HEAPPROFILE")
	var written uint64
	var peak atomic.Uint64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak.Load() {
				peak.Store(ms.HeapInuse)
				if profile != "" && ms.HeapInuse > written+written/10 {
					written = ms.HeapInuse
					runtime.GC() // the profile's in-use figures are as of the last collection
					if f, err := os.Create(profile); err == nil {
						pprof.WriteHeapProfile(f)
						f.Close()
					}
				}
			}
			select {
			case <-stop:
				return
			case <-time.After(250 * time.Millisecond):
			}
		}
	}()
	fn()
	close(stop)
	<-done
	return peak.Load()
}

// benchConfig is the analyzers' configuration for the synthetic organisation.
func benchConfig(tb testing.TB, baseline *analyzer.Baseline, concurrency int) *analyzer.Config {
	cfg := &analyzer.Config{Concurrency: concurrency,
		SeparationOfDuties: []analyzer.SoDPair{{Name: "create-and-drop", Actions: []string{"db.table.create", "db.table.drop"}}},
		Privileged:         analyzer.Privileged{Roles: []string{"role:r1", "role:r2"}}}
	cfg.Defaults()
	cfg.SetBaseline(baseline)
	if err := cfg.Validate(); err != nil {
		tb.Fatal(err)
	}
	return cfg
}

// benchEmbedded is an embedded store holding the changes and the decisions, closed when the
// test ends.
func benchEmbedded(tb testing.TB, changes []event.Record, decisions func(yield func([]event.Record) bool)) *embedded.Store {
	st, err := embedded.Open(embedded.Config{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { st.Close() })
	benchApply(tb, st, changes, decisions)
	return st
}

// benchLoad applies the changes and the decisions to a ClickHouse store, and checkpoints.
func benchLoad(tb testing.TB, st *clickhouse.Store, changes []event.Record, decisions func(yield func([]event.Record) bool)) {
	benchApply(tb, st, changes, decisions)
	if err := st.Checkpoint(context.Background()); err != nil {
		tb.Fatal(err)
	}
}

// benchApply applies the changes and the decisions to st, in large batches.
func benchApply(tb testing.TB, st interface {
	Apply(context.Context, []event.Record) error
}, changes []event.Record, decisions func(yield func([]event.Record) bool)) {
	ctx := context.Background()
	for i := 0; i < len(changes); i += 50_000 {
		if err := st.Apply(ctx, changes[i:min(i+50_000, len(changes))]); err != nil {
			tb.Fatal(err)
		}
	}
	for batch := range decisions {
		if err := st.Apply(ctx, batch); err != nil {
			tb.Fatal(err)
		}
	}
}

// benchPass runs every rule once over st and reports the time, the findings and the memory.
//
// concurrency is the rules run at once: the store's advised setting (Config.Concurrency), which
// WHOCOULD_BENCH_CONCURRENCY overrides.
func benchPass(b *testing.B, st analyzer.Store, now time.Time, baseline *analyzer.Baseline, concurrency int) {
	if v := os.Getenv("WHOCOULD_BENCH_CONCURRENCY"); v != "" {
		concurrency, _ = strconv.Atoi(v)
	}
	a := &analyzer.Analyzer{Store: st, Config: benchConfig(b, baseline, concurrency)}
	// The resident peak from here on: what the set-up built and dropped is handed back, and
	// the kernel's high-water mark is reset (Linux: clear_refs 5).
	debug.FreeOSMemory()
	_ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0)
	// WHOCOULD_BENCH_CPUPROFILE=FILE profiles the pass alone (-cpuprofile counts the set-up too).
	if file := os.Getenv("WHOCOULD_BENCH_CPUPROFILE"); file != "" {
		f, err := os.Create(file)
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			b.Fatal(err)
		}
		defer pprof.StopCPUProfile()
	}
	// By default one run of every rule, as the analyzer target runs them. With
	// WHOCOULD_BENCH_RULES (a comma-separated list, or "each"), one run per rule, so that each
	// one's time and peak heap are its own (each loads the model again).
	b.ResetTimer()
	var (
		total    time.Duration
		peak     uint64
		findings int
	)
	runs := [][]string{nil}
	if only := os.Getenv("WHOCOULD_BENCH_RULES"); only != "" {
		runs = nil
		for _, r := range analyzer.Rules {
			if only == "each" || slices.Contains(strings.Split(only, ","), r.Name) {
				runs = append(runs, []string{r.Name})
			}
		}
	}
	for _, rules := range runs {
		runtime.GC()
		var res *analyzer.Result
		cpu := cpuTime()
		start := time.Now()
		p := heapPeak(func() {
			var err error
			if res, err = a.Run(context.Background(), analyzer.Options{Now: now, Rules: rules}); err != nil {
				b.Fatal(err)
			}
		})
		took := time.Since(start)
		total += took
		peak = max(peak, p)
		findings += len(res.Findings)
		for _, r := range res.Runs {
			b.Logf("%-28s %7d findings  %6.1fs", r.Rule, r.Found, r.Took.Seconds())
		}
		b.Logf("run of %v: %.1fs, %.1fs of CPU in this process, heap peak %d MB", cmp.Or(strings.Join(rules, ","), "every rule"),
			took.Seconds(), (cpuTime() - cpu).Seconds(), p>>20)
	}
	b.StopTimer()
	b.ReportMetric(total.Seconds(), "s/pass")
	b.ReportMetric(float64(findings), "findings")
	b.ReportMetric(float64(peak)/(1<<20), "MB-heap-peak")
	b.ReportMetric(float64(peakRSS())/(1<<20), "MB-rss-peak")
	b.Logf("%d rules at once, GOMEMLIMIT %s, GOGC %s; the resident peak counts the store (%s) and the model", concurrency, os.Getenv("GOMEMLIMIT"), os.Getenv("GOGC"), fmt.Sprintf("%T", st))
}

// BenchmarkFullPass is a full pass of every rule over the organisation, on each store
// (the clickhouse half needs WHOCOULD_CLICKHOUSE); the resident peak is the pass's, the
// embedded store's own memory included:
//
//	go test -run '^$' -bench FullPass/embedded -benchtime 1x -timeout 60m ./analyzer
//	WHOCOULD_BENCH_RULES=each ...        # one run per rule: each one's time and peak heap
func BenchmarkFullPass(b *testing.B) {
	b.Run("embedded", func(b *testing.B) {
		changes, decisions, now, baseline := benchHistory(b)
		benchPass(b, benchEmbedded(b, changes, decisions), now, baseline, 1)
	})
	b.Run("clickhouse", func(b *testing.B) {
		changes, decisions, now, baseline := benchHistory(b)
		ctx := context.Background()
		// WHOCOULD_BENCH_DATABASE=NAME keeps the loaded history in database NAME, and a later
		// run at the same scale reuses it instead of loading it again.
		db, kept := os.Getenv("WHOCOULD_BENCH_DATABASE"), false
		scale := "scale " + cmp.Or(os.Getenv("WHOCOULD_BENCH_SCALE"), "1")
		if db == "" {
			db = chtest.Database(b)
		} else {
			kept = chtest.Loaded(b, db, scale)
		}
		st, err := clickhouse.Open(ctx, clickhouse.Config{Addr: chtest.Addr(b), Database: db})
		if err != nil {
			b.Fatal(err)
		}
		defer st.Close()
		if kept {
			b.Logf("reusing the history in database %s", db)
			chtest.Exec(b, "TRUNCATE TABLE "+db+".findings") // a first pass, as on a fresh load
			benchPass(b, st, now, baseline, 2)
			return
		}
		benchLoad(b, st, changes, decisions)
		if os.Getenv("WHOCOULD_BENCH_DATABASE") != "" {
			chtest.MarkLoaded(b, db, scale)
		}
		benchPass(b, st, now, baseline, 2)
	})
}
