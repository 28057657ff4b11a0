package event

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2/event"
)

func TestMarshalFormat(t *testing.T) {
	e := goodEvents()["grant.added role"]
	b, err := Marshal(&e)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"specversion":"1.0","id":"e-1","source":"//okta/acme","type":"grant.added","time":"2026-01-06T02:14:00.123456000Z",` +
		`"datacontenttype":"application/json","data":{"role":"role:db-owner","subject":"group:eng","resource":"db:prod",` +
		`"actor":"user:bob","approval":"CHG-7","expires_at":"2026-01-06T03:14:00.123456000Z"}}`
	if string(b) != want {
		t.Errorf("Marshal =\n%s\nwant\n%s", b, want)
	}
}

func TestMarshalInvalid(t *testing.T) {
	e := goodEvents()["membership.added"]
	e.Data.Member = "role:x"
	if _, err := Marshal(&e); err == nil || !strings.Contains(err.Error(), "data.member: names a role") {
		t.Errorf("Marshal of a bad event = %v", err)
	}
}

func TestMarshalUTCAndNanos(t *testing.T) {
	e := goodEvents()["group.created"]
	e.Time = time.Date(2026, 1, 6, 4, 14, 0, 123456789, time.FixedZone("EET", 2*3600))
	b, err := Marshal(&e)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"time":"2026-01-06T02:14:00.123456789Z"`) {
		t.Errorf("time not in UTC with nanoseconds: %s", b)
	}
	got, err := Unmarshal(b)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Time.Equal(e.Time) || got.Time.Location() != time.UTC || got.Time.Nanosecond() != 123456789 {
		t.Errorf("time %v, want %v in UTC", got.Time, e.Time)
	}
}

func TestRoundTrip(t *testing.T) {
	for name, e := range goodEvents() {
		b, err := Marshal(&e)
		if err != nil {
			t.Fatalf("%s: Marshal: %v", name, err)
		}
		got, err := Unmarshal(b)
		if err != nil {
			t.Fatalf("%s: Unmarshal(%s): %v", name, b, err)
		}
		if !reflect.DeepEqual(got, e) {
			t.Errorf("%s: Unmarshal(Marshal(e)) =\n%#v\nwant\n%#v", name, got, e)
		}
		b2, _ := Marshal(&got)
		if string(b2) != string(b) {
			t.Errorf("%s: Marshal not stable:\n%s\n%s", name, b, b2)
		}

		ce := ToCloudEvent(&e)
		if err := ce.Validate(); err != nil {
			t.Errorf("%s: ToCloudEvent is not a valid CloudEvent: %v", name, err)
		}
		got, err = FromCloudEvent(ce)
		if err != nil {
			t.Fatalf("%s: FromCloudEvent: %v", name, err)
		}
		if !reflect.DeepEqual(got, e) {
			t.Errorf("%s: FromCloudEvent(ToCloudEvent(e)) =\n%#v\nwant\n%#v", name, got, e)
		}

		// Through the SDK's own JSON, both ways.
		sdkJSON, err := json.Marshal(ce)
		if err != nil {
			t.Fatal(err)
		}
		got, err = Unmarshal(sdkJSON)
		if err != nil {
			t.Fatalf("%s: Unmarshal(SDK JSON %s): %v", name, sdkJSON, err)
		}
		if !reflect.DeepEqual(got, e) {
			t.Errorf("%s: Unmarshal(SDK JSON) =\n%#v\nwant\n%#v", name, got, e)
		}
		var ce2 cloudevents.Event
		if err := json.Unmarshal(b, &ce2); err != nil {
			t.Fatalf("%s: SDK cannot read Marshal's output: %v", name, err)
		}
		got, err = FromCloudEvent(ce2)
		if err != nil {
			t.Fatalf("%s: FromCloudEvent(SDK-read): %v", name, err)
		}
		if !reflect.DeepEqual(got, e) {
			t.Errorf("%s: FromCloudEvent(SDK read of Marshal) =\n%#v\nwant\n%#v", name, got, e)
		}
	}
}

const goodJSON = `{"specversion":"1.0","id":"e-17","source":"//okta/acme","type":"membership.added","time":"2026-01-06T02:14:00Z","data":{"group":"group:eng","member":"user:alice"}}`

