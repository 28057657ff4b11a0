package storetest

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/whocould/whocould/access"
	"github.com/whocould/whocould/event"
	"github.com/whocould/whocould/finding"
	"github.com/whocould/whocould/store"
)

// What the analyzers read besides decisions and the map: the archive of change and approval
// events (Events) and their findings (Findings, PutFindings).

// changes is a history of change and approval events among decisions: two tenants, every
// optional field (actor, approval, attributes, expires_at, change), event times out of log
// order and to the nanosecond, recorded times to the microsecond, an event that does not
// validate (accepted under an older rule: the log holds it all the same), and a message nobody
// could decode.
func changes() *history {
	h := &history{}
	expires := at(30 * 24 * time.Hour)
	h.add(event.PrincipalCreated, at(time.Hour), event.Data{Principal: "user:a",
		Attributes: map[string]string{"department": "eng", "title": "SRE"}, Actor: "user:admin"})
	h.add(event.GroupCreated, at(time.Hour), event.Data{Group: "group:eng"})
	h.decision("", "user:a", "db.read", "db:x", "allow", at(90*time.Minute))
	h.add(event.ApprovalRequested, at(30*time.Minute), event.Data{Request: "r1", Requester: "user:admin", Reason: "on call",
		Change: json.RawMessage(`{"type":"membership.added","data":{"group":"group:eng","member":"user:a"}}`)})
	h.add(event.ApprovalGranted, at(40*time.Minute), event.Data{Request: "r1", Approver: "user:b", Reason: "ok"})
	h.add(event.MembershipAdded, at(2*time.Hour+123456789), event.Data{Group: "group:eng", Member: "user:a", Actor: "user:admin",
		Approval: "r1"})
	h.add(event.GrantAdded, at(3*time.Hour), event.Data{Tenant: "acme", Subject: "user:z", Role: "role:dba", Resource: "db:prod",
		ExpiresAt: &expires, Actor: "user:root"})
	h.decision("acme", "user:z", "db.drop", "db:prod", "deny", at(4*time.Hour))
	h.add(event.RolePermissionAdded, at(time.Hour), event.Data{Role: "role:dba", Action: "db.*"})
	before := at(3 * time.Hour)
	h.add(event.GrantAdded, at(4*time.Hour), event.Data{Subject: "group:eng", Role: "role:dba", Resource: "db:prod",
		ExpiresAt: &before}) // expires before it is added: does not validate
	h.add(event.ApprovalRejected, at(5*time.Hour), event.Data{Tenant: "acme", Request: "r9", Approver: "user:c", Reason: "no"})
	h.recs = append(h.recs, event.Record{Position: uint64(len(h.recs) + 1), // a message nobody could decode
		Event: event.Event{ID: "x", Source: "storetest", Type: "no.such.type", Data: event.Data{Principal: "user:a"}}})
	h.add(event.PrincipalDisabled, at(6*time.Hour), event.Data{Principal: "user:a", Actor: "user:admin"})
	h.add(event.RoleIncludeAdded, at(7*time.Hour), event.Data{Role: "role:dba", Includes: "role:reader"})
	h.decision("", "user:a", "db.read", "db:x", "deny", at(8*time.Hour))
	for i := range h.recs {
		h.recs[i].Recorded = base.Add(time.Duration(i+1)*time.Second + time.Duration(i*7+1)*time.Microsecond)
	}
	return h
}

// wantEvents is what Events must answer for tenant once the store is at position upTo, by
// brute force: times in UTC, recorded times to the microsecond.
func wantEvents(recs []event.Record, tenant string, upTo uint64) []event.Record {
	out := []event.Record{}
	for _, r := range recs {
		if !r.Type.Known() || r.Type == event.Decision || r.TenantOrDefault() != tenantOf(tenant) || r.Position > upTo {
			continue
		}
		e := r.Event
		e.Time = e.Time.UTC()
		if e.Data.ExpiresAt != nil {
			x := e.Data.ExpiresAt.UTC()
			e.Data.ExpiresAt = &x
		}
		out = append(out, event.Record{Event: e, Position: r.Position, Recorded: event.FromMicros(event.Micros(r.Recorded))})
	}
	return out
}

