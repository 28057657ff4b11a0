// Package natssource takes events from NATS JetStream subjects: producers publish CloudEvents
// to subjects of an inbox stream, and a durable pull consumer hands them to ingest, acknowledging
// each batch only once its events are durable in the log (or the dead letters).
package natssource

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/whocould/whocould/ingest"
	"github.com/whocould/whocould/internal/backoff"
)

// Config configures a source. The zero value (with a connection) reads the default inbox.
type Config struct {
	// Stream is the inbox stream (default "WHOCOULD_IN").
	Stream string
	// Subjects the stream holds, when the source creates it (default "whocould.in.>").
	Subjects []string
	// FilterSubject limits this source to some of the stream's subjects (default: all), so that
	// decisions ("whocould.in.decisions.>") and changes can have sources of their own.
	FilterSubject string
	// Consumer is the durable consumer's name (default "whocould-ingest"); every process with
	// the same name shares the work.
	Consumer string
	// CreateStream creates (or updates) the stream when it starts: file storage, work-queue
	// retention (a message is removed once acknowledged), MaxAge. Leave false when the stream is
	// managed elsewhere.
	CreateStream bool
	// MaxAge is how long an unacknowledged message is kept when CreateStream (default 7 days).
	MaxAge time.Duration
	// Batch is the most messages handed over at once (default 500).
	Batch int
	// MaxWait is how long a fetch waits for a full batch before handing over what it has
	// (default 50ms): the latency added when traffic is light.
	MaxWait time.Duration
	// AckWait is how long the server waits for an acknowledgement before redelivering
	// (default 1 minute).
	AckWait time.Duration
	Logger  *slog.Logger
}

