package eventlog

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/whocould/whocould/event"
)

func benchEntries(from, n int) []Entry {
	pad := strings.Repeat("x", 280)
	es := make([]Entry, n)
	for i := range es {
		id := from + i
		es[i] = Entry{Key: event.KeyOf("bench", fmt.Sprint(id)), Kind: KindChange, Data: fmt.Appendf(nil, "%08d;%s", id, pad)}
	}
	return es
}

// BenchmarkAppend appends batches of 1000 entries of ~300 bytes to a server of its own.
func BenchmarkAppend(b *testing.B) {
	for _, sync := range []bool{false, true} {
		name := "default"
		if sync {
			name = "sync_always"
		}
		b.Run(name, func(b *testing.B) {
			dir := b.TempDir()
			srv, err := StartEmbedded(EmbeddedConfig{Dir: filepath.Join(dir, "nats"), SyncAlways: sync})
			if err != nil {
				b.Fatal(err)
			}
			defer srv.Shutdown()
			nc, err := srv.Connect()
			if err != nil {
				b.Fatal(err)
			}
			defer nc.Close()
			l := openLog(b, nc, Config{Dir: filepath.Join(dir, "eventlog")})
			const batch = 1000
			batches := make([][]Entry, b.N)
			for i := range batches {
				batches[i] = benchEntries(i*batch, batch)
			}
			b.SetBytes(batch * 300)
			b.ResetTimer()
			for i := range b.N {
				if _, err := l.Append(context.Background(), batches[i]); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "events/s")
			l.Close()
		})
	}
}

// BenchmarkRead reads a log of 100k entries of ~300 bytes from the start.
func BenchmarkRead(b *testing.B) {
	cfg := testConfig(b)
	l := openLog(b, sharedNC, cfg)
	const n = 100_000
	for i := 0; i < n; i += 1000 {
		if _, err := l.Append(context.Background(), benchEntries(i, 1000)); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	total := 0
	for range b.N {
		count := 0
		if err := l.Read(context.Background(), 1, func(Message) error { count++; return nil }); err != nil {
			b.Fatal(err)
		}
		if count != n {
			b.Fatalf("read %d, want %d", count, n)
		}
		total += count
	}
	b.ReportMetric(float64(total)/b.Elapsed().Seconds(), "events/s")
}
