// Package ingest takes events from every source (files, HTTP, NATS, Kafka), validates them,
// appends the good ones to the event log (deduplicated by source and id) and dead-letters the
// rest with their reason. A batch with bad events still lands its good ones.
package ingest

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	"github.com/whocould/whocould/deadletter"
	"github.com/whocould/whocould/event"
	"github.com/whocould/whocould/eventlog"
)

// Appender is the log as ingest writes it.
type Appender interface {
	Append(ctx context.Context, entries []eventlog.Entry) ([]eventlog.Appended, error)
}

// DeadLetters keeps what could not be taken.
type DeadLetters interface {
	Add(ctx context.Context, letters ...deadletter.Letter) error
}

// Item is one event as a source delivered it: decoded (Err nil) or not.
type Item struct {
	Event event.Event
	Raw   []byte
	// Err is why the item could not be decoded or validated (nil: it could).
	Err error
	// Where is its place in the source (line, index), for messages and dead letters.
	Where string
	// ID is the event id when known, even for a bad item.
	ID string
}

// Rejection reports one bad item.
type Rejection struct {
	Index int    `json:"index"`
	Where string `json:"where,omitempty"`
	ID    string `json:"id,omitempty"`
	Error string `json:"error"`
}

// Result is what became of a batch.
type Result struct {
	Accepted   int         `json:"accepted"`
	Duplicates int         `json:"duplicates"`
	Rejected   []Rejection `json:"rejected"`
	// Position is the log position of the last accepted event (0 when none).
	Position uint64 `json:"position"`
}

// Add adds another batch's result to r.
func (r *Result) Add(o Result) {
	r.Accepted += o.Accepted
	r.Duplicates += o.Duplicates
	r.Rejected = append(r.Rejected, o.Rejected...)
	r.Position = max(r.Position, o.Position)
}

// Ingester validates and appends.
type Ingester struct {
	log     Appender
	dead    DeadLetters
	l       *slog.Logger
	metrics *Metrics // nil: not counted
	// replaying is held while dead letters are listed and replayed, one replay at a time.
	replaying sync.Mutex
}

// New returns an ingester appending to log and dead-lettering to dead.
func New(log Appender, dead DeadLetters, logger *slog.Logger) *Ingester {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Ingester{log: log, dead: dead, l: logger}
}

// Kind is the log kind (subject suffix) of an event: decisions travel apart from changes.
func Kind(t event.Type) string {
	if t == event.Decision {
		return "decision"
	}
	return "change"
}

// Ingest validates items, dead-letters the bad ones and appends the good ones in order. When
// it returns without error, every accepted event is durable in the log and every rejected one
// in the dead letters. source names where the batch came from (a file name, "http").
func (in *Ingester) Ingest(ctx context.Context, source string, items []Item) (Result, error) {
	res, _, err := in.ingest(ctx, source, items)
	return res, err
}

// check validates a decoded item and encodes its event for the log.
func check(it *Item) ([]byte, error) {
	if it.Err != nil {
		return nil, it.Err
	}
	if err := event.Validate(&it.Event); err != nil {
		return nil, err
	}
	return event.Marshal(&it.Event)
}

// ingest is Ingest, also returning the log position of the last event appended or found
// already there (a duplicate), 0 when none.
func (in *Ingester) ingest(ctx context.Context, source string, items []Item) (Result, uint64, error) {
	res := Result{Rejected: []Rejection{}}
	var (
		entries []eventlog.Entry
		types   []event.Type // of entries
		letters []deadletter.Letter
		counts  tally // nil: metrics off
	)
	if in.metrics != nil {
		counts = tally{}
		// Counted however the batch ends, as far as it got: its bad events, and the good ones
		// once appended.
		defer in.metrics.add(source, counts)
	}
	for i := range items {
		it := &items[i]
		data, err := check(it)
		if err != nil {
			id := it.ID
			if id == "" {
				id = it.Event.ID
			}
			res.Rejected = append(res.Rejected, Rejection{Index: i, Where: it.Where, ID: id, Error: err.Error()})
			counts.count(it.Event.Type, "dead_lettered")
			letters = append(letters, deadletter.NewLetter(source, it.Where, id, it.Raw, err))
			continue
		}
		entries = append(entries, eventlog.Entry{Key: it.Event.Key(), Kind: Kind(it.Event.Type), Data: data})
		types = append(types, it.Event.Type)
	}
	if in.dead != nil && len(letters) > 0 {
		if err := in.dead.Add(ctx, letters...); err != nil {
			return res, 0, fmt.Errorf("ingest %s: %w", source, err)
		}
	}
	if len(entries) == 0 {
		return res, 0, nil
	}
	app, err := in.log.Append(ctx, entries)
	if err != nil {
		return res, 0, fmt.Errorf("ingest %s: %w", source, err)
	}
	var last uint64
	for i, a := range app {
		last = max(last, a.Position)
		if a.Duplicate {
			res.Duplicates++
			counts.count(types[i], "duplicate")
			continue
		}
		counts.count(types[i], "accepted")
		res.Accepted++
		res.Position = max(res.Position, a.Position)
	}
	return res, last, nil
}
