// Package deadletter keeps what whocould could not take: events that did not decode, validate
// or adapt, with their raw bytes, where they came from and why, so that nothing is ever
// silently dropped and each can be replayed once fixed.
//
// The file is JSON lines and append-only. A letter is a line holding the Letter; a replay is a
// later line {"replayed": {"seq": N, "at": T, "position": P}} recording that letter N was
// replayed (its events landed at log position P, or were already in the log: "duplicate").
// Listing merges the two, so that each letter reports its status, open or replayed.
package deadletter

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"
	"unicode/utf8"
)

// Letter is one dead letter.
type Letter struct {
	// Seq numbers letters in the order they were kept, from 1.
	Seq      uint64    `json:"seq"`
	Received time.Time `json:"received"`
	// Source is where it came from: a file name, "http", a NATS subject, a Kafka topic.
	Source string `json:"source"`
	// Where is its place in the source: "line 12", "item 3", "log position 1234".
	Where  string `json:"where,omitempty"`
	ID     string `json:"id,omitempty"`
	Reason string `json:"reason"`
	// Raw is the bytes as received: text when valid UTF-8, else RawBase64.
	Raw       string `json:"raw,omitempty"`
	RawBase64 []byte `json:"raw_base64,omitempty"`

	// The letter's lifecycle, as List and Get report it (never stored in the letter's line).

	// Status is StatusOpen or StatusReplayed.
	Status string `json:"status,omitempty"`
	// ReplayedAt is when the letter was replayed (nil: open).
	ReplayedAt *time.Time `json:"replayed_at,omitempty"`
	// Position is the log position the replayed events landed at (for a duplicate, where
	// they already were).
	Position uint64 `json:"position,omitempty"`
	// Duplicate is true when the replay found the events already in the log.
	Duplicate bool `json:"duplicate,omitempty"`
}

// A letter's status.
const (
	StatusOpen     = "open"     // kept, not (yet) replayed
	StatusReplayed = "replayed" // replayed: its events are in the log
)

// Errors of Get and MarkReplayed.
var (
	ErrNotFound = errors.New("no such dead letter")
	ErrReplayed = errors.New("dead letter already replayed")
)

// Replay records that a letter was replayed.
type Replay struct {
	Seq uint64    `json:"seq"`
	At  time.Time `json:"at"`
	// Position is the log position the letter's (last) event landed at.
	Position  uint64 `json:"position,omitempty"`
	Duplicate bool   `json:"duplicate,omitempty"`
}

// line is one line of the file: a letter or, with Replayed set, a replay.
type line struct {
	Letter
	Replayed *Replay `json:"replayed,omitempty"`
}

// withStatus is l as it stands after the replay r (nil: none).
func withStatus(l Letter, r *Replay) Letter {
	if r == nil {
		l.Status = StatusOpen
		return l
	}
	at := r.At
	l.Status, l.ReplayedAt, l.Position, l.Duplicate = StatusReplayed, &at, r.Position, r.Duplicate
	return l
}

// Bytes is the raw bytes of the letter.
func (l Letter) Bytes() []byte {
	if l.RawBase64 != nil {
		return l.RawBase64
	}
	return []byte(l.Raw)
}

// File keeps dead letters in a JSON-lines file, synced before Add returns.
type File struct {
	mu   sync.Mutex
	path string
	f    *os.File
	seq  uint64
	// replays are the letters replayed so far, by seq.
	replays map[uint64]Replay
	// seen are the letters kept, by sameKey: the same bad input seen again is not kept twice.
	seen map[[32]byte]bool
}

// sameKey identifies a letter as the same bad input: its source, its place there and its raw
// bytes. A broker's redelivery, the re-import of a file and the projector meeting again, after
// a crash, a log message it had already dead-lettered all give the same key. Letters without a
// place (Where) are never taken for one another.
func sameKey(l *Letter) ([32]byte, bool) {
	if l.Where == "" {
		return [32]byte{}, false
	}
	h := sha256.New()
	h.Write([]byte(l.Source))
	h.Write([]byte{0})
	h.Write([]byte(l.Where))
	h.Write([]byte{0})
	h.Write(l.Bytes())
	var k [32]byte
	h.Sum(k[:0])
	return k, true
}

// Open opens (creating) the dead-letter file at path.
func Open(path string) (*File, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("open dead letters: %w", err)
	}
	d := &File{path: path, replays: map[uint64]Replay{}, seen: map[[32]byte]bool{}}
	err := d.scanLines(func(ln *line) error {
		if ln.Replayed != nil {
			if _, done := d.replays[ln.Replayed.Seq]; !done {
				d.replays[ln.Replayed.Seq] = *ln.Replayed
			}
			return nil
		}
		d.seq = max(d.seq, ln.Seq)
		if k, ok := sameKey(&ln.Letter); ok {
			d.seen[k] = true
		}
		return nil
	})
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	d.f, err = os.OpenFile(path, os.O_CREATE|os.O_RDWR|os.O_APPEND, 0o640)
	if err != nil {
		return nil, fmt.Errorf("open dead letters: %w", err)
	}
	// Cut a last line that a crash left without its newline, so the next letter starts clean.
	if err := d.repair(); err != nil {
		d.f.Close()
		return nil, fmt.Errorf("repair dead letters %s: %w", path, err)
	}
	return d, nil
}

