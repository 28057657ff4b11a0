package event

import (
	"encoding/json"
	"strings"
	"time"
	"unicode/utf16"
	"unicode/utf8"
)

// The fast path of Unmarshal: one pass over the bytes, no reflection, a handful of allocations.
//
// It only ever answers "this is a good event, and here it is": whenever it meets anything it is
// not sure of — malformed JSON, a null, a duplicate key, an unknown field, a value of the wrong
// type, an event that does not validate, or merely an unusual form (an escaped key, very deep
// nesting in change) — it gives up and unmarshalSlow, the encoding/json-based reference, decodes
// the input again and finds the exact error. So error texts are those of the reference by
// construction, and FuzzFastVsSlow checks that the two agree on what the fast path accepts.

// fastMaxDepth bounds nesting in data.change on the fast path (deeper goes the slow way).
const fastMaxDepth = 256

// span is the raw content of a JSON string (between the quotes) at b[s:e].
type span struct {
	s, e int32
	esc  bool // holds escapes
	set  bool
}

// Envelope attributes the fast path reads.
const (
	envSpecVersion = iota
	envID
	envSource
	envType
	envTime
	envContentType
	envTenant
	envActor
	envApproval
	envDataSchema
	envSubject
	envData
	nEnv
)

// fastWire is where the fast path notes what it found: spans into the input.
type fastWire struct {
	env  [nEnv]span
	data [len(dataFieldNames)]span // string fields and expires_at by bit; change: its raw value
	have fieldMask
	// attributes: key and value spans, in input order
	attrObj   span // the attributes object
	nAttrs    int
	attrBytes int
	nExt      int
	ext       [8]span // extension attribute names, to find duplicates
}

type fastParser struct {
	b []byte
	i int
}

func (p *fastParser) peek() byte {
	if p.i < len(p.b) {
		return p.b[p.i]
	}
	return 0
}