// withJSON edits goodJSON textually.
func withJSON(old, new string) string {
	if !strings.Contains(goodJSON, old) {
		panic(old)
	}
	return strings.Replace(goodJSON, old, new, 1)
}

func TestUnmarshalExtensions(t *testing.T) {
	e, err := Unmarshal([]byte(withJSON(`"type"`, `"tenant":"acme","actor":"user:bob","approval":"CHG-1","traceparent":"00-ab","partitionkey":7,"sampled":true,"type"`)))
	if err != nil {
		t.Fatal(err)
	}
	if e.Data.Tenant != "acme" || e.Data.Actor != "user:bob" || e.Data.Approval != "CHG-1" {
		t.Errorf("extensions not normalised into data: %+v", e.Data)
	}
	// data wins
	e, err = Unmarshal([]byte(withJSON(`"type"`, `"tenant":"other","actor":"user:eve","type"`)[:0] +
		strings.Replace(withJSON(`"type"`, `"tenant":"other","actor":"user:eve","type"`), `"member":"user:alice"`, `"member":"user:alice","tenant":"acme","actor":"user:bob"`, 1)))
	if err != nil {
		t.Fatal(err)
	}
	if e.Data.Tenant != "acme" || e.Data.Actor != "user:bob" {
		t.Errorf("data does not win over extensions: %+v", e.Data)
	}
	if e.TenantOrDefault() != "acme" {
		t.Errorf("tenant %q", e.TenantOrDefault())
	}
}

