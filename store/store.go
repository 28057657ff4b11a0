// Package store defines where the projection lands and where every reader (API, CLI,
// analyzers, reports) finds it. Backends: store/embedded (one machine, no server) and, later,
// ClickHouse; both are run against one conformance suite.
package store

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/whocould/whocould/access"
	"github.com/whocould/whocould/event"
	"github.com/whocould/whocould/finding"
)

// ErrNotFound is returned when a named thing does not exist.
var ErrNotFound = errors.New("not found")

// Writer is the projector's side of a store.
type Writer interface {
	// Apply applies records in log order. Records at or below Position are skipped, so replaying
	// a stretch of the log twice changes nothing. When Apply returns, the records are visible to
	// readers but not yet durable: see Checkpoint.
	Apply(ctx context.Context, recs []event.Record) error
	// Checkpoint makes everything applied so far durable. After a crash the store comes back
	// as of its last checkpoint, and the projector replays the log from Position()+1.
	Checkpoint(ctx context.Context) error
}

// Reader is everyone else's side of a store. Every read is safe for concurrent use with Apply.
type Reader interface {
	access.Querier
	// Position is the log position up to which every record has been applied.
	Position(ctx context.Context) (uint64, error)
	// Decisions calls fn for each decision matching q, in event-time order.
	Decisions(ctx context.Context, q DecisionQuery, fn func(Decision) error) error
	// Usage calls fn with the use of each (principal, action, resource) matching q, in that
	// order: when it was first and last used and how often. An empty q.Effect counts allowed
	// decisions; q.From and q.To bound the decisions counted. The uses stream: a tenant's run to
	// millions. When fn returns an error Usage stops and returns it.
	Usage(ctx context.Context, q DecisionQuery, fn func(Use) error) error
	// Events calls fn with each event of tenant that is not a decision (the change and approval
	// events, with their actors and approvals), in log order, up to Position.
	Events(ctx context.Context, tenant string, fn func(event.Record) error) error
	// Findings lists the analyzers' findings of tenant, sorted by id.
	Findings(ctx context.Context, tenant string) ([]finding.Finding, error)
	// Approval is the approval request named request, or ErrNotFound.
	Approval(ctx context.Context, tenant, request string) (Approval, error)
	// Tenants lists the tenants that have any event.
	Tenants(ctx context.Context) ([]string, error)
}

// FindingWriter records the analyzers' findings.
type FindingWriter interface {
	// PutFindings stores findings of tenant, replacing those with the same id. It is durable
	// when it returns.
	PutFindings(ctx context.Context, tenant string, fs []finding.Finding) error
}

// Store is both sides.
type Store interface {
	Reader
	Writer
	FindingWriter
	Close() error
}

// DecisionQuery selects decisions: every set field must match; the zero value selects all of
// the default tenant.
type DecisionQuery struct {
	Tenant    string
	Principal string
	// Principals, when not empty, selects the decisions of any of them (and of Principal too,
	// when both are set): a rule reads a batch of principals' decisions at once.
	Principals []string
	// Keys, when not empty, selects the decisions of these (principal, action, resource) only
	// (and of the other filters too): a rule reads the few keys it must count among its
	// principals' thousands.
	Keys     []UseKey
	Action   string
	Resource string
	Effect   string
	// From and To bound event time, [From, To); zero means unbounded.
	From, To time.Time
}

// UseKey is one principal's (action, resource).
type UseKey struct{ Principal, Action, Resource string }

// Decision is an enforcement point's answer, as recorded.
type Decision struct {
	Tenant    string    `json:"tenant"`
	Principal string    `json:"principal"`
	Action    string    `json:"action"`
	Resource  string    `json:"resource"`
	Effect    string    `json:"effect"`
	Time      time.Time `json:"time"`
	Reason    string    `json:"reason,omitempty"`
	Policy    string    `json:"policy,omitempty"`
	Request   string    `json:"request,omitempty"`
	Source    string    `json:"source"`
	ID        string    `json:"id"`
	Position  uint64    `json:"position"`
}

// Use is the allowed use of one (principal, action, resource).
type Use struct {
	Principal string    `json:"principal"`
	Action    string    `json:"action"`
	Resource  string    `json:"resource"`
	First     time.Time `json:"first"`
	Last      time.Time `json:"last"`
	Count     int64     `json:"count"`
}

// Approval is an approval request and the answers to it.
type Approval struct {
	Tenant    string           `json:"tenant"`
	Request   string           `json:"request"`
	Requester string           `json:"requester,omitempty"`
	Requested *time.Time       `json:"requested,omitempty"`
	Change    json.RawMessage  `json:"change,omitempty"`
	Reason    string           `json:"reason,omitempty"`
	Answers   []ApprovalAnswer `json:"answers"`
}

// ApprovalAnswer is one approval.granted or approval.rejected.
type ApprovalAnswer struct {
	Approver string    `json:"approver"`
	Granted  bool      `json:"granted"`
	Reason   string    `json:"reason,omitempty"`
	Time     time.Time `json:"time"`
}
