package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/whocould/whocould/deadletter"
	"github.com/whocould/whocould/ingest"
)

// DeadLetters is what the API reads and resolves of the dead letters (a *deadletter.File).
type DeadLetters interface {
	ingest.ReplayStore
	// Get is one letter; deadletter.ErrNotFound when there is none.
	Get(ctx context.Context, seq uint64) (deadletter.Letter, error)
	// Open is how many letters are still open.
	Open() uint64
}

// The dead-letter endpoints, all of scope admin:
//
//	GET  /v1/deadletters[?status=open|replayed|all&after=SEQ&limit=N]  {"deadletters": [Letter...], "more": bool}
//	GET  /v1/deadletters/{seq}                                         Letter
//	POST /v1/deadletters/{seq}/replay                                  ingest.ReplaySummary
//	POST /v1/deadletters/replay[?seq=N&seq=M...]                       ingest.ReplaySummary (no seq: every open letter)
//
// The replays need Ingest too; without it only the GETs are served.
func (s *Server) deadLetterRoutes() error {
	open := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "whocould", Name: "deadletters_open",
		Help: "Dead letters still open (kept and not replayed).",
	}, func() float64 { return float64(s.cfg.DeadLetters.Open()) })
	if err := s.cfg.Registry.Register(open); err != nil {
		return fmt.Errorf("api: register metrics: %w", err)
	}
	s.route("GET /v1/deadletters", ScopeAdmin, s.deadLetters)
	s.route("GET /v1/deadletters/{seq}", ScopeAdmin, s.deadLetter)
	if s.cfg.Ingest != nil {
		s.route("POST /v1/deadletters/{seq}/replay", ScopeAdmin, s.replayDeadLetter)
		s.route("POST /v1/deadletters/replay", ScopeAdmin, s.replayDeadLetters)
	}
	return nil
}

// letterStatuses are the values of the status parameter.
var letterStatuses = []string{"all", deadletter.StatusOpen, deadletter.StatusReplayed}

func (s *Server) deadLetters(w http.ResponseWriter, r *http.Request, _ *Token) {
	if err := checkParams(r, "after", "limit", "status"); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	var after uint64
	limit := 100
	status := "all"
	if v := r.URL.Query().Get("after"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("parameter after %q: not a dead-letter number", v))
			return
		}
		after = n
	}
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 10000 {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("parameter limit %q: want 1 to 10000", v))
			return
		}
		limit = n
	}
	if v := r.URL.Query().Get("status"); v != "" {
		if !slices.Contains(letterStatuses, v) {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("parameter status %q: want open, replayed or all", v))
			return
		}
		status = v
	}
	letters := []deadletter.Letter{}
	errFull := errors.New("full")
	err := s.cfg.DeadLetters.List(r.Context(), func(l deadletter.Letter) error {
		if l.Seq <= after || (status != "all" && l.Status != status) {
			return nil
		}
		if len(letters) == limit {
			return errFull
		}
		letters = append(letters, l)
		return nil
	})
	if err != nil && !errors.Is(err, errFull) {
		writeError(w, http.StatusInternalServerError, "read dead letters: "+err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"deadletters": letters, "more": errors.Is(err, errFull)})
}

// seqOf is the {seq} of the path; false when the answer was sent.
func seqOf(w http.ResponseWriter, r *http.Request) (uint64, bool) {
	if err := checkParams(r); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return 0, false
	}
	v := r.PathValue("seq")
	seq, err := strconv.ParseUint(v, 10, 64)
	if err != nil || seq == 0 {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("dead letter %q: not a dead-letter number (1, 2, ...)", v))
		return 0, false
	}
	return seq, true
}

func (s *Server) deadLetter(w http.ResponseWriter, r *http.Request, _ *Token) {
	seq, ok := seqOf(w, r)
	if !ok {
		return
	}
	l, err := s.cfg.DeadLetters.Get(r.Context(), seq)
	switch {
	case errors.Is(err, deadletter.ErrNotFound):
		writeError(w, http.StatusNotFound, err.Error())
	case err != nil:
		writeError(w, http.StatusInternalServerError, "read dead letters: "+err.Error())
	default:
		writeJSON(w, http.StatusOK, l)
	}
}

func (s *Server) replayDeadLetter(w http.ResponseWriter, r *http.Request, _ *Token) {
	seq, ok := seqOf(w, r)
	if !ok {
		return
	}
	res, err := s.cfg.Ingest.Replay(r.Context(), s.cfg.DeadLetters, []uint64{seq})
	s.replied(w, res, err)
}

func (s *Server) replayDeadLetters(w http.ResponseWriter, r *http.Request, _ *Token) {
	if err := checkParams(r, "seq"); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	vals := r.URL.Query()["seq"]
	if len(vals) == 0 {
		res, err := s.cfg.Ingest.ReplayAll(r.Context(), s.cfg.DeadLetters)
		s.replied(w, res, err)
		return
	}
	seqs := make([]uint64, len(vals))
	for i, v := range vals {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil || n == 0 {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("parameter seq %q: not a dead-letter number (1, 2, ...)", v))
			return
		}
		seqs[i] = n
	}
	res, err := s.cfg.Ingest.Replay(r.Context(), s.cfg.DeadLetters, seqs)
	s.replied(w, res, err)
}

// replied answers a replay: 200 with what became of each letter (those still bad included);
// 404 for an unknown letter (nothing replayed); 503 when the log or the dead letters failed,
// with the results so far.
func (s *Server) replied(w http.ResponseWriter, res []ingest.ReplayResult, err error) {
	switch {
	case errors.Is(err, deadletter.ErrNotFound):
		writeError(w, http.StatusNotFound, err.Error())
	case err != nil:
		s.log.Error("api: replay dead letters", "error", err)
		w.Header().Set("Retry-After", "1")
		sum := ingest.Summarize(res)
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"error": "replay stopped, try again: " + err.Error(),
			"results": sum.Results, "replayed": sum.Replayed, "open": sum.Open, "position": sum.Position})
	default:
		writeJSON(w, http.StatusOK, ingest.Summarize(res))
	}
}
