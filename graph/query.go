package graph

import (
	"cmp"
	"context"
	"fmt"
	"math/bits"
	"slices"
	"strings"
	"time"

	"github.com/whocould/whocould/access"
	"github.com/whocould/whocould/event"
)

var _ access.Querier = (*Graph)(nil)

// question is what the views of one question share, under the graph's read lock: the scratch
// memory, and the relations and principals re-derived as known at k.
type question struct {
	g       *Graph
	k       int64
	sc      *scratch
	rt      *rankTable            // nil: none yet
	derived map[int32][]interval  // relations re-derived as known at k
	status  map[uint32][]statusIv // principals re-derived as known at k
}

// ask starts a question as known at knownAt (nil: everything applied). The caller holds the
// read lock, and calls done.
func (g *Graph) ask(knownAt *time.Time) *question {
	q := &question{g: g, k: forever, sc: g.getScratch(), rt: g.ranks()}
	if knownAt != nil {
		q.k = event.Micros(*knownAt)
		q.derived = map[int32][]interval{}
		q.status = map[uint32][]statusIv{}
	}
	return q
}

func (q *question) done() {
	q.g.putScratch(q.sc)
	q.sc = nil
}

// view answers at one event time t. A question's views share its scratch memory, so making a
// view ends the walks of the previous one (what it derived from relations stays valid).
type view struct {
	*question
	t  int64
	ep uint32 // epoch of the neighbour, permission and tail lists in the scratch

	action   string // when filtered, only permissions matching it count
	filtered bool
	steps    int    // walking budget left
	subjEp   uint32 // epoch of the subjects in scratch.subj
	tails    []tailList
}

func (q *question) view(t int64) *view {
	q.sc.reset()
	return &view{question: q, t: t, ep: q.sc.next(), steps: maxSteps}
}

func (v *view) kind(id uint32) event.Kind { return v.g.kind(id) }

// counts reports whether permission perm counts for the view's question.
func (v *view) counts(perm uint32) bool {
	return !v.filtered || event.Matches(v.g.names[perm], v.action)
}

// fresh reports whether everything behind r was recorded by k, so its derived intervals serve.
func (v *view) fresh(r *relation) bool {
	if v.k == forever {
		return true
	}
	if v.g.rels.maxRec(r) > v.k {
		return false
	}
	da, db := v.g.endsOf(r)
	return (len(da) == 0 || v.g.ents[r.a].maxDelRec <= v.k) && (len(db) == 0 || v.g.ents[r.b].maxDelRec <= v.k)
}

// ivs is the intervals of relation i as known at k.
func (v *view) ivs(i int32) []interval {
	r := v.g.rels.at(i)
	if v.fresh(r) {
		return v.g.rels.ivs(r)
	}
	d, ok := v.derived[i]
	if !ok {
		d = v.g.deriveRel(r, v.k, nil)
		v.derived[i] = d
	}
	return d
}

// at finds the interval of relation i holding at t.
func (v *view) at(i int32) (interval, bool) { return ivAt(v.ivs(i), v.t) }

// holds reports whether relation i holds at t.
func (v *view) holds(i int32) bool {
	_, ok := v.at(i)
	return ok
}

func ivAt(ivs []interval, t int64) (interval, bool) {
	for _, iv := range ivs {
		if iv.from > t {
			break
		}
		if t < iv.to {
			return iv, true
		}
	}
	return interval{}, false
}

// statusIvs is a principal's status intervals as known at k.
func (v *view) statusIvs(p uint32) []statusIv {
	e := v.g.ents[p]
	if e == nil {
		return nil
	}
	if v.k == forever {
		return v.g.statusOf(p)
	}
	s, ok := v.status[p]
	if !ok {
		s = deriveStatus(e.life, v.k, nil)
		v.status[p] = s
	}
	return s
}

// statusAt is a principal's status at t and since when it holds.
func (v *view) statusAt(p uint32) (string, int64) {
	if v.k == forever {
		if h := &v.g.stat[p]; !h.many {
			if st, since := h.at(v.t); st != 0 {
				return stateName(st), since
			}
			return access.StatusUnknown, 0
		}
	}
	for _, s := range v.statusIvs(p) {
		if s.from > v.t {
			break
		}
		if v.t < s.to {
			return stateName(s.state), s.from
		}
	}
	return access.StatusUnknown, 0
}

func stateName(s uint8) string {
	switch s {
	case stActive:
		return access.StatusActive
	case stDisabled:
		return access.StatusDisabled
	}
	return access.StatusDeleted
}

func (v *view) active(p uint32) bool {
	s, _ := v.statusAt(p)
	return s == access.StatusActive
}

// tail is the part of a path after the grant: the role chain and the permission.
type tail struct {
	roles []uint32
	perm  uint32
}

// tailList is what a grant gives at the view's time, in path order; truncated when some tails
// were left out (past MaxPaths per permission).
type tailList struct {
	tails     []tail
	truncated bool
}

// keepU32 copies xs into the view's memory.
func (v *view) keepU32(xs []uint32) []uint32 {
	sc := v.sc
	n := len(sc.u32)
	sc.u32 = append(sc.u32, xs...)
	return sc.u32[n:len(sc.u32):len(sc.u32)]
}

