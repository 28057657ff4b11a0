package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/whocould/whocould/api"
	"github.com/whocould/whocould/deadletter"
	"github.com/whocould/whocould/event"
	"github.com/whocould/whocould/eventlog"
	"github.com/whocould/whocould/ingest"
	"github.com/whocould/whocould/projector"
	"github.com/whocould/whocould/store"
	"github.com/whocould/whocould/store/embedded"
)

// service is the API on the real pipeline: embedded NATS, the event log, the projector
// following it into the embedded store.
type service struct {
	url   string
	store *embedded.Store
	log   *eventlog.JetStreamLog
	dead  *deadletter.File
}

const (
	writerSecret = "wc_writer"
	readerSecret = "wc_reader"
	adminSecret  = "wc_admin"
)

func start(t *testing.T, maxBody int64) *service {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	dir := t.TempDir()
	srv, err := eventlog.StartEmbedded(eventlog.EmbeddedConfig{Dir: filepath.Join(dir, "nats")})
	if err != nil {
		t.Fatal(err)
	}
	nc, err := srv.Connect()
	if err != nil {
		t.Fatal(err)
	}
	lg, err := eventlog.Open(ctx, nc, eventlog.Config{Dir: filepath.Join(dir, "eventlog")})
	if err != nil {
		t.Fatal(err)
	}
	dead, err := deadletter.Open(filepath.Join(dir, "deadletters.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	st, err := embedded.Open(embedded.Config{})
	if err != nil {
		t.Fatal(err)
	}
	in := ingest.New(lg, dead, nil)
	proj := projector.New(lg, st, nil, projector.Config{})
	audit := api.NewAudit(in, 20*time.Millisecond, nil)
	done := make(chan struct{}, 2)
	go func() { proj.Run(ctx); done <- struct{}{} }()
	go func() { audit.Run(ctx); done <- struct{}{} }()
	h, err := api.New(api.Config{
		Querier: st, Projected: proj.Position, Ingest: in, DeadLetters: dead, Audit: audit, MaxBodyBytes: maxBody, MaxWait: 300 * time.Millisecond,
		Tokens: []api.Token{
			{Name: "writer", SHA256: api.HashToken(writerSecret), Scopes: []string{api.ScopeEventsWrite}},
			{Name: "reader", SHA256: api.HashToken(readerSecret), Scopes: []string{api.ScopeRead}},
			{Name: "admin", SHA256: api.HashToken(adminSecret), Scopes: []string{api.ScopeAdmin}},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(h)
	t.Cleanup(func() {
		hs.Close()
		cancel()
		<-done
		<-done
		lg.Close()
		dead.Close()
		nc.Close()
		srv.Shutdown()
	})
	return &service{url: hs.URL, store: st, log: lg, dead: dead}
}

func (s *service) do(t *testing.T, method, path, secret, contentType, body string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, s.url+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if secret != "" {
		req.Header.Set("Authorization", "Bearer "+secret)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		if err := json.Unmarshal(b, &out); err != nil {
			t.Fatalf("%s %s: answer is not JSON: %v\n%s", method, path, err, b)
		}
	} else {
		out = map[string]any{"text": string(b)}
	}
	return resp.StatusCode, out
}

func grant(id, subject string) string {
	return `{"specversion":"1.0","id":"` + id + `","source":"okta","type":"grant.added","time":"2026-01-05T10:00:00Z",` +
		`"data":{"subject":"` + subject + `","action":"db.table.drop","resource":"db:prod/orders"}}`
}

func TestReadYourWrites(t *testing.T) {
	s := start(t, 0)
	code, res := s.do(t, "POST", "/v1/events", writerSecret, "application/x-ndjson", grant("1", "user:ann")+"\n"+grant("2", "user:bob")+"\n")
	if code != http.StatusAccepted || res["accepted"] != 2.0 || res["position"] == nil {
		t.Fatalf("POST = %d %v", code, res)
	}
	pos := uint64(res["position"].(float64))
	code, ans := s.do(t, "GET", fmt.Sprintf("/v1/who-could?action=db.table.drop&resource=db:prod/orders&at=2026-01-06T02:14:00Z&min_position=%d", pos), readerSecret, "", "")
	if code != http.StatusOK {
		t.Fatalf("who-could = %d %v", code, ans)
	}
	ps, _ := ans["principals"].([]any)
	if len(ps) != 2 {
		t.Fatalf("who-could after the write: %v", ans)
	}
	// The same events again are duplicates, at the same position.
	code, res = s.do(t, "POST", "/v1/events", writerSecret, "application/json", "["+grant("1", "user:ann")+"]")
	if code != http.StatusAccepted || res["duplicates"] != 1.0 || res["accepted"] != 0.0 {
		t.Fatalf("POST again = %d %v", code, res)
	}
	for _, path := range []string{
		"/v1/what-could?principal=user:ann&at=2026-01-06T00:00:00Z",
		"/v1/explain?principal=user:ann&action=db.table.drop&resource=db:prod/orders&at=2026-01-06T00:00:00Z",
		"/v1/history?resource=db:prod/orders&from=2026-01-01T00:00:00Z&to=2026-02-01T00:00:00Z",
	} {
		if code, ans := s.do(t, "GET", path, readerSecret, "", ""); code != http.StatusOK {
			t.Fatalf("%s = %d %v", path, code, ans)
		}
	}
}

func TestBadRequests(t *testing.T) {
	s := start(t, 4096)
	who := "/v1/who-could?action=db.table.drop&resource=db:prod/orders"
	cases := []struct {
		name, method, path, secret, ctype, body string
		code                                    int
		msg                                     string
	}{
		{"no token", "GET", who, "", "", "", 401, "no token"},
		{"unknown token", "GET", who, "wc_nobody", "", "", 401, "unknown token"},
		{"wrong scope", "GET", who, writerSecret, "", "", 403, "lacks scope read"},
		{"wrong scope to write", "POST", "/v1/events", readerSecret, "application/json", grant("9", "user:x"), 403, "events:write"},
		{"dead letters need admin", "GET", "/v1/deadletters", readerSecret, "", "", 403, "admin"},
		{"unknown parameter", "GET", who + "&colour=red", readerSecret, "", "", 400, `unknown parameter "colour"`},
		{"missing parameter", "GET", "/v1/who-could?action=db.table.drop", readerSecret, "", "", 400, "resource is required"},
		{"bad time", "GET", who + "&at=yesterday", readerSecret, "", "", 400, "parameter at"},
		{"bad min_position", "GET", who + "&min_position=-1", readerSecret, "", "", 400, "min_position"},
		{"unreachable min_position", "GET", who + "&min_position=999999", readerSecret, "", "", 503, "did not reach min_position"},
		{"unsupported content type", "POST", "/v1/events", writerSecret, "text/plain", grant("9", "user:x"), 415, "Content-Type"},
		{"no content type", "POST", "/v1/events", writerSecret, "", grant("9", "user:x"), 415, "Content-Type"},
		{"over-size body", "POST", "/v1/events", writerSecret, "application/json", "[" + strings.Repeat(grant("9", "user:x")+",", 40) + "]", 413, "body over 4096 bytes"},
		{"malformed JSON", "POST", "/v1/events", writerSecret, "application/json", `{"specversion": "1.0", "id": }`, 400, "http:1:30: malformed JSON"},
		{"wrong method", "DELETE", "/v1/events", writerSecret, "", "", 405, ""},
		{"no such endpoint", "GET", "/v1/nothing", readerSecret, "", "", 404, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if testing.Short() && c.code == 503 {
				t.Skip("waits for min_position to time out")
			}
			code, ans := s.do(t, c.method, c.path, c.secret, c.ctype, c.body)
			msg, _ := ans["error"].(string)
			if code != c.code || !strings.Contains(msg, c.msg) {
				t.Fatalf("%s %s = %d %q, want %d with %q", c.method, c.path, code, msg, c.code, c.msg)
			}
		})
	}
	// Health checks need no token.
	if code, ans := s.do(t, "GET", "/healthz", "", "", ""); code != 200 || ans["text"] != "ok\n" {
		t.Fatalf("healthz = %d %v", code, ans)
	}
	if code, _ := s.do(t, "GET", "/readyz", "", "", ""); code != 200 {
		t.Fatalf("readyz = %d", code)
	}
}

// TestMixedBatch: the good events of a batch land; each bad one is reported with its index and
// dead-lettered.
func TestMixedBatch(t *testing.T) {
	s := start(t, 0)
	body := strings.Join([]string{
		grant("1", "user:ann"),
		`{"specversion":"1.0","id":"2","source":"okta","type":"grant.exploded","time":"2026-01-05T10:00:00Z","data":{}}`,
		grant("3", "group:admins"),
		`{"specversion":"1.0","id":"4",`,
		strings.Replace(grant("5", "user:eve"), `"action":"db.table.drop",`, "", 1),
	}, "\n")
	code, res := s.do(t, "POST", "/v1/events", writerSecret, "application/x-ndjson", body)
	if code != http.StatusAccepted || res["accepted"] != 2.0 {
		t.Fatalf("mixed batch = %d %v", code, res)
	}
	rej, _ := res["rejected"].([]any)
	var idx []int
	for _, r := range rej {
		idx = append(idx, int(r.(map[string]any)["index"].(float64)))
	}
	if fmt.Sprint(idx) != "[1 3 4]" {
		t.Fatalf("rejected indexes %v, want [1 3 4]: %v", idx, rej)
	}
	code, ans := s.do(t, "GET", "/v1/deadletters", adminSecret, "", "")
	if letters, _ := ans["deadletters"].([]any); code != 200 || len(letters) != 3 {
		t.Fatalf("deadletters = %d %v", code, ans)
	}
	code, ans = s.do(t, "GET", "/v1/deadletters?after=2&limit=1", adminSecret, "", "")
	if letters, _ := ans["deadletters"].([]any); code != 200 || len(letters) != 1 || ans["more"] != false {
		t.Fatalf("deadletters after 2 = %d %v", code, ans)
	}
}

// TestAuditsItself: every call, allowed or refused, becomes a decision event in whocould's own
// log, and /metrics counts it.
func TestAuditsItself(t *testing.T) {
	s := start(t, 0)
	s.do(t, "GET", "/v1/who-could?action=a.b&resource=db:x", readerSecret, "", "")
	s.do(t, "GET", "/v1/who-could?action=a.b&resource=db:x", writerSecret, "", "")
	s.do(t, "GET", "/v1/who-could?action=a.b&resource=db:x", "", "", "")
	var got []store.Decision
	deadline := time.Now().Add(10 * time.Second)
	for len(got) < 3 && time.Now().Before(deadline) {
		got = got[:0]
		err := s.store.Decisions(context.Background(), store.DecisionQuery{Tenant: event.DefaultTenant,
			From: time.Now().Add(-time.Hour), To: time.Now().Add(time.Hour)}, func(d store.Decision) error {
			got = append(got, d)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if len(got) != 3 {
		t.Fatalf("%d audit decisions, want 3: %+v", len(got), got)
	}
	effects := map[string]string{}
	for _, d := range got {
		effects[d.Principal] = d.Effect
		if d.Action != "whocould.api.who-could" || d.Resource != "whocould:api/v1/who-could" {
			t.Fatalf("audit decision %+v", d)
		}
	}
	if effects["token:reader"] != event.Allow || effects["token:writer"] != event.Deny || effects["token:anonymous"] != event.Deny {
		t.Fatalf("audit effects %v", effects)
	}
	if code, _ := s.do(t, "GET", "/metrics", "", "", ""); code != http.StatusUnauthorized {
		t.Fatalf("/metrics without a token = %d", code)
	}
	_, m := s.do(t, "GET", "/metrics", readerSecret, "", "")
	text, _ := m["text"].(string)
	for _, want := range []string{`whocould_api_requests_total{code="200",route="/v1/who-could"} 1`, `code="401"`, `code="403"`,
		"whocould_api_request_duration_seconds_bucket"} {
		if !strings.Contains(text, want) {
			t.Fatalf("/metrics lacks %s:\n%.2000s", want, text)
		}
	}
}
