package api_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/whocould/whocould/deadletter"
)

// letterSeqs are the seqs of a list answer, and their statuses.
func letterSeqs(t *testing.T, ans map[string]any) (seqs []int, statuses []string) {
	t.Helper()
	ls, ok := ans["deadletters"].([]any)
	if !ok {
		t.Fatalf("no deadletters in %v", ans)
	}
	for _, l := range ls {
		m := l.(map[string]any)
		seqs = append(seqs, int(m["seq"].(float64)))
		statuses = append(statuses, m["status"].(string))
	}
	return seqs, statuses
}

// TestDeadLetterLifecycle: bad events are listed and shown; replaying one still bad leaves it
// open without a new letter; one whose bytes are good now lands, is queryable, shows as
// replayed, and replaying it again is a no-op.
func TestDeadLetterLifecycle(t *testing.T) {
	s := start(t, 0)
	bad := strings.Replace(grant("5", "user:eve"), `"action":"db.table.drop",`, "", 1)
	code, res := s.do(t, "POST", "/v1/events", writerSecret, "application/x-ndjson", grant("1", "user:ann")+"\n"+bad+"\n")
	if code != http.StatusAccepted || res["accepted"] != 1.0 {
		t.Fatalf("POST = %d %v", code, res)
	}
	// A letter with good bytes, as an older whocould refused them: the stand-in for a fix.
	err := s.dead.Add(context.Background(), deadletter.NewLetter("http:writer", "item 7", "2", []byte(grant("2", "user:bob")), errors.New("refused by an older version")))
	if err != nil {
		t.Fatal(err)
	}

	code, ans := s.do(t, "GET", "/v1/deadletters", adminSecret, "", "")
	if seqs, st := letterSeqs(t, ans); code != 200 || fmt.Sprint(seqs, st) != "[1 2] [open open]" {
		t.Fatalf("list = %d %v", code, ans)
	}
	code, l := s.do(t, "GET", "/v1/deadletters/1", adminSecret, "", "")
	if code != 200 || l["seq"] != 1.0 || l["status"] != "open" || l["source"] != "http:writer" || l["raw"] != bad ||
		!strings.Contains(l["reason"].(string), "action") || l["replayed_at"] != nil {
		t.Fatalf("GET /v1/deadletters/1 = %d %v", code, l)
	}

	// Still bad: stays open, the reason says why now, no new letter.
	code, rep := s.do(t, "POST", "/v1/deadletters/1/replay", adminSecret, "", "")
	r0 := firstResult(t, rep)
	if code != 200 || rep["open"] != 1.0 || rep["replayed"] != 0.0 || r0["outcome"] != "still_bad" || r0["status"] != "open" ||
		!strings.Contains(r0["reason"].(string), "action") {
		t.Fatalf("replay 1 = %d %v", code, rep)
	}
	if s.dead.Count() != 2 {
		t.Fatalf("%d letters after replaying a bad one, want 2", s.dead.Count())
	}

	// Good now: lands, and the query sees it.
	code, rep = s.do(t, "POST", "/v1/deadletters/2/replay", adminSecret, "", "")
	r0 = firstResult(t, rep)
	if code != 200 || rep["open"] != 0.0 || rep["replayed"] != 1.0 || r0["outcome"] != "replayed" || r0["status"] != "replayed" ||
		r0["accepted"] != 1.0 || r0["position"] == nil || rep["position"] != r0["position"] || r0["replayed_at"] == nil {
		t.Fatalf("replay 2 = %d %v", code, rep)
	}
	pos := uint64(rep["position"].(float64))
	code, who := s.do(t, "GET", fmt.Sprintf("/v1/who-could?action=db.table.drop&resource=db:prod/orders&at=2026-01-06T00:00:00Z&min_position=%d", pos), adminSecret, "", "")
	if ps, _ := who["principals"].([]any); code != 200 || len(ps) != 2 {
		t.Fatalf("who-could after the replay = %d %v", code, who)
	}
	code, l = s.do(t, "GET", "/v1/deadletters/2", adminSecret, "", "")
	if code != 200 || l["status"] != "replayed" || l["position"] != float64(pos) || l["replayed_at"] == nil {
		t.Fatalf("GET /v1/deadletters/2 after the replay = %d %v", code, l)
	}
	// Again: a no-op.
	code, rep = s.do(t, "POST", "/v1/deadletters/2/replay", adminSecret, "", "")
	if r0 = firstResult(t, rep); code != 200 || r0["outcome"] != "already_replayed" || rep["replayed"] != 0.0 || r0["position"] != float64(pos) {
		t.Fatalf("replay 2 again = %d %v", code, rep)
	}

	// The status filter.
	for status, want := range map[string]string{"open": "[1] [open]", "replayed": "[2] [replayed]", "all": "[1 2] [open replayed]"} {
		code, ans := s.do(t, "GET", "/v1/deadletters?status="+status, adminSecret, "", "")
		if seqs, st := letterSeqs(t, ans); code != 200 || fmt.Sprint(seqs, st) != want {
			t.Errorf("list status=%s = %d %v, want %s", status, code, ans, want)
		}
	}

	// All open ones (and named ones).
	code, rep = s.do(t, "POST", "/v1/deadletters/replay", adminSecret, "", "")
	if rs, _ := rep["results"].([]any); code != 200 || len(rs) != 1 || rep["open"] != 1.0 || firstResult(t, rep)["seq"] != 1.0 {
		t.Fatalf("replay all = %d %v", code, rep)
	}
	code, rep = s.do(t, "POST", "/v1/deadletters/replay?seq=2&seq=1", adminSecret, "", "")
	if rs, _ := rep["results"].([]any); code != 200 || len(rs) != 2 || rep["open"] != 1.0 || firstResult(t, rep)["outcome"] != "already_replayed" {
		t.Fatalf("replay 2, 1 = %d %v", code, rep)
	}
	if s.dead.Count() != 2 || s.dead.Open() != 1 {
		t.Fatalf("count %d, open %d; want 2, 1", s.dead.Count(), s.dead.Open())
	}

	// The open count is a metric.
	_, m := s.do(t, "GET", "/metrics", readerSecret, "", "")
	if text, _ := m["text"].(string); !strings.Contains(text, "whocould_deadletters_open 1\n") {
		t.Fatalf("/metrics lacks whocould_deadletters_open 1:\n%.3000s", text)
	}
}

