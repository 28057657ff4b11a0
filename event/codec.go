package event

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"time"
	"unicode/utf8"

	cloudevents "github.com/cloudevents/sdk-go/v2/event"
)

// SpecVersion is the CloudEvents version whocould speaks.
const SpecVersion = "1.0"

// ContentType is the data content type of every whocould event.
const ContentType = "application/json"

// TimeLayout is how Marshal writes times: RFC 3339 in UTC, with nanoseconds.
const TimeLayout = "2006-01-02T15:04:05.000000000Z07:00"

func formatTime(t time.Time) string { return t.UTC().Format(TimeLayout) }

// SyntaxError is malformed JSON. Line and Column (1-based, in bytes) are counted from the start
// of the document given to Unmarshal; the Decoder reports them from the start of its input.
type SyntaxError struct {
	Offset int64 // bytes before the error
	Line   int
	Column int
	Msg    string
}

func (e *SyntaxError) Error() string {
	return fmt.Sprintf("malformed JSON at line %d, column %d: %s", e.Line, e.Column, e.Msg)
}

func newSyntaxError(b []byte, off int64, msg string) *SyntaxError {
	if off > int64(len(b)) {
		off = int64(len(b))
	}
	if off < 0 {
		off = 0
	}
	line, col := lineCol(b[:off])
	return &SyntaxError{Offset: off, Line: line, Column: col, Msg: msg}
}

// lineCol is the 1-based line and column of the byte just after b.
func lineCol(b []byte) (line, col int) {
	line = 1 + bytes.Count(b, []byte{'\n'})
	col = len(b) - bytes.LastIndexByte(b, '\n')
	return line, col
}

// outEvent is the structured CloudEvent Marshal writes.
type outEvent struct {
	SpecVersion     string  `json:"specversion"`
	ID              string  `json:"id"`
	Source          string  `json:"source"`
	Type            Type    `json:"type"`
	Time            string  `json:"time"`
	DataContentType string  `json:"datacontenttype"`
	Data            outData `json:"data"`
}

// outData writes Data with expires_at in TimeLayout (the shallower field hides Data's).
type outData struct {
	Data
	ExpiresAt string `json:"expires_at,omitempty"`
}

// wireEvent is what Unmarshal reads; unknown CloudEvents extension attributes are ignored.
type wireEvent struct {
	SpecVersion     string   `json:"specversion"`
	ID              string   `json:"id"`
	Source          string   `json:"source"`
	Type            string   `json:"type"`
	Time            string   `json:"time"`
	DataContentType string   `json:"datacontenttype"`
	Tenant          string   `json:"tenant"`
	Actor           string   `json:"actor"`
	Approval        string   `json:"approval"`
	Data            wireData `json:"data"`
}

// wireData reads Data with expires_at as text, so that a bad time is a FieldError.
type wireData struct {
	Data
	ExpiresAt *string `json:"expires_at"`
}

// Marshal writes e as a structured CloudEvent 1.0 (JSON). The event must be valid (Validate);
// times are written in UTC with nanoseconds, and the output is deterministic (attributes sorted).
func Marshal(e *Event) ([]byte, error) {
	if err := Validate(e); err != nil {
		return nil, err
	}
	return appendEvent(make([]byte, 0, marshalSize(e)), e), nil
}

// marshalSize is about the size of e marshalled (exactly, without escapes or attributes).
func marshalSize(e *Event) int {
	n := len(`{"specversion":"1.0","id":"","source":"","type":"","time":"2006-01-02T15:04:05.000000000Z","datacontenttype":"application/json","data":{}}`) +
		len(e.ID) + len(e.Source) + len(e.Type)
	d := &e.Data
	for i := range dataFieldNames {
		switch i {
		case 1:
			for k, v := range d.Attributes {
				n += len(k) + len(v) + 6
			}
			n += 2
		case 9:
			if d.ExpiresAt != nil {
				n += len(`"expires_at":"2006-01-02T15:04:05.000000000Z"`)
			}
			continue
		case 16:
			n += len(d.Change)
		default:
			n += len(stringField(d, i))
		}
		n += len(dataFieldNames[i]) + 4
	}
	return n
}

