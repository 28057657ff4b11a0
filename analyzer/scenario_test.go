package analyzer_test

// The rules' scenarios: testdata/scenarios/*.yaml, each a history, a config, a time to judge at,
// and exactly the findings the rules it names must give — run on the embedded store and on
// ClickHouse, twice on each (the second run must find the same ids and open nothing new).
//
// A file:
//
//	description: what the file pins down
//	date: 2026-01-05          # optional, as in testdata/scenarios (times of day on it)
//	now: "2026-04-10 00:00"    # the time the rules judge at
//	rules: [unused-grant]      # the rules run; their findings must be exactly those listed
//	config: {unused_grant: {window: 90d}}   # optional: the analyzer config (YAML of analyzer.Config)
//	baseline: {...}            # optional: the baseline (YAML of analyzer.Baseline)
//	events: [...]              # as in testdata/scenarios
//	findings:                  # every finding of the rules run, in any order
//	  - rule: unused-grant     # required
//	    kind: ...              # optional, like every field below: when given, must equal
//	    principal: user:alice
//	    action: db.read
//	    resource: db:prod
//	    severity: low
//	    status: open           # open, or resolved for a condition in the past (Ended set)
//	    since: "2026-01-05 10:00"
//	    ended: "2026-02-01 00:00"
//	    summary_contains: "not used"        # substrings of the summary
//	    evidence_contains: ["grant(user:alice"]  # each a substring of some evidence text
//	    details: {unused_days: 95}          # each key must equal the finding's detail (as JSON)

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/whocould/whocould/analyzer"
	"github.com/whocould/whocould/event"
	"github.com/whocould/whocould/finding"
	"github.com/whocould/whocould/internal/chtest"
	"github.com/whocould/whocould/internal/scenario"
	"github.com/whocould/whocould/store/clickhouse"
	"github.com/whocould/whocould/store/embedded"
)

type scenarioFile struct {
	Description string               `yaml:"description"`
	Date        string               `yaml:"date"`
	Now         string               `yaml:"now"`
	Rules       []string             `yaml:"rules"`
	Config      yaml.Node            `yaml:"config"`
	Baseline    *analyzer.Baseline   `yaml:"baseline"`
	Events      []scenario.EventYAML `yaml:"events"`
	Findings    []expectedFinding    `yaml:"findings"`
}

type expectedFinding struct {
	Rule             string         `yaml:"rule"`
	Kind             string         `yaml:"kind"`
	Principal        string         `yaml:"principal"`
	Action           string         `yaml:"action"`
	Resource         string         `yaml:"resource"`
	Severity         string         `yaml:"severity"`
	Status           string         `yaml:"status"`
	Since            string         `yaml:"since"`
	Ended            string         `yaml:"ended"`
	SummaryContains  string         `yaml:"summary_contains"`
	EvidenceContains []string       `yaml:"evidence_contains"`
	Details          map[string]any `yaml:"details"`
}

type loadedScenario struct {
	name   string
	file   scenarioFile
	now    time.Time
	config *analyzer.Config
	recs   []event.Record
}

func loadScenario(t *testing.T, path string) *loadedScenario {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(strings.NewReader(string(b)))
	dec.KnownFields(true)
	var f scenarioFile
	if err := dec.Decode(&f); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	s := &loadedScenario{name: filepath.Base(path), file: f}
	if s.now, err = scenario.ParseTime(f.Now, f.Date); err != nil {
		t.Fatalf("%s: now: %v", path, err)
	}
	if len(f.Rules) == 0 {
		t.Fatalf("%s: rules: name the rules run", path)
	}
	s.config = &analyzer.Config{}
	if f.Config.Kind != 0 {
		b, _ := yaml.Marshal(&f.Config)
		dec := yaml.NewDecoder(strings.NewReader(string(b)))
		dec.KnownFields(true)
		if err := dec.Decode(s.config); err != nil {
			t.Fatalf("%s: config: %v", path, err)
		}
	}
	s.config.Defaults()
	if f.Baseline != nil {
		s.config.SetBaseline(f.Baseline)
	}
	if err := s.config.Validate(); err != nil {
		t.Fatalf("%s: config: %v", path, err)
	}
	if s.recs, err = scenario.Records(path, f.Date, f.Events); err != nil {
		t.Fatal(err)
	}
	for i, x := range f.Findings {
		if !slices.Contains(f.Rules, x.Rule) {
			t.Fatalf("%s: findings[%d]: rule %q is not among the rules run", path, i, x.Rule)
		}
	}
	return s
}

// backend opens a store holding recs.
type backend struct {
	name string
	open func(t *testing.T, recs []event.Record) analyzer.Store
}

func backends() []backend {
	return []backend{
		{"embedded", func(t *testing.T, recs []event.Record) analyzer.Store {
			st, err := embedded.Open(embedded.Config{})
			if err != nil {
				t.Fatal(err)
			}
			if err := st.Apply(context.Background(), recs); err != nil {
				t.Fatal(err)
			}
			return st
		}},
		{"clickhouse", func(t *testing.T, recs []event.Record) analyzer.Store {
			db := chtest.Database(t)
			st, err := clickhouse.Open(context.Background(), clickhouse.Config{Addr: chtest.Addr(t), Database: db})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { st.Close() })
			ctx := context.Background()
			for i := 0; i < len(recs); i += 7 {
				if err := st.Apply(ctx, recs[i:min(i+7, len(recs))]); err != nil {
					t.Fatal(err)
				}
			}
			if err := st.Checkpoint(ctx); err != nil {
				t.Fatal(err)
			}
			return st
		}},
	}
}

