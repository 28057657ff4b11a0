package event

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
	"time"
)

// fastSeeds are inputs that exercise the fast path's corners: escapes, surrogates, times,
// extensions, attributes, change.
var fastSeeds = append(fastGood, []string{
	`{"specversion":"1.0","id":"e-\ud83dx","source":"s","type":"group.created","time":"2026-01-06T02:14:00.123456789-07:30","data":{"group":"group:\udc00\ud800"}}`,
	`{"specversion":"1.0","id":"e","source":"s","type":"group.created","time":"2026-01-06T02:14:00.1234567891Z","data":{"group":"group:a"}}`,
	`{"specversion":"1.0","id":"e","source":"s","type":"group.created","time":"2024-02-29T23:59:59-00:00","data":{"group":"group:a"}}`,
	`{"specversion":"1.0","id":"e","source":"s","type":"group.created","time":"2023-02-29T23:59:59Z","data":{"group":"group:a"}}`,
	`{"specversion":"1.0","id":"e","source":"s","type":"group.created","time":"2026-01-06t02:14:00z","data":{"group":"group:a"}}`,
	`{"specversion":"1.0","id":"e","source":"s","type":"group.created","time":"2026-01-06T02:14:00+24:00","data":{"group":"group:a"}}`,
	` { "specversion" : "1.0" , "id" : "e" , "source" : "s" , "type" : "group.created" , "time" : "2026-01-06T02:14:00Z" , "data" : { "group" : "group:a" } } ` + "\n",
	`{"specversion":"1.0","id":"e","source":"s","type":"group.created","time":"2026-01-06T02:14:00Z","data":{"group":"group:a"},"x1":-0.5e+3,"x2":true,"x3":false,"x4":"s","dataschema":"http://x","subject":"sub"}`,
	`{"specversion":"1.0","id":"e","source":"s","type":"group.created","time":"2026-01-06T02:14:00Z","data":{"group":"group:a"},"subject":7}`,
	`{"specversion":"1.0","id":"e","source":"s","type":"group.created","time":"2026-01-06T02:14:00Z","data":{"group":"group:a"},"x1":01}`,
	`{"specversion":"1.0","id":"e","source":"s","type":"group.created","time":"2026-01-06T02:14:00Z","data":{"group":"group:a"},"x1":1,"x1":2}`,
	`{"specversion":"1.0","id":"e","source":"s","type":"group.created","time":"2026-01-06T02:14:00Z","datacontenttype":"application/cloudevents+json; charset=utf-8","data":{"group":"group:a"}}`,
	`{"specversion":"1.0","id":"e","source":"s","type":"principal.created","time":"2026-01-06T02:14:00Z","tenant":"acme","actor":"user:x","approval":"A-1","data":{"principal":"user:a","attributes":{"k\u00e9y":"v\n\u2028","":"x"}}}`,
	`{"specversion":"1.0","id":"e","source":"s","type":"principal.updated","time":"2026-01-06T02:14:00Z","data":{"principal":"user:a","attributes":{},"tenant":"t"}}`,
	`{"specversion":"1.0","id":"e","source":"s","type":"principal.updated","time":"2026-01-06T02:14:00Z","data":{"principal":"user:a","attributes":{"a":"1","\u0061":"2"}}}`,
	`{"specversion":"1.0","id":"e","source":"s","type":"approval.requested","time":"2026-01-06T02:14:00Z","data":{"request":"r","requester":"user:a","reason":"","change":{ "a" : [ 1 , -2.5e-3 , "x\" y" , { } , [ ] , true , false , null ] , "b" : { "c" : "\u00e9" } }}}`,
	`{"specversion":"1.0","id":"e","source":"s","type":"approval.requested","time":"2026-01-06T02:14:00Z","data":{"request":"r","requester":"user:a","change":{"a":[[[[[[[[[[1]]]]]]]]]]}}}`,
	`{"specversion":"1.0","id":"e","source":"s","type":"grant.added","time":"2026-01-06T02:14:00Z","data":{"subject":"user:a","action":"x.*","resource":"db:a/b","expires_at":"2026-01-06T03:14:00+01:00"}}`,
	`{"specversion":"1.0","id":"e","source":"s","type":"grant.added","time":"2026-01-06T02:14:00Z","data":{"subject":"user:a","action":"x.*","resource":"db:a/b","expires_at":"2026-01-06T04:14:00+01:00"}}`,
	`{"specversion":"1.0","id":"e","source":"s","type":"decision","time":"2026-01-06T02:14:00Z","data":{"principal":"user:a","action":"x","resource":"db:a","effect":"deny","reason":"","policy":"p\u202e","request":"q"}}`,
	`{"\u0073pecversion":"1.0","id":"e","source":"s","type":"group.created","time":"2026-01-06T02:14:00Z","data":{"group":"group:a"}}`,
	`{"specversion":"1.0","id":"e","source":"s","type":"group.created","time":"2026-01-06T02:14:00Z","data":{"group":"group:a"}}x`,
	`{"specversion":"1.0","id":"e","source":"s","type":"group.created","time":"2026-01-06T02:14:00Z","data":{"group":"group:a",}}`,
	`{"specversion":"1.0","id":"e","source":"s","type":"group.created","time":"2026-01-06T02:14:00Z","data":{"group":"group:a"},}`,
}...)

