package event

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"testing"
	"testing/iotest"
)

// line is a one-line CloudEvent of membership.added with id and member.
func line(id, member string) string {
	return fmt.Sprintf(`{"specversion":"1.0","id":%q,"source":"//okta/acme","type":"membership.added","time":"2026-01-06T02:14:00Z","data":{"group":"group:eng","member":%q}}`, id, member)
}

func ids(evs []Event) string {
	var s []string
	for _, e := range evs {
		s = append(s, e.ID)
	}
	return strings.Join(s, ",")
}

func errTexts(bad []*DecodeError) []string {
	var s []string
	for _, b := range bad {
		s = append(s, b.Error())
	}
	return s
}

// decodeBoth decodes in with a plain reader and a one-byte-at-a-time reader (every buffer
// boundary), and checks they agree.
func decodeBoth(t *testing.T, in string, opts ...DecoderOption) ([]Event, []*DecodeError) {
	t.Helper()
	evs, bad, err := DecodeAll(strings.NewReader(in), "events.jsonl", opts...)
	if err != nil {
		t.Fatalf("DecodeAll: %v", err)
	}
	evs2, bad2, err := DecodeAll(iotest.OneByteReader(strings.NewReader(in)), "events.jsonl", opts...)
	if err != nil {
		t.Fatalf("DecodeAll one byte at a time: %v", err)
	}
	if ids(evs) != ids(evs2) || strings.Join(errTexts(bad), "\n") != strings.Join(errTexts(bad2), "\n") {
		t.Errorf("one byte at a time differs:\n%s %q\n%s %q", ids(evs), errTexts(bad), ids(evs2), errTexts(bad2))
	}
	return evs, bad
}

type wantErr struct {
	line  int
	index int
	text  string // the whole message
}

func checkErrs(t *testing.T, bad []*DecodeError, want []wantErr) {
	t.Helper()
	if len(bad) != len(want) {
		t.Fatalf("%d errors, want %d:\n%s", len(bad), len(want), strings.Join(errTexts(bad), "\n"))
	}
	for i, w := range want {
		if bad[i].Line != w.line || bad[i].Index != w.index || bad[i].Error() != w.text {
			t.Errorf("error %d: line %d index %d %q\nwant line %d index %d %q", i, bad[i].Line, bad[i].Index, bad[i].Error(), w.line, w.index, w.text)
		}
	}
}

func TestDecodeJSONLines(t *testing.T) {
	in := line("e-1", "user:a") + "\n\n" + line("e-2", "user:b") + "\n   \n" + line("e-3", "team:x")
	evs, bad := decodeBoth(t, in)
	if ids(evs) != "e-1,e-2,e-3" || len(bad) != 0 {
		t.Errorf("got %s %q", ids(evs), errTexts(bad))
	}
}

func TestDecodeArray(t *testing.T) {
	for name, in := range map[string]string{
		"compact": "[" + line("e-1", "user:a") + "," + line("e-2", "user:b") + "]",
		"pretty":  "[\n  " + line("e-1", "user:a") + ",\n  " + line("e-2", "user:b") + "\n]\n",
	} {
		evs, bad := decodeBoth(t, in)
		if ids(evs) != "e-1,e-2" || len(bad) != 0 {
			t.Errorf("%s: got %s %q", name, ids(evs), errTexts(bad))
		}
	}
	evs, bad := decodeBoth(t, " [ ] ")
	if len(evs) != 0 || len(bad) != 0 {
		t.Errorf("empty array: %v %q", evs, errTexts(bad))
	}
	evs, bad = decodeBoth(t, "")
	if len(evs) != 0 || len(bad) != 0 {
		t.Errorf("empty input: %v %q", evs, errTexts(bad))
	}
}

