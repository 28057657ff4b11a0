package graph

import (
	"cmp"
	"slices"
	"strings"

	"github.com/whocould/whocould/event"
)

// Chains. A path's membership chain (principal → group → … → the grant's subject) and its
// inclusion chain (granted role → … → the role that holds the permission) are simple chains (no
// node twice) in a graph that holds at the view's time: the groups a node is a member of, the
// roles a role includes. Nested groups in layers make exponentially many of them, so an answer
// lists only the first MaxPaths paths of each principal or entitlement, in access.ComparePaths
// order: shorter chains first, then by names. The walks here find those first ones without
// enumerating the rest. A quick depth-first walk collects every chain when there are few (the
// usual case); past its limits, iterative deepening, guided by each node's distance to the
// nearest target, hands out the chains in order: at the shortest length it never meets a dead
// end, so the first chain is always found, in time linear in its length and the degrees along it.
// Whether a principal could (who-could, explain) and which entitlements it holds (what-could)
// is reachability, and stays exact.

// Bounds on the paths an answer lists; when they leave paths out, the answer says so
// (PathsTruncated).
const (
	// MaxPaths is how many paths an answer lists per principal (who-could), per entitlement
	// (what-could, a principal's history), per principal and entitlement (a resource's history),
	// and in all (explain): the first ones in access.ComparePaths order. Far above what an
	// organisation's real nesting gives (the random histories of the differential test reach
	// ~90), it only cuts nesting that multiplies chains.
	MaxPaths = 1024
	// MaxAnswerPaths bounds the paths of one who-could answer: past it, each further principal
	// lists only its first path.
	MaxAnswerPaths = 1 << 16
	// The quick walk gives up past these.
	quickChains = 256
	quickSteps  = 4096
)

// Budgets of one view (variables for tests).
var (
	// maxAnswerPaths bounds the paths of one who-could answer: past it, each further principal
	// lists only its first path.
	maxAnswerPaths = MaxAnswerPaths
	// maxSteps bounds the steps a view spends walking chains beyond the first path of each
	// principal or entitlement, which it always finds.
	maxSteps = 1 << 21
)

// frame is a node on the stack of a walk, with the neighbours left to try.
type frame struct {
	x  uint32
	nb []uint32
	i  int
}

// chainSet holds chains in one buffer.
type chainSet struct {
	nodes []uint32
	recs  []chainRec
}

type chainRec struct{ off, n int32 }

func (cs *chainSet) reset() { cs.nodes, cs.recs = cs.nodes[:0], cs.recs[:0] }

func (cs *chainSet) add(chain []uint32) {
	cs.recs = append(cs.recs, chainRec{off: int32(len(cs.nodes)), n: int32(len(chain))})
	cs.nodes = append(cs.nodes, chain...)
}

func (cs *chainSet) chain(i int) []uint32 {
	r := cs.recs[i]
	return cs.nodes[r.off : r.off+r.n : r.off+r.n]
}

// local is the subgraph reached from a node, with its edges reversed.
type local struct {
	ep     uint32 // the epoch of its nodes in scratch.loc
	nodes  []uint32
	revOff []int32 // node i's predecessors are rev[revOff[i]:revOff[i+1]]
	rev    []uint32
	pos    []int32
	queue  []uint32
}

// walkBuf is the memory of one family of walks: groups (and principals) or roles.
type walkBuf struct {
	frames []frame
	chain  []uint32
	cs     chainSet
	loc    local
	tails  []tail
}

// distRef names distances to a walk's targets, held in scratch.dist[f] under epoch ep. A node
// without one (-1) cannot reach a target.
type distRef struct {
	f  uint8
	ep uint32
}

func (d distRef) of(sc *scratch, x uint32) int32 {
	s := &sc.dist[d.f][x]
	if s.ep != d.ep {
		return -1
	}
	return s.i
}

func (d distRef) set(sc *scratch, x uint32, v int32) { sc.dist[d.f][x] = idxSlot{ep: d.ep, i: v} }

// byName orders ids by name.
func (v *view) byName(a, b uint32) int {
	if rt := v.rt; rt != nil && a < rt.n && b < rt.n {
		return cmp.Compare(rt.rank[a], rt.rank[b])
	}
	return strings.Compare(v.g.names[a], v.g.names[b])
}

// nbrSorted marks, in listSlot.n of scratch.nbr, a neighbour list already sorted by name.
const nbrSorted = 1 << 31

