package analyzer

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/whocould/whocould/access"
	"github.com/whocould/whocould/event"
	"github.com/whocould/whocould/finding"
	"github.com/whocould/whocould/graph"
)

// maxSoDEvidence bounds the violation intervals a separation-of-duties finding lists as
// evidence (its details count them all).
const maxSoDEvidence = 50

// checkSeparationOfDuties finds the principals who could, at one time, do both actions of a
// Config.SeparationOfDuties pair on overlapping resources (one covering the other) within the
// pair's resource scope. It judges the whole history up to Now, so a pair added to the config
// later finds past violations too; a violation that ended before Now is a finding resolved at
// its end.
//
// P violates pair (a, b) at T when, at T, P is active and has a path (DESIGN §1) to an
// entitlement matching a on a resource R1 and one to an entitlement matching b on R2, where R1
// and R2 overlap and both overlap the scope. The history judged is every instant up to Now, Now
// included (a violation that begins exactly at Now holds at Now; one that ends exactly at Now
// does not, intervals being half-open). One finding per (pair name, principal): Since is the
// start of the first violation, Ended the end of the last unless it still holds at Now, and the
// evidence is each violation interval (at most maxSoDEvidence) with one path for each action.
//
// The rule does not ask History per principal (which evaluates every entitlement at every change
// point: about 0.6 s per principal of a 10k-principal synthetic org). It reads the map by its
// parts instead: the grants, permissions, inclusions and memberships that ever held prune the
// principals to those who could ever reach both actions; for those it joins their membership
// chains, the relevant grants, the granted roles' tails and their active stretches — which is
// exactly the paths of §1, restricted to the pair's two actions.
func checkSeparationOfDuties(ctx context.Context, in *Input) ([]finding.Finding, error) {
	pairs := in.Config.SeparationOfDuties
	if len(pairs) == 0 {
		return nil, nil
	}
	s := newSoDState(in.Model.Graph, event.Micros(in.Now))
	jobs := make([]SoDPair, 0, len(pairs)) // with their scope filled in
	byPrincipal := map[string][]int{}
	for i, p := range pairs {
		// The pair's name identifies its findings.
		if slices.ContainsFunc(pairs[:i], func(q SoDPair) bool { return q.Name == p.Name }) {
			return nil, fmt.Errorf("separation_of_duties[%d]: the name %q is used by an earlier pair", i, p.Name)
		}
		if len(p.Actions) != 2 {
			return nil, fmt.Errorf("separation_of_duties[%d] (%s): needs two actions", i, p.Name)
		}
		scope := cmp.Or(p.Resource, "*")
		p.Resource = scope
		c := s.candidates(p.Actions[0], p.Actions[1], scope)
		jobs = append(jobs, p)
		for pr := range c {
			byPrincipal[pr] = append(byPrincipal[pr], i)
		}
	}
	principals := make([]string, 0, len(byPrincipal))
	for p := range byPrincipal {
		principals = append(principals, p)
	}
	slices.Sort(principals)
	var out []finding.Finding
	for _, p := range principals {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		pv := s.principal(p)
		for _, ji := range byPrincipal[p] {
			pair := jobs[ji]
			ivs := s.violations(pv, pair.Actions[0], pair.Actions[1], pair.Resource)
			if len(ivs) == 0 {
				continue
			}
			out = append(out, sodFinding(in, pair, p, ivs))
		}
	}
	return out, nil
}

// sodGrant is a grant that ever held.
type sodGrant struct {
	role, action, resource string
	subject                string
	spans                  []graph.GrantSpan
}

// sodState is what the rule reads of the graph once per run.
type sodState struct {
	g   *graph.Graph
	now int64
	// grants by subject; perms: action patterns each role ever held; includedBy: the roles that
	// ever included each role; members: the members each group ever had.
	grants     map[string][]*sodGrant
	perms      map[string][]string
	includedBy map[string][]string
	members    map[string][]string
	tails      map[string][]graph.TailSpan    // by role
	matching   map[[2]string][]graph.TailSpan // by role and action: the tails to a matching permission
	roleFor    map[string]map[string]bool     // action → roles that could ever lead to it
	side       map[string]map[string][]*sodGrant
	anc        map[string][]string
	// Buffers reused from principal to principal.
	sides [2]sodSide
	vs    []sodVSpan
}