// keepTails copies ts into the view's memory.
func (v *view) keepTails(ts []tail) []tail {
	if len(ts) == 0 {
		return nil
	}
	sc := v.sc
	n := len(sc.tails)
	sc.tails = append(sc.tails, ts...)
	return sc.tails[n:len(sc.tails):len(sc.tails)]
}

// permsOf lists, sorted by name, the permissions role r holds at t that count.
func (v *view) permsOf(r uint32) []uint32 {
	sc := v.sc
	sl := &sc.perm[r]
	if sl.ep == v.ep {
		return sc.perms[sl.off : sl.off+sl.n : sl.off+sl.n]
	}
	off := len(sc.perms)
	if e := v.g.ents[r]; e != nil {
		for _, pi := range e.perms {
			if perm := v.g.rels.at(pi).b; v.holds(pi) && v.counts(perm) {
				sc.perms = append(sc.perms, perm)
			}
		}
	}
	ps := sc.perms[off:len(sc.perms):len(sc.perms)]
	if len(ps) > 1 {
		slices.SortFunc(ps, v.byName)
	}
	*sl = listSlot{ep: v.ep, off: uint32(off), n: uint32(len(ps))}
	return ps
}

func (v *view) holdsPerm(r uint32) bool { return len(v.permsOf(r)) > 0 }

// roleTails lists the role chains from role to each permission that counts, as they hold at t
// (no role twice in a chain), in path order: the first MaxPaths, or when every permission
// counts, the first MaxPaths per permission.
func (v *view) roleTails(role uint32) tailList {
	if sl := v.sc.tail[role]; sl.ep == v.ep {
		return v.tails[sl.i]
	}
	tl := v.walkTails(role)
	v.sc.tail[role] = idxSlot{ep: v.ep, i: int32(len(v.tails))}
	v.tails = append(v.tails, tl)
	return tl
}

func (v *view) walkTails(role uint32) tailList {
	w := &v.sc.w[1]
	w.tails = w.tails[:0]
	var tl tailList
	dist := func() distRef {
		v.reach(&w.loc, role)
		return v.localDist(&w.loc, 0, v.holdsPerm)
	}
	if v.filtered {
		emit := func(chain []uint32) bool {
			ps := v.permsOf(chain[len(chain)-1])
			if len(ps) == 0 {
				return true
			}
			roles := v.keepU32(chain)
			for _, pm := range ps {
				if len(w.tails) == MaxPaths {
					tl.truncated = true
					return false
				}
				w.tails = append(w.tails, tail{roles: roles, perm: pm})
			}
			return true
		}
		if !v.enumerate(w, role, v.holdsPerm, dist, emit) {
			tl.truncated = true
		}
		tl.tails = v.keepTails(w.tails)
		return tl
	}
	b := &v.sc.rb
	b.reset(MaxPaths)
	emit := func(chain []uint32) bool {
		var roles []uint32
		for _, pm := range v.permsOf(chain[len(chain)-1]) {
			if b.take(b.of([2]uint32{pm})) {
				if roles == nil {
					roles = v.keepU32(chain)
				}
				w.tails = append(w.tails, tail{roles: roles, perm: pm})
			}
		}
		return !b.done()
	}
	exact := func() distRef {
		dr := dist()
		for _, x := range w.loc.nodes {
			for _, pm := range v.permsOf(x) {
				b.of([2]uint32{pm})
			}
		}
		b.exact = true
		return dr
	}
	complete := v.enumerate(w, role, v.holdsPerm, exact, emit)
	if !complete {
		// Out of budget (only then are the permissions all known): every permission left
		// without a tail gets its first.
		for i, c := range b.count {
			if c != 0 {
				continue
			}
			pm := b.keys[i][0]
			dr := v.localDist(&w.loc, 1, func(x uint32) bool { return slices.Contains(v.permsOf(x), pm) })
			v.ordered(w, role, dr, func(chain []uint32) bool {
				w.tails = append(w.tails, tail{roles: v.keepU32(chain), perm: pm})
				return false
			})
		}
		slices.SortFunc(w.tails, v.compareTails)
	}
	tl.tails, tl.truncated = v.keepTails(w.tails), b.over || !complete
	return tl
}

// compareTails orders tails as access.ComparePaths orders paths of one grant.
func (v *view) compareTails(a, b tail) int {
	if c := cmp.Compare(len(a.roles), len(b.roles)); c != 0 {
		return c
	}
	for i := range a.roles {
		if a.roles[i] != b.roles[i] {
			return v.byName(a.roles[i], b.roles[i])
		}
	}
	return v.byName(a.perm, b.perm)
}

// grantTails is what grant relation i gives at t.
func (v *view) grantTails(i int32) tailList {
	r := v.g.rels.at(i)
	if r.kind == relGrantAction {
		if v.counts(r.b) {
			sc := v.sc
			sc.tails = append(sc.tails, tail{perm: r.b})
			return tailList{tails: sc.tails[len(sc.tails)-1 : len(sc.tails) : len(sc.tails)]}
		}
		return tailList{}
	}
	return v.roleTails(r.b)
}

