package projector_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/whocould/whocould/access"
	"github.com/whocould/whocould/event"
	"github.com/whocould/whocould/eventlog"
	"github.com/whocould/whocould/internal/difftest"
	"github.com/whocould/whocould/internal/randhist"
	"github.com/whocould/whocould/internal/scenario"
	"github.com/whocould/whocould/projector"
	"github.com/whocould/whocould/store/embedded"
)

var (
	nc      *nats.Conn
	streamN atomic.Int64
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "projector-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	srv, err := eventlog.StartEmbedded(eventlog.EmbeddedConfig{Dir: dir})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if nc, err = srv.Connect(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	nc.Close()
	srv.Shutdown()
	os.RemoveAll(dir)
	os.Exit(code)
}

// newLog is a fresh log on its own stream.
func newLog(t testing.TB) *eventlog.JetStreamLog {
	t.Helper()
	n := streamN.Add(1)
	l, err := eventlog.Open(context.Background(), nc, eventlog.Config{
		Dir: t.TempDir(), Stream: fmt.Sprintf("P%d", n), SubjectPrefix: fmt.Sprintf("p%d.events", n),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func entriesOf(t testing.TB, recs []event.Record) []eventlog.Entry {
	t.Helper()
	es := make([]eventlog.Entry, len(recs))
	for i := range recs {
		data, err := event.Marshal(&recs[i].Event)
		if err != nil {
			// Ingest refuses it (a scenario of the engine's defences): it can never reach a log.
			t.Skipf("record %d cannot come through ingest: %v", i+1, err)
		}
		kind := eventlog.KindChange
		if recs[i].Event.Type == event.Decision {
			kind = eventlog.KindDecision
		}
		es[i] = eventlog.Entry{Key: recs[i].Event.Key(), Kind: kind, Data: data}
	}
	return es
}

// recordedAs gives the records the projector applies the recorded times of the history (the
// log's own store times are all "now"), so that known-at questions keep their meaning. The
// log keeps the first of several events with one key, as the engine does.
type recordedAs struct {
	*embedded.Store
	recorded map[event.Key]time.Time
}

func (r recordedAs) Apply(ctx context.Context, recs []event.Record) error {
	for i := range recs {
		if t, ok := r.recorded[recs[i].Event.Key()]; ok {
			recs[i].Recorded = t
		}
	}
	return r.Store.Apply(ctx, recs)
}

// throughLog appends the history to a real log in delivery order, in batches of odd sizes, and
// projects it into a store, half with CatchUp and half with Run.
func throughLog(t *testing.T, recs []event.Record) access.Querier {
	t.Helper()
	ctx := context.Background()
	l := newLog(t)
	st, err := embedded.Open(embedded.Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	dst := recordedAs{Store: st, recorded: map[event.Key]time.Time{}}
	for _, r := range recs {
		if _, ok := dst.recorded[r.Event.Key()]; !ok {
			dst.recorded[r.Event.Key()] = r.Recorded
		}
	}
	es := entriesOf(t, recs)
	half := len(es) / 2
	for lo := 0; lo < half; lo += 37 {
		if _, err := l.Append(ctx, es[lo:min(lo+37, half)]); err != nil {
			t.Fatal(err)
		}
	}
	p := projector.New(l, dst, nil, projector.Config{Batch: 50})
	if _, err := p.CatchUp(ctx); err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- p.Run(rctx) }()
	if _, err := l.Append(ctx, es[half:]); err != nil {
		t.Fatal(err)
	}
	last, err := l.Last(ctx)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return p.Position() >= last })
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	return st
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// The scenarios and the differential test, answered by a store the projector built from a real
// log: framing, positions, deduplication and decoding are all on the path.
func TestScenariosThroughLog(t *testing.T) {
	scenario.Run(t, "../testdata/scenarios", throughLog)
}

func TestDifferentialThroughLog(t *testing.T) {
	difftest.Run(t, throughLog, difftest.Options{History: randhist.Options{ValidOnly: true}})
}

type rejects struct {
	mu  sync.Mutex
	got []eventlog.Message
}

func (r *rejects) Reject(_ context.Context, m eventlog.Message, reason error) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if reason == nil {
		return errors.New("no reason")
	}
	r.got = append(r.got, m)
	return nil
}

// TestUndecodableMessage: a message the projector cannot decode is dead-lettered with its
// position, and the projection goes past it; the store's position survives a reopen.
func TestUndecodableMessage(t *testing.T) {
	ctx := context.Background()
	l := newLog(t)
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	mk := func(id, principal string) eventlog.Entry {
		e := event.Event{ID: id, Source: "test", Type: event.GrantAdded, Time: at,
			Data: event.Data{Subject: principal, Action: "db.select", Resource: "db:prod"}}
		data, err := event.Marshal(&e)
		if err != nil {
			t.Fatal(err)
		}
		return eventlog.Entry{Key: e.Key(), Kind: eventlog.KindChange, Data: data}
	}
	bad := eventlog.Entry{Key: event.KeyOf("test", "bad"), Kind: eventlog.KindChange, Data: []byte(`{"not":"an event"`)}
	if _, err := l.Append(ctx, []eventlog.Entry{mk("1", "user:ann"), bad, mk("2", "user:bob")}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	st, err := embedded.Open(embedded.Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	rj := &rejects{}
	var progress []uint64
	p := projector.New(l, st, rj, projector.Config{Progress: func(done, last uint64) { progress = append(progress, done, last) }})
	n, err := p.CatchUp(ctx)
	if err != nil || n != 3 || p.Position() != 3 || p.Rejected() != 1 {
		t.Fatalf("CatchUp = %d, %v; position %d, rejected %d", n, err, p.Position(), p.Rejected())
	}
	if len(rj.got) != 1 || rj.got[0].Position != 2 || string(rj.got[0].Data) != string(bad.Data) {
		t.Fatalf("dead-lettered %+v", rj.got)
	}
	if len(progress) < 2 || progress[len(progress)-2] != 3 || progress[len(progress)-1] != 3 {
		t.Fatalf("progress %v", progress)
	}
	ans, err := st.WhoCould(ctx, access.Query{Action: "db.select", Resource: "db:prod", At: at.Add(time.Hour)})
	if err != nil || len(ans.Principals) != 2 {
		t.Fatalf("who-could after a bad message: %+v, %v", ans, err)
	}
	st2, err := embedded.Open(embedded.Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if pos, _ := st2.Position(ctx); pos != 3 {
		t.Fatalf("checkpointed position %d, want 3", pos)
	}
	// Nothing left to do: a second catch-up applies nothing and rejects nothing again.
	if n, err := projector.New(l, st2, rj, projector.Config{}).CatchUp(ctx); n != 0 || err != nil || len(rj.got) != 1 {
		t.Fatalf("second CatchUp = %d, %v, %d rejects", n, err, len(rj.got))
	}
}

// TestRunCheckpointsOnTheWayOut: events that arrive while Run follows the log are applied at
// once, and stopping Run checkpoints them.
func TestRunCheckpointsOnTheWayOut(t *testing.T) {
	ctx := context.Background()
	l := newLog(t)
	dir := filepath.Join(t.TempDir(), "store")
	st, err := embedded.Open(embedded.Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	p := projector.New(l, st, nil, projector.Config{CheckpointInterval: time.Hour})
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- p.Run(rctx) }()
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range 5 {
		e := event.Event{ID: fmt.Sprint(i), Source: "test", Type: event.GrantAdded, Time: at,
			Data: event.Data{Subject: fmt.Sprintf("user:u%d", i), Action: "db.select", Resource: "db:prod"}}
		data, err := event.Marshal(&e)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := l.Append(ctx, []eventlog.Entry{{Key: e.Key(), Kind: eventlog.KindChange, Data: data}}); err != nil {
			t.Fatal(err)
		}
		// A lone event is applied without waiting for a full batch.
		waitFor(t, func() bool { return p.Position() == uint64(i+1) })
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	st2, err := embedded.Open(embedded.Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if pos, _ := st2.Position(ctx); pos != 5 {
		t.Fatalf("position after Run stopped: %d, want 5", pos)
	}
}