// nbrs lists the groups x is a member of at the view's time or, when x is a role, the roles it
// includes (after below: the groups above x that lead to a subject). The list is the view's:
// callers must not change it.
func (v *view) nbrs(x uint32) []uint32 {
	sc := v.sc
	sl := &sc.nbr[x]
	if sl.ep == v.ep {
		end := sl.off + sl.n&^nbrSorted
		return sc.nbrs[sl.off:end:end]
	}
	off := len(sc.nbrs)
	if e := v.g.ents[x]; e != nil {
		if v.g.kind(x) == event.KindRole {
			for _, ii := range e.includes {
				if v.holds(ii) {
					sc.nbrs = append(sc.nbrs, v.g.rels.at(ii).b)
				}
			}
		} else {
			for _, mi := range e.memberOf {
				if v.holds(mi) {
					sc.nbrs = append(sc.nbrs, v.g.rels.at(mi).a)
				}
			}
		}
	}
	n := uint32(len(sc.nbrs) - off)
	if n < 2 {
		n |= nbrSorted
	}
	*sl = listSlot{ep: v.ep, off: uint32(off), n: n}
	return sc.nbrs[off:len(sc.nbrs):len(sc.nbrs)]
}

// sortedNbrs is nbrs sorted by name.
func (v *view) sortedNbrs(x uint32) []uint32 {
	ns := v.nbrs(x)
	if sl := &v.sc.nbr[x]; sl.n&nbrSorted == 0 {
		slices.SortFunc(ns, v.byName)
		sl.n |= nbrSorted
	}
	return ns
}

// quick collects into w.cs every chain from start (included) to a target, in no particular
// order. It gives up, returning false, past quickChains chains, quickSteps steps or the view's
// budget.
func (v *view) quick(w *walkBuf, start uint32, target func(uint32) bool) bool {
	if v.steps <= 0 {
		return false
	}
	sc := v.sc
	stk := sc.next()
	w.cs.reset()
	frames, chain := w.frames[:0], w.chain[:0]
	defer func() { w.frames, w.chain = frames[:0], chain[:0] }()
	steps, ok := 0, true
	sc.stk[start] = stk
	frames = append(frames, frame{x: start, nb: v.nbrs(start)})
	chain = append(chain, start)
	if target(start) {
		w.cs.add(chain)
	}
	for len(frames) > 0 {
		f := &frames[len(frames)-1]
		if f.i == len(f.nb) {
			sc.stk[f.x] = 0
			frames, chain = frames[:len(frames)-1], chain[:len(chain)-1]
			continue
		}
		y := f.nb[f.i]
		f.i++
		if steps++; steps > quickSteps {
			ok = false
			break
		}
		if sc.stk[y] == stk {
			continue
		}
		sc.stk[y] = stk
		frames = append(frames, frame{x: y, nb: v.nbrs(y)})
		chain = append(chain, y)
		if target(y) {
			if w.cs.add(chain); len(w.cs.recs) > quickChains {
				ok = false
				break
			}
		}
	}
	v.steps -= steps
	return ok
}

// sortChains sorts w.cs: shorter first, then by names.
func (v *view) sortChains(cs *chainSet) {
	if len(cs.recs) < 2 {
		return
	}
	slices.SortFunc(cs.recs, func(a, b chainRec) int {
		if c := cmp.Compare(a.n, b.n); c != 0 {
			return c
		}
		for i := int32(0); i < a.n; i++ {
			if x, y := cs.nodes[a.off+i], cs.nodes[b.off+i]; x != y {
				return v.byName(x, y)
			}
		}
		return 0
	})
}

// ordered hands emit the chains from start (included) to the targets of dr (distance 0), through
// nodes with a distance only, shorter first, then by names, until emit returns false. It
// returns whether it handed every chain. It also stops when the view's budget is spent, but
// never before handing the first chain: at the shortest length no walk meets a dead end.
func (v *view) ordered(w *walkBuf, start uint32, dr distRef, emit func(chain []uint32) bool) bool {
	sc := v.sc
	d0 := dr.of(sc, start)
	if d0 < 0 {
		return true
	}
	frames, chain := w.frames[:0], w.chain[:0]
	defer func() { w.frames, w.chain = frames[:0], chain[:0] }()
	emitted := false
	for length := d0; ; length++ {
		stk := sc.next()
		cut := false // some chain goes on past length
		frames, chain = frames[:0], append(chain[:0], start)
		sc.stk[start] = stk
		pushed, has := start, true
		for {
			if has {
				has = false
				if int32(len(chain)-1) == length {
					if dr.of(sc, pushed) == 0 {
						emitted = true
						if !emit(chain) {
							return false
						}
					}
					if !cut {
						for _, y := range v.nbrs(pushed) {
							v.steps--
							if dr.of(sc, y) >= 0 && sc.stk[y] != stk {
								cut = true
								break
							}
						}
					}
					sc.stk[pushed] = 0
					chain = chain[:len(chain)-1]
				} else {
					frames = append(frames, frame{x: pushed, nb: v.sortedNbrs(pushed)})
				}
			}
			if len(frames) == 0 {
				break
			}
			f := &frames[len(frames)-1]
			if f.i == len(f.nb) {
				sc.stk[f.x] = 0
				frames, chain = frames[:len(frames)-1], chain[:len(chain)-1]
				continue
			}
			if v.steps <= 0 && emitted {
				return false
			}
			y := f.nb[f.i]
			f.i++
			v.steps--
			dy := dr.of(sc, y)
			if dy < 0 || sc.stk[y] == stk {
				continue
			}
			if dy > length-int32(len(chain)) { // too far to end a chain of this length
				cut = true
				continue
			}
			sc.stk[y] = stk
			chain = append(chain, y)
			pushed, has = y, true
		}
		if !cut {
			return true
		}
	}
}

