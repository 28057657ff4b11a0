package analyzer_test

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/whocould/whocould/access"
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
func benchHistory(tb testing.TB) (changes []event.Record, decisions func(yield func([]event.Record) bool), now time.Time) {
	principals, groups, grants, nd := benchSize()
	org := synth.Generate(synth.Options{Principals: principals, Groups: groups, Grants: grants, Roles: 50, Seed: 7})
	changes = org.Records(7)
	g := graph.New()
	g.ApplyBatch(changes)
	end := org.Start.Add(org.Span)
	type ent struct{ action, resource string }
	ents := make([][]ent, principals)
	for i := range principals {
		wc, err := g.WhatCould(context.Background(), access.Query{Principal: fmt.Sprintf("user:u%d", i), At: end.Add(-time.Microsecond)})
		if err != nil {
			tb.Fatal(err)
		}
		for _, e := range wc.Entitlements {
			a := e.Action
			if strings.HasSuffix(a, "*") {
				a = strings.TrimSuffix(a, "*") + "select"
				if a == "select" {
					a = "db.table.select"
				}
			}
			ents[i] = append(ents[i], ent{a, e.Resource})
		}
	}
	pos := uint64(len(changes))
	decisions = func(yield func([]event.Record) bool) {
		r := rand.New(rand.NewPCG(7, 8))
		span := int64(120 * 24 * time.Hour)
		batch := make([]event.Record, 0, 100_000)
		for i := range nd {
			p := r.IntN(principals)
			d := event.Data{Principal: fmt.Sprintf("user:u%d", p), Effect: event.Allow, Policy: "authz.rego"}
			if es := ents[p]; len(es) > 0 {
				e := es[r.IntN(len(es))]
				d.Action, d.Resource = e.action, e.resource
			} else {
				d.Action, d.Resource = "db.table.select", org.Resources[r.IntN(len(org.Resources))]
			}
			if r.IntN(100) < 4 {
				d.Effect, d.Reason = event.Deny, "no grant matches"
			}
			tm := end.Add(-time.Duration(r.Int64N(span))).Truncate(time.Microsecond)
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
	return changes, decisions, end
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

// heapPeak samples the live heap while fn runs and returns its peak.
func heapPeak(fn func()) uint64 {
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

// benchPass runs every rule once over st and reports the time, the findings and the memory.
func benchPass(b *testing.B, st analyzer.Store, now time.Time) {
	cfg := &analyzer.Config{SeparationOfDuties: []analyzer.SoDPair{{Name: "create-and-drop", Actions: []string{"db.table.create", "db.table.drop"}}},
		Privileged: analyzer.Privileged{Roles: []string{"role:r1", "role:r2"}}}
	cfg.Defaults()
	cfg.SetBaseline(&analyzer.Baseline{Roles: map[string]analyzer.BaselineRole{"role:r1": {Permissions: []string{"db.table.select"}}}})
	if err := cfg.Validate(); err != nil {
		b.Fatal(err)
	}
	a := &analyzer.Analyzer{Store: st, Config: cfg}
	runtime.GC()
	var res *analyzer.Result
	b.ResetTimer()
	start := time.Now()
	peak := heapPeak(func() {
		var err error
		if res, err = a.Run(context.Background(), analyzer.Options{Now: now}); err != nil {
			b.Fatal(err)
		}
	})
	took := time.Since(start)
	b.StopTimer()
	b.ReportMetric(took.Seconds(), "s/pass")
	b.ReportMetric(float64(len(res.Findings)), "findings")
	b.ReportMetric(float64(peak)/(1<<20), "MB-heap-peak")
	b.ReportMetric(float64(peakRSS())/(1<<20), "MB-rss-peak")
	for _, r := range res.Runs {
		b.Logf("%-28s %7d findings  %v", r.Rule, r.Found, r.Took.Round(time.Millisecond))
	}
}

// BenchmarkFullPass is a full pass of every rule over the organisation on the
// embedded store (the store's own memory included in the RSS):
//
//	go test -run '^$' -bench FullPass/embedded -benchtime 1x -timeout 60m ./analyzer
func BenchmarkFullPass(b *testing.B) {
	b.Run("embedded", func(b *testing.B) {
		changes, decisions, now := benchHistory(b)
		st, err := embedded.Open(embedded.Config{})
		if err != nil {
			b.Fatal(err)
		}
		ctx := context.Background()
		if err := st.Apply(ctx, changes); err != nil {
			b.Fatal(err)
		}
		for batch := range decisions {
			if err := st.Apply(ctx, batch); err != nil {
				b.Fatal(err)
			}
		}
		benchPass(b, st, now)
	})
	b.Run("clickhouse", func(b *testing.B) {
		db := chtest.Database(b)
		changes, decisions, now := benchHistory(b)
		ctx := context.Background()
		st, err := clickhouse.Open(ctx, clickhouse.Config{Addr: chtest.Addr(b), Database: db})
		if err != nil {
			b.Fatal(err)
		}
		defer st.Close()
		for i := 0; i < len(changes); i += 50_000 {
			if err := st.Apply(ctx, changes[i:min(i+50_000, len(changes))]); err != nil {
				b.Fatal(err)
			}
		}
		for batch := range decisions {
			if err := st.Apply(ctx, batch); err != nil {
				b.Fatal(err)
			}
		}
		if err := st.Checkpoint(ctx); err != nil {
			b.Fatal(err)
		}
		benchPass(b, st, now)
	})
}
