package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/whocould/whocould/event"
	"github.com/whocould/whocould/eventlog"
)

// benchEvents are n grants, one per principal, as producers send them.
func benchEvents(b *testing.B, n int, channel string) [][]byte {
	at := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	out := make([][]byte, n)
	for i := range out {
		e := event.Event{ID: fmt.Sprintf("%s-%d", channel, i), Source: "bench-" + channel, Type: event.GrantAdded,
			Time: at.Add(time.Duration(i) * time.Millisecond),
			Data: event.Data{Subject: fmt.Sprintf("user:%s-%07d", channel, i), Action: "db.table.read", Resource: "db:bench/t1"}}
		data, err := event.Marshal(&e)
		if err != nil {
			b.Fatal(err)
		}
		out[i] = data
	}
	return out
}

// inProcess runs the service in this process (so that the projector's position can be watched
// directly) and returns what it serves and a stop function.
func inProcess(b *testing.B, kafkaBrokers []string) (served, func()) {
	cfg, _ := loadServeConfig("")
	cfg.DataDir = b.TempDir()
	cfg.NATS.Listen = "127.0.0.1:0"
	cfg.API.Listen = "127.0.0.1:0"
	cfg.LogLevel = "error"
	if kafkaBrokers != nil {
		cfg.Kafka = &kafkaConfig{Brokers: kafkaBrokers, Topics: []string{"whocould-changes"}, GroupID: "bench"}
	}
	if err := cfg.Validate(); err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	up := make(chan served, 1)
	done := make(chan error, 1)
	logger := slog.New(slog.NewTextHandler(&strings.Builder{}, &slog.HandlerOptions{Level: slog.LevelError}))
	go func() { done <- runServe(ctx, cfg, logger, serveHooks{ready: func(s served) { up <- s }}) }()
	select {
	case s := <-up:
		return s, func() {
			cancel()
			if err := <-done; err != nil {
				b.Error(err)
			}
		}
	case err := <-done:
		b.Fatal(err)
	}
	return served{}, nil
}

func waitPosition(b *testing.B, s served, pos uint64) {
	deadline := time.Now().Add(5 * time.Minute)
	for s.stack.projected() < pos {
		if time.Now().After(deadline) {
			b.Fatalf("projection at %d of %d after 5 minutes", s.stack.projected(), pos)
		}
		time.Sleep(time.Millisecond)
	}
}

// publishNATS publishes asynchronously and waits for the acknowledgements.
func publishNATS(b *testing.B, url, subject string, msgs [][]byte) {
	nc, err := nats.Connect(url)
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4000))
	for _, m := range msgs {
		if _, err := js.PublishAsync(subject, m, jetstream.WithStallWait(time.Minute)); err != nil {
			b.Fatal(err)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(5 * time.Minute):
		b.Fatal("publishes not acknowledged")
	}
}

// rawJetStream is the floor the pipeline is measured against: the same messages published to a
// JetStream stream on an embedded server and consumed (fetched and acknowledged) by one
// consumer, nothing else. Returns messages/s.
func rawJetStream(b *testing.B, msgs [][]byte) float64 {
	srv, err := eventlog.StartEmbedded(eventlog.EmbeddedConfig{Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Shutdown()
	nc, err := srv.Connect()
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	ctx := context.Background()
	js, _ := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4000))
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "RAW", Subjects: []string{"raw.>"}, Storage: jetstream.FileStorage}); err != nil {
		b.Fatal(err)
	}
	cons, err := js.CreateConsumer(ctx, "RAW", jetstream.ConsumerConfig{Durable: "c", AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: 4000})
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	consumed := make(chan struct{})
	go func() {
		got := 0
		for got < len(msgs) {
			batch, err := cons.Fetch(1000, jetstream.FetchMaxWait(100*time.Millisecond))
			if err != nil {
				continue
			}
			for m := range batch.Messages() {
				m.Ack()
				got++
			}
		}
		close(consumed)
	}()
	for _, m := range msgs {
		if _, err := js.PublishAsync("raw.x", m, jetstream.WithStallWait(time.Minute)); err != nil {
			b.Fatal(err)
		}
	}
	<-js.PublishAsyncComplete()
	<-consumed
	return float64(len(msgs)) / time.Since(start).Seconds()
}