// grantItem is a grant that holds at the view's time, with what it gives.
type grantItem struct {
	subj uint32
	gi   int32
	iv   interval
	tl   tailList
	ref  access.GrantRef // without its expiry, which each path gets its own copy of
}

// subjRun is the grants of one subject, in scratch.items.
type subjRun struct {
	subj   uint32
	off, n int32
}

// grant notes grant relation gi, holding at t through iv, when it gives something that counts.
func (v *view) grant(gi int32, iv interval) {
	if tl := v.grantTails(gi); len(tl.tails) > 0 {
		ref := v.grantRef(gi, interval{})
		v.sc.items = append(v.sc.items, grantItem{subj: v.g.rels.at(gi).a, gi: gi, iv: iv, tl: tl, ref: ref})
	}
}

// indexSubjects makes the subjects of the noted grants the view's targets, each with its grants
// in path order.
func (v *view) indexSubjects() {
	sc := v.sc
	items := sc.items
	slices.SortFunc(items, func(a, b grantItem) int {
		if c := cmp.Compare(a.subj, b.subj); c != 0 {
			return c
		}
		return v.compareGrants(a.gi, b.gi)
	})
	v.subjEp = sc.next()
	sc.runs = sc.runs[:0]
	for i := 0; i < len(items); {
		j := i + 1
		for j < len(items) && items[j].subj == items[i].subj {
			j++
		}
		sc.subj[items[i].subj] = idxSlot{ep: v.subjEp, i: int32(len(sc.runs))}
		sc.runs = append(sc.runs, subjRun{subj: items[i].subj, off: int32(i), n: int32(j - i)})
		i = j
	}
}

func (v *view) isSubject(x uint32) bool { return v.sc.subj[x].ep == v.subjEp }

// itemsOf lists the noted grants of subject x.
func (v *view) itemsOf(x uint32) []grantItem {
	s := v.sc.subj[x]
	if s.ep != v.subjEp {
		return nil
	}
	r := v.sc.runs[s.i]
	return v.sc.items[r.off : r.off+r.n]
}

// compareGrants orders grants of one subject as access.ComparePaths does: by role, action, then
// resource (a role grant has no action, an action grant no role).
func (v *view) compareGrants(a, b int32) int {
	ra, rb := v.g.rels.at(a), v.g.rels.at(b)
	if ra.kind != rb.kind {
		if ra.kind == relGrantAction { // role "" first
			return -1
		}
		return 1
	}
	if c := v.byName(ra.b, rb.b); ra.b != rb.b {
		return c
	}
	return v.byName(ra.c, rb.c)
}

// below notes the grants on resource or an ancestor that hold at t and give something that
// counts, and finds the principals below their subjects: those that are subjects, and the
// members, directly or through nested groups, of those that are groups. dr is every node's
// distance (in groups) to the nearest subject, and the neighbours of a node found (nbrs) are
// the groups above it that lead to a subject. The list is the view's.
func (v *view) below(resource string) (ps []uint32, dr distRef) {
	g, sc := v.g, v.sc
	for _, res := range event.Ancestors(resource) {
		rid, ok := g.lookup(res)
		if !ok {
			continue
		}
		for _, gi := range g.resGrant[rid] {
			if iv, ok := v.at(gi); ok {
				v.grant(gi, iv)
			}
		}
	}
	v.indexSubjects()
	dr = distRef{f: 0, ep: sc.next()}
	queue, ps, edges := sc.queue[:0], sc.ps[:0], sc.edges[:0]
	for _, r := range sc.runs {
		dr.set(sc, r.subj, 0)
		if g.kind(r.subj) == event.KindGroup {
			queue = append(queue, r.subj)
		} else {
			ps = append(ps, r.subj)
		}
	}
	for i := 0; i < len(queue); i++ {
		x := queue[i]
		e := g.ents[x]
		if e == nil {
			continue
		}
		d := dr.of(sc, x) + 1
		for _, mr := range e.members {
			if mr.from == manySpan || v.k != forever {
				if !v.holds(mr.rel) {
					continue
				}
			} else if v.t < mr.from || v.t >= mr.to {
				continue
			}
			m := mr.member
			edges = append(edges, m, x)
			if dr.of(sc, m) >= 0 {
				continue
			}
			dr.set(sc, m, d)
			if g.kind(m) == event.KindGroup {
				queue = append(queue, m)
			} else {
				ps = append(ps, m)
			}
		}
	}
	// Every node found gets as neighbours the groups above it that lead to a subject: the walks
	// up from a principal never look at another membership.
	off := uint32(len(sc.nbrs))
	for _, list := range [2][]uint32{queue, ps} {
		for _, x := range list {
			sc.nbr[x] = listSlot{ep: v.ep}
		}
	}
	for i := 0; i < len(edges); i += 2 {
		sc.nbr[edges[i]].n++
	}
	for _, list := range [2][]uint32{queue, ps} {
		for _, x := range list {
			sl := &sc.nbr[x]
			sl.off, sc.loc[x].i = off, int32(off) // loc: where the next neighbour goes
			off += sl.n
			if sl.n < 2 {
				sl.n |= nbrSorted
			}
		}
	}
	sc.nbrs = slices.Grow(sc.nbrs, int(off)-len(sc.nbrs))[:off]
	for i := 0; i < len(edges); i += 2 {
		l := &sc.loc[edges[i]]
		sc.nbrs[l.i] = edges[i+1]
		l.i++
	}
	sc.queue, sc.ps, sc.edges = queue[:0], ps[:0], edges[:0]
	return ps, dr
}