// repair truncates the file after its last newline.
func (d *File) repair() error {
	st, err := d.f.Stat()
	if err != nil || st.Size() == 0 {
		return err
	}
	last := make([]byte, 1)
	if _, err := d.f.ReadAt(last, st.Size()-1); err != nil {
		return err
	}
	if last[0] == '\n' {
		return nil
	}
	b, err := os.ReadFile(d.path)
	if err != nil {
		return err
	}
	return d.f.Truncate(int64(bytes.LastIndexByte(b, '\n') + 1))
}

// Add keeps letters, numbering them; they are durable when it returns. A letter that is the
// same bad input as one kept before (sameKey) is not kept again.
func (d *File) Add(_ context.Context, letters ...Letter) error {
	if len(letters) == 0 {
		return nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	var (
		buf  []byte
		keys [][32]byte
	)
	seq := d.seq
	for _, l := range letters {
		if k, ok := sameKey(&l); ok {
			if d.seen[k] || slices.Contains(keys, k) {
				continue // kept already
			}
			keys = append(keys, k)
		}
		seq++
		l.Seq = seq
		if l.Received.IsZero() {
			l.Received = time.Now().UTC()
		}
		// The lifecycle is in replay lines, never in the letter's own.
		l.Status, l.ReplayedAt, l.Position, l.Duplicate = "", nil, 0, false
		b, err := json.Marshal(l)
		if err != nil {
			return fmt.Errorf("dead letter %d: %w", l.Seq, err)
		}
		buf = append(append(buf, b...), '\n')
	}
	if len(buf) == 0 {
		return nil
	}
	if err := d.write(buf); err != nil {
		return err
	}
	d.seq = seq
	for _, k := range keys {
		d.seen[k] = true
	}
	return nil
}

// write appends buf and syncs; d.mu is held.
func (d *File) write(buf []byte) error {
	if _, err := d.f.Write(buf); err != nil {
		return fmt.Errorf("write dead letters to %s: %w", d.path, err)
	}
	if err := d.f.Sync(); err != nil {
		return fmt.Errorf("sync dead letters %s: %w", d.path, err)
	}
	return nil
}

// MarkReplayed records that letter r.Seq was replayed (r.At zero: now); it is durable when
// MarkReplayed returns. A letter that is not there is ErrNotFound; one already replayed,
// ErrReplayed (and the first replay stands).
func (d *File) MarkReplayed(_ context.Context, r Replay) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if r.Seq == 0 || r.Seq > d.seq {
		return fmt.Errorf("dead letter %d: %w", r.Seq, ErrNotFound)
	}
	if _, done := d.replays[r.Seq]; done {
		return fmt.Errorf("dead letter %d: %w", r.Seq, ErrReplayed)
	}
	if r.At.IsZero() {
		r.At = time.Now().UTC()
	}
	b, err := json.Marshal(struct {
		Replayed *Replay `json:"replayed"`
	}{&r})
	if err != nil {
		return fmt.Errorf("dead letter %d: %w", r.Seq, err)
	}
	if err := d.write(append(b, '\n')); err != nil {
		return err
	}
	d.replays[r.Seq] = r
	return nil
}

// NewLetter builds a letter from raw bytes.
func NewLetter(source, where, id string, raw []byte, reason error) Letter {
	l := Letter{Source: source, Where: where, ID: id, Reason: reason.Error()}
	if utf8.Valid(raw) {
		l.Raw = string(raw)
	} else {
		l.RawBase64 = raw
	}
	return l
}

// List calls fn for every letter, oldest first, with its status.
func (d *File) List(_ context.Context, fn func(Letter) error) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.scan(fn)
}

// Get is letter seq, with its status; ErrNotFound when there is none.
func (d *File) Get(_ context.Context, seq uint64) (Letter, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var (
		found Letter
		ok    bool
	)
	errFound := errors.New("found")
	if seq > 0 && seq <= d.seq {
		err := d.scan(func(l Letter) error {
			if l.Seq != seq {
				return nil
			}
			found, ok = l, true
			return errFound
		})
		if err != nil && !errors.Is(err, errFound) {
			return Letter{}, err
		}
	}
	if !ok {
		return Letter{}, fmt.Errorf("dead letter %d: %w (there are %d)", seq, ErrNotFound, d.seq)
	}
	return found, nil
}

// Count is how many letters were ever kept.
func (d *File) Count() uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.seq
}

// Open is how many letters are still open (kept and not replayed).
func (d *File) Open() uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := d.seq
	for seq := range d.replays {
		if seq <= d.seq {
			n--
		}
	}
	return n
}

// scan calls fn for every letter, with its status; d.mu is held (or d is being opened).
func (d *File) scan(fn func(Letter) error) error {
	return d.scanLines(func(ln *line) error {
		if ln.Replayed != nil {
			return nil
		}
		var r *Replay
		if rp, ok := d.replays[ln.Seq]; ok {
			r = &rp
		}
		return fn(withStatus(ln.Letter, r))
	})
}

// scanLines calls fn for every whole line of the file.
func (d *File) scanLines(fn func(*line) error) error {
	f, err := os.Open(d.path)
	if err != nil {
		return err
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 1<<16)
	for n := 1; ; n++ {
		b, err := r.ReadBytes('\n')
		if len(b) > 0 && b[len(b)-1] == '\n' {
			var ln line
			if jerr := json.Unmarshal(b, &ln); jerr != nil {
				return fmt.Errorf("%s:%d: %w", d.path, n, jerr)
			}
			if ferr := fn(&ln); ferr != nil {
				return ferr
			}
		}
		// A last line without its newline is a write cut short by a crash: not a letter.
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read %s: %w", d.path, err)
		}
	}
}

// Close closes the file.
func (d *File) Close() error { return d.f.Close() }
