package analyzer

// shadow-access (DESIGN.md §5): decisions the permission map disagrees with.
//
//   - allowed-not-possible (critical): allowed decisions at times when, per the map (as known
//     now), the principal could not do the action on the resource (DESIGN §1: not active, or
//     no path). A principal the map does not know could never do anything.
//   - denied-but-possible (low): denied decisions at times when the map says it could.
//
// One finding per (principal, kind), over the decisions before Now: it counts the disagreeing
// decisions and the (action, resource) they were about, lists the first of them and the busiest
// (action, resource), and names action and resource when there is only one. A finding per
// (principal, action, resource) would be the finer identity, but one disagreement's cause (a
// membership the map never heard of, an enforcement point with a stale cache, a token that
// outlived its owner) is the principal's, and shows on every resource it touches: per key, one
// missing grant of a busy principal is thousands of findings, and the benchmark's history
// (decisions on the entitlements held at its end, many made before the grant) millions.
//
// The work is one graph question per principal and a store read only where it can find
// something:
//
//  1. Usage, once for allow and once for deny, gives every (principal, action, resource) with
//     its first and last decision and their number (aggregated where the decisions live);
//  2. per principal, the stretches over which it could do each of its (action, resource) come
//     from one join of the map's parts (its status, its membership chains, the grants of it and
//     of its groups, the tails of their roles; see couldEach);
//  3. per key, the offending stretches of [first, last] are those outside the could-stretches
//     (allowed) or inside them (denied); the decisions are then counted as tallyPlan says:
//     mostly from Usage alone, reading only what must be read.
//
// The principals are judged in batches as their uses stream in (shadowGroups), so that neither
// the tenant's millions of uses nor every principal's plan is held at once.
//
// A finding stays open while its decisions are in the store and the map disagrees with them:
// each is an incident for a person to look at. A late change event that makes the map agree
// resolves it on the next run.

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/whocould/whocould/access"
	"github.com/whocould/whocould/event"
	"github.com/whocould/whocould/finding"
	"github.com/whocould/whocould/graph"
	"github.com/whocould/whocould/store"
)

// The kinds of shadow-access findings.
const (
	shadowAllowed = "allowed-not-possible"
	shadowDenied  = "denied-but-possible"
)

// complementSpans is the stretches of w that no span of a (sorted, disjoint) covers.
func complementSpans(a []Span, w Span) []Span {
	var out []Span
	at := w.From
	for _, s := range a {
		if s.To <= at {
			continue
		}
		if s.From >= w.To {
			break
		}
		if s.From > at {
			out = append(out, Span{at, s.From})
		}
		at = max(at, s.To)
	}
	if at < w.To {
		out = append(out, Span{at, w.To})
	}
	return out
}

// entitlementKey is an (action, resource) a principal asked for.
type entitlementKey struct{ action, resource string }

// couldEach is, for each key, the stretches over which principal could do key.action on
// key.resource (what CouldSpans says of each): sorted, disjoint, and only while the principal is
// active. A principal the map does not know could do nothing.
//
// It is the join of store/spans (membership chains × grants of their last group × tails of the
// granted role) on the model's shared parts, but keeps bare stretches per key instead of making
// every path (Model.Paths): the rule asks about hundreds of keys of each of thousands of
// principals, and building, keying and sorting the paths costs several times the join.
func couldEach(m *Model, principal string, keys []entitlementKey) [][]Span {
	out := make([][]Span, len(keys))
	active := activeSpans(m.Graph.StatusSpans(principal, nil))
	if len(active) == 0 {
		return out
	}
	// The keys by each resource whose grants would cover theirs.
	byGrantResource := map[string][]int{}
	for i, k := range keys {
		for _, r := range event.Ancestors(k.resource) {
			byGrantResource[r] = append(byGrantResource[r], i)
		}
	}
	add := func(pattern string, ks []int, lo, hi int64) {
		for _, i := range ks {
			if event.Matches(pattern, keys[i].action) {
				out[i] = append(out[i], Span{lo, hi})
			}
		}
	}
	shared := m.sharedParts()
	chains := append([]graph.ChainSpan{{From: math.MinInt64, To: graph.Forever}}, m.Graph.Chains(principal, nil)...)
	for _, ch := range chains {
		subject := principal
		if n := len(ch.Groups); n > 0 {
			subject = ch.Groups[n-1]
		}
		for _, gr := range shared.Grants[subject] {
			ks := byGrantResource[gr.Resource]
			lo, hi := max(ch.From, gr.From), min(ch.To, gr.To)
			if len(ks) == 0 || lo >= hi {
				continue
			}
			if gr.Role == "" {
				add(gr.Action, ks, lo, hi)
				continue
			}
			for _, t := range shared.Tails[gr.Role] {
				if l, h := max(lo, t.From), min(hi, t.To); l < h {
					add(t.Permission, ks, l, h)
				}
			}
		}
	}
	for i := range out {
		out[i] = IntersectSpans(mergeSpans(out[i]), active)
	}
	return out
}