// sortByName sorts ids by name.
func (v *view) sortByName(ids []uint32) {
	if len(ids) < 64 {
		slices.SortFunc(ids, v.byName)
		return
	}
	sc := v.sc
	if rt := v.rt; rt != nil && slices.Max(ids) < rt.n {
		words := int(rt.n+63) / 64
		if len(ids)*16 < words { // few: sort their ranks
			keys := sc.keys[:0]
			for _, id := range ids {
				keys = append(keys, uint64(rt.rank[id])<<32|uint64(id))
			}
			slices.Sort(keys)
			for i, k := range keys {
				ids[i] = uint32(k)
			}
			sc.keys = keys[:0]
			return
		}
		// Many: mark their ranks in a bitmap and read them back in order, without a compare.
		set := slices.Grow(sc.bits[:0], words)[:words] // all zero: emptied after use
		for _, id := range ids {
			r := rt.rank[id]
			set[r>>6] |= 1 << (r & 63)
		}
		i := 0
		for w, word := range set {
			for ; word != 0; word &= word - 1 {
				ids[i] = rt.ids[w<<6|bits.TrailingZeros64(word)]
				i++
			}
			set[w] = 0
		}
		sc.bits = set[:0]
		return
	}
	ns := sc.named[:0]
	for _, id := range ids {
		ns = append(ns, named{v.g.names[id], id})
	}
	slices.SortFunc(ns, func(a, b named) int { return strings.Compare(a.name, b.name) })
	for i := range ns {
		ids[i] = ns[i].id
	}
	clear(ns) // no strings kept alive
	sc.named = ns[:0]
}

// named is an id with its name, to sort without looking names up.
type named struct {
	name string
	id   uint32
}

// upward notes the grants that hold at t, cover resource (any when ""), and give something
// that counts, of p and of every group p is a member of at t, directly or through nested
// groups; scratch.w[0].loc is left holding that subgraph.
func (v *view) upward(p uint32, resource string) {
	lc := &v.sc.w[0].loc
	v.reach(lc, p)
	for _, x := range lc.nodes {
		e := v.g.ents[x]
		if e == nil {
			continue
		}
		for _, gi := range e.grants {
			iv, ok := v.at(gi)
			if !ok || (resource != "" && !event.Covers(v.g.names[v.g.rels.at(gi).c], resource)) {
				continue
			}
			v.grant(gi, iv)
		}
	}
	v.indexSubjects()
}

// upDist is the distance from every node upward of p to the nearest subject.
func (v *view) upDist() distRef { return v.localDist(&v.sc.w[0].loc, 0, v.isSubject) }

// pathsOf hands add the first limit paths of p to the subjects, in path order, walking with the
// distances dist gives when it must; it reports whether it left some out. With memo (after
// below), the chains from p's groups up are walked once for all the principals in them.
func (v *view) pathsOf(p uint32, dist func() distRef, limit int, memo bool, add func(chain []uint32, it *grantItem, t *tail)) bool {
	n, over := 0, false
	emit := func(chain []uint32) bool {
		items := v.itemsOf(chain[len(chain)-1])
		for i := range items {
			it := &items[i]
			for j := range it.tl.tails {
				if n == limit {
					over = true
					return false
				}
				add(chain, it, &it.tl.tails[j])
				n++
			}
			over = over || it.tl.truncated
		}
		return true
	}
	if memo {
		cs := &v.sc.pcs
		switch v.memoChains(p, cs) {
		case memoDone:
			for i := range cs.recs {
				if !emit(cs.chain(i)) {
					return true
				}
			}
			return over
		case memoTooMany:
			if !v.ordered(&v.sc.w[0], p, dist(), emit) {
				over = true
			}
			return over
		}
	}
	if !v.enumerate(&v.sc.w[0], p, v.isSubject, dist, emit) {
		over = true
	}
	return over
}

// memoRun is where chainsUp keeps the chains from one group, in scratch.memo.
type memoRun struct {
	off, n int32
	ok     bool
}

const (
	memoDone    = iota // cs holds the chains
	memoTooMany        // too many for the quick walk
	memoNoBudget
)

// memoChains puts in cs, in path order, the chains from principal p: itself when it is a
// subject, and through each group it is in, that group's chains (chainsUp).
func (v *view) memoChains(p uint32, cs *chainSet) int {
	cs.reset()
	if v.isSubject(p) {
		cs.add([]uint32{p})
	}
	sc := v.sc
	for _, g := range v.nbrs(p) {
		recs, ok := v.chainsUp(g)
		switch {
		case !ok && v.steps <= 0:
			return memoNoBudget
		case !ok || len(cs.recs)+len(recs) > quickChains:
			return memoTooMany
		}
		for _, r := range recs {
			cs.recs = append(cs.recs, chainRec{off: int32(len(cs.nodes)), n: r.n + 1})
			cs.nodes = append(cs.nodes, p)
			cs.nodes = append(cs.nodes, sc.memo.nodes[r.off:r.off+r.n]...)
		}
	}
	v.sortChains(cs)
	return memoDone
}