// BenchmarkPipeline: sustained events/s from publish to queryable (projected into the store)
// over NATS, Kafka and HTTP, and the raw JetStream publish+consume rate of the same messages in
// the same run; ratio = pipeline / raw.
//
//	go test -run '^$' -bench Pipeline -benchtime 1x ./cmd/whocould
func BenchmarkPipeline(b *testing.B) {
	const n = 200_000
	for _, channel := range []string{"nats", "kafka", "http"} {
		b.Run(channel, func(b *testing.B) {
			msgs := benchEvents(b, n, channel)
			raw := rawJetStream(b, msgs)
			var rate float64
			for range b.N {
				var brokers []string
				var cluster *kfake.Cluster
				if channel == "kafka" {
					var err error
					cluster, err = kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(6, "whocould-changes"))
					if err != nil {
						b.Fatal(err)
					}
					brokers = cluster.ListenAddrs()
				}
				s, stop := inProcess(b, brokers)
				start := time.Now()
				switch channel {
				case "nats":
					publishNATS(b, s.NATSURL, "whocould.in.changes.bench", msgs)
				case "kafka":
					w := &kafka.Writer{Addr: kafka.TCP(brokers...), Topic: "whocould-changes", Balancer: &kafka.Hash{},
						RequiredAcks: kafka.RequireAll, BatchSize: 5000, BatchBytes: 8 << 20, BatchTimeout: 2 * time.Millisecond, Transport: &kafka.Transport{}}
					for lo := 0; lo < n; lo += 5000 {
						km := make([]kafka.Message, 0, 5000)
						for i, m := range msgs[lo:min(lo+5000, n)] {
							km = append(km, kafka.Message{Key: []byte(fmt.Sprint((lo + i) % 64)), Value: m})
						}
						if err := w.WriteMessages(context.Background(), km...); err != nil {
							b.Fatal(err)
						}
					}
					w.Close()
				case "http":
					for lo := 0; lo < n; lo += 5000 {
						req, _ := http.NewRequest("POST", s.APIURL+"/v1/events", bytes.NewReader(bytes.Join(msgs[lo:min(lo+5000, n)], []byte("\n"))))
						req.Header.Set("Authorization", "Bearer "+s.Token)
						req.Header.Set("Content-Type", "application/x-ndjson")
						resp, err := http.DefaultClient.Do(req)
						if err != nil || resp.StatusCode != http.StatusAccepted {
							b.Fatalf("POST: %v %v", err, resp)
						}
						resp.Body.Close()
					}
				}
				want := uint64(n)
				if channel == "http" {
					want += n / 5000 // each POST is audited in the log too
				}
				waitPosition(b, s, want)
				rate = float64(n) / time.Since(start).Seconds()
				stop()
				if cluster != nil {
					cluster.Close()
				}
			}
			b.ReportMetric(rate, "events/s")
			b.ReportMetric(raw, "raw-jetstream-msgs/s")
			b.ReportMetric(rate/raw, "ratio")
		})
	}
}

// BenchmarkLatency: events published over NATS at 10k/s for 5 s; for each, the time from its
// publish to the moment the projection holds it. Reports p50 and p99 in ms.
//
//	go test -run '^$' -bench Latency -benchtime 1x ./cmd/whocould
func BenchmarkLatency(b *testing.B) {
	const rate, seconds = 10_000, 5
	const n = rate * seconds
	msgs := benchEvents(b, n, "latency")
	for range b.N {
		s, stop := inProcess(b, nil)
		nc, err := nats.Connect(s.NATSURL)
		if err != nil {
			b.Fatal(err)
		}
		js, _ := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4000))
		sent := make([]time.Time, n)
		seen := make([]time.Time, n)
		watching := make(chan struct{})
		go func() { // the projection's position, watched every 200µs
			defer close(watching)
			next := 0
			deadline := time.Now().Add(time.Minute)
			for next < n && time.Now().Before(deadline) {
				pos := int(s.stack.projected())
				now := time.Now()
				for ; next < min(pos, n); next++ {
					seen[next] = now
				}
				time.Sleep(200 * time.Microsecond)
			}
		}()
		start := time.Now()
		for i, m := range msgs {
			if d := time.Duration(i) * time.Second / rate; time.Since(start) < d {
				time.Sleep(d - time.Since(start))
			}
			sent[i] = time.Now()
			if _, err := js.PublishAsync("whocould.in.changes.latency", m, jetstream.WithStallWait(time.Minute)); err != nil {
				b.Fatal(err)
			}
		}
		<-js.PublishAsyncComplete()
		<-watching
		nc.Close()
		stop()
		lat := make([]time.Duration, 0, n)
		for i := range n {
			if seen[i].IsZero() {
				b.Fatalf("event %d not projected within a minute", i)
			}
			lat = append(lat, seen[i].Sub(sent[i]))
		}
		slices.Sort(lat)
		b.ReportMetric(float64(lat[n/2].Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(lat[n*99/100].Microseconds())/1000, "p99-ms")
		b.ReportMetric(float64(lat[n-1].Microseconds())/1000, "max-ms")
	}
}
