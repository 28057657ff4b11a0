package analyzer

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/whocould/whocould/event"
)

// Baseline is the desired state, signed off and kept under version control: role definitions,
// the grants that must hold, and the direct grants that may. The drift rule compares the map at
// Now with it (see testdata/baseline.yaml for an example):
//
//   - a grant holding at Now to a group that Grants does not list, or to a principal that
//     neither Grants lists nor an entry of AllowedDirectGrants matches, is an extra grant;
//   - a grant of Grants that does not hold at Now is a missing grant;
//   - a role of Roles whose permissions or direct includes at Now differ from its entry is a
//     changed role (one that holds none at Now no longer exists, as far as the baseline goes).
//
// Roles not listed in Roles are not judged.
type Baseline struct {
	// Tenant, when set, is the only tenant the baseline describes: drift is not judged for the
	// others. Empty: every tenant.
	Tenant string `yaml:"tenant"`
	// SignedOff says who approved this state and when (shown in the evidence).
	SignedOff *SignOff `yaml:"signed_off"`
	// Roles are the roles' signed-off definitions, by role id.
	Roles map[string]BaselineRole `yaml:"roles"`
	// Grants must hold, and are the only grants to groups that may.
	Grants []BaselineGrant `yaml:"grants"`
	// AllowedDirectGrants are the grants to principals that may hold without being listed in
	// Grants (and need not hold). In these entries a field "*" matches any value (the literal
	// "*" among them); every other value must match exactly. Subject is a principal or "*".
	AllowedDirectGrants []BaselineGrant `yaml:"allowed_direct_grants"`
}

// SignOff is who signed a baseline off, and when.
type SignOff struct {
	By string    `yaml:"by"`
	At time.Time `yaml:"at"`
}

// BaselineRole is a role's signed-off definition: its permissions (action patterns) and the roles
// it includes directly.
type BaselineRole struct {
	Permissions []string `yaml:"permissions"`
	Includes    []string `yaml:"includes"`
}

// BaselineGrant is a grant of the baseline: exactly one of Role and Action is set.
type BaselineGrant struct {
	Subject  string `yaml:"subject"`
	Role     string `yaml:"role"`
	Action   string `yaml:"action"`
	Resource string `yaml:"resource"`
}

// String is the grant as explanations name it: grant(subject, role or action, resource).
func (g BaselineGrant) String() string {
	what := g.Role
	if what == "" {
		what = g.Action
	}
	return fmt.Sprintf("grant(%s, %s, %s)", g.Subject, what, g.Resource)
}

// allows reports whether the allowed-direct-grant pattern g matches the grant x: each field
// equal, or "*" in g. A role pattern matches only role grants, an action pattern only action
// grants.
func (g BaselineGrant) allows(x BaselineGrant) bool {
	field := func(p, v string) bool { return p == "*" || p == v }
	if (g.Role != "") != (x.Role != "") {
		return false
	}
	return field(g.Subject, x.Subject) && field(g.Resource, x.Resource) &&
		(g.Role == "" || field(g.Role, x.Role)) && (g.Action == "" || field(g.Action, x.Action))
}

// LoadBaseline reads and validates a baseline file; each error names the file and the entry.
func LoadBaseline(path string) (*Baseline, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read baseline: %w", err)
	}
	var bl Baseline
	if err := yamlStrict(b, &bl); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if err := bl.validate(path + ": "); err != nil {
		return nil, err
	}
	return &bl, nil
}

// Validate checks the baseline: ids well formed (roles of kind role, subjects principals or
// groups, the subjects of AllowedDirectGrants principals or "*"), action patterns and resources
// well formed, each grant naming exactly one of role and action, and no entry listed twice.
// Each error names the entry (roles[role:x], grants[3], allowed_direct_grants[0]).
func (b *Baseline) Validate() error { return b.validate("") }

