// Package access holds the answers whocould gives: who could do an action on a resource, what a
// principal could do, why (the paths), and how that changed over time. They are the JSON of
// CONTRACT.md; every part of the product (engine, stores, API, CLI, tests) speaks them.
package access

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"
)

// GrantRef names a grant: its subject, its role or action pattern, and its resource.
type GrantRef struct {
	Subject   string     `json:"subject"`
	Role      string     `json:"role,omitempty"`
	Action    string     `json:"action,omitempty"`
	Resource  string     `json:"resource"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
}

// Path is why a principal could do something: the membership chain from the principal outwards
// (empty for a direct grant), the grant, the inclusion chain from the granted role to the role
// that holds the permission (empty for a grant of an action), and the matching action pattern.
type Path struct {
	Groups     []string `json:"groups"`
	Grant      GrantRef `json:"grant"`
	Roles      []string `json:"roles"`
	Permission string   `json:"permission"`
}

// Clone is a copy of p that shares no memory with it: the engine hands out paths whose chains
// are cut from blocks shared by many paths, and whatever keeps one would keep the whole block
// alive.
func (p Path) Clone() Path {
	p.Groups, p.Roles = slices.Clone(p.Groups), slices.Clone(p.Roles)
	if p.Grant.ExpiresAt != nil {
		x := *p.Grant.ExpiresAt
		p.Grant.ExpiresAt = &x
	}
	return p
}

// ComparePaths orders paths: shorter membership chains first, then by groups, grant, roles and
// permission. Every answer lists its paths in this order.
func ComparePaths(a, b Path) int {
	if c := cmp.Compare(len(a.Groups), len(b.Groups)); c != 0 {
		return c
	}
	if c := slices.Compare(a.Groups, b.Groups); c != 0 {
		return c
	}
	if c := cmp.Compare(a.Grant.Subject, b.Grant.Subject); c != 0 {
		return c
	}
	if c := cmp.Compare(a.Grant.Role, b.Grant.Role); c != 0 {
		return c
	}
	if c := cmp.Compare(a.Grant.Action, b.Grant.Action); c != 0 {
		return c
	}
	if c := cmp.Compare(a.Grant.Resource, b.Grant.Resource); c != 0 {
		return c
	}
	if c := cmp.Compare(len(a.Roles), len(b.Roles)); c != 0 {
		return c
	}
	if c := slices.Compare(a.Roles, b.Roles); c != 0 {
		return c
	}
	return cmp.Compare(a.Permission, b.Permission)
}

// SortPaths sorts paths in the order of ComparePaths.
func SortPaths(ps []Path) { slices.SortFunc(ps, ComparePaths) }

// String is a one-line rendering of the path: user:alice → group:dba → group:eng ⇒
// role:db-owner → role:db-writer ∋ db.table.* on db:prod.
func (p Path) String() string {
	var b strings.Builder
	for _, g := range p.Groups {
		b.WriteString(g)
		b.WriteString(" → ")
	}
	b.WriteString("grant(")
	b.WriteString(p.Grant.Subject)
	b.WriteString(", ")
	if p.Grant.Role != "" {
		b.WriteString(p.Grant.Role)
	} else {
		b.WriteString(p.Grant.Action)
	}
	b.WriteString(", ")
	b.WriteString(p.Grant.Resource)
	b.WriteString(")")
	for i, r := range p.Roles {
		if i == 0 {
			b.WriteString(" ⇒ ")
		} else {
			b.WriteString(" → ")
		}
		b.WriteString(r)
	}
	b.WriteString(" ∋ ")
	b.WriteString(p.Permission)
	return b.String()
}

// String is the grant as explanations name it: grant(subject, role or action, resource).
func (r GrantRef) String() string {
	what := r.Role
	if what == "" {
		what = r.Action
	}
	return fmt.Sprintf("grant(%s, %s, %s)", r.Subject, what, r.Resource)
}

// PrincipalPaths is one principal of a who-could answer.
type PrincipalPaths struct {
	Principal string `json:"principal"`
	Paths     []Path `json:"paths"`
}

// WhoCould answers: who could do Action on Resource at At (as known at KnownAt, when set)?
// Principals are sorted by principal.
type WhoCould struct {
	Action     string           `json:"action"`
	Resource   string           `json:"resource"`
	At         time.Time        `json:"at"`
	KnownAt    *time.Time       `json:"known_at,omitempty"`
	Principals []PrincipalPaths `json:"principals"`
	// PathsTruncated is set when some principal has more paths than the answer lists: each
	// lists only its first paths in ComparePaths order (its shortest among them). Which principals
	// could is exact either way.
	PathsTruncated bool `json:"paths_truncated,omitempty"`
}

// Entitlement is one (action pattern, resource) a principal holds, with its paths.
type Entitlement struct {
	Action   string `json:"action"`
	Resource string `json:"resource"`
	Paths    []Path `json:"paths"`
}

// WhatCould answers: what could Principal do at At? Entitlements are sorted by action, then
// resource.
type WhatCould struct {
	Principal    string        `json:"principal"`
	At           time.Time     `json:"at"`
	KnownAt      *time.Time    `json:"known_at,omitempty"`
	Status       string        `json:"status"`
	Entitlements []Entitlement `json:"entitlements"`
	// PathsTruncated is set when some entitlement has more paths than the answer lists: each
	// lists only its first paths in ComparePaths order. The entitlements themselves are exact.
	PathsTruncated bool `json:"paths_truncated,omitempty"`
}

// Principal statuses.
const (
	StatusActive   = "active"
	StatusDisabled = "disabled"
	StatusDeleted  = "deleted"
	StatusUnknown  = "unknown"
)

// Explain answers: could Principal do Action on Resource at At, and why (or why not)? Paths are
// every path whose memberships, grant, inclusions and permission all hold at At; Could is true
// exactly when the principal is active and there is at least one. When Could is false, Reason
// says what is missing.
type Explain struct {
	Principal string     `json:"principal"`
	Action    string     `json:"action"`
	Resource  string     `json:"resource"`
	At        time.Time  `json:"at"`
	KnownAt   *time.Time `json:"known_at,omitempty"`
	Could     bool       `json:"could"`
	Status    string     `json:"status"`
	Paths     []Path     `json:"paths"`
	Reason    string     `json:"reason"`
	// PathsTruncated is set when there are more paths than Paths lists: it lists only the first
	// ones in ComparePaths order. Could is exact either way.
	PathsTruncated bool `json:"paths_truncated,omitempty"`
}

// InactiveReason is Explain's reason when principal, whose status at at is status (holding
// since since), is not active; "" when it is. paths counts the paths that would apply were it
// active (more: there are more than that).
func InactiveReason(principal, status string, at, since time.Time, paths int, more bool) string {
	stamp := func(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }
	switch status {
	case StatusUnknown:
		return fmt.Sprintf("%s does not exist yet at %s", principal, stamp(at))
	case StatusDeleted:
		return fmt.Sprintf("%s was deleted at %s", principal, stamp(since))
	case StatusDisabled:
		if paths > 0 {
			n := fmt.Sprint(paths)
			if more {
				n = "more than " + n
			}
			return fmt.Sprintf("%s has been disabled since %s (it still holds %s path(s) that would apply if enabled)", principal, stamp(since), n)
		}
		return fmt.Sprintf("%s has been disabled since %s", principal, stamp(since))
	}
	return ""
}

// UTC is t in UTC, nil for nil: the known-at of an answer.
func UTC(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}

// Interval is one stretch of effective access: Principal could do Action (a pattern) on
// Resource through Path from From until To (nil: still holds).
type Interval struct {
	Principal string     `json:"principal"`
	Action    string     `json:"action"`
	Resource  string     `json:"resource"`
	From      time.Time  `json:"from"`
	To        *time.Time `json:"to"`
	Path      Path       `json:"path"`
}

// CompareIntervals orders intervals by from, principal, action, resource, then path.
func CompareIntervals(a, b Interval) int {
	if c := a.From.Compare(b.From); c != 0 {
		return c
	}
	if c := cmp.Compare(a.Principal, b.Principal); c != 0 {
		return c
	}
	if c := cmp.Compare(a.Action, b.Action); c != 0 {
		return c
	}
	if c := cmp.Compare(a.Resource, b.Resource); c != 0 {
		return c
	}
	return ComparePaths(a.Path, b.Path)
}

// History answers: how did the access of Principal (or to Resource) change between From and To?
// Intervals are clipped to [From, To) and sorted by CompareIntervals.
type History struct {
	Principal string     `json:"principal,omitempty"`
	Resource  string     `json:"resource,omitempty"`
	From      time.Time  `json:"from"`
	To        time.Time  `json:"to"`
	KnownAt   *time.Time `json:"known_at,omitempty"`
	Intervals []Interval `json:"intervals"`
	// PathsTruncated is set when, at some instant, an entitlement had more paths than are
	// followed: only the first ones in ComparePaths order are.
	PathsTruncated bool `json:"paths_truncated,omitempty"`
}
