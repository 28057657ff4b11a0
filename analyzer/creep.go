package analyzer

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"math"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/whocould/whocould/access"
	"github.com/whocould/whocould/event"
	"github.com/whocould/whocould/finding"
	"github.com/whocould/whocould/graph"
)

// The privilege-creep rule (DESIGN.md §5), in three kinds, over the principals active at Now:
//
//   - growth: the principal's entitlements (distinct (action pattern, resource) pairs it could
//     use, what-could) numbered at least Growth more at Now than at Now−Window. Only principals
//     active at Now−Window too are judged: one created (or enabled) since starts from nothing,
//     which is onboarding, not creep.
//   - kept-after-move: at M the principal moved — one of MoveAttributes changed from a value to
//     a different one (the first value is no move), or it left a group (its membership was
//     removed; not ended by a deletion, and not added back since). An entitlement it held just
//     before M (at M−1µs) and still holds at Now, when Now−M ≥ Grace, was kept. For an attribute
//     move, an entitlement that at least PeerPercent% of its new peers (same department and
//     title at Now) hold is not counted, when it has at least MinPeers of them. For leaving
//     group X, only the entitlements that came through X are counted: before M, some path went
//     through X and none avoided the groups it left at M; at Now, a path avoids X.
//   - peer-outlier: the principal's peers are the other active principals with the same
//     department and title (both set), or, when it lacks either, the other active principals
//     (whatever their attributes) with the same set of direct groups (not empty). With at least
//     MinPeers peers, each entitlement fewer than PeerPercent% of them hold is an outlier.
//
// Since: growth, Now−Window; kept-after-move, M+Grace; peer-outlier, when the principal's
// current hold on the entitlement began (the stretch around Now over which one of its paths
// held while it was active).
//
// Entitlements are asked of the graph as keys without paths (graph.EntitlementIDs, which is
// what-could without its costly part): once per active principal at Now (kept as interned ids,
// shared by the three kinds and the peer counts), once at Now−Window when it could have grown
// enough, and once per move past its grace; the principals are judged in parallel. Paths are
// made only for the evidence of findings (from the join of the model's parts, Model.Paths),
// and asked at M−1µs and Now for a group left, whose test reads them. What-could lists the
// first graph.MaxPaths paths of an entitlement (PathsTruncated): past that, the group test
// judges by the paths listed.

// pcMaxListed bounds the entitlements a finding lists as evidence.
const pcMaxListed = 20

// pcEnt is an entitlement: an action pattern on a resource.
type pcEnt struct{ action, resource string }

func pcCompare(a, b pcEnt) int {
	return cmp.Or(cmp.Compare(a.action, b.action), cmp.Compare(a.resource, b.resource))
}

// pcMove is one move of a principal past its grace, and what it kept.
type pcMove struct {
	at       int64
	group    string            // the group left; "" for an attribute move
	attrs    []string          // the attributes that changed, sorted
	from, to map[string]string // their values before and after
	// What was held just before and still is at Now: for an attribute move, as ids (before the
	// peer filter); for a group left, sorted, with the path at Now that avoids the group.
	keptIDs []graph.EntitlementID
	kept    []pcEnt
	paths   map[pcEnt]access.Path
}

// pcPrincipal is what the first pass learns of one active principal.
type pcPrincipal struct {
	name   string
	ents   []graph.EntitlementID // its entitlements at Now, sorted
	attrs  map[string]string
	groups string // its direct groups at Now, sorted, joined by NUL
	// growth: the counts, and the entitlements gained (when it grew by Growth or more).
	before, after int
	gained        []graph.EntitlementID
	moves         []pcMove
}

// pcRun is one run of the rule.
type pcRun struct {
	in      *Input
	g       *graph.Graph
	cfg     *PrivilegeCreepConfig
	now     int64
	leaves  map[string][]graph.RelationSpans // principal → its direct memberships
	groupAt map[string][]string              // principal → its direct groups at Now
	once    sync.Once
	adds    map[string][]*event.Record // relation → the events that added it
	updates map[string][]*event.Record // principal → its principal.* events
	removes map[string]*event.Record   // group, member, time → membership.removed
}

