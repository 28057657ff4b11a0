// Package deadletter keeps what whocould could not take: events that did not decode, validate
// or adapt, with their raw bytes, where they came from and why, so that nothing is ever
// silently dropped and each can be replayed once fixed.
package deadletter

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
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
}

// Open opens (creating) the dead-letter file at path.
func Open(path string) (*File, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("open dead letters: %w", err)
	}
	d := &File{path: path}
	err := d.scan(func(l Letter) error { d.seq = max(d.seq, l.Seq); return nil })
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	d.f, err = os.OpenFile(path, os.O_CREATE|os.O_RDWR|os.O_APPEND, 0o640)
	if err != nil {
		return nil, fmt.Errorf("open dead letters: %w", err)
	}
	// Cut a last line that a crash left without its newline, so the next letter starts clean.
	if st, err := d.f.Stat(); err == nil && st.Size() > 0 {
		b, _ := os.ReadFile(path)
		if end := len(b); b[end-1] != '\n' {
			keep := bytes.LastIndexByte(b, '\n') + 1
			if err := d.f.Truncate(int64(keep)); err != nil {
				return nil, fmt.Errorf("repair dead letters %s: %w", path, err)
			}
		}
	}
	return d, nil
}

// Add keeps letters, numbering them; they are durable when it returns.
func (d *File) Add(_ context.Context, letters ...Letter) error {
	if len(letters) == 0 {
		return nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	var buf []byte
	for _, l := range letters {
		d.seq++
		l.Seq = d.seq
		if l.Received.IsZero() {
			l.Received = time.Now().UTC()
		}
		b, err := json.Marshal(l)
		if err != nil {
			return fmt.Errorf("dead letter %d: %w", l.Seq, err)
		}
		buf = append(append(buf, b...), '\n')
	}
	if _, err := d.f.Write(buf); err != nil {
		return fmt.Errorf("write dead letters to %s: %w", d.path, err)
	}
	if err := d.f.Sync(); err != nil {
		return fmt.Errorf("sync dead letters %s: %w", d.path, err)
	}
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

// List calls fn for every letter, oldest first.
func (d *File) List(_ context.Context, fn func(Letter) error) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.scan(fn)
}

// Count is how many letters were ever kept.
func (d *File) Count() uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.seq
}

func (d *File) scan(fn func(Letter) error) error {
	f, err := os.Open(d.path)
	if err != nil {
		return err
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 1<<16)
	for n := 1; ; n++ {
		line, err := r.ReadBytes('\n')
		if len(line) > 0 && line[len(line)-1] == '\n' {
			var l Letter
			if jerr := json.Unmarshal(line, &l); jerr != nil {
				return fmt.Errorf("%s:%d: %w", d.path, n, jerr)
			}
			if ferr := fn(l); ferr != nil {
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
