package main

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"testing"

	"github.com/whocould/whocould/event"
	"github.com/whocould/whocould/internal/synth"
)

// BenchmarkImport imports about a million change events (a synthetic organisation of 65k
// principals, 6.5k groups and 650k grants, as JSON lines) into a fresh data directory through
// the real path: decode, validate, append to the log on the embedded NATS server, project into
// the embedded store, checkpoint. Reports events/s.
//
//	go test -run '^$' -bench Import -benchtime 1x ./cmd/whocould
func BenchmarkImport(b *testing.B) {
	org := synth.Generate(synth.Options{Principals: 65_000, Groups: 6_500, Grants: 650_000})
	var buf bytes.Buffer
	for i := range org.Events {
		data, err := event.Marshal(&org.Events[i])
		if err != nil {
			b.Fatal(err)
		}
		buf.Write(data)
		buf.WriteByte('\n')
	}
	n := len(org.Events)
	org = nil
	ctx := context.Background()
	logger := slog.New(slog.DiscardHandler)
	b.SetBytes(int64(buf.Len()))
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		dir, err := os.MkdirTemp("", "whocould-bench-import-")
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		s, err := openStack(ctx, dir, logger, stackOptions{})
		if err != nil {
			b.Fatal(err)
		}
		err = s.projectWhile(ctx, func() error {
			res, err := importReader(ctx, s, bytes.NewReader(buf.Bytes()), "bench", int64(buf.Len()), &progress{})
			if err == nil && res.Accepted != n {
				b.Errorf("accepted %d of %d", res.Accepted, n)
			}
			return err
		})
		if err != nil {
			b.Fatal(err)
		}
		s.close()
		b.StopTimer()
		os.RemoveAll(dir)
		b.StartTimer()
	}
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(float64(n), "events")
}