func TestDecodeSingleObjectPretty(t *testing.T) {
	in := `{
  "specversion": "1.0",
  "id": "e-1",
  "source": "//okta/acme",
  "type": "approval.requested",
  "time": "2026-01-06T02:14:00Z",
  "data": {
    "request": "CHG-1",
    "requester": "user:bob",
    "change": {
      "grants": [
        {"subject": "user:bob"}
      ]
    }
  }
}
`
	evs, bad := decodeBoth(t, in)
	if ids(evs) != "e-1" || len(bad) != 0 {
		t.Fatalf("got %s %q", ids(evs), errTexts(bad))
	}
	if string(evs[0].Data.Change) != `{"grants":[{"subject":"user:bob"}]}` {
		t.Errorf("change %s", evs[0].Data.Change)
	}
}

func TestDecodeMixedGoodAndBad(t *testing.T) {
	lines := []string{
		line("e-1", "user:a"),     // 1
		line("e-2", "role:admin"), // 2
		`{"specversion":"1.0","id":"e-3","source":"//okta/acme","type":"membership.added",`, // 3: cut short
		line("e-4", "user:d"), // 4
		`not json at all`,     // 5
		strings.Replace(line("e-6", "user:f"), `"group"`, `"group":"group:x","Group"`, 1),    // 6
		strings.Replace(line("e-7", "user:g"), `"member":"user:g"`, `"member":"user:g",`, 1), // 7
		line("e-8", "user:h"),                            // 8
		`{"specversion":"1.0","id":"e-9","source":"//a}`, // 9: string runs to the end of the line
		`[1, 2]`,               // 10: an array of non-events
		line("e-11", "user:k"), // 11
		strings.Replace(line("e-12", "user:l"), `"membership.added"`, `"membership.renamed"`, 1),                                                                                                                             // 12
		`{"specversion":"1.0","id":"e-13","source":"//okta/acme","type":"grant.removed","time":"2026-01-06T02:14:00Z","data":{"subject":"user:a","role":"role:r","resource":"db:prod","expires_at":"2027-01-01T00:00:00Z"}}`, // 13
		line("e-14", "user:n"), // 14
	}
	evs, bad := decodeBoth(t, strings.Join(lines, "\n")+"\n")
	if ids(evs) != "e-1,e-4,e-8,e-11,e-14" {
		t.Errorf("decoded %s", ids(evs))
	}
	checkErrs(t, bad, []wantErr{
		{2, 1, `events.jsonl:2: event "e-2": data.member: names a role, not a group or principal`},
		{3, 2, `events.jsonl:3: event "e-3": malformed JSON: the event is incomplete: line 4 starts a new one before it ends`},
		{5, 4, `events.jsonl:5:1: not a JSON object: the input is JSON lines (one CloudEvent object per line), a JSON array of CloudEvents, or one CloudEvent`},
		{6, 5, `events.jsonl:6: event "e-6": data.Group: is not a field of any whocould event`},
		{7, 6, `events.jsonl:7:158: event "e-7": malformed JSON: invalid character '}' looking for beginning of object key string`},
		{9, 8, `events.jsonl:9:47: event "e-9": malformed JSON: end of line inside a string (the event is cut short, or has a raw line break in a string)`},
		{10, 9, `events.jsonl:10:2: malformed JSON: an item is not a JSON object (a CloudEvent is an object)`},
		{10, 10, `events.jsonl:10:5: malformed JSON: an item is not a JSON object (a CloudEvent is an object)`},
		{12, 12, `events.jsonl:12: event "e-12": type: unknown event type "membership.renamed"`},
		{13, 13, `events.jsonl:13: event "e-13": data.expires_at: is not a field of grant.removed events`},
	})
	if bad[0].Field != "data.member" || bad[0].ID != "e-2" || string(bad[0].Raw) != lines[1] {
		t.Errorf("error fields: %+v", bad[0])
	}
	if string(bad[2].Raw) != lines[4]+"\n" && string(bad[2].Raw) != lines[4] {
		t.Errorf("raw of a bad line: %q", bad[2].Raw)
	}
}

