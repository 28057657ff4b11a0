package eventlog

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"strconv"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// TestFrames: entries of mixed sizes and kinds travel in far fewer messages than entries, with
// dense positions, and read back exactly from any position, frame boundary or not.
func TestFrames(t *testing.T) {
	cfg := testConfig(t)
	l := openLog(t, sharedNC, cfg)
	var want []Entry
	for i := range 5000 {
		kind := KindChange
		if i/700%2 == 1 { // long runs of each kind
			kind = KindDecision
		}
		data := fmt.Appendf(nil, "entry-%d", i)
		switch {
		case i%997 == 0: // bigger than a whole frame: travels alone
			data = append(data, bytes.Repeat([]byte{'b'}, maxFrameBytes+10)...)
		case i%7 == 0:
			data = append(data, bytes.Repeat([]byte{'m'}, 3000)...)
		}
		want = append(want, Entry{Key: key(i), Kind: kind, Data: data})
	}
	for lo := 0; lo < len(want); lo += 1700 {
		got := mustAppend(t, l, want[lo:min(lo+1700, len(want))])
		for i, a := range got {
			if a.Duplicate || a.Position != uint64(lo+i+1) {
				t.Fatalf("entry %d appended as %+v", lo+i, a)
			}
		}
	}
	info, err := l.stream.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs > 100 {
		t.Fatalf("%d entries took %d messages: not framed", len(want), info.State.Msgs)
	}
	if last, err := l.Last(context.Background()); err != nil || last != uint64(len(want)) {
		t.Fatalf("Last = %d, %v; want %d", last, err, len(want))
	}
	for _, from := range []uint64{0, 1, 2, 997, 998, 1024, 1025, 1700, 3333, 4999, 5000, 5001} {
		ms := readAll(t, l, from)
		start := max(from, 1)
		if len(ms) != len(want)-int(start)+1 {
			t.Fatalf("read from %d: %d messages, want %d", from, len(ms), len(want)-int(start)+1)
		}
		for k, m := range ms {
			w := want[int(start)-1+k]
			if m.Position != start+uint64(k) || m.Kind != w.Kind || !bytes.Equal(m.Data, w.Data) {
				t.Fatalf("read from %d: message %d = {%d %s %.20q}, want {%d %s %.20q}", from, k, m.Position, m.Kind, m.Data, start+uint64(k), w.Kind, w.Data)
			}
		}
	}
	// Duplicates anywhere in earlier frames are found by the index, also after reopening.
	l.Close()
	l = openLog(t, sharedNC, cfg)
	got := mustAppend(t, l, []Entry{want[4998], want[1], {Key: key(99999), Kind: KindChange, Data: []byte("new")}})
	if !got[0].Duplicate || got[0].Position != 4999 || !got[1].Duplicate || got[1].Position != 2 || got[2].Duplicate || got[2].Position != 5001 {
		t.Fatalf("after reopening: %+v", got)
	}
}

// TestLegacyMessages: a stream written before frames (one message per entry, no position
// header) stays readable, and new frames continue its positions.
func TestLegacyMessages(t *testing.T) {
	cfg := testConfig(t)
	l := openLog(t, sharedNC, cfg)
	l.Close()
	js, err := jetstream.New(sharedNC)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		k := key(i)
		msg := &nats.Msg{Subject: cfg.SubjectPrefix + "." + KindChange, Data: fmt.Appendf(nil, "legacy-%d", i),
			Header: nats.Header{jetstream.MsgIDHeader: []string{hex.EncodeToString(k[:])}}}
		if _, err := js.PublishMsg(context.Background(), msg); err != nil {
			t.Fatal(err)
		}
	}
	l = openLog(t, sharedNC, cfg)
	es := []Entry{{Key: key(3), Kind: KindChange, Data: []byte("dup")}}
	for i := 10; i < 20; i++ {
		es = append(es, Entry{Key: key(i), Kind: KindChange, Data: fmt.Appendf(nil, "new-%d", i)})
	}
	got := mustAppend(t, l, es)
	if !got[0].Duplicate || got[0].Position != 4 || got[1].Position != 6 || got[10].Position != 15 {
		t.Fatalf("append after legacy messages: %+v", got)
	}
	ms := readAll(t, l, 3)
	if len(ms) != 13 || string(ms[0].Data) != "legacy-2" || ms[2].Position != 5 || string(ms[3].Data) != "new-10" || ms[3].Position != 6 {
		t.Fatalf("read across legacy and framed messages: %d messages, first %+v", len(ms), ms[0])
	}
}

