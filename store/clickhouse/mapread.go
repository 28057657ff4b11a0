package clickhouse

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/whocould/whocould/access"
	"github.com/whocould/whocould/event"
	"github.com/whocould/whocould/graph"
	"github.com/whocould/whocould/store/spans"
)

// The permission map's reading side: each question fetches, as known at its known-at, the rows
// of access_map it needs (mapwrite.go), and store/spans makes the answer from them exactly as the
// engine would.

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

// filter is a WHERE condition and its arguments.
type filter struct {
	sql  string
	args []any
}

func holdingAt(t time.Time) filter {
	us := event.Micros(t)
	return filter{"from_us <= ? AND to_us > ?", []any{us, us}}
}

func overlapping(from, to time.Time) filter {
	return filter{"from_us < ? AND to_us > ?", []any{event.Micros(to), event.Micros(from)}}
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
	}
	out.sql = strings.Join(parts, " AND ")
	return out
}

// onEntitlements selects the paths and truncation marks that give action (when set) on resource
// (when set).
func onEntitlements(action, resource string) filter {
	f := filter{sql: fmt.Sprintf("kind IN (%d, %d)", kindPath, kindTruncated)}
	if resource != "" {
		f.sql += " AND resource IN (" + inList(event.Ancestors(resource)) + ")"
	}
	if action != "" {
		f.sql += " AND action IN (" + inList(actionPatterns(action)) + ")"
	}
	return f
}

// statuses selects status rows.
var statuses = filter{sql: fmt.Sprintf("kind = %d AND resource = '' AND action = ''", kindStatus)}

// ofPrincipal selects the rows of one principal.
func ofPrincipal(p string) filter { return filter{"principal = ?", []any{p}} }

// ofPrincipalsIn selects the rows of the principals that have a path the filter f selects
// (whatever its version: a superset).
func ofPrincipalsIn(tenant string, f filter) filter {
	f = and(filter{sql: fmt.Sprintf("kind = %d", kindPath)}, f)
	return filter{"principal IN (SELECT principal FROM access_map WHERE tenant = ? AND " + f.sql + ")",
		append([]any{tenant}, f.args...)}
}

// mapOf reads the rows f selects, as known at knownAt, into principals by name.
func (s *Store) mapOf(ctx context.Context, tenant string, knownAt *time.Time, f filter, into map[string]*spans.Principal) error {
	args := append([]any{tenant}, f.args...)
	known := ""
	if knownAt != nil {
		known = " AND known_us <= ?"
		args = append(args, event.Micros(*knownAt))
	}
	rows, err := s.conn.Query(ctx, fmt.Sprintf(qMap, f.sql, known), args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var (
			r                                    mapRow
			grantSubject, grantRole, grantAction string
		)
		if err := rows.Scan(&r.principal, &r.kind, &r.resource, &r.action, &r.from, &r.to, &r.status, &r.groups,
			&grantSubject, &grantRole, &grantAction, &r.expires, &r.roles); err != nil {
			return err
		}
		p := into[r.principal]
		if p == nil {
			p = &spans.Principal{Name: r.principal}
			into[r.principal] = p
		}
		switch r.kind {
		case kindStatus:
			p.Status = append(p.Status, graph.StatusSpan{From: r.from, To: r.to, Status: r.status})
		case kindTruncated:
			p.Truncated = append(p.Truncated, graph.TruncatedSpan{From: r.from, To: r.to, Action: r.action, Resource: r.resource})
		default:
			path := access.Path{Groups: nonNil(r.groups), Roles: nonNil(r.roles), Permission: r.action,
				Grant: access.GrantRef{Subject: grantSubject, Role: grantRole, Action: grantAction, Resource: r.resource}}
			if r.expires != 0 {
				x := event.FromMicros(r.expires)
				path.Grant.ExpiresAt = &x
			}
			p.Paths = append(p.Paths, graph.PathSpan{From: r.from, To: r.to, Action: r.action, Resource: r.resource, Path: path})
		}
	}
	return rows.Err()
}

