package eventlog

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/whocould/whocould/event"
)

// Config configures a JetStream-backed log.
type Config struct {
	// Dir holds the dedup index and the writer lock (e.g. DATA/eventlog, next to DATA/nats).
	// Required unless ReadOnly.
	Dir string
	// Stream is the JetStream stream name (default "WHOCOULD").
	Stream string
	// SubjectPrefix is the subject prefix (default "whocould.events"); a message's subject is
	// SubjectPrefix + "." + Kind, and the stream holds SubjectPrefix + ".>".
	SubjectPrefix string
	// DuplicateWindow is JetStream's own Nats-Msg-Id dedup window, a second guard behind the
	// index (default 2 minutes).
	DuplicateWindow time.Duration
	// Replicas of the stream (default 1; more needs a clustered server).
	Replicas int
	// PublishWindow is how many publishes may await their acknowledgement at once (default 1000).
	PublishWindow int
	// AckTimeout bounds the wait for one publish's acknowledgement (default 10s).
	AckTimeout time.Duration
	// ReadBatch is how many messages a read asks the server for at a time (default 1000).
	ReadBatch int
	// ReadOnly opens the log for Read, Follow and Last only: no lock, no index, Append returns
	// ErrReadOnly. Any number of read-only logs may be open beside the one writer.
	ReadOnly bool
	// Logger receives warnings (index repairs); nil discards them.
	Logger *slog.Logger
}

func (c *Config) defaults() {
	if c.Stream == "" {
		c.Stream = "WHOCOULD"
	}
	if c.SubjectPrefix == "" {
		c.SubjectPrefix = "whocould.events"
	}
	if c.DuplicateWindow <= 0 {
		c.DuplicateWindow = 2 * time.Minute
	}
	if c.Replicas <= 0 {
		c.Replicas = 1
	}
	if c.PublishWindow <= 0 {
		c.PublishWindow = 1000
	}
	if c.AckTimeout <= 0 {
		c.AckTimeout = 10 * time.Second
	}
	if c.ReadBatch <= 0 {
		c.ReadBatch = 1000
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Validate reports a configuration that cannot work.
func (c Config) Validate() error {
	if c.Dir == "" && !c.ReadOnly {
		return errors.New("eventlog config: Dir is required for a writer")
	}
	if c.SubjectPrefix != "" && strings.ContainsAny(c.SubjectPrefix, "*> \t\r\n") {
		return fmt.Errorf("eventlog config: bad subject prefix %q", c.SubjectPrefix)
	}
	return nil
}

// JetStreamLog is a Log on a JetStream stream. Positions are stream sequences; the subject is
// SubjectPrefix.Kind; header Nats-Msg-Id is the hex Key; Recorded is the message's store time.
//
// Every publish carries Nats-Expected-Last-Sequence, so the server refuses it when the stream
// holds anything this Log has not indexed: dedup stays exact even if another writer (another
// host, where the file lock cannot reach) appends to the same stream; this Log then catches up
// and retries (ErrConflict when that does not settle).
type JetStreamLog struct {
	cfg    Config
	js     jetstream.JetStream
	stream jetstream.Stream
	prefix string // SubjectPrefix + "."

	closeCtx context.Context
	closeFn  context.CancelFunc

	mu     sync.Mutex // serialises Append, catch-up and Close
	closed bool
	idx    *keyIndex // nil when read-only
	last   uint64    // stream's last sequence as indexed
	dirty  bool      // the index may lag the stream: catch up before the next append
}

// Open creates or updates the stream (file storage, limits retention with no limits, nothing
// discarded, deletes and purges denied), takes the writer lock in cfg.Dir, loads the dedup index
// and brings it up to date with the stream. nc belongs to the caller and must stay open until
// Close. Errors: ErrLocked when another writer holds the lock; NATS errors (IsTransient).
func Open(ctx context.Context, nc *nats.Conn, cfg Config) (*JetStreamLog, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.defaults()
	l := &JetStreamLog{cfg: cfg, prefix: cfg.SubjectPrefix + "."}
	var err error
	l.js, err = jetstream.New(nc,
		jetstream.WithPublishAsyncMaxPending(cfg.PublishWindow+1),
		jetstream.WithPublishAsyncTimeout(cfg.AckTimeout))
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", cfg.Stream, err)
	}
	l.stream, err = l.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        cfg.Stream,
		Description: "whocould event log",
		Subjects:    []string{cfg.SubjectPrefix + ".>"},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardOld, // with no limits set, nothing is ever discarded
		MaxMsgs:     -1,
		MaxBytes:    -1,
		MaxAge:      0,
		Duplicates:  cfg.DuplicateWindow,
		Replicas:    cfg.Replicas,
		DenyDelete:  true,
		DenyPurge:   true,
	})
	if err != nil {
		return nil, fmt.Errorf("open %s: create or update stream: %w", cfg.Stream, err)
	}
	l.closeCtx, l.closeFn = context.WithCancel(context.Background())
	if cfg.ReadOnly {
		return l, nil
	}
	l.idx, err = openKeyIndex(cfg.Dir, cfg.Stream)
	if err != nil {
		if errors.Is(err, ErrLocked) {
			return nil, fmt.Errorf("open %s: %w", cfg.Stream, err)
		}
		return nil, fmt.Errorf("open %s: index: %w", cfg.Stream, err)
	}
	if l.idx.unclean {
		cfg.Logger.Warn("eventlog: rebuilding dedup index after unclean shutdown in an earlier boot", "stream", cfg.Stream)
	}
	l.dirty = true
	if err := l.catchUp(ctx); err != nil {
		l.idx.close(false)
		return nil, fmt.Errorf("open %s: %w", cfg.Stream, err)
	}
	return l, nil
}

