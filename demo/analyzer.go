package demo

import (
	"bytes"
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/whocould/whocould/analyzer"
	"github.com/whocould/whocould/event"
	"github.com/whocould/whocould/finding"
)

// BaselineFile is the name AnalyzerConfigYAML gives the baseline (relative to the config file).
const BaselineFile = "baseline.yaml"

// analyzerConfigYAML is the analyzers' configuration that fits the story: the `analyzer:`
// section of serve's config file (what analyzer.LoadConfig reads). It names roles, resources and
// actions of the organisation, never its people, so it fits every seed.
const analyzerConfigYAML = `# The analyzers' configuration for the demo organisation (Acme): what is privileged, which
# duties must stay separate, who may change what, and the signed-off baseline.
#
# Privileged: owning the databases (role:db-owner, which includes db-admin, db-writer and
# db-reader: a permission added to any of them is a privileged change), approving payments, and
# the IT admins' rights over the directory (iam.* on group:* and team:*: joining group:it-admins
# is privileged). Changes that raise access to them need an approval granted before the change,
# by someone other than its requester and its actor.
privileged:
  roles: [role:db-owner, role:payment-approver]
  resources: ["group:*", "team:*"]

unused_grant:
  window: 90d

privilege_creep:
  # Growth: 10 or more new entitlements within 30 days (such as a move into a team with wide
  # roles).
  window: 30d
  growth: 10
  # After a move (a new team, department or manager), the old team's access should be gone
  # within 30 days. A new title alone (a promotion within the team) is no move.
  grace: 30d
  move_attributes: [department, team, manager]
  # An outlier: an entitlement fewer than 5% of a principal's peers hold, among at least 5 peers.
  peer_percent: 5
  min_peers: 5

unauthorised_change:
  # Who may change what, as the systems' own IAM models it:
  #   - grants: the right to assign that role (or action) on the resource. Engineering managers
  #     hold iam.assign-role:role:developer on codesec:acme; the codesec admins, the DBAs and
  #     the access broker hold iam.* on their systems.
  #   - memberships and groups: iam.membership and iam.group on the group (the IT admins hold
  #     iam.* on group:* and team:*).
  #   - people: managing anyone in the directory is managing group:all-staff (the IT admins).
  #   - role definitions come with the products (codesec releases, postgres): the demo's sources
  #     do not say who may edit them, so they are not judged here (missing-approval and drift
  #     watch them).
  checks:
    grant.added:
      - {action: "iam.assign-role:{role}", resource: "{resource}"}
      - {action: "iam.assign-action:{action}", resource: "{resource}"}
    grant.removed:
      - {action: "iam.assign-role:{role}", resource: "{resource}"}
      - {action: "iam.assign-action:{action}", resource: "{resource}"}
    principal.created: [{action: iam.principal, resource: "group:all-staff"}]
    principal.updated: [{action: iam.principal, resource: "group:all-staff"}]
    principal.disabled: [{action: iam.principal, resource: "group:all-staff"}]
    principal.enabled: [{action: iam.principal, resource: "group:all-staff"}]
    principal.deleted: [{action: iam.principal, resource: "group:all-staff"}]
    role.created: []
    role.deleted: []
    role.permission.added: []
    role.permission.removed: []
    role.include.added: []
    role.include.removed: []

missing_approval:
  approvers: 1

separation_of_duties:
  - name: create-and-approve-payments
    actions: [payment.create, payment.approve]
    resource: "payments:*"

# The access the CISO signed off when whocould was installed (the state of 1 January).
baseline: ` + BaselineFile + `
`

// AnalyzerConfigYAML is the analyzers' configuration that fits the history (see AnalyzerConfig),
// as the commented YAML of an `analyzer:` section; its baseline is the file BaselineFile next to
// it, whose YAML BaselineYAML gives.
func AnalyzerConfigYAML() []byte { return []byte(analyzerConfigYAML) }

// AnalyzerConfig is the analyzers' configuration that fits the history's stories, with the
// history's Baseline loaded: every rule has true cases to find in the history, judged at h.End.
func AnalyzerConfig(h *History) (*analyzer.Config, error) {
	var c analyzer.Config
	dec := yaml.NewDecoder(bytes.NewReader(AnalyzerConfigYAML()))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("demo analyzer config: %w", err)
	}
	c.Defaults()
	b := Baseline(h)
	if err := b.Validate(); err != nil {
		return nil, fmt.Errorf("demo baseline: %w", err)
	}
	c.SetBaseline(b)
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("demo analyzer config: %w", err)
	}
	return &c, nil
}

