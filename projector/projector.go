// Package projector consumes the event log and applies it to a store, in log order, with
// checkpoints: killed at any moment and restarted, it resumes from the store's last
// checkpointed position and ends in the same state as an uninterrupted run.
package projector

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/whocould/whocould/event"
	"github.com/whocould/whocould/eventlog"
	"github.com/whocould/whocould/internal/backoff"
	"github.com/whocould/whocould/store"
)

// Source is the log as the projector reads it.
type Source interface {
	Read(ctx context.Context, from uint64, fn func(eventlog.Message) error) error
	Follow(ctx context.Context, from uint64, fn func(eventlog.Message) error) error
	Last(ctx context.Context) (uint64, error)
}

// Target is the store as the projector writes it.
type Target interface {
	store.Writer
	Position(ctx context.Context) (uint64, error)
}

// Rejects keeps log messages the projector cannot decode (written by an older or newer
// whocould, or damaged), so that nothing is silently lost.
type Rejects interface {
	Reject(ctx context.Context, m eventlog.Message, reason error) error
}

// Config tunes a projector.
type Config struct {
	// Batch is how many records are applied at once (default 1000).
	Batch int
	// CheckpointEvery is how many records may be applied between checkpoints while following
	// (default 100000); CheckpointInterval bounds the time between them (default 30 s).
	CheckpointEvery    int
	CheckpointInterval time.Duration
	// Progress, when set, is called after each batch with the position reached and the log's
	// last position when the run started.
	Progress func(done, last uint64)
	Logger   *slog.Logger
}

// Projector applies the log to a store.
type Projector struct {
	src     Source
	dst     Target
	rejects Rejects
	cfg     Config
	log     *slog.Logger

	position atomic.Uint64
	recorded atomic.Int64 // unix µs when the log recorded the last applied message
	rejected atomic.Int64
}

// New returns a projector from src to dst; rejects may be nil (undecodable messages are then
// logged and skipped).
func New(src Source, dst Target, rejects Rejects, cfg Config) *Projector {
	if cfg.Batch <= 0 {
		cfg.Batch = 1000
	}
	if cfg.CheckpointEvery <= 0 {
		cfg.CheckpointEvery = 100000
	}
	if cfg.CheckpointInterval <= 0 {
		cfg.CheckpointInterval = 30 * time.Second
	}
	l := cfg.Logger
	if l == nil {
		l = slog.New(slog.DiscardHandler)
	}
	return &Projector{src: src, dst: dst, rejects: rejects, cfg: cfg, log: l}
}

// Position is the last log position applied.
func (p *Projector) Position() uint64 { return p.position.Load() }

// Recorded is when the log recorded the last message applied (zero before any): how far
// behind the log the projection is in time, when it lags.
func (p *Projector) Recorded() time.Time {
	if us := p.recorded.Load(); us != 0 {
		return time.UnixMicro(us)
	}
	return time.Time{}
}

// Rejected counts the log messages that could not be decoded.
func (p *Projector) Rejected() int64 { return p.rejected.Load() }

// decoded is one log message decoded into a record, on the reading goroutine, so that decoding
// overlaps with applying.
type decoded struct {
	rec event.Record
	msg eventlog.Message // kept for the dead letter when err != nil
	err error
}

func decode(m eventlog.Message) decoded {
	e, err := event.Unmarshal(m.Data)
	if err != nil {
		// The position still counts as applied (an empty event): the store moves past it.
		return decoded{rec: event.Record{Position: m.Position, Recorded: m.Recorded}, msg: m, err: err}
	}
	return decoded{rec: event.Record{Event: e, Position: m.Position, Recorded: m.Recorded}}
}

