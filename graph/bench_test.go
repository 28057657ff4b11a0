package graph

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/whocould/whocould/access"
	"github.com/whocould/whocould/event"
	"github.com/whocould/whocould/internal/bin"
)

// bigOrg is a synthetic organisation at the scale of the benchmarks.
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

// bigHistory builds 100k principals, 10k groups, 1M grants (and their memberships and roles),
// spread over six months, delivered in event-time order with a few percent late.
func bigHistory() *bigOrg {
	bigOnce.Do(func() {
		const (
			principals = 100_000
			groups     = 10_000
			grants     = 1_000_000
			roles      = 50
		)
		r := rand.New(rand.NewPCG(1, 2))
		o := &bigOrg{start: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), span: 180 * 24 * time.Hour}
		verbs := []string{"select", "insert", "update", "delete", "create", "alter", "drop", "truncate"}
		for _, v := range verbs {
			o.actions = append(o.actions, "db.table."+v)
		}
		for i := 0; i < 100; i++ {
			for j := 0; j < 100; j++ {
				o.resources = append(o.resources, fmt.Sprintf("db:prod%d/t%d", i, j))
			}
		}
		var evs []event.Event
		at := func() time.Time {
			return o.start.Add(time.Duration(r.Int64N(int64(o.span)))).Truncate(time.Microsecond)
		}
		add := func(t event.Type, tm time.Time, d event.Data) {
			evs = append(evs, event.Event{ID: fmt.Sprintf("b%d", len(evs)), Source: "bench", Type: t, Time: tm, Data: d})
		}
		for i := 0; i < roles; i++ {
			role := fmt.Sprintf("role:r%d", i)
			for j := 0; j < 4; j++ {
				add(event.RolePermissionAdded, o.start, event.Data{Role: role, Action: o.actions[r.IntN(len(o.actions))]})
			}
			if i > 0 && r.IntN(3) == 0 {
				add(event.RoleIncludeAdded, o.start, event.Data{Role: role, Includes: fmt.Sprintf("role:r%d", r.IntN(i))})
			}
		}
		// Nested groups as in an organisation: 100 departments (g0..g99), each with a third of
		// its other groups nested in an earlier group of the same department; a few cycles.
		for i := 100; i < groups; i++ {
			if r.IntN(3) != 0 {
				continue
			}
			parent := i%100 + 100*r.IntN(i/100)
			add(event.MembershipAdded, at(), event.Data{Group: fmt.Sprintf("group:g%d", parent), Member: fmt.Sprintf("group:g%d", i)})
			if r.IntN(200) == 0 {
				add(event.MembershipAdded, at(), event.Data{Group: fmt.Sprintf("group:g%d", i), Member: fmt.Sprintf("group:g%d", parent)})
			}
		}
		for i := 0; i < principals; i++ {
			p := fmt.Sprintf("user:u%d", i)
			add(event.PrincipalCreated, o.start, event.Data{Principal: p, Attributes: map[string]string{"department": fmt.Sprintf("d%d", i%20)}})
			for j := 0; j < 3; j++ {
				add(event.MembershipAdded, at(), event.Data{Group: fmt.Sprintf("group:g%d", r.IntN(groups)), Member: p})
			}
			if r.IntN(20) == 0 {
				add(event.PrincipalDisabled, at(), event.Data{Principal: p})
			}
		}
		for i := 0; i < grants; i++ {
			d := event.Data{Resource: o.resources[r.IntN(len(o.resources))]}
			if r.IntN(10) < 7 {
				d.Subject = fmt.Sprintf("group:g%d", r.IntN(groups))
			} else {
				d.Subject = fmt.Sprintf("user:u%d", r.IntN(principals))
			}
			if r.IntN(4) == 0 {
				d.Action = o.actions[r.IntN(len(o.actions))]
			} else {
				d.Role = fmt.Sprintf("role:r%d", r.IntN(roles))
			}
			if r.IntN(100) == 0 {
				d.Resource = d.Resource[:len("db:prodN")]
			}
			tm := at()
			if r.IntN(10) == 0 {
				exp := tm.Add(time.Duration(1+r.IntN(48)) * time.Hour)
				d.ExpiresAt = &exp
			}
			add(event.GrantAdded, tm, d)
			if r.IntN(10) == 0 {
				rm := d
				rm.ExpiresAt = nil
				add(event.GrantRemoved, tm.Add(time.Duration(1+r.IntN(1000))*time.Hour), rm)
			}
		}
		// Delivery: event-time order, with 2% of events a day late.
		slices.SortStableFunc(evs, func(a, b event.Event) int { return a.Time.Compare(b.Time) })
		o.recs = make([]event.Record, len(evs))
		for i := range evs {
			rec := evs[i].Time
			if r.IntN(50) == 0 {
				rec = rec.Add(24 * time.Hour)
			}
			o.recs[i] = event.Record{Event: evs[i], Position: uint64(i + 1), Recorded: rec}
		}
		slices.SortStableFunc(o.recs, func(a, b event.Record) int { return a.Recorded.Compare(b.Recorded) })
		for i := range o.recs {
			o.recs[i].Position = uint64(i + 1)
		}
		big = o
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