// catchUp makes the index exactly match the stream: it drops index records beyond the stream's
// end, checks that the last record matches the stream (rebuilding the whole index if not), and
// indexes the stream's messages past the index. Called with l.mu held.
func (l *JetStreamLog) catchUp(ctx context.Context) error {
	info, err := l.stream.Info(ctx)
	if err != nil {
		return fmt.Errorf("catch up index with %s: stream info: %w", l.cfg.Stream, err)
	}
	last := info.State.LastSeq
	x := l.idx
	if x.n > last {
		l.cfg.Logger.Warn("eventlog: index ahead of stream, truncating", "stream", l.cfg.Stream, "index", x.n, "stream_last", last)
		if err := x.truncate(last); err != nil {
			return fmt.Errorf("catch up index with %s: %w", l.cfg.Stream, err)
		}
	}
	if x.n > 0 {
		want, err := x.record(x.n)
		if err != nil {
			return fmt.Errorf("catch up index with %s: %w", l.cfg.Stream, err)
		}
		got, err := l.keyAt(ctx, x.n)
		if err != nil {
			return fmt.Errorf("catch up index with %s: %w", l.cfg.Stream, err)
		}
		if got != want {
			l.cfg.Logger.Warn("eventlog: index does not match stream, rebuilding", "stream", l.cfg.Stream, "position", x.n)
			if err := x.truncate(0); err != nil {
				return fmt.Errorf("catch up index with %s: %w", l.cfg.Stream, err)
			}
		}
	}
	if x.n < last {
		keys := make([]event.Key, 0, min(last-x.n, 1<<16))
		flush := func() error {
			err := x.add(keys)
			keys = keys[:0]
			return err
		}
		err := l.scan(ctx, x.n+1, last, true, func(m jetstream.Msg, seq uint64, _ time.Time) error {
			for x.n+uint64(len(keys))+1 < seq { // a position without a message
				keys = append(keys, event.Key{})
			}
			keys = append(keys, keyOfHeader(m.Headers()))
			if len(keys) >= 1<<16 {
				return flush()
			}
			return nil
		})
		if err == nil {
			err = flush()
		}
		if err != nil {
			return fmt.Errorf("catch up index with %s: %w", l.cfg.Stream, err)
		}
	}
	l.last = last
	l.dirty = false
	return nil
}

