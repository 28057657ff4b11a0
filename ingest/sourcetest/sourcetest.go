// Package sourcetest is the conformance suite every ingest.Source runs: the contract written on
// ingest.Source, checked against a real broker (embedded NATS, kfake).
//
// A backend's test is a few lines:
//
//	func TestConformance(t *testing.T) {
//		sourcetest.Run(t, sourcetest.Harness{New: func(t *testing.T) (ingest.Source, sourcetest.Publish) { ... }})
//	}
package sourcetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/whocould/whocould/ingest"
)

// Publish sends payloads as a producer would, each as one message with the given key (the
// partition or subject key: messages of one key keep their order), and returns once the broker
// holds them.
type Publish func(ctx context.Context, key string, payloads ...[]byte) error

// Harness is one backend under test.
type Harness struct {
	// New returns a source reading a fresh channel of its own (a subject, a topic, a consumer
	// group) and the producer side of it. Run may be called on the source several times, one
	// after the other: each run resumes after what earlier runs acknowledged.
	New func(t *testing.T) (ingest.Source, Publish)
	// RestartBroker stops the broker and starts it again on the same data (nil: the backend
	// cannot, and says why in NoRestart).
	RestartBroker func(t *testing.T)
	NoRestart     string
}

// Timeout bounds every wait in the suite.
var Timeout = 30 * time.Second

// Run runs the suite.
func Run(t *testing.T, h Harness) {
	t.Run("DeliversAllInOrder", func(t *testing.T) { deliversAllInOrder(t, h) })
	t.Run("RedeliversFailedBatch", func(t *testing.T) { redeliversFailedBatch(t, h) })
	t.Run("ResumesAfterAcknowledged", func(t *testing.T) { resumesAfterAcknowledged(t, h) })
	t.Run("StopsOnCancel", func(t *testing.T) { stopsOnCancel(t, h) })
	t.Run("SurvivesBrokerRestart", func(t *testing.T) {
		if h.RestartBroker == nil {
			if h.NoRestart == "" {
				t.Fatal("the harness has no RestartBroker and gives no reason")
			}
			t.Skip(h.NoRestart)
		}
		survivesBrokerRestart(t, h)
	})
}

func payload(key string, i int) []byte {
	return fmt.Appendf(nil, `{"key":%q,"n":%d}`, key, i)
}

// collector is a handler recording what it got, checking it is never called concurrently.
type collector struct {
	mu      sync.Mutex
	got     []ingest.Message
	busy    atomic.Bool
	fail    func(batch []ingest.Message) error // nil: never fails
	batches int
	t       *testing.T
}

func (c *collector) handle(_ context.Context, batch []ingest.Message) error {
	if !c.busy.CompareAndSwap(false, true) {
		c.t.Error("handle called concurrently")
	}
	defer c.busy.Store(false)
	if len(batch) == 0 {
		c.t.Error("handle called with an empty batch")
	}
	for _, m := range batch {
		if m.Source == "" || m.Where == "" {
			c.t.Errorf("message without Source or Where: %+v", m)
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.batches++
	if c.fail != nil {
		if err := c.fail(batch); err != nil {
			return err
		}
	}
	for _, m := range batch {
		m.Data = slices.Clone(m.Data)
		c.got = append(c.got, m)
	}
	return nil
}

func (c *collector) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.got)
}

func (c *collector) payloads() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]string, len(c.got))
	for i, m := range c.got {
		out[i] = string(m.Data)
	}
	return out
}

// sameDistinct reports how many distinct payloads got has and whether they are exactly want
// (redeliveries allowed). It sorts both in place.
func sameDistinct(got, want []string) (int, bool) {
	slices.Sort(got)
	got = slices.Compact(got)
	slices.Sort(want)
	return len(got), slices.Equal(got, want)
}

