package analyzer

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/whocould/whocould/event"
	"github.com/whocould/whocould/finding"
)

// Duration is a time.Duration that YAML writes as "90d", "36h" or "15m" (d is 24 hours).
type Duration time.Duration

// ParseDuration parses time.ParseDuration's forms, plus whole days: "90d".
func ParseDuration(s string) (Duration, error) {
	if d, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(d)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("bad duration %q: want a whole number of days such as 90d, or a Go duration such as 36h", s)
		}
		return Duration(time.Duration(n) * 24 * time.Hour), nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("bad duration %q: want a whole number of days such as 90d, or a Go duration such as 36h", s)
	}
	return Duration(d), nil
}

// UnmarshalYAML implements yaml.Unmarshaler.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*d = v
	return nil
}

// MarshalYAML implements yaml.Marshaler.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// String writes whole days as "90d".
func (d Duration) String() string {
	if t := time.Duration(d); t > 0 && t%(24*time.Hour) == 0 {
		return strconv.Itoa(int(t/(24*time.Hour))) + "d"
	}
	return time.Duration(d).String()
}

// D is d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// Config is what the analyzers judge by: the `analyzer:` section of serve's config file, or
// `analyze --config`. The zero value is filled by Defaults.
type Config struct {
	// Schedule is when serve's analyzer target runs every rule (a cron spec; default hourly).
	Schedule string `yaml:"schedule"`
	// Timeout bounds one scheduled run.
	Timeout Duration `yaml:"timeout"`
	// Rules run by default (every rule when empty).
	Rules []string `yaml:"rules"`
	// Concurrency is how many rules run at once (default 1: the rules that judge principal by
	// principal already use every core). 2 suits a ClickHouse store on the same cores: one
	// rule's work goes on while another waits for the server. Each rule running holds its own
	// working set, so the peak memory grows with it.
	Concurrency int `yaml:"concurrency"`

	// Privileged marks roles and resources whose changes need approval, and whose unused grants
	// matter more.
	Privileged Privileged `yaml:"privileged"`

	UnusedGrant               UnusedGrantConfig               `yaml:"unused_grant"`
	PrivilegeCreep            PrivilegeCreepConfig            `yaml:"privilege_creep"`
	AccessAfterDeprovisioning AccessAfterDeprovisioningConfig `yaml:"access_after_deprovisioning"`
	UnauthorisedChange        UnauthorisedChangeConfig        `yaml:"unauthorised_change"`
	MissingApproval           MissingApprovalConfig           `yaml:"missing_approval"`
	// SeparationOfDuties declares the actions nobody may be able to do at once.
	SeparationOfDuties []SoDPair `yaml:"separation_of_duties"`
	// Baseline is the file of the desired state (see Baseline); drift is not judged without one.
	Baseline string `yaml:"baseline"`
	// Severity overrides a rule's severity (rule name → low, medium, high or critical).
	Severity map[string]string `yaml:"severity"`

	// baseline is the loaded Baseline file.
	baseline *Baseline
}

// Privileged names the privileged roles and resources.
type Privileged struct {
	Roles []string `yaml:"roles"`
	// Resources: a change to a grant on a resource one of these covers (event.Covers) is
	// privileged.
	Resources []string `yaml:"resources"`
}

// UnusedGrantConfig configures the unused-grant rule.
type UnusedGrantConfig struct {
	// Window: a grant none of whose permissions was used by an allowed decision in the last
	// Window is unused; grants younger than Window are not judged (default 90d).
	Window Duration `yaml:"window"`
}

// PrivilegeCreepConfig configures the privilege-creep rule.
type PrivilegeCreepConfig struct {
	// Window and Growth: a principal whose entitlements grew by at least Growth over the last
	// Window is flagged (defaults 30d and 10).
	Window Duration `yaml:"window"`
	Growth int      `yaml:"growth"`
	// Grace after a move (a change of one of MoveAttributes, or leaving a group) within which
	// the entitlements of the old position should have gone (default 30d).
	Grace          Duration `yaml:"grace"`
	MoveAttributes []string `yaml:"move_attributes"` // default department, title, manager
	// PeerPercent and MinPeers: an entitlement held by fewer than PeerPercent% of a principal's
	// peers (same department and title, or the same groups) is an outlier, when the principal
	// has at least MinPeers peers (defaults 10 and 3).
	PeerPercent float64 `yaml:"peer_percent"`
	MinPeers    int     `yaml:"min_peers"`
}