func principalList(m map[string]*spans.Principal) []spans.Principal {
	out := make([]spans.Principal, 0, len(m))
	for _, p := range m {
		out = append(out, *p)
	}
	return out
}

// WhoCould implements access.Querier: the paths on the resource's ancestors, with patterns
// matching the action, holding at At (one key range per pair), then the status at At of the
// principals that have them.
func (s *Store) WhoCould(ctx context.Context, q access.Query) (access.WhoCould, error) {
	tenant := tenantName(q.Tenant)
	m := map[string]*spans.Principal{}
	on := and(onEntitlements(q.Action, q.Resource), holdingAt(q.At))
	if err := s.mapOf(ctx, tenant, q.KnownAt, on, m); err != nil {
		return access.WhoCould{}, fmt.Errorf("clickhouse: who could %s on %s: %w", q.Action, q.Resource, err)
	}
	if len(m) > 0 {
		st := and(statuses, holdingAt(q.At), ofPrincipalsIn(tenant, on))
		if err := s.mapOf(ctx, tenant, q.KnownAt, st, m); err != nil {
			return access.WhoCould{}, fmt.Errorf("clickhouse: who could %s on %s: %w", q.Action, q.Resource, err)
		}
	}
	return spans.WhoCould(q, principalList(m)), ctx.Err()
}

// WhatCould implements access.Querier.
func (s *Store) WhatCould(ctx context.Context, q access.Query) (access.WhatCould, error) {
	m := map[string]*spans.Principal{}
	if err := s.mapOf(ctx, tenantName(q.Tenant), q.KnownAt, and(ofPrincipal(q.Principal), holdingAt(q.At)), m); err != nil {
		return access.WhatCould{}, fmt.Errorf("clickhouse: what could %s: %w", q.Principal, err)
	}
	p := spans.Principal{Name: q.Principal}
	if x := m[q.Principal]; x != nil {
		p = *x
	}
	return spans.WhatCould(q, p), ctx.Err()
}

// Explain implements access.Querier: the principal's statuses, and its paths that give the
// action on the resource at any time (the reason names the last one that ended).
func (s *Store) Explain(ctx context.Context, q access.Query) (access.Explain, error) {
	tenant := tenantName(q.Tenant)
	m := map[string]*spans.Principal{}
	for _, f := range []filter{and(statuses, ofPrincipal(q.Principal)), and(onEntitlements(q.Action, q.Resource), ofPrincipal(q.Principal))} {
		if err := s.mapOf(ctx, tenant, q.KnownAt, f, m); err != nil {
			return access.Explain{}, fmt.Errorf("clickhouse: explain %s %s on %s: %w", q.Principal, q.Action, q.Resource, err)
		}
	}
	p := spans.Principal{Name: q.Principal}
	x, known := m[q.Principal]
	if known {
		p = *x
	}
	return spans.Explain(q, p, known), ctx.Err()
}

// History implements access.Querier: the rows of the principal, or of the paths on the
// resource's ancestors and the statuses of their principals, overlapping [From, To).
func (s *Store) History(ctx context.Context, q access.Query) (access.History, error) {
	tenant := tenantName(q.Tenant)
	m := map[string]*spans.Principal{}
	if !q.From.Before(q.To) {
		return spans.History(q, nil), nil
	}
	window := overlapping(q.From, q.To)
	var fs []filter
	if q.Principal != "" {
		fs = []filter{and(ofPrincipal(q.Principal), window)}
	} else {
		on := and(onEntitlements("", q.Resource), window)
		fs = []filter{on, and(statuses, window, ofPrincipalsIn(tenant, on))}
	}
	for _, f := range fs {
		if err := s.mapOf(ctx, tenant, q.KnownAt, f, m); err != nil {
			return access.History{}, fmt.Errorf("clickhouse: history: %w", err)
		}
	}
	return spans.History(q, principalList(m)), ctx.Err()
}
