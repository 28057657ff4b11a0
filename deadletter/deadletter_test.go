package deadletter

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func openFile(t *testing.T, path string) *File {
	t.Helper()
	d, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func list(t *testing.T, d *File) []Letter {
	t.Helper()
	var out []Letter
	if err := d.List(context.Background(), func(l Letter) error { out = append(out, l); return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestAddListGet(t *testing.T) {
	ctx := context.Background()
	d := openFile(t, filepath.Join(t.TempDir(), "sub", "deadletters.jsonl"))
	if d.Count() != 0 || d.Open() != 0 || len(list(t, d)) != 0 {
		t.Fatalf("a new file: count %d, open %d, %d letters", d.Count(), d.Open(), len(list(t, d)))
	}
	bin := []byte{0xff, 0xfe, 0x00, '{'}
	err := d.Add(ctx,
		NewLetter("events.jsonl", "line 3", "e-3", []byte(`{"id":"e-3"}`), errors.New("bad type")),
		NewLetter("nats:whocould.in", "stream sequence 9", "", bin, errors.New("malformed JSON")),
	)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Add(ctx); err != nil { // nothing: nothing kept
		t.Fatal(err)
	}
	if err := d.Add(ctx, Letter{Source: "http", Reason: "empty", Status: StatusReplayed, Position: 7}); err != nil {
		t.Fatal(err)
	}
	ls := list(t, d)
	if len(ls) != 3 || d.Count() != 3 || d.Open() != 3 {
		t.Fatalf("%d letters, count %d, open %d; want 3", len(ls), d.Count(), d.Open())
	}
	for i, l := range ls {
		if l.Seq != uint64(i+1) || l.Status != StatusOpen || l.ReplayedAt != nil || l.Position != 0 || l.Received.IsZero() {
			t.Errorf("letter %d: %+v", i+1, l)
		}
	}
	if l := ls[0]; l.Source != "events.jsonl" || l.Where != "line 3" || l.ID != "e-3" || l.Reason != "bad type" || string(l.Bytes()) != `{"id":"e-3"}` {
		t.Errorf("letter 1: %+v", l)
	}
	if l := ls[1]; l.Raw != "" || !bytes.Equal(l.Bytes(), bin) {
		t.Errorf("letter 2 (binary): raw %q, base64 %v", l.Raw, l.RawBase64)
	}
	// The letter's line holds no lifecycle, whatever the caller set.
	b, _ := os.ReadFile(d.path)
	if strings.Contains(string(b), "status") || strings.Contains(string(b), "position") {
		t.Errorf("the file holds a status:\n%s", b)
	}

	l, err := d.Get(ctx, 2)
	if err != nil || l.Seq != 2 || l.Source != "nats:whocould.in" || l.Status != StatusOpen {
		t.Fatalf("Get(2) = %+v, %v", l, err)
	}
	for _, seq := range []uint64{0, 4, 1000} {
		if _, err := d.Get(ctx, seq); !errors.Is(err, ErrNotFound) {
			t.Errorf("Get(%d): %v, want ErrNotFound", seq, err)
		}
	}
}

func TestReplayMarks(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "deadletters.jsonl")
	d := openFile(t, path)
	for i := range 3 {
		if err := d.Add(ctx, NewLetter("f", "line "+string(rune('1'+i)), "", []byte("x"), errors.New("bad"))); err != nil {
			t.Fatal(err)
		}
	}
	at := time.Date(2026, 2, 1, 10, 0, 0, 0, time.UTC)
	if err := d.MarkReplayed(ctx, Replay{Seq: 2, At: at, Position: 42}); err != nil {
		t.Fatal(err)
	}
	if err := d.MarkReplayed(ctx, Replay{Seq: 3, Position: 5, Duplicate: true}); err != nil {
		t.Fatal(err)
	}
	if err := d.MarkReplayed(ctx, Replay{Seq: 2, Position: 99}); !errors.Is(err, ErrReplayed) {
		t.Fatalf("replaying 2 again: %v, want ErrReplayed", err)
	}
	for _, seq := range []uint64{0, 4} {
		if err := d.MarkReplayed(ctx, Replay{Seq: seq}); !errors.Is(err, ErrNotFound) {
			t.Fatalf("replaying %d: %v, want ErrNotFound", seq, err)
		}
	}
	check := func(d *File) {
		t.Helper()
		ls := list(t, d)
		if len(ls) != 3 || d.Count() != 3 || d.Open() != 1 {
			t.Fatalf("%d letters, count %d, open %d; want 3, 3, 1", len(ls), d.Count(), d.Open())
		}
		if l := ls[0]; l.Status != StatusOpen || l.ReplayedAt != nil {
			t.Errorf("letter 1: %+v", l)
		}
		if l := ls[1]; l.Status != StatusReplayed || l.ReplayedAt == nil || !l.ReplayedAt.Equal(at) || l.Position != 42 || l.Duplicate {
			t.Errorf("letter 2: %+v", l)
		}
		if l := ls[2]; l.Status != StatusReplayed || l.ReplayedAt == nil || l.ReplayedAt.IsZero() || l.Position != 5 || !l.Duplicate {
			t.Errorf("letter 3: %+v", l)
		}
		if l, err := d.Get(ctx, 2); err != nil || l.Status != StatusReplayed || l.Position != 42 {
			t.Errorf("Get(2) = %+v, %v", l, err)
		}
	}
	check(d)
	d.Close()

	// Reopened, everything is still there, and numbering carries on.
	d2 := openFile(t, path)
	check(d2)
	if err := d2.MarkReplayed(ctx, Replay{Seq: 2}); !errors.Is(err, ErrReplayed) {
		t.Fatalf("replaying 2 after reopening: %v, want ErrReplayed", err)
	}
	if err := d2.Add(ctx, NewLetter("f", "", "", []byte("y"), errors.New("bad"))); err != nil {
		t.Fatal(err)
	}
	if l, err := d2.Get(ctx, 4); err != nil || l.Status != StatusOpen || d2.Open() != 2 || d2.Count() != 4 {
		t.Fatalf("letter 4 after reopening: %+v, %v; open %d, count %d", l, err, d2.Open(), d2.Count())
	}
	// The file is append-only: the letters' lines are as first written, the replays after.
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	if len(lines) != 6 || !strings.HasPrefix(lines[3], `{"replayed":{"seq":2,`) || !strings.HasPrefix(lines[4], `{"replayed":{"seq":3,`) {
		t.Fatalf("file:\n%s", b)
	}
}

func TestTornLastLine(t *testing.T) {
	ctx := context.Background()
	for _, torn := range []string{
		`{"seq":3,"received":"2026-01-01T00:00:00Z","source":"f","reas`, // a letter cut short
		`{"replayed":{"seq":1,"at":"2026-01-`,                           // a replay cut short
		"\x00\x00\x00\x00",                                              // zeros a crash left
	} {
		path := filepath.Join(t.TempDir(), "deadletters.jsonl")
		d := openFile(t, path)
		if err := d.Add(ctx, NewLetter("f", "line 1", "", []byte("a"), errors.New("bad")),
			NewLetter("f", "line 2", "", []byte("b"), errors.New("bad"))); err != nil {
			t.Fatal(err)
		}
		d.Close()
		f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		f.WriteString(torn)
		f.Close()

		d = openFile(t, path)
		if ls := list(t, d); len(ls) != 2 || d.Count() != 2 || d.Open() != 2 {
			t.Fatalf("torn %q: %d letters, count %d, open %d", torn, len(ls), d.Count(), d.Open())
		}
		// The torn line is gone; the next letter and replay start clean.
		if err := d.Add(ctx, NewLetter("f", "line 3", "", []byte("c"), errors.New("bad"))); err != nil {
			t.Fatal(err)
		}
		if err := d.MarkReplayed(ctx, Replay{Seq: 1, Position: 1}); err != nil {
			t.Fatal(err)
		}
		d.Close()
		d = openFile(t, path)
		ls := list(t, d)
		if len(ls) != 3 || ls[2].Seq != 3 || ls[2].Where != "line 3" || ls[0].Status != StatusReplayed || d.Open() != 2 {
			t.Fatalf("torn %q, after repair: %+v", torn, ls)
		}
		if b, _ := os.ReadFile(path); bytes.Contains(b, []byte(torn)) {
			t.Fatalf("torn %q: still in the file:\n%s", torn, b)
		}
	}
}

func TestBadLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "deadletters.jsonl")
	if err := os.WriteFile(path, []byte("{\"seq\":1}\nnot json\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(path); err == nil || !strings.Contains(err.Error(), path+":2:") {
		t.Fatalf("a file with a bad whole line: %v, want an error naming line 2", err)
	}
}

// TestSameInputKeptOnce: the same bad input seen again (a redelivery, a re-import, the
// projector after a crash) is not kept twice, also across a reopen; other places or other bytes
// are.
func TestSameInputKeptOnce(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "dl.jsonl")
	d, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	bad := errors.New("bad")
	l := NewLetter("nats:whocould.in.changes.x", "stream WHOCOULD_IN sequence 7", "e1", []byte(`{"id":"e1"`), bad)
	if err := d.Add(ctx, l, l); err != nil {
		t.Fatal(err)
	}
	if err := d.Add(ctx, l); err != nil {
		t.Fatal(err)
	}
	d.Close()
	d, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	other := l
	other.Where = "stream WHOCOULD_IN sequence 8"
	nowhere := NewLetter("http:writer", "", "", []byte("x"), bad)
	if err := d.Add(ctx, l, other, nowhere, nowhere); err != nil {
		t.Fatal(err)
	}
	if n := d.Count(); n != 4 {
		t.Fatalf("%d letters kept, want 4 (the same input once, another place, two without a place)", n)
	}
}
