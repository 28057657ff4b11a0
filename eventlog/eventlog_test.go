package eventlog

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/whocould/whocould/event"
)

// shared is the embedded server most tests use, each on its own stream.
var (
	shared   *Embedded
	sharedNC *nats.Conn
	streamN  atomic.Int64
)

func TestMain(m *testing.M) {
	if dir := os.Getenv(crashChildEnv); dir != "" {
		crashChild(dir) // never returns
	}
	dir, err := os.MkdirTemp("", "eventlog-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	shared, err = StartEmbedded(EmbeddedConfig{Dir: filepath.Join(dir, "nats")})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	sharedNC, err = shared.Connect()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	sharedNC.Close()
	shared.Shutdown()
	os.RemoveAll(dir)
	os.Exit(code)
}

// testConfig is a fresh stream on the shared server with its index in a temp dir.
func testConfig(t testing.TB) Config {
	n := streamN.Add(1)
	return Config{
		Dir:           t.TempDir(),
		Stream:        fmt.Sprintf("T%d", n),
		SubjectPrefix: fmt.Sprintf("t%d.events", n),
	}
}

func openLog(t testing.TB, nc *nats.Conn, cfg Config) *JetStreamLog {
	t.Helper()
	l, err := Open(context.Background(), nc, cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func key(i int) event.Key { return event.KeyOf("test", fmt.Sprint(i)) }

func entries(from, to int) []Entry {
	var es []Entry
	for i := from; i < to; i++ {
		kind := KindChange
		if i%3 == 0 {
			kind = KindDecision
		}
		es = append(es, Entry{Key: key(i), Kind: kind, Data: []byte(fmt.Sprintf("payload-%d", i))})
	}
	return es
}

func readAll(t testing.TB, l Log, from uint64) []Message {
	t.Helper()
	var ms []Message
	if err := l.Read(context.Background(), from, func(m Message) error {
		ms = append(ms, m)
		return nil
	}); err != nil {
		t.Fatalf("Read: %v", err)
	}
	return ms
}

func mustAppend(t testing.TB, l Log, es []Entry) []Appended {
	t.Helper()
	got, err := l.Append(context.Background(), es)
	if err != nil {
		t.Fatalf("Append: %v", err)
	}
	if len(got) != len(es) {
		t.Fatalf("Append returned %d results for %d entries", len(got), len(es))
	}
	return got
}

func TestAppendReadOrder(t *testing.T) {
	ctx := context.Background()
	l := openLog(t, sharedNC, testConfig(t))
	if last, err := l.Last(ctx); err != nil || last != 0 {
		t.Fatalf("Last of empty log = %d, %v", last, err)
	}
	if ms := readAll(t, l, 0); len(ms) != 0 {
		t.Fatalf("empty log read %d messages", len(ms))
	}
	// More than one publish window and one read batch.
	const n = 2500
	var pos uint64
	for _, batch := range [][2]int{{0, 1}, {1, 700}, {700, n}} {
		for i, a := range mustAppend(t, l, entries(batch[0], batch[1])) {
			pos++
			if a.Duplicate || a.Position != pos {
				t.Fatalf("entry %d: %+v, want position %d", batch[0]+i, a, pos)
			}
		}
	}
	if last, _ := l.Last(ctx); last != n {
		t.Fatalf("Last = %d, want %d", last, n)
	}
	want := entries(0, n)
	ms := readAll(t, l, 0)
	if len(ms) != n {
		t.Fatalf("read %d messages, want %d", len(ms), n)
	}
	for i, m := range ms {
		if m.Position != uint64(i+1) || m.Kind != want[i].Kind || string(m.Data) != string(want[i].Data) {
			t.Fatalf("message %d = {%d %s %q}, want {%d %s %q}", i, m.Position, m.Kind, m.Data, i+1, want[i].Kind, want[i].Data)
		}
		if m.Recorded.IsZero() || (i > 0 && m.Recorded.Before(ms[i-1].Recorded)) {
			t.Fatalf("message %d recorded %v after %v", i, m.Recorded, ms[i-1].Recorded)
		}
	}
	// From the middle, and past the end.
	ms = readAll(t, l, 2001)
	if len(ms) != 500 || ms[0].Position != 2001 || ms[499].Position != n {
		t.Fatalf("read from 2001: %d messages", len(ms))
	}
	if ms := readAll(t, l, n+1); len(ms) != 0 {
		t.Fatalf("read past end: %d messages", len(ms))
	}
	// fn's error stops the read and comes back as it is.
	stop := errors.New("stop")
	count := 0
	err := l.Read(ctx, 1, func(Message) error {
		count++
		if count == 10 {
			return stop
		}
		return nil
	})
	if err != stop || count != 10 {
		t.Fatalf("Read with failing fn: %v after %d", err, count)
	}
}

func TestDuplicates(t *testing.T) {
	cfg := testConfig(t)
	l := openLog(t, sharedNC, cfg)
	// Within one call.
	es := entries(0, 5)
	es = append(es, es[1], es[3], es[1])
	got := mustAppend(t, l, es)
	want := []Appended{{1, false}, {2, false}, {3, false}, {4, false}, {5, false}, {2, true}, {4, true}, {2, true}}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("within a batch: result %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	// Across calls: old and new mixed.
	got = mustAppend(t, l, append(entries(3, 8), entries(0, 1)...))
	want = []Appended{{4, true}, {5, true}, {6, false}, {7, false}, {8, false}, {1, true}}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("across batches: result %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	if ms := readAll(t, l, 1); len(ms) != 8 {
		t.Fatalf("log holds %d messages, want 8", len(ms))
	}
}

func TestDuplicatesForEver(t *testing.T) {
	dir := t.TempDir()
	srv, err := StartEmbedded(EmbeddedConfig{Dir: filepath.Join(dir, "nats")})
	if err != nil {
		t.Fatal(err)
	}
	nc, err := srv.Connect()
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Dir: filepath.Join(dir, "eventlog"), DuplicateWindow: 100 * time.Millisecond}
	l := openLog(t, nc, cfg)
	mustAppend(t, l, entries(0, 100))
	time.Sleep(300 * time.Millisecond) // past the server's own duplicate window
	for _, a := range mustAppend(t, l, entries(0, 100)) {
		if !a.Duplicate {
			t.Fatalf("re-append after the duplicate window: %+v", a)
		}
	}
	// Close the log and restart the server: the index file carries the keys.
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Append(context.Background(), entries(0, 1)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Append after Close: %v", err)
	}
	nc.Close()
	srv.Shutdown()
	srv, err = StartEmbedded(EmbeddedConfig{Dir: filepath.Join(dir, "nats")})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	nc, err = srv.Connect()
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	l = openLog(t, nc, cfg)
	got := mustAppend(t, l, entries(50, 150))
	for i, a := range got {
		if i < 50 && (!a.Duplicate || a.Position != uint64(51+i)) {
			t.Fatalf("after reopen: old entry %d = %+v", 50+i, a)
		}
		if i >= 50 && (a.Duplicate || a.Position != uint64(51+i)) {
			t.Fatalf("after reopen: new entry %d = %+v", 50+i, a)
		}
	}
	if last, _ := l.Last(context.Background()); last != 150 {
		t.Fatalf("Last = %d, want 150", last)
	}
}

func TestFollow(t *testing.T) {
	l := openLog(t, sharedNC, testConfig(t))
	mustAppend(t, l, entries(0, 10))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	got := make(chan Message, 100)
	errc := make(chan error, 1)
	go func() { errc <- l.Follow(ctx, 5, func(m Message) error { got <- m; return nil }) }()
	recv := func(want uint64) {
		t.Helper()
		select {
		case m := <-got:
			if m.Position != want {
				t.Fatalf("Follow delivered %d, want %d", m.Position, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("Follow: nothing delivered, waiting for %d", want)
		}
	}
	for p := uint64(5); p <= 10; p++ {
		recv(p)
	}
	time.Sleep(50 * time.Millisecond)
	mustAppend(t, l, entries(10, 15))
	for p := uint64(11); p <= 15; p++ {
		recv(p)
	}
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Follow after cancel: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Follow did not return after cancel")
	}
}

func TestFollowStopsOnClose(t *testing.T) {
	cfg := testConfig(t)
	cfg.ReadOnly = true
	l := openLog(t, sharedNC, cfg)
	errc := make(chan error, 1)
	go func() { errc <- l.Follow(context.Background(), 1, func(Message) error { return nil }) }()
	time.Sleep(100 * time.Millisecond)
	l.Close()
	select {
	case err := <-errc:
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("Follow after Close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Follow did not return after Close")
	}
}

func TestRecordedNonDecreasing(t *testing.T) {
	l := openLog(t, sharedNC, testConfig(t))
	for i := range 20 {
		mustAppend(t, l, entries(i*50, i*50+50))
	}
	ms := readAll(t, l, 0)
	for i := 1; i < len(ms); i++ {
		if ms[i].Recorded.Before(ms[i-1].Recorded) {
			t.Fatalf("recorded time decreases at %d", ms[i].Position)
		}
	}
	// A read from the middle starts no earlier than the message before it.
	mid := readAll(t, l, 500)
	if mid[0].Recorded.Before(ms[498].Recorded) {
		t.Fatalf("read from 500 starts at %v, before message 499 at %v", mid[0].Recorded, ms[498].Recorded)
	}
	if time.Since(ms[0].Recorded) > time.Minute || time.Since(ms[0].Recorded) < 0 {
		t.Fatalf("recorded time %v is not the store time", ms[0].Recorded)
	}
}

// TestRecoverLaggingIndex simulates a crash between the stream's acknowledgement and the index
// write (and a torn last record): reopening must know every key in the stream.
func TestRecoverLaggingIndex(t *testing.T) {
	for _, keep := range []int64{0, 1, 37*16 + 5, 299 * 16} {
		t.Run(fmt.Sprint(keep), func(t *testing.T) {
			cfg := testConfig(t)
			l := openLog(t, sharedNC, cfg)
			mustAppend(t, l, entries(0, 300))
			l.Close()
			path := filepath.Join(cfg.Dir, "eventlog-"+cfg.Stream+".keys")
			if fi, err := os.Stat(path); err != nil || fi.Size() != 300*16 {
				t.Fatalf("index file: %v %v", fi, err)
			}
			if err := os.Truncate(path, keep); err != nil {
				t.Fatal(err)
			}
			l = openLog(t, sharedNC, cfg)
			got := mustAppend(t, l, entries(0, 310))
			for i, a := range got {
				if (i < 300) != a.Duplicate || a.Position != uint64(i+1) {
					t.Fatalf("entry %d after recovery: %+v", i, a)
				}
			}
			l.Close()
			if fi, _ := os.Stat(path); fi.Size() != 310*16 {
				t.Fatalf("index file holds %d bytes, want %d", fi.Size(), 310*16)
			}
		})
	}
}

// TestRecoverIndexAhead: an index that is longer than the stream or does not match it (a lost
// stream tail after power loss, a stream recreated) is repaired from the stream.
func TestRecoverIndexAhead(t *testing.T) {
	cfg := testConfig(t)
	l := openLog(t, sharedNC, cfg)
	mustAppend(t, l, entries(0, 100))
	l.Close()
	path := filepath.Join(cfg.Dir, "eventlog-"+cfg.Stream+".keys")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	// Keys the stream never got, and a wrong record in the middle.
	for i := 1000; i < 1010; i++ {
		k := key(i)
		f.Write(k[:])
	}
	k := key(2000)
	f.WriteAt(k[:], 99*16)
	f.Close()
	l = openLog(t, sharedNC, cfg)
	got := mustAppend(t, l, append(entries(0, 100), append(entries(1000, 1010), entries(2000, 2001)...)...))
	for i, a := range got {
		if (i < 100) != a.Duplicate {
			t.Fatalf("entry %d after repair: %+v", i, a)
		}
	}
}

// TestBootMarker: a log left open during an earlier boot is rebuilt from the stream.
func TestBootMarker(t *testing.T) {
	cfg := testConfig(t)
	l := openLog(t, sharedNC, cfg)
	mustAppend(t, l, entries(0, 50))
	l.Close()
	base := filepath.Join(cfg.Dir, "eventlog-"+cfg.Stream)
	// Lost page cache: a zeroed index, and the marker of another boot.
	os.WriteFile(base+".keys", make([]byte, 50*16), 0o644)
	os.WriteFile(base+".open", []byte("another-boot"), 0o644)
	l = openLog(t, sharedNC, cfg)
	for i, a := range mustAppend(t, l, entries(0, 50)) {
		if !a.Duplicate || a.Position != uint64(i+1) {
			t.Fatalf("entry %d after rebuild: %+v", i, a)
		}
	}
	l.Close()
	if _, err := os.Stat(base + ".open"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("boot marker after clean close: %v", err)
	}
}

func TestLock(t *testing.T) {
	cfg := testConfig(t)
	l := openLog(t, sharedNC, cfg)
	if _, err := Open(context.Background(), sharedNC, cfg); !errors.Is(err, ErrLocked) {
		t.Fatalf("second writer: %v, want ErrLocked", err)
	}
	// A reader may open beside the writer.
	ro := cfg
	ro.ReadOnly = true
	r := openLog(t, sharedNC, ro)
	mustAppend(t, l, entries(0, 3))
	if ms := readAll(t, r, 1); len(ms) != 3 {
		t.Fatalf("reader read %d", len(ms))
	}
	if _, err := r.Append(context.Background(), entries(5, 6)); !errors.Is(err, ErrReadOnly) || IsTransient(err) {
		t.Fatalf("reader Append: %v", err)
	}
	l.Close()
	l2 := openLog(t, sharedNC, cfg)
	if got := mustAppend(t, l2, entries(0, 4)); !got[2].Duplicate || got[3].Duplicate {
		t.Fatalf("after lock handover: %+v", got)
	}
}

// TestSecondWriterOnStream: two writers with separate index dirs (two hosts, say) on one stream
// keep dedup exact through the expected-last-sequence check.
func TestSecondWriterOnStream(t *testing.T) {
	cfg := testConfig(t)
	a := openLog(t, sharedNC, cfg)
	cfg2 := cfg
	cfg2.Dir = t.TempDir()
	b := openLog(t, sharedNC, cfg2)
	mustAppend(t, a, entries(0, 10))
	got := mustAppend(t, b, entries(5, 15)) // b is stale: conflict, catch up, retry
	for i, r := range got {
		if (i < 5) != r.Duplicate || r.Position != uint64(6+i) {
			t.Fatalf("second writer entry %d: %+v", 5+i, r)
		}
	}
	got = mustAppend(t, a, entries(0, 20))
	for i, r := range got {
		if (i < 15) != r.Duplicate || r.Position != uint64(1+i) {
			t.Fatalf("first writer entry %d: %+v", i, r)
		}
	}
	if ms := readAll(t, a, 1); len(ms) != 20 {
		t.Fatalf("log holds %d, want 20", len(ms))
	}
}

func TestInvalidAndErrors(t *testing.T) {
	l := openLog(t, sharedNC, testConfig(t))
	for _, kind := range []string{"", "a.b", "*", ">", "a b"} {
		_, err := l.Append(context.Background(), []Entry{{Key: key(1), Kind: kind}})
		if !errors.Is(err, ErrInvalidEntry) || IsTransient(err) {
			t.Fatalf("kind %q: %v", kind, err)
		}
	}
	// Too large for the server: permanent, nothing appended, and the log still works.
	big := []Entry{{Key: key(1), Kind: KindChange, Data: make([]byte, 2<<20)}}
	_, err := l.Append(context.Background(), big)
	if err == nil || IsTransient(err) || !strings.Contains(err.Error(), "append to") {
		t.Fatalf("oversize entry: %v (transient %v)", err, IsTransient(err))
	}
	if got := mustAppend(t, l, entries(1, 3)); got[0].Position != 1 || got[1].Position != 2 {
		t.Fatalf("after a rejected entry: %+v", got)
	}
	if !IsTransient(fmt.Errorf("x: %w", nats.ErrTimeout)) || !IsTransient(fmt.Errorf("x: %w", nats.ErrNoResponders)) {
		t.Fatal("timeouts and no responders must be transient")
	}
	if !IsTransient(fmt.Errorf("x: %w", ErrConflict)) || IsTransient(fmt.Errorf("x: %w", ErrClosed)) {
		t.Fatal("conflict is transient, closed is not")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := l.Append(ctx, entries(10, 20)); err == nil || IsTransient(err) {
		t.Fatalf("Append with cancelled ctx: %v", err)
	}
	// And the log recovers from the uncertain outcome.
	got := mustAppend(t, l, entries(10, 21))
	for i, a := range got {
		if a.Position != uint64(3+i) || (i == 10 && a.Duplicate) {
			t.Fatalf("after a cancelled append: entry %d: %+v", 10+i, a)
		}
	}
}

func TestEmbeddedListenAndLogger(t *testing.T) {
	var buf strings.Builder
	var mu sync.Mutex
	logger := slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return buf.Write(p)
	}), &slog.HandlerOptions{Level: slog.LevelDebug}))
	srv, err := StartEmbedded(EmbeddedConfig{Dir: t.TempDir(), Listen: "127.0.0.1:0", Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	url := srv.ClientURL()
	if url == "" {
		t.Fatal("no client URL with a listener")
	}
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	l := openLog(t, nc, Config{Dir: t.TempDir()})
	mustAppend(t, l, entries(0, 3))
	if ms := readAll(t, l, 1); len(ms) != 3 {
		t.Fatalf("read %d over the network", len(ms))
	}
	mu.Lock()
	defer mu.Unlock()
	if !strings.Contains(buf.String(), "msg=nats-server") {
		t.Fatalf("server log not forwarded to slog: %q", buf.String())
	}
	if shared.ClientURL() != "" {
		t.Fatal("the default embedded server must not listen")
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
