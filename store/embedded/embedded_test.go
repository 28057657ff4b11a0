package embedded_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/whocould/whocould/access"
	"github.com/whocould/whocould/event"
	"github.com/whocould/whocould/internal/difftest"
	"github.com/whocould/whocould/internal/scenario"
	"github.com/whocould/whocould/store"
	"github.com/whocould/whocould/store/embedded"
)

// reopened applies the records in two halves with a checkpoint and a reopen between them and
// after them, so every answer comes from a store restored from its snapshot.
func reopened(t *testing.T, recs []event.Record) access.Querier {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	open := func() *embedded.Store {
		s, err := embedded.Open(embedded.Config{Dir: dir})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	s := open()
	half := len(recs) / 2
	if err := s.Apply(ctx, recs[:half]); err != nil {
		t.Fatal(err)
	}
	if err := s.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	s = open()
	// Replaying what was already applied changes nothing.
	if err := s.Apply(ctx, recs); err != nil {
		t.Fatal(err)
	}
	if err := s.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	return open()
}

func TestScenarios(t *testing.T) {
	scenario.Run(t, "../../testdata/scenarios", reopened)
}

func TestDifferential(t *testing.T) {
	difftest.Run(t, reopened, difftest.Options{CompareHistory: true})
}

func TestDecisionsUsageApprovals(t *testing.T) {
	ctx := context.Background()
	at := func(s string) time.Time { tm, _ := time.Parse(time.RFC3339, s); return tm }
	recs := []event.Record{
		{Event: event.Event{ID: "1", Source: "opa", Type: event.Decision, Time: at("2026-01-02T00:00:00Z"),
			Data: event.Data{Principal: "user:a", Action: "db.read", Resource: "db:x", Effect: "allow"}}},
		{Event: event.Event{ID: "2", Source: "opa", Type: event.Decision, Time: at("2026-01-01T00:00:00Z"),
			Data: event.Data{Principal: "user:a", Action: "db.read", Resource: "db:x", Effect: "allow", Reason: "rule 7"}}},
		{Event: event.Event{ID: "3", Source: "opa", Type: event.Decision, Time: at("2026-01-03T00:00:00Z"),
			Data: event.Data{Principal: "user:a", Action: "db.drop", Resource: "db:x", Effect: "deny"}}},
		{Event: event.Event{ID: "4", Source: "wf", Type: event.ApprovalRequested, Time: at("2026-01-01T00:00:00Z"),
			Data: event.Data{Request: "req-1", Requester: "user:a", Reason: "need it"}}},
		{Event: event.Event{ID: "5", Source: "wf", Type: event.ApprovalGranted, Time: at("2026-01-01T01:00:00Z"),
			Data: event.Data{Request: "req-1", Approver: "user:b"}}},
	}
	for i := range recs {
		recs[i].Position = uint64(i + 1)
		recs[i].Recorded = at("2026-02-01T00:00:00Z")
	}
	dir := t.TempDir()
	s, _ := embedded.Open(embedded.Config{Dir: dir})
	if err := s.Apply(ctx, recs); err != nil {
		t.Fatal(err)
	}
	if err := s.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	s, err := embedded.Open(embedded.Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	var ds []store.Decision
	s.Decisions(ctx, store.DecisionQuery{Principal: "user:a"}, func(d store.Decision) error { ds = append(ds, d); return nil })
	if len(ds) != 3 || ds[0].ID != "2" || ds[0].Reason != "rule 7" || ds[2].Effect != "deny" {
		t.Fatalf("decisions in event-time order: %+v", ds)
	}
	var us []store.Use
	s.Usage(ctx, store.DecisionQuery{}, func(u store.Use) error { us = append(us, u); return nil })
	if len(us) != 1 || us[0].Count != 2 || !us[0].Last.Equal(at("2026-01-02T00:00:00Z")) || !us[0].First.Equal(at("2026-01-01T00:00:00Z")) {
		t.Fatalf("usage counts allowed decisions only: %+v", us)
	}
	a, err := s.Approval(ctx, "", "req-1")
	if err != nil || a.Requester != "user:a" || len(a.Answers) != 1 || !a.Answers[0].Granted {
		t.Fatalf("approval: %+v %v", a, err)
	}
	if pos, _ := s.Position(ctx); pos != 5 {
		t.Fatalf("position %d after restore, want 5", pos)
	}
}

func TestCorruptSnapshotIsRefused(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, _ := embedded.Open(embedded.Config{Dir: dir})
	rec := event.Record{Position: 1, Recorded: time.Now(), Event: event.Event{ID: "1", Source: "s", Type: event.GrantAdded,
		Time: time.Now(), Data: event.Data{Subject: "user:a", Action: "x.y", Resource: "db:x"}}}
	s.Apply(ctx, []event.Record{rec})
	if err := s.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "snapshot.bin")
	b, _ := os.ReadFile(path)
	b[len(b)/2] ^= 0xff
	os.WriteFile(path, b, 0o600)
	if _, err := embedded.Open(embedded.Config{Dir: dir}); err == nil || !strings.Contains(err.Error(), "snapshot") {
		t.Fatalf("a corrupt snapshot must be refused with a clear error, got %v", err)
	}
}
