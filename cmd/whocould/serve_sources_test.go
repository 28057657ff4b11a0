package main

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/whocould/whocould/event"
)

// TestServeAllSources: 100k events arrive at once over NATS, Kafka and HTTP (a third each);
// every one becomes queryable, and ingest's counts are exact per channel.
func TestServeAllSources(t *testing.T) {
	if testing.Short() {
		t.Skip("100k events")
	}
	const n = 100_000
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, "whocould-changes", "whocould-decisions"))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	brokers := cluster.ListenAddrs()
	cfg := serveTestConfig + fmt.Sprintf("kafka:\n  brokers: [%s]\n", strings.Join(brokers, ", "))
	p := startServe(t, t.TempDir(), cfg)

	at := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	lines := func(channel string, count int) [][]byte {
		out := make([][]byte, count)
		for i := range out {
			out[i] = marshal(t, event.Event{ID: fmt.Sprintf("%s-%d", channel, i), Source: "e2e-" + channel, Type: event.GrantAdded,
				Time: at.Add(time.Duration(i) * time.Millisecond),
				Data: event.Data{Subject: fmt.Sprintf("user:%s-%06d", channel, i), Action: "db.table.read", Resource: "db:e2e"}})
		}
		return out
	}
	per := map[string]int{"nats": n / 3, "kafka": n / 3, "http": n - 2*(n/3)}
	var wg sync.WaitGroup
	errs := make(chan error, 3)
	start := time.Now()
	wg.Add(3)
	go func() { // NATS: asynchronous publishes, acknowledged by the inbox
		defer wg.Done()
		nc, err := nats.Connect(p.nats)
		if err != nil {
			errs <- err
			return
		}
		defer nc.Close()
		js, _ := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4000))
		for _, l := range lines("nats", per["nats"]) {
			if _, err := js.PublishAsync("whocould.in.changes.e2e", l, jetstream.WithStallWait(time.Minute)); err != nil {
				errs <- err
				return
			}
		}
		select {
		case <-js.PublishAsyncComplete():
		case <-time.After(time.Minute):
			errs <- fmt.Errorf("nats: publishes not acknowledged")
		}
	}()
	go func() { // Kafka: a writer waiting for every replica
		defer wg.Done()
		w := &kafka.Writer{Addr: kafka.TCP(brokers...), Topic: "whocould-changes", Balancer: &kafka.Hash{},
			RequiredAcks: kafka.RequireAll, BatchSize: 1000, BatchTimeout: 5 * time.Millisecond, Transport: &kafka.Transport{}}
		defer w.Close()
		ls := lines("kafka", per["kafka"])
		for lo := 0; lo < len(ls); lo += 1000 {
			msgs := make([]kafka.Message, 0, 1000)
			for _, l := range ls[lo:min(lo+1000, len(ls))] {
				msgs = append(msgs, kafka.Message{Key: []byte("e2e"), Value: l})
			}
			if err := w.WriteMessages(context.Background(), msgs...); err != nil {
				errs <- fmt.Errorf("kafka: %w", err)
				return
			}
		}
	}()
	go func() { // HTTP: batches of JSON lines
		defer wg.Done()
		ls := lines("http", per["http"])
		for lo := 0; lo < len(ls); lo += 2000 {
			p.post(t, bytes.Join(ls[lo:min(lo+2000, len(ls))], []byte("\n")))
		}
	}()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	published := time.Since(start)

	deadline := time.Now().Add(2 * time.Minute)
	var got int
	for time.Now().Before(deadline) {
		_, ans := p.get(t, "/v1/who-could?action=db.table.read&resource=db:e2e&at=2026-03-02T00:00:00Z")
		if got = len(principalsOf(ans)); got == n {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if got != n {
		t.Fatalf("%d of %d principals queryable after 2 minutes", got, n)
	}
	t.Logf("100k events over NATS, Kafka and HTTP: published in %s, all queryable after %s", published.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	for channel, want := range per {
		name := fmt.Sprintf(`whocould_ingest_events_total{channel="%s",outcome="accepted",type="grant.added"}`, channel)
		if v := metricValue(t, p, name); int(v) != want {
			t.Errorf("%s = %v, want %d", name, v, want)
		}
	}
	p.stop(t)
}