// checkShadowAccess is the rule: see the top of the file.
func checkShadowAccess(ctx context.Context, in *Input) ([]finding.Finding, error) {
	now := event.Micros(in.Now)
	// A batch of principals at a time (what a batch's plans hold is dropped before the next):
	// their plans, made on every core (the joins only read the model), one read of their
	// decisions, their findings. The uses stream in meanwhile: the next batch is gathered while
	// one is judged.
	principals, reads := 0, 0
	var out []finding.Finding
	in.Model.sharedParts() // made once, before the goroutines read it
	judge := func(batch []shadowGroup) error {
		all := make([]*tallyPlan, len(batch))
		if err := parallel(ctx, len(batch), func(i int) error {
			all[i] = shadowPlan(in, batch[i].p, batch[i].a, batch[i].d, now)
			return nil
		}); err != nil {
			return err
		}
		principals += len(batch)
		var plans []*tallyPlan
		for _, plan := range all {
			if plan != nil {
				plans = append(plans, plan)
			}
		}
		if err := readTallies(ctx, in, plans); err != nil {
			return err
		}
		if len(plans) > 0 {
			reads++
		}
		for _, plan := range plans {
			for _, tl := range plan.tallies {
				if tl.n == 0 {
					continue
				}
				f, err := shadowFinding(ctx, in, plan, tl)
				if err != nil {
					return err
				}
				out = append(out, f)
			}
		}
		return nil
	}
	gctx, cancel := context.WithCancel(ctx)
	defer cancel()
	batches := make(chan []shadowGroup, 1)
	var gatherErr error
	go func() {
		defer close(batches)
		gatherErr = shadowGroups(gctx, in, func(batch []shadowGroup) error {
			select {
			case batches <- batch:
				return nil
			case <-gctx.Done():
				return gctx.Err()
			}
		})
	}()
	var err error
	for batch := range batches {
		if err == nil {
			if err = judge(batch); err != nil {
				cancel() // the gathering stops; the batches it sent are drained
			}
		}
	}
	if err == nil {
		err = gatherErr
	}
	if err != nil {
		return nil, fmt.Errorf("shadow access: %w", err)
	}
	if in.Log != nil {
		in.Log.Debug("shadow access judged", "tenant", in.Tenant, "principals", principals, "batches_read", reads,
			"findings", len(out))
	}
	return out, nil
}

// shadowGroup is a principal's allowed and denied uses.
type shadowGroup struct {
	p    string
	a, d []store.Use
}