// AccessAfterDeprovisioningConfig configures the access-after-deprovisioning rule.
type AccessAfterDeprovisioningConfig struct {
	// RevokeWithin: a leaver whose last grant or membership ended later than this after the
	// disablement is a time-to-revoke finding (default 24h).
	RevokeWithin Duration `yaml:"revoke_within"`
}

// AdminCheck is one admin action a change's actor must be able to do: Action on Resource, both
// templates in which {resource}, {role}, {action}, {subject}, {group}, {member}, {principal}
// and {includes} are the change's fields.
type AdminCheck struct {
	Action   string `yaml:"action"`
	Resource string `yaml:"resource"`
}

// UnauthorisedChangeConfig configures the unauthorised-change rule.
type UnauthorisedChangeConfig struct {
	// Checks lists, by change type, what its actor must be able to do at the change's time.
	// Types not listed take DefaultChecks'; an empty list turns a type off.
	Checks map[string][]AdminCheck `yaml:"checks"`
}

// MissingApprovalConfig configures the missing-approval rule.
type MissingApprovalConfig struct {
	// Approvers is how many distinct approvers, none of them the requester, must have granted
	// the approval before the change (default 1).
	Approvers int `yaml:"approvers"`
	// ApproveAction, when set, is the action an approver must be able to do on the change's
	// target at the time of approving (for example iam.approve).
	ApproveAction string `yaml:"approve_action"`
}

// SoDPair declares two actions incompatible: nobody may be able to do both at once on
// overlapping resources (one covering the other) within Resource (default everything).
type SoDPair struct {
	Name     string   `yaml:"name"`
	Actions  []string `yaml:"actions"`
	Resource string   `yaml:"resource"`
}

// DefaultChecks are the admin actions asked of change actors when the config does not say.
var DefaultChecks = map[string][]AdminCheck{
	string(event.GrantAdded):            {{Action: "iam.grant", Resource: "{resource}"}},
	string(event.GrantRemoved):          {{Action: "iam.grant", Resource: "{resource}"}},
	string(event.MembershipAdded):       {{Action: "iam.membership", Resource: "{group}"}},
	string(event.MembershipRemoved):     {{Action: "iam.membership", Resource: "{group}"}},
	string(event.RolePermissionAdded):   {{Action: "iam.role", Resource: "{role}"}},
	string(event.RolePermissionRemoved): {{Action: "iam.role", Resource: "{role}"}},
	string(event.RoleIncludeAdded):      {{Action: "iam.role", Resource: "{role}"}},
	string(event.RoleIncludeRemoved):    {{Action: "iam.role", Resource: "{role}"}},
	string(event.RoleCreated):           {{Action: "iam.role", Resource: "{role}"}},
	string(event.RoleDeleted):           {{Action: "iam.role", Resource: "{role}"}},
	string(event.GroupCreated):          {{Action: "iam.group", Resource: "{group}"}},
	string(event.GroupDeleted):          {{Action: "iam.group", Resource: "{group}"}},
	string(event.PrincipalCreated):      {{Action: "iam.principal", Resource: "{principal}"}},
	string(event.PrincipalUpdated):      {{Action: "iam.principal", Resource: "{principal}"}},
	string(event.PrincipalDisabled):     {{Action: "iam.principal", Resource: "{principal}"}},
	string(event.PrincipalEnabled):      {{Action: "iam.principal", Resource: "{principal}"}},
	string(event.PrincipalDeleted):      {{Action: "iam.principal", Resource: "{principal}"}},
}