func (c *Config) defaults() {
	if c.Stream == "" {
		c.Stream = "WHOCOULD_IN"
	}
	if len(c.Subjects) == 0 {
		c.Subjects = []string{"whocould.in.>"}
	}
	if c.Consumer == "" {
		c.Consumer = "whocould-ingest"
	}
	if c.MaxAge <= 0 {
		c.MaxAge = 7 * 24 * time.Hour
	}
	if c.Batch <= 0 {
		c.Batch = 500
	}
	if c.MaxWait <= 0 {
		c.MaxWait = 50 * time.Millisecond
	}
	if c.AckWait <= 0 {
		c.AckWait = time.Minute
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Validate reports a configuration that cannot work, naming the field.
func (c Config) Validate() error {
	for _, s := range c.Subjects {
		if s == "" || strings.ContainsAny(s, " \t\r\n") {
			return fmt.Errorf("nats source: subjects: %q is not a subject", s)
		}
	}
	if strings.ContainsAny(c.FilterSubject, " \t\r\n") {
		return fmt.Errorf("nats source: filter subject: %q is not a subject", c.FilterSubject)
	}
	if c.Batch > 10000 {
		return fmt.Errorf("nats source: batch %d is over 10000", c.Batch)
	}
	return nil
}

// Source is a JetStream inbox consumer.
type Source struct {
	nc  *nats.Conn
	cfg Config
}

var _ ingest.Source = (*Source)(nil)

// New returns a source reading through nc (which belongs to the caller).
func New(nc *nats.Conn, cfg Config) (*Source, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.defaults()
	return &Source{nc: nc, cfg: cfg}, nil
}

// Name implements ingest.Source.
func (s *Source) Name() string { return "nats" }

// consumer creates or updates the stream (if asked) and the durable consumer.
func (s *Source) consumer(ctx context.Context, js jetstream.JetStream) (jetstream.Consumer, error) {
	if s.cfg.CreateStream {
		_, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
			Name:        s.cfg.Stream,
			Description: "whocould inbox: events from producers, removed once ingested",
			Subjects:    s.cfg.Subjects,
			Storage:     jetstream.FileStorage,
			Retention:   jetstream.WorkQueuePolicy,
			MaxAge:      s.cfg.MaxAge,
		})
		if err != nil {
			return nil, fmt.Errorf("create stream %s: %w", s.cfg.Stream, err)
		}
	}
	c, err := js.CreateOrUpdateConsumer(ctx, s.cfg.Stream, jetstream.ConsumerConfig{
		Durable:       s.cfg.Consumer,
		Description:   "whocould ingest",
		FilterSubject: s.cfg.FilterSubject,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       s.cfg.AckWait,
		MaxAckPending: 4 * s.cfg.Batch,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return nil, fmt.Errorf("consumer %s on %s: %w", s.cfg.Consumer, s.cfg.Stream, err)
	}
	return c, nil
}

// Run implements ingest.Source.
func (s *Source) Run(ctx context.Context, handle ingest.Handler) error {
	js, err := jetstream.New(s.nc)
	if err != nil {
		return fmt.Errorf("nats source: %w", err)
	}
	var cons jetstream.Consumer
	var backoff backoff.Backoff
	for cons == nil {
		if cons, err = s.consumer(ctx, js); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			s.cfg.Logger.Warn("nats source: cannot reach the inbox, retrying", "stream", s.cfg.Stream, "error", err)
			if !backoff.Wait(ctx) {
				return nil
			}
		}
	}
	backoff.Reset()
	// A pull subscription that keeps up to two batches coming while one is handled.
	it, err := cons.Messages(jetstream.PullMaxMessages(2 * s.cfg.Batch))
	if err != nil {
		return fmt.Errorf("nats source %s: consume: %w", s.cfg.Stream, err)
	}
	// On the way out, what was prefetched but not handled goes back at once (a NAK), instead
	// of waiting out AckWait.
	defer func() { release(it) }()
	batch := make([]ingest.Message, 0, s.cfg.Batch)
	msgs := make([]jetstream.Msg, 0, s.cfg.Batch)
	add := func(m jetstream.Msg) {
		where := "stream " + s.cfg.Stream
		if md, err := m.Metadata(); err == nil {
			where = fmt.Sprintf("stream %s sequence %d", s.cfg.Stream, md.Sequence.Stream)
		}
		batch = append(batch, ingest.Message{Data: m.Data(), Source: "nats:" + m.Subject(), Where: where})
		msgs = append(msgs, m)
	}
	for ctx.Err() == nil {
		batch, msgs = batch[:0], msgs[:0]
		m, err := it.Next(jetstream.NextContext(ctx))
		if err == nil {
			// The first message opens a batch; it closes when full or MaxWait later.
			add(m)
			bctx, cancel := context.WithTimeout(ctx, s.cfg.MaxWait)
			for len(msgs) < s.cfg.Batch {
				m, err = it.Next(jetstream.NextContext(bctx))
				if err != nil {
					break
				}
				add(m)
			}
			cancel()
			if bctx.Err() != nil && ctx.Err() == nil {
				err = nil // the batch's time is up: not an error
			}
		}
		if len(msgs) > 0 {
			if herr := handle(ctx, batch); herr != nil {
				for _, m := range msgs {
					_ = m.Nak() // redeliver now, not after AckWait
				}
				return fmt.Errorf("nats source %s: %w", s.cfg.Stream, herr)
			}
			for _, m := range msgs {
				// A lost ack means a redelivery, which the log's deduplication absorbs.
				if aerr := m.Ack(); aerr != nil {
					s.cfg.Logger.Warn("nats source: acknowledge", "error", aerr)
				}
			}
			backoff.Reset()
		}
		if err != nil && ctx.Err() == nil {
			s.cfg.Logger.Warn("nats source: consuming failed, retrying", "stream", s.cfg.Stream, "error", err)
			if !backoff.Wait(ctx) {
				return nil
			}
			// After a server restart the consumer may be gone (memory storage, a new cluster).
			if c, cerr := s.consumer(ctx, js); cerr == nil {
				cons = c
			}
			if next, cerr := cons.Messages(jetstream.PullMaxMessages(2 * s.cfg.Batch)); cerr == nil {
				release(it)
				it = next
			}
		}
	}
	return nil
}

// release stops it and gives back (NAK) the messages it had prefetched.
func release(it jetstream.MessagesContext) {
	it.Drain()
	for {
		m, err := it.Next(jetstream.NextMaxWait(time.Second))
		if err != nil {
			return
		}
		_ = m.Nak()
	}
}