// chainsUp lists, in path order, the chains from group x (included) up to the subjects, walking
// them once a view; false when the quick walk gives up on them.
func (v *view) chainsUp(x uint32) ([]chainRec, bool) {
	sc := v.sc
	if s := sc.memoIx[x]; s.ep == v.ep {
		r := sc.memoRuns[s.i]
		return sc.memo.recs[r.off : r.off+r.n], r.ok
	}
	w := &sc.w[0]
	ok := v.quick(w, x, v.isSubject)
	run := memoRun{off: int32(len(sc.memo.recs)), ok: ok}
	if ok {
		v.sortChains(&w.cs)
		for i := range w.cs.recs {
			sc.memo.add(w.cs.chain(i))
		}
		run.n = int32(len(w.cs.recs))
	}
	if ok || v.steps > 0 { // out of budget: perhaps not too many, do not remember
		sc.memoIx[x] = idxSlot{ep: v.ep, i: int32(len(sc.memoRuns))}
		sc.memoRuns = append(sc.memoRuns, run)
	}
	return sc.memo.recs[run.off : run.off+run.n], ok
}

// entitlementsOf hands add, for each entitlement (permission, grant resource) of p, its first
// MaxPaths paths to the subjects, in path order, walking with the distances dist gives when it
// must. b counts the paths of each entitlement; once dist is called, b must know every
// entitlement there is (b.exact) and scratch.w[0].loc hold the subgraph upward of p. It reports
// whether it left some paths out.
func (v *view) entitlementsOf(p uint32, b *buckets, dist func() distRef, add func(chain []uint32, it *grantItem, t *tail)) bool {
	w := &v.sc.w[0]
	emit := func(chain []uint32) bool {
		items := v.itemsOf(chain[len(chain)-1])
		for i := range items {
			it := &items[i]
			res := v.g.rels.at(it.gi).c
			for j := range it.tl.tails {
				if t := &it.tl.tails[j]; b.take(b.of([2]uint32{t.perm, res})) {
					add(chain, it, t)
				}
			}
			b.over = b.over || it.tl.truncated
		}
		return !b.done()
	}
	complete := v.enumerate(w, p, v.isSubject, dist, emit)
	if !complete {
		// Out of budget: every entitlement left without a path gets its first.
		for k, c := range b.count {
			if c != 0 {
				continue
			}
			key := b.keys[k]
			gives := func(x uint32) bool {
				for _, it := range v.itemsOf(x) {
					if v.g.rels.at(it.gi).c == key[1] {
						for _, t := range it.tl.tails {
							if t.perm == key[0] {
								return true
							}
						}
					}
				}
				return false
			}
			dr := v.localDist(&w.loc, 1, gives)
			v.ordered(w, p, dr, func(chain []uint32) bool {
				items := v.itemsOf(chain[len(chain)-1])
				for i := range items {
					it := &items[i]
					if v.g.rels.at(it.gi).c != key[1] {
						continue
					}
					for j := range it.tl.tails {
						if it.tl.tails[j].perm == key[0] {
							b.count[k]++
							add(chain, it, &it.tl.tails[j])
							return false
						}
					}
				}
				return true
			})
		}
	}
	return b.over || !complete
}

// holdings hands add the paths of principal p at t, up to MaxPaths per entitlement; b ends
// holding the entitlements. It reports whether it left paths out.
func (v *view) holdings(p uint32, b *buckets, add func(chain []uint32, it *grantItem, t *tail)) bool {
	v.upward(p, "")
	b.reset(MaxPaths)
	for _, it := range v.sc.items {
		for _, t := range it.tl.tails {
			b.of([2]uint32{t.perm, v.g.rels.at(it.gi).c})
		}
	}
	b.exact = true
	return v.entitlementsOf(p, b, v.upDist, add)
}

// alloc carves the slices of one answer out of a few large blocks.
type alloc struct {
	g     *Graph
	strs  []string
	paths []access.Path
	start int // where the paths being gathered start in paths
}

// Block sizes: large enough to allocate rarely, small enough to stay off the large-object path.
const (
	strBlock  = 1 << 10
	pathBlock = 1 << 7
)

func (a *alloc) names(ids []uint32) []string {
	if len(ids) == 0 {
		return []string{}
	}
	if cap(a.strs)-len(a.strs) < len(ids) {
		a.strs = make([]string, 0, max(len(ids), strBlock))
	}
	n := len(a.strs)
	for _, id := range ids {
		a.strs = append(a.strs, a.g.names[id])
	}
	return a.strs[n:len(a.strs):len(a.strs)]
}

// next adds a zero path to those being gathered and returns it.
func (a *alloc) next() *access.Path {
	if len(a.paths) == cap(a.paths) {
		n := len(a.paths) - a.start
		b := make([]access.Path, n, max(2*n, pathBlock))
		copy(b, a.paths[a.start:])
		a.paths, a.start = b, 0
	}
	a.paths = a.paths[:len(a.paths)+1]
	return &a.paths[len(a.paths)-1]
}