// running runs src in the background; stop cancels it and returns Run's result.
func running(t *testing.T, src ingest.Source, h ingest.Handler) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx, h) }()
	return func() error {
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(Timeout):
			t.Fatalf("%s: Run did not return within %s of cancel", src.Name(), Timeout)
			return nil
		}
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(Timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func publish(t *testing.T, pub Publish, key string, from, to int) []string {
	t.Helper()
	var ps [][]byte
	var want []string
	for i := from; i < to; i++ {
		ps = append(ps, payload(key, i))
		want = append(want, string(payload(key, i)))
	}
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	if err := pub(ctx, key, ps...); err != nil {
		t.Fatalf("publish: %v", err)
	}
	return want
}

// deliversAllInOrder: every message once, each key's messages in order.
func deliversAllInOrder(t *testing.T, h Harness) {
	src, pub := h.New(t)
	keys := []string{"alice", "bob", "carol", "dave", "erin"}
	want := map[string][]string{}
	for _, k := range keys {
		want[k] = publish(t, pub, k, 0, 200)
	}
	c := &collector{t: t}
	stop := running(t, src, c.handle)
	waitFor(t, "1000 messages", func() bool { return c.count() >= 1000 })
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	got := map[string][]string{}
	seen := map[string]bool{}
	for _, p := range c.payloads() {
		if seen[p] {
			t.Fatalf("%s delivered twice without a failure", p)
		}
		seen[p] = true
		var m struct{ Key string }
		if err := json.Unmarshal([]byte(p), &m); err != nil {
			t.Fatalf("delivered %q: not what was published", p)
		}
		got[m.Key] = append(got[m.Key], p)
	}
	for _, k := range keys {
		if !slices.Equal(got[k], want[k]) {
			t.Fatalf("key %s: got %d messages %v..., want %d in order", k, len(got[k]), got[k][:min(3, len(got[k]))], len(want[k]))
		}
	}
}

// redeliversFailedBatch: a batch whose handling failed is not acknowledged: Run returns the
// error, and the next Run delivers the batch again.
func redeliversFailedBatch(t *testing.T, h Harness) {
	src, pub := h.New(t)
	want := publish(t, pub, "k", 0, 50)
	boom := errors.New("the log is down")
	c := &collector{t: t, fail: func([]ingest.Message) error { return boom }}
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	if err := src.Run(ctx, c.handle); !errors.Is(err, boom) {
		t.Fatalf("Run with a failing handler = %v, want the handler's error", err)
	}
	c2 := &collector{t: t}
	stop := running(t, src, c2.handle)
	waitFor(t, "50 messages again", func() bool { return c2.count() >= 50 })
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if n, ok := sameDistinct(c2.payloads(), want); !ok {
		t.Fatalf("after a failed batch: %d distinct messages, want %d", n, len(want))
	}
}

// resumesAfterAcknowledged: what was acknowledged is not delivered again.
func resumesAfterAcknowledged(t *testing.T, h Harness) {
	src, pub := h.New(t)
	publish(t, pub, "k", 0, 30)
	c := &collector{t: t}
	stop := running(t, src, c.handle)
	waitFor(t, "30 messages", func() bool { return c.count() >= 30 })
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	want := publish(t, pub, "k", 30, 35)
	c2 := &collector{t: t}
	stop = running(t, src, c2.handle)
	waitFor(t, "5 new messages", func() bool { return c2.count() >= 5 })
	time.Sleep(200 * time.Millisecond) // room for a wrong redelivery to show
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if got := c2.payloads(); !slices.Equal(got, want) {
		t.Fatalf("second run got %d messages (%.60q...), want only the 5 new ones", len(got), got)
	}
}

// stopsOnCancel: an idle Run returns nil soon after its context ends.
func stopsOnCancel(t *testing.T, h Harness) {
	src, _ := h.New(t)
	c := &collector{t: t}
	stop := running(t, src, c.handle)
	time.Sleep(100 * time.Millisecond)
	start := time.Now()
	if err := stop(); err != nil {
		t.Fatalf("Run after cancel = %v, want nil", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Run took %s to stop", d)
	}
}

// survivesBrokerRestart: messages published before and after a broker restart all arrive,
// with the same Run running throughout.
func survivesBrokerRestart(t *testing.T, h Harness) {
	src, pub := h.New(t)
	want := publish(t, pub, "k", 0, 20)
	c := &collector{t: t}
	stop := running(t, src, c.handle)
	waitFor(t, "20 messages", func() bool { return c.count() >= 20 })
	h.RestartBroker(t)
	want = append(want, publish(t, pub, "k", 20, 40)...)
	waitFor(t, "40 messages across the restart", func() bool { return c.count() >= 40 })
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if n, ok := sameDistinct(c.payloads(), want); !ok {
		t.Fatalf("across a broker restart: %d distinct messages, want %d", n, len(want))
	}
}