// Defaults fills what c leaves unset.
func (c *Config) Defaults() {
	if c.Schedule == "" {
		c.Schedule = "@hourly"
	}
	if c.Timeout == 0 {
		c.Timeout = Duration(30 * time.Minute)
	}
	if c.UnusedGrant.Window == 0 {
		c.UnusedGrant.Window = Duration(90 * 24 * time.Hour)
	}
	pc := &c.PrivilegeCreep
	if pc.Window == 0 {
		pc.Window = Duration(30 * 24 * time.Hour)
	}
	if pc.Growth == 0 {
		pc.Growth = 10
	}
	if pc.Grace == 0 {
		pc.Grace = Duration(30 * 24 * time.Hour)
	}
	if pc.MoveAttributes == nil {
		pc.MoveAttributes = []string{"department", "title", "manager"}
	}
	if pc.PeerPercent == 0 {
		pc.PeerPercent = 10
	}
	if pc.MinPeers == 0 {
		pc.MinPeers = 3
	}
	if c.AccessAfterDeprovisioning.RevokeWithin == 0 {
		c.AccessAfterDeprovisioning.RevokeWithin = Duration(24 * time.Hour)
	}
	if c.MissingApproval.Approvers == 0 {
		c.MissingApproval.Approvers = 1
	}
}

// Validate checks c (after Defaults) and loads its baseline.
func (c *Config) Validate() error {
	var errs []error
	if c.Concurrency < 0 {
		errs = append(errs, fmt.Errorf("concurrency: %d: want 1 or more (0: 1)", c.Concurrency))
	}
	for _, r := range c.Rules {
		if !slices.Contains(finding.Rules, r) {
			errs = append(errs, fmt.Errorf("rules: unknown rule %q (the rules are %s)", r, strings.Join(finding.Rules, ", ")))
		}
	}
	for r, s := range c.Severity {
		if !slices.Contains(finding.Rules, r) {
			errs = append(errs, fmt.Errorf("severity: unknown rule %q", r))
		}
		if !slices.Contains([]string{finding.Low, finding.Medium, finding.High, finding.Critical}, s) {
			errs = append(errs, fmt.Errorf("severity: %s: %q is not low, medium, high or critical", r, s))
		}
	}
	if c.PrivilegeCreep.Growth < 0 || c.PrivilegeCreep.PeerPercent < 0 || c.PrivilegeCreep.PeerPercent > 100 || c.PrivilegeCreep.MinPeers < 0 {
		errs = append(errs, errors.New("privilege_creep: growth and min_peers must not be negative, peer_percent must be within 0..100"))
	}
	if c.AccessAfterDeprovisioning.RevokeWithin < 0 {
		errs = append(errs, errors.New("access_after_deprovisioning: revoke_within must not be negative"))
	}
	if c.MissingApproval.Approvers < 0 {
		errs = append(errs, errors.New("missing_approval: approvers must not be negative"))
	}
	for typ := range c.UnauthorisedChange.Checks {
		if t := event.Type(typ); !t.IsChange() {
			errs = append(errs, fmt.Errorf("unauthorised_change: checks: %q is not a change event type", typ))
		}
	}
	for i, p := range c.SeparationOfDuties {
		if len(p.Actions) != 2 || p.Actions[0] == "" || p.Actions[1] == "" {
			errs = append(errs, fmt.Errorf("separation_of_duties[%d]: needs two actions", i))
		}
		if p.Name == "" {
			errs = append(errs, fmt.Errorf("separation_of_duties[%d]: needs a name", i))
		}
	}
	if c.Baseline != "" && c.baseline == nil {
		b, err := LoadBaseline(c.Baseline)
		if err != nil {
			errs = append(errs, fmt.Errorf("baseline: %w", err))
		}
		c.baseline = b
	}
	return errors.Join(errs...)
}

// SetBaseline sets the loaded baseline (for a config built in code).
func (c *Config) SetBaseline(b *Baseline) { c.baseline = b }

// LoadedBaseline is the baseline the drift rule judges by (nil: none).
func (c *Config) LoadedBaseline() *Baseline { return c.baseline }

// LoadConfig reads a config file (the analyzer section alone), applies the defaults and
// validates it.
func LoadConfig(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var c Config
	if err := yamlStrict(b, &c); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	c.Defaults()
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &c, nil
}

func yamlStrict(b []byte, v any) error {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	return nil
}
