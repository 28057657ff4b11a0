package event

import (
	"bytes"
	"encoding/json"
	"io"
	"strings"
	"testing"

	cloudevents "github.com/cloudevents/sdk-go/v2/event"
)

func benchEvent() []byte {
	e := goodEvents()["grant.added role"]
	b, _ := Marshal(&e)
	return b
}

func BenchmarkUnmarshal(b *testing.B) {
	in := benchEvent()
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Unmarshal(in); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSDKUnmarshal is the CloudEvents SDK's decoding of the same event, for comparison
// (the Decoder does not use it: see the report in decode.go).
func BenchmarkSDKUnmarshal(b *testing.B) {
	in := benchEvent()
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		var ce cloudevents.Event
		if err := json.Unmarshal(in, &ce); err != nil {
			b.Fatal(err)
		}
		if _, err := FromCloudEvent(ce); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkMarshal(b *testing.B) {
	e := goodEvents()["grant.added role"]
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Marshal(&e); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkValidate(b *testing.B) {
	e := goodEvents()["grant.added role"]
	b.ReportAllocs()
	for b.Loop() {
		if err := Validate(&e); err != nil {
			b.Fatal(err)
		}
	}
}

func benchDecoder(b *testing.B, in []byte, n int) {
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		d := NewDecoder(bytes.NewReader(in), "bench")
		got := 0
		for {
			_, _, err := d.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
			got++
		}
		if got != n {
			b.Fatalf("%d events, want %d", got, n)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/event")
	b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "events/s")
}

func BenchmarkDecoder(b *testing.B) {
	const n = 1000
	one := string(benchEvent())
	b.Run("jsonl", func(b *testing.B) {
		benchDecoder(b, []byte(strings.Repeat(one+"\n", n)), n)
	})
	b.Run("array", func(b *testing.B) {
		benchDecoder(b, []byte("["+strings.Repeat(one+",\n", n-1)+one+"]"), n)
	})
}