func newSoDState(g *graph.Graph, now int64) *sodState {
	s := &sodState{g: g, now: now, grants: map[string][]*sodGrant{}, perms: map[string][]string{},
		includedBy: map[string][]string{}, members: map[string][]string{}, tails: map[string][]graph.TailSpan{},
		matching: map[[2]string][]graph.TailSpan{},
		roleFor:  map[string]map[string]bool{}, side: map[string]map[string][]*sodGrant{}, anc: map[string][]string{}}
	g.Relations(nil, func(r graph.RelationSpans) {
		switch r.Kind {
		case graph.Membership:
			s.members[r.A] = append(s.members[r.A], r.B)
		case graph.Permission:
			s.perms[r.A] = append(s.perms[r.A], r.B)
		case graph.Inclusion:
			s.includedBy[r.B] = append(s.includedBy[r.B], r.A)
		case graph.RoleGrant:
			s.grants[r.A] = append(s.grants[r.A], &sodGrant{subject: r.A, role: r.B, resource: r.C, spans: r.Spans})
		case graph.ActionGrant:
			s.grants[r.A] = append(s.grants[r.A], &sodGrant{subject: r.A, action: r.B, resource: r.C, spans: r.Spans})
		}
	})
	return s
}

// rolesFor is the roles that ever held a permission matching action, or ever included (at any
// depth, at any time) a role that did.
func (s *sodState) rolesFor(action string) map[string]bool {
	if rs, ok := s.roleFor[action]; ok {
		return rs
	}
	rs := map[string]bool{}
	var queue []string
	for role, ps := range s.perms {
		if slices.ContainsFunc(ps, func(p string) bool { return event.Matches(p, action) }) {
			rs[role] = true
			queue = append(queue, role)
		}
	}
	for len(queue) > 0 {
		r := queue[len(queue)-1]
		queue = queue[:len(queue)-1]
		for _, up := range s.includedBy[r] {
			if !rs[up] {
				rs[up] = true
				queue = append(queue, up)
			}
		}
	}
	s.roleFor[action] = rs
	return rs
}

// relevant reports whether grant gr could ever give action within scope.
func (s *sodState) relevant(gr *sodGrant, action, scope string) bool {
	if !resourcesOverlap(gr.resource, scope) {
		return false
	}
	if gr.role == "" {
		return event.Matches(gr.action, action)
	}
	return s.rolesFor(action)[gr.role]
}

// resourcesOverlap reports whether resources a and b overlap: one covers the other.
func resourcesOverlap(a, b string) bool { return event.Covers(a, b) || event.Covers(b, a) }

// sideGrants is, by subject, the grants that could ever give action within scope (cached).
func (s *sodState) sideGrants(action, scope string) map[string][]*sodGrant {
	k := action + "\x00" + scope
	if gs, ok := s.side[k]; ok {
		return gs
	}
	out := map[string][]*sodGrant{}
	for subject, gs := range s.grants {
		for _, gr := range gs {
			if s.relevant(gr, action, scope) {
				out[subject] = append(out[subject], gr)
			}
		}
	}
	s.side[k] = out
	return out
}

// candidates is the principals who, by relations that ever held, could ever reach a grant giving
// a and one giving b within scope — whether or not at the same time: the principals worth a close
// look.
func (s *sodState) candidates(a, b, scope string) map[string]bool {
	reach := func(action string) map[string]bool {
		seen := map[string]bool{}
		var queue []string
		for subject := range s.sideGrants(action, scope) {
			seen[subject] = true
			queue = append(queue, subject)
		}
		for len(queue) > 0 {
			x := queue[len(queue)-1]
			queue = queue[:len(queue)-1]
			for _, m := range s.members[x] {
				if !seen[m] {
					seen[m] = true
					queue = append(queue, m)
				}
			}
		}
		return seen
	}
	ra, rb := reach(a), reach(b)
	out := map[string]bool{}
	for x := range ra {
		if rb[x] && event.KindOf(x) == event.KindPrincipal {
			out[x] = true
		}
	}
	return out
}

// ancestors is event.Ancestors(r) (cached).
func (s *sodState) ancestors(r string) []string {
	as, ok := s.anc[r]
	if !ok {
		as = event.Ancestors(r)
		s.anc[r] = as
	}
	return as
}

