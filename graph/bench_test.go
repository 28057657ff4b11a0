package graph

import (
	"bytes"
	"context"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/whocould/whocould/access"
	"github.com/whocould/whocould/event"
	"github.com/whocould/whocould/internal/bin"
	"github.com/whocould/whocould/internal/synth"
)

// bigOrg is a synthetic organisation at the scale of the benchmarks: 100k principals,
// 10k groups, 1M grants.
type bigOrg struct {
	recs      []event.Record
	resources []string
	actions   []string
	start     time.Time
	span      time.Duration
}

var (
	bigOnce sync.Once
	big     *bigOrg
)

func bigHistory() *bigOrg {
	bigOnce.Do(func() {
		o := synth.Generate(synth.Options{Seed: 1})
		big = &bigOrg{recs: o.Records(1), resources: o.Resources, actions: o.Actions, start: o.Start, span: o.Span}
	})
	return big
}

func buildBig() (*Graph, *bigOrg) {
	o := bigHistory()
	g := New()
	g.ApplyBatch(o.recs)
	return g, o
}

// BenchmarkApply measures applying change events to the graph (no log, no decoding).
func BenchmarkApply(b *testing.B) {
	o := bigHistory()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		g := New()
		g.ApplyBatch(o.recs)
	}
	b.ReportMetric(float64(len(o.recs)*b.N)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkMemoryPerInterval measures the heap the graph holds per derived interval.
func BenchmarkMemoryPerInterval(b *testing.B) {
	o := bigHistory()
	for i := 0; i < b.N; i++ {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		g := New()
		g.ApplyBatch(o.recs)
		runtime.GC()
		runtime.ReadMemStats(&after)
		st := g.Stats()
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/float64(st.Intervals), "B/interval")
		b.ReportMetric(float64(st.Intervals), "intervals")
		runtime.KeepAlive(g)
	}
}

// BenchmarkWhoCould asks who could do a random action on a random resource at a random past
// time, reporting p50 and p99 latency.
func BenchmarkWhoCould(b *testing.B) {
	g, o := buildBig()
	r := rand.New(rand.NewPCG(3, 4))
	ctx := context.Background()
	lat := make([]time.Duration, 0, b.N)
	total := 0
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		q := access.Query{
			Action:   o.actions[r.IntN(len(o.actions))],
			Resource: o.resources[r.IntN(len(o.resources))] + "/rows",
			At:       o.start.Add(time.Duration(r.Int64N(int64(o.span)))),
		}
		t0 := time.Now()
		ans, err := g.WhoCould(ctx, q)
		lat = append(lat, time.Since(t0))
		if err != nil {
			b.Fatal(err)
		}
		total += len(ans.Principals)
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
	b.ReportMetric(float64(total)/float64(b.N), "principals/answer")
}

// BenchmarkRestart measures restoring the graph from its snapshot.
func BenchmarkRestart(b *testing.B) {
	g, o := buildBig()
	var buf bytes.Buffer
	w := bin.NewWriter(&buf)
	g.Encode(w)
	if _, err := w.Flush(); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(buf.Len())/float64(len(o.recs)), "snapshot-B/event")
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := Decode(bin.NewReader(bytes.NewReader(buf.Bytes()))); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(o.recs)), "events")
}