// shadowGroups sends the tenant's principals with their uses, in batches of at most
// shadowBatch principals or shadowBatchUses uses, in principal order: the denied uses (few) are
// read first; the allowed ones stream in principal order (millions: never all held), each
// principal's joined with its denied ones.
func shadowGroups(ctx context.Context, in *Input, send func([]shadowGroup) error) error {
	var batch []shadowGroup
	nuses := 0
	add := func(g shadowGroup) error {
		batch = append(batch, g)
		if nuses += len(g.a) + len(g.d); len(batch) >= shadowBatch || nuses >= shadowBatchUses {
			b := batch
			batch, nuses = nil, 0
			return send(b)
		}
		return nil
	}
	var denied []store.Use
	if err := in.Store.Usage(ctx, store.DecisionQuery{Tenant: in.Tenant, Effect: event.Deny}, func(u store.Use) error {
		denied = append(denied, u)
		return nil
	}); err != nil {
		return fmt.Errorf("usage (denied): %w", err)
	}
	// take takes principal p's denied uses off the front of denied (in principal order, as
	// Usage gives them).
	take := func(p string) []store.Use {
		n := 0
		for n < len(denied) && denied[n].Principal == p {
			n++
		}
		d := denied[:n:n]
		denied = denied[n:]
		return d
	}
	// deniedUpTo adds the principals with denied uses alone before p ("": all that are left).
	deniedUpTo := func(p string) error {
		for len(denied) > 0 && (p == "" || denied[0].Principal < p) {
			q := denied[0].Principal
			if err := add(shadowGroup{p: q, d: take(q)}); err != nil {
				return err
			}
		}
		return nil
	}
	var cur shadowGroup
	flush := func() error {
		if cur.p == "" {
			return nil
		}
		if err := deniedUpTo(cur.p); err != nil {
			return err
		}
		cur.d = take(cur.p)
		g := cur
		cur = shadowGroup{}
		return add(g)
	}
	err := in.Store.Usage(ctx, store.DecisionQuery{Tenant: in.Tenant, Effect: event.Allow}, func(u store.Use) error {
		if u.Principal != cur.p {
			if u.Principal < cur.p {
				return fmt.Errorf("usage not in principal order: %s after %s", u.Principal, cur.p)
			}
			if err := flush(); err != nil {
				return err
			}
			cur.p = u.Principal
		}
		cur.a = append(cur.a, u)
		return nil
	})
	if err != nil {
		return fmt.Errorf("usage (allowed): %w", err)
	}
	if err := flush(); err != nil {
		return err
	}
	if err := deniedUpTo(""); err != nil {
		return err
	}
	if len(batch) > 0 {
		return send(batch)
	}
	return nil
}

// shadowPlan judges principal p's allowed and denied uses against the map, and returns what is
// still to read to count them (nil: they all agree with the map).
func shadowPlan(in *Input, p string, allowed, denied []store.Use, now int64) *tallyPlan {
	// One join for the principal's distinct (action, resource).
	var keys []entitlementKey
	at := map[entitlementKey]int{}
	for _, us := range [][]store.Use{allowed, denied} {
		for _, u := range us {
			k := entitlementKey{u.Action, u.Resource}
			if _, ok := at[k]; !ok {
				at[k] = len(keys)
				keys = append(keys, k)
			}
		}
	}
	could := couldEach(in.Model, p, keys)
	plan := newTallyPlan(p)
	for i, us := range [][]store.Use{allowed, denied} {
		var t *decisionTally
		for _, u := range us {
			if event.Micros(u.First) >= now {
				continue
			}
			c := could[at[entitlementKey{u.Action, u.Resource}]]
			w := Span{event.Micros(u.First), min(event.Micros(u.Last)+1, now)}
			if i == 0 {
				if t == nil {
					t = plan.tally(shadowAllowed)
				}
				plan.add(u, event.Allow, complementSpans(c, w), t, c)
			} else {
				if t == nil {
					t = plan.tally(shadowDenied)
				}
				plan.add(u, event.Deny, IntersectSpans(c, []Span{w}), t, c)
			}
		}
	}
	if !plan.settle() {
		return nil
	}
	return plan
}

