package finding

import (
	"errors"
	"fmt"
	"slices"
	"time"
)

// Reconcile merges one run's findings into the stored ones and returns the findings whose
// record changed (to be stored). rules names the rules that ran: a stored finding of one of them
// that the run did not find again has cleared, and is resolved at now. Otherwise:
//   - a finding found for the first time is open (or resolved at Ended, for a past condition);
//   - a finding found again keeps its id, first sighting and status, with the run's summary,
//     evidence and details; a resolved one that holds again reopens, open (its earlier
//     acknowledgement or suppression stays in History);
//   - a suppression that has run out (Until ≤ now) ends: the finding is open again if it still
//     holds, resolved if not.
func Reconcile(stored, found []Finding, rules []string, now time.Time) []Finding {
	now = now.UTC()
	old := make(map[string]*Finding, len(stored))
	for i := range stored {
		old[stored[i].ID] = &stored[i]
	}
	var out []Finding
	seen := make(map[string]bool, len(found))
	for _, f := range found {
		if seen[f.ID] {
			continue // a rule named one condition twice: the first wins
		}
		seen[f.ID] = true
		prev, ok := old[f.ID]
		if !ok {
			f.FirstSeen, f.LastSeen = now, now
			f.Status = Open
			f.History = []Transition{{At: now, Status: Open}}
			if f.Ended != nil {
				f.resolve(*f.Ended)
			}
			out = append(out, f)
			continue
		}
		next := *prev
		next.Severity, next.Principal, next.Action, next.Resource = f.Severity, f.Principal, f.Action, f.Resource
		next.Summary, next.Since, next.Evidence, next.Kind, next.Details, next.Ended = f.Summary, f.Since, f.Evidence, f.Kind, f.Details, f.Ended
		next.LastSeen = now
		next.History = slices.Clone(prev.History)
		next.expire(now)
		switch {
		case f.Ended != nil && next.Status != Suppressed:
			if next.Status != Resolved || next.ResolvedAt == nil || !next.ResolvedAt.Equal(*f.Ended) {
				next.resolve(*f.Ended)
			}
		case next.Status == Resolved:
			// A new occurrence: what was said of the last one is in History, not in force.
			next.ResolvedAt, next.Acknowledged, next.Suppression = nil, nil, nil
			next.Status = Open
			next.History = append(next.History, Transition{At: now, Status: Open, Reason: "holds again"})
		}
		out = append(out, next)
	}
	for i := range stored {
		prev := &stored[i]
		if seen[prev.ID] || !slices.Contains(rules, prev.Rule) {
			continue
		}
		next := *prev
		next.History = slices.Clone(prev.History)
		changed := next.expire(now)
		if next.Status != Resolved && next.Status != Suppressed {
			next.resolve(now)
			changed = true
		}
		if changed {
			out = append(out, next)
		}
	}
	return out
}

// resolve records the finding resolved at t.
func (f *Finding) resolve(t time.Time) {
	t = t.UTC()
	f.Status = Resolved
	f.ResolvedAt = &t
	f.History = append(f.History, Transition{At: t, Status: Resolved, Reason: "condition cleared"})
}

// expire ends a suppression whose time has come, reporting whether it did.
func (f *Finding) expire(now time.Time) bool {
	if f.Status != Suppressed || f.Suppression == nil || f.Suppression.Until == nil || now.Before(*f.Suppression.Until) {
		return false
	}
	f.Status = Open
	if f.Acknowledged != nil {
		f.Status = Acknowledged
	}
	f.History = append(f.History, Transition{At: *f.Suppression.Until, Status: f.Status, Reason: "suppression expired"})
	return true
}

// ErrTransition is returned for a lifecycle change a finding's status does not allow.
var ErrTransition = errors.New("finding: transition not allowed")

// ErrInvalid is returned for a lifecycle change asked with bad arguments (no reason, an end in
// the past).
var ErrInvalid = errors.New("finding: invalid change")

// Acknowledge records that by has seen an open finding and is acting on it.
func (f *Finding) Acknowledge(by, reason string, now time.Time) error {
	if f.Status != Open {
		return fmt.Errorf("%w: %s is %s, only an open finding can be acknowledged", ErrTransition, f.ID, f.Status)
	}
	now = now.UTC()
	f.Status = Acknowledged
	f.Acknowledged = &Note{By: by, At: now, Reason: reason}
	f.History = append(f.History, Transition{At: now, Status: Acknowledged, By: by, Reason: reason})
	return nil
}

// Suppress hides a finding that is not resolved until until (forever when nil), for reason.
func (f *Finding) Suppress(by, reason string, until *time.Time, now time.Time) error {
	if f.Status == Resolved {
		return fmt.Errorf("%w: %s is resolved", ErrTransition, f.ID)
	}
	if reason == "" {
		return fmt.Errorf("%w: a suppression needs a reason", ErrInvalid)
	}
	now = now.UTC()
	if until != nil && !until.After(now) {
		return fmt.Errorf("%w: a suppression must end after now (%s), not at %s", ErrInvalid, now.Format(time.RFC3339), until.UTC().Format(time.RFC3339))
	}
	f.Status = Suppressed
	f.Suppression = &Note{By: by, At: now, Reason: reason, Until: until}
	f.History = append(f.History, Transition{At: now, Status: Suppressed, By: by, Reason: reason})
	return nil
}