func marshalData(e *Event) ([]byte, error) {
	out := outEvent{
		SpecVersion:     SpecVersion,
		ID:              e.ID,
		Source:          e.Source,
		Type:            e.Type,
		Time:            formatTime(e.Time),
		DataContentType: ContentType,
		Data:            outData{Data: e.Data},
	}
	if e.Data.ExpiresAt != nil {
		out.Data.ExpiresAt = formatTime(*e.Data.ExpiresAt)
	}
	var buf bytes.Buffer
	buf.Grow(512)
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(&out); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte{'\n'}), nil
}

func encodeData(d *Data) ([]byte, error) {
	out := outData{Data: *d}
	if d.ExpiresAt != nil {
		out.ExpiresAt = formatTime(*d.ExpiresAt)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(&out); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte{'\n'}), nil
}

// Unmarshal decodes one structured CloudEvent (JSON) and validates it. `tenant`, `actor` and
// `approval` may come in data or as CloudEvents extension attributes (data wins); other
// extension attributes are ignored. Errors are a *SyntaxError for malformed JSON, otherwise a
// *FieldError.
func Unmarshal(b []byte) (Event, error) {
	e, err := unmarshal(b)
	if err != nil {
		return Event{}, err
	}
	return e, nil
}

// unmarshal is Unmarshal, returning what it decoded (the id at least) along with an error: the
// fast path (fastdecode.go) for a good event, the reference for anything else.
func unmarshal(b []byte) (Event, error) {
	if e, ok := unmarshalFast(b); ok {
		return e, nil
	}
	return unmarshalSlow(b)
}

// unmarshalSlow is the reference decoder, built on encoding/json: it gives every error its
// text, and FuzzFastVsSlow holds the fast path to it.
func unmarshalSlow(b []byte) (Event, error) {
	var w wireEvent
	jerr := json.Unmarshal(b, &w)
	var se *json.SyntaxError
	if errors.As(jerr, &se) {
		off := se.Offset
		if strings.HasPrefix(se.Error(), "invalid character") {
			off-- // json counts the bad byte as read
		}
		return Event{}, newSyntaxError(b, off, se.Error())
	}
	e := Event{ID: w.ID, Source: w.Source, Type: Type(w.Type)}
	if jerr != nil {
		var te *json.UnmarshalTypeError
		if !errors.As(jerr, &te) {
			// Not a syntax error, nor a type error: an input json cannot read at all.
			return e, newSyntaxError(b, 0, jerr.Error())
		}
	}
	seen, have, ferr := walkEnvelope(b)
	if ferr != nil {
		return e, ferr
	}
	if jerr != nil {
		return e, typeError(jerr)
	}
	if seen&seenSpecVersion == 0 {
		return e, fieldErr("specversion", `is missing (want "1.0")`)
	}
	if w.SpecVersion != SpecVersion {
		return e, fieldErr("specversion", "is "+quote(w.SpecVersion)+`; whocould takes CloudEvents "1.0"`)
	}
	if seen&seenContentType != 0 {
		if msg := checkContentType(w.DataContentType); msg != "" {
			return e, fieldErr("datacontenttype", msg)
		}
	}
	if seen&seenTime != 0 {
		t, msg := parseTime(w.Time)
		if msg != "" {
			return e, fieldErr("time", msg)
		}
		e.Time = t
	}
	if seen&seenData == 0 {
		if err := validateEnvelope(&e); err != nil {
			return e, err
		}
		return e, fieldErr("data", "is missing")
	}
	d, err := finishData(&w.Data)
	if err != nil {
		return e, err
	}
	e.Data = d
	if err := mergeExtensions(&e.Data, w.Tenant, w.Actor, w.Approval); err != nil {
		return e, err
	}
	if err := Validate(&e); err != nil {
		return e, err
	}
	return e, checkPresent(&e, have)
}

// checkPresent rejects data fields that were in the JSON, even empty, but are not fields of the
// event's type (Validate sees only the non-empty ones).
func checkPresent(e *Event, have fieldMask) error {
	if extra := have &^ specs[e.Type].allowed; extra != 0 {
		for i, n := range dataFieldNames {
			if extra&(1<<i) != 0 {
				return fieldErr("data."+n, "is not a field of "+string(e.Type)+" events")
			}
		}
	}
	return nil
}

