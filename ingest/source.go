package ingest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/whocould/whocould/event"
)

// Message is one message a producer sent through a broker: a CloudEvent (structured JSON), a
// JSON array of them or JSON lines.
type Message struct {
	Data []byte
	// Source names the channel it came by, for dead letters, metrics and logs:
	// "nats:whocould.in.changes.okta", "kafka:whocould-changes".
	Source string
	// Where is its place in that channel: "stream sequence 12", "partition 3 offset 881".
	Where string
}

// Handler takes one batch of messages. When it returns nil, every event of the batch is durable
// in the log or in the dead letters, and the source may acknowledge the batch to its broker.
type Handler func(ctx context.Context, batch []Message) error

// Source delivers the messages producers publish to a broker (NATS JetStream subjects, Kafka
// topics) in batches.
//
// Contract, checked for every implementation by the conformance suite (ingest/sourcetest):
//   - Run calls handle with one batch at a time, never concurrently, keeping the order in which
//     the broker holds messages (per subject, per partition);
//   - a batch is acknowledged to the broker (acked, offsets committed) only after handle
//     returned nil for it, so a crash or a failed handle means the batch is delivered again, to
//     this Run or the next one: at-least-once, made exactly-once by the log's deduplication;
//   - when handle returns an error, Run stops without acknowledging that batch and returns the
//     error (wrapped); the caller decides whether to run again;
//   - Run returns nil once ctx ends, after the batch in hand (if any) was handled and
//     acknowledged or abandoned;
//   - a broker that goes away and comes back is reconnected to, not an error.
type Source interface {
	// Name is a short label for metrics and logs ("nats", "kafka").
	Name() string
	Run(ctx context.Context, handle Handler) error
}

// Handle is the Handler that feeds sources into the log: it decodes every message (one event,
// an array or lines), dead-letters what does not decode or validate, and appends the rest.
// It returns an error only when events could not be made durable (the log or the dead letters
// failed): the batch must then be delivered again.
func (in *Ingester) Handle(ctx context.Context, batch []Message) error {
	_, err := in.HandleResult(ctx, batch)
	return err
}

// HandleResult is Handle, also returning what became of the events.
func (in *Ingester) HandleResult(ctx context.Context, batch []Message) (Result, error) {
	var (
		items  []Item
		res    = Result{Rejected: []Rejection{}}
		source string
	)
	flush := func() error {
		if len(items) == 0 {
			return nil
		}
		r, err := in.Ingest(ctx, source, items)
		res.Add(r)
		items = items[:0]
		return err
	}
	for _, m := range batch {
		if m.Source != source {
			if err := flush(); err != nil {
				return res, err
			}
			source = m.Source
		}
		var err error
		items, err = DecodeMessage(items, m)
		if err != nil {
			return res, err
		}
	}
	return res, flush()
}

// DecodeMessage appends the events of m to items: decoded ones, and bad ones with their error
// and raw bytes (for the dead letters). Only a failure to read is returned.
func DecodeMessage(items []Item, m Message) ([]Item, error) {
	// The common case, one event per message, without a streaming decoder; anything else, or
	// anything wrong, goes the long way, which says exactly where and what.
	if b := bytes.TrimSpace(m.Data); len(b) > 0 && b[0] == '{' {
		if e, err := event.Unmarshal(b); err == nil {
			return append(items, Item{Event: e, Raw: m.Data, Where: m.Where}), nil
		}
	}
	name := m.Source
	if m.Where != "" {
		name += " " + m.Where
	}
	dec := event.NewDecoder(bytes.NewReader(m.Data), name)
	first := len(items)
	for n := 0; ; n++ {
		e, raw, err := dec.Next()
		if errors.Is(err, io.EOF) {
			switch {
			case n == 0: // an empty message is a bad message, not nothing
				items = append(items, Item{Raw: m.Data, Err: errors.New("empty message: no event"), Where: m.Where})
			case n > 1: // several events: number the first too
				items[first].Where = whereIn(m.Where, 0)
			}
			return items, nil
		}
		where := m.Where
		if n > 0 {
			where = whereIn(m.Where, n)
		}
		var de *event.DecodeError
		switch {
		case errors.As(err, &de):
			items = append(items, Item{Raw: raw, Err: de, Where: where, ID: de.ID})
		case err != nil:
			return items, fmt.Errorf("read %s: %w", name, err)
		default:
			items = append(items, Item{Event: e, Raw: raw, Where: where})
		}
	}
}

// whereIn is the place of the n-th event (from 0) of a message at where. The first event's
// place is where alone until a second event shows that the message holds several.
func whereIn(where string, n int) string {
	return strings.TrimSpace(fmt.Sprintf("%s item %d", where, n))
}