func (p *fastParser) ws() {
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

// colon reads the ':' after a key, with the blanks around it.
func (p *fastParser) colon() bool {
	p.ws()
	if p.peek() != ':' {
		return false
	}
	p.i++
	p.ws()
	return true
}

// next reads what follows a member or element: ',' (more: true) or the closing byte.
func (p *fastParser) next(closing byte) (more, ok bool) {
	p.ws()
	switch p.peek() {
	case ',':
		p.i++
		p.ws()
		return true, true
	case closing:
		p.i++
		return false, true
	}
	return false, false
}

func isHex(c byte) bool { return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' }

// str reads the string at p.i (which is '"'): well-formed JSON with valid UTF-8, or ok is false.
func (p *fastParser) str() (sp span, ok bool) {
	b := p.b
	i := p.i + 1
	sp.s = int32(i)
	for i < len(b) {
		c := b[i]
		switch {
		case c == '"':
			sp.e = int32(i)
			sp.set = true
			p.i = i + 1
			return sp, true
		case c == '\\':
			if i+1 >= len(b) {
				return sp, false
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+5 >= len(b) || !isHex(b[i+2]) || !isHex(b[i+3]) || !isHex(b[i+4]) || !isHex(b[i+5]) {
					return sp, false
				}
				i += 6
			default:
				return sp, false
			}
			sp.esc = true
		case c < 0x20:
			return sp, false
		case c < utf8.RuneSelf:
			i++
		default:
			r, size := utf8.DecodeRune(b[i:])
			if r == utf8.RuneError && size == 1 {
				return sp, false
			}
			i += size
		}
	}
	return sp, false
}

// number reads a JSON number.
func (p *fastParser) number() bool {
	b, i := p.b, p.i
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	default:
		return false
	}
	if i < len(b) && b[i] == '.' {
		i++
		if i >= len(b) || b[i] < '0' || b[i] > '9' {
			return false
		}
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i >= len(b) || b[i] < '0' || b[i] > '9' {
			return false
		}
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	}
	p.i = i
	return true
}

func (p *fastParser) literal(lit string) bool {
	if len(p.b)-p.i >= len(lit) && string(p.b[p.i:p.i+len(lit)]) == lit {
		p.i += len(lit)
		return true
	}
	return false
}

// value reads any JSON value.
func (p *fastParser) value(depth int) bool {
	switch p.peek() {
	case '{':
		if depth >= fastMaxDepth {
			return false
		}
		p.i++
		p.ws()
		if p.peek() == '}' {
			p.i++
			return true
		}
		for {
			if p.peek() != '"' {
				return false
			}
			if _, ok := p.str(); !ok || !p.colon() || !p.value(depth+1) {
				return false
			}
			more, ok := p.next('}')
			if !ok {
				return false
			}
			if !more {
				return true
			}
		}
	case '[':
		if depth >= fastMaxDepth {
			return false
		}
		p.i++
		p.ws()
		if p.peek() == ']' {
			p.i++
			return true
		}
		for {
			if !p.value(depth + 1) {
				return false
			}
			more, ok := p.next(']')
			if !ok {
				return false
			}
			if !more {
				return true
			}
		}
	case '"':
		_, ok := p.str()
		return ok
	case 't':
		return p.literal("true")
	case 'f':
		return p.literal("false")
	case 'n':
		return p.literal("null")
	}
	return p.number()
}

// envelope reads a whole CloudEvent.
func (p *fastParser) envelope(w *fastWire) bool {
	p.ws()
	if p.peek() != '{' {
		return false
	}
	p.i++
	p.ws()
	if p.peek() == '}' {
		return false // no specversion: an error
	}
	for {
		if p.peek() != '"' {
			return false
		}
		ksp, ok := p.str()
		if !ok || ksp.esc || !p.colon() {
			return false
		}
		key := p.b[ksp.s:ksp.e]
		c := p.peek()
		f := -1
		switch string(key) {
		case "specversion":
			f = envSpecVersion
		case "id":
			f = envID
		case "source":
			f = envSource
		case "type":
			f = envType
		case "time":
			f = envTime
		case "datacontenttype":
			f = envContentType
		case "tenant":
			f = envTenant
		case "actor":
			f = envActor
		case "approval":
			f = envApproval
		case "dataschema":
			f = envDataSchema
		case "subject":
			f = envSubject
		case "data":
			if w.env[envData].set || c != '{' || !p.data(w) {
				return false
			}
			w.env[envData].set = true
		default:
			if !isExtensionName(string(key)) || w.nExt == len(w.ext) {
				return false
			}
			for _, k := range w.ext[:w.nExt] {
				if string(p.b[k.s:k.e]) == string(key) {
					return false
				}
			}
			w.ext[w.nExt] = ksp
			w.nExt++
			switch c {
			case '"':
				if _, ok := p.str(); !ok {
					return false
				}
			case 't':
				if !p.literal("true") {
					return false
				}
			case 'f':
				if !p.literal("false") {
					return false
				}
			default:
				if !p.number() {
					return false
				}
			}
		}
		if f >= 0 {
			if w.env[f].set || c != '"' {
				return false
			}
			sp, ok := p.str()
			if !ok {
				return false
			}
			if sp.s == sp.e && (f == envTenant || f == envActor || f == envApproval) {
				return false
			}
			w.env[f] = sp
		}
		more, ok := p.next('}')
		if !ok {
			return false
		}
		if !more {
			break
		}
	}
	p.ws()
	return p.i == len(p.b)
}

// dataKey is the bit index of a data field name, -1 for none.
func dataKey(k []byte) int {
	switch string(k) {
	case "principal":
		return 0
	case "attributes":
		return 1
	case "group":
		return 2
	case "member":
		return 3
	case "role":
		return 4
	case "action":
		return 5
	case "includes":
		return 6
	case "subject":
		return 7
	case "resource":
		return 8
	case "expires_at":
		return 9
	case "effect":
		return 10
	case "reason":
		return 11
	case "policy":
		return 12
	case "request":
		return 13
	case "requester":
		return 14
	case "approver":
		return 15
	case "change":
		return 16
	case "actor":
		return 17
	case "approval":
		return 18
	case "tenant":
		return 19
	}
	return -1
}

const (
	bitAttributes = 1
	bitExpiresAt  = 9
	bitChange     = 16
)

// data reads the data object at p.i.
func (p *fastParser) data(w *fastWire) bool {
	p.i++ // '{'
	p.ws()
	if p.peek() == '}' {
		p.i++
		return true
	}
	for {
		if p.peek() != '"' {
			return false
		}
		ksp, ok := p.str()
		if !ok || ksp.esc || !p.colon() {
			return false
		}
		idx := dataKey(p.b[ksp.s:ksp.e])
		if idx < 0 {
			return false
		}
		bit := fieldMask(1) << idx
		if w.have&bit != 0 {
			return false
		}
		w.have |= bit
		switch idx {
		case bitAttributes:
			if p.peek() != '{' || !p.attributes(w) {
				return false
			}
		case bitChange:
			if p.peek() != '{' {
				return false
			}
			start := p.i
			if !p.value(0) {
				return false
			}
			w.data[idx] = span{s: int32(start), e: int32(p.i), set: true}
		default:
			if p.peek() != '"' {
				return false
			}
			sp, ok := p.str()
			if !ok || sp.s == sp.e && bit&textFields == 0 {
				return false
			}
			w.data[idx] = sp
		}
		more, ok := p.next('}')
		if !ok {
			return false
		}
		if !more {
			return true
		}
	}
}

// attributes reads the attributes object at p.i: string keys and values. unmarshalFast reads
// it again (attrs) to make the map.
func (p *fastParser) attributes(w *fastWire) bool {
	start := p.i
	p.i++ // '{'
	p.ws()
	if p.peek() == '}' {
		p.i++
		return true
	}
	for {
		if p.peek() != '"' {
			return false
		}
		k, ok := p.str()
		if !ok || !p.colon() || p.peek() != '"' {
			return false
		}
		v, ok := p.str()
		if !ok {
			return false
		}
		w.nAttrs++
		w.attrBytes += int(k.e-k.s) + int(v.e-v.s)
		more, ok := p.next('}')
		if !ok {
			return false
		}
		if !more {
			w.attrObj = span{s: int32(start), e: int32(p.i), set: true}
			return true
		}
	}
}

// unescape appends the decoded content of a JSON string (well-formed: str accepted it) to dst,
// as encoding/json decodes it (a lone surrogate becomes U+FFFD).
func unescape(dst *strings.Builder, raw []byte) {
	for i := 0; i < len(raw); {
		j := i
		for j < len(raw) && raw[j] != '\\' {
			j++
		}
		dst.Write(raw[i:j])
		if j == len(raw) {
			return
		}
		i = j + 1
		c := raw[i]
		i++
		switch c {
		case 'b':
			dst.WriteByte('\b')
		case 'f':
			dst.WriteByte('\f')
		case 'n':
			dst.WriteByte('\n')
		case 'r':
			dst.WriteByte('\r')
		case 't':
			dst.WriteByte('\t')
		case 'u':
			r := hex4(raw[i:])
			i += 4
			if utf16.IsSurrogate(r) {
				if i+6 <= len(raw) && raw[i] == '\\' && raw[i+1] == 'u' {
					if dec := utf16.DecodeRune(r, hex4(raw[i+2:])); dec != utf8.RuneError {
						dst.WriteRune(dec)
						i += 6
						break
					}
				}
				r = utf8.RuneError
			}
			dst.WriteRune(r)
		default: // " \ /
			dst.WriteByte(c)
		}
	}
}

func hex4(b []byte) rune {
	var r rune
	for _, c := range b[:4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c = c - 'a' + 10
		default:
			c = c - 'A' + 10
		}
		r = r<<4 | rune(c)
	}
	return r
}