// checkPrivilegeCreep flags entitlement growth, entitlements kept after a move, and
// entitlements a principal's peers almost never hold.
func checkPrivilegeCreep(ctx context.Context, in *Input) ([]finding.Finding, error) {
	r := &pcRun{in: in, g: in.Model.Graph, cfg: &in.Config.PrivilegeCreep, now: event.Micros(in.Now),
		leaves: map[string][]graph.RelationSpans{}, groupAt: map[string][]string{}}
	r.g.Relations(nil, func(rs graph.RelationSpans) {
		if event.KindOf(rs.B) != event.KindPrincipal {
			return
		}
		r.leaves[rs.B] = append(r.leaves[rs.B], rs)
		if holdsAt(rs.Spans, r.now) {
			r.groupAt[rs.B] = append(r.groupAt[rs.B], rs.A)
		}
	}, graph.Membership)
	var active []string
	for _, p := range r.g.Principals() {
		if activeAt(r.g, p, r.now) {
			active = append(active, p)
		}
	}
	ps := make([]*pcPrincipal, len(active))
	err := parallel(ctx, len(active), func(i int) (err error) {
		ps[i], err = r.judge(ctx, active[i])
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("privilege creep: %w", err)
	}
	return r.findings(ctx, ps)
}

// parallel calls fn(0..n-1) on GOMAXPROCS goroutines (the rules that judge principal by
// principal share it), and returns the first error (or ctx's).
func parallel(ctx context.Context, n int, fn func(i int) error) error {
	var (
		wg   sync.WaitGroup
		next = make(chan int)
		errs = make([]error, runtime.GOMAXPROCS(0))
	)
	for w := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if errs[w] == nil {
					errs[w] = fn(i)
				}
			}
		}()
	}
	for i := range n {
		if ctx.Err() != nil {
			break
		}
		next <- i
	}
	close(next)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return err
	}
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// activeAt reports whether principal p is active at t.
func activeAt(g *graph.Graph, p string, t int64) bool {
	return slices.ContainsFunc(g.StatusSpans(p, nil), func(s graph.StatusSpan) bool {
		return s.Status == access.StatusActive && s.From <= t && t < s.To
	})
}

// keys are the entitlements p could use at t (micros), sorted, and whether p was active then.
func (r *pcRun) keys(p string, t int64) ([]graph.EntitlementID, bool) {
	ids, active := r.g.EntitlementIDs(p, event.FromMicros(t), nil, nil)
	slices.Sort(ids)
	return ids, active
}

// first are the first n of ids (all when n < 0) by action pattern, then resource.
func (r *pcRun) first(ids []graph.EntitlementID, n int) []pcEnt {
	es := make([]pcEnt, len(ids))
	for i, id := range ids {
		es[i].action, es[i].resource = r.g.EntitlementNames(id)
	}
	slices.SortFunc(es, pcCompare)
	if n >= 0 && len(es) > n {
		es = es[:n]
	}
	return es
}

// whatCould is what p could do at t (micros), with the paths.
func (r *pcRun) whatCould(ctx context.Context, p string, t int64) (map[pcEnt][]access.Path, error) {
	ans, err := r.g.WhatCould(ctx, access.Query{Tenant: r.in.Tenant, Principal: p, At: event.FromMicros(t)})
	if err != nil {
		return nil, fmt.Errorf("what could %s do at %s: %w", p, event.FromMicros(t).Format(time.RFC3339Nano), err)
	}
	m := make(map[pcEnt][]access.Path, len(ans.Entitlements))
	for _, e := range ans.Entitlements {
		m[pcEnt{e.Action, e.Resource}] = e.Paths
	}
	return m, nil
}

