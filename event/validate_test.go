package event

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 6, 2, 14, 0, 123456000, time.UTC)

func tp(t time.Time) *time.Time { return &t }

func ev(ty Type, d Data) Event {
	return Event{ID: "e-1", Source: "//okta/acme", Type: ty, Time: t0, Data: d}
}

// goodEvents has one or more valid events of every type.
func goodEvents() map[string]Event {
	return map[string]Event{
		"principal.created": ev(PrincipalCreated, Data{Principal: "user:alice",
			Attributes: map[string]string{"email": "alice@example.com", "title": "VP, Eng", "note": "two\nlines"}, Actor: "service:scim", Tenant: "acme"}),
		"principal.created bare":  ev(PrincipalCreated, Data{Principal: "agent:copilot-7"}),
		"principal.updated":       ev(PrincipalUpdated, Data{Principal: "user:alice", Attributes: map[string]string{"dept": ""}}),
		"principal.disabled":      ev(PrincipalDisabled, Data{Principal: "user:alice", Approval: "CHG-1"}),
		"principal.enabled":       ev(PrincipalEnabled, Data{Principal: "service:ci-bot"}),
		"principal.deleted":       ev(PrincipalDeleted, Data{Principal: "user:alice"}),
		"group.created":           ev(GroupCreated, Data{Group: "group:eng"}),
		"group.deleted team":      ev(GroupDeleted, Data{Group: "team:payments"}),
		"membership.added":        ev(MembershipAdded, Data{Group: "group:eng", Member: "user:alice"}),
		"membership.added nested": ev(MembershipAdded, Data{Group: "group:eng", Member: "team:payments"}),
		"membership.removed":      ev(MembershipRemoved, Data{Group: "group:eng", Member: "user:alice"}),
		"role.created":            ev(RoleCreated, Data{Role: "role:db-writer"}),
		"role.deleted":            ev(RoleDeleted, Data{Role: "role:db-writer"}),
		"role.permission.added":   ev(RolePermissionAdded, Data{Role: "role:db-writer", Action: "db.table.*"}),
		"role.permission.star":    ev(RolePermissionAdded, Data{Role: "role:admin", Action: "*"}),
		"role.permission.removed": ev(RolePermissionRemoved, Data{Role: "role:db-writer", Action: "db.table.insert"}),
		"role.include.added":      ev(RoleIncludeAdded, Data{Role: "role:db-owner", Includes: "role:db-writer"}),
		"role.include.removed":    ev(RoleIncludeRemoved, Data{Role: "role:db-owner", Includes: "role:db-writer"}),
		"grant.added role": ev(GrantAdded, Data{Subject: "group:eng", Role: "role:db-owner", Resource: "db:prod",
			ExpiresAt: tp(t0.Add(time.Hour)), Actor: "user:bob", Approval: "CHG-7"}),
		"grant.added action": ev(GrantAdded, Data{Subject: "user:alice", Action: "repo.push", Resource: "repo:acme/api"}),
		"grant.added star":   ev(GrantAdded, Data{Subject: "user:root", Action: "*", Resource: "*"}),
		"grant.added kind":   ev(GrantAdded, Data{Subject: "user:root", Role: "role:x", Resource: "db:*"}),
		"grant.removed":      ev(GrantRemoved, Data{Subject: "group:eng", Role: "role:db-owner", Resource: "db:prod"}),
		"decision": ev(Decision, Data{Principal: "user:alice", Action: "db.table.drop", Resource: "db:prod/orders",
			Effect: Allow, Reason: "role db-owner", Policy: "data.authz.allow", Request: "req-123"}),
		"decision deny": ev(Decision, Data{Principal: "user:alice", Action: "db.table.drop", Resource: "db:prod/orders", Effect: Deny}),
		"approval.requested": ev(ApprovalRequested, Data{Request: "CHG-7", Requester: "user:bob",
			Change: json.RawMessage(`{"type":"grant.added","data":{"subject":"user:bob"}}`), Reason: "on call"}),
		"approval.granted":  ev(ApprovalGranted, Data{Request: "CHG-7", Approver: "user:carol", Reason: "ok"}),
		"approval.rejected": ev(ApprovalRejected, Data{Request: "CHG-7", Approver: "user:carol"}),
	}
}