// keep returns the paths gathered, and starts anew.
func (a *alloc) keep() []access.Path {
	if a.start == len(a.paths) {
		return []access.Path{}
	}
	ps := a.paths[a.start:len(a.paths):len(a.paths)]
	a.start = len(a.paths)
	return ps
}

// path is the path along chain (the principal, then its groups) and the grant and tail of it.
func (v *view) path(a *alloc, chain []uint32, it *grantItem, t *tail) access.Path {
	var p access.Path
	v.fill(&p, a, chain, it, t)
	return p
}

// fill fills in p as path does.
func (v *view) fill(p *access.Path, a *alloc, chain []uint32, it *grantItem, t *tail) {
	p.Groups, p.Grant, p.Roles, p.Permission = a.names(chain[1:]), it.ref, a.names(t.roles), v.g.names[t.perm]
	if it.iv.expires != 0 {
		x := event.FromMicros(it.iv.expires)
		p.Grant.ExpiresAt = &x
	}
}

func (v *view) grantRef(i int32, iv interval) access.GrantRef {
	r := v.g.rels.at(i)
	ref := access.GrantRef{Subject: v.g.names[r.a], Resource: v.g.names[r.c]}
	if r.kind == relGrantRole {
		ref.Role = v.g.names[r.b]
	} else {
		ref.Action = v.g.names[r.b]
	}
	if iv.expires != 0 {
		t := event.FromMicros(iv.expires)
		ref.ExpiresAt = &t
	}
	return ref
}

// WhoCould answers who could do q.Action on q.Resource at q.At.
func (g *Graph) WhoCould(ctx context.Context, q access.Query) (access.WhoCould, error) {
	g.mu.RLock()
	defer g.mu.RUnlock()
	ans := access.WhoCould{Action: q.Action, Resource: q.Resource, At: q.At.UTC(), KnownAt: access.UTC(q.KnownAt),
		Principals: []access.PrincipalPaths{}}
	qs := g.ask(q.KnownAt)
	defer qs.done()
	v := qs.view(event.Micros(q.At))
	v.action, v.filtered = q.Action, true
	ps, dr := v.below(q.Resource)
	v.sortByName(ps)
	a := &alloc{g: g}
	add := func(chain []uint32, it *grantItem, t *tail) { v.fill(a.next(), a, chain, it, t) }
	dist := func() distRef { return dr }
	ans.Principals = make([]access.PrincipalPaths, 0, len(ps))
	total := 0
	for i, p := range ps {
		if i%256 == 255 {
			if err := ctx.Err(); err != nil {
				return ans, err
			}
		}
		if !v.active(p) {
			continue
		}
		limit := MaxPaths
		if total >= maxAnswerPaths {
			limit = 1
		}
		if v.pathsOf(p, dist, limit, true, add) {
			ans.PathsTruncated = true
		}
		total += len(a.paths) - a.start
		ans.Principals = append(ans.Principals, access.PrincipalPaths{Principal: g.names[p], Paths: a.keep()})
	}
	return ans, ctx.Err()
}

// WhatCould answers what q.Principal could do at q.At: nothing unless it is active.
func (g *Graph) WhatCould(ctx context.Context, q access.Query) (access.WhatCould, error) {
	g.mu.RLock()
	defer g.mu.RUnlock()
	ans := access.WhatCould{Principal: q.Principal, At: q.At.UTC(), KnownAt: access.UTC(q.KnownAt),
		Status: access.StatusUnknown, Entitlements: []access.Entitlement{}}
	p, ok := g.lookup(q.Principal)
	if !ok {
		return ans, nil
	}
	qs := g.ask(q.KnownAt)
	defer qs.done()
	v := qs.view(event.Micros(q.At))
	ans.Status, _ = v.statusAt(p)
	if ans.Status != access.StatusActive {
		return ans, nil
	}
	a := &alloc{g: g}
	var lists [][]access.Path
	b := &v.sc.gb
	ans.PathsTruncated = v.holdings(p, b, func(chain []uint32, it *grantItem, t *tail) {
		k := b.of([2]uint32{t.perm, g.rels.at(it.gi).c})
		for int(k) >= len(lists) {
			lists = append(lists, nil)
		}
		lists[k] = append(lists[k], v.path(a, chain, it, t))
	})
	for k, key := range b.keys {
		ans.Entitlements = append(ans.Entitlements, access.Entitlement{Action: g.names[key[0]], Resource: g.names[key[1]], Paths: lists[k]})
	}
	sortEntitlements(ans.Entitlements)
	return ans, ctx.Err()
}

func sortEntitlements(es []access.Entitlement) {
	slices.SortFunc(es, func(a, b access.Entitlement) int {
		if c := cmp.Compare(a.Action, b.Action); c != 0 {
			return c
		}
		return cmp.Compare(a.Resource, b.Resource)
	})
}

