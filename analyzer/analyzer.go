// Package analyzer runs the rules of DESIGN.md §5 over a store and keeps their findings: each
// rule is written once, against store.Reader, so it judges the embedded store and ClickHouse
// alike.
//
// A run loads a tenant's model once (Load: the permission graph rebuilt from the store's change
// events, with the approvals), runs the rules over it — asking the store for decisions and
// usage, which it filters and aggregates where they live — and reconciles what they found with
// the stored findings (finding.Reconcile): new conditions open, known ones keep their id and
// status, cleared ones resolve.
package analyzer

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"slices"
	"sync"
	"time"

	"github.com/whocould/whocould/event"
	"github.com/whocould/whocould/finding"
	"github.com/whocould/whocould/graph"
	"github.com/whocould/whocould/store"
)

// Store is what the analyzers need of a store.
type Store interface {
	store.Reader
	store.FindingWriter
}

// Model is a tenant's history as the rules see it.
type Model struct {
	Tenant string
	// Graph is the permission map, rebuilt from the change events.
	Graph *graph.Graph
	// Events are the change and approval events, in event-time order (event.Order).
	Events []event.Record
	// Position is the store's position the model was loaded at.
	Position uint64

	parts     parts // see Paths
	approvals struct {
		once sync.Once
		idx  map[string]*approvalRecords
	}
}

// approvalIndex is the approval events and the changes citing them, by request (indexApprovals),
// made once per model.
func (m *Model) approvalIndex() map[string]*approvalRecords {
	m.approvals.once.Do(func() { m.approvals.idx = indexApprovals(m.Events) })
	return m.approvals.idx
}

