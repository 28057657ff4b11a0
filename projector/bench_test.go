package projector_test

import (
	"context"
	"fmt"
	"runtime"
	"runtime/metrics"
	"sync/atomic"
	"testing"
	"time"

	"github.com/whocould/whocould/event"
	"github.com/whocould/whocould/eventlog"
	"github.com/whocould/whocould/projector"
	"github.com/whocould/whocould/store/embedded"
)

// slowStore is a store slower than the producers that keeps nothing (so that the heap measured
// is the pipeline's own, not the data's): it takes its time and remembers the position.
type slowStore struct {
	*embedded.Store
	delay time.Duration
	pos   *atomic.Uint64
}

func (s slowStore) Apply(_ context.Context, recs []event.Record) error {
	time.Sleep(s.delay)
	s.pos.Store(recs[len(recs)-1].Position)
	return nil
}

func (s slowStore) Position(context.Context) (uint64, error) { return s.pos.Load(), nil }

// BenchmarkSlowStore: 300k events are appended to the log as fast as ingest can while the
// projector feeds a store that takes 20 ms per batch of 1000 (50k events/s at best) and keeps
// nothing. The log absorbs the difference; the heap stays bounded by the projector's read
// buffer and batch and the embedded server's caches, whatever the lag. Reports the peak live
// heap (as the garbage collector found it) above the baseline, and the largest lag.
//
//	go test -run '^$' -bench SlowStore -benchtime 1x ./projector
func BenchmarkSlowStore(b *testing.B) {
	const n = 300_000
	ctx := context.Background()
	at := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	entries := make([]eventlog.Entry, n)
	for i := range entries {
		e := event.Event{ID: fmt.Sprint(i), Source: "bench", Type: event.Decision, Time: at.Add(time.Duration(i) * time.Millisecond),
			Data: event.Data{Principal: fmt.Sprintf("user:u%d", i%5000), Action: "db.table.read", Resource: fmt.Sprintf("db:t%d", i%300), Effect: event.Allow}}
		data, err := event.Marshal(&e)
		if err != nil {
			b.Fatal(err)
		}
		entries[i] = eventlog.Entry{Key: e.Key(), Kind: eventlog.KindDecision, Data: data}
	}
	for range b.N {
		l := newLog(b)
		st, err := embedded.Open(embedded.Config{})
		if err != nil {
			b.Fatal(err)
		}
		p := projector.New(l, slowStore{st, 20 * time.Millisecond, new(atomic.Uint64)}, nil, projector.Config{})
		runtime.GC()
		base := liveHeap()
		rctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- p.Run(rctx) }()
		var peak atomic.Uint64
		var maxLag atomic.Int64
		stop := make(chan struct{})
		sampled := make(chan struct{})
		go func() {
			defer close(sampled)
			for {
				select {
				case <-stop:
					return
				case <-time.After(20 * time.Millisecond):
				}
				if live := liveHeap(); live > peak.Load() {
					peak.Store(live)
				}
			}
		}()
		start := time.Now()
		for lo := 0; lo < n; lo += 5000 {
			if _, err := l.Append(ctx, entries[lo:lo+5000]); err != nil {
				b.Fatal(err)
			}
			if lag := int64(lo+5000) - int64(p.Position()); lag > maxLag.Load() {
				maxLag.Store(lag)
			}
		}
		appended := time.Since(start)
		for p.Position() < n {
			time.Sleep(10 * time.Millisecond)
		}
		close(stop)
		<-sampled
		cancel()
		<-done
		b.ReportMetric(float64(peak.Load()-min(peak.Load(), base))/(1<<20), "peak-live-heap-MB")
		b.ReportMetric(float64(maxLag.Load()), "max-lag-events")
		b.ReportMetric(float64(n)/appended.Seconds(), "append-events/s")
		b.ReportMetric(float64(n)/time.Since(start).Seconds(), "project-events/s")
	}
}

// liveHeap is the heap the last garbage collection found live (garbage not yet collected is not
// memory the pipeline holds).
func liveHeap() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}