// shadowFinding makes the finding of tally tl (of kind tl.name) of the plan's principal.
func shadowFinding(ctx context.Context, in *Input, plan *tallyPlan, tl *decisionTally) (finding.Finding, error) {
	p := plan.principal
	sev, verb := finding.Critical, "allowed"
	if tl.name == shadowDenied {
		sev, verb = finding.Low, "denied"
	}
	f := in.New(finding.ShadowAccess, tl.name, fmt.Sprintf("%s %q", tl.name, p), sev)
	f.Principal, f.Since = p, event.FromMicros(tl.first)
	first, last := event.FromMicros(tl.first), event.FromMicros(tl.last)
	f.Details = map[string]any{"decisions": tl.n, "keys": tl.keys, "first": stamp(first), "last": stamp(last)}
	if pol := mostCommon(tl.policies); pol != "" {
		f.Details["policy"] = pol
	}
	if r := mostCommon(tl.reasons); r != "" {
		f.Details["reason"] = r
	}
	times := "at " + stamp(first)
	if tl.n > 1 {
		times = fmt.Sprintf("%s, from %s to %s", plural(int(tl.n), "time", "times"), stamp(first), stamp(last))
	}
	what := fmt.Sprintf("%s on %s %s", tl.firstKey.action, tl.firstKey.resource, times)
	if tl.keys == 1 {
		f.Action, f.Resource = tl.firstKey.action, tl.firstKey.resource
	} else {
		what = fmt.Sprintf("%s on %d actions and resources, from %s to %s (the first %s on %s)", plural(int(tl.n), "request", "requests"),
			tl.keys, stamp(first), stamp(last), tl.firstKey.action, tl.firstKey.resource)
	}
	ex, err := in.Model.Graph.Explain(ctx, access.Query{Tenant: in.Tenant, Principal: p, Action: tl.firstKey.action,
		Resource: tl.firstKey.resource, At: first})
	if err != nil {
		return f, fmt.Errorf("explain %s %s on %s at %s: %w", p, tl.firstKey.action, tl.firstKey.resource, stamp(first), err)
	}
	var why finding.Evidence
	if tl.name == shadowAllowed {
		f.Summary = fmt.Sprintf("%s was %s %s, but the permission map gives it no access then: the enforcement point and the map disagree.",
			p, verb, what)
		// The stretch without access that holds the first decision.
		could, ok := plan.could[tl.firstKey]
		if !ok {
			could = couldEach(in.Model, p, []entitlementKey{tl.firstKey.entitlement()})[0]
		}
		gap := Span{math.MinInt64, graph.Forever}
		for _, s := range could {
			if s.To <= tl.first {
				gap.From = s.To
			} else if s.From > tl.first {
				gap.To = s.From
				break
			}
		}
		text := fmt.Sprintf("the map gives %s no access to %s on %s", p, tl.firstKey.action, tl.firstKey.resource)
		switch {
		case gap.From != math.MinInt64 && gap.To != graph.Forever:
			text += fmt.Sprintf(" from %s until %s", stamp(event.FromMicros(gap.From)), stamp(event.FromMicros(gap.To)))
		case gap.From != math.MinInt64:
			text += " since " + stamp(event.FromMicros(gap.From))
		case gap.To != graph.Forever:
			text += " before " + stamp(event.FromMicros(gap.To))
		default:
			text += " at any time"
		}
		why = finding.Evidence{Kind: "interval", Text: fmt.Sprintf("%s; at %s: %s", text, stamp(first), ex.Reason), Until: spanUntil(gap.To)}
		if gap.From != math.MinInt64 {
			why.Time = finding.Time(event.FromMicros(gap.From))
		}
	} else {
		f.Summary = fmt.Sprintf("%s was %s %s, although the permission map says it could then: the enforcement point and the map disagree.",
			p, verb, what)
		why = finding.Evidence{Kind: "path", Time: finding.Time(first),
			Text: fmt.Sprintf("at %s the map says %s could %s on %s", stamp(first), p, tl.firstKey.action, tl.firstKey.resource)}
		if len(ex.Paths) > 0 {
			path := ex.Paths[0]
			why.Path = ownPath(path)
			why.Text += " through " + path.String()
		}
	}
	f.Evidence = append(append(f.Evidence, why), tl.evidence...)
	if int(tl.n) > len(tl.evidence) {
		f.Evidence = append(f.Evidence, moreDecisions(int(tl.n)-len(tl.evidence)))
	}
	if tl.keys > 1 {
		for _, k := range tl.top {
			text := fmt.Sprintf("%s on %s: %s %s", k.key.action, k.key.resource, verb, plural(int(k.n), "time", "times"))
			if k.n > 1 {
				text += fmt.Sprintf(", from %s to %s", stamp(event.FromMicros(k.first)), stamp(event.FromMicros(k.last)))
			} else {
				text += " at " + stamp(event.FromMicros(k.first))
			}
			f.Evidence = append(f.Evidence, finding.Evidence{Kind: "measure", Text: text, Time: finding.Time(event.FromMicros(k.first)),
				Until: finding.Time(event.FromMicros(k.last))})
		}
		if tl.keys > len(tl.top) {
			f.Evidence = append(f.Evidence, finding.Evidence{Kind: "measure",
				Text: fmt.Sprintf("and %s more not listed", plural(tl.keys-len(tl.top), "action and resource", "actions and resources"))})
		}
	}
	return f, nil
}