// keyAt is the key of the message at position seq in the stream (zero when it has none or the
// message is gone).
func (l *JetStreamLog) keyAt(ctx context.Context, seq uint64) (event.Key, error) {
	m, err := l.stream.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return event.Key{}, nil
	}
	if err != nil {
		return event.Key{}, fmt.Errorf("get message %d: %w", seq, err)
	}
	return keyOfHeader(m.Header), nil
}

func keyOfHeader(h nats.Header) event.Key {
	var k event.Key
	id := h.Get(jetstream.MsgIDHeader)
	if len(id) != 2*keySize {
		return k
	}
	if _, err := hex.Decode(k[:], []byte(id)); err != nil {
		return event.Key{}
	}
	return k
}

func validKind(kind string) bool {
	if kind == "" || len(kind) > 64 {
		return false
	}
	return !strings.ContainsAny(kind, ".*> \t\r\n")
}

// Append implements Log.
func (l *JetStreamLog) Append(ctx context.Context, entries []Entry) ([]Appended, error) {
	for i := range entries {
		if !validKind(entries[i].Kind) {
			return nil, fmt.Errorf("append to %s: entry %d: kind %q: %w", l.cfg.Stream, i, entries[i].Kind, ErrInvalidEntry)
		}
	}
	if l.idx == nil {
		return nil, fmt.Errorf("append to %s: %w", l.cfg.Stream, ErrReadOnly)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil, fmt.Errorf("append to %s: %w", l.cfg.Stream, ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("append to %s: %w", l.cfg.Stream, err)
	}
	out := make([]Appended, len(entries))
	done := make([]bool, len(entries))
	dupOf := make(map[int]int)
	const attempts = 3
	for attempt := 1; ; attempt++ {
		if l.dirty {
			if err := l.catchUp(ctx); err != nil {
				return nil, fmt.Errorf("append to %s: %w", l.cfg.Stream, err)
			}
		}
		var pending []int
		first := make(map[event.Key]int)
		clear(dupOf)
		for i := range entries {
			if done[i] {
				continue
			}
			k := entries[i].Key
			if pos, ok := l.idx.keys[k]; ok {
				out[i], done[i] = Appended{Position: pos, Duplicate: true}, true
				continue
			}
			if j, ok := first[k]; ok {
				dupOf[i] = j
				continue
			}
			first[k] = i
			pending = append(pending, i)
		}
		err := l.publish(ctx, entries, pending, out, done)
		if err == nil {
			for i, j := range dupOf {
				out[i], done[i] = Appended{Position: out[j].Position, Duplicate: true}, true
			}
			return out, nil
		}
		if errors.Is(err, ErrConflict) && attempt < attempts && ctx.Err() == nil {
			continue
		}
		return nil, fmt.Errorf("append to %s: %w", l.cfg.Stream, err)
	}
}

// publish appends entries[pending...] with pipelined asynchronous publishes, at most
// PublishWindow unacknowledged at once, each expecting the stream's last sequence to be the one
// before it. On success the index holds them; on error l.dirty is set. Called with l.mu held.
func (l *JetStreamLog) publish(ctx context.Context, entries []Entry, pending []int, out []Appended, done []bool) error {
	if len(pending) == 0 {
		return nil
	}
	base := l.last
	futures := make([]jetstream.PubAckFuture, len(pending))
	var firstErr error
	aborted := false // stopped waiting: outcomes of the rest unknown
	acked := 0       // futures[:acked] have been waited for
	wait := func(n int) {
		var err error
		select {
		case ack := <-futures[n].Ok():
			i := pending[n]
			out[i], done[i] = Appended{Position: ack.Sequence, Duplicate: ack.Duplicate}, true
			if ack.Duplicate || ack.Sequence != base+uint64(n)+1 {
				// The server knew the Nats-Msg-Id (within its window): the index is stale.
				err = fmt.Errorf("%w: message %d acknowledged at %d (duplicate %v), expected %d",
					ErrConflict, n, ack.Sequence, ack.Duplicate, base+uint64(n)+1)
			}
		case perr := <-futures[n].Err():
			var apiErr *jetstream.APIError
			if errors.As(perr, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
				apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant) {
				err = fmt.Errorf("%w: %w", ErrConflict, perr)
			} else {
				err = fmt.Errorf("publish: %w", perr)
			}
		case <-ctx.Done():
			err, aborted = ctx.Err(), true
		case <-l.closeCtx.Done():
			err, aborted = ErrClosed, true
		}
		if err != nil && firstErr == nil {
			firstErr = err
		}
	}
	for n, i := range pending {
		if n >= l.cfg.PublishWindow {
			wait(acked)
			acked++
		}
		if firstErr != nil { // publish no more; the ones in flight fail on their expected sequence
			futures = futures[:n]
			break
		}
		e := &entries[i]
		msg := &nats.Msg{
			Subject: l.prefix + e.Kind,
			Data:    e.Data,
			Header: nats.Header{
				jetstream.MsgIDHeader:           []string{hex.EncodeToString(e.Key[:])},
				jetstream.ExpectedStreamHeader:  []string{l.cfg.Stream},
				jetstream.ExpectedLastSeqHeader: []string{strconv.FormatUint(base+uint64(n), 10)},
			},
		}
		f, err := l.js.PublishMsgAsync(msg)
		if err != nil {
			firstErr = fmt.Errorf("publish: %w", err)
			futures = futures[:n]
			break
		}
		futures[n] = f
	}
	// Wait for every outcome, so that after a conflict we know exactly which entries landed.
	for ; acked < len(futures) && !aborted; acked++ {
		wait(acked)
	}
	if firstErr != nil {
		// Whatever was acknowledged is in the stream; the rest may or may not land. Learn the
		// truth from the stream before the next append.
		for n := range futures {
			if done[pending[n]] && !out[pending[n]].Duplicate {
				if _, ok := l.idx.keys[entries[pending[n]].Key]; !ok {
					l.idx.keys[entries[pending[n]].Key] = out[pending[n]].Position
				}
			}
		}
		l.dirty = true
		return firstErr
	}
	keys := make([]event.Key, len(pending))
	for n, i := range pending {
		keys[n] = entries[i].Key
	}
	if err := l.idx.add(keys); err != nil {
		// The entries are durable in the stream; only the cache lags. Keep them in memory and
		// rewrite the file from the stream before the next append.
		l.cfg.Logger.Error("eventlog: writing dedup index", "stream", l.cfg.Stream, "err", err)
		for n, i := range pending {
			l.idx.keys[entries[i].Key] = base + uint64(n) + 1
		}
		l.dirty = true
	}
	l.last = base + uint64(len(pending))
	return nil
}

// Read implements Log.
func (l *JetStreamLog) Read(ctx context.Context, from uint64, fn func(Message) error) error {
	if l.isClosed() {
		return fmt.Errorf("read %s: %w", l.cfg.Stream, ErrClosed)
	}
	end, err := l.Last(ctx)
	if err != nil || end == 0 { // end 0 would mean "for ever" below
		return err
	}
	return l.deliver(ctx, "read", from, end, fn)
}

// Follow implements Log.
func (l *JetStreamLog) Follow(ctx context.Context, from uint64, fn func(Message) error) error {
	if l.isClosed() {
		return fmt.Errorf("follow %s: %w", l.cfg.Stream, ErrClosed)
	}
	return l.deliver(ctx, "follow", from, 0, fn)
}

// errFn carries fn's error through scan unchanged.
type errFn struct{ err error }

func (e errFn) Error() string { return e.err.Error() }

func (l *JetStreamLog) deliver(ctx context.Context, op string, from, end uint64, fn func(Message) error) error {
	if from == 0 {
		from = 1
	}
	if end != 0 && from > end {
		return nil
	}
	// The floor of Recorded: the store time of the message before from, so that reads starting
	// at different positions agree wherever the server's clock did not step back.
	var floor time.Time
	if from > 1 {
		m, err := l.stream.GetMsg(ctx, from-1)
		switch {
		case err == nil:
			floor = m.Time
		case !errors.Is(err, jetstream.ErrMsgNotFound):
			return fmt.Errorf("%s %s from %d: %w", op, l.cfg.Stream, from, err)
		}
	}
	err := l.scan(ctx, from, end, false, func(m jetstream.Msg, seq uint64, ts time.Time) error {
		if ts.Before(floor) {
			ts = floor
		}
		floor = ts
		if err := fn(Message{Position: seq, Recorded: ts, Kind: strings.TrimPrefix(m.Subject(), l.prefix), Data: m.Data()}); err != nil {
			return errFn{err}
		}
		return nil
	})
	var fe errFn
	switch {
	case err == nil:
		return nil
	case errors.As(err, &fe):
		return fe.err
	case ctx.Err() != nil && end == 0:
		return ctx.Err()
	}
	return fmt.Errorf("%s %s from %d: %w", op, l.cfg.Stream, from, err)
}

// scan delivers the stream's messages from position from through end (for ever when end is 0)
// with an ordered consumer, which needs no acknowledgements (so no MaxAckPending stall) and
// recreates itself after a gap or reconnect.
func (l *JetStreamLog) scan(ctx context.Context, from, end uint64, headersOnly bool, fn func(m jetstream.Msg, seq uint64, ts time.Time) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(l.closeCtx, cancel)
	defer stop()
	cons, err := l.js.OrderedConsumer(ctx, l.cfg.Stream, jetstream.OrderedConsumerConfig{
		DeliverPolicy:     jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:       from,
		HeadersOnly:       headersOnly,
		InactiveThreshold: time.Minute,
	})
	if err != nil {
		return l.closedOr(fmt.Errorf("create consumer: %w", err))
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(l.cfg.ReadBatch))
	if err != nil {
		return l.closedOr(fmt.Errorf("consume: %w", err))
	}
	defer it.Stop()
	for {
		m, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			return l.closedOr(fmt.Errorf("next message: %w", err))
		}
		md, err := m.Metadata()
		if err != nil {
			return fmt.Errorf("message metadata: %w", err)
		}
		seq := md.Sequence.Stream
		if end != 0 && seq > end {
			return nil
		}
		if err := fn(m, seq, md.Timestamp); err != nil {
			return err
		}
		if end != 0 && seq >= end {
			return nil
		}
	}
}

func (l *JetStreamLog) closedOr(err error) error {
	if l.closeCtx.Err() != nil {
		return ErrClosed
	}
	return err
}

// Last implements Log.
func (l *JetStreamLog) Last(ctx context.Context) (uint64, error) {
	if l.isClosed() {
		return 0, fmt.Errorf("last of %s: %w", l.cfg.Stream, ErrClosed)
	}
	info, err := l.stream.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("last of %s: %w", l.cfg.Stream, err)
	}
	return info.State.LastSeq, nil
}

func (l *JetStreamLog) isClosed() bool { return l.closeCtx.Err() != nil }

// Close implements Log.
func (l *JetStreamLog) Close() error {
	l.closeFn() // stops running reads and an Append waiting for acknowledgements
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	l.closed = true
	if l.idx == nil {
		return nil
	}
	// A clean close even with a lagging index: the index is always repaired from the stream at
	// the next Open; only an unclean reboot needs a full rebuild.
	if err := l.idx.close(true); err != nil {
		return fmt.Errorf("close %s: %w", l.cfg.Stream, err)
	}
	return nil
}
