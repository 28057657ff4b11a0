package eventlog

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/whocould/whocould/event"
)

const (
	crashChildEnv = "EVENTLOG_CRASH_CHILD" // the data directory
	crashStartEnv = "EVENTLOG_CRASH_START" // the first key to append
	crashSyncEnv  = "EVENTLOG_CRASH_SYNC"  // "1": server syncs always
)

func crashKey(i int) event.Key { return event.KeyOf("crash", strconv.Itoa(i)) }

func crashEntry(i int) Entry {
	data := fmt.Appendf(nil, "crash-%d;", i)
	data = append(data, strings.Repeat("x", 300-len(data))...)
	return Entry{Key: crashKey(i), Kind: KindChange, Data: data}
}

func crashIndexOf(data []byte) int {
	s, _, _ := strings.Cut(strings.TrimPrefix(string(data), "crash-"), ";")
	i, err := strconv.Atoi(s)
	if err != nil {
		return -1
	}
	return i
}

// crashChild appends keys start, start+1, ... in batches of random size until killed, printing
// "ack FROM TO" once keys [FROM, TO) are acknowledged.
func crashChild(dir string) {
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, "crash child:", err)
		os.Exit(2)
	}
	start, err := strconv.Atoi(os.Getenv(crashStartEnv))
	if err != nil {
		fail(err)
	}
	srv, err := StartEmbedded(EmbeddedConfig{Dir: filepath.Join(dir, "nats"), SyncAlways: os.Getenv(crashSyncEnv) == "1"})
	if err != nil {
		fail(err)
	}
	nc, err := srv.Connect()
	if err != nil {
		fail(err)
	}
	l, err := Open(context.Background(), nc, Config{Dir: filepath.Join(dir, "eventlog")})
	if err != nil {
		fail(err)
	}
	next := start
	for {
		n := 1 + rand.IntN(1500)
		es := make([]Entry, n)
		for j := range es {
			es[j] = crashEntry(next + j)
		}
		got, err := l.Append(context.Background(), es)
		if err != nil {
			fail(err)
		}
		for j, a := range got {
			// Keys are appended in order and each run starts at or before the first key not yet
			// acknowledged, so key i is at position i+1.
			if a.Position != uint64(next+j+1) {
				fail(fmt.Errorf("key %d at position %d", next+j, a.Position))
			}
		}
		fmt.Fprintf(os.Stdout, "ack %d %d\n", next, next+n)
		next += n
	}
}

// TestCrash kills a process appending in a loop at random moments, then checks that every
// acknowledged key is in the log exactly once and that re-appending them yields duplicates only.
func TestCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test re-executes the test binary; skipped in -short mode")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	acked := 0 // keys [0, acked) are acknowledged
	for round := range 8 {
		start := max(0, acked-rand.IntN(100)) // re-append some acknowledged keys too
		cmd := exec.Command(exe, "-test.run=^$")
		cmd.Env = append(os.Environ(),
			crashChildEnv+"="+dir,
			crashStartEnv+"="+strconv.Itoa(start),
			crashSyncEnv+"="+strconv.Itoa(round%2))
		cmd.Stderr = os.Stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lines := make(chan string)
		go func() {
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				lines <- sc.Text()
			}
			close(lines)
		}()
		handle := func(line string) {
			var from, to int
			if _, err := fmt.Sscanf(line, "ack %d %d", &from, &to); err != nil {
				t.Fatalf("child said %q", line)
			}
			if from > acked {
				t.Fatalf("child acknowledged [%d,%d) with [%d,%d) missing", from, to, acked, from)
			}
			acked = max(acked, to)
		}
		// Wait for a first acknowledgement, then kill at a random moment.
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatalf("round %d: child exited: %v", round, cmd.Wait())
			}
			handle(line)
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			t.Fatalf("round %d: no acknowledgement from child", round)
		}
		deadline := time.After(time.Duration(rand.IntN(500)) * time.Millisecond)
	run:
		for {
			select {
			case line, ok := <-lines:
				if !ok {
					t.Fatalf("round %d: child exited: %v", round, cmd.Wait())
				}
				handle(line)
			case <-deadline:
				break run
			}
		}
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		for line := range lines { // what the child printed before it died
			handle(line)
		}
		cmd.Wait()
		t.Logf("round %d (sync always %v): started at key %d, %d keys acknowledged", round, round%2 == 1, start, acked)
	}

	srv, err := StartEmbedded(EmbeddedConfig{Dir: filepath.Join(dir, "nats")})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	nc, err := srv.Connect()
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	l := openLog(t, nc, Config{Dir: filepath.Join(dir, "eventlog")})
	ms := readAll(t, l, 1)
	if len(ms) < acked {
		t.Fatalf("log holds %d messages, %d were acknowledged", len(ms), acked)
	}
	for i, m := range ms {
		if got := crashIndexOf(m.Data); got != i || m.Position != uint64(i+1) {
			t.Fatalf("position %d holds key %d, want key %d at position %d", m.Position, got, i, i+1)
		}
	}
	es := make([]Entry, len(ms)+10)
	for i := range es {
		es[i] = crashEntry(i)
	}
	got := mustAppend(t, l, es)
	for i, a := range got {
		if (i < len(ms)) != a.Duplicate || a.Position != uint64(i+1) {
			t.Fatalf("re-append of key %d: %+v", i, a)
		}
	}
	t.Logf("%d acknowledged, %d in the log (the rest in flight at a kill)", acked, len(ms))
}