// mostCommon is the most frequent name in counts ("" when empty; the first by name on a tie).
func mostCommon(counts map[string]int) string {
	best, bn := "", 0
	for k, n := range counts {
		if n > bn || n == bn && k < best {
			best, bn = k, n
		}
	}
	return best
}

// The decisions behind a finding, read as little as possible (shared by shadow-access and
// access-after-deprovisioning's decisions-after).
//
// A rule that judges decisions knows from Usage each (effect, action, resource) of a principal
// — a key — with its first and last decision and their number, and knows the stretches of time
// in which a decision of that key offends. Most keys are settled by that alone: the decision of
// a key used once, or the two of a key used twice, are at known times; when a key's first and
// last decisions and everything between offend, all its decisions do. Those are counted
// without reading a decision. The others are read from the store, and so are the first
// maxDecisionEvidence offending decisions of each finding (its evidence): one read of those
// keys for a batch of principals, which skips a principal's decisions once it has what it
// needs and stops when every principal has.

// maxDecisionEvidence bounds the decisions a finding lists as evidence: its first ones.
const maxDecisionEvidence = 20

// maxTopKeys bounds the busiest keys a finding lists.
const maxTopKeys = 10

// shadowBatch and shadowBatchUses bound the principals shadow-access judges at a time, and
// their uses: their plans are held until their decisions are read. Variables for the tests.
var shadowBatch, shadowBatchUses = 1024, 400_000

// useKey is a key: the decisions of one effect, action and resource (of one principal).
type useKey struct{ effect, action, resource string }

func (k useKey) entitlement() entitlementKey { return entitlementKey{k.action, k.resource} }

// keyCount is the offending decisions of one key: how many, the first and the last (event
// time, Unix microseconds).
type keyCount struct {
	key         useKey
	n           int64
	first, last int64
}

// decisionTally is what one finding knows of its offending decisions.
type decisionTally struct {
	name              string
	n                 int64
	first, last       int64
	firstKey, lastKey useKey
	keys              int        // the keys with offending decisions
	top               []keyCount // the busiest of them (most decisions first), at most maxTopKeys
	evidence          []finding.Evidence
	policies, reasons map[string]int // of the decisions in evidence
	// until is the end of the stretch in which its evidence can be; cands are, while the plan
	// is made, the settled keys that could give it: only the maxDecisionEvidence earliest can.
	until int64
	cands []evidenceCand
}

// evidenceCand is a settled key, or a decision of one at a known time, that may give evidence.
type evidenceCand struct {
	at    int64 // the key's first offending decision
	key   useKey
	check *decisionCheck // a key settled as offending throughout; nil: the decision at at
	could []Span
}

// count adds a key's offending decisions.
func (t *decisionTally) count(kc keyCount) {
	if kc.n == 0 {
		return
	}
	if t.n == 0 || kc.first < t.first {
		t.first, t.firstKey = kc.first, kc.key
	}
	if t.n == 0 || kc.last > t.last {
		t.last, t.lastKey = kc.last, kc.key
	}
	t.n += kc.n
	t.keys++
	i, _ := slices.BinarySearchFunc(t.top, kc, func(a, b keyCount) int {
		return cmp.Or(cmp.Compare(b.n, a.n), cmp.Compare(a.key.action, b.key.action), cmp.Compare(a.key.resource, b.key.resource))
	})
	if i < maxTopKeys {
		t.top = slices.Insert(t.top, i, kc)
		if len(t.top) > maxTopKeys {
			t.top = t.top[:maxTopKeys]
		}
	}
}

// witness keeps decision d as evidence, while there is room.
func (t *decisionTally) witness(d store.Decision) {
	if len(t.evidence) >= maxDecisionEvidence {
		return
	}
	if t.policies == nil {
		t.policies, t.reasons = map[string]int{}, map[string]int{}
	}
	t.evidence = append(t.evidence, decisionEvidence(d))
	if d.Policy != "" {
		t.policies[d.Policy]++
	}
	if d.Reason != "" {
		t.reasons[d.Reason]++
	}
}

// decisionCheck is a key whose offending decisions are read: to count them (unsettled), or
// only as evidence (exact: counted already).
type decisionCheck struct {
	keyCount
	spans []Span
	tally *decisionTally
	exact bool
}

// evidenceAt is a settled decision at a known time.
type evidenceAt struct {
	key useKey
	at  int64
}

