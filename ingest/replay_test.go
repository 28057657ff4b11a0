package ingest_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/whocould/whocould/deadletter"
	"github.com/whocould/whocould/event"
	"github.com/whocould/whocould/ingest"
)

// TestReplay: letters whose bytes are good now land (once), bad ones stay open without a new
// letter, letters of the log itself are refused, and an unknown letter fails the whole call.
func TestReplay(t *testing.T) {
	ctx := context.Background()
	log, dead, in := pipeline(t)

	// Already in the log: grant 1.
	if res, err := in.Ingest(ctx, "http:writer", []ingest.Item{{Event: mustDecode(t, grant("1", "user:ann"))}}); err != nil || res.Accepted != 1 {
		t.Fatalf("ingest: %+v, %v", res, err)
	}
	// Letters as an older whocould kept them: good bytes refused then (stand-ins for a fix),
	// bad bytes, and an undecodable log message.
	older := errors.New("refused by an older version")
	bad := strings.Replace(grant("5", "user:eve"), `"role":"role:admin",`, "", 1)
	err := dead.Add(ctx,
		deadletter.NewLetter("nats:whocould.in.okta", "sequence 7", "2", []byte(grant("2", "user:bob")), older),               // 1
		deadletter.NewLetter("kafka:changes", "partition 0 offset 8", "5", []byte(bad), older),                                // 2
		deadletter.NewLetter("eventlog", "log position 3", "", []byte("garbage"), older),                                      // 3
		deadletter.NewLetter("okta.jsonl", "line 4", "1", []byte(grant("1", "user:ann")), older),                              // 4
		deadletter.NewLetter("http:writer", "", "", []byte("["+grant("6", "user:fay")+","+grant("7", "user:gus")+"]"), older), // 5
		deadletter.NewLetter("kafka:changes", "partition 0 offset 9", "", []byte{}, errors.New("empty message: no event")),    // 6
	)
	if err != nil {
		t.Fatal(err)
	}

	// An unknown letter: nothing is done.
	if res, err := in.Replay(ctx, dead, []uint64{1, 99}); !errors.Is(err, deadletter.ErrNotFound) || !strings.Contains(err.Error(), "99") || res != nil {
		t.Fatalf("replay 1, 99: %+v, %v; want ErrNotFound naming 99", res, err)
	}
	if l, _ := dead.Get(ctx, 1); l.Status != deadletter.StatusOpen {
		t.Fatalf("letter 1 after a failed replay: %+v", l)
	}

	res, err := in.Replay(ctx, dead, []uint64{1, 2, 3, 4, 5, 6, 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 6 {
		t.Fatalf("%d results, want 6 (each letter once): %+v", len(res), res)
	}
	want := []struct {
		outcome, status string
		accepted, dups  int
		position        uint64
		reason          string
	}{
		{ingest.ReplayLanded, deadletter.StatusReplayed, 1, 0, 2, ""},
		{ingest.ReplayStillBad, deadletter.StatusOpen, 0, 0, 0, "role"},
		{ingest.ReplayNotReplayable, deadletter.StatusOpen, 0, 0, 0, "rebuild"},
		{ingest.ReplayDuplicate, deadletter.StatusReplayed, 0, 1, 1, ""},
		{ingest.ReplayLanded, deadletter.StatusReplayed, 2, 0, 4, ""},
		{ingest.ReplayStillBad, deadletter.StatusOpen, 0, 0, 0, "empty message"},
	}
	for i, w := range want {
		r := res[i]
		if r.Seq != uint64(i+1) || r.Outcome != w.outcome || r.Status != w.status || r.Accepted != w.accepted || r.Duplicates != w.dups ||
			r.Position != w.position || !strings.Contains(r.Reason, w.reason) || (w.reason == "") != (r.Reason == "") ||
			(w.status == deadletter.StatusReplayed) != (r.ReplayedAt != nil) {
			t.Errorf("letter %d: %+v; want %+v", i+1, r, w)
		}
	}
	if s := ingest.Summarize(res); s.Open != 3 || s.Replayed != 3 || s.Position != 4 || len(s.Results) != 6 {
		t.Errorf("Summarize = %+v, want 3 open, 3 replayed, position 4", s)
	}
	if last, _ := log.Last(ctx); last != 4 {
		t.Fatalf("log holds %d events, want 4", last)
	}
	// No new letter for those still bad; the replayed ones are marked.
	if dead.Count() != 6 || dead.Open() != 3 {
		t.Fatalf("count %d, open %d; want 6, 3", dead.Count(), dead.Open())
	}
	if l, _ := dead.Get(ctx, 5); l.Status != deadletter.StatusReplayed || l.Position != 4 || l.ReplayedAt == nil || l.Duplicate {
		t.Fatalf("letter 5: %+v", l)
	}
	if l, _ := dead.Get(ctx, 4); l.Status != deadletter.StatusReplayed || l.Position != 1 || !l.Duplicate {
		t.Fatalf("letter 4: %+v", l)
	}

	// Again: a no-op for the replayed ones.
	res, err = in.Replay(ctx, dead, []uint64{1})
	if err != nil || len(res) != 1 || res[0].Outcome != ingest.ReplayAlready || res[0].Position != 2 || res[0].ReplayedAt == nil ||
		ingest.Summarize(res).Replayed != 0 || ingest.Summarize(res).Position != 2 {
		t.Fatalf("replay 1 again: %+v, %v", res, err)
	}
	// All: only the open ones, which stay open.
	res, err = in.ReplayAll(ctx, dead)
	if err != nil || len(res) != 3 || res[0].Seq != 2 || res[1].Seq != 3 || res[2].Seq != 6 || ingest.Summarize(res).Open != 3 {
		t.Fatalf("replay all: %+v, %v", res, err)
	}
	if last, _ := log.Last(ctx); last != 4 || dead.Count() != 6 {
		t.Fatalf("after replaying all: log %d, %d letters", last, dead.Count())
	}
}

func mustDecode(t *testing.T, s string) event.Event {
	t.Helper()
	items, err := ingest.DecodeMessage(nil, ingest.Message{Data: []byte(s), Source: "test"})
	if err != nil || len(items) != 1 || items[0].Err != nil {
		t.Fatalf("decode %s: %v %+v", s, err, items)
	}
	return items[0].Event
}