// tailsFor is role's inclusion chains to permissions matching action, over time (cached).
func (s *sodState) tailsFor(role, action string) []graph.TailSpan {
	k := [2]string{role, action}
	ts, ok := s.matching[k]
	if !ok {
		all, ok := s.tails[role]
		if !ok {
			all = s.g.Tails(role, nil)
			s.tails[role] = all
		}
		ts = []graph.TailSpan{}
		for _, t := range all {
			if event.Matches(t.Permission, action) {
				ts = append(ts, t)
			}
		}
		s.matching[k] = ts
	}
	return ts
}

// sodPrincipal is a principal's membership chains and active stretches.
type sodPrincipal struct {
	name   string
	chains []graph.ChainSpan // the principal itself first (no groups, always)
	active []sodSpan
}

type sodSpan struct{ from, to int64 }

func (s *sodState) principal(p string) *sodPrincipal {
	pv := &sodPrincipal{name: p, chains: []graph.ChainSpan{{From: math.MinInt64, To: graph.Forever}}}
	pv.chains = append(pv.chains, s.g.Chains(p, nil)...)
	for _, st := range s.g.StatusSpans(p, nil) {
		if st.Status == access.StatusActive {
			pv.active = append(pv.active, sodSpan{st.From, st.To})
		}
	}
	return pv
}

// sodPiece is a stretch over which a principal could do an action on its grant's resource
// through a path: groups, grant (with the expiry in force), roles and permission.
type sodPiece struct {
	from, to int64
	groups   []string
	grant    *sodGrant
	expires  int64
	roles    []string
	perm     string
}

// path is the piece's path.
func (p *sodPiece) path() access.Path {
	ref := access.GrantRef{Subject: p.grant.subject, Role: p.grant.role, Action: p.grant.action, Resource: p.grant.resource}
	if p.expires != 0 {
		ref.ExpiresAt = finding.Time(event.FromMicros(p.expires))
	}
	return access.Path{Groups: p.groups, Grant: ref, Roles: p.roles, Permission: p.perm}
}

// sodSide is the stretches over which a principal could do one action: pieces sorted by
// resource, then comparePieces; byRes gives each resource's range of pieces and of merged spans
// (the stretches its pieces cover). Its buffers are reused from principal to principal.
type sodSide struct {
	pieces []sodPiece
	merged []sodSpan
	byRes  map[string]sodRange
}

type sodRange struct{ lo, hi, mlo, mhi int }

// fill makes side every stretch over which pv could do action within scope.
func (s *sodState) fill(side *sodSide, pv *sodPrincipal, action, scope string) {
	side.pieces, side.merged = side.pieces[:0], side.merged[:0]
	if side.byRes == nil {
		side.byRes = map[string]sodRange{}
	}
	clear(side.byRes)
	grants := s.sideGrants(action, scope)
	add := func(from, to int64, groups []string, gr *sodGrant, expires int64, roles []string, perm string) {
		for _, a := range pv.active {
			if lo, hi := max(from, a.from), min(to, a.to); lo < hi {
				side.pieces = append(side.pieces, sodPiece{from: lo, to: hi, groups: groups, grant: gr, expires: expires,
					roles: roles, perm: perm})
			}
		}
	}
	noRoles := []string{}
	for _, ch := range pv.chains {
		subject := pv.name
		if len(ch.Groups) > 0 {
			subject = ch.Groups[len(ch.Groups)-1]
		}
		groups := ch.Groups
		if groups == nil {
			groups = []string{}
		}
		for _, gr := range grants[subject] {
			for _, gs := range gr.spans {
				lo, hi := max(ch.From, gs.From), min(ch.To, gs.To)
				if lo >= hi {
					continue
				}
				if gr.role == "" {
					add(lo, hi, groups, gr, gs.Expires, noRoles, gr.action)
					continue
				}
				for _, t := range s.tailsFor(gr.role, action) {
					if l, h := max(lo, t.From), min(hi, t.To); l < h {
						add(l, h, groups, gr, gs.Expires, t.Roles, t.Permission)
					}
				}
			}
		}
	}
	slices.SortFunc(side.pieces, func(a, b sodPiece) int {
		if a.grant.resource != b.grant.resource {
			return cmp.Compare(a.grant.resource, b.grant.resource)
		}
		return comparePieces(a, b)
	})
	for lo := 0; lo < len(side.pieces); {
		r := side.pieces[lo].grant.resource
		hi := lo + 1
		for hi < len(side.pieces) && side.pieces[hi].grant.resource == r {
			hi++
		}
		mlo := len(side.merged)
		for _, p := range side.pieces[lo:hi] {
			if n := len(side.merged); n > mlo && side.merged[n-1].to >= p.from {
				side.merged[n-1].to = max(side.merged[n-1].to, p.to)
				continue
			}
			side.merged = append(side.merged, sodSpan{p.from, p.to})
		}
		side.byRes[r] = sodRange{lo, hi, mlo, len(side.merged)}
		lo = hi
	}
}