// tallyPlan is what is known, and what is still to read, of one principal's decisions.
type tallyPlan struct {
	principal string
	tallies   []*decisionTally
	checks    map[useKey][]*decisionCheck
	wanted    map[evidenceAt]*decisionTally
	unsettled []*decisionCheck
	// could keeps, for the keys that can give a finding its first decision (those read), what
	// add was told the principal could do.
	could map[useKey][]Span
	// from and to bound what is read; countsUntil is when every unsettled key is counted.
	from, to, countsUntil int64
}

func newTallyPlan(principal string) *tallyPlan {
	return &tallyPlan{principal: principal, checks: map[useKey][]*decisionCheck{}, wanted: map[evidenceAt]*decisionTally{},
		could: map[useKey][]Span{}, from: math.MaxInt64, to: math.MinInt64, countsUntil: math.MinInt64}
}

// tally starts a finding's tally.
func (p *tallyPlan) tally(name string) *decisionTally {
	t := &decisionTally{name: name, until: math.MinInt64}
	p.tallies = append(p.tallies, t)
	return t
}

// add counts use u, whose decisions have effect and offend within spans (sorted, disjoint,
// inside [u.First, u.Last]), toward t: now when it settles, else by reading. could is kept for
// the finding, should the key give it its first decision.
func (p *tallyPlan) add(u store.Use, effect string, spans []Span, t *decisionTally, could []Span) {
	if len(spans) == 0 {
		return
	}
	k := useKey{effect, u.Action, u.Resource}
	first, last := event.Micros(u.First), event.Micros(u.Last)
	if u.Count <= 2 {
		kc := keyCount{key: k}
		for i, at := range []int64{first, last}[:u.Count] {
			if !SpanAt(spans, at) {
				continue
			}
			if kc.n == 0 {
				kc.first = at
			}
			kc.n, kc.last = kc.n+1, at
			if i == 0 || at != first {
				t.cands = append(t.cands, evidenceCand{at: at, key: k, could: could})
			}
		}
		t.count(kc)
		return
	}
	c := &decisionCheck{keyCount: keyCount{key: k}, spans: spans, tally: t}
	if len(spans) == 1 && spans[0] == (Span{first, last + 1}) {
		c.exact = true
		c.n, c.first, c.last = u.Count, first, last
		t.count(c.keyCount)
		t.cands = append(t.cands, evidenceCand{at: first, key: k, check: c, could: could})
		return
	}
	p.checks[k] = append(p.checks[k], c)
	p.could[k] = could
	p.unsettled = append(p.unsettled, c)
	end := spans[len(spans)-1].To
	p.countsUntil = max(p.countsUntil, end)
	t.until = max(t.until, end)
	p.from, p.to = min(p.from, spans[0].From), max(p.to, end)
}

// settle keeps, of each tally's settled keys, those that can give it evidence, and reports
// whether there is anything to read.
func (p *tallyPlan) settle() bool {
	for _, t := range p.tallies {
		slices.SortFunc(t.cands, func(a, b evidenceCand) int { return cmp.Compare(a.at, b.at) })
		if len(t.cands) > maxDecisionEvidence {
			t.cands = t.cands[:maxDecisionEvidence]
		}
		for _, c := range t.cands {
			end := c.at + 1
			if c.check != nil {
				end = c.check.spans[len(c.check.spans)-1].To
				p.checks[c.key] = append(p.checks[c.key], c.check)
			} else {
				p.wanted[evidenceAt{c.key, c.at}] = t
			}
			t.until = max(t.until, end)
			p.from, p.to = min(p.from, c.at), max(p.to, end)
			p.could[c.key] = c.could
		}
		t.cands = nil
	}
	return p.from < p.to
}

// keys appends to ks the keys whose decisions the plan reads, and returns the effect they all
// have ("" when they differ).
func (p *tallyPlan) keys(ks []store.UseKey) ([]store.UseKey, string) {
	seen := map[entitlementKey]bool{}
	effect, mixed := "", false
	add := func(k useKey) {
		if effect == "" {
			effect = k.effect
		}
		mixed = mixed || k.effect != effect
		if e := k.entitlement(); !seen[e] {
			seen[e] = true
			ks = append(ks, store.UseKey{Principal: p.principal, Action: k.action, Resource: k.resource})
		}
	}
	for k := range p.checks {
		add(k)
	}
	for e := range p.wanted {
		add(e.key)
	}
	if mixed {
		effect = ""
	}
	return ks, effect
}

