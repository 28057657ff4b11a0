package access

import (
	"context"
	"time"
)

// Query is a question to the permission map. Which fields a question reads is said at each
// method of Querier. At is the event time asked about; KnownAt, when set, answers as whocould knew
// it at that recorded time (only events recorded at or before it count).
type Query struct {
	Tenant    string
	Principal string
	Action    string
	Resource  string
	At        time.Time
	KnownAt   *time.Time
	// From and To bound a history: [From, To).
	From, To time.Time
}

// Querier answers questions about the permission map. Answers are built for the caller, who owns
// them. Every method is safe for concurrent use.
type Querier interface {
	// WhoCould reads Tenant, Action, Resource, At, KnownAt.
	WhoCould(ctx context.Context, q Query) (WhoCould, error)
	// WhatCould reads Tenant, Principal, At, KnownAt.
	WhatCould(ctx context.Context, q Query) (WhatCould, error)
	// Explain reads Tenant, Principal, Action, Resource, At, KnownAt.
	Explain(ctx context.Context, q Query) (Explain, error)
	// History reads Tenant, Principal or Resource (one of them), From, To, KnownAt.
	History(ctx context.Context, q Query) (History, error)
}

// Semantics (DESIGN.md §1), exactly as the engine, the brute-force reference and every store
// implement them:
//
// Events apply in event-time order (event.Order: time, then a digest of source and id).
// Only change events (event.Type.IsChange) touch the map.
//
// Existence. An id exists from the first event that adds it until its deletion, and again from
// the next such event. Events that add an id: principal.created/updated/disabled/enabled (the
// principal); group.created and membership.added (the group; the member); role.created,
// role.permission.added (the role); role.include.added (both roles); grant.added (the subject,
// and the role when it grants one). Removals never create. A created principal is active with
// the event's attributes (none when implicit); principal.created of an existing principal only
// merges attributes.
//
// Status. principal.disabled makes the principal disabled (creating it first if needed),
// principal.enabled active. principal.updated merges attributes (a value "" removes the key).
// A principal is active at T when it exists at T and is not disabled.
//
// Relations are memberships (group, member), permissions (role, action), inclusions (role,
// includes) and grants (subject, role or action, resource; a role grant and an action grant are
// different relations). A relation holds from an add while it does not hold, until a remove
// while it holds, or until a deletion that ends it. An add while it holds changes nothing but a
// grant's expiry: the add's expires_at (or none) replaces the old one. A grant with an expiry
// stops holding at it. Deletions: principal.deleted ends the principal's memberships (as member)
// and the grants whose subject it is; group.deleted ends its memberships (as group and as
// member) and the grants whose subject it is; role.deleted ends its permissions, every
// inclusion from or to it, and the grants of it. Deleting an id that does not exist changes
// nothing. Intervals are half-open, [from, to), and an empty one is none.
//
// Paths. P could do A on R at T through path (groups g1..gk, grant G, roles r1..rn, permission
// p) when, at T: P is member of g1, g(i) of g(i+1) (no group twice); G's subject is gk (P when
// k = 0); G's resource covers R (event.Covers); and either G grants action pattern p matching A
// (n = 0), or G grants role r1, r(i) includes r(i+1) (no role twice), and rn holds permission p
// matching A (event.Matches). P could do A on R exactly when P is active and has such a path.
