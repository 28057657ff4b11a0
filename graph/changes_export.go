package graph

import (
	"slices"
	"time"
)

// AccessInstants lists, sorted and without repeats, the instants (Unix microseconds) at which
// principal's access can change, as known at knownAt: the starts and ends of principal's
// status spans and of every relation that could ever bear on its access (its memberships up,
// the grants of it and of those groups, the permissions and inclusions of the roles they grant
// — the relations History follows). Over each stretch between two consecutive instants, [t(i),
// t(i+1)), every answer about principal's access (Explain, WhatCould) is the same but for the
// time it names: a caller asking many questions about one principal at many times (the
// analyzers judging each change an admin made) can ask each once per stretch. Nil for an id no
// event names.
func (g *Graph) AccessInstants(principal string, knownAt *time.Time) []int64 {
	g.mu.RLock()
	defer g.mu.RUnlock()
	p, ok := g.lookup(principal)
	if !ok {
		return nil
	}
	qs := g.ask(knownAt)
	defer qs.done()
	v := qs.view(0)
	var out []int64
	for _, i := range g.reachUp(v, p) {
		for _, iv := range v.ivs(i) {
			if iv.from < iv.to {
				out = append(out, iv.from, iv.to)
			}
		}
	}
	for _, s := range v.statusIvs(p) {
		out = append(out, s.from, s.to)
	}
	slices.Sort(out)
	out = slices.Compact(out)
	if n := len(out); n > 0 && out[n-1] == forever {
		out = out[:n-1]
	}
	return out
}
