package clickhouse

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/whocould/whocould/access"
	"github.com/whocould/whocould/event"
	"github.com/whocould/whocould/graph"
	"github.com/whocould/whocould/store/spans"
)

// The permission map's reading side: each question fetches, as known at its known-at, the parts
// of the map (mapwrite.go) that can make the paths it is about — a few key ranges each — and
// store/spans joins them and makes the answer exactly as the engine would.

// maxQuerySize lets a question name many groups or principals in its IN lists.
const maxQuerySize = 64 << 20

// quote is s as a ClickHouse string literal.
func quote(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}

// inList is vals as the inside of an IN list of string literals.
func inList(vals []string) string {
	q := make([]string, len(vals))
	for i, v := range vals {
		q[i] = quote(v)
	}
	return strings.Join(q, ", ")
}

// actionPatterns lists every action pattern that matches action (event.Matches): "*", action
// itself, and each prefix of it ending in a dot followed by "*".
func actionPatterns(action string) []string {
	out := []string{"*"}
	if action != "*" {
		out = append(out, action)
	}
	for i := 0; i < len(action); i++ {
		if action[i] == '.' {
			if p := action[:i+1] + "*"; p != action {
				out = append(out, p)
			}
		}
	}
	return out
}

// filter is a WHERE condition and its arguments; none says it selects nothing (an empty IN
// list), so that its query need not be asked.
type filter struct {
	sql  string
	args []any
	none bool
}

func kindIs(k uint8) filter { return filter{sql: fmt.Sprintf("kind = %d", k)} }

func holdingAt(t time.Time) filter {
	us := event.Micros(t)
	return filter{sql: "from_us <= ? AND to_us > ?", args: []any{us, us}}
}

func overlapping(from, to time.Time) filter {
	return filter{sql: "from_us < ? AND to_us > ?", args: []any{event.Micros(to), event.Micros(from)}}
}

// in selects the rows whose column is one of vals (none: no row).
func in(column string, vals []string) filter {
	if len(vals) == 0 {
		return filter{sql: "0", none: true}
	}
	return filter{sql: column + " IN (" + inList(vals) + ")"}
}

// and joins filters.
func and(fs ...filter) filter {
	var out filter
	var parts []string
	for _, f := range fs {
		if f.sql == "" {
			continue
		}
		parts = append(parts, "("+f.sql+")")
		out.args = append(out.args, f.args...)
		out.none = out.none || f.none
	}
	out.sql = strings.Join(parts, " AND ")
	return out
}

