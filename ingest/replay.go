package ingest

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/whocould/whocould/deadletter"
)

// ReplayStore is the dead letters as Replay reads and resolves them (a *deadletter.File).
type ReplayStore interface {
	List(ctx context.Context, fn func(deadletter.Letter) error) error
	MarkReplayed(ctx context.Context, r deadletter.Replay) error
}

// What became of a replayed dead letter (ReplayResult.Outcome).
const (
	// ReplayLanded: its events are good now and were appended to the log; the letter is replayed.
	ReplayLanded = "replayed"
	// ReplayDuplicate: its events are good now and were in the log already; the letter is
	// replayed.
	ReplayDuplicate = "duplicate"
	// ReplayAlready: the letter was replayed before; nothing was done.
	ReplayAlready = "already_replayed"
	// ReplayStillBad: its bytes still do not decode or validate (Reason says why now); the
	// letter stays open and no new letter is kept.
	ReplayStillBad = "still_bad"
	// ReplayNotReplayable: the letter cannot go through ingest again (Reason says why); it
	// stays open.
	ReplayNotReplayable = "not_replayable"
)

// SourceEventLog is the source of the letters the projector keeps: messages of the log itself
// that it could not decode.
const SourceEventLog = "eventlog"

// ReplayResult is what became of one dead letter.
type ReplayResult struct {
	Seq    uint64 `json:"seq"`
	Source string `json:"source"`
	Where  string `json:"where,omitempty"`
	ID     string `json:"id,omitempty"`
	// Outcome is ReplayLanded, ReplayDuplicate, ReplayAlready, ReplayStillBad or
	// ReplayNotReplayable.
	Outcome string `json:"outcome"`
	// Status is the letter's status after the replay: deadletter.StatusOpen or StatusReplayed.
	Status string `json:"status"`
	// Accepted and Duplicates count its events appended, and found in the log already.
	Accepted   int `json:"accepted"`
	Duplicates int `json:"duplicates"`
	// Position is the log position its (last) event is at, for min_position (replayed only).
	Position   uint64     `json:"position,omitempty"`
	ReplayedAt *time.Time `json:"replayed_at,omitempty"`
	// Reason is why the letter is still open (still_bad, not_replayable).
	Reason string `json:"reason,omitempty"`
}

// Open reports whether the letter is still open after the replay.
func (r ReplayResult) Open() bool { return r.Status != deadletter.StatusReplayed }

