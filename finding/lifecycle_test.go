package finding

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/whocould/whocould/access"
)

var t0 = time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)

func day(n int) time.Time { return t0.Add(time.Duration(n) * 24 * time.Hour) }

func f(rule, key string) Finding {
	return Finding{ID: IDOf("default", rule, key), Rule: rule, Key: key, Tenant: "default", Severity: High, Summary: key}
}

// byID runs Reconcile and folds its changes into stored, as the analyzer does.
func run(stored map[string]Finding, found []Finding, rules []string, now time.Time) (changed []Finding) {
	var list []Finding
	for _, s := range stored {
		list = append(list, s)
	}
	changed = Reconcile(list, found, rules, now)
	for _, c := range changed {
		stored[c.ID] = c
	}
	return changed
}

func TestIDsAreStable(t *testing.T) {
	a, b := IDOf("default", UnusedGrant, "k"), IDOf("default", UnusedGrant, "k")
	if a != b || len(a) != 21 || a[0] != 'F' {
		t.Fatalf("ids %q %q", a, b)
	}
	for _, other := range []string{IDOf("acme", UnusedGrant, "k"), IDOf("default", Drift, "k"), IDOf("default", UnusedGrant, "k2"),
		IDOf("default", UnusedGrant+"k", "")} {
		if other == a {
			t.Errorf("id %s is shared by different conditions", a)
		}
	}
}

func TestLifecycle(t *testing.T) {
	rules := []string{UnusedGrant}
	st := map[string]Finding{}
	x := f(UnusedGrant, "x")

	if ch := run(st, []Finding{x}, rules, day(0)); len(ch) != 1 || ch[0].Status != Open || !ch[0].FirstSeen.Equal(day(0)) {
		t.Fatalf("first run: %+v", ch)
	}
	// Found again: nothing new, only LastSeen and the evidence move.
	x2 := x
	x2.Summary = "x, now with more"
	ch := run(st, []Finding{x2}, rules, day(1))
	if got := st[x.ID]; got.Status != Open || !got.FirstSeen.Equal(day(0)) || !got.LastSeen.Equal(day(1)) || got.Summary != x2.Summary || len(ch) != 1 {
		t.Fatalf("second run: %+v", got)
	}
	// Acknowledged, and found again: stays acknowledged.
	ack := st[x.ID]
	if err := ack.Acknowledge("user:sec", "on it", day(2)); err != nil {
		t.Fatal(err)
	}
	st[x.ID] = ack
	run(st, []Finding{x}, rules, day(3))
	if got := st[x.ID]; got.Status != Acknowledged || got.Acknowledged.By != "user:sec" {
		t.Fatalf("acknowledged, found again: %+v", got)
	}
	// Cleared: resolved, recording when.
	run(st, nil, rules, day(4))
	if got := st[x.ID]; got.Status != Resolved || !got.ResolvedAt.Equal(day(4)) {
		t.Fatalf("cleared: %+v", got)
	}
	// Still cleared: nothing changes (resolved stays resolved at day 4).
	if ch := run(st, nil, rules, day(5)); len(ch) != 0 {
		t.Fatalf("cleared again changed %+v", ch)
	}
	// Holds again: reopened, same id.
	run(st, []Finding{x}, rules, day(6))
	if got := st[x.ID]; got.Status != Open || got.ResolvedAt != nil || len(st) != 1 {
		t.Fatalf("holds again: %+v", got)
	}
	// A run of other rules leaves it alone.
	if ch := run(st, nil, []string{Drift}, day(7)); len(ch) != 0 {
		t.Fatalf("a run of other rules changed %+v", ch)
	}
	wantHistory := []string{Open, Acknowledged, Resolved, Open}
	got := st[x.ID].History
	if len(got) != len(wantHistory) {
		t.Fatalf("history %+v", got)
	}
	for i, h := range got {
		if h.Status != wantHistory[i] {
			t.Errorf("history[%d] is %s, want %s", i, h.Status, wantHistory[i])
		}
	}
}

func TestSuppressionExpires(t *testing.T) {
	rules := []string{Drift}
	st := map[string]Finding{}
	x, y := f(Drift, "x"), f(Drift, "y")
	run(st, []Finding{x, y}, rules, day(0))
	until := day(10)
	for _, id := range []string{x.ID, y.ID} {
		s := st[id]
		if err := s.Suppress("user:sec", "accepted risk", &until, day(1)); err != nil {
			t.Fatal(err)
		}
		st[id] = s
	}
	// Before the end: suppressed, found or not.
	run(st, []Finding{x}, rules, day(9))
	if st[x.ID].Status != Suppressed || st[y.ID].Status != Suppressed {
		t.Fatalf("before the end: %s %s", st[x.ID].Status, st[y.ID].Status)
	}
	// At the end: x still holds and opens again; y does not, and resolves.
	run(st, []Finding{x}, rules, day(10))
	if got := st[x.ID]; got.Status != Open {
		t.Errorf("x after its suppression: %s", got.Status)
	}
	if got := st[y.ID]; got.Status != Resolved || !got.ResolvedAt.Equal(day(10)) {
		t.Errorf("y after its suppression: %s at %v", got.Status, got.ResolvedAt)
	}
	// A suppression without an end lasts.
	s := st[x.ID]
	if err := s.Suppress("user:sec", "forever", nil, day(11)); err != nil {
		t.Fatal(err)
	}
	st[x.ID] = s
	run(st, []Finding{x}, rules, day(1000))
	if st[x.ID].Status != Suppressed {
		t.Errorf("an endless suppression ended: %s", st[x.ID].Status)
	}
}

