// Package api is whocould's HTTP API (CONTRACT.md "HTTP"): the queries, POST /v1/events, the
// dead letters, health, readiness and Prometheus metrics. Every endpoint but the health checks
// needs a bearer token with the right scope, and every call is recorded as a decision event in
// whocould's own log (source "whocould"): whocould audits its own access.
package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/whocould/whocould/access"
	"github.com/whocould/whocould/ingest"
)

// Only /healthz and /readyz answer without a token; /metrics needs the read scope.

// Config wires the API to the rest of the process. Querier and Tokens are required; a nil
// Ingest or DeadLetters leaves its endpoints out (404), for targets that do not run them (the
// dead letters' replay needs both).
type Config struct {
	Querier access.Querier
	// Projected is the log position the projection has applied (for min_position).
	Projected func() uint64
	// Ready reports why the service is not ready yet (nil: ready), for /readyz.
	Ready       func(ctx context.Context) error
	Ingest      *ingest.Ingester
	DeadLetters DeadLetters
	// Findings serves the analyzers' findings (nil: their endpoints are left out).
	Findings Findings
	Tokens   []Token
	// Audit records every call (nil: not recorded).
	Audit *Audit
	// Registry receives the API's metrics and is what /metrics serves (nil: a new one).
	Registry *prometheus.Registry
	// MaxBodyBytes bounds a request body (default 16 MiB).
	MaxBodyBytes int64
	// MaxWait bounds the wait for min_position (default 10s).
	MaxWait time.Duration
	Logger  *slog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Server is the API as an http.Handler.
type Server struct {
	cfg     Config
	keys    *keyring
	mux     *http.ServeMux
	log     *slog.Logger
	metrics *metrics
}

type metrics struct {
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
}

// The defaults of Config.MaxBodyBytes and Config.MaxWait.
const (
	DefaultMaxBodyBytes = 16 << 20
	DefaultMaxWait      = 10 * time.Second
)

// New checks cfg and builds the server.
func New(cfg Config) (*Server, error) {
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if cfg.MaxWait <= 0 {
		cfg.MaxWait = DefaultMaxWait
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Registry == nil {
		cfg.Registry = prometheus.NewRegistry()
	}
	if cfg.Projected == nil {
		cfg.Projected = func() uint64 { return ^uint64(0) }
	}
	keys, err := newKeyring(cfg.Tokens)
	if err != nil {
		return nil, fmt.Errorf("api: %w", err)
	}
	s := &Server{cfg: cfg, keys: keys, mux: http.NewServeMux(), log: cfg.Logger}
	s.metrics = &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "whocould", Subsystem: "api", Name: "requests_total",
			Help: "API requests by route and HTTP status code.",
		}, []string{"route", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "whocould", Subsystem: "api", Name: "request_duration_seconds",
			Help:    "API request latency by route (queries include any wait for min_position).",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2.5, 14),
		}, []string{"route"}),
	}
	if err := errors.Join(cfg.Registry.Register(s.metrics.requests), cfg.Registry.Register(s.metrics.latency)); err != nil {
		return nil, fmt.Errorf("api: register metrics: %w", err)
	}

	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { writeText(w, http.StatusOK, "ok\n") })
	s.mux.HandleFunc("GET /readyz", s.readyz)
	metricsHandler := promhttp.HandlerFor(cfg.Registry, promhttp.HandlerOpts{Registry: cfg.Registry})
	s.route("GET /metrics", ScopeRead, func(w http.ResponseWriter, r *http.Request, _ *Token) { metricsHandler.ServeHTTP(w, r) })
	if cfg.Querier != nil {
		for _, ask := range []string{access.AskWhoCould, access.AskWhatCould, access.AskExplain, access.AskHistory} {
			s.route("GET /v1/"+ask, ScopeRead, s.query(ask))
		}
	}
	if cfg.Ingest != nil {
		s.route("POST /v1/events", ScopeEventsWrite, s.postEvents)
	}
	if cfg.Findings != nil {
		s.findingRoutes()
	}
	if cfg.DeadLetters != nil {
		if err := s.deadLetterRoutes(); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// statusWriter remembers the status code.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// route registers an authenticated, audited, measured handler.
func (s *Server) route(pattern, scope string, h func(w http.ResponseWriter, r *http.Request, tok *Token)) {
	name := pattern[strings.IndexByte(pattern, ' ')+1:]
	s.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		start := s.cfg.Now()
		sw := &statusWriter{ResponseWriter: w}
		tok, denied := s.authorize(r, scope)
		caller := "anonymous"
		if tok != nil {
			caller = tok.Name
		}
		if denied != "" {
			code := http.StatusUnauthorized
			if tok != nil {
				code = http.StatusForbidden
			} else {
				sw.Header().Set("WWW-Authenticate", `Bearer realm="whocould"`)
			}
			writeError(sw, code, denied)
		} else {
			h(sw, r, tok)
		}
		s.metrics.requests.WithLabelValues(name, strconv.Itoa(sw.code)).Inc()
		s.metrics.latency.WithLabelValues(name).Observe(s.cfg.Now().Sub(start).Seconds())
		s.log.Debug("api", "method", r.Method, "path", r.URL.Path, "caller", caller, "status", sw.code)
		if s.cfg.Audit != nil {
			s.cfg.Audit.Record(r.Context(), Call{
				At: start, Caller: caller, Route: name, Method: r.Method, Status: sw.code, Denied: denied, Remote: r.RemoteAddr,
			})
		}
	})
}