// Replay replays the dead letters seqs (in that order, each once): a letter whose raw bytes
// now decode and validate has its events appended to the log and is marked replayed, with the
// log position they landed at; one still bad stays open, with the reason why now (no new
// letter is kept for it); one replayed before is left alone. Letters of the event log itself
// (source "eventlog") cannot be replayed through ingest. A seq with no letter fails the whole
// call (deadletter.ErrNotFound) before anything is replayed. The error is for a log or a
// dead-letter file that failed: the results so far are returned with it.
func (in *Ingester) Replay(ctx context.Context, dead ReplayStore, seqs []uint64) ([]ReplayResult, error) {
	in.replaying.Lock()
	defer in.replaying.Unlock()
	var order []uint64
	want := map[uint64]*deadletter.Letter{}
	for _, s := range seqs {
		if _, dup := want[s]; !dup {
			want[s] = nil
			order = append(order, s)
		}
	}
	err := dead.List(ctx, func(l deadletter.Letter) error {
		if p, ok := want[l.Seq]; ok && p == nil {
			want[l.Seq] = &l
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("replay: %w", err)
	}
	var missing []string
	letters := make([]deadletter.Letter, 0, len(order))
	for _, s := range order {
		if want[s] == nil {
			missing = append(missing, strconv.FormatUint(s, 10))
			continue
		}
		letters = append(letters, *want[s])
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("replay: %w: %s", deadletter.ErrNotFound, strings.Join(missing, ", "))
	}
	return in.replay(ctx, dead, letters)
}

// ReplayAll replays every open dead letter, oldest first, as Replay does.
func (in *Ingester) ReplayAll(ctx context.Context, dead ReplayStore) ([]ReplayResult, error) {
	in.replaying.Lock()
	defer in.replaying.Unlock()
	var letters []deadletter.Letter
	err := dead.List(ctx, func(l deadletter.Letter) error {
		if l.Status != deadletter.StatusReplayed {
			letters = append(letters, l)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("replay: %w", err)
	}
	return in.replay(ctx, dead, letters)
}

// replay replays letters in order. in.replaying is held, from before they were listed.
func (in *Ingester) replay(ctx context.Context, dead ReplayStore, letters []deadletter.Letter) ([]ReplayResult, error) {
	results := make([]ReplayResult, 0, len(letters))
	for _, l := range letters {
		r, err := in.replayOne(ctx, dead, l)
		results = append(results, r)
		if err != nil {
			return results, fmt.Errorf("replay dead letter %d: %w", l.Seq, err)
		}
	}
	return results, nil
}

func (in *Ingester) replayOne(ctx context.Context, dead ReplayStore, l deadletter.Letter) (ReplayResult, error) {
	r := ReplayResult{Seq: l.Seq, Source: l.Source, Where: l.Where, ID: l.ID, Status: deadletter.StatusOpen}
	already := func(pos uint64, at *time.Time) ReplayResult {
		r.Outcome, r.Status, r.Position, r.ReplayedAt = ReplayAlready, deadletter.StatusReplayed, pos, at
		return r
	}
	if l.Status == deadletter.StatusReplayed {
		return already(l.Position, l.ReplayedAt), nil
	}
	if l.Source == SourceEventLog {
		r.Outcome = ReplayNotReplayable
		r.Reason = "a message of the event log itself that the projector could not decode: it is in the log already " +
			"and is not ingested again; a whocould that decodes it takes it on `whocould rebuild`"
		return r, nil
	}
	items, err := DecodeMessage(nil, Message{Data: l.Bytes(), Source: l.Source, Where: l.Where})
	if err != nil {
		r.Outcome, r.Reason = ReplayStillBad, err.Error()
		return r, nil
	}
	var reasons []string
	for i := range items {
		if _, err := check(&items[i]); err != nil {
			reasons = append(reasons, err.Error())
		}
	}
	if len(reasons) > 0 {
		r.Outcome, r.Reason = ReplayStillBad, strings.Join(reasons, "; ")
		return r, nil
	}
	res, pos, err := in.ingest(ctx, l.Source, items)
	if err != nil {
		return r, err
	}
	r.Accepted, r.Duplicates, r.Position = res.Accepted, res.Duplicates, pos
	mark := deadletter.Replay{Seq: l.Seq, At: time.Now().UTC(), Position: pos, Duplicate: res.Accepted == 0}
	if err := dead.MarkReplayed(ctx, mark); errors.Is(err, deadletter.ErrReplayed) {
		return already(pos, nil), nil
	} else if err != nil {
		return r, err
	}
	r.Outcome, r.Status, r.ReplayedAt = ReplayLanded, deadletter.StatusReplayed, &mark.At
	if mark.Duplicate {
		r.Outcome = ReplayDuplicate
	}
	return r, nil
}

// ReplaySummary is a replay's answer (POST /v1/deadletters/replay, `whocould deadletter replay
// -o json`).
type ReplaySummary struct {
	Results []ReplayResult `json:"results"`
	// Replayed counts the letters this replay resolved (replayed or duplicate).
	Replayed int `json:"replayed"`
	// Open counts the letters asked for that are still open.
	Open int `json:"open"`
	// Position is the log position of the last event of the replayed letters (0: none), for
	// min_position.
	Position uint64 `json:"position"`
}

// Summarize sums up results.
func Summarize(results []ReplayResult) ReplaySummary {
	s := ReplaySummary{Results: results}
	if s.Results == nil {
		s.Results = []ReplayResult{}
	}
	for _, r := range results {
		switch {
		case r.Open():
			s.Open++
		case r.Outcome == ReplayLanded || r.Outcome == ReplayDuplicate:
			s.Replayed++
		}
		if !r.Open() {
			s.Position = max(s.Position, r.Position)
		}
	}
	return s
}
