package randhist

import (
	"reflect"
	"testing"
	"time"

	"github.com/whocould/whocould/event"
)

func TestDeterministic(t *testing.T) {
	a, b := Generate(3, Options{}), Generate(3, Options{})
	if !reflect.DeepEqual(a, b) {
		t.Fatal("the same seed gave two histories")
	}
	if reflect.DeepEqual(a, Generate(4, Options{})) {
		t.Fatal("two seeds gave the same history")
	}
	if !reflect.DeepEqual(Questions(3, a, 50), Questions(3, a, 50)) {
		t.Fatal("the same seed gave two question lists")
	}
}

// The histories have what they are for: collisions of every kind.
func TestShape(t *testing.T) {
	recs := Generate(1, Options{})
	var dups, late, selfMember, roleCycle, expiring, sameTime, deletes, tenants, noise, crossSourceIDs int
	seen := map[event.Key]bool{}
	ids := map[string]string{}
	times := map[int64]int{}
	var maxTime time.Time
	prevRec := time.Time{}
	for i, r := range recs {
		if r.Position != uint64(i+1) {
			t.Fatalf("record %d has position %d", i, r.Position)
		}
		if r.Recorded.Before(prevRec) {
			t.Fatalf("recorded time goes back at position %d", r.Position)
		}
		prevRec = r.Recorded
		if seen[r.Key()] {
			dups++
			continue
		}
		seen[r.Key()] = true
		if src, ok := ids[r.ID]; ok && src != r.Source {
			crossSourceIDs++
		}
		ids[r.ID] = r.Source
		if r.Time.Before(maxTime.Add(-time.Hour)) {
			late++
		}
		if r.Time.After(maxTime) {
			maxTime = r.Time
		}
		times[event.Micros(r.Time)]++
		d := r.Data
		switch r.Type {
		case event.MembershipAdded:
			if d.Group == d.Member {
				selfMember++
			}
		case event.RoleIncludeAdded:
			if d.Role == d.Includes {
				roleCycle++
			}
		case event.GrantAdded:
			if d.ExpiresAt != nil {
				expiring++
			}
		case event.PrincipalDeleted, event.GroupDeleted, event.RoleDeleted:
			deletes++
		}
		if !r.Type.IsChange() {
			noise++
		}
		if d.Tenant == "acme" {
			tenants++
		}
	}
	for _, n := range times {
		if n > 1 {
			sameTime++
		}
	}
	for name, n := range map[string]int{"duplicates": dups, "late deliveries": late, "self-memberships": selfMember,
		"self-inclusions": roleCycle, "expiring grants": expiring, "shared timestamps": sameTime, "deletions": deletes,
		"other-tenant events": tenants, "decisions and approvals": noise, "ids shared across sources": crossSourceIDs} {
		if n == 0 {
			t.Errorf("no %s", name)
		}
		t.Logf("%s: %d", name, n)
	}
}

func TestDedup(t *testing.T) {
	recs := Generate(2, Options{})
	d := Dedup(recs)
	seen := map[event.Key]bool{}
	for i, r := range d {
		if seen[r.Key()] {
			t.Fatalf("duplicate %s/%s kept", r.Source, r.ID)
		}
		seen[r.Key()] = true
		if r.Position != uint64(i+1) {
			t.Fatalf("position %d at %d", r.Position, i)
		}
	}
	if len(d) == len(recs) {
		t.Fatal("nothing dropped")
	}
	// The first delivery wins.
	first := map[event.Key]event.Event{}
	for _, r := range recs {
		if _, ok := first[r.Key()]; !ok {
			first[r.Key()] = r.Event
		}
	}
	for _, r := range d {
		if !reflect.DeepEqual(first[r.Key()], r.Event) {
			t.Fatalf("%s/%s: a later delivery won", r.Source, r.ID)
		}
	}
}

// Question times land on boundaries, just before them and between them.
func TestQuestionTimes(t *testing.T) {
	recs := Dedup(Generate(5, Options{}))
	bounds := map[int64]bool{}
	for _, r := range recs {
		if r.Type.IsChange() {
			bounds[event.Micros(r.Time)] = true
		}
		if r.Data.ExpiresAt != nil {
			bounds[event.Micros(*r.Data.ExpiresAt)] = true
		}
	}
	var on, before, knownAt int
	for _, q := range Questions(5, recs, 500) {
		at := event.Micros(q.At)
		if bounds[at] {
			on++
		} else if bounds[at+1] {
			before++
		}
		if q.KnownAt != nil {
			knownAt++
		}
	}
	if on < 100 || before < 50 || knownAt < 50 {
		t.Fatalf("on boundaries %d, just before %d, with known-at %d of 500", on, before, knownAt)
	}
}