func TestValidateGood(t *testing.T) {
	seen := map[Type]bool{}
	for name, e := range goodEvents() {
		if err := Validate(&e); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		seen[e.Type] = true
	}
	for _, ty := range Types {
		if !seen[ty] {
			t.Errorf("no good example of %s", ty)
		}
	}
}

type badCase struct {
	name  string
	e     Event
	field string
	msg   string // a piece of the message
}

func badEvents() []badCase {
	g := goodEvents()
	with := func(name string, f func(e *Event)) Event {
		e := g[name]
		d := e.Data
		if d.Attributes != nil {
			m := map[string]string{}
			for k, v := range d.Attributes {
				m[k] = v
			}
			d.Attributes = m
		}
		e.Data = d
		f(&e)
		return e
	}
	long := "user:" + strings.Repeat("a", 10<<10)
	return []badCase{
		// Envelope.
		{"no id", with("group.created", func(e *Event) { e.ID = "" }), "id", "is missing"},
		{"id newline", with("group.created", func(e *Event) { e.ID = "e\n1" }), "id", `forbidden character '\n' at byte 1`},
		{"id NUL", with("group.created", func(e *Event) { e.ID = "e\x001" }), "id", `forbidden character '\x00'`},
		{"id rtl", with("group.created", func(e *Event) { e.ID = "e-\u202e1" }), "id", "U+202E"},
		{"id long", with("group.created", func(e *Event) { e.ID = strings.Repeat("x", 1025) }), "id", "is 1025 bytes long (at most 1024)"},
		{"id utf8", with("group.created", func(e *Event) { e.ID = "e-\xff" }), "id", "is not valid UTF-8"},
		{"no source", with("group.created", func(e *Event) { e.Source = "" }), "source", "is missing"},
		{"source space", with("group.created", func(e *Event) { e.Source = "okta acme" }), "source", "space character"},
		{"source not uri", with("group.created", func(e *Event) { e.Source = "%zz" }), "source", "is not a URI reference"},
		{"source not canonical", with("group.created", func(e *Event) { e.Source = "HTTPS://okta" }), "source", `canonical form (it would travel as "https://okta")`},
		{"no type", with("group.created", func(e *Event) { e.Type = "" }), "type", "is missing"},
		{"unknown type", with("group.created", func(e *Event) { e.Type = "group.renamed" }), "type", `unknown event type "group.renamed"`},
		{"no time", with("group.created", func(e *Event) { e.Time = time.Time{} }), "time", "is missing"},
		{"time 1969", with("group.created", func(e *Event) { e.Time = time.Date(1969, 12, 31, 23, 59, 59, 0, time.UTC) }), "time", "before 1970"},
		{"time 2201", with("group.created", func(e *Event) { e.Time = time.Date(2201, 1, 1, 0, 0, 0, 0, time.UTC) }), "time", "after 2200"},

		// principal.*
		{"principal missing", with("principal.created", func(e *Event) { e.Data.Principal = "" }), "data.principal", "is missing"},
		{"principal is group", with("principal.deleted", func(e *Event) { e.Data.Principal = "group:eng" }), "data.principal", "names a group, not a principal"},
		{"principal is role", with("principal.enabled", func(e *Event) { e.Data.Principal = "role:x" }), "data.principal", "names a role, not a principal"},
		{"principal no kind", with("principal.disabled", func(e *Event) { e.Data.Principal = "alice" }), "data.principal", "has no kind (want kind:name)"},
		{"principal 10kB", with("principal.disabled", func(e *Event) { e.Data.Principal = long }), "data.principal", "bytes long (at most 1024)"},
		{"principal NUL", with("principal.disabled", func(e *Event) { e.Data.Principal = "user:a\x00b" }), "data.principal", `forbidden character '\x00' at byte 6`},
		{"principal newline", with("principal.disabled", func(e *Event) { e.Data.Principal = "user:a\nb" }), "data.principal", `forbidden character '\n'`},
		{"principal rtl", with("principal.disabled", func(e *Event) { e.Data.Principal = "user:\u202eecila" }), "data.principal", "invisible formatting character U+202E at byte 5"},
		{"principal zero width", with("principal.disabled", func(e *Event) { e.Data.Principal = "user:al\u200bice" }), "data.principal", "U+200B"},
		{"principal utf8", with("principal.disabled", func(e *Event) { e.Data.Principal = "user:\xc3(" }), "data.principal", "is not valid UTF-8"},
		{"principal bad kind", with("principal.disabled", func(e *Event) { e.Data.Principal = "User:alice" }), "data.principal", `bad kind "User"`},
		{"attributes on disabled", with("principal.disabled", func(e *Event) { e.Data.Attributes = map[string]string{"a": "b"} }), "data.attributes", "is not a field of principal.disabled events"},
		{"attribute key empty", with("principal.created", func(e *Event) { e.Data.Attributes[""] = "x" }), "data.attributes", `key "" is empty`},
		{"attribute key long", with("principal.created", func(e *Event) { e.Data.Attributes[strings.Repeat("k", 257)] = "x" }), "data.attributes", "is 257 bytes long (at most 256)"},
		{"attribute value long", with("principal.created", func(e *Event) { e.Data.Attributes["email"] = strings.Repeat("v", 4097) }), "data.attributes.email", "is 4097 bytes long (at most 4096)"},
		{"attribute value NUL", with("principal.created", func(e *Event) { e.Data.Attributes["email"] = "a\x00" }), "data.attributes.email", "control character"},
		{"attribute value bidi", with("principal.created", func(e *Event) { e.Data.Attributes["title"] = "\u202eoV" }), "data.attributes.title", "bidi control character U+202E"},
		{"attribute odd key", with("principal.created", func(e *Event) { e.Data.Attributes["a b"] = "\x01" }), `data.attributes["a b"]`, "control character"},
		{"too many attributes", with("principal.created", func(e *Event) {
			for i := 0; i < 300; i++ {
				e.Data.Attributes[strings.Repeat("k", i+1)] = "v"
			}
		}), "data.attributes", "(at most 256)"},

		// group.*
		{"group missing", with("group.created", func(e *Event) { e.Data.Group = "" }), "data.group", "is missing"},
		{"group is user", with("group.deleted team", func(e *Event) { e.Data.Group = "user:eng" }), "data.group", "names a principal, not a group"},
		{"group with member", with("group.created", func(e *Event) { e.Data.Member = "user:a" }), "data.member", "is not a field of group.created events"},

		// membership.*
		{"member missing", with("membership.added", func(e *Event) { e.Data.Member = "" }), "data.member", "is missing"},
		{"member is role", with("membership.added", func(e *Event) { e.Data.Member = "role:db-owner" }), "data.member", "names a role, not a group or principal"},
		{"membership group is role", with("membership.removed", func(e *Event) { e.Data.Group = "role:x" }), "data.group", "names a role, not a group"},
		{"membership empty name", with("membership.removed", func(e *Event) { e.Data.Member = "user:" }), "data.member", "has an empty name"},

		// role.*
		{"role missing", with("role.created", func(e *Event) { e.Data.Role = "" }), "data.role", "is missing"},
		{"role is group", with("role.deleted", func(e *Event) { e.Data.Role = "group:x" }), "data.role", "names a group, not a role"},
		{"permission missing", with("role.permission.added", func(e *Event) { e.Data.Action = "" }), "data.action", "is missing"},
		{"permission bad star", with("role.permission.added", func(e *Event) { e.Data.Action = "db.*.drop" }), "data.action", "has * somewhere other than a final `.*`"},
		{"permission space", with("role.permission.removed", func(e *Event) { e.Data.Action = "db drop" }), "data.action", "forbidden character ' '"},
		{"include missing", with("role.include.added", func(e *Event) { e.Data.Includes = "" }), "data.includes", "is missing"},
		{"include user", with("role.include.removed", func(e *Event) { e.Data.Includes = "user:x" }), "data.includes", "names a principal, not a role"},
		{"role with resource", with("role.created", func(e *Event) { e.Data.Resource = "db:prod" }), "data.resource", "is not a field of role.created events"},

		// grant.*
		{"grant no subject", with("grant.added role", func(e *Event) { e.Data.Subject = "" }), "data.subject", "is missing"},
		{"grant subject role", with("grant.added role", func(e *Event) { e.Data.Subject = "role:x" }), "data.subject", "names a role, not a group or principal"},
		{"grant both", with("grant.added role", func(e *Event) { e.Data.Action = "db.read" }), "data.action", "a grant names a role or an action, not both"},
		{"grant neither", with("grant.removed", func(e *Event) { e.Data.Role = "" }), "data.role", "is missing (a grant names a role or an action)"},
		{"grant role not role", with("grant.removed", func(e *Event) { e.Data.Role = "group:x" }), "data.role", "names a group, not a role"},
		{"grant bad pattern", with("grant.added action", func(e *Event) { e.Data.Action = "*.read" }), "data.action", "has * somewhere"},
		{"grant no resource", with("grant.added action", func(e *Event) { e.Data.Resource = "" }), "data.resource", "is missing"},
		{"grant bad resource", with("grant.added action", func(e *Event) { e.Data.Resource = "db:prod//orders" }), "data.resource", "has an empty path segment"},
		{"grant resource no kind", with("grant.added action", func(e *Event) { e.Data.Resource = "prod" }), "data.resource", "has no kind"},
		{"grant expiry before", with("grant.added role", func(e *Event) { e.Data.ExpiresAt = tp(t0.Add(-time.Second)) }), "data.expires_at", "not after the event's time"},
		{"grant expiry equal", with("grant.added role", func(e *Event) { e.Data.ExpiresAt = tp(t0) }), "data.expires_at", "not after the event's time"},
		{"grant expiry 2300", with("grant.added role", func(e *Event) { e.Data.ExpiresAt = tp(time.Date(2300, 1, 1, 0, 0, 0, 0, time.UTC)) }), "data.expires_at", "after 2200"},
		{"expires_at on removed", with("grant.removed", func(e *Event) { e.Data.ExpiresAt = tp(t0.Add(time.Hour)) }), "data.expires_at", "is not a field of grant.removed events"},
		{"grant actor role", with("grant.added role", func(e *Event) { e.Data.Actor = "role:admin" }), "data.actor", "names a role, not a principal"},
		{"grant actor no kind", with("grant.added role", func(e *Event) { e.Data.Actor = "bob" }), "data.actor", "has no kind"},
		{"grant approval space", with("grant.added role", func(e *Event) { e.Data.Approval = "CHG 7" }), "data.approval", "forbidden character ' '"},
		{"grant bad tenant", with("grant.added role", func(e *Event) { e.Data.Tenant = "acme corp" }), "data.tenant", "a tenant is letters, digits"},

		// decision
		{"decision no effect", with("decision", func(e *Event) { e.Data.Effect = "" }), "data.effect", "is missing"},
		{"decision bad effect", with("decision", func(e *Event) { e.Data.Effect = "maybe" }), "data.effect", `is "maybe", want "allow" or "deny"`},
		{"decision pattern", with("decision", func(e *Event) { e.Data.Action = "db.*" }), "data.action", "is a pattern; a decision names one action"},
		{"decision star", with("decision", func(e *Event) { e.Data.Action = "*" }), "data.action", "is a pattern"},
		{"decision group", with("decision", func(e *Event) { e.Data.Principal = "group:eng" }), "data.principal", "names a group, not a principal"},
		{"decision no resource", with("decision", func(e *Event) { e.Data.Resource = "" }), "data.resource", "is missing"},
		{"decision reason NUL", with("decision", func(e *Event) { e.Data.Reason = "a\x00b" }), "data.reason", "control character"},
		{"decision reason long", with("decision", func(e *Event) { e.Data.Reason = strings.Repeat("r", 5000) }), "data.reason", "is 5000 bytes long"},
		{"decision actor", with("decision", func(e *Event) { e.Data.Actor = "user:x" }), "data.actor", "is not a field of decision events"},
		{"decision subject", with("decision", func(e *Event) { e.Data.Subject = "user:x" }), "data.subject", "is not a field of decision events"},

		// approval.*
		{"approval no request", with("approval.requested", func(e *Event) { e.Data.Request = "" }), "data.request", "is missing"},
		{"approval no requester", with("approval.requested", func(e *Event) { e.Data.Requester = "" }), "data.requester", "is missing"},
		{"approval requester group", with("approval.requested", func(e *Event) { e.Data.Requester = "group:x" }), "data.requester", "names a group, not a principal"},
		{"approval change array", with("approval.requested", func(e *Event) { e.Data.Change = json.RawMessage(`[1]`) }), "data.change", "must be a JSON object"},
		{"approval change bad", with("approval.requested", func(e *Event) { e.Data.Change = json.RawMessage(`{"a":`) }), "data.change", "must be a JSON object"},
		{"approval no approver", with("approval.granted", func(e *Event) { e.Data.Approver = "" }), "data.approver", "is missing"},
		{"approval approver role", with("approval.rejected", func(e *Event) { e.Data.Approver = "role:x" }), "data.approver", "names a role, not a principal"},
		{"approval change on granted", with("approval.granted", func(e *Event) { e.Data.Change = json.RawMessage(`{}`) }), "data.change", "is not a field of approval.granted events"},
		{"approval requester on granted", with("approval.granted", func(e *Event) { e.Data.Requester = "user:x" }), "data.requester", "is not a field of approval.granted events"},
		{"approval approval", with("approval.granted", func(e *Event) { e.Data.Approval = "CHG-1" }), "data.approval", "is not a field of approval.granted events"},
	}
}

