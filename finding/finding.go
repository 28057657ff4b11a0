// Package finding is what the analyzers report: a condition found in the map, its evidence, and
// its lifecycle (open → acknowledged → resolved, or suppressed until a time). A finding's id is
// a function of its tenant, rule and the condition's key, so the same condition is the same
// finding on every run, on every backend, and after a rebuild.
package finding

import (
	"crypto/sha256"
	"encoding/hex"
	"time"

	"github.com/whocould/whocould/access"
)

// The rules of DESIGN.md §5, by the names CONTRACT.md gives them.
const (
	UnusedGrant               = "unused-grant"
	PrivilegeCreep            = "privilege-creep"
	AccessAfterDeprovisioning = "access-after-deprovisioning"
	UnauthorisedChange        = "unauthorised-change"
	SelfService               = "self-service"
	MissingApproval           = "missing-approval"
	SeparationOfDuties        = "separation-of-duties"
	Drift                     = "drift"
	ShadowAccess              = "shadow-access"
)

// Rules lists every rule name, in the order the analyzers run them.
var Rules = []string{UnusedGrant, PrivilegeCreep, AccessAfterDeprovisioning, UnauthorisedChange, SelfService,
	MissingApproval, SeparationOfDuties, Drift, ShadowAccess}

// Severities, from the least to the most urgent.
const (
	Low      = "low"
	Medium   = "medium"
	High     = "high"
	Critical = "critical"
)

// Statuses.
const (
	Open         = "open"
	Acknowledged = "acknowledged"
	Resolved     = "resolved"
	Suppressed   = "suppressed"
)

// Finding is one condition a rule found. The fields up to Evidence are CONTRACT.md's.
type Finding struct {
	ID        string `json:"id"`
	Rule      string `json:"rule"`
	Severity  string `json:"severity"`
	Status    string `json:"status"`
	Principal string `json:"principal,omitempty"`
	Action    string `json:"action,omitempty"`
	Resource  string `json:"resource,omitempty"`
	Summary   string `json:"summary"`
	// Since is when the condition began (in event time).
	Since    time.Time  `json:"since"`
	Evidence []Evidence `json:"evidence"`

	Tenant string `json:"tenant"`
	// Kind tells findings of one rule apart (for example "growth", "kept-after-move" and
	// "peer-outlier" for privilege creep).
	Kind string `json:"kind,omitempty"`
	// Key is the condition's identity within its rule and tenant; ID is derived from it.
	Key string `json:"key"`
	// Ended is when the condition stopped holding, for a condition found in the past (a
	// separation-of-duties violation that ended, a leak fully revoked since): such a
	// finding is recorded resolved at Ended.
	Ended *time.Time `json:"ended,omitempty"`
	// Details are the rule's measurements (counts, durations, the smaller role that would do).
	Details map[string]any `json:"details,omitempty"`

	FirstSeen    time.Time  `json:"first_seen"`
	LastSeen     time.Time  `json:"last_seen"`
	ResolvedAt   *time.Time `json:"resolved_at,omitempty"`
	Acknowledged *Note      `json:"acknowledged,omitempty"`
	Suppression  *Note      `json:"suppressed,omitempty"`
	// History is the finding's lifecycle, oldest first.
	History []Transition `json:"history,omitempty"`
}

// Note is who acknowledged or suppressed a finding, when and why; Until ends a suppression.
type Note struct {
	By     string     `json:"by"`
	At     time.Time  `json:"at"`
	Reason string     `json:"reason,omitempty"`
	Until  *time.Time `json:"until,omitempty"`
}

// Transition is one change of a finding's status.
type Transition struct {
	At     time.Time `json:"at"`
	Status string    `json:"status"`
	By     string    `json:"by,omitempty"`
	Reason string    `json:"reason,omitempty"`
}

// Evidence is one fact that proves a finding: an event, a decision, a path, an approval or an
// interval of time. Text says it in words; the other fields say it for a program.
type Evidence struct {
	Kind  string       `json:"kind"` // event, decision, path, approval, interval, baseline, measure
	Text  string       `json:"text"`
	Time  *time.Time   `json:"time,omitempty"`
	Until *time.Time   `json:"until,omitempty"`
	Event *EventRef    `json:"event,omitempty"`
	Path  *access.Path `json:"path,omitempty"`
}

// EventRef names an event of the log.
type EventRef struct {
	Source   string `json:"source"`
	ID       string `json:"id"`
	Type     string `json:"type"`
	Position uint64 `json:"position,omitempty"`
}

// IDOf is the id of the finding of rule about key in tenant: stable across runs, backends and
// rebuilds.
func IDOf(tenant, rule, key string) string {
	h := sha256.New()
	for _, s := range []string{tenant, rule, key} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	return "F" + hex.EncodeToString(h.Sum(nil)[:10])
}

// Time is t as a pointer, in UTC, for the optional times of Evidence and Finding.
func Time(t time.Time) *time.Time {
	t = t.UTC()
	return &t
}