func TestScenarios(t *testing.T) {
	files, err := filepath.Glob("testdata/scenarios/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no scenarios: %v", err)
	}
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			for _, file := range files {
				s := loadScenario(t, file)
				t.Run(strings.TrimSuffix(s.name, ".yaml"), func(t *testing.T) {
					st := b.open(t, s.recs)
					a := &analyzer.Analyzer{Store: st, Config: s.config}
					ctx := context.Background()
					res, err := a.Run(ctx, analyzer.Options{Rules: s.file.Rules, Now: s.now, Tenants: tenantsOf(s.recs)})
					if err != nil {
						t.Fatalf("analyze: %v", err)
					}
					checkFindings(t, s, res.Findings)
					again, err := a.Run(ctx, analyzer.Options{Rules: s.file.Rules, Now: s.now.Add(time.Minute), Tenants: tenantsOf(s.recs)})
					if err != nil {
						t.Fatalf("analyze again: %v", err)
					}
					for _, r := range again.Runs {
						if r.New != 0 || r.Resolved != 0 {
							t.Errorf("second run of %s: %d new and %d resolved findings, want none", r.Rule, r.New, r.Resolved)
						}
					}
					if ids(res.Findings) != ids(again.Findings) {
						t.Errorf("ids differ between runs:\n%s\n%s", ids(res.Findings), ids(again.Findings))
					}
				})
			}
		})
	}
}

func tenantsOf(recs []event.Record) []string {
	var ts []string
	for _, r := range recs {
		if tn := r.TenantOrDefault(); !slices.Contains(ts, tn) {
			ts = append(ts, tn)
		}
	}
	slices.Sort(ts)
	return ts
}

func ids(fs []finding.Finding) string {
	var out []string
	for _, f := range fs {
		out = append(out, f.ID+" "+f.Status)
	}
	slices.Sort(out)
	return strings.Join(out, "\n")
}

func describe(f finding.Finding) string {
	b, _ := json.MarshalIndent(f, "  ", "  ")
	return string(b)
}

// checkFindings fails the test unless got are exactly the expected findings.
func checkFindings(t *testing.T, s *loadedScenario, got []finding.Finding) {
	t.Helper()
	used := make([]bool, len(got))
	for i, x := range s.file.Findings {
		var why []string
		found := false
		for j, f := range got {
			if used[j] {
				continue
			}
			if err := matches(s, x, f); err != nil {
				if f.Rule == x.Rule && f.Principal == x.Principal && f.Kind == x.Kind {
					why = append(why, err.Error())
				}
				continue
			}
			used[j], found = true, true
			break
		}
		if !found {
			t.Errorf("%s: findings[%d] (%s %s %s %s %s) not found; near misses: %s", s.name, i, x.Rule, x.Kind, x.Principal, x.Action, x.Resource,
				strings.Join(why, "; "))
		}
	}
	for j, f := range got {
		if !used[j] {
			t.Errorf("%s: unexpected finding:\n  %s", s.name, describe(f))
		}
	}
	if t.Failed() {
		for _, f := range got {
			t.Logf("got: %s", describe(f))
		}
	}
}

func matches(s *loadedScenario, x expectedFinding, f finding.Finding) error {
	for _, c := range []struct{ name, want, got string }{
		{"rule", x.Rule, f.Rule}, {"kind", x.Kind, f.Kind}, {"principal", x.Principal, f.Principal},
		{"action", x.Action, f.Action}, {"resource", x.Resource, f.Resource}, {"severity", x.Severity, f.Severity},
		{"status", x.Status, f.Status},
	} {
		if c.want != "" && c.want != c.got {
			return fmt.Errorf("%s is %q, want %q", c.name, c.got, c.want)
		}
	}
	for _, c := range []struct {
		name, want string
		got        *time.Time
	}{{"since", x.Since, &f.Since}, {"ended", x.Ended, f.Ended}} {
		if c.want == "" {
			continue
		}
		w, err := scenario.ParseTime(c.want, s.file.Date)
		if err != nil {
			return fmt.Errorf("%s: %v", c.name, err)
		}
		if c.got == nil || !c.got.Equal(w) {
			return fmt.Errorf("%s is %v, want %v", c.name, c.got, w)
		}
	}
	if x.SummaryContains != "" && !strings.Contains(f.Summary, x.SummaryContains) {
		return fmt.Errorf("summary %q does not contain %q", f.Summary, x.SummaryContains)
	}
	for _, want := range x.EvidenceContains {
		if !slices.ContainsFunc(f.Evidence, func(e finding.Evidence) bool { return strings.Contains(e.Text, want) }) {
			return fmt.Errorf("no evidence contains %q", want)
		}
	}
	for k, want := range x.Details {
		w, _ := json.Marshal(want)
		g, _ := json.Marshal(f.Details[k])
		if string(w) != string(g) {
			return fmt.Errorf("details[%s] is %s, want %s", k, g, w)
		}
	}
	return nil
}