// strs materialises the strings of an event in one buffer (grown to hold them all at once).
type strs struct {
	b  []byte
	sb strings.Builder
}

func (t *strs) add(sp span) string {
	start := t.sb.Len()
	if sp.esc {
		unescape(&t.sb, t.b[sp.s:sp.e])
	} else {
		t.sb.Write(t.b[sp.s:sp.e])
	}
	return t.sb.String()[start:]
}

// unmarshalFast decodes and validates a good event; ok is false when b is anything else (or
// merely something the fast path does not handle).
func unmarshalFast(b []byte) (Event, bool) {
	var w fastWire
	p := fastParser{b: b}
	if !p.envelope(&w) || !w.env[envData].set {
		return Event{}, false
	}
	// specversion: exactly "1.0".
	if sv := w.env[envSpecVersion]; !sv.set || string(b[sv.s:sv.e]) != SpecVersion {
		return Event{}, false
	}
	if ct := w.env[envContentType]; ct.set {
		if ct.esc || checkContentType(string(b[ct.s:ct.e])) != "" {
			return Event{}, false
		}
	}
	var e Event
	tm := w.env[envTime]
	if !tm.set || tm.esc {
		return Event{}, false
	}
	t, ok := parseTimeBytes(b[tm.s:tm.e])
	if !ok {
		return Event{}, false
	}
	e.Time = t
	d := &e.Data
	if ex := w.data[bitExpiresAt]; ex.set {
		if ex.esc {
			return Event{}, false
		}
		t, ok := parseTimeBytes(b[ex.s:ex.e])
		if !ok {
			return Event{}, false
		}
		d.ExpiresAt = &t
	}

	// The strings, in one buffer.
	total := w.attrBytes
	for _, f := range [...]int{envID, envSource, envType, envTenant, envActor, envApproval} {
		total += int(w.env[f].e - w.env[f].s)
	}
	for i, sp := range w.data {
		if i != bitExpiresAt && i != bitChange {
			total += int(sp.e - sp.s)
		}
	}
	ss := strs{b: b}
	ss.sb.Grow(total)
	var ext [nEnv]string
	for _, f := range [...]int{envID, envSource, envType, envTenant, envActor, envApproval} {
		if sp := w.env[f]; sp.set {
			ext[f] = ss.add(sp)
		}
	}
	e.ID, e.Source, e.Type = ext[envID], ext[envSource], Type(ext[envType])
	for i, sp := range w.data {
		if sp.set && i != bitExpiresAt && i != bitChange {
			*dataString(d, i) = ss.add(sp)
		}
	}
	if w.nAttrs > 0 {
		m := make(map[string]string, w.nAttrs)
		// The object was read once already: it is well-formed, of strings.
		p := fastParser{b: b[:w.attrObj.e], i: int(w.attrObj.s) + 1}
		for range w.nAttrs {
			p.ws()
			ksp, _ := p.str()
			p.colon()
			vsp, _ := p.str()
			p.next('}')
			k := ss.add(ksp)
			if _, dup := m[k]; dup {
				return Event{}, false
			}
			m[k] = ss.add(vsp)
		}
		d.Attributes = m
	}
	if ch := w.data[bitChange]; ch.set {
		d.Change = compactValid(b[ch.s:ch.e])
	}
	if err := mergeExtensions(d, ext[envTenant], ext[envActor], ext[envApproval]); err != nil {
		return Event{}, false
	}
	if err := Validate(&e); err != nil {
		return Event{}, false
	}
	if err := checkPresent(&e, w.have); err != nil {
		return Event{}, false
	}
	return e, true
}

