package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/whocould/whocould/analyzer"
	"github.com/whocould/whocould/finding"
	"github.com/whocould/whocould/store"
)

// Findings is what the API asks of the analyzers (an *analyzer.Service).
type Findings interface {
	Analyze(ctx context.Context, opts analyzer.Options) (*analyzer.Result, error)
	List(ctx context.Context, f analyzer.Filter) ([]finding.Finding, error)
	// Get, Acknowledge and Suppress return an error wrapping store.ErrNotFound for an unknown
	// id, and one wrapping finding.ErrTransition for a change the finding's status forbids.
	Get(ctx context.Context, tenant, id string) (finding.Finding, error)
	Acknowledge(ctx context.Context, tenant, id, by, reason string) (finding.Finding, error)
	Suppress(ctx context.Context, tenant, id, by, reason string, until *time.Time) (finding.Finding, error)
}

// The findings' endpoints:
//
//	GET  /v1/findings[?tenant&rule&status&severity&principal&action&resource]  read            {"findings": [...]}
//	GET  /v1/findings/{id}[?tenant]                                             read            Finding
//	POST /v1/findings/{id}/ack[?tenant]       {"reason"}                        findings:write  Finding
//	POST /v1/findings/{id}/suppress[?tenant]  {"reason", "until"}               findings:write  Finding
//	POST /v1/analyze[?tenant&rule...]                                           findings:write  analyzer.Result
//
// rule and status may repeat (or be comma-separated); severity is a minimum; resource selects
// findings about it or below it. Acknowledging and suppressing record the token's name as who.
func (s *Server) findingRoutes() {
	s.route("GET /v1/findings", ScopeRead, s.listFindings)
	s.route("GET /v1/findings/{id}", ScopeRead, s.getFinding)
	s.route("POST /v1/findings/{id}/ack", ScopeFindingsWrite, s.changeFinding(false))
	s.route("POST /v1/findings/{id}/suppress", ScopeFindingsWrite, s.changeFinding(true))
	s.route("POST /v1/analyze", ScopeFindingsWrite, s.analyze)
}

// listParam is a parameter that may repeat or hold a comma-separated list.
func listParam(r *http.Request, name string) []string {
	var out []string
	for _, v := range r.URL.Query()[name] {
		for _, x := range strings.Split(v, ",") {
			if x = strings.TrimSpace(x); x != "" {
				out = append(out, x)
			}
		}
	}
	return out
}

func (s *Server) listFindings(w http.ResponseWriter, r *http.Request, _ *Token) {
	if err := checkParams(r, "tenant", "rule", "status", "severity", "principal", "action", "resource"); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	q := r.URL.Query()
	f := analyzer.Filter{Tenant: q.Get("tenant"), Rules: listParam(r, "rule"), Statuses: listParam(r, "status"),
		Severity: q.Get("severity"), Principal: q.Get("principal"), Action: q.Get("action"), Resource: q.Get("resource")}
	if err := f.Validate(); err != nil {
		writeError(w, http.StatusBadRequest, "parameter "+err.Error())
		return
	}
	fs, err := s.cfg.Findings.List(r.Context(), f)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	if fs == nil {
		fs = []finding.Finding{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"findings": fs})
}

func (s *Server) getFinding(w http.ResponseWriter, r *http.Request, _ *Token) {
	if err := checkParams(r, "tenant"); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	f, err := s.cfg.Findings.Get(r.Context(), r.URL.Query().Get("tenant"), r.PathValue("id"))
	if err != nil {
		writeFindingError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, f)
}

func writeFindingError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, store.ErrNotFound):
		writeError(w, http.StatusNotFound, err.Error())
	case errors.Is(err, finding.ErrInvalid):
		writeError(w, http.StatusBadRequest, err.Error())
	case errors.Is(err, finding.ErrTransition):
		writeError(w, http.StatusConflict, err.Error())
	default:
		writeError(w, http.StatusInternalServerError, err.Error())
	}
}

// findingChange is the body of ack and suppress.
type findingChange struct {
	Reason string     `json:"reason"`
	Until  *time.Time `json:"until"`
}

func (s *Server) changeFinding(suppress bool) func(w http.ResponseWriter, r *http.Request, tok *Token) {
	return func(w http.ResponseWriter, r *http.Request, tok *Token) {
		if err := checkParams(r, "tenant"); err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		var c findingChange
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 64<<10))
		if err != nil {
			writeError(w, http.StatusBadRequest, "read body: "+err.Error())
			return
		}
		if len(strings.TrimSpace(string(body))) > 0 {
			dec := json.NewDecoder(strings.NewReader(string(body)))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&c); err != nil {
				writeError(w, http.StatusBadRequest, fmt.Sprintf("body: want {\"reason\": \"...\", \"until\": \"RFC 3339\"}: %v", err))
				return
			}
		}
		tenant, id, by := r.URL.Query().Get("tenant"), r.PathValue("id"), "token:"+tok.Name
		var f finding.Finding
		if suppress {
			if c.Reason == "" {
				writeError(w, http.StatusBadRequest, "body: a suppression needs a reason")
				return
			}
			f, err = s.cfg.Findings.Suppress(r.Context(), tenant, id, by, c.Reason, c.Until)
		} else {
			if c.Until != nil {
				writeError(w, http.StatusBadRequest, "body: until is for suppress, not ack")
				return
			}
			f, err = s.cfg.Findings.Acknowledge(r.Context(), tenant, id, by, c.Reason)
		}
		if err != nil {
			writeFindingError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, f)
	}
}

func (s *Server) analyze(w http.ResponseWriter, r *http.Request, _ *Token) {
	if err := checkParams(r, "tenant", "rule"); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	opts := analyzer.Options{Rules: listParam(r, "rule"), Tenants: listParam(r, "tenant")}
	if err := (analyzer.Filter{Rules: opts.Rules}).Validate(); err != nil {
		writeError(w, http.StatusBadRequest, "parameter "+err.Error())
		return
	}
	res, err := s.cfg.Findings.Analyze(r.Context(), opts)
	if err != nil && res == nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	out := struct {
		*analyzer.Result
		Error string `json:"error,omitempty"`
	}{Result: res}
	if err != nil {
		out.Error = err.Error()
	}
	writeJSON(w, http.StatusOK, out)
}