func TestDecodeArrayErrors(t *testing.T) {
	// A bad event in a pretty array: the rest still decodes.
	in := "[\n  " + line("e-1", "user:a") + ",\n  " + line("e-2", "role:x") + ",\n  " + line("e-3", "user:c") + "\n]"
	evs, bad := decodeBoth(t, in)
	if ids(evs) != "e-1,e-3" {
		t.Errorf("decoded %s", ids(evs))
	}
	checkErrs(t, bad, []wantErr{{3, 1, `events.jsonl:3: event "e-2": data.member: names a role, not a group or principal`}})

	// A truncated array: the events before, then an error naming the line, then EOF.
	in = "[\n" + line("e-1", "user:a") + ",\n" + line("e-2", "user:b")[:60]
	evs, bad = decodeBoth(t, in)
	if ids(evs) != "e-1" {
		t.Errorf("decoded %s", ids(evs))
	}
	checkErrs(t, bad, []wantErr{{3, 1, `events.jsonl:3: event "e-2": malformed JSON: unexpected end of input: the event that starts on line 3 is incomplete`}})

	in = "[\n" + line("e-1", "user:a") + ",\n"
	evs, bad = decodeBoth(t, in)
	if ids(evs) != "e-1" {
		t.Errorf("decoded %s", ids(evs))
	}
	checkErrs(t, bad, []wantErr{{3, 1, `events.jsonl:3: malformed JSON: unexpected end of input: the array opened on line 1 is not closed`}})

	// Missing comma and trailing comma: reported, and nothing lost.
	in = "[\n" + line("e-1", "user:a") + "\n" + line("e-2", "user:b") + ",\n]"
	evs, bad = decodeBoth(t, in)
	if ids(evs) != "e-1,e-2" {
		t.Errorf("decoded %s", ids(evs))
	}
	checkErrs(t, bad, []wantErr{
		{3, 1, `events.jsonl:3:1: malformed JSON: missing , between items of the array`},
		{4, 2, `events.jsonl:4:1: malformed JSON: a , before ] (trailing comma)`},
	})

	// An element cut short in a one-per-line array.
	in = "[\n" + line("e-1", "user:a")[:50] + "\n,\n" + line("e-2", "user:b") + "\n]"
	evs, bad = decodeBoth(t, in)
	if ids(evs) != "e-2" {
		t.Errorf("decoded %s", ids(evs))
	}
	if len(bad) != 1 || !strings.Contains(bad[0].Error(), `events.jsonl:2:51: event "e-1": malformed JSON: end of line inside a string`) {
		t.Errorf("errors %q", errTexts(bad))
	}

	// Garbage between elements of a one-line array: reported; the rest cannot be read.
	in = "[" + line("e-1", "user:a") + " x " + line("e-2", "user:b") + "]"
	evs, bad = decodeBoth(t, in)
	if ids(evs) != "e-1" || len(bad) != 1 || !strings.Contains(bad[0].Error(), `unexpected 'x' after an item of the array (want , or ]); the rest of the array cannot be read`) {
		t.Errorf("got %s %q", ids(evs), errTexts(bad))
	}
}

func TestDecodeBOMAndCRLF(t *testing.T) {
	in := "\xEF\xBB\xBF" + line("e-1", "user:a") + "\r\n" + line("e-2", "role:b") + "\r\n\r\n" + line("e-3", "user:c") + "\r\n"
	evs, bad := decodeBoth(t, in)
	if ids(evs) != "e-1,e-3" {
		t.Errorf("decoded %s", ids(evs))
	}
	checkErrs(t, bad, []wantErr{{2, 1, `events.jsonl:2: event "e-2": data.member: names a role, not a group or principal`}})
	if bytes.HasSuffix(bad[0].Raw, []byte("\r")) {
		t.Errorf("raw has the CR: %q", bad[0].Raw)
	}

	in = "\xEF\xBB\xBF[\r\n" + line("e-1", "user:a") + "\r\n]\r\n"
	evs, bad = decodeBoth(t, in)
	if ids(evs) != "e-1" || len(bad) != 0 {
		t.Errorf("array with BOM and CRLF: %s %q", ids(evs), errTexts(bad))
	}
}

// hugeReader is a JSON line of n bytes (an event whose reason is huge) without holding it.
type hugeReader struct {
	head, tail string
	n, off     int
}

