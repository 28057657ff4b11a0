package graph

import (
	"bytes"
	"context"
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/whocould/whocould/event"
	"github.com/whocould/whocould/internal/bin"
	"github.com/whocould/whocould/internal/randhist"
)

func encode(t *testing.T, g *Graph) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := bin.NewWriter(&buf)
	g.Encode(w)
	if _, err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestSnapshotRoundTrip: a decoded graph encodes to the same bytes, holds the same attributes,
// and answers the same.
func TestSnapshotRoundTrip(t *testing.T) {
	recs := randhist.Dedup(randhist.Generate(7, randhist.Options{SingleTenant: true}))
	at := time.Date(2026, 1, 5, 0, 0, 0, 0, time.UTC)
	recs = append(recs, event.Record{
		Event: event.Event{ID: "attrs", Source: "test", Type: event.PrincipalUpdated, Time: at,
			Data: event.Data{Principal: "user:alice", Attributes: map[string]string{"title": "dba", "dept": "eng\x00ops", "": "x"}}},
		Position: uint64(len(recs) + 1), Recorded: recs[len(recs)-1].Recorded,
	})
	g := New()
	g.ApplyBatch(recs)
	b1 := encode(t, g)
	d, err := Decode(bin.NewReader(bytes.NewReader(b1)))
	if err != nil {
		t.Fatal(err)
	}
	if b2 := encode(t, d); !bytes.Equal(b1, b2) {
		t.Fatal("the decoded graph encodes differently")
	}
	if g.Stats() != d.Stats() {
		t.Fatalf("stats: %+v, decoded %+v", g.Stats(), d.Stats())
	}
	id := g.ids["user:alice"]
	got := d.attributesAt(d.ents[id].life, event.Micros(at), forever)
	if got["title"] != "dba" || got["dept"] != "eng\x00ops" || got[""] != "x" {
		t.Fatalf("attributes after decoding: %q", got)
	}
	ctx := context.Background()
	for _, q := range randhist.Questions(7, recs, 100) {
		w1, _ := g.WhoCould(ctx, q)
		w2, _ := d.WhoCould(ctx, q)
		c1, _ := g.WhatCould(ctx, q)
		c2, _ := d.WhatCould(ctx, q)
		if j1, j2 := jsonOf(w1, c1), jsonOf(w2, c2); j1 != j2 {
			t.Fatalf("answers differ after decoding:\n%s\n%s", j1, j2)
		}
	}
}

func jsonOf(v ...any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// TestStatusHead: the short status a question as known now reads is the status.
func TestStatusHead(t *testing.T) {
	for seed := int64(1); seed <= 20; seed++ {
		g := New()
		g.ApplyBatch(randhist.Dedup(randhist.Generate(seed, randhist.Options{SingleTenant: true})))
		for id, e := range g.ents {
			if e == nil {
				continue
			}
			h := g.stat[id]
			status := deriveStatus(e.life, forever, nil)
			if !slices.Equal(g.statusOf(uint32(id)), status) {
				t.Fatalf("seed %d, %s: status %+v, want %+v", seed, g.names[id], g.statusOf(uint32(id)), status)
			}
			var times []int64
			for _, s := range status {
				times = append(times, s.from-1, s.from, s.from+1, s.to-1, s.to)
			}
			for _, at := range times {
				var want uint8
				var since int64
				for _, s := range status {
					if s.from <= at && at < s.to {
						want, since = s.state, s.from
					}
				}
				if h.many {
					continue
				}
				if got, gotSince := h.at(at); got != want || (want != 0 && gotSince != since) {
					t.Fatalf("seed %d, %s at %d: %d since %d, want %d since %d (%+v)", seed, g.names[id], at, got, gotSince, want, since, status)
				}
			}
		}
	}
}