// enumerate hands emit the chains from start to targets in order (see ordered), by a quick walk
// when it can, else by ordered walks with the distances dist computes. It returns whether it
// handed every chain.
func (v *view) enumerate(w *walkBuf, start uint32, target func(uint32) bool, dist func() distRef, emit func([]uint32) bool) bool {
	if v.quick(w, start, target) {
		v.sortChains(&w.cs)
		for i := range w.cs.recs {
			if !emit(w.cs.chain(i)) {
				return false
			}
		}
		return true
	}
	return v.ordered(w, start, dist(), emit)
}

// reach fills lc with the nodes reached from start along nbrs, and the reversed edges.
func (v *view) reach(lc *local, start uint32) {
	sc := v.sc
	lc.ep = sc.next()
	lc.nodes = append(lc.nodes[:0], start)
	sc.loc[start] = idxSlot{ep: lc.ep, i: 0}
	edges := 0
	for i := 0; i < len(lc.nodes); i++ {
		ns := v.nbrs(lc.nodes[i])
		edges += len(ns)
		for _, y := range ns {
			if s := &sc.loc[y]; s.ep != lc.ep {
				*s = idxSlot{ep: lc.ep, i: int32(len(lc.nodes))}
				lc.nodes = append(lc.nodes, y)
			}
		}
	}
	n := len(lc.nodes)
	lc.revOff = slices.Grow(lc.revOff[:0], n+1)[:n+1]
	clear(lc.revOff)
	for _, x := range lc.nodes {
		for _, y := range v.nbrs(x) {
			lc.revOff[sc.loc[y].i+1]++
		}
	}
	for i := 1; i <= n; i++ {
		lc.revOff[i] += lc.revOff[i-1]
	}
	lc.pos = append(lc.pos[:0], lc.revOff[:n]...)
	lc.rev = slices.Grow(lc.rev[:0], edges)[:edges]
	for _, x := range lc.nodes {
		for _, y := range v.nbrs(x) {
			i := sc.loc[y].i
			lc.rev[lc.pos[i]] = x
			lc.pos[i]++
		}
	}
}

// localDist computes, in field f, the distance from every node of lc to the nearest target.
func (v *view) localDist(lc *local, f uint8, target func(uint32) bool) distRef {
	sc := v.sc
	dr := distRef{f: f, ep: sc.next()}
	q := lc.queue[:0]
	for _, x := range lc.nodes {
		if target(x) {
			dr.set(sc, x, 0)
			q = append(q, x)
		}
	}
	for i := 0; i < len(q); i++ {
		y := q[i]
		d := dr.of(sc, y) + 1
		li := sc.loc[y].i
		for _, x := range lc.rev[lc.revOff[li]:lc.revOff[li+1]] {
			if dr.of(sc, x) < 0 {
				dr.set(sc, x, d)
				q = append(q, x)
			}
		}
	}
	lc.queue = q[:0]
	return dr
}

// buckets counts the paths handed to each bucket (an entitlement, or a permission), at most
// limit each.
type buckets struct {
	idx   map[[2]uint32]int32
	keys  [][2]uint32
	count []int32
	limit int32
	full  int
	exact bool // keys holds every bucket there can be
	over  bool // some path was left out
}

func (b *buckets) reset(limit int) {
	if b.idx == nil {
		b.idx = map[[2]uint32]int32{}
	}
	clear(b.idx)
	b.keys, b.count = b.keys[:0], b.count[:0]
	b.limit, b.full, b.exact, b.over = int32(limit), 0, false, false
}

func (b *buckets) of(k [2]uint32) int32 {
	i, ok := b.idx[k]
	if !ok {
		i = int32(len(b.keys))
		b.idx[k] = i
		b.keys = append(b.keys, k)
		b.count = append(b.count, 0)
	}
	return i
}

// take counts a path in bucket i, or reports that the bucket is full.
func (b *buckets) take(i int32) bool {
	if b.count[i] >= b.limit {
		b.over = true
		return false
	}
	b.count[i]++
	if b.count[i] == b.limit {
		b.full++
	}
	return true
}

// done reports that every bucket is full and some path was left out: walking on is useless.
func (b *buckets) done() bool { return b.exact && b.over && b.full == len(b.keys) }
