package main

// End-to-end tests of `whocould deadletter list | show | replay`, on a data directory and
// against a running server.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/whocould/whocould/deadletter"
	"github.com/whocould/whocould/event"
)

// dlBadLines are bad lines no replay can fix.
var dlBadLines = []string{
	`{"specversion":"1.0","id":"bad-type","source":"test","type":"user.teleported","time":"2026-01-01T09:00:00Z","data":{"principal":"user:bob"}}`,
	`{"specversion":"1.0","id":"bad-json","source":"test","type":"group.created","time":"2026-01-01T09:00:00Z","data":{"group":"group:x",}}`,
}

// dlImportMixed imports the contract history with dlBadLines after its first event (lines 2
// and 3), and checks the import's exit code.
func dlImportMixed(t *testing.T, data string) {
	t.Helper()
	h := contractHistory()
	lines := []string{string(marshal(t, h[0]))}
	lines = append(lines, dlBadLines...)
	for _, e := range h[1:] {
		lines = append(lines, string(marshal(t, e)))
	}
	f := writeFile(t, t.TempDir(), "mixed.jsonl", []byte(strings.Join(lines, "\n")+"\n"))
	mustRun(t, 2, data, nil, "import", f)
}

// dlAddGood keeps a letter whose bytes are a good event (a grant of db.table.drop on
// db:prod/orders to principal), as an older whocould that refused it would have: the stand-in
// for a fix. No whocould may be running on data.
func dlAddGood(t *testing.T, data, id, principal string) []byte {
	t.Helper()
	raw := marshal(t, ev(id, event.GrantAdded, t0.Add(30*time.Minute),
		event.Data{Subject: principal, Action: "db.table.drop", Resource: "db:prod/orders"}))
	d, err := deadletter.Open(filepath.Join(data, "deadletters.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := d.Add(context.Background(), deadletter.NewLetter("legacy.jsonl", "line 7", id, raw, errors.New("refused by whocould 0.9"))); err != nil {
		t.Fatal(err)
	}
	return raw
}

// dlList runs `deadletter list -o json` (args added) and returns seq → status.
func dlList(t *testing.T, data string, args ...string) (map[int]string, []any) {
	t.Helper()
	r := mustRun(t, 0, data, nil, append([]string{"deadletter", "list", "-o", "json"}, args...)...)
	doc, _ := oneJSON(t, r.stdout).(map[string]any)
	letters, ok := doc["deadletters"].([]any)
	if !ok {
		t.Fatalf("list -o json: no deadletters array:\n%s", r.stdout)
	}
	out := map[int]string{}
	for _, l := range letters {
		m := l.(map[string]any)
		seq, _ := m["seq"].(json.Number).Int64()
		out[int(seq)], _ = m["status"].(string)
	}
	return out, letters
}

// dlReplayJSON runs `deadletter replay ... -o json`, wants exit code want, and returns the
// answer and its results.
func dlReplayJSON(t *testing.T, want int, data string, args ...string) (map[string]any, []map[string]any) {
	t.Helper()
	r := mustRun(t, want, data, nil, append(append([]string{"deadletter", "replay"}, args...), "-o", "json")...)
	doc, _ := oneJSON(t, r.stdout).(map[string]any)
	var results []map[string]any
	rs, _ := doc["results"].([]any)
	for _, x := range rs {
		results = append(results, x.(map[string]any))
	}
	return doc, results
}

func num(v any) int64 {
	n, _ := v.(json.Number).Int64()
	return n
}

func whoCouldDrop(t *testing.T, data string) []string {
	t.Helper()
	ans, _ := queryJSON(t, data, "who-could", "--action", "db.table.drop", "--resource", "db:prod/orders", "--at", "2026-01-06T02:14:00Z").(map[string]any)
	return principalsOf(ans)
}

func TestDeadLetterCommands(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	dlImportMixed(t, data)

	// list: both bad lines, open, with their place.
	st, letters := dlList(t, data)
	if fmt.Sprint(st) != "map[1:open 2:open]" {
		t.Fatalf("list: %v", st)
	}
	for i, l := range letters {
		m := l.(map[string]any)
		if m["where"] != fmt.Sprintf("line %d", i+2) || m["raw"] != dlBadLines[i] || !strings.HasSuffix(m["source"].(string), "mixed.jsonl") {
			t.Errorf("letter %d: %v", i+1, m)
		}
	}
	r := mustRun(t, 0, data, nil, "deadletter", "list")
	if !strings.HasPrefix(r.stdout, "Dead letters: 2 (2 open, 0 replayed)\nSEQ") || !strings.Contains(r.stdout, "user.teleported") {
		t.Errorf("list (table):\n%s", r.stdout)
	}

	// show: the raw bytes as they were.
	r = mustRun(t, 0, data, nil, "deadletter", "show", "2")
	if !strings.HasPrefix(r.stdout, "dead letter 2 (open)\n") || !strings.HasSuffix(r.stdout, "\n"+dlBadLines[1]+"\n") ||
		!strings.Contains(r.stdout, "malformed JSON") {
		t.Errorf("show 2:\n%s", r.stdout)
	}
	if r = mustRun(t, 0, data, nil, "deadletter", "show", "2", "--raw"); r.stdout != dlBadLines[1] {
		t.Errorf("show 2 --raw:\n got %q\nwant %q", r.stdout, dlBadLines[1])
	}
	r = mustRun(t, 0, data, nil, "deadletter", "show", "1", "-o", "json")
	if l, _ := oneJSON(t, r.stdout).(map[string]any); num(l["seq"]) != 1 || l["status"] != "open" || l["raw"] != dlBadLines[0] || l["id"] != "bad-type" {
		t.Errorf("show 1 -o json: %v", l)
	}

	// replay of a letter still bad: exit 2 with the reason; it stays open, no new letter.
	r = mustRun(t, 2, data, nil, "deadletter", "replay", "1")
	if !strings.Contains(r.stdout, "still bad") || !strings.Contains(r.stderr, "dead letter 1") || !strings.Contains(r.stderr, "user.teleported") ||
		!strings.Contains(r.stderr, "1 of 1 dead letter(s) still open") {
		t.Errorf("replay 1: %s", r)
	}
	if st, _ = dlList(t, data); fmt.Sprint(st) != "map[1:open 2:open]" {
		t.Fatalf("list after replaying a bad letter: %v", st)
	}

	// A letter whose bytes are good now lands, and is replayed.
	raw := dlAddGood(t, data, "zed-grant", "user:zed")
	doc, res := dlReplayJSON(t, 0, data, "3")
	if len(res) != 1 || res[0]["outcome"] != "replayed" || res[0]["status"] != "replayed" || num(res[0]["accepted"]) != 1 ||
		num(res[0]["position"]) != int64(len(contractHistory())+1) || num(doc["open"]) != 0 || num(doc["replayed"]) != 1 {
		t.Fatalf("replay 3: %v", doc)
	}
	if got := whoCouldDrop(t, data); fmt.Sprint(got) != "[user:alice user:zed]" {
		t.Errorf("who-could after the replay: %v", got)
	}
	st, letters = dlList(t, data, "--status", "replayed")
	if fmt.Sprint(st) != "map[3:replayed]" {
		t.Fatalf("list --status replayed: %v", st)
	}
	if l := letters[0].(map[string]any); l["replayed_at"] == nil || num(l["position"]) != num(res[0]["position"]) || l["raw"] != string(raw) {
		t.Errorf("replayed letter: %v", l)
	}
	if st, _ = dlList(t, data, "--status", "open"); fmt.Sprint(st) != "map[1:open 2:open]" {
		t.Fatalf("list --status open: %v", st)
	}
	r = mustRun(t, 0, data, nil, "deadletter", "show", "3")
	if !strings.Contains(r.stdout, "dead letter 3 (replayed)") || !strings.Contains(r.stdout, fmt.Sprintf("landed at log position %d", num(res[0]["position"]))) {
		t.Errorf("show 3:\n%s", r.stdout)
	}

	// Again: a no-op.
	r = mustRun(t, 0, data, nil, "deadletter", "replay", "3")
	if !strings.Contains(r.stdout, "already replayed") {
		t.Errorf("replay 3 again:\n%s", r)
	}
	_, res = dlReplayJSON(t, 0, data, "3")
	if res[0]["outcome"] != "already_replayed" {
		t.Errorf("replay 3 again: %v", res)
	}
	if got := whoCouldDrop(t, data); fmt.Sprint(got) != "[user:alice user:zed]" {
		t.Errorf("who-could after replaying again: %v", got)
	}

	// All open ones: 1 and 2, both still bad.
	doc, res = dlReplayJSON(t, 2, data, "--all")
	var seqs []int64
	for _, x := range res {
		seqs = append(seqs, num(x["seq"]))
	}
	if !slices.Equal(seqs, []int64{1, 2}) || num(doc["open"]) != 2 {
		t.Fatalf("replay --all: %v", doc)
	}
	if st, _ = dlList(t, data); len(st) != 3 {
		t.Fatalf("list after replay --all: %v (no new letter wanted)", st)
	}

	// Bad usage and input: exit 2, nothing done.
	for _, args := range [][]string{
		{"deadletter", "replay", "99"},
		{"deadletter", "replay", "1", "99"},
		{"deadletter", "replay"},
		{"deadletter", "replay", "1", "--all"},
		{"deadletter", "replay", "one"},
		{"deadletter", "show", "0"},
		{"deadletter", "show", "99"},
		{"deadletter", "show"},
		{"deadletter", "list", "--status", "closed"},
		{"deadletter", "list", "-o", "yaml"},
		{"deadletter", "list", "--token", "x"},
		{"deadletter", "list", "--server", "localhost:8080", "--token", "x"},
		{"deadletter", "frob"},
	} {
		r := mustRun(t, 2, data, nil, args...)
		if r.stdout != "" || !strings.HasPrefix(r.stderr, "whocould: ") {
			t.Errorf("%s: %s", strings.Join(args, " "), r)
		}
	}
	if st, _ = dlList(t, data); fmt.Sprint(st) != "map[1:open 2:open 3:replayed]" {
		t.Fatalf("list at the end: %v", st)
	}

	// A message of the log itself that the projector could not decode cannot be replayed.
	d, err := deadletter.Open(filepath.Join(data, "deadletters.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	err = d.Add(context.Background(), deadletter.NewLetter("eventlog", "log position 5", "", []byte{0xff, 0x00}, errors.New("undecodable")))
	d.Close()
	if err != nil {
		t.Fatal(err)
	}
	r = mustRun(t, 2, data, nil, "deadletter", "replay", "4")
	if !strings.Contains(r.stdout, "not replayable") || !strings.Contains(r.stderr, "dead letter 4 (eventlog log position 5): not replayable") ||
		!strings.Contains(r.stderr, "rebuild") {
		t.Errorf("replay of a log message: %s", r)
	}
	r = mustRun(t, 0, data, nil, "deadletter", "show", "4")
	if !strings.Contains(r.stdout, "2 bytes (binary)") || !strings.HasSuffix(r.stdout, "\xff\x00\n") {
		t.Errorf("show 4 (binary): %q", r.stdout)
	}
}

// TestDeadLetterServer: while `whocould serve` holds the data directory, the commands work over
// its API with --server and a token.
func TestDeadLetterServer(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	dlImportMixed(t, data)
	dlAddGood(t, data, "zed-grant", "user:zed")
	p := startServe(t, data, serveTestConfig)
	t.Setenv("WHOCOULD_TOKEN", "")
	srv := []string{"--server", p.api, "--token", p.token}

	// The data directory is the server's.
	r := mustRun(t, 1, data, nil, "deadletter", "list")
	if !strings.Contains(r.stderr, "--server") {
		t.Errorf("list on a served data directory: %s", r)
	}

	st, _ := dlList(t, "", srv...)
	if fmt.Sprint(st) != "map[1:open 2:open 3:open]" {
		t.Fatalf("list --server: %v", st)
	}
	if r := mustRun(t, 0, "", nil, append([]string{"deadletter", "show", "2", "--raw"}, srv...)...); r.stdout != dlBadLines[1] {
		t.Errorf("show 2 --raw --server: %q", r.stdout)
	}
	doc, res := dlReplayJSON(t, 0, "", append([]string{"3"}, srv...)...)
	if len(res) != 1 || res[0]["outcome"] != "replayed" || num(doc["position"]) == 0 {
		t.Fatalf("replay 3 --server: %v", doc)
	}
	code, ans := p.get(t, fmt.Sprintf("/v1/who-could?action=db.table.drop&resource=db:prod/orders&at=2026-01-06T02:14:00Z&min_position=%d", num(doc["position"])))
	if got := principalsOf(ans); code != 200 || fmt.Sprint(got) != "[user:alice user:zed]" {
		t.Errorf("who-could after the replay over the API = %d %v", code, ans)
	}
	// The token from the environment.
	t.Setenv("WHOCOULD_TOKEN", p.token)
	_, res = dlReplayJSON(t, 2, "", "--all", "--server", p.api)
	if len(res) != 2 || res[0]["outcome"] != "still_bad" || res[1]["outcome"] != "still_bad" {
		t.Fatalf("replay --all --server: %v", res)
	}
	if st, _ = dlList(t, "", "--server", p.api, "--status", "replayed"); fmt.Sprint(st) != "map[3:replayed]" {
		t.Fatalf("list --status replayed --server: %v", st)
	}
	r = mustRun(t, 2, "", nil, "deadletter", "show", "99", "--server", p.api)
	if !strings.Contains(r.stderr, "no such dead letter") {
		t.Errorf("show 99 --server: %s", r)
	}
	r = mustRun(t, 2, "", nil, "deadletter", "list", "--server", p.api, "--token", "wc_wrong")
	if !strings.Contains(r.stderr, "unknown token") {
		t.Errorf("list with a wrong token: %s", r)
	}
	t.Setenv("WHOCOULD_TOKEN", "")
	mustRun(t, 2, "", nil, "deadletter", "list", "--server", p.api)
	p.stop(t)

	// What the server replayed is in the data directory.
	if st, _ = dlList(t, data); fmt.Sprint(st) != "map[1:open 2:open 3:replayed]" {
		t.Fatalf("list after the server stopped: %v", st)
	}
}
