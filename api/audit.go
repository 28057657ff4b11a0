package api

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/whocould/whocould/event"
	"github.com/whocould/whocould/ingest"
)

// AuditSource is the source of whocould's own audit events.
const AuditSource = "whocould"

// Call is one API call, as the audit records it.
type Call struct {
	At     time.Time
	Caller string // the token's name, or "anonymous"
	Route  string // "/v1/who-could"
	Method string
	Status int
	Denied string // why it was refused ("" when allowed)
	Remote string
}

// Event is the call as a decision event: principal token:CALLER, action whocould.api.ROUTE
// (e.g. whocould.api.who-could), resource whocould:api/v1/ROUTE, effect allow or deny.
func (c Call) Event() event.Event {
	name := strings.TrimPrefix(c.Route, "/v1/")
	e := event.Event{
		ID:     newEventID(c.At),
		Source: AuditSource,
		Type:   event.Decision,
		Time:   c.At.UTC(),
		Data: event.Data{
			Principal: "token:" + c.Caller,
			Action:    "whocould.api." + strings.ReplaceAll(strings.Trim(name, "/"), "/", "."),
			Resource:  "whocould:api" + c.Route,
			Effect:    event.Allow,
			Reason:    fmt.Sprintf("%s %s -> %d from %s", c.Method, c.Route, c.Status, c.Remote),
		},
	}
	if c.Denied != "" {
		e.Data.Effect = event.Deny
		e.Data.Reason = c.Denied + "; " + e.Data.Reason
	}
	return e
}

// newEventID is unique (time-ordered, with 64 random bits).
func newEventID(at time.Time) string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return fmt.Sprintf("api-%d-%s", at.UnixMicro(), hex.EncodeToString(b))
}

// Audit appends API calls to the log as decision events, in batches, off the request path.
// Record blocks only when the buffer is full (back-pressure, never a silent drop).
type Audit struct {
	in     *ingest.Ingester
	log    *slog.Logger
	calls  chan Call
	every  time.Duration
	done   chan struct{}
	closed sync.Once
}

// NewAudit returns an audit appending through in every interval (default 200ms); start it
// with Run.
func NewAudit(in *ingest.Ingester, every time.Duration, logger *slog.Logger) *Audit {
	if every <= 0 {
		every = 200 * time.Millisecond
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Audit{in: in, log: logger, calls: make(chan Call, 10000), every: every, done: make(chan struct{})}
}

// Record queues a call.
func (a *Audit) Record(ctx context.Context, c Call) {
	select {
	case a.calls <- c:
	case <-a.done:
		a.log.Error("api audit: call after the audit stopped", "route", c.Route, "caller", c.Caller)
	case <-ctx.Done():
		a.log.Error("api audit: call not recorded, request ended while the audit buffer was full", "route", c.Route, "caller", c.Caller)
	}
}

// Run appends queued calls until ctx ends, then appends what is left and returns.
func (a *Audit) Run(ctx context.Context) error {
	tick := time.NewTicker(a.every)
	defer tick.Stop()
	var pending []Call
	flush := func(ctx context.Context) {
		if len(pending) == 0 {
			return
		}
		items := make([]ingest.Item, len(pending))
		for i, c := range pending {
			items[i] = ingest.Item{Event: c.Event()}
		}
		if _, err := a.in.Ingest(ctx, AuditSource, items); err != nil {
			a.log.Error("api audit: append", "calls", len(pending), "error", err)
			return // kept, tried again at the next tick
		}
		pending = pending[:0]
	}
	for {
		select {
		case c := <-a.calls:
			pending = append(pending, c)
			if len(pending) >= 1000 {
				flush(ctx)
			}
		case <-tick.C:
			flush(ctx)
		case <-ctx.Done():
			a.closed.Do(func() { close(a.done) })
			for {
				select {
				case c := <-a.calls:
					pending = append(pending, c)
					continue
				default:
				}
				break
			}
			fctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			flush(fctx)
			if len(pending) > 0 {
				return fmt.Errorf("api audit: %d calls not recorded", len(pending))
			}
			return nil
		}
	}
}