// SignedOff is when the history's baseline was signed off: the end of the bootstrap (the import
// of every system's state on 1 January), before anything else happened.
func (h *History) SignedOff() time.Time {
	// The bootstrap's events are a second or two apart; the first story event is days later.
	var last time.Time
	for i := range h.Events {
		e := &h.Events[i]
		if !e.Type.IsChange() {
			continue
		}
		if !last.IsZero() && e.Time.Sub(last) > time.Hour {
			break
		}
		last = e.Time
	}
	return last.Add(time.Second).Truncate(time.Second)
}

// Baseline is the history's signed-off state: every role's definition and every grant as the
// bootstrap left them, signed off by the CISO at SignedOff. Direct grants of role:developer on
// codesec:acme (the joiners' process) may hold without being listed.
func Baseline(h *History) *analyzer.Baseline {
	at := h.SignedOff()
	m := modelAt(h.Events, at)
	tenant := h.Options.Tenant
	if tenant == "" {
		tenant = event.DefaultTenant
	}
	b := &analyzer.Baseline{Tenant: tenant, SignedOff: &analyzer.SignOff{By: h.Org.Cast["ciso"], At: at},
		Roles: map[string]analyzer.BaselineRole{}, Grants: []analyzer.BaselineGrant{}}
	for role := range m.exists {
		if event.KindOf(role) != event.KindRole {
			continue
		}
		b.Roles[role] = analyzer.BaselineRole{Permissions: sortedKeys(m.perms[role]), Includes: sortedKeys(m.incl[role])}
	}
	developer := analyzer.BaselineGrant{Subject: "*", Role: "role:developer", Resource: "codesec:acme"}
	b.AllowedDirectGrants = []analyzer.BaselineGrant{developer}
	for subject, gs := range m.grants {
		for k := range gs {
			g := analyzer.BaselineGrant{Subject: subject, Role: k.role, Action: k.action, Resource: k.resource}
			if developer.Role == g.Role && developer.Resource == g.Resource && event.KindOf(subject) == event.KindPrincipal {
				continue
			}
			b.Grants = append(b.Grants, g)
		}
	}
	slices.SortFunc(b.Grants, func(x, y analyzer.BaselineGrant) int {
		return strings.Compare(x.Subject+"\x00"+x.Role+"\x00"+x.Action+"\x00"+x.Resource, y.Subject+"\x00"+y.Role+"\x00"+y.Action+"\x00"+y.Resource)
	})
	return b
}

// BaselineYAML is a history's Baseline as a commented YAML file: lists of names and each grant
// on one line.
func BaselineYAML(b *analyzer.Baseline) ([]byte, error) {
	var doc yaml.Node
	if err := doc.Encode(b); err != nil {
		return nil, fmt.Errorf("demo baseline: %w", err)
	}
	compact(&doc)
	var buf bytes.Buffer
	fmt.Fprintf(&buf, "# The access %s signed off on %s: every role's definition and every\n"+
		"# grant as the import of every system's state on 1 January left them. The drift rule compares\n"+
		"# the permission map with it. Direct grants of role:developer on codesec:acme (given to every\n"+
		"# engineer who joins) may hold without being listed.\n", b.SignedOff.By, b.SignedOff.At.Format(time.RFC3339))
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return nil, fmt.Errorf("demo baseline: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("demo baseline: %w", err)
	}
	return buf.Bytes(), nil
}

// compact writes n's sequences of scalars and its mappings of scalars in flow style, and drops
// the empty strings and lists of mappings (a grant's role or action, a role's includes).
func compact(n *yaml.Node) {
	scalars := len(n.Content) > 0
	for _, c := range n.Content {
		compact(c)
		scalars = scalars && c.Kind == yaml.ScalarNode
	}
	if n.Kind == yaml.MappingNode {
		kept := n.Content[:0]
		for i := 0; i+1 < len(n.Content); i += 2 {
			if v := n.Content[i+1]; !(v.Kind == yaml.ScalarNode && v.Value == "" || v.Kind == yaml.SequenceNode && len(v.Content) == 0) {
				kept = append(kept, n.Content[i], v)
			}
		}
		n.Content = kept
	}
	if scalars && (n.Kind == yaml.SequenceNode || n.Kind == yaml.MappingNode) {
		n.Style = yaml.FlowStyle
	}
}

