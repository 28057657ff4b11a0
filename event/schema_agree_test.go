package event

import (
	"bytes"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

func compileSchema(t testing.TB) *jsonschema.Schema {
	t.Helper()
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(Schema))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource("whocould-events.schema.json", doc); err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile("whocould-events.schema.json")
	if err != nil {
		t.Fatalf("the schema does not compile: %v", err)
	}
	return s
}

// schemaGaps are the bad cases a JSON Schema cannot see; Validate is the reference for them.
var schemaGaps = map[string]bool{
	"source not uri":       true, // format uri-reference is an annotation only
	"source not canonical": true,
	"grant expiry before":  true, // expires_at after time
	"grant expiry equal":   true,
}

// TestSchemaAgreesWithValidate validates good and bad events with the schema and with Unmarshal
// and checks they agree.
func TestSchemaAgreesWithValidate(t *testing.T) {
	s := compileSchema(t)
	check := func(name string, b []byte, gap bool) {
		t.Helper()
		inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		serr := s.Validate(inst)
		_, gerr := Unmarshal(b)
		if (serr == nil) != (gerr == nil) {
			if gap {
				return
			}
			t.Errorf("%s: schema says %v, Unmarshal says %v\n%.300s", name, serr, gerr, b)
		} else if gap {
			t.Logf("%s: listed as a gap, but schema and Validate agree", name)
		}
	}
	for name, e := range goodEvents() {
		b, err := Marshal(&e)
		if err != nil {
			t.Fatal(err)
		}
		check(name, b, false)
	}
	for _, c := range badEvents() {
		b, err := marshalData(&c.e)
		if err != nil {
			continue // not expressible as JSON (change that is not JSON)
		}
		check(c.name, b, schemaGaps[c.name])
	}
	for _, in := range []struct{ name, json string }{
		{"good", goodJSON},
		{"extensions", withJSON(`"type"`, `"tenant":"acme","actor":"user:bob","approval":"CHG-1","traceparent":"00-ab","partitionkey":7,"type"`)},
		{"no specversion", strings.Replace(goodJSON, `"specversion":"1.0",`, "", 1)},
		{"specversion 0.3", withJSON(`"1.0"`, `"0.3"`)},
		{"upper key", withJSON(`"id"`, `"ID"`)},
		{"null source", withJSON(`"//okta/acme"`, `null`)},
		{"number id", withJSON(`"e-17"`, `17`)},
		{"data_base64", withJSON(`"data":`, `"data_base64":"e30=","x":`)},
		{"data null", withJSON(`{"group":"group:eng","member":"user:alice"}`, `null`)},
		{"unknown data field", withJSON(`"member"`, `"membr":"x","member"`)},
		{"data null field", withJSON(`"member":"user:alice"`, `"member":null`)},
		{"data empty field", withJSON(`"member":"user:alice"`, `"member":""`)},
		{"extra empty field", withJSON(`"member":"user:alice"`, `"member":"user:alice","reason":""`)},
		{"escaped RTL", withJSON(`"user:alice"`, `"user:\u202ealice"`)},
		{"bad time", withJSON(`"2026-01-06T02:14:00Z"`, `"2026-01-06 02:14"`)},
		{"offset time", withJSON(`"2026-01-06T02:14:00Z"`, `"2026-01-06T04:14:00.5+02:00"`)},
		{"content type", withJSON(`"data":`, `"datacontenttype":"text/xml","data":`)},
		{"content type json", withJSON(`"data":`, `"datacontenttype":"application/json; charset=utf-8","data":`)},
		{"ext object", withJSON(`"type"`, `"trace":{},"type"`)},
		{"ext tenant bad", withJSON(`"type"`, `"tenant":"a b","type"`)},
		{"ext actor role", withJSON(`"type"`, `"actor":"role:x","type"`)},
		{"actor on decision", `{"specversion":"1.0","id":"e","source":"s","type":"decision","time":"2026-01-06T02:14:00Z","actor":"user:x","data":{"principal":"user:a","action":"a","resource":"r:x","effect":"deny"}}`},
		{"attributes on disabled", `{"specversion":"1.0","id":"e","source":"s","type":"principal.disabled","time":"2026-01-06T02:14:00Z","data":{"principal":"user:a","attributes":{}}}`},
		{"attributes empty value", `{"specversion":"1.0","id":"e","source":"s","type":"principal.updated","time":"2026-01-06T02:14:00Z","data":{"principal":"user:a","attributes":{"dept":""}}}`},
		{"grant both", `{"specversion":"1.0","id":"e","source":"s","type":"grant.added","time":"2026-01-06T02:14:00Z","data":{"subject":"user:a","role":"role:r","action":"x","resource":"*"}}`},
		{"grant neither", `{"specversion":"1.0","id":"e","source":"s","type":"grant.added","time":"2026-01-06T02:14:00Z","data":{"subject":"user:a","resource":"*"}}`},
		{"grant dot star", `{"specversion":"1.0","id":"e","source":"s","type":"grant.added","time":"2026-01-06T02:14:00Z","data":{"subject":"user:a","action":"db.*","resource":"db:prod/*"}}`},
		{"change array", `{"specversion":"1.0","id":"e","source":"s","type":"approval.requested","time":"2026-01-06T02:14:00Z","data":{"request":"r","requester":"user:a","change":[1]}}`},
	} {
		check(in.name, []byte(in.json), false)
	}
}
