package graph_test

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/whocould/whocould/access"
	"github.com/whocould/whocould/event"
	"github.com/whocould/whocould/graph"
	"github.com/whocould/whocould/internal/randhist"
)

var touchedSeeds = flag.Int("touched.seeds", 0, "seeds for TestApplyTouched (default 24, 6 with -short)")

var (
	histFrom = time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC)
	histTo   = time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC)
)

// principalsNamed lists every principal id the records name, sorted.
func principalsNamed(recs []event.Record) []string {
	var ps []string
	for _, r := range recs {
		d := &r.Data
		for _, s := range []string{d.Principal, d.Member, d.Subject, d.Requester, d.Approver} {
			if s != "" && event.KindOf(s) == event.KindPrincipal {
				ps = append(ps, s)
			}
		}
	}
	slices.Sort(ps)
	return slices.Compact(ps)
}

// fullHistory is p's whole history as known at k (nil: now), as JSON.
func fullHistory(t *testing.T, g *graph.Graph, p string, k *time.Time) string {
	t.Helper()
	h, err := g.History(context.Background(), access.Query{Principal: p, From: histFrom, To: histTo, KnownAt: k})
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

type touchedStats struct {
	stretches, single, late, outOfOrder, strict, empty, changeStretches int
	touched, changed, possible                                          int
	singleChange, singleStrict                                          int
}

// TestApplyTouched checks, over random histories applied stretch by stretch (stretches of 1 to
// 60 records, in log order, so with late and out-of-order events), that every principal
// ApplyTouched does not return has the same full history after the stretch as before, as known
// now and as known at several recorded times; that it returns a sorted set; that it is no
// trivial answer (most stretches touch a strict subset); and that applying stretch by stretch
// builds the same graph as one ApplyBatch.
func TestApplyTouched(t *testing.T) {
	seeds := 24
	if testing.Short() {
		seeds = 6
	}
	if *touchedSeeds > 0 {
		seeds = *touchedSeeds
	}
	var st touchedStats
	start := time.Now()
	for seed := range int64(seeds) {
		opts := randhist.Options{SingleTenant: true}
		switch seed % 4 {
		case 1:
			opts.Scale = 2
		case 2:
			opts.Changes = 120 // few slots: many events on the same instant
			opts.LateRate = 0.3
		case 3:
			opts.Scale = 3
			opts.Changes = 400
		}
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			checkTouched(t, seed, opts, &st)
		})
	}
	t.Logf("%d seeds, %d stretches (%d of one record; %d with change events; %d with an event before one already applied, %d with one over an hour before) in %v",
		seeds, st.stretches, st.single, st.changeStretches, st.outOfOrder, st.late, time.Since(start).Round(time.Millisecond))
	t.Logf("touched %d of %d principal-stretches (%.1f%%), of which history changed %d; %d stretches touched a strict subset, %d none",
		st.touched, st.possible, 100*float64(st.touched)/float64(max(1, st.possible)), st.changed, st.strict, st.empty)
	t.Logf("one-record change stretches: %d, of which %d touched a strict subset", st.singleChange, st.singleStrict)
	if st.strict*10 < st.changeStretches*6 {
		t.Errorf("only %d of %d stretches with change events touched a strict subset of the principals", st.strict, st.changeStretches)
	}
	if st.singleStrict*10 < st.singleChange*8 {
		t.Errorf("only %d of %d one-record change stretches touched a strict subset of the principals", st.singleStrict, st.singleChange)
	}
}