// comparePieces orders pieces by start, the longest first, then by path (as
// access.ComparePaths).
func comparePieces(a, b sodPiece) int {
	if c := cmp.Compare(a.from, b.from); c != 0 {
		return c
	}
	if c := cmp.Compare(b.to, a.to); c != 0 {
		return c
	}
	if c := cmp.Compare(len(a.groups), len(b.groups)); c != 0 {
		return c
	}
	if c := slices.Compare(a.groups, b.groups); c != 0 {
		return c
	}
	if a.grant != b.grant {
		ga, gb := a.grant, b.grant
		if c := cmp.Or(cmp.Compare(ga.subject, gb.subject), cmp.Compare(ga.role, gb.role), cmp.Compare(ga.action, gb.action),
			cmp.Compare(ga.resource, gb.resource)); c != 0 {
			return c
		}
	}
	if c := cmp.Compare(len(a.roles), len(b.roles)); c != 0 {
		return c
	}
	if c := slices.Compare(a.roles, b.roles); c != 0 {
		return c
	}
	return cmp.Or(cmp.Compare(a.perm, b.perm), cmp.Compare(a.expires, b.expires))
}

// sodViolation is one interval over which a principal violated a pair: unclipped To (may be
// graph.Forever), and a witness: a piece of each side holding at From.
type sodViolation struct {
	from, to int64
	a, b     sodPiece
}

// violations is the intervals over which pv could do a and b at once on overlapping resources
// within scope, merged, each with a witness, up to Now: those that began at or before Now (so one
// holding at Now counts, even if it began then); the last may run on past Now.
func (s *sodState) violations(pv *sodPrincipal, a, b, scope string) []sodViolation {
	pa, pb := &s.sides[0], &s.sides[1]
	s.fill(pa, pv, a, scope)
	if len(pa.pieces) == 0 {
		return nil
	}
	s.fill(pb, pv, b, scope)
	if len(pb.pieces) == 0 {
		return nil
	}
	// The pairs of overlapping resources: r1 covers r2, or r2 covers r1.
	type rpair struct{ r1, r2 sodRange }
	var rps []rpair
	for _, rb := range pb.byRes {
		for _, anc := range s.ancestors(pb.pieces[rb.lo].grant.resource) {
			if ra, ok := pa.byRes[anc]; ok {
				rps = append(rps, rpair{ra, rb})
			}
		}
	}
	for _, ra := range pa.byRes {
		r1 := pa.pieces[ra.lo].grant.resource
		for _, anc := range s.ancestors(r1) {
			if rb, ok := pb.byRes[anc]; ok && anc != r1 {
				rps = append(rps, rpair{ra, rb})
			}
		}
	}
	vs := s.vs[:0]
	for _, rp := range rps {
		ma, mb := pa.merged[rp.r1.mlo:rp.r1.mhi], pb.merged[rp.r2.mlo:rp.r2.mhi]
		for i, j := 0, 0; i < len(ma) && j < len(mb); {
			lo, hi := max(ma[i].from, mb[j].from), min(ma[i].to, mb[j].to)
			if lo < hi && lo <= s.now {
				vs = append(vs, sodVSpan{lo, hi, rp.r1, rp.r2})
			}
			if ma[i].to < mb[j].to {
				i++
			} else {
				j++
			}
		}
	}
	s.vs = vs
	if len(vs) == 0 {
		return nil
	}
	res := func(side *sodSide, r sodRange) string { return side.pieces[r.lo].grant.resource }
	slices.SortFunc(vs, func(x, y sodVSpan) int {
		if c := cmp.Compare(x.from, y.from); c != 0 {
			return c
		}
		if c := cmp.Compare(y.to, x.to); c != 0 {
			return c
		}
		return cmp.Or(cmp.Compare(res(pa, x.r1), res(pa, y.r1)), cmp.Compare(res(pb, x.r2), res(pb, y.r2)))
	})
	// witness is the piece of ps covering t that lasts longest (ps sorted by comparePieces).
	witness := func(ps []sodPiece, t int64) sodPiece {
		var w sodPiece
		found := false
		for _, p := range ps {
			if p.from > t {
				break
			}
			if p.to > t && (!found || p.to > w.to) {
				w, found = p, true
			}
		}
		return w
	}
	var out []sodViolation
	for _, v := range vs {
		if n := len(out); n > 0 && out[n-1].to >= v.from {
			out[n-1].to = max(out[n-1].to, v.to)
			continue
		}
		// The first span of a merged interval starts it, and is the longest of those that do.
		out = append(out, sodViolation{from: v.from, to: v.to,
			a: witness(pa.pieces[v.r1.lo:v.r1.hi], v.from), b: witness(pb.pieces[v.r2.lo:v.r2.hi], v.from)})
	}
	return out
}

