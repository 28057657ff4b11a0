package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/whocould/whocould/event"
	"github.com/whocould/whocould/eventlog"
)

func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// historyDigest is the SHA-256 of every principal's whole history (every interval of access,
// with its paths), asked of a running service.
func historyDigest(t testing.TB, p *serveProc, users int) string {
	t.Helper()
	h := sha256.New()
	for u := range users {
		path := fmt.Sprintf("/v1/history?principal=user:u%04d&from=2000-01-01T00:00:00Z&to=2100-01-01T00:00:00Z", u)
		req, _ := http.NewRequest("GET", p.api+path, nil)
		req.Header.Set("Authorization", "Bearer "+p.token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s = %d %s", path, resp.StatusCode, b)
		}
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// settled waits until the service has taken everything from its inbox and projected all of it.
func settled(t testing.TB, p *serveProc) {
	t.Helper()
	nc, err := nats.Connect(p.nats)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		pending := uint64(0)
		for _, c := range []string{"whocould-ingest-changes", "whocould-ingest-decisions"} {
			info, err := js.Consumer(context.Background(), "WHOCOULD_IN", c)
			if err != nil {
				t.Fatal(err)
			}
			ci, err := info.Info(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			pending += ci.NumPending + uint64(ci.NumAckPending)
		}
		code, _ := p.get(t, "/readyz")
		lag := metricValue(t, p, "whocould_projector_lag_events")
		if pending == 0 && code == 200 && lag == 0 {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("the service did not settle within 2 minutes:\n%s", p.log())
}

func metricValue(t testing.TB, p *serveProc, name string) float64 {
	t.Helper()
	req, _ := http.NewRequest("GET", p.api+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+p.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := bytes.CutPrefix(sc.Bytes(), []byte(name+" ")); ok {
			f, _ := strconv.ParseFloat(string(v), 64)
			return f
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

// TestServeCrashSafety: a producer publishes change events over NATS while the service is
// killed with SIGKILL at random moments (20 times) and started again; in the end every
// principal's history equals that of an uninterrupted run, and the log holds each event exactly
// once.
func TestServeCrashSafety(t *testing.T) {
	if testing.Short() {
		t.Skip("kills the service 20 times")
	}
	const n, users, kills = 30_000, 3000, 20
	tmp := t.TempDir()
	file := filepath.Join(tmp, "churn.jsonl")
	genChurn(t, file, n)
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	lines := bytes.Split(bytes.TrimSpace(data), []byte("\n"))
	if len(lines) != n {
		t.Fatalf("%d events generated", len(lines))
	}

	// The uninterrupted run: everything over HTTP.
	ref := startServe(t, filepath.Join(tmp, "ref"), serveTestConfig)
	for lo := 0; lo < n; lo += 5000 {
		ref.post(t, bytes.Join(lines[lo:min(lo+5000, n)], []byte("\n")))
	}
	settled(t, ref)
	want := historyDigest(t, ref, users)
	ref.stop(t)

	// The crashed run: fixed ports, so that the producer reconnects to each new incarnation.
	dir := filepath.Join(tmp, "crashed")
	cfg := fmt.Sprintf("nats:\n  listen: %s\napi:\n  listen: %s\n", freeAddr(t), freeAddr(t))
	p := startServe(t, dir, cfg)
	nc, err := nats.Connect(p.nats, nats.MaxReconnects(-1), nats.ReconnectWait(20*time.Millisecond), nats.RetryOnFailedConnect(true))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	var published atomic.Int64
	produced := make(chan error, 1)
	go func() {
		// A producer that publishes in windows of 200 and publishes again whatever the inbox did
		// not acknowledge (possibly publishing an event twice: the log's deduplication absorbs
		// that).
		// Paced at about n per 12 s, so that the kills land all through the ingestion.
		began := time.Now()
		for lo := 0; lo < n; lo += 200 {
			if ahead := time.Duration(float64(lo)/float64(n)*float64(12*time.Second)) - time.Since(began); ahead > 0 {
				time.Sleep(ahead)
			}
			todo := lines[lo:min(lo+200, n)]
			for len(todo) > 0 {
				futures := make([]jetstream.PubAckFuture, 0, len(todo))
				var failed [][]byte
				for _, l := range todo {
					f, err := js.PublishAsync("whocould.in.changes.crash-test", l)
					if err != nil {
						failed = append(failed, l)
						continue
					}
					futures = append(futures, f)
				}
				timeout := time.After(3 * time.Second)
				for _, f := range futures {
					select {
					case <-f.Ok():
					case <-f.Err():
						failed = append(failed, f.Msg().Data)
					case <-timeout:
						failed = append(failed, f.Msg().Data)
					}
				}
				if len(failed) > 0 {
					time.Sleep(20 * time.Millisecond)
				}
				todo = failed
			}
			published.Store(int64(min(lo+200, n)))
		}
		produced <- nil
	}()
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("WHOCOULD_CRASH_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	t.Logf("kill seed %d (WHOCOULD_CRASH_SEED to repeat)", seed)
	rng := rand.New(rand.NewPCG(seed, 2))
	// Kill k lands once (k+1)/(kills+1) of the events are published, give or take, and at least
	// 50 to 400 ms after the last start: spread over the whole ingestion.
	for k := range kills {
		time.Sleep(time.Duration(50+rng.IntN(350)) * time.Millisecond)
		target := int64(float64(k+1) / float64(kills+1) * float64(n) * (0.85 + 0.3*rng.Float64()))
		for published.Load() < target && published.Load() < n {
			time.Sleep(5 * time.Millisecond)
		}
		p.cmd.Process.Kill()
		<-p.exited
		t.Logf("kill %d: %d of %d published", k+1, published.Load(), n)
		p = startServe(t, dir, cfg)
	}
	select {
	case <-produced:
	case <-time.After(3 * time.Minute):
		t.Fatalf("the producer did not finish: %d of %d published", published.Load(), n)
	}
	settled(t, p)
	if got := historyDigest(t, p, users); got != want {
		t.Fatalf("histories after %d kills differ from the uninterrupted run's (digest %s, want %s)", kills, got, want)
	}
	p.stop(t)

	// Every event exactly once in the log.
	srv, err := eventlog.StartEmbedded(eventlog.EmbeddedConfig{Dir: filepath.Join(dir, "nats")})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	lc, err := srv.Connect()
	if err != nil {
		t.Fatal(err)
	}
	defer lc.Close()
	lg, err := eventlog.Open(context.Background(), lc, eventlog.Config{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer lg.Close()
	seen := map[string]int{}
	err = lg.Read(context.Background(), 1, func(m eventlog.Message) error {
		if m.Kind != eventlog.KindChange {
			return nil
		}
		e, err := event.Unmarshal(m.Data)
		if err != nil {
			return err
		}
		seen[e.ID]++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(seen) != n {
		t.Fatalf("the log holds %d distinct change events, want %d", len(seen), n)
	}
	for id, c := range seen {
		if c != 1 {
			t.Fatalf("event %s is in the log %d times", id, c)
		}
	}
}