func firstResult(t *testing.T, rep map[string]any) map[string]any {
	t.Helper()
	rs, _ := rep["results"].([]any)
	if len(rs) == 0 {
		t.Fatalf("no results in %v", rep)
	}
	return rs[0].(map[string]any)
}

func TestDeadLetterBadRequests(t *testing.T) {
	s := start(t, 0)
	if err := s.dead.Add(context.Background(), deadletter.NewLetter("http:writer", "", "", []byte("{"), errors.New("malformed"))); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, method, path, secret string
		code                       int
		msg                        string
	}{
		{"get needs admin", "GET", "/v1/deadletters/1", readerSecret, 403, "admin"},
		{"replay needs admin", "POST", "/v1/deadletters/1/replay", writerSecret, 403, "admin"},
		{"replay all needs admin", "POST", "/v1/deadletters/replay", readerSecret, 403, "admin"},
		{"replay needs a token", "POST", "/v1/deadletters/replay", "", 401, "no token"},
		{"bad status", "GET", "/v1/deadletters?status=closed", adminSecret, 400, `status "closed"`},
		{"bad seq", "GET", "/v1/deadletters/x", adminSecret, 400, `"x": not a dead-letter number`},
		{"seq 0", "GET", "/v1/deadletters/0", adminSecret, 400, "not a dead-letter number"},
		{"no such letter", "GET", "/v1/deadletters/9", adminSecret, 404, "no such dead letter"},
		{"replay no such letter", "POST", "/v1/deadletters/9/replay", adminSecret, 404, "no such dead letter"},
		{"replay some unknown", "POST", "/v1/deadletters/replay?seq=1&seq=9", adminSecret, 404, "no such dead letter: 9"},
		{"replay bad seq", "POST", "/v1/deadletters/replay?seq=one", adminSecret, 400, `seq "one"`},
		{"unknown parameter", "POST", "/v1/deadletters/1/replay?force=1", adminSecret, 400, `unknown parameter "force"`},
		{"get replay", "GET", "/v1/deadletters/replay", adminSecret, 400, "not a dead-letter number"},
		{"wrong method", "DELETE", "/v1/deadletters/1", adminSecret, 405, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, ans := s.do(t, c.method, c.path, c.secret, "", "")
			msg, _ := ans["error"].(string)
			if code != c.code || !strings.Contains(msg, c.msg) {
				t.Fatalf("%s %s = %d %q, want %d with %q", c.method, c.path, code, msg, c.code, c.msg)
			}
		})
	}
	// Nothing was replayed by the refused calls.
	if s.dead.Open() != 1 || s.dead.Count() != 1 {
		t.Fatalf("open %d, count %d after refused calls", s.dead.Open(), s.dead.Count())
	}
}