// Load builds tenant's model from st.
func Load(ctx context.Context, st store.Reader, tenant string) (*Model, error) {
	pos, err := st.Position(ctx)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", tenant, err)
	}
	m := &Model{Tenant: tenant, Graph: graph.New(), Position: pos}
	var batch []event.Record
	err = st.Events(ctx, tenant, func(r event.Record) error {
		if r.Position > pos {
			return nil // applied after Position was read: the next run sees it
		}
		m.Events = append(m.Events, r)
		if r.Type.IsChange() {
			batch = append(batch, r)
			if len(batch) == 4096 {
				m.Graph.ApplyBatch(batch)
				batch = batch[:0]
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", tenant, err)
	}
	m.Graph.ApplyBatch(batch)
	slices.SortStableFunc(m.Events, func(a, b event.Record) int {
		ao, bo := a.OrderOf(), b.OrderOf()
		if ao.Less(bo) {
			return -1
		}
		if bo.Less(ao) {
			return 1
		}
		return 0
	})
	return m, nil
}

// Input is what a rule is given.
type Input struct {
	Tenant string
	// Now is the time the rule judges at: windows end at Now, "still held" means held at Now.
	Now    time.Time
	Config *Config
	Store  store.Reader
	Model  *Model
	Log    *slog.Logger
}

// New starts a finding of rule about the condition key (unique within rule and tenant), with
// the rule's severity (Config.Severity overrides it).
func (in *Input) New(rule, kind, key, severity string) finding.Finding {
	if s, ok := in.Config.Severity[rule]; ok {
		severity = s
	}
	return finding.Finding{ID: finding.IDOf(in.Tenant, rule, key), Rule: rule, Kind: kind, Key: key, Severity: severity,
		Tenant: in.Tenant, Evidence: []finding.Evidence{}}
}

// Rule is one analyzer.
type Rule struct {
	Name  string
	Check func(ctx context.Context, in *Input) ([]finding.Finding, error)
}

// Rules are every rule, in finding.Rules order.
var Rules = []Rule{
	{finding.UnusedGrant, checkUnusedGrant},
	{finding.PrivilegeCreep, checkPrivilegeCreep},
	{finding.AccessAfterDeprovisioning, checkAccessAfterDeprovisioning},
	{finding.UnauthorisedChange, checkUnauthorisedChange},
	{finding.SelfService, checkSelfService},
	{finding.MissingApproval, checkMissingApproval},
	{finding.SeparationOfDuties, checkSeparationOfDuties},
	{finding.Drift, checkDrift},
	{finding.ShadowAccess, checkShadowAccess},
}

// Options selects a run.
type Options struct {
	// Rules to run; empty: Config.Rules, or every rule.
	Rules []string
	// Tenants to judge; empty: every tenant of the store.
	Tenants []string
	// Now is the time judged at; zero: the wall clock.
	Now time.Time
}

// RuleRun is what one rule did for one tenant.
type RuleRun struct {
	Tenant   string        `json:"tenant"`
	Rule     string        `json:"rule"`
	Found    int           `json:"found"`
	New      int           `json:"new"`
	Resolved int           `json:"resolved"`
	Took     time.Duration `json:"took_ns"`
	Error    string        `json:"error,omitempty"`
}

// Result is what a run did, and the findings it touched: those it found (of every status: a
// condition found in the past is resolved at its end) and those it resolved because they
// cleared; sorted by SortFindings.
type Result struct {
	Now      time.Time         `json:"now"`
	Runs     []RuleRun         `json:"runs"`
	Findings []finding.Finding `json:"findings"`
}

// Counts tallies the findings by status.
func (r *Result) Counts() map[string]int {
	c := map[string]int{}
	for _, f := range r.Findings {
		c[f.Status]++
	}
	return c
}

// Analyzer runs the rules and keeps their findings in its store.
type Analyzer struct {
	Store  Store
	Config *Config
	Log    *slog.Logger
}

// ErrRules is returned (joined with each cause) when some rules failed; the others' findings
// were still reconciled and stored.
var ErrRules = errors.New("some rules failed")

// Run runs the selected rules over the selected tenants at opts.Now and stores the outcome.
func (a *Analyzer) Run(ctx context.Context, opts Options) (*Result, error) {
	log := a.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg := a.Config
	if cfg == nil {
		cfg = &Config{}
		cfg.Defaults()
	}
	now := opts.Now
	if now.IsZero() {
		now = time.Now()
	}
	now = now.UTC()
	names := opts.Rules
	if len(names) == 0 {
		names = cfg.Rules
	}
	if len(names) == 0 {
		names = finding.Rules
	}
	var rules []Rule
	for _, r := range Rules {
		if slices.Contains(names, r.Name) {
			rules = append(rules, r)
		}
	}
	for _, n := range names {
		if !slices.Contains(finding.Rules, n) {
			return nil, fmt.Errorf("unknown rule %q", n)
		}
	}
	tenants := opts.Tenants
	if len(tenants) == 0 {
		var err error
		if tenants, err = a.Store.Tenants(ctx); err != nil {
			return nil, fmt.Errorf("analyze: %w", err)
		}
	}
	res := &Result{Now: now, Runs: []RuleRun{}, Findings: []finding.Finding{}}
	var errs []error
	for _, tenant := range tenants {
		start := time.Now()
		m, err := Load(ctx, a.Store, tenant)
		if err != nil {
			return res, err
		}
		log.Info("analyzer model loaded", "tenant", tenant, "events", len(m.Events), "took", time.Since(start))
		in := &Input{Tenant: tenant, Now: now, Config: cfg, Store: a.Store, Model: m, Log: log}
		var found []finding.Finding
		var ran []string
		runs := map[string]*RuleRun{}
		for i, o := range runRules(ctx, in, rules, cfg.Concurrency) {
			r, fs, err := rules[i], o.found, o.err
			run := RuleRun{Tenant: tenant, Rule: r.Name, Found: len(fs), Took: o.took}
			if err != nil {
				if ctx.Err() != nil {
					return res, ctx.Err()
				}
				run.Error = err.Error()
				errs = append(errs, fmt.Errorf("%s (tenant %s): %w", r.Name, tenant, err))
				log.Error("analyzer rule failed", "rule", r.Name, "tenant", tenant, "err", err)
			} else {
				ran = append(ran, r.Name)
				found = append(found, fs...)
				log.Info("analyzer rule ran", "rule", r.Name, "tenant", tenant, "found", len(fs), "took", run.Took)
			}
			res.Runs = append(res.Runs, run)
			runs[r.Name] = &res.Runs[len(res.Runs)-1]
		}
		stored, err := a.Store.Findings(ctx, tenant)
		if err != nil {
			return res, fmt.Errorf("analyze %s: %w", tenant, err)
		}
		known := map[string]finding.Finding{}
		for _, f := range stored {
			known[f.ID] = f
		}
		changed := finding.Reconcile(stored, found, ran, now)
		for _, f := range changed {
			prev, had := known[f.ID]
			run := runs[f.Rule]
			switch {
			case !had:
				run.New++
			case f.Status == finding.Resolved && prev.Status != finding.Resolved:
				run.Resolved++
			}
		}
		if err := a.Store.PutFindings(ctx, tenant, changed); err != nil {
			return res, fmt.Errorf("analyze %s: %w", tenant, err)
		}
		res.Findings = append(res.Findings, changed...)
	}
	SortFindings(res.Findings)
	if len(errs) > 0 {
		return res, errors.Join(append([]error{ErrRules}, errs...)...)
	}
	return res, nil
}

// ruleOutcome is what one rule's check gave.
type ruleOutcome struct {
	found []finding.Finding
	err   error
	took  time.Duration
}

// runRules runs the rules' checks, up to concurrency (at least 1) at once, each started in
// order as another ends, and returns their outcomes in the rules' order. A check that panics
// fails with the panic (its stack logged); the others go on.
func runRules(ctx context.Context, in *Input, rules []Rule, concurrency int) []ruleOutcome {
	out := make([]ruleOutcome, len(rules))
	sem := make(chan struct{}, max(concurrency, 1))
	var wg sync.WaitGroup
	for i, r := range rules {
		sem <- struct{}{}
		wg.Go(func() {
			start := time.Now()
			defer func() {
				if v := recover(); v != nil {
					if in.Log != nil {
						in.Log.Error("analyzer rule panicked", "rule", r.Name, "tenant", in.Tenant, "panic", v, "stack", string(debug.Stack()))
					}
					out[i] = ruleOutcome{err: fmt.Errorf("panic: %v", v), took: time.Since(start)}
				}
				<-sem
			}()
			fs, err := r.Check(ctx, in)
			out[i] = ruleOutcome{fs, err, time.Since(start)}
		})
	}
	wg.Wait()
	return out
}

var severityRank = map[string]int{finding.Critical: 0, finding.High: 1, finding.Medium: 2, finding.Low: 3}

// SortFindings sorts by rule (finding.Rules order), then severity (most urgent first), then
// principal, action, resource and id.
func SortFindings(fs []finding.Finding) {
	slices.SortFunc(fs, func(a, b finding.Finding) int {
		return cmp.Or(cmp.Compare(slices.Index(finding.Rules, a.Rule), slices.Index(finding.Rules, b.Rule)),
			cmp.Compare(severityRank[a.Severity], severityRank[b.Severity]),
			cmp.Compare(a.Principal, b.Principal), cmp.Compare(a.Action, b.Action), cmp.Compare(a.Resource, b.Resource),
			cmp.Compare(a.ID, b.ID))
	})
}

// Acknowledge acknowledges finding id of tenant in st.
func Acknowledge(ctx context.Context, st Store, tenant, id, by, reason string, now time.Time) (finding.Finding, error) {
	return update(ctx, st, tenant, id, func(f *finding.Finding) error { return f.Acknowledge(by, reason, now) })
}

// Suppress suppresses finding id of tenant in st until until (nil: until lifted).
func Suppress(ctx context.Context, st Store, tenant, id, by, reason string, until *time.Time, now time.Time) (finding.Finding, error) {
	return update(ctx, st, tenant, id, func(f *finding.Finding) error { return f.Suppress(by, reason, until, now) })
}

func update(ctx context.Context, st Store, tenant, id string, fn func(*finding.Finding) error) (finding.Finding, error) {
	f, err := Get(ctx, st, tenant, id)
	if err != nil {
		return f, err
	}
	if err := fn(&f); err != nil {
		return f, err
	}
	return f, st.PutFindings(ctx, tenant, []finding.Finding{f})
}

// Get is finding id of tenant, or store.ErrNotFound.
func Get(ctx context.Context, st store.Reader, tenant, id string) (finding.Finding, error) {
	fs, err := st.Findings(ctx, tenant)
	if err != nil {
		return finding.Finding{}, err
	}
	i, ok := slices.BinarySearchFunc(fs, id, func(f finding.Finding, id string) int { return cmp.Compare(f.ID, id) })
	if !ok {
		return finding.Finding{}, fmt.Errorf("finding %s: %w", id, store.ErrNotFound)
	}
	return fs[i], nil
}
