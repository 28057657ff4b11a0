package ingest

import (
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/whocould/whocould/event"
)

// Metrics counts the events ingest takes, by channel (the part of the source name before ':',
// so "http", "nats", "kafka", "whocould", or a file name), event type and outcome (accepted,
// duplicate, dead_lettered); what was received is their sum.
type Metrics struct {
	events *prometheus.CounterVec
}

// NewMetrics registers ingest's metrics with reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{events: prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "whocould", Subsystem: "ingest", Name: "events_total",
		Help: "Events received by ingest, by channel, event type and outcome (accepted, duplicate, dead_lettered).",
	}, []string{"channel", "type", "outcome"})}
	if err := reg.Register(m.events); err != nil {
		return nil, err
	}
	return m, nil
}

// WithMetrics makes in count into m, and returns in.
func (in *Ingester) WithMetrics(m *Metrics) *Ingester {
	in.metrics = m
	return in
}

func channelOf(source string) string {
	if c, _, ok := strings.Cut(source, ":"); ok {
		return c
	}
	if strings.ContainsAny(source, "/.") || source == "stdin" {
		return "file"
	}
	return source
}

func typeLabel(t event.Type) string {
	if t.Known() {
		return string(t)
	}
	return "unknown"
}

// tally counts one batch's events by type label and outcome, for Metrics.add. A nil tally
// (metrics off) counts nothing.
type tally map[tallyKey]float64

type tallyKey struct{ typ, outcome string }

func (c tally) count(t event.Type, outcome string) {
	if c != nil {
		c[tallyKey{typeLabel(t), outcome}]++
	}
}

// add counts a batch's tally from source, once per type and outcome.
func (m *Metrics) add(source string, c tally) {
	if m == nil || len(c) == 0 {
		return
	}
	ch := channelOf(source)
	for k, n := range c {
		m.events.WithLabelValues(ch, k.typ, k.outcome).Add(n)
	}
}
