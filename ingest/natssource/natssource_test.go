package natssource_test

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/whocould/whocould/eventlog"
	"github.com/whocould/whocould/ingest"
	"github.com/whocould/whocould/ingest/natssource"
	"github.com/whocould/whocould/ingest/sourcetest"
)

// broker is a real NATS server with JetStream, listening on loopback so that clients reconnect
// across its restarts.
type broker struct {
	dir, addr string
	srv       *eventlog.Embedded
}

func (b *broker) start(t testing.TB) {
	t.Helper()
	srv, err := eventlog.StartEmbedded(eventlog.EmbeddedConfig{Dir: b.dir, Listen: b.addr})
	if err != nil {
		t.Fatal(err)
	}
	b.srv = srv
}

func freeAddr(t testing.TB) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

var streamN atomic.Int64

func TestConformance(t *testing.T) {
	b := &broker{dir: filepath.Join(t.TempDir(), "nats"), addr: freeAddr(t)}
	b.start(t)
	defer func() { b.srv.Shutdown() }()
	connect := func(t *testing.T) *nats.Conn {
		nc, err := nats.Connect("nats://"+b.addr, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		return nc
	}
	sourcetest.Run(t, sourcetest.Harness{
		New: func(t *testing.T) (ingest.Source, sourcetest.Publish) {
			n := streamN.Add(1)
			prefix := fmt.Sprintf("in%d", n)
			src, err := natssource.New(connect(t), natssource.Config{
				Stream: fmt.Sprintf("IN%d", n), Subjects: []string{prefix + ".>"}, CreateStream: true, Batch: 64,
			})
			if err != nil {
				t.Fatal(err)
			}
			// The stream exists before anyone publishes, as it would in production.
			ctx := context.Background()
			js, err := jetstream.New(connect(t))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: fmt.Sprintf("IN%d", n), Subjects: []string{prefix + ".>"},
				Storage: jetstream.FileStorage, Retention: jetstream.WorkQueuePolicy, MaxAge: 7 * 24 * time.Hour,
				Description: "whocould inbox: events from producers, removed once ingested"}); err != nil {
				t.Fatal(err)
			}
			pub := func(ctx context.Context, key string, payloads ...[]byte) error {
				// Each publish is tried again until the broker acknowledges it: a request sent
				// while the client is reconnecting after a broker restart gets no answer.
				for _, p := range payloads {
					for {
						pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
						_, err := js.Publish(pctx, prefix+"."+key, p)
						cancel()
						if err == nil {
							break
						}
						if ctx.Err() != nil {
							return err
						}
						time.Sleep(20 * time.Millisecond)
					}
				}
				return nil
			}
			return src, pub
		},
		RestartBroker: func(t *testing.T) {
			b.srv.Shutdown()
			b.start(t)
		},
	})
}
