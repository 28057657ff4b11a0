package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/whocould/whocould/analyzer"
	"github.com/whocould/whocould/event"
	"github.com/whocould/whocould/store/embedded"
)

// sodHistory: ann can create payments from 10:00 on 5 January and approve them from 11:00 until
// the approve grant is removed on the 7th: a separation-of-duties violation that has ended.
// bob holds only the create side.
func sodHistory(t *testing.T) []byte {
	at := time.Date(2026, 1, 5, 10, 0, 0, 0, time.UTC)
	return jsonLines(t, []event.Event{
		ev("s1", event.GrantAdded, at, event.Data{Subject: "user:ann", Action: "payment.create", Resource: "payments:eu"}),
		ev("s2", event.GrantAdded, at.Add(time.Hour), event.Data{Subject: "user:ann", Action: "payment.approve", Resource: "payments:*"}),
		ev("s3", event.GrantRemoved, at.Add(48*time.Hour), event.Data{Subject: "user:ann", Action: "payment.approve", Resource: "payments:*"}),
		ev("s4", event.GrantAdded, at, event.Data{Subject: "user:bob", Action: "payment.create", Resource: "payments:eu"}),
	})
}

const sodConfig = `
nats:
  listen: 127.0.0.1:0
api:
  listen: 127.0.0.1:0
analyzer:
  schedule: "@every 1s"
  separation_of_duties:
    - name: create-and-approve
      actions: [payment.create, payment.approve]
`

type findingsJSON struct {
	Findings []struct {
		ID, Rule, Status, Principal, Summary string
		Evidence                             []struct{ Text string }
	}
}

func decodeFindings(t *testing.T, stdout string) findingsJSON {
	t.Helper()
	var out findingsJSON
	if err := json.Unmarshal([]byte(stdout), &out); err != nil {
		t.Fatalf("not the findings JSON: %v\n%s", err, stdout)
	}
	return out
}

// TestAnalyzeAndFindings: the analyzers over a data directory, then the findings' lifecycle from
// the command line; the same finding on a second run; bad usage exits 2.
func TestAnalyzeAndFindings(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	cfg := writeFile(t, dir, "whocould.yaml", []byte(sodConfig))
	mustRun(t, 0, data, nil, "import", writeFile(t, dir, "sod.jsonl", sodHistory(t)))

	first := decodeFindings(t, mustRun(t, 0, data, nil, "analyze", "--config", cfg, "--rule", "separation-of-duties", "-o", "json").stdout)
	if len(first.Findings) != 1 || first.Findings[0].Principal != "user:ann" || first.Findings[0].Rule != "separation-of-duties" {
		t.Fatalf("analyze: %+v", first)
	}
	f := first.Findings[0]
	if f.Status != "resolved" || len(f.Evidence) == 0 {
		t.Errorf("an ended violation: status %s, %d evidence", f.Status, len(f.Evidence))
	}
	again := decodeFindings(t, mustRun(t, 0, data, nil, "analyze", "--config", cfg, "--rule", "separation-of-duties", "-o", "json").stdout)
	if len(again.Findings) != 1 || again.Findings[0].ID != f.ID {
		t.Fatalf("second run: %+v, want the same finding %s", again, f.ID)
	}
	table := mustRun(t, 0, data, nil, "analyze", "--config", cfg, "--rule", "separation-of-duties").stdout
	if !strings.Contains(table, f.ID) || !strings.Contains(table, "separation-of-duties") {
		t.Errorf("analyze's table lacks the finding:\n%s", table)
	}

	all := decodeFindings(t, mustRun(t, 0, data, nil, "findings", "list", "--status", "all", "-o", "json").stdout)
	if len(all.Findings) != 1 || all.Findings[0].ID != f.ID {
		t.Fatalf("findings list: %+v", all)
	}
	if open := decodeFindings(t, mustRun(t, 0, data, nil, "findings", "list", "-o", "json").stdout); len(open.Findings) != 0 {
		t.Errorf("findings list shows resolved findings by default: %+v", open)
	}
	show := mustRun(t, 0, data, nil, "findings", "show", f.ID).stdout
	for _, want := range []string{f.ID, "user:ann", "evidence:", "history:"} {
		if !strings.Contains(show, want) {
			t.Errorf("findings show lacks %q:\n%s", want, show)
		}
	}
	// A resolved finding cannot be acknowledged: exit 2, saying why.
	if r := mustRun(t, 2, data, nil, "findings", "ack", f.ID); !strings.Contains(r.stderr, "resolved") {
		t.Errorf("ack of a resolved finding: %s", r)
	}
	mustRun(t, 2, data, nil, "findings", "show", "Fnosuchfinding")
	mustRun(t, 2, data, nil, "findings", "suppress", f.ID)
	mustRun(t, 2, data, nil, "analyze", "--rule", "no-such-rule")
	mustRun(t, 2, data, nil, "findings", "list", "--status", "closed")
}

