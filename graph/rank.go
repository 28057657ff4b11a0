package graph

import (
	"slices"
	"strings"
)

// rankTable orders the first n names: rank[x] < rank[y] exactly when names[x] < names[y]. Names
// are only ever added, so a table stays right for the names it covers; answers sort by name
// with it (an integer compare, where a string compare would chase each name's bytes).
type rankTable struct {
	n    uint32
	rank []uint32 // by id
	ids  []uint32 // by rank
}

// minRankNew is how many names past the table make it worth computing a new one (at least, and
// at least an eighth of those it covers).
const minRankNew = 1 << 12

// ranks returns the graph's rank table (nil while there is none). When many names are past it,
// it starts computing a new one in the background. The caller holds the read lock.
func (g *Graph) ranks() *rankTable {
	rt := g.rank.Load()
	n := len(g.names)
	have := 0
	if rt != nil {
		have = int(rt.n)
	}
	if n-have >= max(minRankNew, have/8) && g.ranking.CompareAndSwap(false, true) {
		names := g.names[:n:n] // the names it covers never change
		go func() {
			defer g.ranking.Store(false)
			g.rank.Store(rankNames(names))
		}()
	}
	return rt
}

func rankNames(names []string) *rankTable {
	ns := make([]named, len(names))
	for i, s := range names {
		ns[i] = named{s, uint32(i)}
	}
	slices.SortFunc(ns, func(a, b named) int { return strings.Compare(a.name, b.name) })
	rt := &rankTable{n: uint32(len(names)), rank: make([]uint32, len(names)), ids: make([]uint32, len(names))}
	for i := range ns {
		rt.rank[ns[i].id], rt.ids[i] = uint32(i), ns[i].id
	}
	return rt
}