// dataString is the string field of d with bit index i.
func dataString(d *Data, i int) *string {
	switch i {
	case 0:
		return &d.Principal
	case 2:
		return &d.Group
	case 3:
		return &d.Member
	case 4:
		return &d.Role
	case 5:
		return &d.Action
	case 6:
		return &d.Includes
	case 7:
		return &d.Subject
	case 8:
		return &d.Resource
	case 10:
		return &d.Effect
	case 11:
		return &d.Reason
	case 12:
		return &d.Policy
	case 13:
		return &d.Request
	case 14:
		return &d.Requester
	case 15:
		return &d.Approver
	case 17:
		return &d.Actor
	case 18:
		return &d.Approval
	case 19:
		return &d.Tenant
	}
	panic("event: no string field at bit " + string(rune('0'+i)))
}

// compactValid is json.Compact of valid JSON: a copy without the blanks outside strings.
func compactValid(b []byte) json.RawMessage { return appendCompact(make([]byte, 0, len(b)), b) }

// parseTimeBytes is parseTime for a good time: the common form quickly, anything else through
// parseTime; ok is false for a bad time.
func parseTimeBytes(b []byte) (time.Time, bool) {
	if t, ok := fastRFC3339(b); ok {
		return t, true
	}
	t, msg := parseTime(string(b))
	return t, msg == ""
}

func digits(b []byte) (int, bool) {
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

// fastRFC3339 parses YYYY-MM-DDTHH:MM:SS[.F{1,9}](Z|±HH:MM) as time.Parse(time.RFC3339Nano)
// does, into UTC; ok is false for anything else (which may still be a good time).
func fastRFC3339(b []byte) (time.Time, bool) {
	if len(b) < 20 || b[4] != '-' || b[7] != '-' || b[10] != 'T' || b[13] != ':' || b[16] != ':' {
		return time.Time{}, false
	}
	year, ok1 := digits(b[0:4])
	month, ok2 := digits(b[5:7])
	day, ok3 := digits(b[8:10])
	hour, ok4 := digits(b[11:13])
	min, ok5 := digits(b[14:16])
	sec, ok6 := digits(b[17:19])
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6) || month < 1 || month > 12 || day < 1 ||
		day > daysIn(month, year) || hour > 23 || min > 59 || sec > 59 {
		return time.Time{}, false
	}
	b = b[19:]
	nsec := 0
	if len(b) >= 2 && b[0] == '.' {
		n := 1
		for n < len(b) && b[n] >= '0' && b[n] <= '9' {
			n++
		}
		if n == 1 || n > 10 {
			return time.Time{}, false
		}
		nsec, _ = digits(b[1:n])
		for k := n - 1; k < 9; k++ {
			nsec *= 10
		}
		b = b[n:]
	}
	off := 0
	switch {
	case len(b) == 1 && b[0] == 'Z':
	case len(b) == 6 && (b[0] == '+' || b[0] == '-') && b[3] == ':':
		hh, ok1 := digits(b[1:3])
		mm, ok2 := digits(b[4:6])
		if !ok1 || !ok2 || hh > 23 || mm > 59 {
			return time.Time{}, false
		}
		off = (hh*60 + mm) * 60
		if b[0] == '-' {
			off = -off
		}
	default:
		return time.Time{}, false
	}
	t := time.Date(year, time.Month(month), day, hour, min, sec, nsec, time.UTC)
	if off != 0 {
		t = t.Add(-time.Duration(off) * time.Second)
	}
	return t, true
}

func daysIn(month, year int) int {
	switch month {
	case 2:
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}