func (h *hugeReader) Read(p []byte) (int, error) {
	if h.off >= h.n {
		return 0, io.EOF
	}
	i := 0
	for i < len(p) && h.off < h.n {
		switch {
		case h.off < len(h.head):
			p[i] = h.head[h.off]
		case h.off >= h.n-len(h.tail):
			p[i] = h.tail[h.off-(h.n-len(h.tail))]
		default:
			p[i] = 'x'
		}
		i++
		h.off++
	}
	return i, nil
}

func TestDecodeHugeLine(t *testing.T) {
	const n = 10 << 20
	huge := &hugeReader{
		head: `{"specversion":"1.0","id":"e-big","source":"//opa","type":"decision","time":"2026-01-06T02:14:00Z","data":{"principal":"user:a","action":"db.read","resource":"db:prod","effect":"allow","reason":"`,
		tail: `"}}` + "\n", n: n,
	}
	r := io.MultiReader(strings.NewReader(line("e-1", "user:a")+"\n"), huge, strings.NewReader(line("e-3", "user:c")+"\n"))
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	evs, bad, err := DecodeAll(r, "events.jsonl")
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	if ids(evs) != "e-1,e-3" {
		t.Errorf("decoded %s", ids(evs))
	}
	checkErrs(t, bad, []wantErr{{2, 1, fmt.Sprintf("events.jsonl:2: event is %d bytes long, more than the limit of %d", n-1, DefaultMaxEventBytes)}})
	if len(bad[0].Raw) != rawPrefix || !bytes.HasPrefix(bad[0].Raw, []byte(huge.head)) {
		t.Errorf("raw of the huge line: %d bytes", len(bad[0].Raw))
	}
	// What is held is bounded by MaxEventBytes (the item buffer grows to it), not by the line.
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 8<<20 {
		t.Errorf("decoding a 10 MB line allocated %d bytes", alloc)
	}

	// A smaller limit.
	evs, bad = decodeBoth(t, line("e-1", "user:a")+"\n"+line("e-2", "user:b"), MaxEventBytes(100))
	if len(evs) != 0 || len(bad) != 2 || !strings.Contains(bad[0].Error(), "more than the limit of 100") {
		t.Errorf("MaxEventBytes(100): %s %q", ids(evs), errTexts(bad))
	}
}

type failingReader struct{ r io.Reader }

var errDisk = errors.New("disk on fire")

func (f *failingReader) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if err == io.EOF {
		return n, errDisk
	}
	return n, err
}

func TestDecodeReadError(t *testing.T) {
	in := line("e-1", "user:a") + "\n" + line("e-2", "user:b")[:40]
	d := NewDecoder(&failingReader{strings.NewReader(in)}, "x")
	if e, _, err := d.Next(); err != nil || e.ID != "e-1" {
		t.Fatalf("first: %v %v", e.ID, err)
	}
	if _, _, err := d.Next(); err != errDisk {
		t.Fatalf("read error: %v", err)
	}
	evs, bad, err := DecodeAll(&failingReader{strings.NewReader(line("e-1", "user:a") + "\n")}, "x")
	if err != errDisk || ids(evs) != "e-1" || len(bad) != 0 {
		t.Errorf("DecodeAll: %s %q %v", ids(evs), errTexts(bad), err)
	}
}

func TestDecodeRawAndEOF(t *testing.T) {
	d := NewDecoder(strings.NewReader(line("e-1", "user:a")+"\n"), "")
	_, raw, err := d.Next()
	if err != nil || string(raw) != line("e-1", "user:a") {
		t.Fatalf("raw %q %v", raw, err)
	}
	for i := 0; i < 2; i++ {
		if _, _, err := d.Next(); err != io.EOF {
			t.Fatalf("want io.EOF, got %v", err)
		}
	}
	_, bad, _ := DecodeAll(strings.NewReader(line("e-2", "role:x")), "")
	if len(bad) != 1 || bad[0].Error() != `line 1: event "e-2": data.member: names a role, not a group or principal` {
		t.Errorf("unnamed input: %q", errTexts(bad))
	}
}