// TestServeAnalyzerTarget: serve runs the analyzers on their schedule; the findings come out of
// the API and `findings --server`; acknowledging over the API sticks across scheduled runs.
func TestServeAnalyzerTarget(t *testing.T) {
	dir := t.TempDir()
	p := startServe(t, filepath.Join(dir, "data"), sodConfig+`
  rules: [separation-of-duties]
`)
	// ann again, but the violation still holds (no removal): the finding stays open.
	at := time.Date(2026, 1, 5, 10, 0, 0, 0, time.UTC)
	p.post(t, jsonLines(t, []event.Event{
		ev("s1", event.GrantAdded, at, event.Data{Subject: "user:ann", Action: "payment.create", Resource: "payments:eu"}),
		ev("s2", event.GrantAdded, at.Add(time.Hour), event.Data{Subject: "user:ann", Action: "payment.approve", Resource: "payments:*"}),
	}))
	var id string
	deadline := time.Now().Add(30 * time.Second)
	for id == "" && time.Now().Before(deadline) {
		_, ans := p.get(t, "/v1/findings?rule=separation-of-duties")
		if fs, _ := ans["findings"].([]any); len(fs) == 1 {
			id = fs[0].(map[string]any)["id"].(string)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if id == "" {
		t.Fatalf("no finding from the scheduled analyzer within 30s\n%s", p.log())
	}
	os.Setenv("WHOCOULD_TOKEN", p.token)
	defer os.Unsetenv("WHOCOULD_TOKEN")
	mustRun(t, 0, "", nil, "findings", "ack", id, "--server", p.api, "--reason", "ticket SEC-1")
	time.Sleep(2500 * time.Millisecond) // two more scheduled runs
	list := decodeFindings(t, mustRun(t, 0, "", nil, "findings", "list", "--server", p.api, "-o", "json").stdout)
	if len(list.Findings) != 1 || list.Findings[0].Status != "acknowledged" {
		t.Fatalf("after ack and more runs: %+v", list)
	}
	req, _ := http.NewRequest("GET", p.api+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+p.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	text, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(text), `whocould_schedule_runs_total{job="analyze",status="ok"}`) {
		t.Errorf("/metrics lacks the analyzer's runs")
	}
	p.stop(t)
}

// TestFindingsAcrossRebuild: a rebuild replays the log into a fresh store; the findings, their
// ids and their lifecycle (an acknowledgement) are the same after it, and a run after the
// rebuild finds the same conditions under the same ids, opening nothing new.
func TestFindingsAcrossRebuild(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	cfg := writeFile(t, dir, "whocould.yaml", []byte(sodConfig))
	at := time.Date(2026, 1, 5, 10, 0, 0, 0, time.UTC)
	mustRun(t, 0, data, nil, "import", writeFile(t, dir, "sod.jsonl", jsonLines(t, []event.Event{
		ev("s1", event.GrantAdded, at, event.Data{Subject: "user:ann", Action: "payment.create", Resource: "payments:eu"}),
		ev("s2", event.GrantAdded, at.Add(time.Hour), event.Data{Subject: "user:ann", Action: "payment.approve", Resource: "payments:*"}),
		ev("s3", event.GrantAdded, at, event.Data{Subject: "user:bob", Action: "payment.*", Resource: "payments:us"}),
	})))
	before := decodeFindings(t, mustRun(t, 0, data, nil, "analyze", "--config", cfg, "-o", "json").stdout)
	if len(before.Findings) < 2 {
		t.Fatalf("before the rebuild: %+v", before)
	}
	mustRun(t, 0, data, nil, "findings", "ack", before.Findings[0].ID, "--reason", "SEC-7")
	mustRun(t, 0, data, nil, "rebuild")
	stored := decodeFindings(t, mustRun(t, 0, data, nil, "findings", "list", "--status", "all", "-o", "json").stdout)
	if len(stored.Findings) != len(before.Findings) {
		t.Fatalf("after the rebuild %d findings are stored, want %d", len(stored.Findings), len(before.Findings))
	}
	var out struct {
		Findings []struct{ ID, Status string }
		Runs     []struct{ New, Resolved int }
	}
	if err := json.Unmarshal([]byte(mustRun(t, 0, data, nil, "analyze", "--config", cfg, "-o", "json").stdout), &out); err != nil {
		t.Fatal(err)
	}
	ids := map[string]string{}
	for _, f := range out.Findings {
		ids[f.ID] = f.Status
	}
	for i, f := range before.Findings {
		want := f.Status
		if i == 0 {
			want = "acknowledged"
		}
		if ids[f.ID] != want {
			t.Errorf("after the rebuild, finding %s is %q, want %q", f.ID, ids[f.ID], want)
		}
	}
	for _, r := range out.Runs {
		if r.New != 0 || r.Resolved != 0 {
			t.Errorf("a run after the rebuild opened %d and resolved %d findings", r.New, r.Resolved)
		}
	}
}

// TestServeConfigLoadsBaseline: serve's config, once validated, carries the baseline its
// analyzer section names, so the scheduled runs and POST /v1/analyze judge drift (Validate on
// a copy of the config used to load it into the copy only).
func TestServeConfigLoadsBaseline(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "baseline.yaml", []byte("roles:\n  role:admin: {permissions: [\"*\"]}\n"))
	cfg, err := loadServeConfig(writeFile(t, dir, "whocould.yaml", []byte("analyzer:\n  baseline: baseline.yaml\n")))
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	st, err := embedded.Open(embedded.Config{})
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 1, 5, 10, 0, 0, 0, time.UTC)
	if err := st.Apply(context.Background(), []event.Record{
		{Position: 1, Recorded: at, Event: ev("p", event.RolePermissionAdded, at, event.Data{Role: "role:admin", Action: "*"})},
		{Position: 2, Recorded: at, Event: ev("x", event.GrantAdded, at, event.Data{Subject: "user:eve", Role: "role:admin", Resource: "db:prod"})},
	}); err != nil {
		t.Fatal(err)
	}
	res, err := (&analyzer.Analyzer{Store: st, Config: &cfg.Analyzer}).Run(context.Background(),
		analyzer.Options{Rules: []string{"drift"}, Now: at.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Findings) != 1 {
		t.Fatalf("drift under serve's config: %d findings, want the extra grant", len(res.Findings))
	}
}
