package eventlog

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/whocould/whocould/event"
)

// Frames. One JetStream message holds a frame: one or more entries of one kind, consecutive in
// the log, so that the server's per-message costs (store, acknowledgement, delivery) are paid
// per frame, not per event. Positions count entries, not messages: position p is the p-th entry
// ever appended, whatever frame holds it.
//
// A frame's headers:
//
//	Nats-Msg-Id    the hex key of its first entry (JetStream's own duplicate window, a second guard)
//	Whocould-Pos   the position of its first entry
//	Whocould-N     how many entries it holds (absent: one)
//
// Its payload is the entry's data as it is when it holds one entry (the key is in Nats-Msg-Id),
// otherwise frameMagic then, per entry, the 16-byte key, the data's length as a uvarint and the
// data. A message without Whocould-Pos (the format before frames) is one entry at the position
// of its stream sequence; such messages can only precede framed ones, which keeps both readable.
const (
	posHeader   = "Whocould-Pos"
	countHeader = "Whocould-N"
	frameMagic  = "WCF1"
)

// Limits of one frame: entries and payload bytes. An entry bigger than maxFrameBytes travels
// alone (and the server refuses it if it is over its max_payload).
const (
	maxFrameEntries = 1024
	maxFrameBytes   = 256 << 10
)

// errBadFrame marks a message this log cannot read as a frame (written by someone else, or
// damaged): permanent.
var errBadFrame = errors.New("not a whocould frame")

// frameSpan reads the positions a message covers from its headers: the first and the count.
func frameSpan(h nats.Header, seq uint64) (first, n uint64, err error) {
	p := h.Get(posHeader)
	if p == "" {
		return seq, 1, nil
	}
	first, err = strconv.ParseUint(p, 10, 64)
	if err != nil || first == 0 {
		return 0, 0, fmt.Errorf("stream sequence %d: %w: header %s %q", seq, errBadFrame, posHeader, p)
	}
	n = 1
	if c := h.Get(countHeader); c != "" {
		n, err = strconv.ParseUint(c, 10, 64)
		if err != nil || n == 0 || n > maxFrameEntries {
			return 0, 0, fmt.Errorf("stream sequence %d: %w: header %s %q", seq, errBadFrame, countHeader, c)
		}
	}
	return first, n, nil
}

// frameEntry is one entry read from a frame.
type frameEntry struct {
	key  event.Key
	data []byte // a sub-slice of the message's payload
}

// readFrame calls fn for each entry of the message at stream sequence seq, with its position.
func readFrame(h nats.Header, data []byte, seq uint64, fn func(pos uint64, e frameEntry) error) error {
	first, n, err := frameSpan(h, seq)
	if err != nil {
		return err
	}
	if n == 1 {
		return fn(first, frameEntry{key: keyOfHeader(h), data: data})
	}
	if len(data) < len(frameMagic) || string(data[:len(frameMagic)]) != frameMagic {
		return fmt.Errorf("stream sequence %d: %w: no frame magic", seq, errBadFrame)
	}
	rest := data[len(frameMagic):]
	for i := range n {
		if len(rest) < keySize {
			return fmt.Errorf("stream sequence %d: %w: entry %d of %d truncated", seq, errBadFrame, i, n)
		}
		var e frameEntry
		copy(e.key[:], rest[:keySize])
		rest = rest[keySize:]
		l, k := binary.Uvarint(rest)
		if k <= 0 || l > uint64(len(rest)-k) {
			return fmt.Errorf("stream sequence %d: %w: entry %d of %d: bad length", seq, errBadFrame, i, n)
		}
		e.data = rest[k : k+int(l) : k+int(l)]
		rest = rest[k+int(l):]
		if err := fn(first+i, e); err != nil {
			return err
		}
	}
	if len(rest) != 0 {
		return fmt.Errorf("stream sequence %d: %w: %d bytes after the last entry", seq, errBadFrame, len(rest))
	}
	return nil
}

// frame is a run of pending entries that one message carries.
type frame struct {
	lo, hi int    // pending[lo:hi]
	first  uint64 // position of its first entry
	bytes  int
}

// frames cuts pending entries (indexes into entries) into frames: consecutive entries of one
// kind, at most maxFrameEntries and (unless one entry alone is bigger) maxFrameBytes each.
func frames(entries []Entry, pending []int, firstPos uint64) []frame {
	var out []frame
	for lo := 0; lo < len(pending); {
		kind := entries[pending[lo]].Kind
		f := frame{lo: lo, hi: lo, first: firstPos + uint64(lo), bytes: len(frameMagic)}
		for f.hi < len(pending) && f.hi-f.lo < maxFrameEntries {
			e := &entries[pending[f.hi]]
			size := keySize + binary.MaxVarintLen32 + len(e.Data)
			if e.Kind != kind || (f.hi > f.lo && f.bytes+size > maxFrameBytes) {
				break
			}
			f.bytes += size
			f.hi++
		}
		out = append(out, f)
		lo = f.hi
	}
	return out
}

// frameMsg builds the message of frame f, expecting the stream's last sequence to be lastSeq.
func (l *JetStreamLog) frameMsg(entries []Entry, pending []int, f frame, lastSeq uint64) *nats.Msg {
	e0 := &entries[pending[f.lo]]
	msg := &nats.Msg{
		Subject: l.prefix + e0.Kind,
		Header: nats.Header{
			jetstream.MsgIDHeader:           []string{hex.EncodeToString(e0.Key[:])},
			jetstream.ExpectedStreamHeader:  []string{l.cfg.Stream},
			jetstream.ExpectedLastSeqHeader: []string{strconv.FormatUint(lastSeq, 10)},
			posHeader:                       []string{strconv.FormatUint(f.first, 10)},
		},
	}
	if f.hi-f.lo == 1 {
		msg.Data = e0.Data
		return msg
	}
	msg.Header[countHeader] = []string{strconv.Itoa(f.hi - f.lo)}
	buf := make([]byte, 0, f.bytes)
	buf = append(buf, frameMagic...)
	for _, i := range pending[f.lo:f.hi] {
		e := &entries[i]
		buf = append(buf, e.Key[:]...)
		buf = binary.AppendUvarint(buf, uint64(len(e.Data)))
		buf = append(buf, e.Data...)
	}
	msg.Data = buf
	return msg
}