// Explain answers whether q.Principal could do q.Action on q.Resource at q.At, with its paths
// that hold (even for a principal that is not active; the first MaxPaths) and, when it could
// not, why.
func (g *Graph) Explain(ctx context.Context, q access.Query) (access.Explain, error) {
	g.mu.RLock()
	defer g.mu.RUnlock()
	ans := access.Explain{Principal: q.Principal, Action: q.Action, Resource: q.Resource, At: q.At.UTC(),
		KnownAt: access.UTC(q.KnownAt), Status: access.StatusUnknown, Paths: []access.Path{}}
	p, ok := g.lookup(q.Principal)
	if !ok {
		ans.Reason = fmt.Sprintf("%s is not known: no event names it", q.Principal)
		return ans, nil
	}
	qs := g.ask(q.KnownAt)
	defer qs.done()
	v := qs.view(event.Micros(q.At))
	v.action, v.filtered = q.Action, true
	var since int64
	ans.Status, since = v.statusAt(p)
	v.upward(p, q.Resource)
	a := &alloc{g: g}
	ans.PathsTruncated = v.pathsOf(p, v.upDist, MaxPaths, false, func(chain []uint32, it *grantItem, t *tail) {
		v.fill(a.next(), a, chain, it, t)
	})
	ans.Paths = a.keep()
	ans.Could = ans.Status == access.StatusActive && len(ans.Paths) > 0
	if !ans.Could {
		ans.Reason = v.whyNot(p, q, ans.Status, since, len(ans.Paths), ans.PathsTruncated)
	}
	return ans, ctx.Err()
}

func stamp2s(us int64) string { return event.FromMicros(us).Format(time.RFC3339Nano) }

// whyNot says what is missing for p to do the question's action.
func (v *view) whyNot(p uint32, q access.Query, status string, since int64, paths int, more bool) string {
	if r := access.InactiveReason(q.Principal, status, q.At, event.FromMicros(since), paths, more); r != "" {
		return r
	}
	// Active, no path: find the most recent matching grant that ended by t.
	var (
		best    interval
		bestRef access.GrantRef
		found   bool
	)
	for _, sid := range v.everSubjects(p) {
		e := v.g.ents[sid]
		if e == nil {
			continue
		}
		for _, gi := range e.grants {
			r := v.g.rels.at(gi)
			if !event.Covers(v.g.names[r.c], q.Resource) {
				continue
			}
			for _, iv := range v.ivs(gi) {
				if iv.end == EndRenewed || iv.to > v.t || (found && iv.to <= best.to) {
					continue
				}
				then := v.question.view(iv.to - 1) // ends v's walks: v has no more to do
				then.action, then.filtered = v.action, v.filtered
				if len(then.grantTails(gi).tails) > 0 {
					best, bestRef, found = iv, v.grantRef(gi, iv), true
				}
			}
		}
	}
	none := fmt.Sprintf("no grant to %s or to a group it is in gives %s on %s at %s", q.Principal, q.Action, q.Resource, q.At.UTC().Format(time.RFC3339Nano))
	if !found {
		return none
	}
	how := map[End]string{EndExpired: "expired", EndRemoved: "was removed", EndDeleted: "ended when its subject or role was deleted"}[best.end]
	return fmt.Sprintf("%s; the last grant that did, %s, %s at %s", none, bestRef.String(), how, stamp2s(best.to))
}

// everSubjects lists p and every group p was ever (at any time, as known at k) a member of,
// directly or not.
func (v *view) everSubjects(p uint32) []uint32 {
	seen := map[uint32]bool{p: true}
	out := []uint32{p}
	for i := 0; i < len(out); i++ {
		e := v.g.ents[out[i]]
		if e == nil {
			continue
		}
		for _, mi := range e.memberOf {
			if len(v.ivs(mi)) == 0 {
				continue
			}
			grp := v.g.rels.at(mi).a
			if !seen[grp] {
				seen[grp] = true
				out = append(out, grp)
			}
		}
	}
	return out
}

// pathKey identifies an interval's entitlement and path, to follow it across evaluations.
func pathKey(principal, action, resource string, p access.Path) string {
	return principal + "\x00" + action + "\x00" + resource + "\x00" + p.String() + "\x00" + strings.Join(p.Roles, ",")
}