// pathsAt are the paths at Now of principal p to the entitlements need (at least), in the
// order answers list them: from the join of the model's parts (Model.Paths), which costs less
// than asking the engine per entitlement.
func (r *pcRun) pathsAt(p string, need []pcEnt) map[pcEnt][]access.Path {
	want := make(map[pcEnt]bool, len(need))
	for _, e := range need {
		want[e] = true
	}
	ps := r.in.Model.Paths(p, func(action, resource string) bool { return want[pcEnt{action, resource}] })
	out := make(map[pcEnt][]access.Path, len(need))
	for _, x := range ps.Paths {
		if x.From <= r.now && r.now < x.To {
			e := pcEnt{x.Action, x.Resource}
			out[e] = append(out[e], x.Path)
		}
	}
	for _, paths := range out {
		slices.SortFunc(paths, access.ComparePaths)
	}
	return out
}

// judge is the first pass over one active principal: its entitlements, growth and moves. It asks
// the graph for entitlements without paths, but for the groups left, whose test reads them.
func (r *pcRun) judge(ctx context.Context, p string) (*pcPrincipal, error) {
	now, _ := r.keys(p, r.now)
	pp := &pcPrincipal{name: p, ents: now, after: len(now)}
	groups := slices.Clone(r.groupAt[p])
	slices.Sort(groups)
	pp.groups = strings.Join(groups, "\x00")
	spans := r.g.AttributeSpans(p, nil)
	if i := slices.IndexFunc(spans, func(s graph.AttributeSpan) bool { return s.From <= r.now && r.now < s.To }); i >= 0 {
		pp.attrs = spans[i].Attrs
	}
	has := func(ids []graph.EntitlementID, id graph.EntitlementID) bool {
		_, ok := slices.BinarySearch(ids, id)
		return ok
	}
	// Growth.
	if len(now) >= r.cfg.Growth {
		before, active := r.keys(p, event.Micros(r.in.Now.Add(-r.cfg.Window.D())))
		if active && len(now)-len(before) >= r.cfg.Growth {
			pp.before = len(before)
			for _, id := range now {
				if !has(before, id) {
					pp.gained = append(pp.gained, id)
				}
			}
		}
	}
	// Moves past their grace.
	lastMove := r.now - r.cfg.Grace.D().Microseconds() // Now − M ≥ Grace
	var moves []pcMove
	for i := 1; i < len(spans); i++ {
		prev, cur := spans[i-1], spans[i]
		if prev.To != cur.From || cur.From > lastMove {
			continue // recreated (a new principal), or still within its grace
		}
		m := pcMove{at: cur.From, from: map[string]string{}, to: map[string]string{}}
		for _, a := range r.cfg.MoveAttributes {
			if old := prev.Attrs[a]; old != "" && cur.Attrs[a] != old {
				m.attrs = append(m.attrs, a)
				m.from[a], m.to[a] = old, cur.Attrs[a]
			}
		}
		if len(m.attrs) > 0 {
			slices.Sort(m.attrs)
			moves = append(moves, m)
		}
	}
	left := map[int64][]string{} // when → the groups left then
	for _, rs := range r.leaves[p] {
		if holdsAt(rs.Spans, r.now) {
			continue // a member again
		}
		for i, s := range rs.Spans {
			if s.End != graph.EndRemoved || s.To > lastMove || (i+1 < len(rs.Spans) && rs.Spans[i+1].From == s.To) {
				continue
			}
			left[s.To] = append(left[s.To], rs.A)
			moves = append(moves, pcMove{at: s.To, group: rs.A})
		}
	}
	var nowPaths map[pcEnt][]access.Path
	for _, m := range moves {
		if m.group == "" {
			before, _ := r.keys(p, m.at-1)
			for _, id := range before {
				if has(now, id) {
					m.keptIDs = append(m.keptIDs, id)
				}
			}
			if len(m.keptIDs) > 0 {
				pp.moves = append(pp.moves, m)
			}
			continue
		}
		before, err := r.whatCould(ctx, p, m.at-1)
		if err != nil {
			return nil, err
		}
		if nowPaths == nil && len(before) > 0 {
			if nowPaths, err = r.whatCould(ctx, p, r.now); err != nil {
				return nil, err
			}
		}
		m.paths = map[pcEnt]access.Path{}
		for e, paths := range before {
			cur, ok := nowPaths[e]
			if !ok {
				continue
			}
			through := slices.ContainsFunc(paths, func(x access.Path) bool { return slices.Contains(x.Groups, m.group) })
			avoided := slices.ContainsFunc(paths, func(x access.Path) bool {
				return !slices.ContainsFunc(x.Groups, func(g string) bool { return slices.Contains(left[m.at], g) })
			})
			i := slices.IndexFunc(cur, func(x access.Path) bool { return !slices.Contains(x.Groups, m.group) })
			if through && !avoided && i >= 0 {
				m.kept = append(m.kept, e)
				m.paths[e] = cur[i]
			}
		}
		slices.SortFunc(m.kept, pcCompare)
		if len(m.kept) > 0 {
			pp.moves = append(pp.moves, m)
		}
	}
	slices.SortFunc(pp.moves, func(a, b pcMove) int { return cmp.Or(cmp.Compare(a.at, b.at), cmp.Compare(a.group, b.group)) })
	return pp, nil
}

