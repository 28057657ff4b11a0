package api_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/whocould/whocould/analyzer"
	"github.com/whocould/whocould/api"
	"github.com/whocould/whocould/finding"
	"github.com/whocould/whocould/store/embedded"
)

func TestFindings(t *testing.T) {
	st, err := embedded.Open(embedded.Config{})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	mk := func(rule, key, sev, principal, resource string) finding.Finding {
		return finding.Finding{ID: finding.IDOf("default", rule, key), Rule: rule, Key: key, Severity: sev, Status: finding.Open,
			Principal: principal, Resource: resource, Summary: key, Since: now.Add(-time.Hour), Evidence: []finding.Evidence{{Kind: "measure", Text: key}}}
	}
	fs := []finding.Finding{
		mk(finding.UnusedGrant, "g1", finding.Low, "user:alice", "db:prod/orders"),
		mk(finding.SeparationOfDuties, "sod", finding.High, "user:bob", ""),
		mk(finding.Drift, "d1", finding.Medium, "", "db:staging"),
	}
	if err := st.PutFindings(context.Background(), "default", fs); err != nil {
		t.Fatal(err)
	}
	cfg := &analyzer.Config{}
	cfg.Defaults()
	svc := &analyzer.Service{Analyzer: &analyzer.Analyzer{Store: st, Config: cfg}, Now: func() time.Time { return now }}
	h, err := api.New(api.Config{Querier: st, Findings: svc, Tokens: []api.Token{
		{Name: "reader", SHA256: api.HashToken(readerSecret), Scopes: []string{api.ScopeRead}},
		{Name: "triage", SHA256: api.HashToken(writerSecret), Scopes: []string{api.ScopeFindingsWrite, api.ScopeRead}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(h)
	defer hs.Close()
	s := &service{url: hs.URL}

	ids := func(body map[string]any) []string {
		var out []string
		for _, f := range body["findings"].([]any) {
			out = append(out, f.(map[string]any)["id"].(string))
		}
		return out
	}
	for _, c := range []struct {
		query string
		want  []string
	}{
		{"", []string{fs[0].ID, fs[1].ID, fs[2].ID}}, // sorted by rule order
		{"?rule=drift", []string{fs[2].ID}},
		{"?rule=drift,unused-grant", []string{fs[0].ID, fs[2].ID}},
		{"?severity=medium", []string{fs[1].ID, fs[2].ID}},
		{"?resource=db:prod", []string{fs[0].ID}},
		{"?principal=user:bob", []string{fs[1].ID}},
		{"?status=resolved", nil},
		{"?tenant=acme", nil},
	} {
		code, body := s.do(t, "GET", "/v1/findings"+c.query, readerSecret, "", "")
		if code != http.StatusOK {
			t.Fatalf("list %s: %d %v", c.query, code, body)
		}
		if got := ids(body); strings.Join(got, ",") != strings.Join(c.want, ",") {
			t.Errorf("list %s: %v, want %v", c.query, got, c.want)
		}
	}
	for _, bad := range []string{"?rule=nope", "?status=closed", "?severity=urgent", "?colour=red"} {
		if code, body := s.do(t, "GET", "/v1/findings"+bad, readerSecret, "", ""); code != http.StatusBadRequest {
			t.Errorf("list %s: %d %v, want 400", bad, code, body)
		}
	}
	if code, body := s.do(t, "GET", "/v1/findings/"+fs[1].ID, readerSecret, "", ""); code != http.StatusOK || body["rule"] != finding.SeparationOfDuties {
		t.Errorf("get: %d %v", code, body)
	}
	if code, _ := s.do(t, "GET", "/v1/findings/Fnope", readerSecret, "", ""); code != http.StatusNotFound {
		t.Errorf("get unknown: %d", code)
	}
	if code, _ := s.do(t, "GET", "/v1/findings", "", "", ""); code != http.StatusUnauthorized {
		t.Errorf("list without a token: %d", code)
	}
	// The lifecycle needs findings:write.
	ack := "/v1/findings/" + fs[1].ID + "/ack"
	if code, _ := s.do(t, "POST", ack, readerSecret, "application/json", `{"reason":"looking"}`); code != http.StatusForbidden {
		t.Errorf("ack by a reader: %d", code)
	}
	code, body := s.do(t, "POST", ack, writerSecret, "application/json", `{"reason":"looking"}`)
	if code != http.StatusOK || body["status"] != finding.Acknowledged || body["acknowledged"].(map[string]any)["by"] != "token:triage" {
		t.Errorf("ack: %d %v", code, body)
	}
	if code, _ := s.do(t, "POST", ack, writerSecret, "application/json", `{}`); code != http.StatusConflict {
		t.Errorf("ack twice: %d, want 409", code)
	}
	sup := "/v1/findings/" + fs[0].ID + "/suppress"
	for _, bad := range []string{`{}`, `{"reason":"x","until":"2020-01-01T00:00:00Z"}`, `{"reason":1}`, `{"reason":"x","colour":1}`} {
		if code, body := s.do(t, "POST", sup, writerSecret, "application/json", bad); code != http.StatusBadRequest {
			t.Errorf("suppress %s: %d %v, want 400", bad, code, body)
		}
	}
	code, body = s.do(t, "POST", sup, writerSecret, "application/json", `{"reason":"break-glass account","until":"2026-09-01T00:00:00Z"}`)
	if code != http.StatusOK || body["status"] != finding.Suppressed {
		t.Errorf("suppress: %d %v", code, body)
	}
	if got, err := analyzer.Get(context.Background(), st, "default", fs[0].ID); err != nil || got.Status != finding.Suppressed {
		t.Errorf("stored after suppress: %v %s", err, got.Status)
	}
	code, body = s.do(t, "POST", "/v1/analyze?rule=drift&tenant=default", writerSecret, "", "")
	if code != http.StatusOK || len(body["runs"].([]any)) == 0 {
		t.Errorf("analyze: %d %v", code, body)
	}
	if code, _ := s.do(t, "POST", "/v1/analyze?rule=nope", writerSecret, "", ""); code != http.StatusBadRequest {
		t.Errorf("analyze an unknown rule: %d", code)
	}
}