func getEvents(t *testing.T, st store.Reader, tenant string) []event.Record {
	t.Helper()
	out := []event.Record{}
	if err := st.Events(context.Background(), tenant, func(r event.Record) error { out = append(out, r); return nil }); err != nil {
		t.Fatalf("events of %q: %v", tenant, err)
	}
	return out
}

// checkEvents compares what Events answers for each tenant with wantEvents at the store's
// position.
func checkEvents(t *testing.T, what string, st store.Reader, recs []event.Record) {
	t.Helper()
	p := position(t, st)
	for _, tenant := range []string{"", "default", "acme", "nobody"} {
		got := getEvents(t, st, tenant)
		for _, r := range got {
			if r.Position > p {
				t.Errorf("%s: events of %q: position %d past the store's position %d", what, tenant, r.Position, p)
			}
		}
		same(t, fmt.Sprintf("%s: events of %q", what, tenant), got, wantEvents(recs, tenant, p))
	}
}

func typesOf(rs []event.Record) string {
	var out []string
	for _, r := range rs {
		out = append(out, fmt.Sprintf("%d:%s", r.Position, r.Type))
	}
	return strings.Join(out, " ")
}

func (s *suite) testEvents(t *testing.T) {
	st := s.open(t)
	h := changes()
	if got := getEvents(t, st, ""); len(got) != 0 {
		t.Errorf("events of an empty store: %v", got)
	}
	apply(t, st, h.recs[:7])
	checkEvents(t, "after applying 1-7", st, h.recs)
	apply(t, st, h.recs)
	checkEvents(t, "after applying all", st, h.recs)

	// A few answers written out, so that the suite and a store cannot agree on a wrong rule.
	if got, want := typesOf(getEvents(t, st, "")), "1:principal.created 2:group.created 4:approval.requested "+
		"5:approval.granted 6:membership.added 9:role.permission.added 10:grant.added 13:principal.disabled 14:role.include.added"; got != want {
		t.Errorf("events of the default tenant, in log order:\n%s\nwant\n%s", got, want)
	}
	if got, want := typesOf(getEvents(t, st, "acme")), "7:grant.added 11:approval.rejected"; got != want {
		t.Errorf("events of acme: %s, want %s", got, want)
	}
	if got := getEvents(t, st, ""); len(got) > 4 {
		same(t, "every field of a membership with its actor and approval", got[4], event.Record{Position: 6,
			Recorded: base.Add(6*time.Second + 36*time.Microsecond),
			Event: event.Event{ID: "e6", Source: "storetest", Type: event.MembershipAdded, Time: at(2*time.Hour + 123456789),
				Data: event.Data{Group: "group:eng", Member: "user:a", Actor: "user:admin", Approval: "r1"}}})
	}

	// Replaying the log changes nothing; a reopened store answers the same.
	apply(t, st, h.recs)
	checkEvents(t, "after a replay", st, h.recs)
	st = s.reopen(t, st, false)
	checkEvents(t, "after a reopen", st, h.recs)
}