// History answers how q.Principal's access, or the access to q.Resource, changed in
// [q.From, q.To): one interval per entitlement and path, clipped to the window; To is nil when
// the interval still held at q.To. At each instant it follows the first MaxPaths paths of each
// entitlement (of each principal, for a resource).
func (g *Graph) History(ctx context.Context, q access.Query) (access.History, error) {
	g.mu.RLock()
	defer g.mu.RUnlock()
	ans := access.History{Principal: q.Principal, Resource: q.Resource, From: q.From.UTC(), To: q.To.UTC(),
		KnownAt: access.UTC(q.KnownAt), Intervals: []access.Interval{}}
	from, to := event.Micros(q.From), event.Micros(q.To)
	if from >= to {
		return ans, nil
	}
	qs := g.ask(q.KnownAt)
	defer qs.done()
	base := qs.view(from)
	// The relations and principals whose changes can change the answer, and so the instants at
	// which to evaluate it.
	var (
		rels       []int32
		principals []uint32
	)
	if q.Principal != "" {
		p, ok := g.lookup(q.Principal)
		if !ok {
			return ans, nil
		}
		principals = []uint32{p}
		rels = g.reachUp(base, p)
	} else {
		rels, principals = g.reachDown(base, q.Resource)
	}
	times := []int64{from}
	for _, i := range rels {
		for _, iv := range base.ivs(i) {
			times = append(times, iv.from, iv.to)
		}
	}
	for _, p := range principals {
		for _, s := range base.statusIvs(p) {
			times = append(times, s.from, s.to)
		}
	}
	slices.Sort(times)
	times = slices.Compact(times)

	a := &alloc{g: g}
	open := map[string]*access.Interval{}
	for _, t := range times {
		if t < from || t >= to {
			continue
		}
		if err := ctx.Err(); err != nil {
			return ans, err
		}
		v := qs.view(t)
		now := map[string]access.Interval{}
		b := &v.sc.gb
		var principal uint32
		add := func(chain []uint32, it *grantItem, tl *tail) {
			iv := access.Interval{Principal: g.names[principal], Action: g.names[tl.perm], Resource: g.names[g.rels.at(it.gi).c],
				Path: v.path(a, chain, it, tl)}
			now[pathKey(iv.Principal, iv.Action, iv.Resource, iv.Path)] = iv
		}
		if q.Principal != "" {
			principal = principals[0]
			if v.active(principal) && v.holdings(principal, b, add) {
				ans.PathsTruncated = true
			}
		} else {
			ps, dr := v.below(q.Resource)
			for _, p := range ps {
				if !v.active(p) {
					continue
				}
				principal = p
				b.reset(MaxPaths)
				// Only when the quick walk gives up: learn every entitlement p holds.
				exact := func() distRef {
					w := &v.sc.w[0]
					v.reach(&w.loc, p)
					for _, x := range w.loc.nodes {
						for _, it := range v.itemsOf(x) {
							for _, tl := range it.tl.tails {
								b.of([2]uint32{tl.perm, g.rels.at(it.gi).c})
							}
						}
					}
					b.exact = true
					return dr
				}
				if v.entitlementsOf(p, b, exact, add) {
					ans.PathsTruncated = true
				}
			}
		}
		at := event.FromMicros(t)
		for k, iv := range open {
			if _, ok := now[k]; !ok {
				end := at
				iv.To = &end
				ans.Intervals = append(ans.Intervals, *iv)
				delete(open, k)
			}
		}
		for k, iv := range now {
			if o, ok := open[k]; ok {
				o.Path = iv.Path // the path as it stands last, with the expiry then in force
				continue
			}
			iv.From = at
			open[k] = &iv
		}
	}
	for _, iv := range open {
		ans.Intervals = append(ans.Intervals, *iv)
	}
	slices.SortFunc(ans.Intervals, access.CompareIntervals)
	return ans, nil
}

// reachUp lists every relation that could ever bear on p's access: memberships up from p,
// grants of p and those groups, and the permissions and inclusions of the roles they grant.
func (g *Graph) reachUp(v *view, p uint32) []int32 {
	var rels []int32
	subjects := []uint32{p}
	seen := map[uint32]bool{p: true}
	var roles []uint32
	for i := 0; i < len(subjects); i++ {
		e := g.ents[subjects[i]]
		if e == nil {
			continue
		}
		for _, mi := range e.memberOf {
			rels = append(rels, mi)
			if grp := g.rels.at(mi).a; !seen[grp] {
				seen[grp] = true
				subjects = append(subjects, grp)
			}
		}
		for _, gi := range e.grants {
			rels = append(rels, gi)
			if r := g.rels.at(gi); r.kind == relGrantRole && !seen[r.b] {
				seen[r.b] = true
				roles = append(roles, r.b)
			}
		}
	}
	return append(rels, g.roleReach(roles, seen)...)
}

// roleReach lists the permission and inclusion relations of roles and of the roles they ever
// include; seen marks roles already listed.
func (g *Graph) roleReach(roles []uint32, seen map[uint32]bool) []int32 {
	var rels []int32
	for i := 0; i < len(roles); i++ {
		e := g.ents[roles[i]]
		if e == nil {
			continue
		}
		rels = append(rels, e.perms...)
		for _, ii := range e.includes {
			rels = append(rels, ii)
			if r := g.rels.at(ii).b; !seen[r] {
				seen[r] = true
				roles = append(roles, r)
			}
		}
	}
	return rels
}

// reachDown lists every relation and principal that could ever bear on the access to resource.
func (g *Graph) reachDown(v *view, resource string) ([]int32, []uint32) {
	var (
		rels       []int32
		principals []uint32
		groups     []uint32
		roles      []uint32
		seen       = map[uint32]bool{}
	)
	add := func(id uint32) {
		if seen[id] {
			return
		}
		seen[id] = true
		if v.kind(id) == event.KindGroup {
			groups = append(groups, id)
		} else {
			principals = append(principals, id)
		}
	}
	for _, res := range event.Ancestors(resource) {
		rid, ok := g.lookup(res)
		if !ok {
			continue
		}
		for _, gi := range g.resGrant[rid] {
			rels = append(rels, gi)
			r := g.rels.at(gi)
			add(r.a)
			if r.kind == relGrantRole && !seen[r.b] {
				seen[r.b] = true
				roles = append(roles, r.b)
			}
		}
	}
	for i := 0; i < len(groups); i++ {
		e := g.ents[groups[i]]
		if e == nil {
			continue
		}
		for _, mr := range e.members {
			rels = append(rels, mr.rel)
			add(mr.member)
		}
	}
	return append(rels, g.roleReach(roles, seen)...), principals
}