// authorize finds the caller's token and checks its scope; denied says why a call is refused.
func (s *Server) authorize(r *http.Request, scope string) (tok *Token, denied string) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return nil, "no token: send Authorization: Bearer TOKEN"
	}
	secret, ok := strings.CutPrefix(h, "Bearer ")
	if !ok || strings.TrimSpace(secret) == "" {
		return nil, "malformed Authorization header: want Bearer TOKEN"
	}
	tok = s.keys.find(strings.TrimSpace(secret))
	if tok == nil {
		return nil, "unknown token"
	}
	if !tok.allows(scope) {
		return tok, fmt.Sprintf("token %s lacks scope %s", tok.Name, scope)
	}
	return tok, ""
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Ready != nil {
		if err := s.cfg.Ready(r.Context()); err != nil {
			writeText(w, http.StatusServiceUnavailable, "not ready: "+err.Error()+"\n")
			return
		}
	}
	writeText(w, http.StatusOK, "ready\n")
}

// checkParams refuses a parameter the endpoint does not know.
func checkParams(r *http.Request, known ...string) error {
	for name := range r.URL.Query() {
		if !slices.Contains(known, name) {
			return fmt.Errorf("unknown parameter %q (this endpoint takes %s)", name, strings.Join(known, ", "))
		}
	}
	return nil
}

func (s *Server) query(ask string) func(w http.ResponseWriter, r *http.Request, _ *Token) {
	known := append(slices.Clone(access.Params), "min_position")
	return func(w http.ResponseWriter, r *http.Request, _ *Token) {
		if err := checkParams(r, known...); err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		vals := r.URL.Query()
		q, err := access.ParseQuery(ask, vals.Get, s.cfg.Now())
		if err != nil {
			writeError(w, http.StatusBadRequest, "parameter "+err.Error())
			return
		}
		if v := vals.Get("min_position"); v != "" {
			pos, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				writeError(w, http.StatusBadRequest, fmt.Sprintf("parameter min_position %q: not a log position", v))
				return
			}
			if err := s.waitFor(r.Context(), pos); err != nil {
				w.Header().Set("Retry-After", "1")
				writeError(w, http.StatusServiceUnavailable, err.Error())
				return
			}
		}
		var ans any
		switch ask {
		case access.AskWhoCould:
			ans, err = s.cfg.Querier.WhoCould(r.Context(), q)
		case access.AskWhatCould:
			ans, err = s.cfg.Querier.WhatCould(r.Context(), q)
		case access.AskExplain:
			ans, err = s.cfg.Querier.Explain(r.Context(), q)
		case access.AskHistory:
			ans, err = s.cfg.Querier.History(r.Context(), q)
		}
		if err != nil {
			s.log.Error("api: query", "question", ask, "error", err)
			writeError(w, http.StatusInternalServerError, "the store failed to answer: "+err.Error())
			return
		}
		writeJSON(w, http.StatusOK, ans)
	}
}

// waitFor waits (bounded by MaxWait and the request) until the projection reached pos.
func (s *Server) waitFor(ctx context.Context, pos uint64) error {
	if s.cfg.Projected() >= pos {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.MaxWait)
	defer cancel()
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for s.cfg.Projected() < pos {
		select {
		case <-tick.C:
		case <-ctx.Done():
			return fmt.Errorf("the projection is at log position %d and did not reach min_position %d within %s; retry",
				s.cfg.Projected(), pos, s.cfg.MaxWait)
		}
	}
	return nil
}

// eventTypes are the media types POST /v1/events takes.
var eventTypes = []string{"application/json", "application/cloudevents+json", "application/cloudevents-batch+json",
	"application/x-ndjson", "application/jsonl", "application/json-seq"}

func (s *Server) postEvents(w http.ResponseWriter, r *http.Request, tok *Token) {
	if err := checkParams(r); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || !slices.Contains(eventTypes, mt) {
		writeError(w, http.StatusUnsupportedMediaType, fmt.Sprintf("Content-Type %q: want one of %s",
			r.Header.Get("Content-Type"), strings.Join(eventTypes, ", ")))
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes))
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("body over %d bytes: send smaller batches", s.cfg.MaxBodyBytes))
		return
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, "read body: "+err.Error())
		return
	}
	items, err := ingest.DecodeMessage(nil, ingest.Message{Data: body, Source: "http"})
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	decoded := 0
	for _, it := range items {
		if it.Err == nil {
			decoded++
		}
	}
	if decoded == 0 {
		// Nothing usable: the producer still has the body and gets the reason at once; nothing
		// is dead-lettered.
		rej := make([]ingest.Rejection, len(items))
		for i, it := range items {
			rej[i] = ingest.Rejection{Index: i, Where: it.Where, ID: it.ID, Error: it.Err.Error()}
		}
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": rej[0].Error, "rejected": rej})
		return
	}
	res, err := s.cfg.Ingest.Ingest(r.Context(), "http:"+tok.Name, items)
	if err != nil {
		s.log.Error("api: ingest", "error", err)
		writeError(w, http.StatusServiceUnavailable, "events not stored, send them again: "+err.Error())
		return
	}
	writeJSON(w, http.StatusAccepted, res)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}

func writeText(w http.ResponseWriter, code int, s string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(code)
	_, _ = io.WriteString(w, s)
}