func (s *suite) testEventsStopEarly(t *testing.T) {
	st := s.open(t)
	h := &history{}
	for i := range 3000 {
		h.add(event.MembershipAdded, at(time.Duration(i)*time.Second), event.Data{Group: "group:g", Member: fmt.Sprintf("user:%d", i)})
	}
	apply(t, st, h.recs)
	stop := errors.New("enough")
	calls := 0
	err := st.Events(context.Background(), "", func(event.Record) error {
		calls++
		if calls == 3 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || calls != 3 {
		t.Errorf("fn stopping at the third event: %d calls, %v; want 3 calls and its error", calls, err)
	}
	if n := len(getEvents(t, st, "")); n != 3000 {
		t.Errorf("events after stopping early: %d, want 3000", n)
	}
}

// A store reopened after a crash (records applied after the last checkpoint) answers Events up
// to its position, whatever rows of later records it may hold; once the log is replayed, all.
func (s *suite) testEventsAfterCrash(t *testing.T) {
	st := s.open(t)
	h := changes()
	apply(t, st, h.recs[:5])
	checkpoint(t, st)
	apply(t, st, h.recs[5:])
	st = s.reopen(t, st, true)
	if p := position(t, st); p < 5 {
		t.Fatalf("position after the crash: %d, want at least the checkpoint, 5", p)
	}
	checkEvents(t, "after the crash", st, h.recs)
	apply(t, st, h.recs) // the projector replays from its position
	checkpoint(t, st)
	checkEvents(t, "after the crash and the replay", st, h.recs)
}

// sampleFindings are two findings of the default tenant: one with every field (nested evidence,
// paths, details, times to the nanosecond, a lifecycle), one with the fewest.
func sampleFindings() (full, bare finding.Finding) {
	tm := func(d time.Duration) *time.Time { return finding.Time(at(d)) }
	full = finding.Finding{
		ID: finding.IDOf("default", finding.UnusedGrant, "group:eng|role:dba|db:prod"), Rule: finding.UnusedGrant,
		Severity: finding.Medium, Status: finding.Suppressed, Principal: "user:a", Action: "db.table.drop", Resource: "db:prod/orders",
		Summary: "group:eng holds role:dba on db:prod, and nobody used it in 90 days.", Since: at(time.Hour + 123456789),
		Evidence: []finding.Evidence{
			{Kind: "event", Text: "user:admin granted role:dba on db:prod to group:eng.", Time: tm(time.Hour),
				Event: &finding.EventRef{Source: "storetest", ID: "e10", Type: "grant.added", Position: 10}},
			{Kind: "path", Text: "user:a is in group:eng, which holds role:dba.", Path: &access.Path{
				Groups: []string{"group:dba", "group:eng"},
				Grant:  access.GrantRef{Subject: "group:eng", Role: "role:dba", Resource: "db:prod", ExpiresAt: tm(40 * 24 * time.Hour)},
				Roles:  []string{"role:dba", "role:writer"}, Permission: "db.table.*"}},
			{Kind: "interval", Text: "No allowed decision from 1 March to 30 May.", Time: tm(0), Until: tm(90 * 24 * time.Hour)},
			{Kind: "measure", Text: "0 of 12 actions used."},
		},
		Tenant: "default", Kind: "role", Key: "group:eng|role:dba|db:prod", Ended: tm(91 * 24 * time.Hour),
		Details: map[string]any{"unused_days": 90, "ratio": 0.25, "actions": []any{"db.read", "db.write"},
			"smaller_role": map[string]any{"role": "role:reader", "covers": []any{1, 2.5}, "exact": true, "none": nil}},
		FirstSeen: at(24 * time.Hour), LastSeen: at(48*time.Hour + time.Nanosecond), ResolvedAt: tm(49 * time.Hour),
		Acknowledged: &finding.Note{By: "user:sec", At: at(25 * time.Hour), Reason: "looking"},
		Suppression:  &finding.Note{By: "user:sec", At: at(26 * time.Hour), Reason: "break-glass role", Until: tm(60 * 24 * time.Hour)},
		History: []finding.Transition{{At: at(24 * time.Hour), Status: finding.Open},
			{At: at(25 * time.Hour), Status: finding.Acknowledged, By: "user:sec", Reason: "looking"},
			{At: at(26 * time.Hour), Status: finding.Suppressed, By: "user:sec", Reason: "break-glass role"}},
	}
	bare = finding.Finding{ID: finding.IDOf("default", finding.Drift, "x"), Rule: finding.Drift, Severity: finding.Low,
		Status: finding.Open, Summary: "Drift.", Since: at(0), Key: "x"}
	return full, bare
}

// stored is fs as a store gives them back: of tenant, through JSON (numbers in Details are
// float64), sorted by id.
func stored(t *testing.T, tenant string, fs ...finding.Finding) []finding.Finding {
	t.Helper()
	out := []finding.Finding{}
	for _, f := range fs {
		f.Tenant = tenantOf(tenant)
		b, err := json.Marshal(f)
		if err != nil {
			t.Fatal(err)
		}
		var g finding.Finding
		if err := json.Unmarshal(b, &g); err != nil {
			t.Fatal(err)
		}
		out = append(out, g)
	}
	slices.SortFunc(out, func(a, b finding.Finding) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

func putFindings(t *testing.T, st store.FindingWriter, tenant string, fs ...finding.Finding) {
	t.Helper()
	if err := st.PutFindings(context.Background(), tenant, fs); err != nil {
		t.Fatalf("put findings of %q: %v", tenant, err)
	}
}

// checkFindings fails the test unless Findings of tenant is want, exactly (the Go values, not
// only their JSON).
func checkFindings(t *testing.T, what string, st store.Reader, tenant string, want []finding.Finding) {
	t.Helper()
	got, err := st.Findings(context.Background(), tenant)
	if err != nil {
		t.Fatalf("%s: findings of %q: %v", what, tenant, err)
	}
	if got == nil {
		got = []finding.Finding{}
	}
	if !reflect.DeepEqual(got, want) {
		same(t, fmt.Sprintf("%s: findings of %q", what, tenant), got, want)
		if !t.Failed() {
			t.Errorf("%s: findings of %q: the same JSON, other Go values:\ngot  %#v\nwant %#v", what, tenant, got, want)
		}
	}
}

func (s *suite) testFindings(t *testing.T) {
	st := s.open(t)
	ctx := context.Background()
	checkFindings(t, "an empty store", st, "", []finding.Finding{})
	putFindings(t, st, "") // none: nothing to do

	full, bare := sampleFindings()
	if full.ID < bare.ID {
		putFindings(t, st, "", bare, full) // out of id order
	} else {
		putFindings(t, st, "", full, bare)
	}
	want := stored(t, "", full, bare)
	checkFindings(t, "round trip, sorted by id", st, "", want)
	checkFindings(t, "the default tenant, named", st, "default", want)

	// The store keeps no map or slice of the caller's.
	full.Details["unused_days"] = 1
	full.Evidence[0].Text = "changed"
	checkFindings(t, "after the caller changed what it put", st, "", want)

	// Replaced by id.
	next := full
	next.Status, next.Severity, next.Summary = finding.Acknowledged, finding.High, "Replaced."
	next.Evidence = next.Evidence[:1]
	next.Details = map[string]any{"unused_days": 120}
	next.Ended, next.Suppression = nil, nil
	putFindings(t, st, "default", next)
	want = stored(t, "", next, bare)
	checkFindings(t, "a finding replaced", st, "", want)

	// The same id twice in one call: the later wins.
	first, second := bare, bare
	first.Summary, second.Summary = "First.", "Second."
	putFindings(t, st, "", first, second)
	want = stored(t, "", next, second)
	checkFindings(t, "the same id twice in one call", st, "", want)

	// Tenants apart; the tenant is the one named, whatever the finding says.
	other := bare
	other.ID, other.Tenant = finding.IDOf("acme", finding.Drift, "x"), "elsewhere"
	putFindings(t, st, "acme", other)
	checkFindings(t, "acme", st, "acme", stored(t, "acme", other))
	checkFindings(t, "the default tenant, with acme's put", st, "", want)
	checkFindings(t, "the tenant a finding named", st, "elsewhere", []finding.Finding{})
	checkFindings(t, "a tenant without findings", st, "nobody", []finding.Finding{})

	// Findings are not events: they make no tenant.
	if ts, err := st.Tenants(ctx); err != nil || len(ts) != 0 {
		t.Errorf("tenants of a store with findings only: %v, %v", ts, err)
	}
}

// Findings are durable when PutFindings returns: a store reopened after a crash has them, and
// applying the log does not touch them.
func (s *suite) testFindingsReopened(t *testing.T) {
	st := s.open(t)
	h := changes()
	apply(t, st, h.recs[:6])
	checkpoint(t, st)
	full, bare := sampleFindings()
	putFindings(t, st, "", full)
	putFindings(t, st, "acme", bare)
	st = s.reopen(t, st, true)
	checkFindings(t, "after a crash", st, "", stored(t, "", full))
	checkFindings(t, "acme, after a crash", st, "acme", stored(t, "acme", bare))

	apply(t, st, h.recs)
	full.Status = finding.Resolved
	putFindings(t, st, "", full, bare)
	st = s.reopen(t, st, false)
	checkFindings(t, "after a reopen", st, "", stored(t, "", full, bare))
	checkFindings(t, "acme, after a reopen", st, "acme", stored(t, "acme", bare))
	checkEvents(t, "after a reopen", st, h.recs)
}