// mergeExtensions fills tenant, actor and approval from CloudEvents extension attributes when
// data names none (data wins). The extension values are checked here, so that an error names
// the attribute the producer sent.
func mergeExtensions(d *Data, tenant, actor, approval string) error {
	if tenant != "" {
		if msg := checkString(cTenant, tenant); msg != "" {
			return fieldErr("tenant", msg)
		}
		if d.Tenant == "" {
			d.Tenant = tenant
		}
	}
	if actor != "" {
		if msg := checkString(cPrincipal, actor); msg != "" {
			return fieldErr("actor", msg)
		}
		if d.Actor == "" {
			d.Actor = actor
		}
	}
	if approval != "" {
		if msg := checkString(cToken, approval); msg != "" {
			return fieldErr("approval", msg)
		}
		if d.Approval == "" {
			d.Approval = approval
		}
	}
	return nil
}

// finishData turns decoded wire data into Data: parses expires_at, compacts change.
func finishData(w *wireData) (Data, error) {
	d := w.Data
	d.ExpiresAt = nil
	if len(d.Attributes) == 0 {
		d.Attributes = nil // {} is no attributes, as Marshal writes it
	}
	if w.ExpiresAt != nil {
		t, msg := parseTime(*w.ExpiresAt)
		if msg != "" {
			return d, fieldErr("data.expires_at", msg)
		}
		d.ExpiresAt = &t
	}
	if len(d.Change) > 0 {
		var buf bytes.Buffer
		if err := json.Compact(&buf, d.Change); err != nil {
			return d, fieldErr("data.change", "is not valid JSON")
		}
		d.Change = json.RawMessage(buf.Bytes())
	}
	return d, nil
}

func checkContentType(ct string) string {
	mt, _, _ := strings.Cut(ct, ";")
	mt = strings.ToLower(strings.TrimSpace(mt))
	if mt == "application/json" || mt == "text/json" || strings.HasSuffix(mt, "+json") && strings.HasPrefix(mt, "application/") {
		return ""
	}
	return "is " + quote(ct) + `; whocould events carry "application/json" data`
}