// sodVSpan is a stretch over which the pieces of resource range r1 (of the first action) and r2
// (of the second) both hold.
type sodVSpan struct {
	from, to int64
	r1, r2   sodRange
}

// sodFinding is the finding of principal p violating pair over ivs.
func sodFinding(in *Input, pair SoDPair, p string, ivs []sodViolation) finding.Finding {
	a, b := pair.Actions[0], pair.Actions[1]
	f := in.New(finding.SeparationOfDuties, "", pair.Name+" "+p, finding.High)
	f.Principal = p
	if pair.Resource != "*" {
		f.Resource = pair.Resource
	}
	now := event.Micros(in.Now)
	last := ivs[len(ivs)-1]
	ongoing := last.to > now
	var total int64
	for _, iv := range ivs {
		total += min(iv.to, now) - iv.from
	}
	hours := math.Round(float64(total)/float64(time.Hour/time.Microsecond)*10) / 10
	f.Since = event.FromMicros(ivs[0].from)
	state := "and still can"
	if !ongoing {
		f.Ended = finding.Time(event.FromMicros(last.to))
		state = "the last ending at " + evidenceTime(event.FromMicros(last.to))
	}
	scope := ""
	if pair.Resource != "*" {
		scope = " within " + pair.Resource
	}
	f.Summary = fmt.Sprintf("%s could do both %s and %s on overlapping resources%s (separation-of-duties pair %q) over %d interval(s) totalling %.1f hours since %s, %s.",
		p, a, b, scope, pair.Name, len(ivs), hours, evidenceTime(f.Since), state)
	for i, iv := range ivs {
		if i == maxSoDEvidence {
			f.Evidence = append(f.Evidence, finding.Evidence{Kind: "measure",
				Text: fmt.Sprintf("%d more violation interval(s) not listed", len(ivs)-maxSoDEvidence)})
			break
		}
		until := "still at " + evidenceTime(in.Now)
		var to *time.Time
		if iv.to <= now {
			to = finding.Time(event.FromMicros(iv.to))
			until = "until " + evidenceTime(*to)
		}
		from := event.FromMicros(iv.from)
		text := fmt.Sprintf("from %s %s, %s could do %s on %s through %s, and %s on %s through %s", evidenceTime(from), until, p,
			a, iv.a.grant.resource, iv.a.path(), b, iv.b.grant.resource, iv.b.path())
		if w := min(iv.a.to, iv.b.to); w < iv.to && w < now {
			text += fmt.Sprintf(" (from %s on, through other paths)", evidenceTime(event.FromMicros(w)))
		}
		f.Evidence = append(f.Evidence, finding.Evidence{Kind: "interval", Text: text, Time: finding.Time(from), Until: to})
		for _, side := range []struct {
			action string
			pc     sodPiece
		}{{a, iv.a}, {b, iv.b}} {
			// The path holds from the interval's start for as long as its piece lasts.
			path := side.pc.path()
			var until *time.Time
			when := "still at " + evidenceTime(in.Now)
			if end := min(side.pc.to, iv.to); end <= now {
				until = finding.Time(event.FromMicros(end))
				when = "until " + evidenceTime(*until)
			}
			f.Evidence = append(f.Evidence, finding.Evidence{Kind: "path", Time: finding.Time(from), Until: until, Path: ownPath(path),
				Text: fmt.Sprintf("from %s %s, %s could do %s on %s through %s", evidenceTime(from), when, p, side.action, side.pc.grant.resource, path)})
		}
	}
	f.Details = map[string]any{"pair": pair.Name, "actions": []string{a, b}, "intervals": len(ivs),
		"total_hours": hours, "ongoing": ongoing}
	return f
}

// evidenceTime is t as findings write it.
func evidenceTime(t time.Time) string { return t.UTC().Format(time.RFC3339) }