func checkTouched(t *testing.T, seed int64, opts randhist.Options, st *touchedStats) {
	recs := randhist.Dedup(randhist.Generate(seed, opts))
	ps := principalsNamed(recs)
	r := rand.New(rand.NewPCG(uint64(seed), 77))
	sizes := []int{1, 1, 1, 1, 2, 3, 5, 8, 13, 30, 60}
	g := graph.New()
	var maxTime time.Time // the latest event time applied so far
	snap := func(ks []*time.Time) [][]string {
		out := make([][]string, len(ks))
		for i, k := range ks {
			out[i] = make([]string, len(ps))
			for j, p := range ps {
				out[i][j] = fullHistory(t, g, p, k)
			}
		}
		return out
	}
	for pos := 0; pos < len(recs); {
		n := min(sizes[r.IntN(len(sizes))], len(recs)-pos)
		stretch := recs[pos : pos+n]
		// Known-at times: now, the recorded times of a record of the stretch and of its last,
		// one before the stretch's first, and of an earlier record.
		at := func(tm time.Time) *time.Time { return &tm }
		ks := []*time.Time{nil, at(stretch[r.IntN(n)].Recorded), at(stretch[n-1].Recorded),
			at(stretch[0].Recorded.Add(-time.Microsecond))}
		if pos > 0 {
			ks = append(ks, at(recs[r.IntN(pos)].Recorded))
		}
		before := snap(ks)
		late, ooo, changes := false, false, false
		for _, rec := range stretch {
			if rec.Type.IsChange() {
				changes = true
				if rec.Time.Before(maxTime) {
					ooo = true
				}
				if rec.Time.Before(maxTime.Add(-time.Hour)) {
					late = true
				}
				if rec.Time.After(maxTime) {
					maxTime = rec.Time
				}
			}
		}
		got := g.ApplyTouched(slices.Clone(stretch))
		if !slices.IsSorted(got) || len(slices.Compact(slices.Clone(got))) != len(got) {
			t.Fatalf("records %d..%d: touched %v: not sorted and unique", pos+1, pos+n, got)
		}
		after := snap(ks)
		touched := map[string]bool{}
		for _, p := range got {
			touched[p] = true
		}
		inPs := 0
		for j, p := range ps {
			if touched[p] {
				inPs++
			}
			for i, k := range ks {
				if before[i][j] == after[i][j] {
					continue
				}
				if touched[p] {
					st.changed++
					break
				}
				kn := "now"
				if k != nil {
					kn = k.Format(time.RFC3339Nano)
				}
				t.Fatalf("records %d..%d changed the history of %s (known at %s) but it is not touched (touched: %v)\nstretch:\n%s\nbefore: %s\nafter:  %s",
					pos+1, pos+n, p, kn, got, describeRecs(stretch), before[i][j], after[i][j])
			}
		}
		for _, p := range got {
			if !slices.Contains(ps, p) {
				t.Fatalf("records %d..%d: touched %s, which no record names", pos+1, pos+n, p)
			}
		}
		st.stretches++
		st.touched += inPs
		st.possible += len(ps)
		if n == 1 {
			st.single++
		}
		if late {
			st.late++
		}
		if ooo {
			st.outOfOrder++
		}
		if changes {
			st.changeStretches++
			if inPs < len(ps) {
				st.strict++
			}
			if n == 1 {
				st.singleChange++
				if inPs < len(ps) {
					st.singleStrict++
				}
			}
		} else if len(got) != 0 {
			t.Fatalf("records %d..%d hold no change event but touched %v", pos+1, pos+n, got)
		}
		if len(got) == 0 {
			st.empty++
		}
		pos += n
	}
	// Stretch by stretch builds what one batch builds.
	whole := graph.New()
	whole.ApplyBatch(slices.Clone(recs))
	for _, p := range ps {
		if a, b := fullHistory(t, g, p, nil), fullHistory(t, whole, p, nil); a != b {
			t.Fatalf("history of %s: applied in stretches\n%s\nin one batch\n%s", p, a, b)
		}
	}
}

func describeRecs(recs []event.Record) string {
	s := ""
	for _, r := range recs {
		b, _ := json.Marshal(r.Data)
		s += fmt.Sprintf("  #%d %s t=%s rec=%s %s\n", r.Position, r.Type, r.Time.Format(time.RFC3339Nano),
			r.Recorded.Format(time.RFC3339Nano), b)
	}
	return s
}

// BenchmarkApplyTouched compares ApplyTouched with ApplyBatch over a larger history, applied in
// stretches of 64 records.
func BenchmarkApplyTouched(b *testing.B) {
	recs := randhist.Dedup(randhist.Generate(1, randhist.Options{SingleTenant: true, Changes: 20000, Scale: 20}))
	for _, touched := range []bool{false, true} {
		b.Run(fmt.Sprintf("touched=%v", touched), func(b *testing.B) {
			for b.Loop() {
				g := graph.New()
				for i := 0; i < len(recs); i += 64 {
					s := recs[i:min(i+64, len(recs))]
					if touched {
						g.ApplyTouched(s)
					} else {
						g.ApplyBatch(s)
					}
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(recs)), "ns/record")
		})
	}
}