// ruleStories are, for each rule, the seeded stories it should tell, the most telling first:
// each a key of Org.Cast (the finding's principal), optionally followed by "/kind" (the finding's
// kind) and "@resource" (its resource).
var ruleStories = map[string][]string{
	finding.UnusedGrant:               {"unused-direct-grant@db:prod/customers", "leaver-kept-access", "cto@codesec:acme"},
	finding.PrivilegeCreep:            {"privilege-creep/kept-after-move", "unused-direct-grant", "unauthorised-target"},
	finding.AccessAfterDeprovisioning: {"leaver-kept-access/decisions-after", "leaver-kept-access/still-holds", "deleted-leaver"},
	finding.UnauthorisedChange:        {"unauthorised-actor"},
	finding.SelfService:               {"self-escalation", "self-approver"},
	finding.MissingApproval:           {"dba-2", "break-glass", "self-approved-for"},
	finding.SeparationOfDuties:        {"separation-of-duties"},
	finding.Drift:                     {"unused-direct-grant"},
	finding.ShadowAccess:              {"shadow-access", "leaver-kept-access", "payments-approver"},
}

// Highlights picks at most n findings of each rule that tell the history's stories, in
// finding.Rules order. Within a rule, findings rank by the story they tell (ruleStories), then
// severity, open before resolved, the rarer kinds of the rule first, and time. The picks are the
// best finding of each story first, then the best of each kind about a principal not shown yet,
// then the best of each kind, then the best about a principal not shown yet, then the rest.
func Highlights(h *History, fs []finding.Finding, n int) []finding.Finding {
	rank := map[string]int{finding.Critical: 0, finding.High: 1, finding.Medium: 2, finding.Low: 3}
	var out []finding.Finding
	for _, rule := range finding.Rules {
		stories := ruleStories[rule]
		story := func(f *finding.Finding) int {
			for i, s := range stories {
				s, resource, _ := strings.Cut(s, "@")
				key, kind, _ := strings.Cut(s, "/")
				if id := h.Org.Cast[key]; id != "" && f.Principal == id && (kind == "" || f.Kind == kind) &&
					(resource == "" || f.Resource == resource) {
					return i
				}
			}
			return len(stories)
		}
		var of []finding.Finding
		kinds := map[string]int{}
		for _, f := range fs {
			if f.Rule == rule {
				of = append(of, f)
				kinds[f.Kind]++
			}
		}
		resolved := func(f *finding.Finding) int {
			if f.Status == finding.Resolved {
				return 1
			}
			return 0
		}
		slices.SortStableFunc(of, func(a, b finding.Finding) int {
			return cmp.Or(cmp.Compare(story(&a), story(&b)), cmp.Compare(rank[a.Severity], rank[b.Severity]),
				cmp.Compare(resolved(&a), resolved(&b)), cmp.Compare(kinds[a.Kind], kinds[b.Kind]),
				a.Since.Compare(b.Since), cmp.Compare(a.ID, b.ID))
		})
		picked := make([]bool, len(of))
		principals, shownKinds, told := map[string]bool{}, map[string]bool{}, map[int]bool{}
		count := 0
		for _, pass := range []func(f *finding.Finding) bool{
			func(f *finding.Finding) bool { s := story(f); return s < len(stories) && !told[s] },
			func(f *finding.Finding) bool { return !shownKinds[f.Kind] && !principals[f.Principal] },
			func(f *finding.Finding) bool { return !shownKinds[f.Kind] },
			func(f *finding.Finding) bool { return !principals[f.Principal] },
			func(*finding.Finding) bool { return true },
		} {
			for i := range of {
				if count < n && !picked[i] && pass(&of[i]) {
					picked[i], principals[of[i].Principal], shownKinds[of[i].Kind], told[story(&of[i])] = true, true, true, true
					count++
				}
			}
		}
		for i := range of {
			if picked[i] {
				out = append(out, of[i])
			}
		}
	}
	return out
}
