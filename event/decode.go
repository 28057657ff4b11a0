package event

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// DefaultMaxEventBytes bounds one event in a Decoder's input unless MaxEventBytes says otherwise.
const DefaultMaxEventBytes = 1 << 20

// maxDepth bounds JSON nesting, as encoding/json does.
const maxDepth = 10000

// rawPrefix is how much of an over-size item a DecodeError keeps in Raw.
const rawPrefix = 4096

// DecodeError is a bad item in a Decoder's input: malformed JSON, an over-size event, or an event
// that does not validate. The Decoder carries on with the next item after it.
type DecodeError struct {
	Name   string // the input's name, as given to NewDecoder
	Line   int    // 1-based line where the item starts (where the error is, for malformed JSON)
	Column int    // 1-based column in bytes for malformed JSON, else 0
	Index  int    // 0-based number of the item in the input (items decoded and items rejected)
	ID     string // the event's id, when it could be read
	Field  string // the JSON path of the bad field, when the error is about one
	Err    error  // *FieldError, *SyntaxError, or what else is wrong
	// Raw is the item as it was in the input (for a dead-letter store); for an over-size item,
	// its first 4 KiB.
	Raw []byte
}

func (e *DecodeError) Error() string {
	var b strings.Builder
	if e.Name != "" {
		b.WriteString(e.Name)
		b.WriteByte(':')
	} else {
		b.WriteString("line ")
	}
	b.WriteString(strconv.Itoa(e.Line))
	if e.Column > 0 {
		b.WriteByte(':')
		b.WriteString(strconv.Itoa(e.Column))
	}
	b.WriteString(": ")
	if e.ID != "" {
		b.WriteString("event ")
		b.WriteString(quote(e.ID))
		b.WriteString(": ")
	}
	var se *SyntaxError
	if errors.As(e.Err, &se) {
		b.WriteString("malformed JSON: ")
		b.WriteString(se.Msg)
	} else if e.Err != nil {
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

func (e *DecodeError) Unwrap() error { return e.Err }

// DecoderOption configures a Decoder.
type DecoderOption func(*Decoder)

// MaxEventBytes bounds the size of one event (default DefaultMaxEventBytes): a bigger one is a
// DecodeError, read past without being held in memory.
func MaxEventBytes(n int) DecoderOption {
	return func(d *Decoder) {
		if n > 0 {
			d.max = n
		}
	}
}

// Decoder reads CloudEvents from a stream holding a JSON array of them, JSON lines (one per line,
// blank lines skipped), or a single JSON object — told apart as it goes: at the top level, `[`
// opens an array of events, `{` starts one event, and anything else is a bad line. A bad item
// is reported as a *DecodeError and skipped; the next call goes on with the next item.
//
// Events are decoded with the fast path of Unmarshal (encoding/json into a private wire struct),
// not the CloudEvents SDK: the SDK's decoding is slower (BenchmarkSDKUnmarshal against
// BenchmarkUnmarshal) and stays well under 150k events/s on one core.
type Decoder struct {
	r    io.Reader
	name string
	max  int

	buf    []byte
	rp, wp int
	rerr   error // sticky error of r (io.EOF at the end)

	off       int64 // input offset of buf[rp]
	line      int   // line of buf[rp], 1-based
	lineStart int64 // input offset of the first byte of that line
	blank     bool  // only blanks since the start of the line
	started   bool

	index     int
	inArray   bool
	arrState  int
	arrayLine int
	done      bool

	item  []byte // the item being read, up to max bytes
	size  int64  // its full size
	stack []byte

	errMsg          string // a structural error found by scanValue
	errLine, errCol int
}

// States inside an array.
const (
	arrFirst = iota // after [
	arrElem         // after ,
	arrAfter        // after an element
)

// How scanValue ended.
type scanEnd int

const (
	endOK     scanEnd = iota
	endBroken         // structural error: d.errMsg at d.errLine:d.errCol; the bad byte is not consumed
	endCut            // a line starts with '{' at the item's column: the item is incomplete
	endEOF            // the input ended inside the value
)

// NewDecoder reads events from r; name (a file name, "-", "POST /v1/events") prefixes errors.
func NewDecoder(r io.Reader, name string, opts ...DecoderOption) *Decoder {
	d := &Decoder{r: r, name: name, max: DefaultMaxEventBytes, buf: make([]byte, 64<<10), line: 1, blank: true}
	for _, o := range opts {
		o(d)
	}
	return d
}

// Next returns the next event and its raw JSON, a *DecodeError for a bad item (with the raw
// item, and the next call carries on), io.EOF at the end, or the reader's error.
func (d *Decoder) Next() (Event, []byte, error) {
	for {
		if d.done {
			return Event{}, nil, io.EOF
		}
		c, ok := d.skipBlanks()
		if !ok {
			if d.rerr != io.EOF {
				return Event{}, nil, d.rerr
			}
			d.done = true
			if d.inArray {
				return Event{}, nil, d.errAt(d.line, 0, nil,
					&SyntaxError{Msg: fmt.Sprintf("unexpected end of input: the array opened on line %d is not closed", d.arrayLine)})
			}
			return Event{}, nil, io.EOF
		}
		if !d.inArray {
			switch c {
			case '[':
				d.advance()
				d.inArray, d.arrState, d.arrayLine = true, arrFirst, d.line
				continue
			case '{':
				return d.readItem(c)
			}
			return d.badLine()
		}
		switch d.arrState {
		case arrAfter:
			switch {
			case c == ',':
				d.advance()
				d.arrState = arrElem
				continue
			case c == ']':
				d.advance()
				d.inArray = false
				continue
			case c == '{':
				// A missing comma: say so, and read the item all the same.
				d.arrState = arrElem
				return Event{}, nil, d.errAt(d.line, d.col(), nil, &SyntaxError{Msg: "missing , between items of the array"})
			}
			return d.badInArray("unexpected " + quoteByte(c) + " after an item of the array (want , or ])")
		case arrFirst:
			if c == ']' {
				d.advance()
				d.inArray = false
				continue
			}
		case arrElem:
			if c == ']' {
				d.advance()
				d.inArray = false
				return Event{}, nil, d.errAt(d.line, d.col()-1, nil, &SyntaxError{Msg: "a , before ] (trailing comma)"})
			}
			if c == ',' {
				d.advance()
				return Event{}, nil, d.errAt(d.line, d.col()-1, nil, &SyntaxError{Msg: "an empty item (,,)"})
			}
		}
		return d.readItem(c)
	}
}

// DecodeAll decodes every event of r: the good ones, the bad items, and a read error if any.
func DecodeAll(r io.Reader, name string, opts ...DecoderOption) ([]Event, []*DecodeError, error) {
	d := NewDecoder(r, name, opts...)
	var evs []Event
	var bad []*DecodeError
	for {
		e, _, err := d.Next()
		if err == io.EOF {
			return evs, bad, nil
		}
		var de *DecodeError
		if errors.As(err, &de) {
			bad = append(bad, de)
			continue
		}
		if err != nil {
			return evs, bad, err
		}
		evs = append(evs, e)
	}
}

func quoteByte(c byte) string {
	if c >= 0x20 && c < 0x7f {
		return strconv.QuoteRune(rune(c))
	}
	return fmt.Sprintf("byte 0x%02x", c)
}

// errAt is a DecodeError that is not about one item (Index is that of the next item).
func (d *Decoder) errAt(line, col int, raw []byte, err error) *DecodeError {
	return &DecodeError{Name: d.name, Line: line, Column: col, Index: d.index, Err: err, Raw: raw}
}

func (d *Decoder) col() int { return int(d.off-d.lineStart) + 1 }

// fill reads more input into buf; false when there is none (d.rerr says why).
func (d *Decoder) fill() bool {
	if d.rp < d.wp {
		return true
	}
	d.rp, d.wp = 0, 0
	for tries := 0; d.rerr == nil && tries < 100; tries++ {
		n, err := d.r.Read(d.buf)
		d.wp = n
		if err != nil {
			d.rerr = err
		}
		if n > 0 {
			return true
		}
	}
	if d.rerr == nil {
		d.rerr = io.ErrNoProgress
	}
	return false
}

// peek is the next byte.
func (d *Decoder) peek() (byte, bool) {
	if d.rp == d.wp && !d.fill() {
		return 0, false
	}
	return d.buf[d.rp], true
}

// advance consumes the byte peek returned.
func (d *Decoder) advance() {
	c := d.buf[d.rp]
	d.rp++
	d.off++
	if c == '\n' {
		d.line++
		d.lineStart = d.off
		d.blank = true
	} else if c != ' ' && c != '\t' && c != '\r' {
		d.blank = false
	}
}

// skipBlanks skips white space, and a byte order mark at the start, and peeks at the next byte.
func (d *Decoder) skipBlanks() (byte, bool) {
	for {
		c, ok := d.peek()
		if !ok {
			return 0, false
		}
		if !d.started {
			d.started = true
			if c == 0xEF && d.hasPrefix("\xEF\xBB\xBF") {
				d.rp += 3
				d.off += 3
				d.lineStart = d.off
				continue
			}
		}
		switch c {
		case ' ', '\t', '\r', '\n':
			d.advance()
			continue
		}
		return c, true
	}
}

// hasPrefix reports whether the buffered input starts with s, reading more if needed.
func (d *Decoder) hasPrefix(s string) bool {
	for d.wp-d.rp < len(s) && d.rerr == nil {
		if d.rp > 0 {
			n := copy(d.buf, d.buf[d.rp:d.wp])
			d.rp, d.wp = 0, n
		}
		n, err := d.r.Read(d.buf[d.wp:])
		d.wp += n
		if err != nil {
			d.rerr = err
		}
	}
	return d.wp-d.rp >= len(s) && string(d.buf[d.rp:d.rp+len(s)]) == s
}

// keep adds consumed input to the item, up to max bytes.
func (d *Decoder) keep(b []byte) {
	d.size += int64(len(b))
	if room := d.max - len(d.item); room > 0 {
		if len(b) > room {
			b = b[:room]
		}
		d.item = append(d.item, b...)
	}
}

// rawItem is a copy of the item for the caller: all of it, or its first rawPrefix bytes when it
// is over-size.
func (d *Decoder) rawItem() []byte {
	b := d.item
	if d.size > int64(d.max) && len(b) > rawPrefix {
		b = b[:rawPrefix]
	}
	return append([]byte(nil), b...)
}

// readItem reads one item starting with c: an event (an object) or, in an array, any value.
func (d *Decoder) readItem(c byte) (Event, []byte, error) {
	line, col := d.line, d.col()
	indent := -1
	if d.blank {
		indent = col - 1
	}
	d.item, d.size = d.item[:0], 0
	idx := d.index
	d.index++
	var end scanEnd
	if c == '{' || c == '[' {
		end = d.scanValue(indent)
	} else {
		end = d.scanScalar()
	}
	bad := func(l, c int, err error) *DecodeError {
		return &DecodeError{Name: d.name, Line: l, Column: c, Index: idx, Err: err, Raw: d.rawItem()}
	}
	over := d.size > int64(d.max)
	var de *DecodeError
	switch end {
	case endOK:
		if d.inArray {
			d.arrState = arrAfter
		}
		if over {
			de = bad(line, 0, fmt.Errorf("event is %d bytes long, more than the limit of %d", d.size, d.max))
			break
		}
		raw := d.rawItem()
		if c != '{' {
			de = bad(line, col, &SyntaxError{Msg: "an item is not a JSON object (a CloudEvent is an object)"})
			break
		}
		ev, err := unmarshal(raw)
		if err == nil {
			return ev, raw, nil
		}
		de = &DecodeError{Name: d.name, Line: line, Index: idx, ID: ev.ID, Err: err, Raw: raw}
		if de.ID == "" {
			de.ID = guessID(raw)
		}
		var se *SyntaxError
		var fe *FieldError
		if errors.As(err, &se) {
			de.Line = line + se.Line - 1
			de.Column = se.Column
			if se.Line == 1 {
				de.Column += col - 1
			}
		} else if errors.As(err, &fe) {
			de.Field = fe.Field
		}
		return Event{}, raw, de
	case endCut:
		if d.inArray {
			d.arrState = arrElem
		}
		msg := fmt.Sprintf("the event is incomplete: line %d starts a new one before it ends", d.line)
		if over {
			msg = fmt.Sprintf("event is at least %d bytes long, more than the limit of %d, and incomplete", d.size, d.max)
		}
		de = bad(line, 0, &SyntaxError{Msg: msg})
	case endBroken:
		msg := d.errMsg
		if over {
			msg = fmt.Sprintf("event is at least %d bytes long, more than the limit of %d, and %s", d.size, d.max, msg)
		}
		de = bad(d.errLine, d.errCol, &SyntaxError{Msg: msg})
		if d.inArray {
			if !d.resyncArray(indent) {
				de.Err.(*SyntaxError).Msg += "; the rest of the array cannot be read"
			}
		} else {
			d.skipLine(false)
		}
	case endEOF:
		if d.rerr != io.EOF {
			return Event{}, nil, d.rerr
		}
		d.done = true
		msg := fmt.Sprintf("unexpected end of input: the event that starts on line %d is incomplete", line)
		if over {
			msg = fmt.Sprintf("event is at least %d bytes long, more than the limit of %d, and incomplete", d.size, d.max)
		}
		de = bad(d.line, 0, &SyntaxError{Msg: msg})
		if c != '{' && c != '[' {
			de.Line = line
		}
	}
	if !over {
		de.ID = guessID(de.Raw)
	}
	return Event{}, de.Raw, de
}

// scanValue reads the object or array at the current byte into the item. indent is the item's
// column (0-based) when only blanks precede it on its line, else -1: a line that starts with
// '{' at that column while the item is still open is taken as the start of the next item (the
// item was cut short, as happens to a line of JSON lines).
func (d *Decoder) scanValue(indent int) scanEnd {
	stack := d.stack[:0]
	defer func() { d.stack = stack[:0] }()
	inStr, esc := false, false
	sol, solCol := false, 0
	for {
		if d.rp == d.wp && !d.fill() {
			return endEOF
		}
		buf := d.buf[d.rp:d.wp]
		end := scanEnd(-1)
		i := 0
	loop:
		for ; i < len(buf); i++ {
			if inStr && !esc {
				// Skip the plain bytes of the string at once.
				for i < len(buf) && !strStop[buf[i]] {
					i++
				}
				if i == len(buf) {
					break
				}
			}
			c := buf[i]
			if inStr {
				if esc {
					esc = false
					continue
				}
				switch {
				case c == '\\':
					esc = true
				case c == '"':
					inStr = false
				case c == '\n':
					d.broken(int64(i), "end of line inside a string (the event is cut short, or has a raw line break in a string)")
					end = endBroken
					break loop
				}
				continue
			}
			if sol {
				switch c {
				case ' ', '\t', '\r':
					solCol++
					continue
				case '\n':
				default:
					sol = false
					if c == '{' && solCol == indent {
						end = endCut
						break loop
					}
				}
			}
			switch c {
			case '"':
				inStr = true
			case '{', '[':
				if len(stack) >= maxDepth {
					d.broken(int64(i), "nested too deeply")
					end = endBroken
					break loop
				}
				stack = append(stack, c)
			case '}', ']':
				open := byte('{')
				if c == ']' {
					open = '['
				}
				if len(stack) == 0 || stack[len(stack)-1] != open {
					d.broken(int64(i), "unexpected "+quoteByte(c))
					end = endBroken
					break loop
				}
				stack = stack[:len(stack)-1]
				if len(stack) == 0 {
					i++
					end = endOK
					break loop
				}
			case '\n':
				d.line++
				d.lineStart = d.off + int64(i) + 1
				sol, solCol = true, 0
			}
		}
		d.keep(buf[:i])
		d.rp += i
		d.off += int64(i)
		if end >= 0 {
			d.blank = end == endCut
			return end
		}
	}
}

// strStop are the bytes scanValue looks at inside a string.
var strStop = [256]bool{'"': true, '\\': true, '\n': true}

// broken records a structural error at buf[rp+i].
func (d *Decoder) broken(i int64, msg string) {
	d.errMsg = msg
	d.errLine = d.line
	d.errCol = int(d.off+i-d.lineStart) + 1
}

// scanScalar reads a string, number or literal item of an array.
func (d *Decoder) scanScalar() scanEnd {
	c, _ := d.peek()
	if c == '"' {
		d.keep(d.buf[d.rp : d.rp+1])
		d.advance()
		esc := false
		for {
			c, ok := d.peek()
			if !ok {
				return endEOF
			}
			if c == '\n' {
				d.broken(0, "end of line inside a string")
				return endBroken
			}
			d.keep(d.buf[d.rp : d.rp+1])
			d.advance()
			switch {
			case esc:
				esc = false
			case c == '\\':
				esc = true
			case c == '"':
				return endOK
			}
		}
	}
	for {
		c, ok := d.peek()
		if !ok {
			return endEOF
		}
		switch c {
		case ',', ']', '}', ' ', '\t', '\r', '\n', '[', '{', '"':
			if len(d.item) == 0 {
				d.broken(0, "unexpected "+quoteByte(c))
				return endBroken
			}
			return endOK
		}
		d.keep(d.buf[d.rp : d.rp+1])
		d.advance()
	}
}

// skipLine consumes input through the end of the current line, keeping it as the item when
// keep is set.
func (d *Decoder) skipLine(keep bool) {
	for {
		if d.rp == d.wp && !d.fill() {
			return
		}
		buf := d.buf[d.rp:d.wp]
		n := len(buf)
		nl := false
		for i, c := range buf {
			if c == '\n' {
				n, nl = i+1, true
				break
			}
		}
		if keep {
			d.keep(buf[:n])
		}
		d.rp += n
		d.off += int64(n)
		if nl {
			d.line++
			d.lineStart = d.off
			d.blank = true
			return
		}
	}
}

// badLine reports a top-level line that is not a JSON object or array and skips it.
func (d *Decoder) badLine() (Event, []byte, error) {
	line, col := d.line, d.col()
	d.item, d.size = d.item[:0], 0
	d.skipLine(true)
	idx := d.index
	d.index++
	raw := d.rawItem()
	for len(raw) > 0 && (raw[len(raw)-1] == '\n' || raw[len(raw)-1] == '\r') {
		raw = raw[:len(raw)-1]
	}
	return Event{}, raw, &DecodeError{Name: d.name, Line: line, Column: col, Index: idx, Raw: raw,
		Err: errors.New("not a JSON object: the input is JSON lines (one CloudEvent object per line), a JSON array of CloudEvents, or one CloudEvent")}
}

// badInArray reports unexpected input between the items of an array and skips to the next item.
func (d *Decoder) badInArray(msg string) (Event, []byte, error) {
	de := d.errAt(d.line, d.col(), nil, &SyntaxError{Msg: msg})
	indent := -1
	if d.blank {
		indent = d.col() - 1
	}
	d.advance()
	if !d.resyncArray(indent) {
		de.Err.(*SyntaxError).Msg += "; the rest of the array cannot be read"
	}
	return Event{}, nil, de
}

// resyncArray skips a broken part of an array to the next line that starts, at column indent,
// with '{' (the next item) or, at a smaller column, with ']' (the end of the array). Without an
// indent, or when there is no such line, the rest of the input is skipped and false returned.
func (d *Decoder) resyncArray(indent int) bool {
	for {
		if indent < 0 {
			for d.fill() {
				d.off += int64(d.wp - d.rp)
				d.rp = d.wp
			}
			d.done = true
			return false
		}
		d.skipLine(false)
		col := 0
		for {
			c, ok := d.peek()
			if !ok {
				d.done = true
				return false
			}
			if c == ' ' || c == '\t' || c == '\r' {
				d.advance()
				col++
				continue
			}
			if c == '{' && col == indent {
				d.arrState = arrElem
				return true
			}
			if c == ']' && col < indent {
				d.advance()
				d.inArray = false
				return true
			}
			break
		}
	}
}

// guessID finds the id of an event too broken to decode: the first `"id": "..."` in it.
func guessID(raw []byte) string {
	s := string(raw)
	for {
		i := strings.Index(s, `"id"`)
		if i < 0 {
			return ""
		}
		s = s[i+4:]
		t := strings.TrimLeft(s, " \t\r\n")
		if !strings.HasPrefix(t, ":") {
			continue
		}
		t = strings.TrimLeft(t[1:], " \t\r\n")
		if !strings.HasPrefix(t, `"`) {
			continue
		}
		t = t[1:]
		j := strings.IndexAny(t, `"\\`+"\n")
		if j <= 0 || t[j] != '"' {
			return ""
		}
		return t[:j]
	}
}