func TestUnmarshalErrors(t *testing.T) {
	cases := []struct {
		name, in, field, msg string
	}{
		{"syntax", `{"specversion":"1.0",`, "", "malformed JSON at line 1, column 22: unexpected end of JSON input"},
		{"syntax line", "{\n\"id\": x}", "", "malformed JSON at line 2, column 7: invalid character 'x'"},
		{"not object", `[1]`, "", "a CloudEvent must be a JSON object"},
		{"null", `null`, "", "a CloudEvent must be a JSON object"},
		{"no specversion", strings.Replace(goodJSON, `"specversion":"1.0",`, "", 1), "specversion", "is missing"},
		{"specversion 0.3", withJSON(`"1.0"`, `"0.3"`), "specversion", `is "0.3"`},
		{"case folded key", withJSON(`"id"`, `"ID"`), "ID", "is not a CloudEvents attribute name"},
		{"kelvin key", withJSON(`"source"`, `"ſource"`), `["ſource"]`, "is not a CloudEvents attribute name"},
		{"duplicate id", withJSON(`"id":"e-17"`, `"id":"e-17","id":"e-18"`), "id", "appears twice"},
		{"null source", withJSON(`"//okta/acme"`, `null`), "source", "is null"},
		{"number id", withJSON(`"e-17"`, `17`), "id", "must be a string, not a number"},
		{"data_base64", withJSON(`"data":`, `"data_base64":"e30=","x":`), "data_base64", "is not supported"},
		{"no data", strings.Replace(goodJSON, `,"data":{"group":"group:eng","member":"user:alice"}`, "", 1), "data", "is missing"},
		{"data null", withJSON(`{"group":"group:eng","member":"user:alice"}`, `null`), "data", "is null"},
		{"data string", withJSON(`{"group":"group:eng","member":"user:alice"}`, `"x"`), "data", "must be a JSON object, not a string"},
		{"unknown data field", withJSON(`"member"`, `"membr":"x","member"`), "data.membr", "is not a field of any whocould event"},
		{"data case folded", withJSON(`"member"`, `"Member"`), "data.Member", "is not a field of any whocould event"},
		{"data duplicate", withJSON(`"member":"user:alice"`, `"member":"user:alice","member":"role:x"`), "data.member", "appears twice"},
		{"data null field", withJSON(`"member":"user:alice"`, `"member":null`), "data.member", "is null"},
		{"data empty field", withJSON(`"member":"user:alice"`, `"member":""`), "data.member", "is empty"},
		{"data number", withJSON(`"user:alice"`, `7`), "data.member", "must be a string, not a number"},
		{"member role", withJSON(`"user:alice"`, `"role:admin"`), "data.member", "names a role, not a group or principal"},
		{"extra empty field", withJSON(`"member":"user:alice"`, `"member":"user:alice","reason":""`), "data.reason", "is not a field of membership.added events"},
		{"invalid utf8", withJSON(`"user:alice"`, "\"user:\xffalice\""), "data.member", "is not valid UTF-8"},
		{"escaped NUL", withJSON(`"user:alice"`, `"user:\u0000alice"`), "data.member", `forbidden character '\x00'`},
		{"escaped RTL", withJSON(`"user:alice"`, `"user:\u202ealice"`), "data.member", "U+202E"},
		{"escaped newline", withJSON(`"user:alice"`, `"user:al\nice"`), "data.member", `forbidden character '\n'`},
		{"unknown type", withJSON(`"membership.added"`, `"membership.renamed"`), "type", `unknown event type "membership.renamed"`},
		{"bad time", withJSON(`"2026-01-06T02:14:00Z"`, `"2026-01-06 02:14"`), "time", `is "2026-01-06 02:14", not an RFC 3339 time`},
		{"month 13", withJSON(`"2026-01-06T02:14:00Z"`, `"2026-13-06T02:14:00Z"`), "time", "month out of range"},
		{"comma fraction", withJSON(`"2026-01-06T02:14:00Z"`, `"2026-01-06T02:14:00,5Z"`), "time", "not an RFC 3339 time"},
		{"no time", withJSON(`"time":"2026-01-06T02:14:00Z",`, ``), "time", "is missing"},
		{"year 1900", withJSON(`"2026-01-06T02:14:00Z"`, `"1900-01-06T02:14:00Z"`), "time", "before 1970"},
		{"content type", withJSON(`"data":`, `"datacontenttype":"text/xml","data":`), "datacontenttype", `is "text/xml"`},
		{"ext upper", withJSON(`"type"`, `"traceParent":"x","type"`), "traceParent", "is not a CloudEvents attribute name"},
		{"ext object", withJSON(`"type"`, `"trace":{},"type"`), "trace", "must be a string, number or boolean"},
		{"ext tenant bad", withJSON(`"type"`, `"tenant":"a b","type"`), "tenant", "a tenant is letters"},
		{"ext tenant empty", withJSON(`"type"`, `"tenant":"","type"`), "tenant", "is empty"},
		{"ext tenant number", withJSON(`"type"`, `"tenant":7,"type"`), "tenant", "must be a string, not a number"},
		{"ext actor role", withJSON(`"type"`, `"actor":"role:x","type"`), "actor", "names a role, not a principal"},
		{"attributes null value", `{"specversion":"1.0","id":"e","source":"s","type":"principal.created","time":"2026-01-06T02:14:00Z","data":{"principal":"user:a","attributes":{"x":null}}}`, "data.attributes.x", "is null"},
		{"attributes number", `{"specversion":"1.0","id":"e","source":"s","type":"principal.created","time":"2026-01-06T02:14:00Z","data":{"principal":"user:a","attributes":{"x":1}}}`, "data.attributes.x", "must be a string, not a number"},
		{"attributes duplicate", `{"specversion":"1.0","id":"e","source":"s","type":"principal.created","time":"2026-01-06T02:14:00Z","data":{"principal":"user:a","attributes":{"x":"1","x":"2"}}}`, "data.attributes.x", "appears twice"},
		{"attributes on disabled", `{"specversion":"1.0","id":"e","source":"s","type":"principal.disabled","time":"2026-01-06T02:14:00Z","data":{"principal":"user:a","attributes":{}}}`, "data.attributes", "is not a field of principal.disabled events"},
		{"expires_at bad", `{"specversion":"1.0","id":"e","source":"s","type":"grant.added","time":"2026-01-06T02:14:00Z","data":{"subject":"user:a","role":"role:r","resource":"*","expires_at":"tomorrow"}}`, "data.expires_at", `is "tomorrow", not an RFC 3339 time`},
		{"expires_at number", `{"specversion":"1.0","id":"e","source":"s","type":"grant.added","time":"2026-01-06T02:14:00Z","data":{"subject":"user:a","role":"role:r","resource":"*","expires_at":5}}`, "data.expires_at", "must be a string, not a number"},
		{"expires_at on removed", `{"specversion":"1.0","id":"e","source":"s","type":"grant.removed","time":"2026-01-06T02:14:00Z","data":{"subject":"user:a","role":"role:r","resource":"*","expires_at":"2027-01-01T00:00:00Z"}}`, "data.expires_at", "is not a field of grant.removed events"},
		{"change array", `{"specversion":"1.0","id":"e","source":"s","type":"approval.requested","time":"2026-01-06T02:14:00Z","data":{"request":"r","requester":"user:a","change":[1]}}`, "data.change", "must be a JSON object"},
		{"hostile id", withJSON(`"e-17"`, `"e-\u202e17"`), "id", "U+202E"},
		{"10 kB id", withJSON(`"user:alice"`, `"user:`+strings.Repeat("a", 10<<10)+`"`), "data.member", "is 10245 bytes long (at most 1024)"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Unmarshal([]byte(c.in))
			if err == nil {
				t.Fatalf("Unmarshal(%s) = nil error", c.in)
			}
			var fe *FieldError
			var se *SyntaxError
			switch {
			case errors.As(err, &fe):
				if fe.Field != c.field {
					t.Errorf("field %q, want %q (%v)", fe.Field, c.field, err)
				}
			case errors.As(err, &se):
				if c.field != "" {
					t.Errorf("syntax error %v, want field %q", err, c.field)
				}
			default:
				t.Errorf("error %T %v", err, err)
			}
			if !strings.Contains(err.Error(), c.msg) {
				t.Errorf("Unmarshal = %q, want %q in it", err, c.msg)
			}
			if len(err.Error()) > 400 {
				t.Errorf("message is %d bytes long", len(err.Error()))
			}
		})
	}
}

