package event

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"strings"
	"sync"
	"testing"
	"testing/iotest"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

func fuzzSeeds(f *testing.F) {
	for _, e := range goodEvents() {
		b, err := Marshal(&e)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, c := range badEvents() {
		if b, err := marshalData(&c.e); err == nil {
			f.Add(b)
		}
	}
	for _, s := range []string{
		goodJSON,
		withJSON(`"type"`, `"tenant":"acme","actor":"user:bob","type"`),
		withJSON(`"id"`, `"ID"`),
		withJSON(`"member":"user:alice"`, `"member":"user:alice","member":"role:x"`),
		withJSON(`"user:alice"`, "\"user:\xffalice\""),
		withJSON(`"user:alice"`, `"user:\ud800alice"`),
		`{"specversion":"1.0","id":"e","source":"s","type":"approval.requested","time":"2026-01-06T02:14:00Z","data":{"request":"r","requester":"user:a","change":{"a":[1,{"b":null}]}}}`,
		`{"specversion":"1.0","id":"e","source":"s","type":"principal.created","time":"2026-01-06T02:14:00Z","data":{"principal":"user:a","attributes":{"x":"1","\u0078":"2"}}}`,
		`null`, `[]`, `{}`, `{"data":{}}`, `{"specversion":"1.0"`, "\xEF\xBB\xBF{}",
	} {
		f.Add([]byte(s))
	}
}

var (
	schemaOnce sync.Once
	schemaC    *jsonschema.Schema
)

// FuzzUnmarshal: Unmarshal never panics; what it accepts is valid, survives Marshal exactly,
// and the JSON Schema accepts too (the schema may be more lenient than Validate, never stricter).
func FuzzUnmarshal(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := Unmarshal(b)
		if err != nil {
			var fe *FieldError
			var se *SyntaxError
			if !errors.As(err, &fe) && !errors.As(err, &se) {
				t.Fatalf("error of type %T: %v", err, err)
			}
			if !reflect.DeepEqual(e, Event{}) {
				t.Fatalf("an event with the error")
			}
			return
		}
		if err := Validate(&e); err != nil {
			t.Fatalf("Unmarshal accepted an invalid event: %v", err)
		}
		out, err := Marshal(&e)
		if err != nil {
			t.Fatalf("Marshal: %v", err)
		}
		e2, err := Unmarshal(out)
		if err != nil {
			t.Fatalf("Unmarshal(Marshal(e)): %v\n%s", err, out)
		}
		if !reflect.DeepEqual(e, e2) {
			t.Fatalf("round trip:\n%#v\n%#v", e, e2)
		}
		e3, err := FromCloudEvent(ToCloudEvent(&e))
		if err != nil || !reflect.DeepEqual(e, e3) {
			t.Fatalf("through the SDK: %v\n%#v\n%#v", err, e, e3)
		}
		schemaOnce.Do(func() { schemaC = compileSchema(t) })
		inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("schema library cannot read accepted JSON: %v", err)
		}
		if err := schemaC.Validate(inst); err != nil {
			t.Fatalf("Unmarshal accepts what the schema rejects: %v\n%s", err, b)
		}
	})
}

// FuzzDecoder: the Decoder never panics or loops, decodes only valid events, numbers items in
// order, and gives the same answer whatever the read sizes.
func FuzzDecoder(f *testing.F) {
	fuzzSeeds(f)
	l1, l2 := line("e-1", "user:a"), line("e-2", "role:b")
	for _, s := range []string{
		l1 + "\n" + l2 + "\n",
		"[" + l1 + "," + l2 + "]",
		"[\n  " + l1 + ",\n  " + l2[:40] + "\n  " + l1 + "\n]",
		l1[:50] + "\n" + l1 + "\r\n\n" + `x` + "\n" + l1,
		"\xEF\xBB\xBF[" + l1 + " " + l1 + ",]",
		"[[1,\"a\",{}], true, \"x\\\"\"]",
		"{\n  \"id\": \"e\"\n{\"a\":[}]\n" + l1,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		run := func(r io.Reader) string {
			d := NewDecoder(r, "f", MaxEventBytes(512))
			var out strings.Builder
			last := -1
			for n := 0; ; n++ {
				if n > len(b)+2 {
					t.Fatalf("more items than bytes: the Decoder loops")
				}
				e, raw, err := d.Next()
				if err == io.EOF {
					return out.String()
				}
				var de *DecodeError
				switch {
				case errors.As(err, &de):
					if de.Line < 1 || de.Index < last || de.Index > n+1 {
						t.Fatalf("error at line %d index %d (last %d, n %d): %v", de.Line, de.Index, last, n, de)
					}
					last = de.Index
					out.WriteString(de.Error() + "\n")
				case err != nil:
					t.Fatalf("error %T %v", err, err)
				default:
					if err := Validate(&e); err != nil {
						t.Fatalf("decoded an invalid event: %v", err)
					}
					if !json.Valid(raw) || len(raw) > 512 {
						t.Fatalf("raw %q", raw)
					}
					out.WriteString("ok " + e.ID + "\n")
				}
			}
		}
		a := run(bytes.NewReader(b))
		if c := run(iotest.OneByteReader(bytes.NewReader(b))); a != c {
			t.Fatalf("read sizes change the answer:\n%s\n---\n%s", a, c)
		}
	})
}