// fastGood are good events the fast path decodes itself.
var fastGood = []string{
	`{"specversion":"1.0","id":"e\"\\\/-1","source":"//okta/acme","type":"membership.added","time":"2026-01-06T02:14:00Z","data":{"group":"group:eng","member":"user:al\u00e9ice"}}`,
	`{"specversion":"1.0","id":"e-\ud83d\ude00","source":"s","type":"group.created","time":"2026-01-06T02:14:00.1+02:00","data":{"group":"group:\ud83d\ude00"}}`,
	`{"specversion":"1.0","id":"e","source":"s","type":"decision","time":"2026-01-06T02:14:00Z","data":{"principal":"user:a","action":"x","resource":"db:a","effect":"deny","reason":"a\"\\\/\n\r\t\u0041\u00e9\u20ac\ud83d\ude00","policy":"","request":"q"}}`,
}

func addFastSeeds(f *testing.F) {
	fuzzSeeds(f)
	for _, s := range fastSeeds {
		f.Add([]byte(s))
	}
}

// sameResult reports how fast (Unmarshal) and reference results differ, "" when they agree.
func sameResult(e1 Event, err1 error, e2 Event, err2 error) string {
	switch {
	case (err1 == nil) != (err2 == nil):
		return "one fails, the other does not: " + errText(err1) + " / " + errText(err2)
	case err1 != nil:
		if reflect.TypeOf(err1) != reflect.TypeOf(err2) || !reflect.DeepEqual(err1, err2) {
			return "different errors: " + errText(err1) + " / " + errText(err2)
		}
	}
	if !reflect.DeepEqual(e1, e2) {
		return "different events"
	}
	return ""
}

func errText(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}

// FuzzFastVsSlow: the fast path decodes exactly what the reference decodes, to the same event,
// and Unmarshal's errors are the reference's; the fast Marshal writes what the reference writes.
func FuzzFastVsSlow(f *testing.F) {
	addFastSeeds(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 16<<10 {
			return // big inputs (the 10 kB and 300-attribute seeds) make minimizing crawl
		}
		checkFastVsSlow(t, b)
	})
}

func checkFastVsSlow(t *testing.T, b []byte) {
	t.Helper()
	ref, rerr := unmarshalSlow(b)
	got, gerr := unmarshal(b)
	if d := sameResult(got, gerr, ref, rerr); d != "" {
		t.Fatalf("unmarshal vs reference: %s\n%q\n%#v\n%#v", d, b, got, ref)
	}
	fast, ok := unmarshalFast(b)
	if ok {
		if rerr != nil {
			t.Fatalf("fast path accepts what the reference rejects (%v):\n%q", rerr, b)
		}
		if !reflect.DeepEqual(fast, ref) {
			t.Fatalf("fast path decodes differently:\n%q\n%#v\n%#v", b, fast, ref)
		}
	}
	if rerr != nil {
		return
	}
	want, err := marshalData(&ref)
	if err != nil {
		t.Fatalf("reference marshal: %v", err)
	}
	out, err := Marshal(&ref)
	if err != nil || !bytes.Equal(out, want) {
		t.Fatalf("Marshal differs (%v):\n%s\n%s", err, out, want)
	}
}

func TestFastVsSlowSeeds(t *testing.T) {
	var in []string
	in = append(in, fastSeeds...)
	for _, e := range goodEvents() {
		b, _ := marshalData(&e)
		in = append(in, string(b))
	}
	for _, c := range badEvents() {
		if b, err := marshalData(&c.e); err == nil {
			in = append(in, string(b))
		}
	}
	in = append(in, goodJSON)
	for n, s := range in {
		checkFastVsSlow(t, []byte(s))
		if len(s) > 2000 {
			continue
		}
		// Every prefix, and the input with each byte changed to a few telling values.
		for i := 0; i < len(s); i++ {
			checkFastVsSlow(t, []byte(s[:i]))
			if n >= len(fastSeeds) && n%4 != 0 {
				continue
			}
			for _, c := range []byte{'"', '\\', ' ', '}', 0xff, 'A'} {
				m := []byte(s)
				m[i] = c
				checkFastVsSlow(t, m)
			}
		}
	}
}

// TestFastPathTaken: good events do not fall back to the slow path.
func TestFastPathTaken(t *testing.T) {
	for name, e := range goodEvents() {
		b, err := Marshal(&e)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := unmarshalFast(b); !ok {
			t.Errorf("%s: not decoded by the fast path: %s", name, b)
		}
	}
	for _, s := range fastGood {
		if _, ok := unmarshalFast([]byte(s)); !ok {
			t.Errorf("not decoded by the fast path: %s", s)
		}
	}
}

func BenchmarkUnmarshalSlow(b *testing.B) {
	in := benchEvent()
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := unmarshalSlow(in); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkMarshalSlow(b *testing.B) {
	e := goodEvents()["grant.added role"]
	b.ReportAllocs()
	for b.Loop() {
		if err := Validate(&e); err != nil {
			b.Fatal(err)
		}
		if _, err := marshalData(&e); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkUnmarshalMix decodes every good event in turn.
func BenchmarkUnmarshalMix(b *testing.B) {
	var in [][]byte
	for _, e := range goodEvents() {
		m, _ := Marshal(&e)
		in = append(in, m)
	}
	b.ReportAllocs()
	for b.Loop() {
		for _, m := range in {
			if _, err := Unmarshal(m); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(in)), "ns/event")
}

var _ = errors.New

func TestAppendTime(t *testing.T) {
	for _, tm := range []time.Time{
		t0, {}, time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2200, 12, 31, 23, 59, 59, 999999999, time.FixedZone("x", -3600)),
		time.Date(9999, 12, 31, 23, 59, 59, 1, time.UTC), time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Unix(1<<40, 7),
	} {
		if got, want := string(appendTime(nil, tm)), formatTime(tm); got != want {
			t.Errorf("appendTime %s, want %s", got, want)
		}
	}
}
