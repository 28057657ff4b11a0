package analyzer

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestLoadBaselineExample(t *testing.T) {
	b, err := LoadBaseline("testdata/baseline.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if b.Tenant != "default" || b.SignedOff == nil || b.SignedOff.By != "user:ciso" ||
		!b.SignedOff.At.Equal(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("tenant %q, signed off %+v", b.Tenant, b.SignedOff)
	}
	if len(b.Roles) != 3 || len(b.Roles["role:db-writer"].Includes) != 1 || len(b.Grants) != 4 || len(b.AllowedDirectGrants) != 2 {
		t.Errorf("loaded %d roles, %d grants, %d allowed direct grants", len(b.Roles), len(b.Grants), len(b.AllowedDirectGrants))
	}
	// The config loads it too.
	cfg := &Config{Baseline: "testdata/baseline.yaml"}
	cfg.Defaults()
	if err := cfg.Validate(); err != nil || cfg.baseline == nil {
		t.Fatalf("config with the baseline: %v", err)
	}
}

func TestLoadBaselineErrors(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		name, yaml string
		want       []string // each in the error
	}{
		{"unknown field", "grants:\n  - {subject: group:a, role: role:r, resource: db:x, until: tomorrow}\n", []string{"until"}},
		{"duplicate role key", "roles:\n  role:a: {permissions: [x]}\n  role:a: {permissions: [y]}\n", []string{"already defined"}},
		{"role id of another kind", "roles:\n  group:a: {permissions: [x]}\n", []string{"roles[group:a]", "names a group, not a role"}},
		{"bad permission", "roles:\n  role:a: {permissions: [\"x.*.y\"]}\n", []string{"roles[role:a].permissions[0]"}},
		{"duplicate permission", "roles:\n  role:a: {permissions: [x, x]}\n", []string{"roles[role:a].permissions[1]", "listed twice"}},
		{"include not a role", "roles:\n  role:a: {includes: [group:b]}\n", []string{"roles[role:a].includes[0]"}},
		{"self include", "roles:\n  role:a: {includes: [role:a]}\n", []string{"roles[role:a].includes[0]", "itself"}},
		{"role subject", "grants:\n  - {subject: role:a, role: role:r, resource: db:x}\n", []string{"grants[0]", "is a role"}},
		{"malformed subject", "grants:\n  - {subject: alice, role: role:r, resource: db:x}\n", []string{"grants[0]", "alice"}},
		{"both role and action", "grants:\n  - {subject: group:a, role: role:r, action: x, resource: db:x}\n", []string{"grants[0]", "exactly one of role and action"}},
		{"neither role nor action", "grants:\n  - {subject: group:a, resource: db:x}\n", []string{"grants[0]", "exactly one of role and action"}},
		{"granted role not a role", "grants:\n  - {subject: group:a, role: group:r, resource: db:x}\n", []string{"grants[0]", "group:r"}},
		{"bad resource", "grants:\n  - {subject: group:a, role: role:r, resource: \"db:x//y\"}\n", []string{"grants[0]", "empty path segment"}},
		{"missing resource", "grants:\n  - {subject: group:a, role: role:r}\n", []string{"grants[0]", "resource is missing"}},
		{"duplicate grant", "grants:\n  - {subject: group:a, role: role:r, resource: db:x}\n  - {subject: group:b, role: role:r, resource: db:x}\n  - {subject: group:a, role: role:r, resource: db:x}\n",
			[]string{"grants[2]", "also at grants[0]"}},
		{"direct grant to a group", "allowed_direct_grants:\n  - {subject: group:a, action: x, resource: \"*\"}\n", []string{"allowed_direct_grants[0]", "is a group"}},
		{"duplicate allowed", "allowed_direct_grants:\n  - {subject: \"*\", action: x, resource: \"*\"}\n  - {subject: \"*\", action: x, resource: \"*\"}\n",
			[]string{"allowed_direct_grants[1]", "listed twice"}},
		{"bad tenant", "tenant: \"-x\"\n", []string{"tenant"}},
		{"sign-off without signer", "signed_off: {at: 2026-01-01T00:00:00Z}\n", []string{"signed_off"}},
	} {
		path := filepath.Join(dir, strings.ReplaceAll(c.name, " ", "-")+".yaml")
		if err := os.WriteFile(path, []byte(c.yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := LoadBaseline(path)
		if err == nil {
			t.Errorf("%s: loaded, want an error", c.name)
			continue
		}
		for _, w := range append(c.want, path) {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q does not contain %q", c.name, err, w)
			}
		}
	}
	// "*" in an allowed direct grant is not an error; elsewhere it is not an id.
	ok := &Baseline{AllowedDirectGrants: []BaselineGrant{{Subject: "*", Role: "*", Resource: "*"}}}
	if err := ok.Validate(); err != nil {
		t.Errorf("allowed direct grant of anything: %v", err)
	}
	bad := &Baseline{Grants: []BaselineGrant{{Subject: "*", Role: "role:r", Resource: "*"}}}
	if err := bad.Validate(); err == nil {
		t.Error(`grant to subject "*": want an error`)
	}
	if _, err := LoadBaseline(filepath.Join(dir, "absent.yaml")); err == nil || !strings.Contains(err.Error(), "absent.yaml") {
		t.Errorf("absent file: %v", err)
	}
}
