package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"golang.org/x/sys/unix"

	"github.com/whocould/whocould/deadletter"
	"github.com/whocould/whocould/eventlog"
	"github.com/whocould/whocould/ingest"
	"github.com/whocould/whocould/projector"
	"github.com/whocould/whocould/store"
)

// stack is the embedded all-in-one on a data directory: the NATS server with the event log,
// the dead letters, the store (embedded, or ClickHouse: stackOptions.store) and the projector.
//
// Layout of the data directory:
//
//	whocould.lock    held (flock) by the one whocould process using the directory
//	nats/            JetStream's file store (the event log itself)
//	eventlog/        the log's dedup index and writer lock
//	store/           the embedded store's snapshot (none with ClickHouse)
//	deadletters.jsonl
type stack struct {
	dir   string
	lock  *os.File // the data directory's lock (lockDataDir), released last
	nats  *eventlog.Embedded
	nc    *nats.Conn
	log   *eventlog.JetStreamLog
	dead  *deadletter.File
	store store.Store
	proj  *projector.Projector
	// storePos is the position the store has applied, as last read from it (followStore), in
	// a process that answers without projecting.
	storePos atomic.Uint64
	ingest   *ingest.Ingester
	logger   *slog.Logger
}

type stackOptions struct {
	progress func(done, last uint64)
	// lock, when set, is the data directory's lock, already taken (lockDataDir); the stack owns
	// it from then on, even when openStack fails. Unset, openStack takes it.
	lock *os.File
	// natsListen is where the embedded NATS server takes connections ("": in-process only).
	natsListen string
	// noStore leaves the store and the projector out (store and proj nil): for processes that
	// only ingest.
	noStore bool
	// noProjector opens the store but leaves the projector out (proj nil): for processes that
	// only answer, from a store another process projects into (ClickHouse).
	noProjector bool
	// store selects the store (the zero value: the embedded store in DIR/store).
	store storeConfig
	// natsConnect, when set, connects to an external NATS cluster, which then holds the event
	// log, instead of running the embedded server.
	natsConnect func() (*nats.Conn, error)
}

// lockFile is the data directory's lock file (see lockDataDir).
const lockFile = "whocould.lock"

// lockDataDir creates the data directory dir if need be and takes its exclusive lock, a flock on
// DIR/whocould.lock, which the operating system releases when the process ends however it ends.
// One whocould process at a time may use a data directory: the lock is taken before anything in
// it is touched (the NATS server above all, which must never run twice on one JetStream
// directory). A directory another process holds is refused at once.
func lockDataDir(dir string) (*os.File, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	path := filepath.Join(dir, lockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	for {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	if errors.Is(err, unix.EWOULDBLOCK) {
		holder := ""
		if b, rerr := os.ReadFile(path); rerr == nil {
			if pid := strings.TrimSpace(string(b)); pid != "" {
				holder = " (pid " + pid + ")"
			}
		}
		f.Close()
		return nil, fmt.Errorf("%s is in use by another whocould process%s (a running `whocould serve`? use --server): %s is locked",
			dir, holder, path)
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("lock the data directory: %s: %w", path, err)
	}
	// Who holds it, for the message above; informative only (the flock is the lock).
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return f, nil
}

// openStack opens (creating) the data directory dir and brings its store up to date with the
// log.
func openStack(ctx context.Context, dir string, logger *slog.Logger, opts stackOptions) (s *stack, err error) {
	st := &stack{dir: dir, logger: logger, lock: opts.lock}
	s = st
	defer func() {
		if err != nil {
			st.close() // not s: the error returns set it to nil
		}
	}()
	if s.lock == nil {
		if s.lock, err = lockDataDir(dir); err != nil {
			return nil, err
		}
	}
	if opts.natsConnect != nil {
		if s.nc, err = opts.natsConnect(); err != nil {
			return nil, fmt.Errorf("connect to NATS: %w", err)
		}
	} else {
		s.nats, err = eventlog.StartEmbedded(eventlog.EmbeddedConfig{Dir: filepath.Join(dir, "nats"), Listen: opts.natsListen, Logger: logger})
		if err != nil {
			return nil, err
		}
		if s.nc, err = s.nats.Connect(); err != nil {
			return nil, err
		}
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
	s.ingest = ingest.New(s.log, s.dead, logger)
	if opts.noStore {
		return s, nil
	}
	if s.store, err = openStore(ctx, opts.store, dir, logger); err != nil {
		return nil, err
	}
	pos, err := s.store.Position(ctx)
	if err != nil {
		return nil, fmt.Errorf("read the store's position: %w", err)
	}
	s.storePos.Store(pos)
	if opts.noProjector {
		return s, nil
	}
	// A ClickHouse database outlives the data directory: one ahead of the log was made from
	// another log (the data directory was made afresh), and the projector would skip the log's
	// events up to its position.
	if opts.store.isClickHouse() {
		last, err := s.log.Last(ctx)
		if err != nil {
			return nil, err
		}
		if pos > last {
			return nil, fmt.Errorf("the store %s has applied an event log up to position %d, but the event log ends at %d: "+
				"the database was made from another log (a data directory made afresh?); give the database made from this log, "+
				"or a fresh one", opts.store, pos, last)
		}
	}
	s.proj = projector.New(s.log, s.store, rejects{s.dead}, projector.Config{Logger: logger, Progress: opts.progress,
		CheckpointInterval: opts.store.checkpointInterval()})
	if _, err := s.proj.CatchUp(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// projected is the log position the store has applied: the projector's, or without one the
// store's as last read (followStore); 0 without a store.
func (s *stack) projected() uint64 {
	if s.proj == nil {
		return s.storePos.Load()
	}
	return s.proj.Position()
}

// followStore reads the store's position every interval until ctx ends, for a process that
// answers from a store another process projects into; failed hears of each read, nil when it
// succeeds again.
func (s *stack) followStore(ctx context.Context, interval time.Duration, failed func(error)) error {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		pos, err := s.store.Position(rctx)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			failed(err)
			continue
		}
		failed(nil)
		for { // never backwards
			cur := s.storePos.Load()
			if pos <= cur || s.storePos.CompareAndSwap(cur, pos) {
				break
			}
		}
	}
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
	if s.lock != nil {
		s.lock.Close() // releases the flock
	}
}

// rejects dead-letters log messages the projector cannot decode.
type rejects struct{ d *deadletter.File }

func (r rejects) Reject(ctx context.Context, m eventlog.Message, reason error) error {
	return r.d.Add(ctx, deadletter.NewLetter(ingest.SourceEventLog, fmt.Sprintf("log position %d", m.Position), "", m.Data, reason))
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
