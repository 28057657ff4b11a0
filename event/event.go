// Package event is whocould's event model: the types of DESIGN.md §2, carried as CloudEvents 1.0,
// and the rules every part of the product uses to name things (ids, action patterns, resources)
// and to order events in event time.
//
// An Event is immutable once built. Events are identified by (Source, ID): the same pair twice is
// the same event, whatever its content.
package event

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"time"
)

// Type is an event type of DESIGN.md §2.
type Type string

// The event types.
const (
	PrincipalCreated  Type = "principal.created"
	PrincipalUpdated  Type = "principal.updated"
	PrincipalDisabled Type = "principal.disabled"
	PrincipalEnabled  Type = "principal.enabled"
	PrincipalDeleted  Type = "principal.deleted"

	GroupCreated Type = "group.created"
	GroupDeleted Type = "group.deleted"

	MembershipAdded   Type = "membership.added"
	MembershipRemoved Type = "membership.removed"

	RoleCreated           Type = "role.created"
	RoleDeleted           Type = "role.deleted"
	RolePermissionAdded   Type = "role.permission.added"
	RolePermissionRemoved Type = "role.permission.removed"
	RoleIncludeAdded      Type = "role.include.added"
	RoleIncludeRemoved    Type = "role.include.removed"

	GrantAdded   Type = "grant.added"
	GrantRemoved Type = "grant.removed"

	Decision Type = "decision"

	ApprovalRequested Type = "approval.requested"
	ApprovalGranted   Type = "approval.granted"
	ApprovalRejected  Type = "approval.rejected"
)

// Types lists every event type, in the order of DESIGN.md §2.
var Types = []Type{
	PrincipalCreated, PrincipalUpdated, PrincipalDisabled, PrincipalEnabled, PrincipalDeleted,
	GroupCreated, GroupDeleted,
	MembershipAdded, MembershipRemoved,
	RoleCreated, RoleDeleted, RolePermissionAdded, RolePermissionRemoved, RoleIncludeAdded, RoleIncludeRemoved,
	GrantAdded, GrantRemoved,
	Decision,
	ApprovalRequested, ApprovalGranted, ApprovalRejected,
}

// Known reports whether t is one of the event types.
func (t Type) Known() bool {
	for _, k := range Types {
		if k == t {
			return true
		}
	}
	return false
}

// IsChange reports whether events of this type change the permission map (everything but
// decisions and approvals).
func (t Type) IsChange() bool {
	switch t {
	case Decision, ApprovalRequested, ApprovalGranted, ApprovalRejected:
		return false
	}
	return t.Known()
}

// DefaultTenant is the tenant of an event that names none.
const DefaultTenant = "default"

// Effects of a decision.
const (
	Allow = "allow"
	Deny  = "deny"
)

// Data is the payload of every event type: one flat struct, each type using the fields DESIGN.md
// §2 gives it (Validate checks which). Actor, Approval and Tenant may come with any change event.
type Data struct {
	Principal  string            `json:"principal,omitempty"`
	Attributes map[string]string `json:"attributes,omitempty"`
	Group      string            `json:"group,omitempty"`
	Member     string            `json:"member,omitempty"`
	Role       string            `json:"role,omitempty"`
	Action     string            `json:"action,omitempty"`
	Includes   string            `json:"includes,omitempty"`
	Subject    string            `json:"subject,omitempty"`
	Resource   string            `json:"resource,omitempty"`
	ExpiresAt  *time.Time        `json:"expires_at,omitempty"`

	Effect string `json:"effect,omitempty"`
	Reason string `json:"reason,omitempty"`
	Policy string `json:"policy,omitempty"`
	// Request is the decision's request id, or the approval request an approval event is about.
	Request string `json:"request,omitempty"`

	Requester string          `json:"requester,omitempty"`
	Approver  string          `json:"approver,omitempty"`
	Change    json.RawMessage `json:"change,omitempty"`

	Actor    string `json:"actor,omitempty"`
	Approval string `json:"approval,omitempty"`
	Tenant   string `json:"tenant,omitempty"`
}

// Event is one whocould event.
type Event struct {
	ID     string
	Source string
	Type   Type
	// Time is event time: when the change happened at its source.
	Time time.Time
	Data Data
}

// TenantOrDefault is the event's tenant, DefaultTenant when it names none.
func (e *Event) TenantOrDefault() string {
	if e.Data.Tenant == "" {
		return DefaultTenant
	}
	return e.Data.Tenant
}

// Key is the idempotency key of an event: a digest of (source, id).
type Key [16]byte

// KeyOf is the idempotency key of (source, id).
func KeyOf(source, id string) Key {
	h := sha256.New()
	h.Write([]byte(source))
	h.Write([]byte{0})
	h.Write([]byte(id))
	var sum [32]byte
	var k Key
	copy(k[:], h.Sum(sum[:0]))
	return k
}

// Key is the event's idempotency key.
func (e *Event) Key() Key { return KeyOf(e.Source, e.ID) }

// Order is the position of an event in event time: events apply in order of Time, and events at
// the same instant in order of Tie, a digest of (source, id). The order is a function of the
// event alone, so a projection is the same whatever order its events were received in.
type Order struct {
	Time int64 // Unix microseconds
	Tie  uint64
}

// OrderOf is the event-time order of e.
func (e *Event) OrderOf() Order {
	k := e.Key()
	return Order{Time: Micros(e.Time), Tie: binary.BigEndian.Uint64(k[:8])}
}

// Less orders events in event time.
func (o Order) Less(p Order) bool {
	if o.Time != p.Time {
		return o.Time < p.Time
	}
	return o.Tie < p.Tie
}

// Micros is t in Unix microseconds, the resolution of every stored time.
func Micros(t time.Time) int64 { return t.UnixMicro() }

// FromMicros is the UTC time of Unix microseconds us.
func FromMicros(us int64) time.Time { return time.UnixMicro(us).UTC() }

// Record is an event as the log holds it.
type Record struct {
	Event
	// Position is the event's place in the log: 1 for the first event, strictly increasing.
	Position uint64
	// Recorded is when whocould stored the event (non-decreasing along the log).
	Recorded time.Time
}
