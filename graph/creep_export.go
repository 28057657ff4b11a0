package graph

import (
	"time"

	"github.com/whocould/whocould/access"
	"github.com/whocould/whocould/event"
)

// EntitlementID is an entitlement — an (action pattern, resource) pair — as two of the graph's
// name ids: the pattern's in the high 32 bits, the resource's in the low. The ids are the
// graph's for its whole life (names are never forgotten), so EntitlementIDs of one graph can be
// compared and counted without their strings; EntitlementNames gives the strings back.
type EntitlementID uint64

// EntitlementIDs lists the entitlements principal could use at at, as known at knownAt:
// exactly those WhatCould lists, without their paths, in no particular order, appended to buf;
// active reports whether the principal was active then (none when not). It skips what makes
// WhatCould costly (walking and building up to MaxPaths paths per entitlement, sorting) for the
// analyzers that count or compare the entitlements of every principal.
func (g *Graph) EntitlementIDs(principal string, at time.Time, knownAt *time.Time, buf []EntitlementID) (ents []EntitlementID, active bool) {
	g.mu.RLock()
	defer g.mu.RUnlock()
	p, ok := g.lookup(principal)
	if !ok {
		return buf, false
	}
	qs := g.ask(knownAt)
	defer qs.done()
	v := qs.view(event.Micros(at))
	if st, _ := v.statusAt(p); st != access.StatusActive {
		return buf, false
	}
	v.upward(p, "")
	b := &v.sc.gb
	b.reset(MaxPaths)
	for _, it := range v.sc.items {
		for _, t := range it.tl.tails {
			b.of([2]uint32{t.perm, g.rels.at(it.gi).c})
		}
	}
	for _, k := range b.keys {
		buf = append(buf, EntitlementID(uint64(k[0])<<32|uint64(k[1])))
	}
	return buf, true
}

// EntitlementNames is e's action pattern and resource.
func (g *Graph) EntitlementNames(e EntitlementID) (action, resource string) {
	g.mu.RLock()
	defer g.mu.RUnlock()
	return g.names[uint32(e>>32)], g.names[uint32(e)]
}
