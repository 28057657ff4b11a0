package scenario

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/whocould/whocould/access"
	"github.com/whocould/whocould/event"
	"github.com/whocould/whocould/internal/reference"
)

const dir = "../../testdata/scenarios"

// Every scenario holds for the reference: the expectations are verified now.
func TestScenariosAgainstReference(t *testing.T) {
	Run(t, dir, func(t *testing.T, recs []event.Record) access.Querier { return reference.New(recs) })
}

// Each deliberate bug breaks at least one expectation of the scenario written for its rule, so
// the scenarios can fail.
func TestScenariosCatchMutants(t *testing.T) {
	cases := []struct {
		m    reference.Mutation
		file string
	}{
		{reference.ExpiryInclusive, "expiring_grants.yaml"},
		{reference.EventsAtTExcluded, "same_timestamp.yaml"},
		{reference.DisabledCan, "disable_enable.yaml"},
		{reference.IgnoreKnownAt, "known_at.yaml"},
		{reference.KeepFirstExpiry, "expiring_grants.yaml"},
		{reference.DeleteKeepsGrants, "principal_deletion.yaml"},
		{reference.DeliveryOrder, "late_delivery.yaml"},
		{reference.RefCounted, "idempotent_changes.yaml"},
		{reference.PrefixCovers, "resource_hierarchy.yaml"},
	}
	for _, c := range cases {
		s, err := Load(filepath.Join(dir, c.file))
		if err != nil {
			t.Fatal(err)
		}
		fs := s.Verify(t.Context(), reference.NewMutant(s.Deduped(), c.m))
		if len(fs) == 0 {
			t.Errorf("%s: mutation %d passes every expectation", c.file, c.m)
			continue
		}
		t.Logf("mutation %d caught, e.g.:\n%s", c.m, fs[0].Error())
	}
}

// A failure names the file and the question and shows want and got.
func TestFailureIsReadable(t *testing.T) {
	s, err := Load(filepath.Join(dir, "nested_groups.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	fs := s.Verify(t.Context(), reference.New(nil))
	if len(fs) == 0 {
		t.Fatal("an empty map passed nested_groups.yaml")
	}
	msg := fs[0].Error()
	for _, want := range []string{"nested_groups.yaml", "expect[0]", "who-could", "action=db.table.drop", "want:", "got:", "user:alice"} {
		if !strings.Contains(msg, want) {
			t.Errorf("failure lacks %q:\n%s", want, msg)
		}
	}
}

// Bad files are rejected with where and what, so a typo cannot make a scenario vacuous.
func TestLoadRejectsBadFiles(t *testing.T) {
	head := "date: 2026-01-05\nevents:\n  - {type: grant.added, time: \"10:00\", subject: user:a, action: x, resource: db:p}\nexpect:\n"
	for name, body := range map[string]string{
		"unknown key":        head + "  - who-could: {action: x, resource: db:p, at: \"10:00\"}\n    principal: [user:a]\n",
		"no answer":          head + "  - who-could: {action: x, resource: db:p, at: \"10:00\"}\n",
		"wrong answer kind":  head + "  - who-could: {action: x, resource: db:p, at: \"10:00\"}\n    principals: []\n    could: true\n",
		"bad path":           head + "  - explain: {principal: user:a, action: x, resource: db:p, at: \"10:00\"}\n    could: true\n    paths: [user:a]\n",
		"bad time":           head + "  - explain: {principal: user:a, action: x, resource: db:p, at: \"ten\"}\n    could: true\n",
		"no at":              head + "  - explain: {principal: user:a, action: x, resource: db:p}\n    could: true\n",
		"two questions":      head + "  - explain: {principal: user:a, action: x, resource: db:p, at: \"10:00\"}\n    who-could: {action: x, resource: db:p, at: \"10:00\"}\n    could: true\n",
		"unknown type":       "date: 2026-01-05\nevents:\n  - {type: grant.add, time: \"10:00\"}\nexpect:\n  - who-could: {action: x, resource: db:p, at: \"10:00\"}\n    principals: []\n",
		"recorded goes back": "date: 2026-01-05\nevents:\n  - {type: grant.added, time: \"10:00\", recorded: \"11:00\", subject: user:a, action: x, resource: db:p}\n  - {type: grant.added, time: \"10:00\", recorded: \"10:30\", subject: user:b, action: x, resource: db:p}\nexpect:\n  - who-could: {action: x, resource: db:p, at: \"10:00\"}\n    principals: []\n",
	} {
		f := filepath.Join(t.TempDir(), "bad.yaml")
		if err := os.WriteFile(f, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := Load(f); err == nil {
			t.Errorf("%s: loaded without error", name)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
}

// Positions follow list order, recorded times default to max(previous + 1s, event time), and
// Deduped drops later deliveries of a (source, id) and renumbers.
func TestRecords(t *testing.T) {
	s, err := Load(filepath.Join(dir, "late_delivery.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"2026-01-05T11:00:00Z", "2026-01-05T11:00:01Z", "2026-01-05T11:00:02Z", "2026-01-08T09:00:00Z"}
	for i, r := range s.Records {
		if r.Position != uint64(i+1) || r.Recorded.Format("2006-01-02T15:04:05Z07:00") != want[i] {
			t.Errorf("record %d: position %d recorded %s, want %d %s", i, r.Position, r.Recorded, i+1, want[i])
		}
	}
	d, err := Load(filepath.Join(dir, "duplicates.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	recs := d.Deduped()
	if len(recs) != 5 || len(d.Records) != 8 {
		t.Fatalf("deduped %d of %d records, want 5 of 8", len(recs), len(d.Records))
	}
	for i, r := range recs {
		if r.Position != uint64(i+1) {
			t.Errorf("deduped record %d has position %d", i, r.Position)
		}
	}
	if recs[0].Data.Member != "user:alice" {
		t.Errorf("the first delivery must win, got %+v", recs[0])
	}
}