// FuzzReadFrame: any payload and headers are read without panicking, every entry's data lies
// within the payload, and what frameMsg writes reads back exactly.
func FuzzReadFrame(f *testing.F) {
	l := &JetStreamLog{cfg: Config{Stream: "S"}, prefix: "p."}
	es := entries(0, 5)
	for i := range es {
		es[i].Kind = KindChange
	}
	msg := l.frameMsg(es, []int{0, 1, 2, 3, 4}, frame{lo: 0, hi: 5, first: 7}, 3)
	f.Add(msg.Data, "7", "5")
	f.Add([]byte("plain"), "1", "")
	f.Add([]byte(frameMagic), "1", "2")
	f.Add([]byte{}, "", "")
	f.Fuzz(func(t *testing.T, data []byte, pos, count string) {
		h := nats.Header{}
		if pos != "" {
			h.Set(posHeader, pos)
		}
		if count != "" {
			h.Set(countHeader, count)
		}
		first, n, spanErr := frameSpan(h, 42)
		seen := uint64(0)
		err := readFrame(h, data, 42, func(p uint64, e frameEntry) error {
			if p != first+seen {
				t.Fatalf("entry %d at position %d, want %d", seen, p, first+seen)
			}
			if len(e.data) > len(data) {
				t.Fatalf("entry data longer than the payload")
			}
			seen++
			return nil
		})
		if spanErr != nil && err == nil {
			t.Fatalf("bad span %v but the frame was read", spanErr)
		}
		if err == nil && seen != n {
			t.Fatalf("read %d entries of %d", seen, n)
		}
		if err == nil && pos != "" {
			if p, _ := strconv.ParseUint(pos, 10, 64); p != first {
				t.Fatalf("first %d, header %q", first, pos)
			}
		}
	})
}

// TestFrameRoundTrip: frameMsg then readFrame gives back keys, data and positions.
func TestFrameRoundTrip(t *testing.T) {
	l := &JetStreamLog{cfg: Config{Stream: "S"}, prefix: "p."}
	es := entries(0, 40)
	for i := range es {
		es[i].Kind = KindChange
		if i == 3 {
			es[i].Data = nil
		}
	}
	pending := []int{0, 1, 2, 3, 5, 8, 13, 21, 34}
	fs := frames(es, pending, 100)
	if len(fs) != 1 || fs[0].hi != len(pending) {
		t.Fatalf("frames %+v", fs)
	}
	msg := l.frameMsg(es, pending, fs[0], 9)
	if msg.Header.Get(jetstream.ExpectedLastSeqHeader) != "9" || msg.Subject != "p.change" {
		t.Fatalf("headers %v subject %s", msg.Header, msg.Subject)
	}
	k := 0
	err := readFrame(msg.Header, msg.Data, 1, func(p uint64, e frameEntry) error {
		w := es[pending[k]]
		if p != 100+uint64(k) || e.key != w.Key || !bytes.Equal(e.data, w.Data) {
			t.Fatalf("entry %d: %d %x %q", k, p, e.key, e.data)
		}
		k++
		return nil
	})
	if err != nil || k != len(pending) {
		t.Fatalf("read %d entries: %v", k, err)
	}
	// Kind changes and size limits cut frames.
	es[5].Kind = KindDecision
	if fs := frames(es, pending, 1); len(fs) != 3 || fs[1].lo != 4 || fs[1].hi != 5 || fs[2].first != 6 {
		t.Fatalf("frames across a kind change: %+v", fs)
	}
}
