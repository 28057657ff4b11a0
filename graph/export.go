package graph

import (
	"cmp"
	"math"
	"slices"
	"time"

	"github.com/whocould/whocould/access"
	"github.com/whocould/whocould/event"
)

// Export is everything the map says about one principal over all time, in the form a store
// that materialises the map keeps it (store/clickhouse): the answers about the principal at any
// time — its status, the paths it holds, whether paths were left out — are these rows, filtered
// by time, action and resource. Times are Unix microseconds; Forever is an open end.
type Export struct {
	Status    []StatusSpan
	Paths     []PathSpan
	Truncated []TruncatedSpan
}

// Forever is the To of a span that has not ended.
const Forever = forever

// StatusSpan is a stretch of a principal's status (access.StatusActive, StatusDisabled or
// StatusDeleted); before its first span, and in gaps, the principal is unknown.
type StatusSpan struct {
	From, To int64
	Status   string
}

// PathSpan is a stretch of time over which a path held, whatever the principal's status: the
// principal could do Action (the path's permission) on Resource (its grant's resource) through it
// while also active. A path whose grant's expiry changes is one span per expiry, so that Path
// shows the expiry in force throughout.
type PathSpan struct {
	From, To int64
	Action   string
	Resource string
	Path     access.Path
}

// TruncatedSpan is a stretch of time over which the entitlement (Action, Resource) had more
// paths than MaxPaths, so PathSpan lists only its first ones in access.ComparePaths order.
// (When the walk gave up for another reason, every entitlement of that instant is marked.)
type TruncatedSpan struct {
	From, To int64
	Action   string
	Resource string
}

// Export exports principal as known at knownAt (nil: everything applied). An unknown principal
// exports nothing.
func (g *Graph) Export(principal string, knownAt *time.Time) Export {
	g.mu.RLock()
	defer g.mu.RUnlock()
	var ex Export
	p, ok := g.lookup(principal)
	if !ok || g.kind(p) != event.KindPrincipal {
		return ex
	}
	qs := g.ask(knownAt)
	defer qs.done()
	base := qs.view(math.MinInt64)
	for _, s := range base.statusIvs(p) {
		if s.from < s.to {
			ex.Status = append(ex.Status, StatusSpan{From: s.from, To: s.to, Status: stateName(s.state)})
		}
	}
	var times []int64
	for _, i := range g.reachUp(base, p) {
		for _, iv := range base.ivs(i) {
			times = append(times, iv.from, iv.to)
		}
	}
	slices.Sort(times)
	times = slices.Compact(times)

	type key struct {
		action, resource, path string
		expires                int64
	}
	type truncKey struct{ action, resource string }
	a := &alloc{g: g}
	open := map[key]*PathSpan{}
	openTrunc := map[truncKey]*TruncatedSpan{}
	now := map[key]PathSpan{}
	nowTrunc := map[truncKey]bool{}
	// close ends, at t, the spans open that no longer hold.
	close := func(t int64) {
		for k, s := range open {
			if _, ok := now[k]; !ok {
				s.To = t
				ex.Paths = append(ex.Paths, *s)
				delete(open, k)
			}
		}
		for k, s := range openTrunc {
			if !nowTrunc[k] {
				s.To = t
				ex.Truncated = append(ex.Truncated, *s)
				delete(openTrunc, k)
			}
		}
		for k, s := range now {
			if _, ok := open[k]; !ok {
				s.From = t
				open[k] = &s
			}
		}
		for k := range nowTrunc {
			if _, ok := openTrunc[k]; !ok {
				openTrunc[k] = &TruncatedSpan{From: t, Action: k.action, Resource: k.resource}
			}
		}
	}
	for _, t := range times {
		if t >= forever {
			break
		}
		v := qs.view(t)
		clear(now)
		clear(nowTrunc)
		b := &v.sc.gb
		truncated := v.holdings(p, b, func(chain []uint32, it *grantItem, tl *tail) {
			s := PathSpan{Action: g.names[tl.perm], Resource: g.names[g.rels.at(it.gi).c], Path: v.path(a, chain, it, tl)}
			var exp int64
			if s.Path.Grant.ExpiresAt != nil {
				exp = event.Micros(*s.Path.Grant.ExpiresAt)
			}
			now[key{s.Action, s.Resource, s.Path.String() + "\x00" + joinNames(s.Path.Roles), exp}] = s
		})
		if truncated {
			some := false
			for i, c := range b.count {
				if c >= b.limit {
					nowTrunc[truncKey{g.names[b.keys[i][0]], g.names[b.keys[i][1]]}] = true
					some = true
				}
			}
			if !some {
				for _, k := range b.keys {
					nowTrunc[truncKey{g.names[k[0]], g.names[k[1]]}] = true
				}
			}
		}
		close(t)
	}
	clear(now)
	clear(nowTrunc)
	close(forever)
	slices.SortFunc(ex.Paths, comparePathSpans)
	slices.SortFunc(ex.Truncated, func(x, y TruncatedSpan) int {
		if c := cmp.Compare(x.From, y.From); c != 0 {
			return c
		}
		if x.Action != y.Action {
			return cmp.Compare(x.Action, y.Action)
		}
		return cmp.Compare(x.Resource, y.Resource)
	})
	return ex
}

func joinNames(ns []string) string {
	n := 0
	for _, s := range ns {
		n += len(s) + 1
	}
	b := make([]byte, 0, n)
	for _, s := range ns {
		b = append(b, s...)
		b = append(b, 0)
	}
	return string(b)
}

func comparePathSpans(x, y PathSpan) int {
	if c := cmp.Compare(x.From, y.From); c != 0 {
		return c
	}
	if c := cmp.Compare(x.Action, y.Action); c != 0 {
		return c
	}
	if c := cmp.Compare(x.Resource, y.Resource); c != 0 {
		return c
	}
	if c := access.ComparePaths(x.Path, y.Path); c != 0 {
		return c
	}
	return cmp.Compare(x.To, y.To)
}