func TestUnmarshalKeepsPrecisionAndCompactsChange(t *testing.T) {
	in := `{"specversion":"1.0","id":"e","source":"s","type":"approval.requested","time":"2026-01-06T04:14:00.123456789+02:00",` +
		`"data":{"request":"r","requester":"user:a","change": { "type" : "grant.added" } }}`
	e, err := Unmarshal([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	if e.Time != time.Date(2026, 1, 6, 2, 14, 0, 123456789, time.UTC) {
		t.Errorf("time %v", e.Time)
	}
	if string(e.Data.Change) != `{"type":"grant.added"}` {
		t.Errorf("change %s", e.Data.Change)
	}
}

func TestFromCloudEventErrors(t *testing.T) {
	base := func() cloudevents.Event {
		e := goodEvents()["membership.added"]
		return ToCloudEvent(&e)
	}
	ce := base()
	ce.SetExtension("tenant", "acme")
	ce.SetExtension("actor", "user:bob")
	e, err := FromCloudEvent(ce)
	if err != nil || e.Data.Tenant != "acme" || e.Data.Actor != "user:bob" {
		t.Errorf("extensions: %+v %v", e.Data, err)
	}

	ce = base()
	ce.SetExtension("tenant", 7)
	if _, err := FromCloudEvent(ce); err == nil || !strings.Contains(err.Error(), "tenant: must be a string") {
		t.Errorf("numeric tenant: %v", err)
	}
	ce = base()
	ce.DataEncoded = []byte(`{"group":"group:eng","member":"role:x"}`)
	if _, err := FromCloudEvent(ce); err == nil || err.Error() != "data.member: names a role, not a group or principal" {
		t.Errorf("bad member: %v", err)
	}
	ce = base()
	ce.DataEncoded = []byte(`{"group":"group:eng","member":"user:a","Group":"x"}`)
	if _, err := FromCloudEvent(ce); err == nil || !strings.Contains(err.Error(), "data.Group: is not a field") {
		t.Errorf("case-folded data key: %v", err)
	}
	ce = base()
	ce.DataEncoded = nil
	if _, err := FromCloudEvent(ce); err == nil || err.Error() != "data: is missing" {
		t.Errorf("no data: %v", err)
	}
	ce = base()
	ce.SetType("nope")
	if _, err := FromCloudEvent(ce); err == nil || err.Error() != `type: unknown event type "nope"` {
		t.Errorf("bad type: %v", err)
	}
	ce = base()
	ce.SetDataContentType("text/plain")
	if _, err := FromCloudEvent(ce); err == nil || !strings.Contains(err.Error(), "datacontenttype") {
		t.Errorf("content type: %v", err)
	}
	ce = cloudevents.New(cloudevents.CloudEventsVersionV03)
	if _, err := FromCloudEvent(ce); err == nil || !strings.Contains(err.Error(), `specversion: is "0.3"`) {
		t.Errorf("v0.3: %v", err)
	}
}