// read runs read (a Read or Follow of the log) on a goroutine of its own, decoding each message
// and sending it on the returned channel; the error channel receives read's result once the
// last message was sent. Cancel ctx to stop it.
func read(ctx context.Context, buf int, read func(ctx context.Context, fn func(eventlog.Message) error) error) (<-chan decoded, <-chan error) {
	out := make(chan decoded, buf)
	errc := make(chan error, 1)
	go func() {
		errc <- read(ctx, func(m eventlog.Message) error {
			select {
			case out <- decode(m):
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
	}()
	return out, errc
}

// batcher applies decoded records in batches.
type batcher struct {
	p       *Projector
	recs    []event.Record
	applied int
}

func (b *batcher) add(ctx context.Context, d decoded) error {
	if d.err != nil {
		b.p.rejected.Add(1)
		b.p.log.Error("log message cannot be decoded", "position", d.msg.Position, "error", d.err)
		if b.p.rejects != nil {
			if rerr := b.p.rejects.Reject(ctx, d.msg, d.err); rerr != nil {
				return fmt.Errorf("dead-letter log position %d: %w", d.msg.Position, rerr)
			}
		}
	}
	b.recs = append(b.recs, d.rec)
	if len(b.recs) >= b.p.cfg.Batch {
		return b.flush(ctx)
	}
	return nil
}

func (b *batcher) flush(ctx context.Context) error {
	if len(b.recs) == 0 {
		return nil
	}
	if err := b.p.dst.Apply(ctx, b.recs); err != nil {
		return fmt.Errorf("apply up to log position %d: %w", b.recs[len(b.recs)-1].Position, err)
	}
	last := &b.recs[len(b.recs)-1]
	b.p.recorded.Store(last.Recorded.UnixMicro())
	b.p.position.Store(last.Position)
	b.applied += len(b.recs)
	b.recs = b.recs[:0]
	return nil
}

// CatchUp applies everything in the log after the store's position, then checkpoints. It
// returns how many records it applied.
func (p *Projector) CatchUp(ctx context.Context) (int, error) {
	from, err := p.dst.Position(ctx)
	if err != nil {
		return 0, fmt.Errorf("catch up: %w", err)
	}
	p.position.Store(from)
	last, err := p.src.Last(ctx)
	if err != nil {
		return 0, fmt.Errorf("catch up: %w", err)
	}
	if last <= from {
		return 0, nil
	}
	b := &batcher{p: p}
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	msgs, errc := read(rctx, p.cfg.Batch, func(ctx context.Context, fn func(eventlog.Message) error) error {
		return p.src.Read(ctx, from+1, fn)
	})
	err = func() error {
		for {
			select {
			case d := <-msgs:
				if err := b.add(ctx, d); err != nil {
					return err
				}
				if p.cfg.Progress != nil && len(b.recs) == 0 {
					p.cfg.Progress(d.rec.Position, last)
				}
			case err := <-errc:
				if err != nil {
					return err
				}
				for { // what was sent before the end
					select {
					case d := <-msgs:
						if err := b.add(ctx, d); err != nil {
							return err
						}
					default:
						return b.flush(ctx)
					}
				}
			}
		}
	}()
	if err != nil {
		return b.applied, fmt.Errorf("catch up from log position %d: %w", from+1, err)
	}
	if p.cfg.Progress != nil {
		p.cfg.Progress(p.Position(), last)
	}
	if err := p.dst.Checkpoint(ctx); err != nil {
		return b.applied, err
	}
	return b.applied, nil
}

// Run catches up, then follows the log until ctx ends, applying in batches and checkpointing
// every CheckpointEvery records or CheckpointInterval, and once more on the way out.
func (p *Projector) Run(ctx context.Context) error {
	if _, err := p.CatchUp(ctx); err != nil {
		return err
	}
	from := p.Position()
	b := &batcher{p: p}
	sinceCk, lastCk := 0, time.Now()
	// Follow delivers one message at a time; a short timer flushes a partial batch so that
	// readers see a lone event at once.
	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	msgs, errc := read(fctx, p.cfg.Batch, func(ctx context.Context, fn func(eventlog.Message) error) error {
		return p.src.Follow(ctx, from+1, fn)
	})
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	finish := func(err error) error {
		// Apply and checkpoint what was read, with a context of its own: ctx is done.
		sctx, scancel := context.WithTimeout(context.Background(), time.Minute)
		defer scancel()
		ferr := b.flush(sctx)
		if ferr == nil {
			ferr = p.dst.Checkpoint(sctx)
		}
		return errors.Join(err, ferr)
	}
	for {
		select {
		case d := <-msgs:
			if err := b.add(ctx, d); err != nil {
				return finish(err)
			}
			sinceCk++
		case <-tick.C:
			if err := b.flush(ctx); err != nil {
				return finish(err)
			}
			if sinceCk >= p.cfg.CheckpointEvery || (sinceCk > 0 && time.Since(lastCk) >= p.cfg.CheckpointInterval) {
				if err := p.dst.Checkpoint(ctx); err != nil {
					return finish(err)
				}
				sinceCk, lastCk = 0, time.Now()
			}
		case err := <-errc:
			if ctx.Err() != nil {
				return finish(nil)
			}
			return finish(fmt.Errorf("follow the log: %w", err))
		case <-ctx.Done():
			return finish(nil)
		}
	}
}

// RunRetrying runs the projector until ctx ends, starting it again with back-off (100 ms up to
// 10 s) whenever the log or the store fails: it resumes from the store's position, and what it
// applies twice changes nothing. failed, when set, hears of each failure. It returns nil when
// ctx ends.
func (p *Projector) RunRetrying(ctx context.Context, failed func(error)) error {
	return backoff.Forever(ctx, backoff.Backoff{Min: 100 * time.Millisecond, Max: 10 * time.Second}, p.Run,
		func(err error, wait time.Duration) {
			p.log.Error("projector stopped, starting it again", "error", err, "in", wait)
			if failed != nil {
				failed(err)
			}
		})
}