// parseTime parses an RFC 3339 time into UTC.
func parseTime(s string) (time.Time, string) {
	if s == "" {
		return time.Time{}, "is empty (want an RFC 3339 time like \"2026-01-06T02:14:00Z\")"
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	// time.Parse also takes a comma before the fraction, which RFC 3339 does not,
	// And a one-digit hour, which RFC 3339 does not either.
	if err != nil || len(s) < len("2006-01-02T15:04:05Z") || s[10] != 'T' || s[13] != ':' || strings.IndexByte(s, ',') >= 0 {
		why := ""
		var pe *time.ParseError
		if errors.As(err, &pe) && pe.Message != "" {
			why = " (" + strings.TrimPrefix(pe.Message, ": ") + ")"
		}
		return time.Time{}, "is " + quote(s) + why + `, not an RFC 3339 time like "2026-01-06T02:14:00Z"`
	}
	return t.UTC(), ""
}

// typeError turns an encoding/json type error into a FieldError.
func typeError(err error) error {
	var te *json.UnmarshalTypeError
	if !errors.As(err, &te) {
		return err
	}
	// The path names the embedded Data of wireData; drop it.
	field := strings.Replace(te.Field, "Data.", "", 1)
	want := "a string"
	switch te.Type.Kind() {
	case reflect.Struct, reflect.Map:
		want = "a JSON object"
	case reflect.Slice:
		if te.Type == reflect.TypeOf(json.RawMessage(nil)) {
			want = "JSON"
		}
	}
	if field == "" {
		field = "(event)"
		want = "a JSON object"
	}
	got := te.Value
	switch got {
	case "object":
		got = "an object"
	case "array":
		got = "an array"
	case "bool":
		got = "a boolean"
	default:
		got = "a " + got
	}
	return fieldErr(field, "must be "+want+", not "+got)
}

// ToCloudEvent is e as a CloudEvents SDK event (structured JSON data; tenant, actor and
// approval stay in data).
func ToCloudEvent(e *Event) cloudevents.Event {
	ce := cloudevents.New(cloudevents.CloudEventsVersionV1)
	ce.SetID(e.ID)
	ce.SetSource(e.Source)
	ce.SetType(string(e.Type))
	ce.SetTime(e.Time.UTC())
	ce.SetDataContentType(ContentType)
	data, err := encodeData(&e.Data)
	if err == nil {
		ce.DataEncoded = data
		ce.DataBase64 = false
	}
	return ce
}

// FromCloudEvent is the whocould event a CloudEvents SDK event carries, validated. `tenant`,
// `actor` and `approval` may be extension attributes (data wins).
func FromCloudEvent(ce cloudevents.Event) (Event, error) {
	if v := ce.SpecVersion(); v != SpecVersion {
		return Event{}, fieldErr("specversion", "is "+quote(v)+`; whocould takes CloudEvents "1.0"`)
	}
	e := Event{ID: ce.ID(), Source: ce.Source(), Type: Type(ce.Type()), Time: ce.Time()}
	if !e.Time.IsZero() {
		e.Time = e.Time.UTC()
	}
	if ct := ce.DataContentType(); ct != "" {
		if msg := checkContentType(ct); msg != "" {
			return Event{}, fieldErr("datacontenttype", msg)
		}
	}
	data := ce.Data()
	if len(bytes.TrimSpace(data)) == 0 || string(bytes.TrimSpace(data)) == "null" {
		if err := validateEnvelope(&e); err != nil {
			return Event{}, err
		}
		return Event{}, fieldErr("data", "is missing")
	}
	d, have, err := decodeData(data)
	if err != nil {
		return Event{}, err
	}
	e.Data = d
	var ext [3]string
	for i, name := range [...]string{"tenant", "actor", "approval"} {
		v, ok := ce.Extensions()[name]
		if !ok {
			continue
		}
		s, ok := v.(string)
		if !ok {
			return Event{}, fieldErr(name, fmt.Sprintf("must be a string, not %T", v))
		}
		ext[i] = s
	}
	if err := mergeExtensions(&e.Data, ext[0], ext[1], ext[2]); err != nil {
		return Event{}, err
	}
	if err := Validate(&e); err != nil {
		return Event{}, err
	}
	if err := checkPresent(&e, have); err != nil {
		return Event{}, err
	}
	return e, nil
}

// decodeData decodes a data object on its own.
func decodeData(b []byte) (Data, fieldMask, error) {
	var w wireData
	jerr := json.Unmarshal(b, &w)
	var se *json.SyntaxError
	if errors.As(jerr, &se) {
		return Data{}, 0, fieldErr("data", "is malformed JSON: "+se.Error())
	}
	if jerr != nil {
		var te *json.UnmarshalTypeError
		if !errors.As(jerr, &te) {
			return Data{}, 0, fieldErr("data", jerr.Error())
		}
	}
	wk := walker{b: b}
	wk.ws()
	if wk.i >= len(b) || b[wk.i] != '{' {
		return Data{}, 0, fieldErr("data", "must be a JSON object")
	}
	if ferr := wk.data(); ferr != nil {
		return Data{}, 0, ferr
	}
	if jerr != nil {
		ferr := typeError(jerr).(*FieldError)
		ferr.Field = "data." + ferr.Field
		return Data{}, 0, ferr
	}
	d, err := finishData(&w)
	return d, wk.have, err
}

// Keys seen by walkEnvelope.
const (
	seenSpecVersion = 1 << iota
	seenTime
	seenContentType
	seenData
)

// textFields are the data fields of free text, which may be "".
var textFields = dataFieldBit["reason"] | dataFieldBit["policy"]

// walkEnvelope checks, in a syntactically valid CloudEvent, what encoding/json lets through:
// keys must match exactly (encoding/json folds case), appear once, hold no null, carry valid
// UTF-8; data keys must be Data fields; extension attribute names must be CloudEvents names.
func walkEnvelope(b []byte) (seen int, have fieldMask, ferr *FieldError) {
	w := &walker{b: b}
	seen, ferr = walkEnvelopeWith(w)
	return seen, w.have, ferr
}

func walkEnvelopeWith(w *walker) (seen int, ferr *FieldError) {
	b := w.b
	w.ws()
	if w.i >= len(b) || b[w.i] != '{' {
		return 0, fieldErr("", "a CloudEvent must be a JSON object")
	}
	w.i++
	var keys [16]string
	nkeys := 0
	var more map[string]bool
	for {
		w.ws()
		if b[w.i] == '}' {
			return seen, nil
		}
		if b[w.i] == ',' {
			w.i++
			w.ws()
		}
		key, ok := w.key()
		if !ok {
			return seen, fieldErr(pathOf("", key), "has a key that is not valid UTF-8")
		}
		// Duplicates.
		dup := false
		for _, k := range keys[:nkeys] {
			if k == key {
				dup = true
			}
		}
		if more != nil && more[key] {
			dup = true
		}
		if dup {
			return seen, fieldErr(pathOf("", key), "appears twice")
		}
		if nkeys < len(keys) {
			keys[nkeys] = key
			nkeys++
		} else {
			if more == nil {
				more = make(map[string]bool)
			}
			more[key] = true
		}
		w.ws()
		w.i++ // ':'
		w.ws()
		c := b[w.i]
		if c == 'n' {
			return seen, fieldErr(pathOf("", key), "is null (leave it out instead)")
		}
		switch key {
		case "specversion", "id", "source", "type", "time", "datacontenttype", "dataschema", "subject",
			"tenant", "actor", "approval":
			switch key {
			case "specversion":
				seen |= seenSpecVersion
			case "time":
				seen |= seenTime
			case "datacontenttype":
				seen |= seenContentType
			}
			if c == '"' {
				if w.b[w.i+1] == '"' && (key == "tenant" || key == "actor" || key == "approval") {
					return seen, fieldErr(key, "is empty (leave it out instead)")
				}
				if !w.stringValid() {
					return seen, fieldErr(key, "is not valid UTF-8")
				}
				continue
			}
		case "data":
			seen |= seenData
			if c == '{' {
				if ferr := w.data(); ferr != nil {
					return seen, ferr
				}
				continue
			}
		case "data_base64":
			return seen, fieldErr("data_base64", "is not supported: send data as a JSON object")
		default:
			if !isExtensionName(key) {
				return seen, fieldErr(pathOf("", key), "is not a CloudEvents attribute name (lower-case letters and digits)")
			}
			if c == '{' || c == '[' {
				return seen, fieldErr(key, "is an extension attribute, which must be a string, number or boolean")
			}
			if c == '"' {
				if !w.stringValid() {
					return seen, fieldErr(key, "is not valid UTF-8")
				}
				continue
			}
		}
		w.skip()
	}
}

func isExtensionName(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// pathOf is the JSON path of key below prefix, quoted when the key is not a plain name.
func pathOf(prefix, key string) string {
	plain := key != "" && len(key) <= 64
	for i := 0; plain && i < len(key); i++ {
		c := key[i]
		plain = c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
	}
	switch {
	case plain && prefix == "":
		return key
	case plain:
		return prefix + "." + key
	}
	return prefix + "[" + quote(key) + "]"
}

// walker reads syntactically valid JSON.
type walker struct {
	b    []byte
	i    int
	have fieldMask // data fields present
}

func (w *walker) ws() {
	for w.i < len(w.b) {
		switch w.b[w.i] {
		case ' ', '\t', '\n', '\r':
			w.i++
		default:
			return
		}
	}
}

// str skips the string at w.i ('"'), returning its raw content and whether it has escapes.
func (w *walker) str() (raw []byte, escaped bool) {
	start := w.i + 1
	i := start
	for {
		c := w.b[i]
		if c == '"' {
			w.i = i + 1
			return w.b[start:i], escaped
		}
		if c == '\\' {
			escaped = true
			i++
		}
		i++
	}
}

// stringValid skips the string at w.i and reports whether its raw bytes are valid UTF-8.
func (w *walker) stringValid() bool {
	raw, _ := w.str()
	return utf8.Valid(raw)
}

// key reads an object key; ok is false when the key is not valid UTF-8 (key is then made
// valid, for the message).
func (w *walker) key() (key string, ok bool) {
	start := w.i
	raw, escaped := w.str()
	if !utf8.Valid(raw) {
		return string(bytes.ToValidUTF8(raw, []byte("\uFFFD"))), false
	}
	if !escaped {
		return string(raw), true
	}
	var s string
	_ = json.Unmarshal(w.b[start:w.i], &s)
	return s, true
}

// skip skips any value.
func (w *walker) skip() {
	depth := 0
	for {
		switch c := w.b[w.i]; c {
		case '"':
			w.str()
		case '{', '[':
			depth++
			w.i++
		case '}', ']':
			depth--
			w.i++
		default:
			// scalar: up to a delimiter
			for w.i < len(w.b) {
				c := w.b[w.i]
				if c == ',' || c == '}' || c == ']' || c == ' ' || c == '\t' || c == '\n' || c == '\r' {
					break
				}
				w.i++
			}
		}
		if depth == 0 {
			return
		}
		w.ws()
		if w.b[w.i] == ',' || w.b[w.i] == ':' {
			w.i++
			w.ws()
		}
	}
}

// data checks the data object at w.i.
func (w *walker) data() *FieldError {
	w.i++ // '{'
	for {
		w.ws()
		if w.b[w.i] == '}' {
			w.i++
			return nil
		}
		if w.b[w.i] == ',' {
			w.i++
			w.ws()
		}
		key, ok := w.key()
		if !ok {
			return fieldErr(pathOf("data", key), "has a key that is not valid UTF-8")
		}
		bit, ok := dataFieldBit[key]
		if !ok {
			return fieldErr(pathOf("data", key), "is not a field of any whocould event")
		}
		if w.have&bit != 0 {
			return fieldErr("data."+key, "appears twice")
		}
		w.have |= bit
		w.ws()
		w.i++ // ':'
		w.ws()
		c := w.b[w.i]
		switch {
		case c == 'n':
			return fieldErr("data."+key, "is null (leave it out instead)")
		case c == '"':
			if w.b[w.i+1] == '"' && bit&textFields == 0 {
				return fieldErr("data."+key, "is empty (leave it out instead)")
			}
			if !w.stringValid() {
				return fieldErr("data."+key, "is not valid UTF-8")
			}
			continue
		case key == "attributes" && c == '{':
			if ferr := w.attributes(); ferr != nil {
				return ferr
			}
			continue
		case key == "change":
			start := w.i
			w.skip()
			if !utf8.Valid(w.b[start:w.i]) {
				return fieldErr("data.change", "is not valid UTF-8")
			}
			continue
		}
		w.skip()
	}
}

func (w *walker) attributes() *FieldError {
	w.i++ // '{'
	var seen map[string]bool
	for {
		w.ws()
		if w.b[w.i] == '}' {
			w.i++
			return nil
		}
		if w.b[w.i] == ',' {
			w.i++
			w.ws()
		}
		key, ok := w.key()
		if !ok {
			return fieldErr(attributePath(key), "has a key that is not valid UTF-8")
		}
		if seen == nil {
			seen = make(map[string]bool)
		}
		if seen[key] {
			return fieldErr(attributePath(key), "appears twice")
		}
		seen[key] = true
		w.ws()
		w.i++ // ':'
		w.ws()
		switch w.b[w.i] {
		case 'n':
			return fieldErr(attributePath(key), `is null (an attribute value is a string; "" removes it)`)
		case '"':
			if !w.stringValid() {
				return fieldErr(attributePath(key), "is not valid UTF-8")
			}
			continue
		case '{':
			return fieldErr(attributePath(key), "must be a string, not an object")
		case '[':
			return fieldErr(attributePath(key), "must be a string, not an array")
		case 't', 'f':
			return fieldErr(attributePath(key), "must be a string, not a boolean")
		default:
			return fieldErr(attributePath(key), "must be a string, not a number")
		}
	}
}