// take counts decision d of the principal.
func (p *tallyPlan) take(d store.Decision) {
	k := useKey{d.Effect, d.Action, d.Resource}
	at := event.Micros(d.Time)
	if t := p.wanted[evidenceAt{k, at}]; t != nil {
		t.witness(d)
	}
	for _, c := range p.checks[k] {
		if !SpanAt(c.spans, at) {
			continue
		}
		if !c.exact {
			if c.n == 0 {
				c.first = at
			}
			c.n, c.last = c.n+1, at
		}
		c.tally.witness(d)
	}
}

// done reports whether no decision at or after at is needed.
func (p *tallyPlan) done(at int64) bool {
	if at < p.countsUntil {
		return false
	}
	for _, t := range p.tallies {
		if len(t.evidence) < maxDecisionEvidence && at < t.until {
			return false
		}
	}
	return true
}

// finish counts what the reads found.
func (p *tallyPlan) finish() {
	for _, c := range p.unsettled {
		c.tally.count(c.keyCount)
	}
}

// errEnough stops a read that has what it needs.
var errEnough = errors.New("enough decisions read")

// readTallies reads what the plans need and completes their tallies: one read of the decisions
// of the keys they must count or take evidence from (pushed down by key, effect and time: a few
// percent of their principals' decisions), from the first any of them needs to the last. A
// plan whose own decisions show it has what it needs (its counts done, its evidence full)
// takes no more, and the read stops when every plan has.
func readTallies(ctx context.Context, in *Input, plans []*tallyPlan) error {
	if len(plans) == 0 {
		return nil
	}
	defer func() {
		for _, p := range plans {
			p.finish()
		}
	}()
	q := store.DecisionQuery{Tenant: in.Tenant}
	from, to := int64(math.MaxInt64), int64(math.MinInt64)
	pending := make(map[string]*tallyPlan, len(plans))
	for i, p := range plans {
		var effect string
		q.Keys, effect = p.keys(q.Keys)
		if i == 0 {
			q.Effect = effect
		} else if effect != q.Effect {
			q.Effect = "" // of both effects
		}
		from, to = min(from, p.from), max(to, p.to)
		pending[p.principal] = p
	}
	if len(q.Keys) == 0 {
		return nil // nothing to read (a plan that settle kept has a key to read)
	}
	q.From, q.To = event.FromMicros(from), event.FromMicros(to)
	err := in.Store.Decisions(ctx, q, func(d store.Decision) error {
		p := pending[d.Principal]
		if p == nil {
			return nil // done already
		}
		if at := event.Micros(d.Time); at >= p.from {
			if p.done(at) {
				if delete(pending, d.Principal); len(pending) == 0 {
					return errEnough
				}
				return nil
			}
			p.take(d)
		}
		return nil
	})
	if err != nil && !errors.Is(err, errEnough) {
		return fmt.Errorf("decisions of %s from %s to %s: %w", plural(len(plans), "principal", "principals"), stamp(q.From), stamp(q.To), err)
	}
	return nil
}

// decisionEvidence is the evidence of one decision.
func decisionEvidence(d store.Decision) finding.Evidence {
	var why []string
	if d.Policy != "" {
		why = append(why, "policy "+d.Policy)
	}
	if d.Reason != "" {
		why = append(why, "reason: "+d.Reason)
	}
	text := fmt.Sprintf("%s %s %s %s on %s", stamp(d.Time), d.Principal, d.Effect, d.Action, d.Resource)
	if len(why) > 0 {
		text += " (" + strings.Join(why, "; ") + ")"
	}
	text += fmt.Sprintf(" [decision %s from %s]", d.ID, d.Source)
	return finding.Evidence{Kind: "decision", Text: text, Time: finding.Time(d.Time),
		Event: &finding.EventRef{Source: d.Source, ID: d.ID, Type: string(event.Decision), Position: d.Position}}
}

// moreDecisions is the evidence line that says how many decisions the evidence left out.
func moreDecisions(n int) finding.Evidence {
	return finding.Evidence{Kind: "measure", Text: fmt.Sprintf("and %s more not listed", plural(n, "decision", "decisions"))}
}
