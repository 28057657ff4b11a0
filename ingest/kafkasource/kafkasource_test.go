package kafkasource_test

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/whocould/whocould/ingest"
	"github.com/whocould/whocould/ingest/kafkasource"
	"github.com/whocould/whocould/ingest/sourcetest"
)

// broker is a kfake cluster of 3 brokers persisting to a directory, so that it can be closed
// and started again on the same ports with its topics, records and committed offsets.
type broker struct {
	dir    string
	ports  []int
	addrs  []string
	mu     sync.Mutex
	c      *kfake.Cluster
	topics []string
}

func (b *broker) start(t testing.TB) {
	t.Helper()
	opts := []kfake.Opt{kfake.DataDir(b.dir), kfake.NumBrokers(3)}
	if b.ports != nil {
		opts = append(opts, kfake.Ports(b.ports...))
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		t.Fatal(err)
	}
	if b.ports == nil {
		b.addrs = c.ListenAddrs()
		for _, a := range b.addrs {
			p, err := strconv.Atoi(a[strings.LastIndexByte(a, ':')+1:])
			if err != nil {
				t.Fatal(err)
			}
			b.ports = append(b.ports, p)
		}
	}
	b.mu.Lock()
	b.c = c
	b.mu.Unlock()
}

func (b *broker) cluster() *kfake.Cluster {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.c
}

// highWatermarks is what the cluster holds, to check that a restart kept it.
func (b *broker) highWatermarks() []int64 {
	var hw []int64
	for _, topic := range b.topics {
		for _, p := range b.cluster().PartitionInfos(topic) {
			hw = append(hw, p.HighWatermark)
		}
	}
	return hw
}

var topicN atomic.Int64

func TestConformance(t *testing.T) {
	b := &broker{dir: filepath.Join(t.TempDir(), "kfake")}
	b.start(t)
	defer func() { b.cluster().Close() }()
	sourcetest.Run(t, sourcetest.Harness{
		New: func(t *testing.T) (ingest.Source, sourcetest.Publish) {
			n := topicN.Add(1)
			topic := fmt.Sprintf("changes-%d", n)
			if err := b.cluster().CreateTopic(topic, 3, nil); err != nil {
				t.Fatal(err)
			}
			b.topics = append(b.topics, topic)
			src, err := kafkasource.New(kafkasource.Config{
				Brokers: b.addrs, Topics: []string{topic}, GroupID: fmt.Sprintf("ingest-%d", n), Batch: 64,
			})
			if err != nil {
				t.Fatal(err)
			}
			return src, publisher(t, &kafka.Transport{}, b.addrs, topic)
		},
		RestartBroker: func(t *testing.T) {
			before := b.highWatermarks()
			b.cluster().Close()
			b.start(t)
			if after := b.highWatermarks(); !slices.Equal(after, before) {
				t.Fatalf("the restarted cluster lost data: high watermarks %v, were %v", after, before)
			}
		},
	})
}

// publisher writes with a kafka-go writer: all replicas acknowledge (the default, RequireNone,
// returns before the broker has the data), one key stays on one partition. The transport is
// its own: the shared default caches metadata from before the topic existed.
func publisher(t *testing.T, tr *kafka.Transport, addrs []string, topic string) sourcetest.Publish {
	w := &kafka.Writer{
		Addr: kafka.TCP(addrs...), Topic: topic, Balancer: &kafka.Hash{}, Transport: tr,
		RequiredAcks: kafka.RequireAll, BatchTimeout: 5 * time.Millisecond,
	}
	t.Cleanup(func() { w.Close(); tr.CloseIdleConnections() })
	return func(ctx context.Context, key string, payloads ...[]byte) error {
		msgs := make([]kafka.Message, len(payloads))
		for i, p := range payloads {
			msgs[i] = kafka.Message{Key: []byte(key), Value: p}
		}
		return w.WriteMessages(ctx, msgs...)
	}
}
