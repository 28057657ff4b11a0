package graph

import "sync"

// What one question keeps about the names it meets, by name id, in arrays by use (a walk
// touches only the few it needs). Every entry is valid only while its epoch is the one its
// user holds, so a question never clears them: it takes fresh epochs instead.

// listSlot is a list in a buffer of the scratch.
type listSlot struct{ ep, off, n uint32 }

// idxSlot is a number.
type idxSlot struct {
	ep uint32
	i  int32
}

// scratch is the reusable memory of one question: entries by name id, and buffers.
type scratch struct {
	nbr    []listSlot   // neighbours at the view's time, in nbrs
	perm   []listSlot   // a role's permissions that count, in perms
	dist   [2][]idxSlot // distances to targets (two at once: a main one, a fallback)
	loc    []idxSlot    // index in a local subgraph
	stk    []uint32     // on the stack of the current walk
	subj   []idxSlot    // a subject of the view's question: index in runs
	tail   []idxSlot    // a role whose tails the view computed: index in view.tails
	memoIx []idxSlot    // a group whose chains up the view walked: index in memoRuns
	epoch  uint32

	nbrs     []uint32 // neighbour lists (nbr)
	perms    []uint32 // permission lists (perm)
	u32      []uint32 // the role chains of tails
	queue    []uint32
	ps       []uint32
	edges    []uint32
	named    []named
	bits     []uint64 // zero between uses
	keys     []uint64
	w        [2]walkBuf // groups, roles
	tails    []tail
	items    []grantItem
	runs     []subjRun
	gb, rb   buckets  // entitlements, permissions of role tails
	memo     chainSet // chains up from groups (chainsUp)
	memoRuns []memoRun
	pcs      chainSet // a principal's chains
}

// maxIdleScratch is how many scratches a graph keeps for later questions (one per question
// asked at once; each takes some 80 bytes a name).
const maxIdleScratch = 4

type scratchPool struct {
	mu   sync.Mutex
	idle []*scratch
}

// getScratch takes a scratch with entries for every name. The caller holds the read lock.
func (g *Graph) getScratch() *scratch {
	g.pool.mu.Lock()
	var s *scratch
	if n := len(g.pool.idle); n > 0 {
		s, g.pool.idle = g.pool.idle[n-1], g.pool.idle[:n-1]
	}
	g.pool.mu.Unlock()
	if s == nil {
		s = &scratch{}
	}
	if n := len(g.names); len(s.stk) < n {
		s.nbr, s.perm = grow(s.nbr, n), grow(s.perm, n)
		s.dist[0], s.dist[1] = grow(s.dist[0], n), grow(s.dist[1], n)
		s.loc, s.subj, s.tail, s.memoIx = grow(s.loc, n), grow(s.subj, n), grow(s.tail, n), grow(s.memoIx, n)
		s.stk = grow(s.stk, n)
	}
	return s
}

// grow lengthens xs to n zero entries (they are never shrunk, so the entries past len are still
// zero).
func grow[T any](xs []T, n int) []T {
	if cap(xs) >= n {
		return xs[:n]
	}
	ys := make([]T, n, n+n/8)
	copy(ys, xs)
	return ys
}

// putScratch gives a scratch back (dropping buffers a huge question grew).
func (g *Graph) putScratch(s *scratch) {
	const big = 1 << 20
	if cap(s.nbrs) > big {
		s.nbrs = nil
	}
	if cap(s.perms) > big || cap(s.u32) > big || cap(s.queue) > big || cap(s.ps) > big || cap(s.edges) > big || cap(s.named) > big || cap(s.keys) > big || cap(s.items) > big || cap(s.tails) > big || cap(s.memo.nodes) > big || cap(s.pcs.nodes) > big {
		*s = scratch{nbr: s.nbr, perm: s.perm, dist: s.dist, loc: s.loc, stk: s.stk, subj: s.subj, tail: s.tail, memoIx: s.memoIx, epoch: s.epoch}
	}
	for i := range s.w {
		if w := &s.w[i]; cap(w.frames) > big || cap(w.cs.nodes) > big || cap(w.loc.rev) > big || cap(w.tails) > big {
			*w = walkBuf{}
		}
	}
	s.reset()
	g.pool.mu.Lock()
	if len(g.pool.idle) < maxIdleScratch {
		g.pool.idle = append(g.pool.idle, s)
	}
	g.pool.mu.Unlock()
}

// reset empties the buffers whose contents last as long as a view.
func (s *scratch) reset() {
	s.nbrs, s.perms, s.u32, s.tails = s.nbrs[:0], s.perms[:0], s.u32[:0], s.tails[:0]
	s.items, s.runs = s.items[:0], s.runs[:0]
	s.memo.reset()
	s.memoRuns = s.memoRuns[:0]
}

// next is a fresh epoch: no entry carries it yet.
func (s *scratch) next() uint32 {
	s.epoch++
	if s.epoch == 0 {
		clear(s.nbr)
		clear(s.perm)
		clear(s.dist[0])
		clear(s.dist[1])
		clear(s.loc)
		clear(s.stk)
		clear(s.subj)
		clear(s.tail)
		clear(s.memoIx)
		s.epoch = 1
	}
	return s.epoch
}
