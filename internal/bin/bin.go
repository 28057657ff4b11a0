// Package bin is the compact binary encoding of whocould's snapshots: varints and
// length-prefixed strings, with the first error kept (check it once at the end).
package bin

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
)

// MaxLen bounds a length read from a snapshot, so a corrupt file cannot ask for absurd memory.
const MaxLen = 1 << 31

// Writer writes values; the first error sticks and later writes do nothing.
type Writer struct {
	w   *bufio.Writer
	buf []byte
	n   int64
	Err error
}

// NewWriter writes to w.
func NewWriter(w io.Writer) *Writer { return &Writer{w: bufio.NewWriterSize(w, 1<<20)} }

func (w *Writer) write(b []byte) {
	if w.Err != nil {
		return
	}
	n, err := w.w.Write(b)
	w.n += int64(n)
	w.Err = err
}

// Uvarint writes v.
func (w *Writer) Uvarint(v uint64) {
	w.buf = binary.AppendUvarint(w.buf[:0], v)
	w.write(w.buf)
}

// Varint writes v.
func (w *Writer) Varint(v int64) {
	w.buf = binary.AppendVarint(w.buf[:0], v)
	w.write(w.buf)
}

// Uint64 writes v in 8 bytes.
func (w *Writer) Uint64(v uint64) {
	w.buf = binary.BigEndian.AppendUint64(w.buf[:0], v)
	w.write(w.buf)
}

// String writes a length-prefixed string.
func (w *Writer) String(s string) {
	w.Uvarint(uint64(len(s)))
	if w.Err == nil {
		n, err := w.w.WriteString(s)
		w.n += int64(n)
		w.Err = err
	}
}

// Bytes writes a length-prefixed byte slice.
func (w *Writer) Bytes(b []byte) {
	w.Uvarint(uint64(len(b)))
	w.write(b)
}

// Flush flushes and returns the first error and the bytes written.
func (w *Writer) Flush() (int64, error) {
	if w.Err == nil {
		w.Err = w.w.Flush()
	}
	return w.n, w.Err
}

// Reader reads what Writer wrote; the first error sticks and later reads return zero values.
type Reader struct {
	r   *bufio.Reader
	Err error
}

// NewReader reads from r.
func NewReader(r io.Reader) *Reader { return &Reader{r: bufio.NewReaderSize(r, 1<<20)} }

func (r *Reader) fail(err error) {
	if r.Err == nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		r.Err = err
	}
}

// Uvarint reads an unsigned varint.
func (r *Reader) Uvarint() uint64 {
	if r.Err != nil {
		return 0
	}
	v, err := binary.ReadUvarint(r.r)
	if err != nil {
		r.fail(err)
	}
	return v
}

// Varint reads a signed varint.
func (r *Reader) Varint() int64 {
	if r.Err != nil {
		return 0
	}
	v, err := binary.ReadVarint(r.r)
	if err != nil {
		r.fail(err)
	}
	return v
}

// Uint64 reads 8 bytes.
func (r *Reader) Uint64() uint64 {
	var b [8]byte
	if r.Err != nil {
		return 0
	}
	if _, err := io.ReadFull(r.r, b[:]); err != nil {
		r.fail(err)
		return 0
	}
	return binary.BigEndian.Uint64(b[:])
}

// Len reads a length and checks it against limit.
func (r *Reader) Len(limit uint64) int {
	n := r.Uvarint()
	if n > limit || n > MaxLen {
		r.fail(fmt.Errorf("length %d over the limit %d", n, min(limit, MaxLen)))
		return 0
	}
	return int(n)
}

// Uint32 reads an unsigned varint that must fit 32 bits.
func (r *Reader) Uint32() uint32 {
	v := r.Uvarint()
	if v > math.MaxUint32 {
		r.fail(fmt.Errorf("value %d over 32 bits", v))
		return 0
	}
	return uint32(v)
}

// String reads a length-prefixed string.
func (r *Reader) String() string {
	b := r.Bytes()
	return string(b)
}

// Bytes reads a length-prefixed byte slice.
func (r *Reader) Bytes() []byte {
	n := r.Len(MaxLen)
	if r.Err != nil || n == 0 {
		return nil
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r.r, b); err != nil {
		r.fail(err)
		return nil
	}
	return b
}