func TestValidateBad(t *testing.T) {
	for _, c := range badEvents() {
		t.Run(c.name, func(t *testing.T) {
			err := Validate(&c.e)
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("Validate = %v, want a *FieldError", err)
			}
			if fe.Field != c.field || !strings.Contains(fe.Msg, c.msg) {
				t.Errorf("Validate = %q, want field %q and message with %q", err, c.field, c.msg)
			}
			if !strings.HasPrefix(err.Error(), c.field+": ") {
				t.Errorf("message %q does not start with the field", err)
			}
			if len(err.Error()) > 400 {
				t.Errorf("message is %d bytes long: %.100q...", len(err.Error()), err)
			}
		})
	}
}

// Every type has a bad case for a missing required field, from the table.
func TestValidateMissingEachRequired(t *testing.T) {
	for name, e := range goodEvents() {
		for _, r := range rulesOf(e.Type) {
			if r.pres != required {
				continue
			}
			e2 := e
			e2.Data = e.Data
			clearField(&e2.Data, r.name)
			err := Validate(&e2)
			if err == nil || err.Error() != "data."+r.name+": is missing" {
				t.Errorf("%s without %s: %v", name, r.name, err)
			}
		}
	}
}

func clearField(d *Data, name string) {
	switch name {
	case "principal":
		d.Principal = ""
	case "group":
		d.Group = ""
	case "member":
		d.Member = ""
	case "role":
		d.Role = ""
	case "action":
		d.Action = ""
	case "includes":
		d.Includes = ""
	case "subject":
		d.Subject = ""
	case "resource":
		d.Resource = ""
	case "effect":
		d.Effect = ""
	case "request":
		d.Request = ""
	case "requester":
		d.Requester = ""
	case "approver":
		d.Approver = ""
	default:
		panic(name)
	}
}
