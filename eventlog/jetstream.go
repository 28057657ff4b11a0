package eventlog

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
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
	// ReadBuffer is how many bytes of messages a read asks the server for at a time: the most
	// a read buffers ahead of its caller (default 8 MiB).
	ReadBuffer int
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
	if c.ReadBuffer <= 0 {
		c.ReadBuffer = 8 << 20
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

// JetStreamLog is a Log on a JetStream stream. Entries travel in frames (frame.go): one message
// holds a run of consecutive entries of one kind, and positions count entries. The subject is
// SubjectPrefix.Kind; Recorded is the frame's store time.
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
	last   uint64    // stream's last sequence as indexed (the index's n is the last position)
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

// catchUp makes the index exactly match the stream: it drops index records beyond the log's
// end, checks that the last record matches the log (rebuilding the whole index if not), and
// indexes the log's entries past the index. Called with l.mu held.
func (l *JetStreamLog) catchUp(ctx context.Context) error {
	wrap := func(err error) error { return fmt.Errorf("catch up index with %s: %w", l.cfg.Stream, err) }
	lastSeq, last, err := l.tail(ctx)
	if err != nil {
		return wrap(err)
	}
	x := l.idx
	if x.n > last {
		l.cfg.Logger.Warn("eventlog: index ahead of stream, truncating", "stream", l.cfg.Stream, "index", x.n, "stream_last", last)
		if err := x.truncate(last); err != nil {
			return wrap(err)
		}
	}
	if x.n > 0 {
		want, err := x.record(x.n)
		if err != nil {
			return wrap(err)
		}
		got, err := l.keyAt(ctx, x.n, lastSeq)
		if err != nil {
			return wrap(err)
		}
		if got != want {
			l.cfg.Logger.Warn("eventlog: index does not match stream, rebuilding", "stream", l.cfg.Stream, "position", x.n)
			if err := x.truncate(0); err != nil {
				return wrap(err)
			}
		}
	}
	if x.n < last {
		seq, err := l.findFrame(ctx, x.n+1, lastSeq)
		if err != nil {
			return wrap(err)
		}
		keys := make([]event.Key, 0, min(last-x.n, 1<<16))
		flush := func() error {
			err := x.add(keys)
			keys = keys[:0]
			return err
		}
		err = l.scan(ctx, seq, lastSeq, func(m jetstream.Msg, seq uint64, _ time.Time) error {
			return readFrame(m.Headers(), m.Data(), seq, func(pos uint64, e frameEntry) error {
				next := x.n + uint64(len(keys)) + 1
				if pos < next { // indexed already: the index ended inside this frame
					return nil
				}
				for ; next < pos; next++ { // a position without an entry
					keys = append(keys, event.Key{})
				}
				keys = append(keys, e.key)
				if len(keys) >= 1<<16 {
					return flush()
				}
				return nil
			})
		})
		if err == nil {
			err = flush()
		}
		if err != nil {
			return wrap(err)
		}
	}
	l.last = lastSeq
	l.dirty = false
	return nil
}

// tail is the stream's last sequence and the log's last position (0 when the log is empty).
func (l *JetStreamLog) tail(ctx context.Context) (seq, pos uint64, err error) {
	info, err := l.stream.Info(ctx)
	if err != nil {
		return 0, 0, fmt.Errorf("stream info: %w", err)
	}
	seq = info.State.LastSeq
	if seq == 0 || info.State.Msgs == 0 {
		return seq, 0, nil
	}
	m, err := l.stream.GetMsg(ctx, seq)
	if err != nil {
		return 0, 0, fmt.Errorf("get message %d: %w", seq, err)
	}
	first, n, err := frameSpan(m.Header, seq)
	if err != nil {
		return 0, 0, err
	}
	return seq, first + n - 1, nil
}

// findFrame is the stream sequence of the message holding position pos (1 <= pos <= the last
// position, and lastSeq the stream's last sequence): a binary search on the frames' first
// positions, which increase with the sequence.
func (l *JetStreamLog) findFrame(ctx context.Context, pos, lastSeq uint64) (uint64, error) {
	lo, hi := uint64(1), lastSeq // the answer is in [lo, hi]
	for lo < hi {
		mid := lo + (hi-lo+1)/2
		m, err := l.stream.GetMsg(ctx, mid)
		if err != nil {
			return 0, fmt.Errorf("find position %d: get message %d: %w", pos, mid, err)
		}
		first, _, err := frameSpan(m.Header, mid)
		if err != nil {
			return 0, fmt.Errorf("find position %d: %w", pos, err)
		}
		if first <= pos {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	return lo, nil
}

// keyAt is the key of the entry at position pos (zero when it has none).
func (l *JetStreamLog) keyAt(ctx context.Context, pos, lastSeq uint64) (event.Key, error) {
	seq, err := l.findFrame(ctx, pos, lastSeq)
	if err != nil {
		return event.Key{}, err
	}
	m, err := l.stream.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return event.Key{}, nil
	}
	if err != nil {
		return event.Key{}, fmt.Errorf("get message %d: %w", seq, err)
	}
	var k event.Key
	err = readFrame(m.Header, m.Data, seq, func(p uint64, e frameEntry) error {
		if p == pos {
			k = e.key
		}
		return nil
	})
	return k, err
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

// maxInflightBytes bounds the payload of the frames awaiting their acknowledgement.
const maxInflightBytes = 16 << 20

// publish appends entries[pending...] in frames (see frames) with pipelined asynchronous
// publishes, at most PublishWindow frames or maxInflightBytes unacknowledged at once, each
// expecting the stream's last sequence to be the one before it. On success the index holds
// them; on error l.dirty is set. Called with l.mu held and the index caught up.
func (l *JetStreamLog) publish(ctx context.Context, entries []Entry, pending []int, out []Appended, done []bool) error {
	if len(pending) == 0 {
		return nil
	}
	baseSeq, basePos := l.last, l.idx.n
	fs := frames(entries, pending, basePos+1)
	futures := make([]jetstream.PubAckFuture, len(fs))
	var firstErr error
	aborted := false // stopped waiting: outcomes of the rest unknown
	acked := 0       // futures[:acked] have been waited for
	inflight := 0    // payload bytes of futures[acked:]
	wait := func(n int) {
		var err error
		f := fs[n]
		select {
		case ack := <-futures[n].Ok():
			if ack.Duplicate || ack.Sequence != baseSeq+uint64(n)+1 {
				// The server knew the Nats-Msg-Id (within its window): the index is stale.
				err = fmt.Errorf("%w: frame %d acknowledged at %d (duplicate %v), expected %d",
					ErrConflict, n, ack.Sequence, ack.Duplicate, baseSeq+uint64(n)+1)
				break
			}
			for k := f.lo; k < f.hi; k++ {
				out[pending[k]], done[pending[k]] = Appended{Position: f.first + uint64(k-f.lo)}, true
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
		inflight -= f.bytes
	}
	for n := range fs {
		for acked < n && (n-acked >= l.cfg.PublishWindow || inflight+fs[n].bytes > maxInflightBytes) {
			wait(acked)
			acked++
		}
		if firstErr != nil { // publish no more; the ones in flight fail on their expected sequence
			futures = futures[:n]
			break
		}
		f, err := l.js.PublishMsgAsync(l.frameMsg(entries, pending, fs[n], baseSeq+uint64(n)))
		if err != nil {
			firstErr = fmt.Errorf("publish: %w", err)
			futures = futures[:n]
			break
		}
		futures[n] = f
		inflight += fs[n].bytes
	}
	// Wait for every outcome, so that after a conflict we know exactly which entries landed.
	for ; acked < len(futures) && !aborted; acked++ {
		wait(acked)
	}
	if firstErr != nil {
		// Whatever was acknowledged is in the stream; the rest may or may not land. Learn the
		// truth from the stream before the next append.
		for _, i := range pending {
			if done[i] {
				if _, ok := l.idx.keys[entries[i].Key]; !ok {
					l.idx.keys[entries[i].Key] = out[i].Position
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
			l.idx.keys[entries[i].Key] = basePos + uint64(n) + 1
		}
		l.dirty = true
	}
	l.last = baseSeq + uint64(len(fs))
	return nil
}

// Read implements Log.
func (l *JetStreamLog) Read(ctx context.Context, from uint64, fn func(Message) error) error {
	if l.isClosed() {
		return fmt.Errorf("read %s: %w", l.cfg.Stream, ErrClosed)
	}
	return l.deliver(ctx, "read", from, false, fn)
}

// Follow implements Log.
func (l *JetStreamLog) Follow(ctx context.Context, from uint64, fn func(Message) error) error {
	if l.isClosed() {
		return fmt.Errorf("follow %s: %w", l.cfg.Stream, ErrClosed)
	}
	return l.deliver(ctx, "follow", from, true, fn)
}

// errFn carries fn's error through scan unchanged.
type errFn struct{ err error }

func (e errFn) Error() string { return e.err.Error() }

func (l *JetStreamLog) deliver(ctx context.Context, op string, from uint64, follow bool, fn func(Message) error) error {
	if from == 0 {
		from = 1
	}
	fail := func(err error) error { return fmt.Errorf("%s %s from %d: %w", op, l.cfg.Stream, from, err) }
	lastSeq, last, err := l.tail(ctx)
	if err != nil {
		return fail(err)
	}
	endSeq := uint64(0) // for ever
	if !follow {
		if from > last {
			return nil
		}
		endSeq = lastSeq
	}
	start := lastSeq + 1 // the next message to come
	if from <= last {
		if start, err = l.findFrame(ctx, from, lastSeq); err != nil {
			return fail(err)
		}
	}
	// The floor of Recorded: the store time of the message before the first one read, so that
	// reads starting at different positions agree wherever the server's clock did not step back.
	var floor time.Time
	if start > 1 {
		m, err := l.stream.GetMsg(ctx, start-1)
		switch {
		case err == nil:
			floor = m.Time
		case !errors.Is(err, jetstream.ErrMsgNotFound):
			return fail(err)
		}
	}
	err = l.scan(ctx, start, endSeq, func(m jetstream.Msg, seq uint64, ts time.Time) error {
		if ts.Before(floor) {
			ts = floor
		}
		floor = ts
		kind := strings.TrimPrefix(m.Subject(), l.prefix)
		return readFrame(m.Headers(), m.Data(), seq, func(pos uint64, e frameEntry) error {
			if pos < from {
				return nil
			}
			if err := fn(Message{Position: pos, Recorded: ts, Kind: kind, Data: e.data}); err != nil {
				return errFn{err}
			}
			return nil
		})
	})
	var fe errFn
	switch {
	case err == nil:
		return nil
	case errors.As(err, &fe):
		return fe.err
	case ctx.Err() != nil && follow:
		return ctx.Err()
	}
	return fail(err)
}

// scan delivers the stream's messages from sequence from through end (for ever when end is 0)
// with an ordered consumer, which needs no acknowledgements (so no MaxAckPending stall) and
// recreates itself after a gap or reconnect.
func (l *JetStreamLog) scan(ctx context.Context, from, end uint64, fn func(m jetstream.Msg, seq uint64, ts time.Time) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(l.closeCtx, cancel)
	defer stop()
	cons, err := l.js.OrderedConsumer(ctx, l.cfg.Stream, jetstream.OrderedConsumerConfig{
		DeliverPolicy:     jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:       from,
		InactiveThreshold: time.Minute,
	})
	if err != nil {
		return l.closedOr(fmt.Errorf("create consumer: %w", err))
	}
	it, err := cons.Messages(jetstream.PullMaxBytes(l.cfg.ReadBuffer))
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
	_, pos, err := l.tail(ctx)
	if err != nil {
		return 0, fmt.Errorf("last of %s: %w", l.cfg.Stream, err)
	}
	return pos, nil
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
