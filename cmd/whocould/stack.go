package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/whocould/whocould/deadletter"
	"github.com/whocould/whocould/eventlog"
	"github.com/whocould/whocould/ingest"
	"github.com/whocould/whocould/projector"
	"github.com/whocould/whocould/store/embedded"
)

// stack is the embedded all-in-one on a data directory: the NATS server with the event log,
// the dead letters, the embedded store and the projector.
//
// Layout of the data directory:
//
//	nats/            JetStream's file store (the event log itself)
//	eventlog/        the log's dedup index and writer lock
//	store/           the embedded store's snapshot
//	deadletters.jsonl
type stack struct {
	dir    string
	nats   *eventlog.Embedded
	nc     *nats.Conn
	log    *eventlog.JetStreamLog
	dead   *deadletter.File
	store  *embedded.Store
	proj   *projector.Projector
	ingest *ingest.Ingester
	logger *slog.Logger
}

type stackOptions struct {
	progress func(done, last uint64)
}

// openStack opens (creating) the data directory dir and brings its store up to date with the
// log.
func openStack(ctx context.Context, dir string, logger *slog.Logger, opts stackOptions) (s *stack, err error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	st := &stack{dir: dir, logger: logger}
	s = st
	defer func() {
		if err != nil {
			st.close() // not s: the error returns set it to nil
		}
	}()
	s.nats, err = eventlog.StartEmbedded(eventlog.EmbeddedConfig{Dir: filepath.Join(dir, "nats")})
	if err != nil {
		return nil, err
	}
	if s.nc, err = s.nats.Connect(); err != nil {
		return nil, err
	}
	s.log, err = eventlog.Open(ctx, s.nc, eventlog.Config{Dir: filepath.Join(dir, "eventlog"), Logger: logger})
	if errors.Is(err, eventlog.ErrLocked) {
		return nil, fmt.Errorf("%s is in use by another whocould process (a running `whocould serve`? use --server): %w", dir, err)
	}
	if err != nil {
		return nil, err
	}
	if s.dead, err = deadletter.Open(filepath.Join(dir, "deadletters.jsonl")); err != nil {
		return nil, err
	}
	if err := recoverStore(dir); err != nil {
		return nil, fmt.Errorf("recover the store after an interrupted rebuild: %w", err)
	}
	if s.store, err = embedded.Open(embedded.Config{Dir: filepath.Join(dir, "store"), Logger: logger}); err != nil {
		return nil, err
	}
	s.proj = projector.New(s.log, s.store, rejects{s.dead}, projector.Config{Logger: logger, Progress: opts.progress})
	s.ingest = ingest.New(s.log, s.dead, logger)
	if _, err := s.proj.CatchUp(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// close releases everything, in order; it does not checkpoint.
func (s *stack) close() {
	if s.store != nil {
		s.store.Close()
	}
	if s.dead != nil {
		s.dead.Close()
	}
	if s.log != nil {
		s.log.Close()
	}
	if s.nc != nil {
		s.nc.Close()
	}
	if s.nats != nil {
		s.nats.Shutdown()
	}
}

// rejects dead-letters log messages the projector cannot decode.
type rejects struct{ d *deadletter.File }

func (r rejects) Reject(ctx context.Context, m eventlog.Message, reason error) error {
	return r.d.Add(ctx, deadletter.NewLetter("eventlog", fmt.Sprintf("log position %d", m.Position), "", m.Data, reason))
}

// projectWhile runs fn (which appends to the log) while the projector follows the log on
// another goroutine, so that decoding and appending overlap with projecting; it returns once
// the store has applied everything in the log and has checkpointed.
func (s *stack) projectWhile(ctx context.Context, fn func() error) error {
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.proj.Run(pctx) }()
	ferr := fn()
	last, err := s.log.Last(ctx)
	if err == nil && ferr == nil {
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
	wait:
		for s.proj.Position() < last {
			select {
			case <-tick.C:
			case err = <-done: // the projector stopped early: report why
				done <- err
				break wait
			case <-ctx.Done():
				err = ctx.Err()
				break wait
			}
		}
	}
	cancel()
	rerr := <-done
	if !errors.Is(rerr, context.Canceled) || ctx.Err() != nil {
		// Run finished on its own terms: it applied what it read and checkpointed.
		return errors.Join(ferr, err, rerr)
	}
	// Stopped by us while still catching up: finish here (CatchUp checkpoints), and checkpoint
	// what Run applied but did not get to checkpoint.
	if err := errors.Join(ferr, err); err != nil {
		return err
	}
	if n, err := s.proj.CatchUp(ctx); err != nil || n > 0 {
		return err
	}
	return s.store.Checkpoint(ctx)
}
