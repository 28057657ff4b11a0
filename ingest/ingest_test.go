package ingest_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/whocould/whocould/deadletter"
	"github.com/whocould/whocould/eventlog"
	"github.com/whocould/whocould/ingest"
)

// pipeline is a real event log on an embedded NATS server, dead letters and an ingester
// appending to them, all closed when the test ends.
func pipeline(t *testing.T) (*eventlog.JetStreamLog, *deadletter.File, *ingest.Ingester) {
	t.Helper()
	dir := t.TempDir()
	srv, err := eventlog.StartEmbedded(eventlog.EmbeddedConfig{Dir: filepath.Join(dir, "nats")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	nc, err := srv.Connect()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	log, err := eventlog.Open(context.Background(), nc, eventlog.Config{Dir: filepath.Join(dir, "eventlog")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { log.Close() })
	dead, err := deadletter.Open(filepath.Join(dir, "deadletters.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dead.Close() })
	return log, dead, ingest.New(log, dead, nil)
}

func grant(id, subject string) string {
	return `{"specversion":"1.0","id":"` + id + `","source":"okta","type":"grant.added","time":"2026-01-05T10:00:00Z",` +
		`"data":{"subject":"` + subject + `","role":"role:admin","resource":"db:prod"}}`
}

// TestHandleMixedBatch: a batch of broker messages — single events, an array, JSON lines, an
// empty message, malformed JSON and an invalid event — lands its good events once and
// dead-letters each bad one with where it was and why.
func TestHandleMixedBatch(t *testing.T) {
	ctx := context.Background()
	log, dead, in := pipeline(t)
	batch := []ingest.Message{
		{Source: "nats:whocould.in.okta", Where: "sequence 1", Data: []byte(grant("1", "user:ann"))},
		{Source: "nats:whocould.in.okta", Where: "sequence 2", Data: []byte("[" + grant("2", "user:bob") + "," + grant("3", "user:cy") + "]")},
		{Source: "nats:whocould.in.okta", Where: "sequence 3", Data: []byte(grant("4", "user:dee") + "\n{\"specversion\":\n")},
		{Source: "kafka:changes", Where: "partition 0 offset 7", Data: nil},
		{Source: "kafka:changes", Where: "partition 0 offset 8", Data: []byte(strings.Replace(grant("5", "user:eve"), `"role":"role:admin",`, "", 1))},
		{Source: "kafka:changes", Where: "partition 0 offset 9", Data: []byte(grant("1", "user:ann"))}, // a redelivery
	}
	res, err := in.HandleResult(ctx, batch)
	if err != nil {
		t.Fatal(err)
	}
	if res.Accepted != 4 || res.Duplicates != 1 || len(res.Rejected) != 3 {
		t.Fatalf("accepted %d, duplicates %d, rejected %+v", res.Accepted, res.Duplicates, res.Rejected)
	}
	var letters []deadletter.Letter
	dead.List(ctx, func(l deadletter.Letter) error { letters = append(letters, l); return nil })
	if len(letters) != 3 {
		t.Fatalf("%d dead letters, want 3", len(letters))
	}
	want := []struct{ source, where, reason string }{
		{"nats:whocould.in.okta", "sequence 3 item 1", "line 2"},
		{"kafka:changes", "partition 0 offset 7", "empty message"},
		{"kafka:changes", "partition 0 offset 8", "role"},
	}
	for i, w := range want {
		l := letters[i]
		if l.Source != w.source || l.Where != w.where || !strings.Contains(l.Reason, w.reason) {
			t.Errorf("letter %d = %s / %s / %s; want %s / %s / …%s…", i, l.Source, l.Where, l.Reason, w.source, w.where, w.reason)
		}
	}
	if last, _ := log.Last(ctx); last != 4 {
		t.Fatalf("log holds %d events, want 4", last)
	}
	// Handling the same batch again (a redelivery after a lost acknowledgement) appends nothing.
	res, err = in.HandleResult(ctx, batch[:3])
	if err != nil || res.Accepted != 0 || res.Duplicates != 4 {
		t.Fatalf("redelivered batch: %+v, %v", res, err)
	}
}