func TestPastConditions(t *testing.T) {
	rules := []string{SeparationOfDuties}
	st := map[string]Finding{}
	x := f(SeparationOfDuties, "x")
	x.Ended = Time(day(-3))
	run(st, []Finding{x}, rules, day(0))
	if got := st[x.ID]; got.Status != Resolved || !got.ResolvedAt.Equal(day(-3)) {
		t.Fatalf("past condition: %s at %v", got.Status, got.ResolvedAt)
	}
	if ch := run(st, []Finding{x}, rules, day(1)); len(ch) != 1 || ch[0].Status != Resolved || len(ch[0].History) != 2 {
		t.Fatalf("past condition again: %+v", ch)
	}
	// It holds again (a new violation, no end yet): open.
	x.Ended = nil
	run(st, []Finding{x}, rules, day(2))
	if got := st[x.ID]; got.Status != Open {
		t.Fatalf("holds again: %s", got.Status)
	}
}

func TestTransitionsRefused(t *testing.T) {
	x := f(Drift, "x")
	x.Status = Resolved
	if err := x.Acknowledge("u", "", day(0)); !errors.Is(err, ErrTransition) {
		t.Errorf("ack of a resolved finding: %v", err)
	}
	if err := x.Suppress("u", "r", nil, day(0)); !errors.Is(err, ErrTransition) {
		t.Errorf("suppress of a resolved finding: %v", err)
	}
	x.Status = Open
	past := day(-1)
	if err := x.Suppress("u", "r", &past, day(0)); !errors.Is(err, ErrInvalid) {
		t.Errorf("suppress until the past: %v", err)
	}
	if err := x.Suppress("u", "", nil, day(0)); !errors.Is(err, ErrInvalid) {
		t.Errorf("suppress without a reason: %v", err)
	}
	if x.Status != Open {
		t.Errorf("refused changes changed the status to %s", x.Status)
	}
}

func TestCloneSharesNothing(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	exp := at.Add(time.Hour)
	f := Finding{ID: "F1", Ended: Time(at), ResolvedAt: Time(at),
		Acknowledged: &Note{By: "a", At: at, Until: Time(at)},
		History:      []Transition{{At: at, Status: Open}},
		Evidence: []Evidence{{Kind: "path", Time: Time(at), Event: &EventRef{ID: "e"},
			Path: &access.Path{Groups: []string{"group:g"}, Roles: []string{"role:r"}, Grant: access.GrantRef{ExpiresAt: &exp}}}},
		Details: map[string]any{"n": 3, "list": []string{"x"}, "nested": map[string]any{"l": []any{"y"}}, "pair": [2]string{"p", "q"}}}
	c := f.Clone()
	wantDetails := map[string]any{"n": 3.0, "list": []any{"x"}, "nested": map[string]any{"l": []any{"y"}}, "pair": []any{"p", "q"}}
	if !reflect.DeepEqual(c.Details, wantDetails) {
		t.Fatalf("details are %#v, want them as JSON gives them back: %#v", c.Details, wantDetails)
	}
	// Write through every pointer, slice and map of the clone: the original must not see it.
	*c.Ended, *c.ResolvedAt, *c.Acknowledged.Until = time.Time{}, time.Time{}, time.Time{}
	c.Acknowledged.By = "b"
	c.History[0].Status = Resolved
	*c.Evidence[0].Time = time.Time{}
	c.Evidence[0].Event.ID = "changed"
	c.Evidence[0].Path.Groups[0], c.Evidence[0].Path.Roles[0] = "changed", "changed"
	*c.Evidence[0].Path.Grant.ExpiresAt = time.Time{}
	c.Details["list"].([]any)[0] = "changed"
	c.Details["nested"].(map[string]any)["l"].([]any)[0] = "changed"
	c.Details["new"] = 1
	want := Finding{ID: "F1", Ended: Time(at), ResolvedAt: Time(at),
		Acknowledged: &Note{By: "a", At: at, Until: Time(at)},
		History:      []Transition{{At: at, Status: Open}},
		Evidence: []Evidence{{Kind: "path", Time: Time(at), Event: &EventRef{ID: "e"},
			Path: &access.Path{Groups: []string{"group:g"}, Roles: []string{"role:r"}, Grant: access.GrantRef{ExpiresAt: &exp}}}},
		Details: map[string]any{"n": 3, "list": []string{"x"}, "nested": map[string]any{"l": []any{"y"}}, "pair": [2]string{"p", "q"}}}
	if !reflect.DeepEqual(f, want) {
		t.Fatalf("the original changed with its clone:\n%#v", f)
	}
}