// fetch reads the rows f selects, as known at knownAt, into pt, and returns the ids it read
// (sorted, unique).
func fetch(ctx context.Context, conn driver.Conn, tenant string, knownAt *time.Time, f filter, pt *spans.Parts) (ids []string, err error) {
	if f.none {
		return nil, nil
	}
	args := append([]any{tenant}, f.args...)
	known := ""
	if knownAt != nil {
		known = " AND known_us <= ?"
		args = append(args, event.Micros(*knownAt))
	}
	ctx = ch.Context(ctx, ch.WithSettings(ch.Settings{"max_query_size": maxQuerySize}))
	rows, err := conn.Query(ctx, fmt.Sprintf(qMap, f.sql, known), args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var r mapRow
		if err := rows.Scan(&r.kind, &r.id, &r.ref, &r.resource, &r.from, &r.to, &r.path, &r.status, &r.isRole, &r.expires,
			&r.end); err != nil {
			return nil, err
		}
		ids = append(ids, r.id)
		switch r.kind {
		case kindChainOf, kindGrantOf, kindTailOf:
			r.kind -= mirror
		}
		switch r.kind {
		case kindStatus:
			pt.Status[r.id] = append(pt.Status[r.id], graph.StatusSpan{From: r.from, To: r.to, Status: r.status})
		case kindChain:
			pt.Chains[r.id] = append(pt.Chains[r.id], graph.ChainSpan{From: r.from, To: r.to, Groups: r.path})
		case kindGrant:
			gk := graph.GrantKey{Subject: r.id, Action: r.ref, Resource: r.resource}
			if r.isRole == 1 {
				gk.Role, gk.Action = r.ref, ""
			}
			pt.Grants[r.id] = append(pt.Grants[r.id], spans.Grant{GrantKey: gk,
				GrantSpan: graph.GrantSpan{From: r.from, To: r.to, Expires: r.expires, End: graph.End(r.end)}})
		case kindTail:
			pt.Tails[r.id] = append(pt.Tails[r.id], graph.TailSpan{From: r.from, To: r.to, Roles: nonNil(r.path), Permission: r.ref})
		}
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	slices.Sort(ids)
	return slices.Compact(ids), nil
}

// grantedRoles lists the roles the grants in pt grant.
func grantedRoles(pt *spans.Parts) []string {
	var roles []string
	for _, gs := range pt.Grants {
		for _, g := range gs {
			if g.Role != "" {
				roles = append(roles, g.Role)
			}
		}
	}
	slices.Sort(roles)
	return slices.Compact(roles)
}

// subjects splits the subjects of the grants in pt into groups and principals.
func subjects(pt *spans.Parts) (groups, principals []string) {
	for s := range pt.Grants {
		if event.KindOf(s) == event.KindGroup {
			groups = append(groups, s)
		} else {
			principals = append(principals, s)
		}
	}
	slices.Sort(groups)
	slices.Sort(principals)
	return groups, principals
}

// chainGroups lists the groups of p's chains in pt.
func chainGroups(pt *spans.Parts, p string) []string {
	var gs []string
	for _, c := range pt.Chains[p] {
		gs = append(gs, c.Groups...)
	}
	slices.Sort(gs)
	return slices.Compact(gs)
}

func gives(action, resource string) func(string, string) bool {
	return func(a, r string) bool {
		return (action == "" || event.Matches(a, action)) && (resource == "" || event.Covers(r, resource))
	}
}

// downward fetches, for the grants already in pt, what makes their paths: the tails of their
// roles (giving action, when set), the chains ending at their group subjects and the status of
// every principal found, all within f (a time filter); and returns those principals.
func downward(ctx context.Context, conn driver.Conn, tenant string, knownAt *time.Time, f filter, pt *spans.Parts) ([]string, error) {
	groups, principals := subjects(pt)
	if _, err := fetch(ctx, conn, tenant, knownAt, and(kindIs(kindChain), f, in("lookup", groups)), pt); err != nil {
		return nil, err
	}
	for p := range pt.Chains {
		principals = append(principals, p)
	}
	slices.Sort(principals)
	principals = slices.Compact(principals)
	if _, err := fetch(ctx, conn, tenant, knownAt, and(kindIs(kindStatus), f, in("lookup", principals)), pt); err != nil {
		return nil, err
	}
	return principals, nil
}

// WhoCould implements access.Querier: the tails giving the action at At, the grants on the
// resource's ancestors of those roles or of actions matching it, the chains ending at their
// subjects, and the status of the principals found.
func (s *Store) WhoCould(ctx context.Context, q access.Query) (access.WhoCould, error) {
	tenant := tenantName(q.Tenant)
	wrap := func(err error) (access.WhoCould, error) {
		return access.WhoCould{}, fmt.Errorf("clickhouse: who could %s on %s: %w", q.Action, q.Resource, err)
	}
	conn, err := s.reader(ctx)
	if err != nil {
		return wrap(err)
	}
	pt := spans.NewParts()
	at := holdingAt(q.At)
	patterns := actionPatterns(q.Action)
	roles, err := fetch(ctx, conn, tenant, q.KnownAt, and(kindIs(kindTail), at, in("lookup", patterns)), pt)
	if err != nil {
		return wrap(err)
	}
	// Role names and action patterns never meet (role:x, a.b.c), so one IN list serves both.
	grants := and(kindIs(kindGrant), at, in("scope", event.Ancestors(q.Resource)), in("lookup", append(roles, patterns...)))
	if _, err := fetch(ctx, conn, tenant, q.KnownAt, grants, pt); err != nil {
		return wrap(err)
	}
	principals, err := downward(ctx, conn, tenant, q.KnownAt, at, pt)
	if err != nil {
		return wrap(err)
	}
	keep := gives(q.Action, q.Resource)
	ps := make([]spans.Principal, 0, len(principals))
	for _, p := range principals {
		if event.KindOf(p) == event.KindPrincipal {
			ps = append(ps, pt.Principal(p, keep))
		}
	}
	return spans.WhoCould(q, ps), ctx.Err()
}

// upward fetches principal's status and chains within f, the grants (selected by more, when
// set) of it and of the chains' groups, and the tails (giving action, when set) of their roles.
// It reports whether any status or chain names the principal.
func upward(ctx context.Context, conn driver.Conn, tenant, principal, action string, knownAt *time.Time, f, more filter, pt *spans.Parts) (bool, error) {
	statusAndChains := filter{sql: fmt.Sprintf("kind IN (%d, %d) AND lookup = ?", kindStatus, kindChainOf), args: []any{principal}}
	if _, err := fetch(ctx, conn, tenant, knownAt, and(statusAndChains, f), pt); err != nil {
		return false, err
	}
	known := len(pt.Status[principal]) > 0 || len(pt.Chains[principal]) > 0
	subjects := append(chainGroups(pt, principal), principal)
	if _, err := fetch(ctx, conn, tenant, knownAt, and(kindIs(kindGrantOf), f, in("lookup", subjects), more), pt); err != nil {
		return false, err
	}
	tails := and(kindIs(kindTailOf), f, in("lookup", grantedRoles(pt)))
	if action != "" {
		tails = and(tails, in("ref", actionPatterns(action)))
	}
	if _, err := fetch(ctx, conn, tenant, knownAt, tails, pt); err != nil {
		return false, err
	}
	return known, nil
}

// WhatCould implements access.Querier.
func (s *Store) WhatCould(ctx context.Context, q access.Query) (access.WhatCould, error) {
	conn, err := s.reader(ctx)
	if err != nil {
		return access.WhatCould{}, err
	}
	pt := spans.NewParts()
	if _, err := upward(ctx, conn, tenantName(q.Tenant), q.Principal, "", q.KnownAt, holdingAt(q.At), filter{}, pt); err != nil {
		return access.WhatCould{}, fmt.Errorf("clickhouse: what could %s: %w", q.Principal, err)
	}
	return spans.WhatCould(q, pt.Principal(q.Principal, nil)), ctx.Err()
}

// Explain implements access.Querier: the principal's parts that give the action on the
// resource, at any time (the reason names the last grant that ended).
func (s *Store) Explain(ctx context.Context, q access.Query) (access.Explain, error) {
	conn, err := s.reader(ctx)
	if err != nil {
		return access.Explain{}, err
	}
	pt := spans.NewParts()
	onResource := and(in("resource", event.Ancestors(q.Resource)),
		filter{sql: "is_role = 1 OR ref IN (" + inList(actionPatterns(q.Action)) + ")"})
	known, err := upward(ctx, conn, tenantName(q.Tenant), q.Principal, q.Action, q.KnownAt, filter{}, onResource, pt)
	if err != nil {
		return access.Explain{}, fmt.Errorf("clickhouse: explain %s %s on %s: %w", q.Principal, q.Action, q.Resource, err)
	}
	return spans.Explain(q, pt.Principal(q.Principal, gives(q.Action, q.Resource)), known), ctx.Err()
}

// History implements access.Querier: the parts overlapping [From, To) of the principal's paths,
// or of the paths through grants on the resource's ancestors.
func (s *Store) History(ctx context.Context, q access.Query) (access.History, error) {
	if !q.From.Before(q.To) {
		return spans.History(q, nil), nil
	}
	tenant := tenantName(q.Tenant)
	wrap := func(err error) (access.History, error) {
		return access.History{}, fmt.Errorf("clickhouse: history: %w", err)
	}
	conn, err := s.reader(ctx)
	if err != nil {
		return wrap(err)
	}
	pt := spans.NewParts()
	window := overlapping(q.From, q.To)
	if q.Principal != "" {
		if _, err := upward(ctx, conn, tenant, q.Principal, "", q.KnownAt, window, filter{}, pt); err != nil {
			return wrap(err)
		}
		return spans.History(q, []spans.Principal{pt.Principal(q.Principal, nil)}), ctx.Err()
	}
	if _, err := fetch(ctx, conn, tenant, q.KnownAt, and(kindIs(kindGrant), window, in("scope", event.Ancestors(q.Resource))), pt); err != nil {
		return wrap(err)
	}
	if _, err := fetch(ctx, conn, tenant, q.KnownAt, and(kindIs(kindTailOf), window, in("lookup", grantedRoles(pt))), pt); err != nil {
		return wrap(err)
	}
	principals, err := downward(ctx, conn, tenant, q.KnownAt, window, pt)
	if err != nil {
		return wrap(err)
	}
	keep := gives("", q.Resource)
	var ps []spans.Principal
	for _, p := range principals {
		if event.KindOf(p) == event.KindPrincipal {
			ps = append(ps, pt.Principal(p, keep))
		}
	}
	return spans.History(q, ps), ctx.Err()
}
