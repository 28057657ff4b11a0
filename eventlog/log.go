// Package eventlog is whocould's event log (DESIGN.md §3): the durable, ordered, replayable source
// of truth between ingest and the projector. It stores opaque bytes; other packages encode events.
//
// The log is a sequence of messages numbered by Position (1 for the first, strictly increasing,
// never reused). Appends are deduplicated for ever by event.Key, not only within a time window.
// The JetStream implementation (Open) runs on an external NATS server or on the embedded one
// (StartEmbedded).
package eventlog

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/whocould/whocould/event"
)

// Kinds of entries. A kind is the last token of a message's subject, so change events (which need
// one total order) and decisions (high volume) can later be consumed or stored apart.
const (
	KindChange   = "change"
	KindDecision = "decision"
)

// Entry is one message to append.
type Entry struct {
	// Key identifies the entry for deduplication: an entry whose Key was ever appended before is
	// not appended again.
	Key event.Key
	// Kind is the subject suffix: KindChange or KindDecision (any single NATS subject token is
	// accepted: no '.', '*', '>' or white space).
	Kind string
	// Data is the payload. Append does not retain it after returning.
	Data []byte
}

// Appended is the outcome of one Entry.
type Appended struct {
	// Position is the entry's position in the log; for a duplicate, the position of the entry
	// first appended with that Key.
	Position uint64
	// Duplicate is true when an entry with the same Key was appended before (by an earlier call,
	// or earlier in the same call), in which case nothing was appended.
	Duplicate bool
}

// Message is one message read from the log.
type Message struct {
	Position uint64
	// Recorded is when the log stored the message: the server's store time, clamped so that it
	// never decreases along the positions one Read or Follow delivers (each message's Recorded is
	// at least the previous one's, and the first at least the store time of position from-1).
	// Reads from different positions agree unless the server's wall clock stepped back.
	Recorded time.Time
	Kind     string
	// Data is the payload. It belongs to the callee: the log never reuses or modifies it.
	Data []byte
}

// Log is the event log.
//
// All methods are safe for concurrent use. Appends are serialised (one Append runs at a time per
// Log); reads run concurrently with each other and with appends.
type Log interface {
	// Append makes entries durable in the given order and returns, per entry (same index), its
	// position, or Duplicate=true with the original position when an entry with the same Key was
	// ever appended before — for ever, not only within the server's duplicate window, and also for
	// duplicates inside one call (the first occurrence is appended, later ones are duplicates).
	//
	// When Append returns nil every entry is in the log: acknowledged by the server, so it
	// survives a crash of this process or of the server process (see EmbeddedConfig.SyncAlways
	// for power loss). When it returns an error, any prefix of the new entries may have been
	// appended, and the result is nil. Append is idempotent: retrying the same entries after an
	// error appends each missing one exactly once and reports the others as duplicates.
	//
	// Errors: ErrClosed, ErrReadOnly, ErrInvalidEntry (permanent, nothing appended), ErrConflict
	// (another writer appended at the same time; transient), and wrapped NATS errors, classified
	// by IsTransient.
	Append(ctx context.Context, entries []Entry) ([]Appended, error)

	// Read calls fn for every message with position >= from (0 is read as 1), in position order,
	// up to the last position as of the call, then returns nil. An error from fn stops the read
	// and is returned as it is (unwrapped). fn is called on the caller's goroutine, one message
	// at a time.
	Read(ctx context.Context, from uint64, fn func(Message) error) error

	// Follow is like Read but does not stop at the end: it waits for new messages until ctx ends
	// (returning ctx.Err()), fn fails (returning its error) or the log fails.
	Follow(ctx context.Context, from uint64, fn func(Message) error) error

	// Last is the position of the last message, 0 when the log is empty.
	Last(ctx context.Context) (uint64, error)

	// Close releases the log (for a writer: its lock and index file) after any running Append has
	// returned; calls after Close return ErrClosed, and running reads stop with ErrClosed. It does
	// not close the NATS connection, which belongs to the caller. Close is idempotent.
	Close() error
}

var _ Log = (*JetStreamLog)(nil)

// Errors.
var (
	// ErrClosed is returned by calls on a closed Log.
	ErrClosed = errors.New("eventlog: closed")
	// ErrReadOnly is returned by Append on a log opened with Config.ReadOnly.
	ErrReadOnly = errors.New("eventlog: read-only")
	// ErrInvalidEntry is returned for an entry that can never be appended (bad Kind).
	ErrInvalidEntry = errors.New("eventlog: invalid entry")
	// ErrLocked is returned by Open when another process (or Log) has the log open for writing.
	ErrLocked = errors.New("eventlog: locked by another writer")
	// ErrConflict is returned by Append when another writer appended to the stream while this
	// one did: the log has caught up with the stream, and a retry is safe and exact.
	ErrConflict = errors.New("eventlog: concurrent append by another writer")
)

// IsTransient reports whether err is worth retrying with back-off: time-outs, no responders,
// a disconnected or reconnecting connection, JetStream temporarily unavailable (API code 503),
// ErrConflict. Everything else — ErrClosed, ErrInvalidEntry, ErrReadOnly, ErrLocked, rejected
// messages (e.g. too large), disk errors, context cancellation — is permanent: retrying the same
// call will fail the same way.
func IsTransient(err error) bool {
	if err == nil {
		return false
	}
	for _, p := range []error{ErrClosed, ErrReadOnly, ErrInvalidEntry, ErrLocked, context.Canceled} {
		if errors.Is(err, p) {
			return false
		}
	}
	for _, t := range []error{
		ErrConflict, context.DeadlineExceeded,
		nats.ErrTimeout, nats.ErrNoResponders, nats.ErrDisconnected, nats.ErrConnectionReconnecting,
		nats.ErrStaleConnection, nats.ErrNoServers,
		jetstream.ErrNoStreamResponse, jetstream.ErrAsyncPublishTimeout, jetstream.ErrTooManyStalledMsgs,
		jetstream.ErrNoHeartbeat, jetstream.ErrServerShutdown, jetstream.ErrJetStreamPublisherClosed,
	} {
		if errors.Is(err, t) {
			return true
		}
	}
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && apiErr.Code == 503 {
		return true
	}
	return false
}