// pcPeers is a set of peers: the principals sharing a key, and how many of them hold each
// entitlement.
type pcPeers struct {
	what    string // how they are peers, in words
	members int
	holding map[graph.EntitlementID]int
}

// peerSets are the keys of the sets of peers p is counted in, with how they are peers: the
// principals with its department and title (when it has both), and those with its set of direct
// groups (when it has any).
func (r *pcRun) peerSets(p *pcPrincipal) (attrs, attrsWhat, groups, groupsWhat string) {
	if d, t := p.attrs["department"], p.attrs["title"]; d != "" && t != "" {
		attrs, attrsWhat = "a\x00"+d+"\x00"+t, fmt.Sprintf("department %s and title %s", d, t)
	}
	if p.groups != "" {
		groups, groupsWhat = "g\x00"+p.groups, "direct groups "+strings.ReplaceAll(p.groups, "\x00", ", ")
	}
	return attrs, attrsWhat, groups, groupsWhat
}

// findings is the second pass: peers, and the findings.
func (r *pcRun) findings(ctx context.Context, ps []*pcPrincipal) ([]finding.Finding, error) {
	// The sets' members first: what they hold is counted only in a set large enough to judge
	// by (most sets of direct groups are one principal's).
	peers := map[string]*pcPeers{}
	sets := make([][2]*pcPeers, len(ps)) // each principal's sets: by attributes, by groups
	for i, p := range ps {
		ak, aw, gk, gw := r.peerSets(p)
		for j, k := range [][2]string{{ak, aw}, {gk, gw}} {
			if k[0] == "" {
				continue
			}
			s := peers[k[0]]
			if s == nil {
				s = &pcPeers{what: k[1]}
				peers[k[0]] = s
			}
			s.members++
			sets[i][j] = s
		}
	}
	for i, p := range ps {
		for _, s := range sets[i] {
			if !r.judgeable(s) {
				continue
			}
			if s.holding == nil {
				s.holding = map[graph.EntitlementID]int{}
			}
			for _, e := range p.ents {
				s.holding[e]++
			}
		}
	}
	outs := make([][]finding.Finding, len(ps))
	err := parallel(ctx, len(ps), func(i int) error {
		outs[i] = r.judged(ps[i], sets[i][0], sets[i][1])
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("privilege creep: %w", err)
	}
	var out []finding.Finding
	for _, fs := range outs {
		out = append(out, fs...)
	}
	return out, nil
}

// judgeable reports whether s (nil: none) has enough members to judge a principal by.
func (r *pcRun) judgeable(s *pcPeers) bool { return s != nil && s.members-1 >= r.cfg.MinPeers }

// rare reports whether fewer than PeerPercent% of s's members but one (a principal's peers)
// hold e, which that principal holds.
func (r *pcRun) rare(s *pcPeers, e graph.EntitlementID) bool {
	return float64(s.holding[e]-1)*100 < r.cfg.PeerPercent*float64(s.members-1)
}

// pcKept is the finding of one move, before its evidence.
type pcKept struct {
	m        pcMove
	n        int     // how many were kept
	listed   []pcEnt // the first of them
	peerNote string
}

// pcOdd is an entitlement rare among a principal's peers, and how many of them hold it.
type pcOdd struct {
	e    pcEnt
	held int
}

// judged is p's findings; attrs and groups are its sets of peers (nil: none). Its peers are
// those with its department and title when it has both, else those with its set of direct
// groups.
func (r *pcRun) judged(p *pcPrincipal, attrs, groups *pcPeers) []finding.Finding {
	cfg := r.cfg
	var odd []pcOdd // its entitlements rare among its peers
	s := attrs
	if s == nil {
		s = groups
	}
	if r.judgeable(s) {
		for _, id := range p.ents {
			if r.rare(s, id) {
				a, res := r.g.EntitlementNames(id)
				odd = append(odd, pcOdd{pcEnt{a, res}, s.holding[id] - 1})
			}
		}
		slices.SortFunc(odd, func(a, b pcOdd) int { return pcCompare(a.e, b.e) })
	}
	var kept []pcKept
	for _, m := range p.moves {
		k := pcKept{m: m, n: len(m.kept), listed: m.kept}
		if m.group == "" {
			ids := m.keptIDs
			if s := attrs; r.judgeable(s) {
				ids = nil
				for _, id := range m.keptIDs {
					if r.rare(s, id) {
						ids = append(ids, id)
					}
				}
				k.peerNote = fmt.Sprintf("; not counting what at least %g%% of its %d new peers (%s) hold", cfg.PeerPercent, s.members-1, s.what)
			}
			k.n, k.listed = len(ids), r.first(ids, pcMaxListed)
		}
		if k.n > 0 {
			kept = append(kept, k)
		}
	}
	if len(p.gained) == 0 && len(kept) == 0 && len(odd) == 0 {
		return nil
	}
	gained := r.first(p.gained, pcMaxListed)
	need := slices.Clone(gained)
	for _, k := range kept {
		if k.m.group == "" {
			need = append(need, k.listed...)
		}
	}
	for _, o := range odd {
		need = append(need, o.e)
	}
	paths := r.pathsAt(p.name, need)
	var out []finding.Finding
	if len(p.gained) > 0 {
		out = append(out, r.growth(p, gained, paths))
	}
	for _, k := range kept {
		out = append(out, r.kept(p, k, paths))
	}
	if len(odd) > 0 {
		out = append(out, r.outliers(p, odd, s, paths)...)
	}
	return out
}

// growth is p's growth finding; gained are the gained entitlements listed.
func (r *pcRun) growth(p *pcPrincipal, gained []pcEnt, paths map[pcEnt][]access.Path) finding.Finding {
	in, cfg := r.in, r.cfg
	from := in.Now.Add(-cfg.Window.D())
	f := in.New(finding.PrivilegeCreep, "growth", "growth\x00"+p.name, finding.Medium)
	f.Principal = p.name
	f.Since = from
	grew := p.after - p.before
	f.Summary = fmt.Sprintf("%s's entitlements grew by %d in the last %s, from %d to %d (threshold %d).", p.name, grew, cfg.Window,
		p.before, p.after, cfg.Growth)
	f.Details = map[string]any{"before": p.before, "after": p.after, "growth": grew, "window_days": cfg.Window.D().Hours() / 24,
		"gained": len(p.gained)}
	f.Evidence = append(f.Evidence, finding.Evidence{Kind: "measure", Time: finding.Time(from), Until: finding.Time(in.Now),
		Text: fmt.Sprintf("%s could use %d entitlement(s) at %s and %d at %s; %d of those now are new", p.name, p.before, stamp(from),
			p.after, stamp(in.Now), len(p.gained))})
	for _, g := range gained {
		ps := paths[g]
		if len(ps) == 0 {
			continue // the path was past what explain lists
		}
		path := ps[0]
		f.Evidence = append(f.Evidence, finding.Evidence{Kind: "path", Path: ownPath(path),
			Text: fmt.Sprintf("gained %s on %s through %s", g.action, g.resource, path.String())})
		if e := r.addedBy(p.name, path, event.Micros(from), r.now); e != nil {
			f.Evidence = append(f.Evidence, finding.Evidence{Kind: "event", Time: finding.Time(e.Time), Event: eventRef(e),
				Text: fmt.Sprintf("%s (event %s/%s) completed that path", pcDescribe(e), e.Source, e.ID)})
		}
	}
	if len(p.gained) > len(gained) {
		f.Evidence = append(f.Evidence, finding.Evidence{Kind: "measure",
			Text: fmt.Sprintf("and %d more gained entitlement(s) not listed", len(p.gained)-len(gained))})
	}
	return f
}

// kept is the finding of p's move k.m.
func (r *pcRun) kept(p *pcPrincipal, k pcKept, paths map[pcEnt][]access.Path) finding.Finding {
	in, cfg, m := r.in, r.cfg, k.m
	at := event.FromMicros(m.at)
	key := "kept-after-move\x00" + p.name
	details := map[string]any{"moved_at": stamp(at), "kept": k.n, "grace_days": cfg.Grace.D().Hours() / 24}
	var move string
	var ev *event.Record
	if m.group != "" {
		key += "\x00group\x00" + m.group
		details["move"], details["group"] = "group", m.group
		move = fmt.Sprintf("left %s on %s", m.group, stamp(at))
		ev = r.removed(m.group, p.name, m.at)
	} else {
		key += "\x00attributes\x00" + strings.Join(m.attrs, ",")
		details["move"], details["attributes"], details["from"], details["to"] = "attributes", m.attrs, m.from, m.to
		var ch []string
		for _, a := range m.attrs {
			ch = append(ch, fmt.Sprintf("%s %s → %s", a, m.from[a], cmp.Or(m.to[a], `""`)))
		}
		move = fmt.Sprintf("moved on %s (%s)", stamp(at), strings.Join(ch, ", "))
		ev = r.updated(p.name, m.at, m.attrs)
	}
	key += "\x00" + strconv.FormatInt(m.at, 10)
	f := in.New(finding.PrivilegeCreep, "kept-after-move", key, finding.Medium)
	f.Principal = p.name
	f.Since = at.Add(cfg.Grace.D())
	f.Details = details
	f.Summary = fmt.Sprintf("%s %s and still holds %d entitlement(s) it held before, past the %s grace period.", p.name, move, k.n,
		cfg.Grace)
	if ev != nil {
		f.Evidence = append(f.Evidence, finding.Evidence{Kind: "event", Time: finding.Time(ev.Time), Event: eventRef(ev),
			Text: fmt.Sprintf("%s (event %s/%s)", pcDescribe(ev), ev.Source, ev.ID)})
	}
	f.Evidence = append(f.Evidence, finding.Evidence{Kind: "measure", Time: finding.Time(at), Until: finding.Time(in.Now),
		Text: fmt.Sprintf("held just before %s and still at %s: %d entitlement(s)%s", stamp(at), stamp(in.Now), k.n, k.peerNote)})
	for i, e := range k.listed {
		if i == pcMaxListed {
			break
		}
		path, ok := m.paths[e]
		if !ok {
			if ps := paths[e]; len(ps) > 0 {
				path, ok = ps[0], true
			}
		}
		text := fmt.Sprintf("still holds %s on %s", e.action, e.resource)
		ev := finding.Evidence{Kind: "measure", Text: text}
		if ok {
			ev = finding.Evidence{Kind: "path", Path: ownPath(path), Text: text + " through " + path.String()}
		}
		f.Evidence = append(f.Evidence, ev)
	}
	if k.n > pcMaxListed {
		f.Evidence = append(f.Evidence, finding.Evidence{Kind: "measure",
			Text: fmt.Sprintf("and %d more kept entitlement(s) not listed", k.n-pcMaxListed)})
	}
	return f
}

// outliers are the peer-outlier findings of p's entitlements odd, rare among its peers s.
func (r *pcRun) outliers(p *pcPrincipal, odd []pcOdd, s *pcPeers, paths map[pcEnt][]access.Path) []finding.Finding {
	in, cfg := r.in, r.cfg
	n := s.members - 1
	hs := newPCHeld(r, p.name)
	var out []finding.Finding
	for _, o := range odd {
		e, h := o.e, o.held
		pct := math.Round(float64(h)*1000/float64(n)) / 10 // one decimal
		f := in.New(finding.PrivilegeCreep, "peer-outlier", "peer-outlier\x00"+p.name+"\x00"+e.action+"\x00"+e.resource, finding.Medium)
		f.Principal, f.Action, f.Resource = p.name, e.action, e.resource
		f.Summary = fmt.Sprintf("%s can use %s on %s, which %d of its %d peers (%s) can (%g%%, under %g%%).", p.name, e.action, e.resource,
			h, n, s.what, pct, cfg.PeerPercent)
		f.Details = map[string]any{"peers": n, "peers_holding": h, "percent": pct}
		f.Since = in.Now
		if ps := paths[e]; len(ps) > 0 {
			if t, ok := hs.since(ps); ok {
				f.Since = event.FromMicros(t)
			}
			path := ps[0]
			f.Evidence = append(f.Evidence, finding.Evidence{Kind: "path", Path: ownPath(path),
				Text: fmt.Sprintf("holds %s on %s through %s", e.action, e.resource, path.String())})
		}
		f.Evidence = append(f.Evidence, finding.Evidence{Kind: "measure", Time: finding.Time(in.Now),
			Text: fmt.Sprintf("%d of %d peers (%s) hold %s on %s; the threshold is %g%%", h, n, s.what, e.action, e.resource, cfg.PeerPercent)})
		out = append(out, f)
	}
	return out
}

// pcHeld finds since when a principal has held an entitlement without a break, from the parts
// of its paths (membership chains, grant, inclusion chain and permission, status).
type pcHeld struct {
	r      *pcRun
	p      string
	active []Span
	chains map[string][]Span
	tails  map[string][]graph.TailSpan
}

func newPCHeld(r *pcRun, p string) *pcHeld {
	h := &pcHeld{r: r, p: p, chains: map[string][]Span{}, tails: map[string][]graph.TailSpan{}}
	h.active = activeSpans(r.g.StatusSpans(p, nil))
	for _, c := range r.g.Chains(p, nil) {
		k := strings.Join(c.Groups, "\x00")
		h.chains[k] = append(h.chains[k], Span{c.From, c.To})
	}
	for k, ss := range h.chains {
		h.chains[k] = mergeSpans(ss)
	}
	return h
}

// since is the start of the stretch, around Now, over which one of paths held while the
// principal was active.
func (h *pcHeld) since(paths []access.Path) (int64, bool) {
	var all []Span
	for _, p := range paths {
		ss := h.active
		if len(p.Groups) > 0 {
			ss = IntersectSpans(ss, h.chains[strings.Join(p.Groups, "\x00")])
		}
		var gs []Span
		for _, s := range h.r.g.GrantSpans(p.Grant.Subject, p.Grant.Role, p.Grant.Action, p.Grant.Resource, nil) {
			gs = append(gs, Span{s.From, s.To})
		}
		ss = IntersectSpans(ss, mergeSpans(gs))
		if p.Grant.Role != "" {
			var ts []Span
			tails, ok := h.tails[p.Grant.Role]
			if !ok {
				tails = h.r.g.Tails(p.Grant.Role, nil)
				h.tails[p.Grant.Role] = tails
			}
			for _, t := range tails {
				if t.Permission == p.Permission && slices.Equal(t.Roles, p.Roles) {
					ts = append(ts, Span{t.From, t.To})
				}
			}
			ss = IntersectSpans(ss, mergeSpans(ts))
		}
		all = append(all, ss...)
	}
	for _, s := range mergeSpans(all) {
		if s.From <= h.r.now && h.r.now < s.To {
			return s.From, true
		}
	}
	return 0, false
}

// The events behind the evidence, indexed when first needed.

func pcRelKey(kind string, parts ...string) string {
	return kind + "\x00" + strings.Join(parts, "\x00")
}

// index indexes the model's change events for the evidence; it runs once (r.once).
func (r *pcRun) index() {
	r.adds, r.updates, r.removes = map[string][]*event.Record{}, map[string][]*event.Record{}, map[string]*event.Record{}
	evs := r.in.Model.Events
	for i := range evs {
		e := &evs[i]
		d := &e.Data
		switch e.Type {
		case event.MembershipAdded:
			k := pcRelKey("m", d.Group, d.Member)
			r.adds[k] = append(r.adds[k], e)
		case event.GrantAdded:
			k := pcRelKey("g", d.Subject, d.Role, d.Action, d.Resource)
			r.adds[k] = append(r.adds[k], e)
		case event.RoleIncludeAdded:
			k := pcRelKey("i", d.Role, d.Includes)
			r.adds[k] = append(r.adds[k], e)
		case event.RolePermissionAdded:
			k := pcRelKey("p", d.Role, d.Action)
			r.adds[k] = append(r.adds[k], e)
		case event.PrincipalCreated, event.PrincipalUpdated:
			r.updates[d.Principal] = append(r.updates[d.Principal], e)
		case event.MembershipRemoved:
			k := pcRelKey("r", d.Group, d.Member, strconv.FormatInt(event.Micros(e.Time), 10))
			if r.removes[k] == nil {
				r.removes[k] = e
			}
		}
	}
}

// addedBy is the latest event in (from, to] that added one of the relations of principal's
// path: the change that completed it.
func (r *pcRun) addedBy(principal string, p access.Path, from, to int64) *event.Record {
	r.once.Do(r.index)
	keys := make([]string, 0, len(p.Groups)+len(p.Roles)+1)
	member := principal
	for _, g := range p.Groups {
		keys = append(keys, pcRelKey("m", g, member))
		member = g
	}
	keys = append(keys, pcRelKey("g", p.Grant.Subject, p.Grant.Role, p.Grant.Action, p.Grant.Resource))
	for i := 0; i+1 < len(p.Roles); i++ {
		keys = append(keys, pcRelKey("i", p.Roles[i], p.Roles[i+1]))
	}
	if n := len(p.Roles); n > 0 {
		keys = append(keys, pcRelKey("p", p.Roles[n-1], p.Permission))
	}
	var best *event.Record
	for _, k := range keys {
		for _, e := range r.adds[k] {
			if t := event.Micros(e.Time); t > from && t <= to && (best == nil || t >= event.Micros(best.Time)) {
				best = e
			}
		}
	}
	return best
}

// updated is the event that changed one of attrs of principal at t.
func (r *pcRun) updated(principal string, t int64, attrs []string) *event.Record {
	r.once.Do(r.index)
	for _, e := range r.updates[principal] {
		if event.Micros(e.Time) == t && slices.ContainsFunc(attrs, func(a string) bool { _, ok := e.Data.Attributes[a]; return ok }) {
			return e
		}
	}
	return nil
}

// removed is the membership.removed of member from group at t.
func (r *pcRun) removed(group, member string, t int64) *event.Record {
	r.once.Do(r.index)
	return r.removes[pcRelKey("r", group, member, strconv.FormatInt(t, 10))]
}

// pcDescribe says what a change event did, in words, with when.
func pcDescribe(e *event.Record) string {
	d := &e.Data
	var what string
	switch e.Type {
	case event.MembershipAdded:
		what = fmt.Sprintf("%s joined %s", d.Member, d.Group)
	case event.MembershipRemoved:
		what = fmt.Sprintf("%s left %s", d.Member, d.Group)
	case event.GrantAdded:
		what = fmt.Sprintf("%s was granted %s on %s", d.Subject, cmp.Or(d.Role, d.Action), d.Resource)
	case event.RoleIncludeAdded:
		what = fmt.Sprintf("%s came to include %s", d.Role, d.Includes)
	case event.RolePermissionAdded:
		what = fmt.Sprintf("%s gained permission %s", d.Role, d.Action)
	case event.PrincipalCreated, event.PrincipalUpdated:
		var kv []string
		for _, k := range slices.Sorted(maps.Keys(d.Attributes)) {
			kv = append(kv, fmt.Sprintf("%s=%q", k, d.Attributes[k]))
		}
		what = fmt.Sprintf("%s's attributes set: %s", d.Principal, strings.Join(kv, ", "))
	default:
		what = string(e.Type)
	}
	return fmt.Sprintf("%s at %s: %s", e.Type, stamp(e.Time), what)
}