// validate is Validate, each error starting with prefix (the file).
func (b *Baseline) validate(prefix string) error {
	var errs []error
	bad := func(where string, err error) { errs = append(errs, fmt.Errorf("%s%s: %w", prefix, where, err)) }
	if b.Tenant != "" {
		if !tenantName(b.Tenant) {
			bad("tenant", fmt.Errorf("%q is not a tenant name (letters, digits, '.', '_' and '-', starting with a letter or digit)", b.Tenant))
		}
	}
	if b.SignedOff != nil && b.SignedOff.By == "" {
		bad("signed_off", errors.New("by is empty"))
	}
	roles := make([]string, 0, len(b.Roles))
	for r := range b.Roles {
		roles = append(roles, r)
	}
	slices.Sort(roles)
	for _, r := range roles {
		where := fmt.Sprintf("roles[%s]", r)
		if err := event.CheckIDOfKind(r, event.KindRole); err != nil {
			bad(where, fmt.Errorf("role id %q %w", r, err))
		}
		def := b.Roles[r]
		for i, p := range def.Permissions {
			if err := event.CheckAction(p); err != nil {
				bad(fmt.Sprintf("%s.permissions[%d]", where, i), fmt.Errorf("action pattern %q %w", p, err))
			} else if slices.Index(def.Permissions, p) < i {
				bad(fmt.Sprintf("%s.permissions[%d]", where, i), fmt.Errorf("%q is listed twice", p))
			}
		}
		for i, inc := range def.Includes {
			switch {
			case event.CheckIDOfKind(inc, event.KindRole) != nil:
				bad(fmt.Sprintf("%s.includes[%d]", where, i), fmt.Errorf("%q %w", inc, event.CheckIDOfKind(inc, event.KindRole)))
			case slices.Index(def.Includes, inc) < i:
				bad(fmt.Sprintf("%s.includes[%d]", where, i), fmt.Errorf("%q is listed twice", inc))
			case inc == r:
				bad(fmt.Sprintf("%s.includes[%d]", where, i), errors.New("a role cannot include itself"))
			}
		}
	}
	check := func(list string, gs []BaselineGrant, allowed bool) {
		first := make(map[BaselineGrant]int, len(gs))
		for i, g := range gs {
			where := fmt.Sprintf("%s[%d]", list, i)
			n := len(errs)
			switch {
			case allowed && g.Subject == "*":
			case g.Subject == "":
				bad(where, errors.New("subject is missing"))
			case event.CheckID(g.Subject) != nil:
				bad(where, fmt.Errorf("subject %q %w", g.Subject, event.CheckID(g.Subject)))
			case event.KindOf(g.Subject) == event.KindRole:
				bad(where, fmt.Errorf("subject %q is a role (want a principal or a group)", g.Subject))
			case allowed && event.KindOf(g.Subject) != event.KindPrincipal:
				bad(where, fmt.Errorf("subject %q is a group: a direct grant is to a principal (list group grants in grants)", g.Subject))
			}
			switch {
			case (g.Role == "") == (g.Action == ""):
				bad(where, errors.New("name exactly one of role and action"))
			case allowed && g.Role == "*", allowed && g.Action == "*":
			case g.Role != "":
				if err := event.CheckIDOfKind(g.Role, event.KindRole); err != nil {
					bad(where, fmt.Errorf("role %q %w", g.Role, err))
				}
			default:
				if err := event.CheckAction(g.Action); err != nil {
					bad(where, fmt.Errorf("action %q %w", g.Action, err))
				}
			}
			switch {
			case g.Resource == "":
				bad(where, errors.New("resource is missing"))
			default:
				if err := event.CheckResource(g.Resource); err != nil {
					bad(where, fmt.Errorf("resource %q %w", g.Resource, err))
				}
			}
			if j, dup := first[g]; dup && len(errs) == n {
				bad(where, fmt.Errorf("%s is listed twice (also at %s[%d])", g, list, j))
			} else if !dup {
				first[g] = i
			}
		}
	}
	check("grants", b.Grants, false)
	check("allowed_direct_grants", b.AllowedDirectGrants, true)
	return errors.Join(errs...)
}

// tenantName reports whether s is a well-formed tenant name, as events' tenants are.
func tenantName(s string) bool {
	if s == "" || len(s) > event.MaxTenantLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !(alnum || i > 0 && (c == '.' || c == '_' || c == '-')) {
			return false
		}
	}
	return true
}
